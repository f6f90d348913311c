//! API keys (`ApiKeyStore`): one row per key, found by its key id, listed by
//! its creator through an index in the same table (consistent by construction).

use super::{classify, fixed, names_from_text, names_to_text, SqliteStore};
use crate::apikeys::{ApiKeyRecord, ApiKeyStore};
use crate::sessions::TokenHash;
use crate::store::StoreError;
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

/// A key row before its hash and permissions are decoded.
type RawKey = (ApiKeyRecord, Vec<u8>, String);

fn raw_key(r: &Row<'_>) -> rusqlite::Result<RawKey> {
    let key = ApiKeyRecord {
        key_id: r.get(0)?,
        name: r.get(1)?,
        hash: TokenHash([0; 32]),
        permissions: Vec::new(),
        created_by: r.get(4)?,
        created_at: r.get(5)?,
        valid_until: r.get(6)?,
        revoked_at: r.get(7)?,
    };
    Ok((key, r.get(2)?, r.get(3)?))
}

fn key_from((mut key, hash, permissions): RawKey) -> Result<ApiKeyRecord, StoreError> {
    key.hash = TokenHash(fixed(hash, "api_keys.hash")?);
    key.permissions = names_from_text(&permissions, "api_keys.permissions")?;
    Ok(key)
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create(&self, k: &ApiKeyRecord) -> Result<(), StoreError> {
        let k = k.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO api_keys (key_id, name, hash, permissions, created_by, created_at, valid_until, \
                 revoked_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    k.key_id,
                    k.name,
                    k.hash.0,
                    names_to_text(&k.permissions),
                    k.created_by,
                    k.created_at,
                    k.valid_until,
                    k.revoked_at,
                    // Forgotten a day after expiry, as DynamoDB's TTL does.
                    k.valid_until.saturating_add(86_400),
                ],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let key_id = key_id.to_owned();
        let raw = self
            .run(move |conn| {
                conn.prepare_cached(
                    "SELECT key_id, name, hash, permissions, created_by, created_at, valid_until, revoked_at \
                     FROM api_keys WHERE key_id = ?1",
                )
                .and_then(|mut s| s.query_row([key_id], raw_key).optional())
                .map_err(classify)
            })
            .await?;
        raw.map(key_from).transpose()
    }

    async fn revoke(&self, key_id: &str, now: i64) -> Result<bool, StoreError> {
        let key_id = key_id.to_owned();
        // The first revocation's time stays; a known key answers true every time.
        self.run(move |conn| {
            conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?1) WHERE key_id = ?2",
                params![now, key_id],
            )
            .map(|n| n == 1)
            .map_err(classify)
        })
        .await
    }

    async fn list_by_creator(&self, creator: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let creator = creator.to_owned();
        let raw: Vec<RawKey> = self
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT key_id, name, hash, permissions, created_by, created_at, valid_until, revoked_at \
                         FROM api_keys WHERE created_by = ?1 ORDER BY key_id",
                    )
                    .map_err(classify)?;
                let rows = stmt.query_map([creator], raw_key).map_err(classify)?;
                rows.collect::<Result<_, _>>().map_err(classify)
            })
            .await?;
        raw.into_iter().map(key_from).collect()
    }
}
