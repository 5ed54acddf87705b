#!/usr/bin/env bash
# Rewrites the fixtures in testdata/pcap/ from the generator, then the golden
# outputs in testdata/golden/ from the current engine. Review `git diff` after.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -p flowspan-testdata -- testdata/pcap
UPDATE_GOLDEN=1 cargo test --quiet -p flowspan-cli --test golden
git status --short testdata/
