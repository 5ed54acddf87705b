#!/usr/bin/env bash
# Instructions executed by this checkout and by another revision over the
# same capture, counted by valgrind's cachegrind: a figure that does not move
# with the neighbours of a shared host, where timing a step of a few per cent
# is noise (benches/README, issue 21's fifth steps). Instructions are not
# time: a step that saves instructions on code that waits on memory saves
# little, and one that saves cache misses shows nothing here. Use it beside
# compare.sh, not instead of it.
#
#   [WHAT=engine|meter] [ENCODE=json|proto] [WORKERS=N] [TOP=N] benches/instructions.sh REV [CAPTURE]
#
# Default: `engine --pcap CAPTURE -o /dev/null --workers 1 -q` over
# target/bench/small-tun.pcap, which `gen-bigcap --packets 200000` makes if
# it is missing (183 k packets, 20 k flows, with tunnels). Prints each
# build's instructions in all and per packet, their ratio, and the TOP
# functions (default 12) of this checkout beside REV's count for each, with
# inlined code counted in the function it was inlined into. WHAT=meter
# counts `meter CAPTURE WORKERS`, metering alone, or with ENCODE the records
# also encoded as spans and dropped (`meter`'s third argument, so REV must
# have it): the way to count the protobuf encoding, which `engine` only
# sends to a collector. Counts repeat to about 0.15 % from run to run with
# one worker. SHA-1 runs its portable code under valgrind (which hides the
# CPU's SHA extensions), so its share here is larger than in a real run.
# Installs valgrind from Debian if it is missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: [WHAT=engine|meter] [ENCODE=json|proto] [WORKERS=N] [TOP=N] benches/instructions.sh REV [CAPTURE]" >&2
    exit 2
fi
what=${WHAT:-engine}
if [ "$what" != engine ] && [ "$what" != meter ]; then
    echo "instructions.sh: WHAT must be engine or meter, not '$what'" >&2
    exit 2
fi
rev=$(git rev-parse --short "$1^{commit}")
cap=${2:-target/bench/small-tun.pcap}
workers=${WORKERS:-1}
top=${TOP:-12}

if ! command -v valgrind >/dev/null; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
cargo build --release --quiet --bin "$what" # one package has each
cargo build --release --quiet -p flowspan-testdata --bin gen-bigcap
if [ ! -f "$cap" ]; then
    mkdir -p "$(dirname "$cap")"
    ./target/release/gen-bigcap "$cap" --packets 200000
fi
other=$(benches/build-rev.sh "$what" "$rev")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Same-length paths: a run's arguments are part of what it counts.
mkdir "$work/base" "$work/here"
cp "$other" "$work/base/$what"
cp "target/release/$what" "$work/here/$what"
packets=$(./target/release/engine --pcap "$cap" -o /dev/null 2>&1 | sed -n 's/.*: \([0-9]*\) packets read.*/\1/p')

# Runs build $1 (base or here) under cachegrind; leaves its counts in
# $work/$1.out and prints the total.
count() {
    local b=$1 run
    if [ "$what" = meter ]; then
        run=("$work/$b/$what" "$cap" "$workers" ${ENCODE:+"$ENCODE"})
    else
        run=("$work/$b/$what" --pcap "$cap" -o /dev/null --workers "$workers" -q)
    fi
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$work/$b.out" \
        "${run[@]}" >/dev/null 2>"$work/$b.log" || {
        echo "instructions.sh: $b failed under valgrind:" >&2
        tail -n 5 "$work/$b.log" >&2
        exit 1
    }
    sed -n 's/^summary: *//p' "$work/$b.out"
}

# Instructions by function (inlined code under the function it is in), as
# "count<TAB>function" lines.
by_function() {
    cg_annotate --auto=no --threshold=0 "$work/$1.out" | awk '
        /file:function/ { on = 1; next }
        on && /^ *[0-9,]+ +\(/ {
            n = $1; gsub(",", "", n)
            f = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", f); sub(/^[^:]*:/, "", f)
            s[f] += n
        }
        END { for (f in s) printf "%d\t%s\n", s[f], f }'
}

echo "$what${ENCODE:+ (encoding $ENCODE)} with $workers worker(s) over $cap ($packets packets), under cachegrind"
base=$(count base)
here=$(count here)
awk -v rev="$rev" -v b="$base" -v h="$here" -v p="$packets" 'BEGIN {
    printf "%-10s %15s %12s\n", "build", "instructions", "per packet"
    printf "%-10s %15d %12.0f\n", rev, b, b / p
    printf "%-10s %15d %12.0f\n", "here", h, h / p
    printf "here / %s: %.4f\n", rev, h / b
}'
echo
echo "top $top functions here, and at $rev (instructions per packet)"
by_function base >"$work/base.fn"
by_function here | sort -t $'\t' -k1,1nr | head -n "$top" |
    awk -F '\t' -v p="$packets" -v rev="$rev" -v base="$work/base.fn" '
        BEGIN {
            while ((getline line < base) > 0) { split(line, x, "\t"); b[x[2]] = x[1] }
            printf "%10s %10s  %s\n", "here", rev, "function"
        }
        { printf "%10.1f %10.1f  %s\n", $1 / p, b[$2] / p, $2 }'
