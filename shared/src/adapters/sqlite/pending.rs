//! Pending one-time tokens in the embedded file: one row per account and
//! purpose; taking a token is one `DELETE … RETURNING`, so it succeeds once.

use super::{classify, SqliteStore};
use crate::pending::{Pending, PendingStore, Purpose};
use crate::store::StoreError;
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

#[async_trait]
impl PendingStore for SqliteStore {
    async fn put(&self, pending: &Pending, hash: &[u8; 32]) -> Result<(), StoreError> {
        let (p, hash) = (pending.clone(), *hash);
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO pending_tokens (user_id, purpose, hash, expires_at, detail) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (user_id, purpose) DO UPDATE SET hash = excluded.hash, \
                 expires_at = excluded.expires_at, detail = excluded.detail",
                params![p.user_id, p.purpose.as_str(), hash, p.expires_at, p.detail],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn take(
        &self,
        user_id: &str,
        purpose: Purpose,
        hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<Pending>, StoreError> {
        let (user_id, hash) = (user_id.to_owned(), *hash);
        self.run(move |conn| {
            conn.query_row(
                "DELETE FROM pending_tokens WHERE user_id = ?1 AND purpose = ?2 AND hash = ?3 AND expires_at > ?4 \
                 RETURNING expires_at, detail",
                params![user_id, purpose.as_str(), hash, now],
                |r| Ok(Pending { user_id: user_id.clone(), purpose, expires_at: r.get(0)?, detail: r.get(1)? }),
            )
            .optional()
            .map_err(classify)
        })
        .await
    }

    async fn revoke(&self, user_id: &str, purpose: Purpose) -> Result<(), StoreError> {
        let user_id = user_id.to_owned();
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM pending_tokens WHERE user_id = ?1 AND purpose = ?2",
                params![user_id, purpose.as_str()],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }
}
