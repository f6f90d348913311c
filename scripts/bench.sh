#!/usr/bin/env bash
# Every Portcullis benchmark (not part of the test run), in release code
# generation, ending with one table: figure, Portcullis, comparison, ratio.
#   - login: argon2id versus everything else (in memory, and on MariaDB);
#     enumeration timing;
#   - tokens: issue/verify, and the refresh handler without DynamoDB;
#   - authorizer: decisions per second on one core (distinct and repeated tokens)
#     against aws-jwt-verify (npm, installed here) and the raw ES256 verify;
#   - cold start of every function binary through a local Lambda Runtime API,
#     peak RSS and binary size, against a lambda_runtime hello-world;
#   - local server: GET /me under wrk, 64 connections;
#   - backup: two database sizes against mariadb-dump | zstd -1.
# Starts MariaDB and moto through scripts/test.sh's set-up when they are not
# running. Takes about 40 minutes on 2 cores, most of it the builds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
TOOLS="${PORTCULLIS_TOOLS_DIR:-/var/tmp/portcullis-tools}"
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:${PORTCULLIS_MOTO_PORT:-5000}}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
log=$(mktemp /var/tmp/portcullis-bench.XXXX)
trap 'rm -f "$log"' EXIT

if ! mariadb-admin ping >/dev/null 2>&1 || ! (exec 3<>"/dev/tcp/127.0.0.1/${PORTCULLIS_MOTO_PORT:-5000}") 2>/dev/null; then
  echo "starting MariaDB and moto (scripts/test.sh set-up; its tests are not run)"
  scripts/test.sh -- --no-run >/dev/null
fi
command -v node >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
mkdir -p "$TOOLS/node"
if [ ! -d "$TOOLS/node/node_modules/aws-jwt-verify" ]; then
  (cd "$TOOLS/node" && npm install --silent --no-audit --no-fund aws-jwt-verify@5)
fi
export PORTCULLIS_NODE_MODULES="$TOOLS/node/node_modules"

# The artifacts that ship: the release profile (fat LTO, one codegen unit, stripped).
# Cold start, the load test and the backups run these copies; cargo bench below
# rebuilds some binaries in place with the bench profile.
echo "building the release binaries"
cargo build -q --release --bins
export PORTCULLIS_BIN_DIR="$CARGO_TARGET_DIR/shipped"
mkdir -p "$PORTCULLIS_BIN_DIR"
find "$CARGO_TARGET_DIR/release" -maxdepth 1 -type f -executable \( -name 'portcullis*' -o -name hello-lambda \) \
  -exec cp -f {} "$PORTCULLIS_BIN_DIR/" \;
echo "building the benchmarks (bench profile: release code generation, thin LTO)"
{
  cargo bench -q -p portcullis-login --bench login
  cargo bench -q -p portcullis-login --bench timing
  db="pc_bench_$$"
  mariadb -e "CREATE DATABASE $db"
  url="mysql://portcullis_test:portcullis_test@127.0.0.1:3306/$db"
  "$PORTCULLIS_BIN_DIR/portcullis" db migrate --url "$url" >/dev/null
  PORTCULLIS_BENCH_MYSQL_URL="$url" cargo bench -q -p portcullis-login --bench login
  mariadb -e "DROP DATABASE $db"
  cargo bench -q -p portcullis-refresh --bench tokens
  cargo bench -q -p portcullis-authorizer --bench decisions
  cargo bench -q -p portcullis-tests --bench coldstart
  scripts/bench-load.sh
  scripts/bench-backup.sh
} 2>&1 | tee "$log" | grep -v '^ROW'

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
echo
echo "Machine: $cpu, $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr); $(rustc --version | cut -d' ' -f1-2); $(date -u +%Y-%m-%d)"
echo
echo "| figure | Portcullis | comparison | ratio |"
echo "| --- | --- | --- | --- |"
awk -F'\t' '/^ROW\t/ {printf "| %s | %s | %s | %s |\n", $2, $3, $4, $5}' "$log"
