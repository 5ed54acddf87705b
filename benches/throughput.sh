#!/usr/bin/env bash
# Throughput run (issue 4): the engine over a large generated capture with 1
# and 2 workers, and Debian's softflowd and nfpcapd over the same file, timed
# side by side. Prints wall time, CPU time (user + system), packets per
# CPU-second and per wall-second, and peak RSS.
#
#   benches/throughput.sh [CAPTURE]     (default target/bench/big.pcap)
#
# The capture is made by `gen-bigcap` (testdata/generator) if it is missing:
# about 9.75 M packets in 1.06 M flows over 30 s. Installs `time`, softflowd
# and nfdump from Debian when they are missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
cap=${1:-target/bench/big.pcap}

need=()
[ -x /usr/bin/time ] || need+=(time)
command -v softflowd >/dev/null || need+=(softflowd)
command -v nfpcapd >/dev/null || need+=(nfdump)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --release --quiet -p flowspan-cli -p flowspan-testdata
if [ ! -f "$cap" ]; then
    mkdir -p "$(dirname "$cap")"
    ./target/release/gen-bigcap "$cap"
fi
packets=$(./target/release/engine --pcap "$cap" -o /dev/null 2>&1 | sed -n 's/.*: \([0-9]*\) packets read.*/\1/p')
echo "capture: $cap, $packets packets, $(stat -c %s "$cap") bytes"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -r)"
printf '%-34s %8s %8s %12s %12s %9s\n' run "wall s" "CPU s" "pkt/CPU-s" "pkt/wall-s" "RSS MB"

run() {
    local name=$1
    shift
    local t
    t=$(mktemp)
    # Every run reads the capture from the page cache (warmed below).
    /usr/bin/time -o "$t" -f "%e %U %S %M" "$@" >/dev/null 2>&1
    read -r wall user sys rss <"$t"
    rm -f "$t"
    awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v p="$packets" \
        'BEGIN { c = u + s; printf "%-34s %8.2f %8.2f %12.0f %12.0f %9.0f\n", n, w, c, p / c, p / w, r / 1024 }'
}

cat "$cap" >/dev/null # warm the page cache
run "engine --workers 1 (JSON to null)" ./target/release/engine --pcap "$cap" -o /dev/null --workers 1 -q
run "engine --workers 2 (JSON to null)" ./target/release/engine --pcap "$cap" -o /dev/null --workers 2 -q
# softflowd keeps 8192 flows by default and would expire the rest early.
run "softflowd -m 2000000" softflowd -m 2000000 -r "$cap" -n 127.0.0.1:9
out=$(mktemp -d)
run "nfpcapd" nfpcapd -r "$cap" -w "$out"
rm -rf "$out"
