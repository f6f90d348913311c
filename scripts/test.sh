#!/usr/bin/env bash
# Runs every Portcullis test on a Debian machine. Installs and starts what the
# tests need when it is missing: MariaDB, oathtool and valgrind (Debian packages)
# and the moto AWS emulator (PyPI, in a virtualenv). Then: format, SQL-splicing
# check, clippy, build, the authorizer's instruction-count guard, and the whole
# test suite (unit + integration on real MariaDB and moto).
#
#   scripts/test.sh            # everything
#   scripts/test.sh -- NAME    # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
TOOLS="${PORTCULLIS_TOOLS_DIR:-/var/tmp/portcullis-tools}"
MOTO_PORT="${PORTCULLIS_MOTO_PORT:-5000}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
say() { printf '\n== %s\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

say "System packages"
missing=()
[ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v mariadb >/dev/null || missing+=(mariadb-client)
command -v oathtool >/dev/null || missing+=(oathtool)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v openssl >/dev/null || missing+=(openssl)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "all present"
fi

say "MariaDB"
# TLS for the database tests: a throw-away CA signs the server's certificate
# (localhost, 127.0.0.1); a second CA signs nothing, and must be refused.
tls="$TOOLS/mariadb-tls"
if [ ! -s "$tls/server.pem" ]; then
  mkdir -p "$tls"
  for ca in ca other-ca; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=Portcullis test $ca" -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign -keyout "$tls/$ca-key.pem" -out "$tls/$ca.pem" 2>/dev/null
  done
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$tls/server-key.pem" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/server.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" -CAcreateserial \
    -days 3650 -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
  $SUDO chown root:mysql "$tls/server-key.pem"
  chmod 0640 "$tls/server-key.pem"
fi
export PORTCULLIS_TEST_MYSQL_CA="$tls/ca.pem" PORTCULLIS_TEST_MYSQL_OTHER_CA="$tls/other-ca.pem"
# A server started without TLS (by hand, or before this set-up existed) is restarted with it.
if $SUDO mariadb-admin ping >/dev/null 2>&1 && [ "$($SUDO mariadb -N -e 'SELECT @@have_ssl')" != YES ]; then
  echo "restarting MariaDB with TLS"
  $SUDO mariadb-admin shutdown
fi
if ! $SUDO mariadb-admin ping >/dev/null 2>&1; then
  $SUDO mkdir -p /run/mysqld
  $SUDO chown mysql:mysql /run/mysqld
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql \
    --ssl-ca="$tls/ca.pem" --ssl-cert="$tls/server.pem" --ssl-key="$tls/server-key.pem"
  for _ in $(seq 1 120); do $SUDO mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
$SUDO mariadb-admin ping
echo "TLS: $($SUDO mariadb -N -e 'SELECT @@have_ssl')"
# A server that was stopped without a clean shutdown can leave the Aria system
# tables (mysql.global_priv, mysql.roles_mapping) marked crashed, and then GRANT
# fails with "Can't find any matching row". Check them and repair what is broken.
$SUDO mariadb-check --auto-repair --silent mysql
$SUDO mariadb -e 'FLUSH PRIVILEGES'
# The test suite's administrator: creates a throw-away database per test, applies
# the schema and the least-privilege roles to it. Loopback-only test server.
$SUDO mariadb <<'SQL'
CREATE USER IF NOT EXISTS 'portcullis_test'@'%' IDENTIFIED BY 'portcullis_test';
GRANT ALL PRIVILEGES ON *.* TO 'portcullis_test'@'%' WITH GRANT OPTION;
SQL
# Throw-away databases, users and roles of earlier runs (all named pct_*).
$SUDO mariadb -N -e "
  SELECT CONCAT('DROP DATABASE IF EXISTS \`', schema_name, '\`;') FROM information_schema.schemata WHERE schema_name LIKE 'pct\_%'
  UNION ALL SELECT CONCAT('DROP USER IF EXISTS ', QUOTE(user), '@', QUOTE(host), ';') FROM mysql.user WHERE is_role = 'N' AND user LIKE 'pct\_%'
  UNION ALL SELECT CONCAT('DROP ROLE IF EXISTS ', QUOTE(user), ';') FROM mysql.user WHERE is_role = 'Y' AND user LIKE 'pct\_%'" \
  | $SUDO mariadb

say "moto (AWS emulator)"
if ! port_open "$MOTO_PORT"; then
  if [ ! -x "$TOOLS/venv/bin/moto_server" ]; then
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install -q --upgrade pip
    "$TOOLS/venv/bin/pip" install -q 'moto[server]'
  fi
  nohup "$TOOLS/venv/bin/python" scripts/moto_server.py 127.0.0.1 "$MOTO_PORT" >"$TOOLS/moto.log" 2>&1 &
  for _ in $(seq 1 120); do port_open "$MOTO_PORT" && break; sleep 0.5; done
fi
port_open "$MOTO_PORT" && echo "listening on 127.0.0.1:$MOTO_PORT"

say "PyJWT (independent token forger for the attack tests)"
if ! "$TOOLS/venv/bin/python" -c 'import jwt, cryptography' 2>/dev/null; then
  "$TOOLS/venv/bin/pip" install -q pyjwt cryptography
fi
"$TOOLS/venv/bin/python" -c 'import jwt; print("PyJWT", jwt.__version__)'
export PORTCULLIS_TEST_PYTHON="$TOOLS/venv/bin/python"

say "Infrastructure as code: cfn-lint and checkov on infra/template.yaml and examples/notes/template.yaml"
if [ ! -x "$TOOLS/venv/bin/cfn-lint" ] || [ ! -x "$TOOLS/venv/bin/checkov" ]; then
  "$TOOLS/venv/bin/pip" install -q cfn-lint checkov
fi
for template in infra/template.yaml examples/notes/template.yaml; do
  "$TOOLS/venv/bin/cfn-lint" "$template"
  echo "cfn-lint $template: no findings"
  # Offline (--skip-download): zero failed checks; every skip is written in the template with its reason.
  "$TOOLS/venv/bin/checkov" -f "$template" --framework cloudformation --quiet --compact --skip-download
done

export PORTCULLIS_TEST_MYSQL_URL="${PORTCULLIS_TEST_MYSQL_URL:-mysql://portcullis_test:portcullis_test@127.0.0.1:3306}"
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:$MOTO_PORT}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
export AWS_REGION="${AWS_REGION:-us-east-1}"

say "Format"
cargo fmt --all -- --check

say "Clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

say "Build binaries (the Lambda Runtime API and local-server tests run them)"
cargo build --workspace --bins --quiet

say "Performance regression guard (callgrind instruction counts of the authorizer)"
scripts/regression-guard.sh

say "Tests"
shift_args=()
if [ "${1:-}" = "--" ]; then shift; shift_args=("$@"); fi
cargo test --workspace --no-fail-fast "${shift_args[@]}"
