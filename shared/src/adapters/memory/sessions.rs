//! In-process session store for the local server and unit tests, with the same
//! atomicity as the DynamoDB store (one mutex around each operation).

use crate::sessions::{
    NewSession, Reauth, RefreshRecord, Rotate, Rotation, SessionRecord, SessionStore, TokenHash,
};
use crate::store::StoreError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
struct Inner {
    sessions: HashMap<(String, String), SessionRecord>,
    tokens: HashMap<TokenHash, RefreshRecord>,
}

#[derive(Default)]
pub struct MemorySessionStore(Mutex<Inner>);

impl MemorySessionStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.0.lock().map_err(|_| StoreError::Corrupt("session store lock poisoned"))
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn create(&self, new: NewSession<'_>) -> Result<(), StoreError> {
        let NewSession { session, first, expires_at: _ } = new;
        let mut inner = self.lock()?;
        let key = (session.user_id.clone(), session.sid.clone());
        if inner.sessions.contains_key(&key) || inner.tokens.contains_key(first) {
            return Err(StoreError::Duplicate);
        }
        inner.sessions.insert(key, session.clone());
        inner.tokens.insert(
            *first,
            RefreshRecord { user_id: session.user_id.clone(), sid: session.sid.clone(), spent: false },
        );
        Ok(())
    }

    async fn refresh_token(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        Ok(self.lock()?.tokens.get(hash).cloned())
    }

    async fn get(&self, user_id: &str, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.lock()?.sessions.get(&(user_id.to_owned(), sid.to_owned())).cloned())
    }

    async fn rotate(&self, step: Rotate<'_>) -> Result<Rotation, StoreError> {
        let Rotate { session, old, new, roles, now, expires_at: _ } = step;
        let mut inner = self.lock()?;
        match inner.tokens.get(old) {
            Some(t) if !t.spent => {}
            _ => return Ok(Rotation::AlreadySpent),
        }
        let key = (session.user_id.clone(), session.sid.clone());
        match inner.sessions.get_mut(&key) {
            Some(s) if s.revoked_at.is_none() && s.roles_version == session.roles_version => {
                s.last_used_at = now;
                s.roles = roles.to_vec();
                s.head = Some(*new);
            }
            _ => return Ok(Rotation::SessionChanged),
        }
        if let Some(t) = inner.tokens.get_mut(old) {
            t.spent = true;
        }
        inner.tokens.insert(
            *new,
            RefreshRecord { user_id: session.user_id.clone(), sid: session.sid.clone(), spent: false },
        );
        Ok(Rotation::Rotated)
    }

    async fn touch(&self, user_id: &str, sid: &str, roles: &[String], now: i64) -> Result<(), StoreError> {
        if let Some(s) = self.lock()?.sessions.get_mut(&(user_id.to_owned(), sid.to_owned())) {
            if s.revoked_at.is_none() {
                s.last_used_at = now;
                s.roles = roles.to_vec();
            }
        }
        Ok(())
    }

    async fn set_roles(&self, user_id: &str, sid: &str, roles: &[String]) -> Result<(), StoreError> {
        if let Some(s) = self.lock()?.sessions.get_mut(&(user_id.to_owned(), sid.to_owned())) {
            s.roles = roles.to_vec();
            s.roles_version += 1;
        }
        Ok(())
    }

    async fn reauthenticate(&self, step: Reauth<'_>) -> Result<Rotation, StoreError> {
        let Reauth { session, new, amr, now, expires_at: _ } = step;
        if session.head.is_none() {
            return Ok(Rotation::SessionChanged);
        }
        let mut inner = self.lock()?;
        let key = (session.user_id.clone(), session.sid.clone());
        match inner.sessions.get_mut(&key) {
            Some(s) if s.revoked_at.is_none() && s.head == session.head => {
                s.last_used_at = now;
                s.auth_time = now;
                s.amr = amr.to_vec();
                s.head = Some(*new);
            }
            _ => return Ok(Rotation::SessionChanged),
        }
        if let Some(old) = session.head.and_then(|h| inner.tokens.get_mut(&h)) {
            old.spent = true;
        }
        inner.tokens.insert(
            *new,
            RefreshRecord { user_id: session.user_id.clone(), sid: session.sid.clone(), spent: false },
        );
        Ok(Rotation::Rotated)
    }

    async fn revoke(&self, user_id: &str, sid: &str, now: i64) -> Result<(), StoreError> {
        if let Some(s) = self.lock()?.sessions.get_mut(&(user_id.to_owned(), sid.to_owned())) {
            s.revoked_at.get_or_insert(now);
        }
        Ok(())
    }

    async fn list(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let mut out: Vec<_> =
            self.lock()?.sessions.values().filter(|s| s.user_id == user_id).cloned().collect();
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }
}
