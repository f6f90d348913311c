#!/usr/bin/env bash
# Performance regression guard (part of scripts/test.sh): counts the instructions
# of 200 authorizer decisions and of 200 bare ES256 verifications of the same
# signatures under callgrind, and fails when a decision costs more than
# PORTCULLIS_GUARD_MAX_RATIO (default 1.5) verifications, or when a decision
# under a team policy of 200 owner routes costs more than
# PORTCULLIS_GUARD_MAX_TEAM_RATIO (default 1.2) decisions under today's. Instruction counts are
# deterministic, so this does not depend on the machine's speed or load.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
max="${PORTCULLIS_GUARD_MAX_RATIO:-1.5}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
command -v valgrind >/dev/null || {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq valgrind >/dev/null
}
cargo build -q -p portcullis-authorizer --example instructions
bin="$CARGO_TARGET_DIR/debug/examples/instructions"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
  valgrind -q --tool=callgrind --callgrind-out-file="$out/$1" --collect-atstart=no \
    --toggle-collect="*::$1" "$bin" >/dev/null
  awk '/^totals:/ {print $2}' "$out/$1"
}
decide=$(count decide_all)
verify=$(count verify_all)
team=$(count decide_team_all)
[ "${decide:-0}" -gt 0 ] && [ "${verify:-0}" -gt 0 ] && [ "${team:-0}" -gt 0 ] || { echo "callgrind counted nothing" >&2; exit 1; }
ratio=$(awk -v d="$decide" -v v="$verify" 'BEGIN {printf "%.3f", d / v}')
printf 'authorizer decision: %d instructions; bare ES256 verify: %d; ratio %s (limit %s)\n' \
  $((decide / 200)) $((verify / 200)) "$ratio" "$max"
awk -v r="$ratio" -v m="$max" 'BEGIN {exit !(r <= m)}' || {
  echo "regression: an authorizer decision costs more than $max bare signature verifications" >&2
  exit 1
}
# A team's policy of 200 owner routes (each request on the last) against today's.
team_max="${PORTCULLIS_GUARD_MAX_TEAM_RATIO:-1.2}"
team_ratio=$(awk -v t="$team" -v d="$decide" 'BEGIN {printf "%.3f", t / d}')
printf 'decision under a 200-route team policy: %d instructions; ratio to today'"'"'s %s (limit %s)\n' \
  $((team / 200)) "$team_ratio" "$team_max"
awk -v r="$team_ratio" -v m="$team_max" 'BEGIN {exit !(r <= m)}' || {
  echo "regression: a decision under a 200-route policy costs more than $team_max decisions under today's" >&2
  exit 1
}
