#!/usr/bin/env bash
# Builds the `engine` or `meter` binary of revision REV (release profile, in
# a temporary worktree with its own target directory, so that it shares no
# artefacts with this checkout) and prints its path. Binaries are kept in
# target/compare/, named by commit, so that comparing several steps against
# one revision builds it once; the cache keeps the 8 most recently used and
# deletes the rest (each is about 90 MB).
#
#   benches/build-rev.sh engine|meter REV
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 2 ]; then
    echo "usage: benches/build-rev.sh engine|meter REV" >&2
    exit 2
fi
case $1 in
meter) package=(-p flowspan-benches --bin meter) ;;
engine) package=(-p flowspan-cli --bin engine) ;;
*)
    echo "build-rev.sh: the binary must be engine or meter, not '$1'" >&2
    exit 2
    ;;
esac
commit=$(git rev-parse "$2^{commit}")
cache=target/compare
bin="$cache/$1-$commit"
if [ ! -x "$bin" ]; then
    work=$(mktemp -d)
    trap 'git worktree remove --force "$work/tree" 2>/dev/null || true; rm -rf "$work"' EXIT
    git worktree add --quiet --detach "$work/tree" "$commit"
    (cd "$work/tree" && CARGO_TARGET_DIR="$work/target" cargo build --release --quiet "${package[@]}") >&2
    mkdir -p "$cache"
    cp "$work/target/release/$1" "$bin"
fi
touch "$bin"
# shellcheck disable=SC2012 # names are ours: binary-commit, no spaces
ls -t "$cache" | tail -n +9 | while read -r old; do rm -f "$cache/$old"; done
echo "$bin"
