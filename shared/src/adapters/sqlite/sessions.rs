//! Sessions and refresh-token families (`SessionStore`). A rotation and a
//! re-authentication each read and write in one `BEGIN IMMEDIATE` transaction:
//! of two uses of one token, the second sees it spent.

use super::{classify, fixed, names_from_text, names_to_text, SqliteStore};
use crate::sessions::{
    NewSession, Reauth, RefreshRecord, Rotate, Rotation, SessionRecord, SessionStore, TokenHash,
};
use crate::store::StoreError;
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row, Transaction};

/// A session row before its lists and head are decoded.
type RawSession = (SessionRecord, String, String, Option<Vec<u8>>);

fn raw_session(r: &Row<'_>) -> rusqlite::Result<RawSession> {
    let session = SessionRecord {
        user_id: r.get(0)?,
        sid: r.get(1)?,
        created_at: r.get(2)?,
        last_used_at: r.get(3)?,
        revoked_at: r.get(4)?,
        user_agent: r.get(5)?,
        ip: r.get(6)?,
        amr: Vec::new(),
        auth_time: r.get(8)?,
        roles: Vec::new(),
        roles_version: r.get(10)?,
        head: None,
    };
    Ok((session, r.get(7)?, r.get(9)?, r.get(11)?))
}

fn session_from((mut session, amr, roles, head): RawSession) -> Result<SessionRecord, StoreError> {
    session.amr = names_from_text(&amr, "sessions.amr")?;
    session.roles = names_from_text(&roles, "sessions.roles")?;
    session.head = head.map(|h| fixed(h, "sessions.head").map(TokenHash)).transpose()?;
    Ok(session)
}

fn insert_token(
    tx: &Transaction<'_>,
    hash: &TokenHash,
    s: &SessionRecord,
    expires_at: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO refresh_tokens (hash, user_id, sid, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![hash.0, s.user_id, s.sid, expires_at],
    )
    .map(drop)
    .map_err(classify)
}

/// Spends `hash` if it is active; false when it is unknown or spent already.
fn spend(tx: &Transaction<'_>, hash: &TokenHash, now: i64) -> Result<bool, StoreError> {
    tx.execute(
        "UPDATE refresh_tokens SET spent_at = ?1 WHERE hash = ?2 AND spent_at IS NULL",
        params![now, hash.0],
    )
    .map(|n| n == 1)
    .map_err(classify)
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create(&self, new: NewSession<'_>) -> Result<(), StoreError> {
        let NewSession { session, first, expires_at } = new;
        let (s, first) = (session.clone(), *first);
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO sessions (user_id, sid, created_at, last_used_at, revoked_at, user_agent, ip, amr, \
                 auth_time, roles, roles_version, head, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    s.user_id,
                    s.sid,
                    s.created_at,
                    s.last_used_at,
                    s.revoked_at,
                    s.user_agent,
                    s.ip,
                    names_to_text(&s.amr),
                    s.auth_time,
                    names_to_text(&s.roles),
                    s.roles_version,
                    first.0,
                    expires_at,
                ],
            )
            .map_err(classify)?;
            insert_token(tx, &first, &s, expires_at)
        })
        .await
    }

    async fn refresh_token(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        let hash = *hash;
        self.run(move |conn| {
            conn.prepare_cached(
                "SELECT user_id, sid, spent_at IS NOT NULL FROM refresh_tokens WHERE hash = ?1",
            )
            .and_then(|mut s| {
                s.query_row([hash.0], |r| {
                    Ok(RefreshRecord { user_id: r.get(0)?, sid: r.get(1)?, spent: r.get(2)? })
                })
                .optional()
            })
            .map_err(classify)
        })
        .await
    }

    async fn get(&self, user_id: &str, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        let (user_id, sid) = (user_id.to_owned(), sid.to_owned());
        let raw = self
            .run(move |conn| {
                conn.prepare_cached(
                    "SELECT user_id, sid, created_at, last_used_at, revoked_at, user_agent, ip, amr, auth_time, \
                     roles, roles_version, head FROM sessions WHERE user_id = ?1 AND sid = ?2",
                )
                    .and_then(|mut s| s.query_row([user_id, sid], raw_session).optional())
                    .map_err(classify)
            })
            .await?;
        raw.map(session_from).transpose()
    }

    async fn rotate(&self, step: Rotate<'_>) -> Result<Rotation, StoreError> {
        let Rotate { session, old, new, roles, now, expires_at } = step;
        let (s, old, new, roles) = (session.clone(), *old, *new, names_to_text(roles));
        self.write(move |tx| {
            let active: bool = tx
                .query_row("SELECT spent_at IS NULL FROM refresh_tokens WHERE hash = ?1", [old.0], |r| r.get(0))
                .optional()
                .map_err(classify)?
                .unwrap_or(false);
            if !active {
                return Ok(Rotation::AlreadySpent);
            }
            let touched = tx
                .execute(
                    "UPDATE sessions SET last_used_at = ?1, roles = ?2, head = ?3 WHERE user_id = ?4 AND sid = ?5 \
                     AND revoked_at IS NULL AND roles_version = ?6",
                    params![now, roles, new.0, s.user_id, s.sid, s.roles_version],
                )
                .map_err(classify)?;
            if touched != 1 {
                return Ok(Rotation::SessionChanged);
            }
            spend(tx, &old, now)?;
            insert_token(tx, &new, &s, expires_at)?;
            Ok(Rotation::Rotated)
        })
        .await
    }

    async fn touch(&self, user_id: &str, sid: &str, roles: &[String], now: i64) -> Result<(), StoreError> {
        let (user_id, sid, roles) = (user_id.to_owned(), sid.to_owned(), names_to_text(roles));
        self.run(move |conn| {
            conn.execute(
                "UPDATE sessions SET roles = ?1, last_used_at = ?2 WHERE user_id = ?3 AND sid = ?4 \
                 AND revoked_at IS NULL",
                params![roles, now, user_id, sid],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn set_roles(&self, user_id: &str, sid: &str, roles: &[String]) -> Result<(), StoreError> {
        let (user_id, sid, roles) = (user_id.to_owned(), sid.to_owned(), names_to_text(roles));
        self.run(move |conn| {
            conn.execute(
                "UPDATE sessions SET roles = ?1, roles_version = roles_version + 1 WHERE user_id = ?2 AND sid = ?3",
                params![roles, user_id, sid],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn reauthenticate(&self, step: Reauth<'_>) -> Result<Rotation, StoreError> {
        let Reauth { session, new, amr, now, expires_at } = step;
        // No recorded live token: nothing to spend, and a second live chain
        // would hide reuse (as in the DynamoDB store).
        let Some(old) = session.head else { return Ok(Rotation::SessionChanged) };
        let (s, new, amr) = (session.clone(), *new, names_to_text(amr));
        self.write(move |tx| {
            let live = tx
                .query_row(
                    "SELECT 1 FROM sessions s JOIN refresh_tokens t ON t.hash = s.head WHERE s.user_id = ?1 \
                     AND s.sid = ?2 AND s.revoked_at IS NULL AND s.head = ?3 AND t.spent_at IS NULL",
                    params![s.user_id, s.sid, old.0],
                    |_| Ok(()),
                )
                .optional()
                .map_err(classify)?;
            // The live token moved on (a refresh won) or the session ended.
            if live.is_none() {
                return Ok(Rotation::SessionChanged);
            }
            tx.execute(
                "UPDATE sessions SET last_used_at = ?1, auth_time = ?1, amr = ?2, head = ?3 \
                 WHERE user_id = ?4 AND sid = ?5",
                params![now, amr, new.0, s.user_id, s.sid],
            )
            .map_err(classify)?;
            spend(tx, &old, now)?;
            insert_token(tx, &new, &s, expires_at)?;
            Ok(Rotation::Rotated)
        })
        .await
    }

    async fn revoke(&self, user_id: &str, sid: &str, now: i64) -> Result<(), StoreError> {
        let (user_id, sid) = (user_id.to_owned(), sid.to_owned());
        self.run(move |conn| {
            conn.execute(
                "UPDATE sessions SET revoked_at = ?1 WHERE user_id = ?2 AND sid = ?3 AND revoked_at IS NULL",
                params![now, user_id, sid],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn list(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let user_id = user_id.to_owned();
        let raw: Vec<RawSession> = self
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT user_id, sid, created_at, last_used_at, revoked_at, user_agent, ip, amr, auth_time, \
                         roles, roles_version, head FROM sessions WHERE user_id = ?1 ORDER BY created_at",
                    )
                    .map_err(classify)?;
                let rows = stmt.query_map([user_id], raw_session).map_err(classify)?;
                rows.collect::<Result<_, _>>().map_err(classify)
            })
            .await?;
        raw.into_iter().map(session_from).collect()
    }
}
