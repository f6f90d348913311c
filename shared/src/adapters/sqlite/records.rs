//! The audit trail (`AuditStore`, append-only: the schema's triggers refuse
//! changes) and wrapped key material (`KeyMaterialStore`).

use super::{classify, SqliteStore};
use crate::audit::{AuditEvent, AuditQuery, AuditRecord, AuditStore};
use crate::store::{KeyMaterialStore, KeyRecord, PublicKeyRecord, StoreError};
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append(&self, e: &AuditEvent) -> Result<(), StoreError> {
        let e = e.clone();
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO audit_log (occurred_at, event_type, outcome, subject, actor, source_ip, user_agent, \
                 request_id, reason, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    e.occurred_at,
                    e.event_type.as_str(),
                    e.event_type.outcome(),
                    e.subject,
                    e.actor,
                    e.source_ip,
                    e.user_agent,
                    e.request_id,
                    e.reason,
                    e.detail,
                ])
            })
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn search(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let q = q.clone();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, occurred_at, event_type, outcome, subject, actor, detail, reason, source_ip, \
                     user_agent, request_id FROM audit_log WHERE (?1 IS NULL OR subject = ?1) \
                     AND (?2 IS NULL OR event_type = ?2) AND (?3 IS NULL OR outcome = ?3) \
                     AND (?4 IS NULL OR occurred_at >= ?4) AND (?5 IS NULL OR occurred_at <= ?5) \
                     AND (?6 IS NULL OR id < ?6) ORDER BY id DESC LIMIT ?7",
                )
                .map_err(classify)?;
            let params = params![q.subject, q.event_type, q.outcome, q.since, q.until, q.before_id, q.limit];
            let rows = stmt.query_map(params, |r| {
                Ok(AuditRecord {
                    id: r.get(0)?,
                    occurred_at: r.get(1)?,
                    event_type: r.get(2)?,
                    outcome: r.get(3)?,
                    subject: r.get(4)?,
                    actor: r.get(5)?,
                    detail: r.get(6)?,
                    reason: r.get(7)?,
                    source_ip: r.get(8)?,
                    user_agent: r.get(9)?,
                    request_id: r.get(10)?,
                })
            });
            rows.and_then(|rows| rows.collect::<Result<Vec<_>, _>>()).map_err(classify)
        })
        .await
    }
}

#[async_trait]
impl KeyMaterialStore for SqliteStore {
    async fn keys(&self, purpose: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let purpose = purpose.to_owned();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT purpose, generation, kid, public_key, wrapped_key, sealed, created_at, revoked_at \
                     FROM key_material WHERE purpose = ?1 ORDER BY generation DESC",
                )
                .map_err(classify)?;
            let rows = stmt
                .query_map([purpose], |r| {
                    Ok(KeyRecord {
                        purpose: r.get(0)?,
                        generation: r.get(1)?,
                        kid: r.get(2)?,
                        public_key: r.get(3)?,
                        wrapped_key: r.get(4)?,
                        sealed: r.get(5)?,
                        created_at: r.get(6)?,
                        revoked_at: r.get(7)?,
                    })
                })
                .map_err(classify)?;
            rows.collect::<Result<_, _>>().map_err(classify)
        })
        .await
    }

    async fn public_keys(&self, purpose: &str) -> Result<Vec<PublicKeyRecord>, StoreError> {
        let purpose = purpose.to_owned();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT kid, public_key, revoked_at IS NOT NULL FROM key_material WHERE purpose = ?1 \
                     ORDER BY generation DESC",
                )
                .map_err(classify)?;
            let rows = stmt
                .query_map([purpose], |r| {
                    Ok(PublicKeyRecord { kid: r.get(0)?, public_key: r.get(1)?, revoked: r.get(2)? })
                })
                .map_err(classify)?;
            rows.collect::<Result<_, _>>().map_err(classify)
        })
        .await
    }

    async fn insert_if_absent(&self, r: &KeyRecord) -> Result<(), StoreError> {
        let r = r.clone();
        // The first writer of a generation wins; a loser's row is dropped (as
        // MySQL's duplicate-key answer is ignored there).
        self.run(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO key_material (purpose, generation, kid, public_key, wrapped_key, sealed, \
                 created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![r.purpose, r.generation, r.kid, r.public_key, r.wrapped_key, r.sealed, r.created_at],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn revoke(&self, purpose: &str, kid: &str, now: i64) -> Result<bool, StoreError> {
        let (purpose, kid) = (purpose.to_owned(), kid.to_owned());
        self.run(move |conn| {
            conn.execute(
                "UPDATE key_material SET revoked_at = ?1 WHERE purpose = ?2 AND kid = ?3 AND revoked_at IS NULL",
                params![now, purpose, kid],
            )
            .map(|n| n == 1)
            .map_err(classify)
        })
        .await
    }
}
