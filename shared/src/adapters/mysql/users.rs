//! The user store on MySQL: users and their roles.

use super::{classify, role, user_id, MySqlStore};
use crate::domain::{Role, UserId};
use crate::store::{BlindIndex, NewUser, RoleRemoval, StoreError, UserRecord, UserStore, UserSummary};
use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;

type UserRow = (Vec<u8>, Vec<u8>, String, bool, i64);

fn user_from_row(
    (id, email_ciphertext, password_hash, mfa_enabled, created_at): UserRow,
) -> Result<UserRecord, StoreError> {
    Ok(UserRecord { id: user_id(id, "users.id")?, email_ciphertext, password_hash, mfa_enabled, created_at })
}

#[async_trait]
impl UserStore for MySqlStore {
    async fn insert_user(&self, user: &NewUser) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(classify)?;
        tx.exec_drop(
            "INSERT INTO users (id, email_index, email_ciphertext, password_hash, created_at, updated_at) \
             VALUES (?, ?, ?, ?, FROM_UNIXTIME(?), FROM_UNIXTIME(?))",
            (
                user.id.as_bytes().to_vec(),
                user.email_index.to_vec(),
                user.email_ciphertext.clone(),
                user.password_hash.clone(),
                user.created_at,
                user.created_at,
            ),
        )
        .await
        .map_err(classify)?;
        for role in &user.roles {
            tx.exec_drop(
                "INSERT INTO user_roles (user_id, role, granted_at) VALUES (?, ?, FROM_UNIXTIME(?))",
                (user.id.as_bytes().to_vec(), role.as_str(), user.created_at),
            )
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }

    async fn find_by_email_index(&self, index: &BlindIndex) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<UserRow> = conn
            .exec_first(
                "SELECT id, email_ciphertext, password_hash, mfa_enabled, CAST(UNIX_TIMESTAMP(created_at) AS SIGNED) \
                 FROM users WHERE email_index = ?",
                (index.to_vec(),),
            )
            .await
            .map_err(classify)?;
        row.map(user_from_row).transpose()
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<UserRow> = conn
            .exec_first(
                "SELECT id, email_ciphertext, password_hash, mfa_enabled, CAST(UNIX_TIMESTAMP(created_at) AS SIGNED) \
                 FROM users WHERE id = ?",
                (id.as_bytes().to_vec(),),
            )
            .await
            .map_err(classify)?;
        row.map(user_from_row).transpose()
    }

    async fn set_password_hash(&self, id: UserId, phc: &str, now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE users SET password_hash = ?, updated_at = FROM_UNIXTIME(?) WHERE id = ?",
            (phc, now, id.as_bytes().to_vec()),
        )
        .await
        .map_err(classify)
    }

    async fn roles_of(&self, id: UserId) -> Result<Vec<Role>, StoreError> {
        let mut conn = self.conn().await?;
        let names: Vec<String> = conn
            .exec("SELECT role FROM user_roles WHERE user_id = ? ORDER BY role", (id.as_bytes().to_vec(),))
            .await
            .map_err(classify)?;
        names.iter().map(|n| role(n)).collect()
    }

    async fn grant_role(&self, id: UserId, role: &Role, now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT IGNORE INTO user_roles (user_id, role, granted_at) VALUES (?, ?, FROM_UNIXTIME(?))",
            (id.as_bytes().to_vec(), role.as_str(), now),
        )
        .await
        .map_err(classify)
    }

    async fn revoke_role(&self, id: UserId, role: &Role) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "DELETE FROM user_roles WHERE user_id = ? AND role = ?",
            (id.as_bytes().to_vec(), role.as_str()),
        )
        .await
        .map_err(classify)
    }

    async fn revoke_role_checked(&self, removal: RoleRemoval<'_>) -> Result<bool, StoreError> {
        let RoleRemoval { id, role, watched, may_revoke } = removal;
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(classify)?;
        // Locking reads (latest committed rows, locked until commit), one role
        // at a time in name order, so concurrent removals queue instead of
        // deadlocking. `FOR UPDATE` needs DELETE on the table in MySQL 8, which
        // the admin role has.
        let mut sorted: Vec<&Role> = watched.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut assignments = Vec::new();
        for watched_role in sorted {
            let users: Vec<Vec<u8>> = tx
                .exec("SELECT user_id FROM user_roles WHERE role = ? FOR UPDATE", (watched_role.as_str(),))
                .await
                .map_err(classify)?;
            for user in users {
                assignments.push((user_id(user, "user_roles.user_id")?, watched_role.clone()));
            }
        }
        if !may_revoke(&assignments) {
            tx.rollback().await.map_err(classify)?;
            return Ok(false);
        }
        tx.exec_drop(
            "DELETE FROM user_roles WHERE user_id = ? AND role = ?",
            (id.as_bytes().to_vec(), role.as_str()),
        )
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn exists(&self, id: UserId) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let found: Option<Vec<u8>> = conn
            .exec_first("SELECT id FROM users WHERE id = ?", (id.as_bytes().to_vec(),))
            .await
            .map_err(classify)?;
        Ok(found.is_some())
    }

    async fn list_users(&self, after: Option<UserId>, limit: u32) -> Result<Vec<UserSummary>, StoreError> {
        let mut conn = self.conn().await?;
        // The zero id sorts before every UUIDv7, so "no cursor" needs no second statement.
        let after = after.map(|a| a.as_bytes()).unwrap_or([0u8; 16]).to_vec();
        let rows: Vec<SummaryRow> = conn
            .exec(
                "SELECT u.id, u.email_ciphertext, u.mfa_enabled, CAST(UNIX_TIMESTAMP(u.created_at) AS SIGNED), \
                 GROUP_CONCAT(r.role ORDER BY r.role SEPARATOR ',') \
                 FROM users u LEFT JOIN user_roles r ON r.user_id = u.id \
                 WHERE u.id > ? GROUP BY u.id ORDER BY u.id LIMIT ?",
                (after, limit),
            )
            .await
            .map_err(classify)?;
        rows.into_iter().map(summary_from_row).collect()
    }
}

type SummaryRow = (Vec<u8>, Vec<u8>, bool, i64, Option<String>);

fn summary_from_row(
    (id, email_ciphertext, mfa_enabled, created_at, roles): SummaryRow,
) -> Result<UserSummary, StoreError> {
    let roles =
        roles.unwrap_or_default().split(',').filter(|r| !r.is_empty()).map(role).collect::<Result<_, _>>()?;
    Ok(UserSummary { id: user_id(id, "users.id")?, email_ciphertext, mfa_enabled, created_at, roles })
}
