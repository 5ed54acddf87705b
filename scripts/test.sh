#!/usr/bin/env bash
# The test command: what CI runs and what a developer runs before pushing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
# Coverage-guided fuzzing, FUZZ_SECONDS (default 60) per target; set it
# to 0 to leave this step out of a quick local run.
if [ "${FUZZ_SECONDS:-60}" = 0 ]; then
  echo "== fuzzing left out (FUZZ_SECONDS=0)"
else
  echo "== fuzzing (scripts/fuzz.sh, ${FUZZ_SECONDS:-60} s per target)"
  ./scripts/fuzz.sh
fi
echo "== all checks passed"
