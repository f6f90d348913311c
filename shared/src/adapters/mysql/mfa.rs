//! TOTP state and recovery codes on MySQL (columns of `users`, and `recovery_codes`).

use super::{classify, MySqlStore};
use crate::domain::UserId;
use crate::store::{CodeHash, MfaRow, MfaState, MfaStore, StoreError};
use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;

#[async_trait]
impl MfaStore for MySqlStore {
    async fn mfa_state(&self, id: UserId) -> Result<Option<MfaState>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<MfaRow> = conn
            .exec_first(
                "SELECT mfa_enabled, email_ciphertext, totp_secret_ciphertext, totp_pending_ciphertext, totp_last_step \
                 FROM users WHERE id = ?",
                (id.as_bytes().to_vec(),),
            )
            .await
            .map_err(classify)?;
        Ok(row.map(MfaState::from))
    }

    async fn set_pending(&self, id: UserId, ciphertext: &[u8], now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE users SET totp_pending_ciphertext = ?, updated_at = FROM_UNIXTIME(?) WHERE id = ?",
            (ciphertext.to_vec(), now, id.as_bytes().to_vec()),
        )
        .await
        .map_err(classify)
    }

    async fn activate(
        &self,
        id: UserId,
        step: i64,
        codes: &[CodeHash],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(classify)?;
        tx.exec_drop(
            "UPDATE users SET totp_secret_ciphertext = totp_pending_ciphertext, totp_pending_ciphertext = NULL, \
             mfa_enabled = TRUE, totp_last_step = ?, updated_at = FROM_UNIXTIME(?) \
             WHERE id = ? AND totp_pending_ciphertext IS NOT NULL",
            (step, now, id.as_bytes().to_vec()),
        )
        .await
        .map_err(classify)?;
        if tx.affected_rows() != 1 {
            tx.rollback().await.map_err(classify)?;
            return Ok(false);
        }
        tx.exec_drop("DELETE FROM recovery_codes WHERE user_id = ?", (id.as_bytes().to_vec(),))
            .await
            .map_err(classify)?;
        for code in codes {
            tx.exec_drop(
                "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?, ?, FROM_UNIXTIME(?))",
                (id.as_bytes().to_vec(), code.to_vec(), now),
            )
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn accept_step(&self, id: UserId, step: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE users SET totp_last_step = ? WHERE id = ? AND totp_secret_ciphertext IS NOT NULL \
             AND (totp_last_step IS NULL OR totp_last_step < ?)",
            (step, id.as_bytes().to_vec(), step),
        )
        .await
        .map_err(classify)?;
        Ok(conn.affected_rows() == 1)
    }

    async fn use_recovery_code(&self, id: UserId, hash: &CodeHash, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE recovery_codes SET used_at = FROM_UNIXTIME(?) WHERE user_id = ? AND code_hash = ? AND used_at IS NULL",
            (now, id.as_bytes().to_vec(), hash.to_vec()),
        )
        .await
        .map_err(classify)?;
        Ok(conn.affected_rows() == 1)
    }

    async fn disable(&self, id: UserId, now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(classify)?;
        tx.exec_drop(
            "UPDATE users SET mfa_enabled = FALSE, totp_secret_ciphertext = NULL, totp_pending_ciphertext = NULL, \
             totp_last_step = NULL, updated_at = FROM_UNIXTIME(?) WHERE id = ?",
            (now, id.as_bytes().to_vec()),
        )
        .await
        .map_err(classify)?;
        tx.exec_drop("DELETE FROM recovery_codes WHERE user_id = ?", (id.as_bytes().to_vec(),))
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }
}
