#!/usr/bin/env bash
# What flow metrics (`--metrics`, issue 22) cost a capture-file run: the
# same `engine --pcap CAPTURE -o /dev/null --workers 1 -q` with each
# setting below, in rounds (one run of each per round, in turn, so that a
# noisy neighbour slows them alike):
#
#   off        no --metrics
#   default    --metrics: cumulative, the default dimensions, 60 s of
#              packet time per collection
#   delta-1s   --metrics --metrics-temporality delta --metrics-interval 1
#              (a collection per second of packet time)
#   addresses  --metrics with source.address, destination.address and
#              destination.port as dimensions: more series than the
#              default limit of 2000, so most records go to the overflow
#              series, which is the worst case for the lookup
#
#   [ROUNDS=N] benches/metrics.sh [CAPTURE]
#
# Default: 15 rounds over target/bench/big2m-tun.pcap (`gen-bigcap --packets
# 2000000`, made when missing). Prints what each setting collected (from the
# summary), every run's user+system CPU seconds, each setting's median, and
# the median over rounds of the extra CPU per record against `off`.
set -euo pipefail
cd "$(dirname "$0")/.."
cap=${1:-target/bench/big2m-tun.pcap}
rounds=${ROUNDS:-15}
cargo build --release --locked -q -p flowspan-cli --bin engine -p flowspan-testdata --bin gen-bigcap
if [ ! -f "$cap" ]; then
    mkdir -p "$(dirname "$cap")"
    ./target/release/gen-bigcap --packets 2000000 "$cap"
fi
engine=./target/release/engine
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

names=(off default delta-1s addresses)
args_of() {
    case "$1" in
        off) ;;
        default) echo "--metrics" ;;
        delta-1s) echo "--metrics --metrics-temporality delta --metrics-interval 1" ;;
        addresses) echo "--metrics --metrics-dimension source.address --metrics-dimension destination.address --metrics-dimension destination.port" ;;
    esac
}
# User+system CPU seconds of one run, to the microsecond (getrusage:
# /usr/bin/time rounds to 10 ms, too coarse for a difference of a few %).
run() {
    local -a extra
    read -r -a extra <<<"$(args_of "$1")"
    python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{r.ru_utime + r.ru_stime:.4f}")' \
        "$engine" --pcap "$cap" -o /dev/null --workers 1 -q "${extra[@]}"
}

cat "$cap" >/dev/null # every run reads the capture from the page cache
summary=$("$engine" --pcap "$cap" -o /dev/null --workers 1 2>&1 >/dev/null)
records=$(echo "$summary" | awk '/^  records: / {sub(":", "", $2); print $2}')
echo "capture: $cap, $records records"
for n in default delta-1s addresses; do
    read -r -a extra <<<"$(args_of "$n")"
    line=$("$engine" --pcap "$cap" -o /dev/null --workers 1 "${extra[@]}" 2>&1 >/dev/null | grep '^  flow metrics to')
    echo "$n: ${line#  }"
done
for i in $(seq 1 "$rounds"); do
    line="round $i:"
    for n in "${names[@]}"; do
        t=$(run "$n")
        echo "$t" >>"$work/$n"
        line="$line $n $t"
    done
    echo "$line (CPU s)"
done
# Per setting: the median of its CPU, and the median over rounds of its
# difference to `off` in the same round, per record, with a bootstrap 95 %
# interval (rounds, not separate series: a noisy neighbour slows a round's
# runs alike).
python3 - "$work" "$records" "${names[@]}" <<'PY'
import random, statistics, sys
work, records, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
runs = {n: [float(x) for x in open(f"{work}/{n}")] for n in names}
off = runs["off"]
random.seed(1)
for n in names:
    diffs = [(a - b) * 1e9 / records for a, b in zip(runs[n], off)]
    boot = sorted(
        statistics.median(random.choices(diffs, k=len(diffs))) for _ in range(2000)
    )
    print(
        f"{n:<9} median CPU {statistics.median(runs[n]):.3f} s; "
        f"{statistics.median(diffs):+.0f} ns per record against off "
        f"(95 % interval {boot[50]:+.0f} to {boot[1950]:+.0f})"
    )
PY
