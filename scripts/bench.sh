#!/usr/bin/env bash
# Runs Portcullis' benchmarks (not part of the test run) and prints their numbers:
# login (argon2id versus everything else; also on MariaDB when scripts/test.sh has
# started it), token issue/verify and refresh, and authorizer decisions against
# aws-jwt-verify (installed here from npm) and the raw ES256 verify.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
TOOLS="${PORTCULLIS_TOOLS_DIR:-/var/tmp/portcullis-tools}"

mkdir -p "$TOOLS/node"
if [ ! -d "$TOOLS/node/node_modules/aws-jwt-verify" ]; then
  (cd "$TOOLS/node" && npm install --silent --no-audit --no-fund aws-jwt-verify@5)
fi
export PORTCULLIS_NODE_MODULES="$TOOLS/node/node_modules"

cargo bench -q -p portcullis-login --bench login
cargo bench -q -p portcullis-login --bench timing
if mariadb-admin ping >/dev/null 2>&1; then
  db="pc_bench_$$"
  mariadb -e "CREATE DATABASE $db"
  url="mysql://portcullis_test:portcullis_test@127.0.0.1:3306/$db"
  cargo run -q -p portcullis-cli -- db migrate --url "$url" >/dev/null
  PORTCULLIS_BENCH_MYSQL_URL="$url" cargo bench -q -p portcullis-login --bench login
  mariadb -e "DROP DATABASE $db"
fi
cargo bench -q -p portcullis-refresh --bench tokens
cargo bench -q -p portcullis-authorizer --bench decisions
# Cold start needs the function binaries of the same profile and the test services.
cargo build -q --profile bench --bins
cargo bench -q -p portcullis-tests --bench coldstart
