#!/usr/bin/env bash
# Metering cost of this checkout against another revision (issue 6: tunnel
# decoding must keep the throughput figures within 5 % on traffic without
# tunnels). Builds `meter` (or `engine`) at REV in a temporary worktree and here, then runs
# the two on the same capture in alternating pairs, each pinned to the last
# CPU (so that the reader and worker threads share one core and a run's
# user+system time is the whole pipeline's work). Prints every run, each
# build's median, and the median of the per-pair ratios (this checkout over
# REV) with a bootstrap 95 % interval. Pairs, not separate series: a noisy
# neighbour on a shared VM slows both runs of a pair alike.
#
#   [PAIRS=N] [WHAT=meter|engine] [WORKERS=N] [MEASURE=wall] [PIN=no] benches/compare.sh REV [CAPTURE]
#
# Default: 20 pairs of `meter CAPTURE 1` over target/bench/big-notun.pcap,
# which `gen-bigcap --no-tunnels` makes if it is missing (9.75 M packets,
# 1.06 M flows). WHAT=engine times `engine --pcap CAPTURE -o /dev/null
# --workers 1 -q` instead: metering, span mapping and OTLP JSON encoding.
# WORKERS=N runs N workers (both `meter` and `engine`; default 1).
# MEASURE=wall compares elapsed seconds instead of CPU seconds (for the
# speed-up of several workers; use it with PIN=no).
# PIN=no lets the threads run on every CPU, as `throughput.sh` does: closer
# to real use (the threads overlap, and data moves between cores), but
# noisier. REV's binary comes from benches/build-rev.sh, which keeps it in
# target/compare/, so comparing several steps against one revision builds it
# once.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: [PAIRS=N] [WHAT=meter|engine] [WORKERS=N] [MEASURE=wall] [PIN=no] benches/compare.sh REV [CAPTURE]" >&2
    exit 2
fi
what=${WHAT:-meter}
case $what in
meter) package=(-p flowspan-benches --bin meter) ;;
engine) package=(-p flowspan-cli --bin engine) ;;
*)
    echo "compare.sh: WHAT must be meter or engine, not '$what'" >&2
    exit 2
    ;;
esac
rev=$(git rev-parse --short "$1^{commit}")
workers=${WORKERS:-1}
measure=${MEASURE:-cpu}
case $measure in
cpu) unit="user+system seconds" ;;
wall) unit="elapsed seconds" ;;
*)
    echo "compare.sh: MEASURE must be cpu or wall, not '$measure'" >&2
    exit 2
    ;;
esac
cap=${2:-target/bench/big-notun.pcap}
pairs=${PAIRS:-20}
TIMEFORMAT='%3R %3U %3S' # elapsed, user, system seconds

cargo build --release --quiet "${package[@]}"
cargo build --release --quiet -p flowspan-testdata --bin gen-bigcap
if [ ! -f "$cap" ]; then
    mkdir -p "$(dirname "$cap")"
    ./target/release/gen-bigcap "$cap" --no-tunnels
fi

other=$(benches/build-rev.sh "$what" "$rev")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$other" "$work/$what-$rev"
cp "target/release/$what" "$work/$what-here"

if [ "${PIN:-yes}" = no ]; then
    cpus="0-$(($(nproc) - 1))"
else
    cpus=$(($(nproc) - 1))
fi
cat "$cap" >/dev/null # every run reads the capture from the page cache
echo "$what with $workers worker(s) over $cap; $pairs pairs on CPU $cpus; $unit"
echo "pair $rev here"
results="$work/results"
for i in $(seq "$pairs"); do
    line="$i"
    for b in "$what-$rev" "$what-here"; do
        if [ "$what" = meter ]; then
            run=("$work/$b" "$cap" "$workers")
        else
            run=("$work/$b" --pcap "$cap" -o /dev/null --workers "$workers" -q)
        fi
        # bash's own `time`, to the millisecond: /usr/bin/time rounds to
        # 10 ms, 3 % of a 0.3 s run, which showed as ratios stuck at 0.966
        # or 1.000. The run's own messages, if any, come before its line.
        { time taskset -c "$cpus" "${run[@]}" >/dev/null; } 2>"$work/t"
        line="$line $(tail -n 1 "$work/t" | awk -v m="$measure" '{ printf "%.3f", m == "wall" ? $1 : $2 + $3 }')"
    done
    echo "$line" | tee -a "$results"
done

awk -v rev="$rev" '
    function median(a, n,    s, i, j, t) {
        for (i = 1; i <= n; i++) s[i] = a[i]
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && s[j - 1] > s[j]; j--) { t = s[j]; s[j] = s[j - 1]; s[j - 1] = t }
        return n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
    }
    { n++; base[n] = $2; here[n] = $3; ratio[n] = $3 / $2 }
    END {
        printf "median: %s %.3f s, here %.3f s\n", rev, median(base, n), median(here, n)
        srand(1)
        for (b = 1; b <= 2000; b++) {
            for (i = 1; i <= n; i++) pick[i] = ratio[int(rand() * n) + 1]
            boot[b] = median(pick, n)
        }
        m = 2000
        for (i = 2; i <= m; i++)
            for (j = i; j > 1 && boot[j - 1] > boot[j]; j--) { t = boot[j]; boot[j] = boot[j - 1]; boot[j - 1] = t }
        printf "here / %s, median of pair ratios: %.3f (95 %% interval %.3f to %.3f)\n",
            rev, median(ratio, n), boot[int(m * 0.025)], boot[int(m * 0.975)]
    }' "$results"
