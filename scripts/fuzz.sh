#!/usr/bin/env bash
# Fuzzes the authorizer's events, tokens and API keys with libFuzzer (cargo fuzz),
# one process, seeded with fuzz/corpus/authorizer (and events/authorizer). Not
# part of the default test run.
#   scripts/fuzz.sh [seconds]          for a time (default 120)
#   scripts/fuzz.sh --runs N           for N executions
#   scripts/fuzz.sh ... -- FLAGS...    extra libFuzzer flags (e.g. -seed=1)
# Prints the executions, their rate, libFuzzer's final coverage (cov: edges,
# ft: features) and the crashes found; exits non-zero on a crash.
# cargo fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 enables them on
# the stable toolchain, which is the only one this project installs.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=(-max_total_time=120)
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) limit=(-runs="$2"); shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) limit=(-max_total_time="$1"); shift ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_FUZZ_TARGET_DIR:-/var/tmp/portcullis-fuzz-target}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
corpus=fuzz/corpus/authorizer
mkdir -p "$corpus" fuzz/artifacts/authorizer
# Mode 2 of the target takes whole events: the first byte selects it.
for event in events/authorizer/*.json; do
  { printf '\002'; cat "$event"; } >"$corpus/seed-event-$(basename "$event" .json)"
done
log=/tmp/portcullis-fuzz.log
cd fuzz
status=0
RUSTC_BOOTSTRAP=1 cargo fuzz run authorizer --sanitizer none -- \
  "${limit[@]}" -max_len=16384 -print_final_stats=1 "${extra[@]}" 2>&1 | tee "$log" | tail -20 || status=$?
crashes=$(find artifacts/authorizer -type f 2>/dev/null | wc -l)
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo 0)
rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo 0)
secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
final=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$final")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$final")
echo "fuzz: executions: $runs, execs/s: $rate, cov: ${cov:-?}, ft: ${ft:-?}, time: ${secs:-?}s, crashes: $crashes"
[ "$crashes" -eq 0 ] && [ "$status" -eq 0 ]
