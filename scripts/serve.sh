#!/usr/bin/env bash
# Runs Portcullis locally: the whole HTTP contract on 127.0.0.1:8080 (PORTCULLIS_ADDR
# overrides). Everything is kept in ./.portcullis/: the SQLite database portcullis.db
# (accounts, sessions, second factors, API keys, audit trail; survives restarts) and
# the local master key. No external service is needed. Extra arguments go to
# `portcullis serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
exec cargo run --quiet -p portcullis-cli --bin portcullis -- serve "$@"
