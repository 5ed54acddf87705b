#!/usr/bin/env bash
# What filtering and sampling cost a capture-file run (issue 20): the same
# `engine --pcap CAPTURE -o /dev/null --workers 1 -q` with each setting
# below, in rounds (one run of each per round, in turn), so that a noisy
# neighbour slows them alike:
#
#   none          no filter
#   drop90        --filter vlan          (keeps the ~10 % of frames with a tag)
#   keepall       --filter 'not port 9999'  (keeps every frame: the cost of
#                 running a 24-instruction program on each)
#   sample10      --sample-flows 10
#   keep-tcp      --keep network.transport=tcp
#
#   [ROUNDS=N] benches/selection.sh [CAPTURE]
#
# Default: 5 rounds over target/bench/big2m.pcap (`gen-bigcap --packets
# 2000000 --no-tunnels`, made when missing). Needs libpcap (libpcap0.8).
# Prints the share of frames the filter keeps (from the engine's summary),
# every run's user+system CPU seconds, each setting's median and its ratio
# to `none`.
set -euo pipefail
cd "$(dirname "$0")/.."
cap=${1:-target/bench/big2m.pcap}
rounds=${ROUNDS:-5}
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --locked -q -p flowspan-cli --bin engine -p flowspan-testdata --bin gen-bigcap
if [ ! -f "$cap" ]; then
    mkdir -p "$(dirname "$cap")"
    ./target/release/gen-bigcap --packets 2000000 --no-tunnels "$cap"
fi
engine=./target/release/engine
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

names=(none drop90 keepall sample10 keep-tcp)
args_of() {
    case "$1" in
        none) ;;
        drop90) echo "--filter vlan" ;;
        keepall) echo "--filter not-port-9999" ;;
        sample10) echo "--sample-flows 10" ;;
        keep-tcp) echo "--keep network.transport=tcp" ;;
    esac
}
run() {
    local -a extra
    read -r -a extra <<<"$(args_of "$1")"
    # `not port 9999` is one argument.
    if [ "${extra[1]:-}" = "not-port-9999" ]; then extra=(--filter "not port 9999"); fi
    /usr/bin/time -f "%U %S" -o "$work/time" \
        "$engine" --pcap "$cap" -o /dev/null --workers 1 -q "${extra[@]}" >/dev/null 2>&1
    awk '{printf "%.2f\n", $1 + $2}' "$work/time"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

summary=$("$engine" --pcap "$cap" -o /dev/null --workers 1 --filter vlan 2>&1 >/dev/null)
total=$(echo "$summary" | awk '/^engine: summary of/ {print $5}')
left=$(echo "$summary" | awk -F': ' '/capture filter/ {split($2, a, " "); print a[1]}')
echo "capture: $cap, $total frames; --filter vlan leaves out $left ($(awk -v a="$left" -v b="$total" 'BEGIN {printf "%.1f", 100 * a / b}') %)"
for i in $(seq 1 "$rounds"); do
    line="round $i:"
    for n in "${names[@]}"; do
        t=$(run "$n")
        echo "$t" >>"$work/$n"
        line="$line $n $t"
    done
    echo "$line (CPU s)"
done
base=$(median <"$work/none")
for n in "${names[@]}"; do
    m=$(median <"$work/$n")
    printf '%-9s median CPU %s s, %s of none\n' "$n" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.3f", a / b}')"
done
