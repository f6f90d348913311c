//! The audit trail and the wrapped key material on MySQL.

use super::{classify, MySqlStore};
use crate::audit::{AuditEvent, AuditQuery, AuditRecord, AuditStore};
use crate::store::{KeyMaterialStore, KeyRecord, PublicKeyRecord, StoreError};
use async_trait::async_trait;
use mysql_async::prelude::Queryable;

#[async_trait]
impl AuditStore for MySqlStore {
    async fn append(&self, e: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO audit_log (occurred_at, event_type, outcome, subject, actor, source_ip, user_agent, request_id, \
             reason, detail) VALUES (FROM_UNIXTIME(?), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                e.occurred_at,
                e.event_type.as_str(),
                e.event_type.outcome(),
                e.subject.clone(),
                e.actor.clone(),
                e.source_ip.clone(),
                e.user_agent.clone(),
                e.request_id.clone(),
                e.reason,
                e.detail.clone(),
            ),
        )
        .await
        .map_err(classify)
    }

    async fn search(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let mut conn = self.conn().await?;
        // One statement for every combination of filters: an unset filter is NULL.
        let v = |x: Option<String>| mysql_async::Value::from(x);
        let params = vec![
            v(q.subject.clone()),
            v(q.event_type.clone()),
            v(q.outcome.clone()),
            mysql_async::Value::from(q.since),
            mysql_async::Value::from(q.until),
            mysql_async::Value::from(q.before_id),
            mysql_async::Value::from(q.limit),
        ];
        let rows: Vec<mysql_async::Row> = conn
            .exec(
                "SELECT id, CAST(UNIX_TIMESTAMP(occurred_at) AS SIGNED), event_type, outcome, subject, actor, detail, \
                 reason, source_ip, user_agent, request_id FROM audit_log, \
                 (SELECT ? AS s, ? AS t, ? AS o, ? AS since, ? AS until, ? AS before_id) AS f \
                 WHERE (f.s IS NULL OR subject = f.s) AND (f.t IS NULL OR event_type = f.t) \
                 AND (f.o IS NULL OR outcome = f.o) AND (f.since IS NULL OR occurred_at >= FROM_UNIXTIME(f.since)) \
                 AND (f.until IS NULL OR occurred_at < FROM_UNIXTIME(f.until + 1)) \
                 AND (f.before_id IS NULL OR id < f.before_id) ORDER BY id DESC LIMIT ?",
                mysql_async::Params::Positional(params),
            )
            .await
            .map_err(classify)?;
        rows.into_iter().map(audit_record).collect()
    }
}

/// One `audit_log` row of [`AuditStore::search`]'s columns.
fn audit_record(mut row: mysql_async::Row) -> Result<AuditRecord, StoreError> {
    let corrupt = || StoreError::Corrupt("audit_log row");
    let mut take = |i: usize| row.take_opt::<Option<String>, _>(i).and_then(Result::ok).ok_or_else(corrupt);
    let (subject, actor, detail, reason) = (take(4)?, take(5)?, take(6)?, take(7)?);
    let (source_ip, user_agent, request_id) = (take(8)?, take(9)?, take(10)?);
    let (event_type, outcome) = (take(2)?.ok_or_else(corrupt)?, take(3)?.ok_or_else(corrupt)?);
    let id = row.take_opt::<i64, _>(0).and_then(Result::ok).ok_or_else(corrupt)?;
    let occurred_at = row.take_opt::<i64, _>(1).and_then(Result::ok).ok_or_else(corrupt)?;
    Ok(AuditRecord {
        id,
        occurred_at,
        event_type,
        outcome,
        subject,
        actor,
        detail,
        reason,
        source_ip,
        user_agent,
        request_id,
    })
}

type KeyRow = (String, u32, String, Vec<u8>, Vec<u8>, Vec<u8>, i64, Option<i64>);

#[async_trait]
impl KeyMaterialStore for MySqlStore {
    async fn keys(&self, purpose: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<KeyRow> = conn
            .exec(
                "SELECT purpose, generation, kid, public_key, wrapped_key, sealed, CAST(UNIX_TIMESTAMP(created_at) AS SIGNED), \
                 CAST(UNIX_TIMESTAMP(revoked_at) AS SIGNED) FROM key_material WHERE purpose = ? ORDER BY generation DESC",
                (purpose,),
            )
            .await
            .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(purpose, generation, kid, public_key, wrapped_key, sealed, created_at, revoked_at)| {
                KeyRecord {
                    purpose,
                    generation,
                    kid,
                    public_key,
                    wrapped_key,
                    sealed,
                    created_at,
                    revoked_at,
                }
            })
            .collect())
    }

    async fn public_keys(&self, purpose: &str) -> Result<Vec<PublicKeyRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, Vec<u8>, bool)> = conn
            .exec(
                "SELECT kid, public_key, revoked_at IS NOT NULL FROM key_material WHERE purpose = ? \
                 ORDER BY generation DESC",
                (purpose,),
            )
            .await
            .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(kid, public_key, revoked)| PublicKeyRecord { kid, public_key, revoked })
            .collect())
    }

    async fn revoke(&self, purpose: &str, kid: &str, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE key_material SET revoked_at = FROM_UNIXTIME(?) \
             WHERE purpose = ? AND kid = ? AND revoked_at IS NULL",
            (now, purpose, kid),
        )
        .await
        .map_err(classify)?;
        Ok(conn.affected_rows() == 1)
    }

    async fn insert_if_absent(&self, r: &KeyRecord) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let result = conn
            .exec_drop(
                "INSERT INTO key_material (purpose, generation, kid, public_key, wrapped_key, sealed, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, FROM_UNIXTIME(?))",
                (
                    r.purpose.as_str(),
                    r.generation,
                    r.kid.as_str(),
                    r.public_key.clone(),
                    r.wrapped_key.clone(),
                    r.sealed.clone(),
                    r.created_at,
                ),
            )
            .await
            .map_err(classify);
        match result {
            Ok(()) | Err(StoreError::Duplicate) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
