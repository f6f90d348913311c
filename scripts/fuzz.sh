#!/usr/bin/env bash
# Fuzzes the authorizer's event and token parsing with libFuzzer (cargo fuzz) for a
# bounded time, seeded with events/authorizer. Not part of the default test run.
#   scripts/fuzz.sh [seconds]      (default 120)
# cargo fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 enables them on
# the stable toolchain, which is the only one this project installs.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-120}"
export CARGO_TARGET_DIR="${CARGO_FUZZ_TARGET_DIR:-/var/tmp/portcullis-fuzz-target}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/authorizer fuzz/artifacts/authorizer
cp -n events/authorizer/*.json fuzz/corpus/authorizer/ 2>/dev/null || true
cd fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run authorizer --sanitizer none -- \
  -max_total_time="$SECONDS_TO_RUN" -max_len=16384 -print_final_stats=1 2>&1 | tee /tmp/portcullis-fuzz.log | tail -20
crashes=$(find artifacts/authorizer -type f 2>/dev/null | wc -l)
echo "fuzz: $(grep -o 'stat::number_of_executed_units: *[0-9]*' /tmp/portcullis-fuzz.log | tail -1), crashes: $crashes"
[ "$crashes" -eq 0 ]
