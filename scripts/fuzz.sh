#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default: $FUZZ_SECONDS,
# else 60) with cargo fuzz on the nightly toolchain, and fails on the first
# crash, hang (10 s per input) or runaway memory (2 GiB). Seeds: the fixtures,
# the public captures in ../shared/data (when present) and the committed
# regression inputs in fuzz/regressions/. The corpus each run grows is kept in
# target/fuzz/corpus/ (not committed); a crashing input lands in
# target/fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-${FUZZ_SECONDS:-60}}
targets=(pcap_to_spans decode_frame encode_spans settings flags config_file bpf_filter)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: error: the nightly toolchain is missing (rustup toolchain list); the fuzz targets need it" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: error: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 1
fi

work=$PWD/target/fuzz
rm -rf "$work/seeds"
mkdir -p "$work/seeds/pcap_to_spans" "$work/artifacts"
captures=(testdata/pcap/*)
if [ -d ../shared/data ]; then
  while IFS= read -r -d '' f; do captures+=("$f"); done \
    < <(find ../shared/data -type f \( -name '*.pcap' -o -name '*.pcapng' \) -print0 | sort -z)
fi
for i in "${!captures[@]}"; do
  cp "${captures[$i]}" "$work/seeds/pcap_to_spans/$i-$(basename "${captures[$i]}")"
done
cargo run --release --quiet -p flowspan-capture-pcap --example split-frames -- \
  "$work/seeds/decode_frame" "${captures[@]}"

echo "fuzz: building the targets (nightly, sanitizer coverage, debug assertions)"
(cd fuzz && cargo +nightly fuzz build --sanitizer none)
for t in "${targets[@]}"; do
  # The first directory is the corpus the run adds to; the others are read.
  dirs=("$work/corpus/$t")
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  for d in "$work/seeds/$t" "$PWD/fuzz/regressions/$t"; do
    if [ -d "$d" ]; then dirs+=("$d"); fi
  done
  log="$work/$t.log"
  if ! (cd fuzz && cargo +nightly fuzz run --sanitizer none "$t" "${dirs[@]}" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1) >"$log" 2>&1; then
    grep -E "panicked|ERROR|SUMMARY|Test unit written" -A4 "$log" | head -40 >&2
    echo "fuzz: $t failed after $(grep -c . "$log") log lines; the input is in $work/artifacts/$t/, the log in $log" >&2
    exit 1
  fi
  runs=$(grep -oE 'Done [0-9]+ runs in [0-9]+' "$log" | tail -1 | sed -E 's/Done ([0-9]+) runs in ([0-9]+)/\1 runs in \2 s/')
  echo "fuzz: $t: ${runs:-? runs}, corpus $(find "$work/corpus/$t" -type f | wc -l) inputs, no crash"
done
