#!/usr/bin/env bash
# Throughput run (issue 4): the engine over a large generated capture with 1
# and 2 workers, `meter` (the same pipeline without span output) likewise, and
# Debian's softflowd and nfpcapd over the same file, timed side by side.
# Prints wall time, CPU time (user + system), packets per CPU-second and per
# wall-second, and peak RSS: the median of RUNS rounds (default 3), each
# round running every command once, so that a noisy neighbour on a shared
# machine hits all of them alike.
#
#   [RUNS=N] [BASE=REV] benches/throughput.sh [CAPTURE]     (default target/bench/big.pcap)
#
# BASE=REV also times `engine --workers 1|2` built at REV (by
# benches/build-rev.sh, as compare.sh builds its other revision), to show a
# change's effect beside the peers in the same rounds.
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

cargo build --release --quiet -p flowspan-cli -p flowspan-testdata -p flowspan-benches
if [ ! -f "$cap" ]; then
    mkdir -p "$(dirname "$cap")"
    ./target/release/gen-bigcap "$cap"
fi
runs=${RUNS:-3}
base=
if [ -n "${BASE:-}" ]; then
    base=$(benches/build-rev.sh engine "$BASE")
fi
packets=$(./target/release/engine --pcap "$cap" -o /dev/null 2>&1 | sed -n 's/.*: \([0-9]*\) packets read.*/\1/p')
echo "capture: $cap, $packets packets, $(stat -c %s "$cap") bytes"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -r)"
echo "median of $runs rounds"

results=$(mktemp)
out=$(mktemp -d)
trap 'rm -rf "$results" "$out"' EXIT

# Runs a command once; appends "name|wall|cpu|rss_kb" to $results.
run() {
    local name=$1
    shift
    local t
    t=$(mktemp)
    /usr/bin/time -o "$t" -f "%e %U %S %M" "$@" >/dev/null 2>&1
    read -r wall user sys rss <"$t"
    rm -f "$t"
    awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" \
        'BEGIN { printf "%s|%s|%.2f|%s\n", n, w, u + s, r }' >>"$results"
}

cat "$cap" >/dev/null # every run reads the capture from the page cache
for _ in $(seq "$runs"); do
    run "engine --workers 1 (JSON to null)" ./target/release/engine --pcap "$cap" -o /dev/null --workers 1 -q
    run "engine --workers 2 (JSON to null)" ./target/release/engine --pcap "$cap" -o /dev/null --workers 2 -q
    if [ -n "$base" ]; then
        run "engine at $BASE, --workers 1" "$base" --pcap "$cap" -o /dev/null --workers 1 -q
        run "engine at $BASE, --workers 2" "$base" --pcap "$cap" -o /dev/null --workers 2 -q
    fi
    run "meter, 1 worker (no spans)" ./target/release/meter "$cap" 1
    run "meter, 2 workers (no spans)" ./target/release/meter "$cap" 2
    # softflowd keeps 8192 flows by default and would expire the rest early;
    # it exports IPFIX (-v 10) and tracks IPv6 flows (-6), as issue 21 asks.
    run "softflowd -v 10 -6 -m 2000000" softflowd -v 10 -6 -m 2000000 -r "$cap" -n 127.0.0.1:9
    rm -rf "${out:?}"/*
    run "nfpcapd" nfpcapd -r "$cap" -w "$out"
done

printf '%-34s %8s %8s %12s %12s %9s\n' run "wall s" "CPU s" "pkt/CPU-s" "pkt/wall-s" "RSS MB"
# Per command, in first-seen order: the median of each column.
awk -F'|' -v p="$packets" '
    !($1 in seen) { seen[$1] = 1; order[++n] = $1 }
    { k = $1; c[k]++; W[k, c[k]] = $2; C[k, c[k]] = $3; R[k, c[k]] = $4 }
    function median(A, k, m,    i, j, t, v) {
        for (i = 1; i <= m; i++) v[i] = A[k, i]
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    }
    END {
        for (i = 1; i <= n; i++) {
            k = order[i]; m = c[k]
            w = median(W, k, m); cpu = median(C, k, m); r = median(R, k, m)
            printf "%-34s %8.2f %8.2f %12.0f %12.0f %9.0f\n", k, w, cpu, p / cpu, p / w, r / 1024
        }
    }' "$results"
