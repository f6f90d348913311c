#!/usr/bin/env bash
# Backup benchmark (not part of the test run): builds databases of about 50 MB and
# 200 MB on the MariaDB that scripts/test.sh starts, then measures wall time and
# peak RSS of `portcullis backup run` (dump + zstd + AES-256-GCM chunked
# encryption, local key, local directory) against
# `mariadb-dump --single-transaction | zstd -1` (no encryption) on the same data,
# and of `portcullis backup verify` and `portcullis backup restore` against
# `zstd -d | mariadb` loading that dump. A backup that does not verify, does not
# restore, or restores to other checksums fails the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}"
command -v zstd >/dev/null && [ -x /usr/bin/time ] || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zstd time; }
# The binary in $PORTCULLIS_BIN_DIR (scripts/bench.sh: the release build), else a bench-profile build.
[ -n "${PORTCULLIS_BIN_DIR:-}" ] || cargo build -q --profile bench -p portcullis-cli
bin="${PORTCULLIS_BIN_DIR:-$CARGO_TARGET_DIR/release}/portcullis"
work=$(mktemp -d /var/tmp/portcullis-bench-backup.XXXX)
trap 'rm -rf "$work"' EXIT
url_base="mysql://portcullis_test:portcullis_test@127.0.0.1:3306"

printf '%-8s %-10s %-34s %10s %12s %12s\n' rows "data MB" tool "seconds" "peak RSS MB" "output MB"
# 768 random hex characters per row: about 1 KiB on disk, half-compressible like real data.
random="CONCAT($(printf 'MD5(RAND()),%.0s' $(seq 1 23))MD5(RAND()))"
for doublings in 16 18; do
  db="pc_bench_backup_$doublings"
  mariadb -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db;
    CREATE TABLE $db.rows (id BIGINT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL, payload VARCHAR(1024) NOT NULL) ENGINE=InnoDB;
    INSERT INTO $db.rows (n, payload) VALUES (1, $random);"
  for _ in $(seq 1 "$doublings"); do
    mariadb -e "INSERT INTO $db.rows (n, payload) SELECT n + 1, $random FROM $db.rows;"
  done
  mb=$(mariadb -N -e "SELECT ROUND(SUM(LENGTH(payload) + 12) / 1048576) FROM $db.rows")
  rows=$(mariadb -N -e "SELECT COUNT(*) FROM $db.rows")

  out="$work/ours-$db"
  ours=(env PORTCULLIS_STORE=mysql PORTCULLIS_DATABASE_URL="$url_base/$db" \
    PORTCULLIS_LOCAL_KEY_FILE="$work/master.key" PORTCULLIS_BACKUP_DIR="$out" PORTCULLIS_LOG=warn "$bin" backup)
  /usr/bin/time -f "%e %M" -o "$work/time" "${ours[@]}" run >"$work/manifest.json"
  read -r secs kb < "$work/time"
  id=$(sed -n 's/^  "backup_id": "\([0-9a-f-]*\)",$/\1/p' "$work/manifest.json")
  [ -n "$id" ] || { echo "no backup id in the output of backup run" >&2; exit 1; }
  size=$(du -sm "$out" | cut -f1)
  printf '%-8s %-10s %-34s %10s %12s %12s\n' "$rows" "$mb" "portcullis backup run" "$secs" "$((kb / 1024))" "$size"
  ours_secs=$secs ours_mb=$((kb / 1024))

  /usr/bin/time -f "%e %M" -o "$work/time" sh -c "mariadb-dump --single-transaction $db | zstd -1 -q > $work/dump.zst"
  read -r secs kb < "$work/time"
  size=$(du -sm "$work/dump.zst" | cut -f1)
  printf '%-8s %-10s %-34s %10s %12s %12s\n' "$rows" "$mb" "mariadb-dump | zstd -1 (no crypto)" "$secs" "$((kb / 1024))" "$size"
  printf 'ROW\tbackup of %s MB: time / peak RSS (MB/s)\t%s s / %s MB (%s MB/s)\tmariadb-dump piped to zstd -1: %s s / %s MB\t%s time\n' \
    "$mb" "$ours_secs" "$ours_mb" "$(awk -v m="$mb" -v s="$ours_secs" 'BEGIN {printf "%.0f", m / s}')" \
    "$secs" "$((kb / 1024))" "$(awk -v a="$ours_secs" -v b="$secs" 'BEGIN {printf "%.2fx", a / b}')"

  # Verify: the whole backup decrypted, decompressed and counted; no database written.
  /usr/bin/time -f "%e %M" -o "$work/time" "${ours[@]}" verify "$id" >/dev/null
  read -r secs kb < "$work/time"
  printf '%-8s %-10s %-34s %10s %12s %12s\n' "$rows" "$mb" "portcullis backup verify" "$secs" "$((kb / 1024))" -
  verify_secs=$secs verify_mb=$((kb / 1024))

  # Restore into an empty database of the same schema (an operator's target), then
  # the same data through mariadb-dump's SQL, each checked against the source.
  source_sum=$(mariadb -N -e "CHECKSUM TABLE $db.rows" | cut -f2)
  mariadb -e "DROP DATABASE IF EXISTS ${db}_ours; CREATE DATABASE ${db}_ours; CREATE TABLE ${db}_ours.rows LIKE $db.rows;
    DROP DATABASE IF EXISTS ${db}_dump; CREATE DATABASE ${db}_dump;"
  /usr/bin/time -f "%e %M" -o "$work/time" "${ours[@]}" restore "$id" --into "$url_base/${db}_ours" >/dev/null
  read -r secs kb < "$work/time"
  restored_sum=$(mariadb -N -e "CHECKSUM TABLE ${db}_ours.rows" | cut -f2)
  [ "$restored_sum" = "$source_sum" ] || { echo "restore: checksum $restored_sum, source $source_sum" >&2; exit 1; }
  printf '%-8s %-10s %-34s %10s %12s %12s\n' "$rows" "$mb" "portcullis backup restore" "$secs" "$((kb / 1024))" -
  restore_secs=$secs restore_mb=$((kb / 1024))
  /usr/bin/time -f "%e %M" -o "$work/time" sh -c "zstd -dc $work/dump.zst | mariadb ${db}_dump"
  read -r secs kb < "$work/time"
  loaded_sum=$(mariadb -N -e "CHECKSUM TABLE ${db}_dump.rows" | cut -f2)
  [ "$loaded_sum" = "$source_sum" ] || { echo "mariadb load: checksum $loaded_sum, source $source_sum" >&2; exit 1; }
  printf '%-8s %-10s %-34s %10s %12s %12s\n' "$rows" "$mb" "zstd -d | mariadb (no crypto)" "$secs" "$((kb / 1024))" -
  printf 'ROW\tverify of %s MB: time / peak RSS\t%s s / %s MB\t(no database written)\t-\n' "$mb" "$verify_secs" "$verify_mb"
  printf 'ROW\trestore of %s MB: time / peak RSS\t%s s / %s MB\tzstd -d piped to mariadb: %s s / %s MB\t%s time\n' \
    "$mb" "$restore_secs" "$restore_mb" "$secs" "$((kb / 1024))" \
    "$(awk -v a="$restore_secs" -v b="$secs" 'BEGIN {printf "%.2fx", a / b}')"
  mariadb -e "DROP DATABASE $db; DROP DATABASE ${db}_ours; DROP DATABASE ${db}_dump"
done
