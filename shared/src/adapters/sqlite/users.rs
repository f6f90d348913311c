//! Users, their roles and their second factors (`UserStore`, `MfaStore`): the
//! MySQL adapter's statements, in SQLite.

use super::{classify, fixed, SqliteStore};
use crate::domain::{Role, UserId};
use crate::store::{
    BlindIndex, CodeHash, MfaRow, MfaState, MfaStore, NewUser, RoleRemoval, StoreError, UserRecord,
    UserStore, UserSummary,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// id, email ciphertext, password hash, MFA on, created at.
type UserRow = (Vec<u8>, Vec<u8>, String, bool, i64);

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

fn user_record(
    (id, email_ciphertext, password_hash, mfa_enabled, created_at): UserRow,
) -> Result<UserRecord, StoreError> {
    let id = UserId::from_bytes(fixed(id, "users.id")?);
    Ok(UserRecord { id, email_ciphertext, password_hash, mfa_enabled, created_at })
}

fn parse_roles(names: Vec<String>) -> Result<Vec<Role>, StoreError> {
    names.iter().map(|n| Role::parse(n).map_err(|_| StoreError::Corrupt("user_roles.role"))).collect()
}

fn roles_of(conn: &Connection, id: &[u8]) -> Result<Vec<Role>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT role FROM user_roles WHERE user_id = ?1 ORDER BY role")
        .map_err(classify)?;
    let names = stmt.query_map([id], |r| r.get(0)).map_err(classify)?;
    parse_roles(names.collect::<Result<_, _>>().map_err(classify)?)
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn insert_user(&self, user: &NewUser) -> Result<(), StoreError> {
        let user = user.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO users (id, email_index, email_ciphertext, password_hash, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![user.id.as_bytes(), user.email_index, user.email_ciphertext, user.password_hash, user.created_at],
            )
            .map_err(classify)?;
            for role in &user.roles {
                tx.execute(
                    "INSERT INTO user_roles (user_id, role, granted_at) VALUES (?1, ?2, ?3)",
                    params![user.id.as_bytes(), role.as_str(), user.created_at],
                )
                .map_err(classify)?;
            }
            Ok(())
        })
        .await
    }

    async fn find_by_email_index(&self, index: &BlindIndex) -> Result<Option<UserRecord>, StoreError> {
        let index = *index;
        let row = self
            .run(move |conn| {
                conn.prepare_cached(
                    "SELECT id, email_ciphertext, password_hash, mfa_enabled, created_at FROM users \
                     WHERE email_index = ?1",
                )
                .and_then(|mut s| s.query_row([index], user_from_row).optional())
                .map_err(classify)
            })
            .await?;
        row.map(user_record).transpose()
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        let row = self
            .run(move |conn| {
                conn.prepare_cached(
                    "SELECT id, email_ciphertext, password_hash, mfa_enabled, created_at FROM users WHERE id = ?1",
                )
                .and_then(|mut s| s.query_row([id.as_bytes()], user_from_row).optional())
                .map_err(classify)
            })
            .await?;
        row.map(user_record).transpose()
    }

    async fn set_password_hash(&self, id: UserId, phc: &str, now: i64) -> Result<(), StoreError> {
        let phc = phc.to_owned();
        self.run(move |conn| {
            conn.execute(
                "UPDATE users SET password_hash = ?1, updated_at = ?2 WHERE id = ?3",
                params![phc, now, id.as_bytes()],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn roles_of(&self, id: UserId) -> Result<Vec<Role>, StoreError> {
        self.run(move |conn| roles_of(conn, &id.as_bytes())).await
    }

    async fn grant_role(&self, id: UserId, role: &Role, now: i64) -> Result<(), StoreError> {
        let role = role.as_str().to_owned();
        self.run(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO user_roles (user_id, role, granted_at) VALUES (?1, ?2, ?3)",
                params![id.as_bytes(), role, now],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn revoke_role(&self, id: UserId, role: &Role) -> Result<(), StoreError> {
        let role = role.as_str().to_owned();
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM user_roles WHERE user_id = ?1 AND role = ?2",
                params![id.as_bytes(), role],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn revoke_role_checked(&self, removal: RoleRemoval<'_>) -> Result<bool, StoreError> {
        let RoleRemoval { id, role, watched, may_revoke } = removal;
        // The check is the caller's borrowed closure, which cannot go to a
        // blocking thread: the transaction is held across it instead (the
        // connection is not released in between, and BEGIN IMMEDIATE holds the
        // write lock), then finished by a second step.
        let watched: Vec<String> = watched.iter().map(|r| r.as_str().to_owned()).collect();
        let mut held = self.conn.clone().lock_owned().await;
        let (held, assignments) = tokio::task::spawn_blocking(move || {
            let assignments = begin_and_read_assignments(&mut held, &watched);
            (held, assignments)
        })
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let allowed = match &assignments {
            Ok(assignments) => may_revoke(assignments),
            Err(_) => false,
        };
        let role = role.as_str().to_owned();
        let finished = tokio::task::spawn_blocking(move || {
            let sql = if allowed {
                held.execute(
                    "DELETE FROM user_roles WHERE user_id = ?1 AND role = ?2",
                    params![id.as_bytes(), role],
                )
                .map_err(classify)?;
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            held.execute_batch(sql).map_err(classify)
        })
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        assignments?;
        finished?;
        Ok(allowed)
    }

    async fn exists(&self, id: UserId) -> Result<bool, StoreError> {
        self.run(move |conn| {
            conn.prepare_cached("SELECT 1 FROM users WHERE id = ?1")
                .and_then(|mut s| s.exists([id.as_bytes()]))
                .map_err(classify)
        })
        .await
    }

    async fn list_users(&self, after: Option<UserId>, limit: u32) -> Result<Vec<UserSummary>, StoreError> {
        let after = after.map(|a| a.as_bytes()).unwrap_or([0u8; 16]);
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, email_ciphertext, mfa_enabled, created_at FROM users WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(classify)?;
            let rows = stmt
                .query_map(params![after, limit], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(classify)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, email_ciphertext, mfa_enabled, created_at) = row.map_err(classify)?;
                let roles = roles_of(conn, &id)?;
                let id = UserId::from_bytes(fixed(id, "users.id")?);
                out.push(UserSummary { id, email_ciphertext, mfa_enabled, created_at, roles });
            }
            Ok(out)
        })
        .await
    }
}

/// Opens the write transaction of a checked removal and reads every assignment
/// of the watched roles under it.
fn begin_and_read_assignments(
    conn: &mut Connection,
    watched: &[String],
) -> Result<Vec<(UserId, Role)>, StoreError> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK").map_err(classify)?;
    }
    conn.execute_batch("BEGIN IMMEDIATE").map_err(classify)?;
    let mut out = Vec::new();
    let mut stmt = conn.prepare_cached("SELECT user_id FROM user_roles WHERE role = ?1").map_err(classify)?;
    for role in watched {
        let users = stmt.query_map([role], |r| r.get::<_, Vec<u8>>(0)).map_err(classify)?;
        for user in users {
            let user = UserId::from_bytes(fixed(user.map_err(classify)?, "user_roles.user_id")?);
            out.push((user, Role::parse(role).map_err(|_| StoreError::Corrupt("user_roles.role"))?));
        }
    }
    Ok(out)
}

#[async_trait]
impl MfaStore for SqliteStore {
    async fn mfa_state(&self, id: UserId) -> Result<Option<MfaState>, StoreError> {
        let row: Option<MfaRow> = self
            .run(move |conn| {
                conn.prepare_cached(
                    "SELECT mfa_enabled, email_ciphertext, totp_secret_ciphertext, totp_pending_ciphertext, \
                     totp_last_step FROM users WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([id.as_bytes()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()
                })
                .map_err(classify)
            })
            .await?;
        Ok(row.map(MfaState::from))
    }

    async fn set_pending(&self, id: UserId, ciphertext: &[u8], now: i64) -> Result<(), StoreError> {
        let ciphertext = ciphertext.to_vec();
        self.run(move |conn| {
            conn.execute(
                "UPDATE users SET totp_pending_ciphertext = ?1, updated_at = ?2 WHERE id = ?3",
                params![ciphertext, now, id.as_bytes()],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn activate(
        &self,
        id: UserId,
        step: i64,
        codes: &[CodeHash],
        now: i64,
    ) -> Result<bool, StoreError> {
        let codes = codes.to_vec();
        self.write(move |tx| {
            let changed = tx
                .execute(
                    "UPDATE users SET totp_secret_ciphertext = totp_pending_ciphertext, \
                     totp_pending_ciphertext = NULL, mfa_enabled = 1, totp_last_step = ?1, updated_at = ?2 \
                     WHERE id = ?3 AND totp_pending_ciphertext IS NOT NULL",
                    params![step, now, id.as_bytes()],
                )
                .map_err(classify)?;
            if changed != 1 {
                return Ok(false);
            }
            tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [id.as_bytes()]).map_err(classify)?;
            for code in &codes {
                tx.execute(
                    "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?1, ?2, ?3)",
                    params![id.as_bytes(), code, now],
                )
                .map_err(classify)?;
            }
            Ok(true)
        })
        .await
    }

    async fn accept_step(&self, id: UserId, step: i64) -> Result<bool, StoreError> {
        self.run(move |conn| {
            conn.execute(
                "UPDATE users SET totp_last_step = ?1 WHERE id = ?2 AND totp_secret_ciphertext IS NOT NULL \
                 AND (totp_last_step IS NULL OR totp_last_step < ?1)",
                params![step, id.as_bytes()],
            )
            .map(|n| n == 1)
            .map_err(classify)
        })
        .await
    }

    async fn use_recovery_code(&self, id: UserId, hash: &CodeHash, now: i64) -> Result<bool, StoreError> {
        let hash = *hash;
        self.run(move |conn| {
            conn.execute(
                "UPDATE recovery_codes SET used_at = ?1 WHERE user_id = ?2 AND code_hash = ?3 AND used_at IS NULL",
                params![now, id.as_bytes(), hash],
            )
            .map(|n| n == 1)
            .map_err(classify)
        })
        .await
    }

    async fn disable(&self, id: UserId, now: i64) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE users SET mfa_enabled = 0, totp_secret_ciphertext = NULL, totp_pending_ciphertext = NULL, \
                 totp_last_step = NULL, updated_at = ?1 WHERE id = ?2",
                params![now, id.as_bytes()],
            )
            .map_err(classify)?;
            tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [id.as_bytes()]).map_err(classify)?;
            Ok(())
        })
        .await
    }
}
