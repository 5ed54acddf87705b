#!/usr/bin/env bash
# What the node-agent features cost a capture-file run (issue 19), in
# alternating pairs on one capture, each pair's runs back to back so that a
# noisy neighbour slows both alike:
#
#   scrape: `engine --pcap CAPTURE -o /dev/null --workers 1 -q` against the
#           same with --metrics-address and a client fetching /metrics every
#           100 ms for the whole run (each fetch's time is kept);
#   merge:  the capture read whole against the same capture cut into FILES
#           consecutive files (editcap -c) read with one --pcap glob.
#
#   [PAIRS=N] [FILES=N] benches/agent.sh [CAPTURE]
#
# Default: 5 pairs over target/bench/big2m.pcap (`gen-bigcap --packets
# 2000000 --no-tunnels`, made when missing), 4 files. Needs editcap
# (wireshark-common) and curl. Prints every run's user+system CPU seconds
# and wall seconds, each side's median, and the /metrics fetch times.
set -euo pipefail
cd "$(dirname "$0")/.."
cap=${1:-target/bench/big2m.pcap}
pairs=${PAIRS:-5}
files=${FILES:-4}
for tool in editcap curl; do
    command -v "$tool" >/dev/null || { echo "agent.sh: $tool is missing" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --locked -q -p flowspan-cli --bin engine -p flowspan-testdata --bin gen-bigcap
if [ ! -f "$cap" ]; then
    mkdir -p "$(dirname "$cap")"
    ./target/release/gen-bigcap --packets 2000000 --no-tunnels "$cap"
fi
engine=./target/release/engine
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
packets=$(capinfos -c -M "$cap" 2>/dev/null | awk '/Number of packets/ {print $NF}' || true)
per=$(( ${packets:-2000000} / files + 1 ))
editcap -c "$per" "$cap" "$work/part.pcap"
echo "capture: $cap (${packets:-?} packets), cut into $(ls "$work" | wc -l) files of $per packets"

# One timed run: prints "CPU WALL" (seconds).
timed() {
    /usr/bin/time -f "%U %S %e" -o "$work/time" "$@" >/dev/null 2>&1
    awk '{printf "%.2f %.2f\n", $1 + $2, $3}' "$work/time"
}

# The engine alone is timed; the client fetching /metrics is not.
scraped() {
    local port=19615
    /usr/bin/time -f "%U %S %e" -o "$work/time" \
        "$engine" --pcap "$cap" -o /dev/null --workers 1 -q --metrics-address "127.0.0.1:$port" \
        >/dev/null 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/metrics" \
            >>"$work/fetches" 2>/dev/null || true
        sleep 0.1
    done
    wait "$pid"
    awk '{printf "%.2f %.2f\n", $1 + $2, $3}' "$work/time"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

: >"$work/plain"; : >"$work/scrape"; : >"$work/whole"; : >"$work/merged"
for i in $(seq 1 "$pairs"); do
    p=$(timed "$engine" --pcap "$cap" -o /dev/null --workers 1 -q)
    s=$(scraped)
    echo "pair $i: scrape  off $p | on $s (CPU s, wall s)"
    echo "$p" >>"$work/plain"; echo "$s" >>"$work/scrape"
    w=$(timed "$engine" --pcap "$cap" -o /dev/null --workers 1 -q)
    m=$(timed "$engine" --pcap "$work/part_*.pcap" -o /dev/null --workers 1 -q)
    echo "pair $i: merge   whole $w | $files files $m"
    echo "$w" >>"$work/whole"; echo "$m" >>"$work/merged"
done
for side in plain scrape whole merged; do
    printf '%-7s median CPU %s s, wall %s s\n' "$side" \
        "$(cut -d' ' -f1 "$work/$side" | median)" "$(cut -d' ' -f2 "$work/$side" | median)"
done
if [ -s "$work/fetches" ]; then
    printf '/metrics fetches: %s, median %s s, max %s s\n' "$(wc -l <"$work/fetches")" \
        "$(median <"$work/fetches")" "$(sort -n "$work/fetches" | tail -1)"
fi
# The merged output is the whole's, byte for byte.
"$engine" --pcap "$cap" --workers 2 -q | md5sum | cut -d' ' -f1 >"$work/a"
"$engine" --pcap "$work/part_*.pcap" --workers 2 -q | md5sum | cut -d' ' -f1 >"$work/b"
if cmp -s "$work/a" "$work/b"; then
    echo "merged output = whole output (md5 $(cat "$work/a"))"
else
    echo "agent.sh: the merged output differs from the whole's" >&2
    exit 1
fi
