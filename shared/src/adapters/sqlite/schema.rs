//! The embedded schema: the MySQL tables (`infra/mysql/migrations`) plus the
//! items the DynamoDB table holds, in SQLite's STRICT tables. Migrations run at
//! open, in order, each in one transaction with the `user_version` it reaches.

use super::classify;
use crate::store::StoreError;
use rusqlite::Connection;

/// Each entry takes the schema from version `i` to `i + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: every port.
    "CREATE TABLE users (
        id BLOB NOT NULL PRIMARY KEY,
        email_index BLOB NOT NULL UNIQUE,
        email_ciphertext BLOB NOT NULL,
        password_hash TEXT NOT NULL,
        mfa_enabled INTEGER NOT NULL DEFAULT 0,
        totp_secret_ciphertext BLOB,
        totp_pending_ciphertext BLOB,
        totp_last_step INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE user_roles (
        user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        granted_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, role)
    ) STRICT;
    CREATE INDEX user_roles_role ON user_roles (role);
    CREATE TABLE recovery_codes (
        user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        code_hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        used_at INTEGER,
        PRIMARY KEY (user_id, code_hash)
    ) STRICT;
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        occurred_at INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        outcome TEXT NOT NULL,
        subject TEXT,
        actor TEXT,
        source_ip TEXT,
        user_agent TEXT,
        request_id TEXT,
        reason TEXT,
        detail TEXT
    ) STRICT;
    -- Append-only, as the MySQL grants make it there.
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TABLE key_material (
        purpose TEXT NOT NULL,
        generation INTEGER NOT NULL,
        kid TEXT NOT NULL UNIQUE,
        public_key BLOB NOT NULL,
        wrapped_key BLOB NOT NULL,
        sealed BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER,
        PRIMARY KEY (purpose, generation)
    ) STRICT;
    CREATE TABLE sessions (
        user_id TEXT NOT NULL,
        sid TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL,
        revoked_at INTEGER,
        user_agent TEXT,
        ip TEXT,
        amr TEXT NOT NULL,
        auth_time INTEGER NOT NULL,
        roles TEXT NOT NULL,
        roles_version INTEGER NOT NULL,
        head BLOB,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, sid)
    ) STRICT;
    CREATE TABLE refresh_tokens (
        hash BLOB NOT NULL PRIMARY KEY,
        user_id TEXT NOT NULL,
        sid TEXT NOT NULL,
        spent_at INTEGER,
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE api_keys (
        key_id TEXT NOT NULL PRIMARY KEY,
        name TEXT NOT NULL,
        hash BLOB NOT NULL,
        permissions TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        valid_until INTEGER NOT NULL,
        revoked_at INTEGER,
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX api_keys_created_by ON api_keys (created_by);
    CREATE TABLE mfa_challenges (
        hash BLOB NOT NULL PRIMARY KEY,
        user_id TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        throttle_key TEXT,
        device_token TEXT
    ) STRICT;
    CREATE TABLE attempt_counters (
        key TEXT NOT NULL PRIMARY KEY,
        failures INTEGER NOT NULL,
        window_start INTEGER NOT NULL,
        locked_until INTEGER NOT NULL,
        level INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;",
    // 2: pending one-time tokens (the links of security mail), one per account and purpose.
    "CREATE TABLE pending_tokens (
        user_id TEXT NOT NULL,
        purpose TEXT NOT NULL,
        hash BLOB NOT NULL,
        expires_at INTEGER NOT NULL,
        detail TEXT,
        PRIMARY KEY (user_id, purpose)
    ) STRICT;",
];

/// The schema version this build writes.
pub(super) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations the file has not seen; refuses a file written by a
/// newer build (its schema is unknown here).
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(classify)?;
    if current > VERSION {
        return Err(StoreError::Corrupt("the SQLite file has a newer schema than this build"));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx =
            conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(classify)?;
        tx.execute_batch(sql).map_err(classify)?;
        tx.pragma_update(None, "user_version", i as i64 + 1).map_err(classify)?;
        tx.commit().map_err(classify)?;
    }
    Ok(())
}

/// Forgets what DynamoDB's TTL would have removed by `now`: sessions and refresh
/// tokens a day past their absolute timeout, expired API keys a day after
/// expiry, expired challenges and counters.
pub(super) fn forget_expired(conn: &Connection, now: i64) -> Result<(), StoreError> {
    for statement in [
        "DELETE FROM sessions WHERE expires_at <= ?1",
        "DELETE FROM refresh_tokens WHERE expires_at <= ?1",
        "DELETE FROM api_keys WHERE expires_at <= ?1",
        "DELETE FROM mfa_challenges WHERE expires_at <= ?1",
        "DELETE FROM attempt_counters WHERE expires_at <= ?1",
        "DELETE FROM pending_tokens WHERE expires_at <= ?1",
    ] {
        conn.execute(statement, [now]).map_err(classify)?;
    }
    Ok(())
}
