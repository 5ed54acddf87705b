#!/usr/bin/env bash
# Installs rotel-agent, Streamfold's Rust OpenTelemetry collector, into DIR
# (default target/tools) from its PyPI wheel, and prints the binary's path.
# The export tests use it as the real OTLP receiver. Idempotent.
set -euo pipefail
version=0.0.1a15
dir=${1:-"$(dirname "$0")/../target/tools"}
bin="$dir/rotel-$version/rotel-agent"
if [ ! -x "$bin" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --python-version 3.11 --platform manylinux_2_34_x86_64 \
        --dest "$tmp" "rotel==$version" >&2
    mkdir -p "$dir/rotel-$version"
    python3 - "$tmp" "$bin" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/rotel-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("rotel/rotel-agent") as src, \
        open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod +x "$bin.part"
    mv "$bin.part" "$bin"
fi
cd "$(dirname "$bin")" && echo "$PWD/$(basename "$bin")"
