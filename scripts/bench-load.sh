#!/usr/bin/env bash
# Load test of the local server (not part of the test run): `GET /me` through the
# authorizer (ES256 verify, session lookup, RBAC) and then the login function, with
# wrk (Debian package), 64 connections for 10 s, against `GET /health` on the same
# server (no authorizer, no store) as the in-run baseline. In-memory stores.
# Runs the `portcullis` binary in $PORTCULLIS_BIN_DIR (scripts/bench.sh points it at
# the release build), else a bench-profile build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
command -v wrk >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
[ -n "${PORTCULLIS_BIN_DIR:-}" ] || cargo build -q --profile bench -p portcullis-cli
bin="${PORTCULLIS_BIN_DIR:-$CARGO_TARGET_DIR/release}/portcullis"
work=$(mktemp -d /var/tmp/portcullis-bench-load.XXXX)
port=$((20000 + RANDOM % 20000))
(cd "$work" && PORTCULLIS_LOG=error exec "$bin" serve --addr "127.0.0.1:$port" >/dev/null 2>&1) &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

body='{"email":"load@example.com","password":"correct horse battery staple 42"}'
curl -sf -X POST -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$port/auth/register" >/dev/null
token=$(curl -sf -X POST -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$port/auth/login" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" "http://127.0.0.1:$port/me")" = 200 ]

# wrk: one thread (the server has the other core), 64 connections, 10 s.
load() { wrk -t1 -c64 -d10s --latency "$@"; }
parse() { # prints "requests/s p99-ms"
  awk '/Requests\/sec/ {rps=$2} /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p99=v}
       END {printf "%.0f %.2f\n", rps, p99}'
}
me=$(load -H "authorization: Bearer $token" "http://127.0.0.1:$port/me" | tee "$work/me.txt" | parse)
health=$(load "http://127.0.0.1:$port/health" | tee "$work/health.txt" | parse)
read -r me_rps me_p99 <<<"$me"
read -r h_rps h_p99 <<<"$health"
echo "local server load (wrk, 1 thread, 64 connections, 10 s, in-memory stores)"
printf '  GET /me (authorizer + login)   %9s req/s   p99 %7s ms\n' "$me_rps" "$me_p99"
printf '  GET /health (no authorizer)    %9s req/s   p99 %7s ms\n' "$h_rps" "$h_p99"
grep -E "Non-2xx|Socket errors" "$work/me.txt" && { echo "errors under load" >&2; exit 1; }
printf 'ROW\tlocal server GET /me, 64 connections\t%s req/s, p99 %s ms\tGET /health %s req/s, p99 %s ms\t%s\n' \
  "$me_rps" "$me_p99" "$h_rps" "$h_p99" "$(awk -v a="$me_rps" -v b="$h_rps" 'BEGIN {printf "%.2fx", a / b}')"
