//! In-process store for the local server and unit tests. Same semantics as the
//! MySQL store (unique emails, idempotent role grants, first key writer wins).

use crate::audit::{AuditEvent, AuditQuery, AuditRecord, AuditStore};
use crate::domain::{Role, UserId};
use crate::store::{
    BlindIndex, CodeHash, KeyMaterialStore, KeyRecord, MfaState, MfaStore, NewUser, PublicKeyRecord,
    RoleRemoval, StoreError, UserRecord, UserStore, UserSummary,
};
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Default)]
struct Inner {
    users: HashMap<UserId, UserRecord>,
    by_email: HashMap<BlindIndex, UserId>,
    roles: HashMap<UserId, BTreeSet<Role>>,
    audit: Vec<AuditEvent>,
    keys: Vec<KeyRecord>,
    mfa: HashMap<UserId, MfaState>,
    recovery: HashMap<UserId, HashMap<[u8; 32], bool>>,
}

/// Everything in one mutex: contention is irrelevant for a local server.
#[derive(Default)]
pub struct MemoryStore(Mutex<Inner>);

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.0.lock().map_err(|_| StoreError::Corrupt("memory store lock poisoned"))
    }

    /// The audit events recorded so far (for tests and the local server).
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        self.lock().map(|i| i.audit.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn insert_user(&self, user: &NewUser) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if inner.by_email.contains_key(&user.email_index) || inner.users.contains_key(&user.id) {
            return Err(StoreError::Duplicate);
        }
        inner.by_email.insert(user.email_index, user.id);
        inner.users.insert(
            user.id,
            UserRecord {
                id: user.id,
                email_ciphertext: user.email_ciphertext.clone(),
                password_hash: user.password_hash.clone(),
                mfa_enabled: false,
                created_at: user.created_at,
            },
        );
        inner.roles.insert(user.id, user.roles.iter().cloned().collect());
        Ok(())
    }

    async fn find_by_email_index(&self, index: &BlindIndex) -> Result<Option<UserRecord>, StoreError> {
        let inner = self.lock()?;
        Ok(inner.by_email.get(index).and_then(|id| inner.users.get(id)).cloned())
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.lock()?.users.get(&id).cloned())
    }

    async fn set_password_hash(&self, id: UserId, phc: &str, _now: i64) -> Result<(), StoreError> {
        if let Some(user) = self.lock()?.users.get_mut(&id) {
            user.password_hash = phc.to_owned();
        }
        Ok(())
    }

    async fn roles_of(&self, id: UserId) -> Result<Vec<Role>, StoreError> {
        Ok(self.lock()?.roles.get(&id).map(|r| r.iter().cloned().collect()).unwrap_or_default())
    }

    async fn grant_role(&self, id: UserId, role: &Role, _now: i64) -> Result<(), StoreError> {
        self.lock()?.roles.entry(id).or_default().insert(role.clone());
        Ok(())
    }

    async fn revoke_role(&self, id: UserId, role: &Role) -> Result<(), StoreError> {
        if let Some(roles) = self.lock()?.roles.get_mut(&id) {
            roles.remove(role);
        }
        Ok(())
    }

    async fn revoke_role_checked(&self, removal: RoleRemoval<'_>) -> Result<bool, StoreError> {
        let RoleRemoval { id, role, watched, may_revoke } = removal;
        let mut inner = self.lock()?;
        let assignments: Vec<(UserId, Role)> = inner
            .roles
            .iter()
            .flat_map(|(user, roles)| {
                roles.iter().filter(|r| watched.contains(r)).map(|r| (*user, r.clone()))
            })
            .collect();
        if !may_revoke(&assignments) {
            return Ok(false);
        }
        if let Some(roles) = inner.roles.get_mut(&id) {
            roles.remove(role);
        }
        Ok(true)
    }

    async fn exists(&self, id: UserId) -> Result<bool, StoreError> {
        Ok(self.lock()?.users.contains_key(&id))
    }

    async fn list_users(&self, after: Option<UserId>, limit: u32) -> Result<Vec<UserSummary>, StoreError> {
        let inner = self.lock()?;
        let mut users: Vec<&UserRecord> =
            inner.users.values().filter(|u| after.is_none_or(|a| u.id.0 > a.0)).collect();
        users.sort_by_key(|u| u.id.0);
        Ok(users
            .into_iter()
            .take(limit as usize)
            .map(|u| UserSummary {
                id: u.id,
                email_ciphertext: u.email_ciphertext.clone(),
                mfa_enabled: u.mfa_enabled,
                created_at: u.created_at,
                roles: inner.roles.get(&u.id).map(|r| r.iter().cloned().collect()).unwrap_or_default(),
            })
            .collect())
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.lock()?.audit.push(event.clone());
        Ok(())
    }

    async fn search(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let inner = self.lock()?;
        let records = inner.audit.iter().enumerate().map(|(i, e)| e.record(i as i64 + 1));
        let mut found: Vec<AuditRecord> = records.filter(|r| query.admits(r)).collect();
        found.reverse();
        found.truncate(query.limit as usize);
        Ok(found)
    }
}

#[async_trait]
impl KeyMaterialStore for MemoryStore {
    async fn keys(&self, purpose: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let mut keys: Vec<KeyRecord> =
            self.lock()?.keys.iter().filter(|k| k.purpose == purpose).cloned().collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.generation));
        Ok(keys)
    }

    async fn public_keys(&self, purpose: &str) -> Result<Vec<PublicKeyRecord>, StoreError> {
        Ok(self
            .keys(purpose)
            .await?
            .into_iter()
            .map(|k| PublicKeyRecord {
                kid: k.kid,
                public_key: k.public_key,
                revoked: k.revoked_at.is_some(),
            })
            .collect())
    }

    async fn revoke(&self, purpose: &str, kid: &str, now: i64) -> Result<bool, StoreError> {
        let mut inner = self.lock()?;
        let key =
            inner.keys.iter_mut().find(|k| k.purpose == purpose && k.kid == kid && k.revoked_at.is_none());
        Ok(key.map(|k| k.revoked_at = Some(now)).is_some())
    }

    async fn insert_if_absent(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if !inner.keys.iter().any(|k| k.purpose == record.purpose && k.generation == record.generation) {
            inner.keys.push(record.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl MfaStore for MemoryStore {
    async fn mfa_state(&self, id: UserId) -> Result<Option<MfaState>, StoreError> {
        let inner = self.lock()?;
        Ok(inner.users.get(&id).map(|u| {
            let mut state = inner.mfa.get(&id).cloned().unwrap_or_default();
            state.email_ciphertext = u.email_ciphertext.clone();
            state
        }))
    }

    async fn set_pending(&self, id: UserId, ciphertext: &[u8], _now: i64) -> Result<(), StoreError> {
        self.lock()?.mfa.entry(id).or_default().pending = Some(ciphertext.to_vec());
        Ok(())
    }

    async fn activate(
        &self,
        id: UserId,
        step: i64,
        codes: &[CodeHash],
        _now: i64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock()?;
        let state = inner.mfa.entry(id).or_default();
        let Some(pending) = state.pending.take() else { return Ok(false) };
        state.secret = Some(pending);
        state.mfa_enabled = true;
        state.last_step = Some(step);
        inner.recovery.insert(id, codes.iter().map(|c| (*c, false)).collect());
        if let Some(user) = inner.users.get_mut(&id) {
            user.mfa_enabled = true;
        }
        Ok(true)
    }

    async fn accept_step(&self, id: UserId, step: i64) -> Result<bool, StoreError> {
        let mut inner = self.lock()?;
        let Some(state) = inner.mfa.get_mut(&id).filter(|s| s.secret.is_some()) else { return Ok(false) };
        if state.last_step.is_some_and(|last| last >= step) {
            return Ok(false);
        }
        state.last_step = Some(step);
        Ok(true)
    }

    async fn use_recovery_code(&self, id: UserId, hash: &[u8; 32], _now: i64) -> Result<bool, StoreError> {
        let mut inner = self.lock()?;
        match inner.recovery.get_mut(&id).and_then(|codes| codes.get_mut(hash)) {
            Some(used) if !*used => {
                *used = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn disable(&self, id: UserId, _now: i64) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        inner.mfa.remove(&id);
        inner.recovery.remove(&id);
        if let Some(user) = inner.users.get_mut(&id) {
            user.mfa_enabled = false;
        }
        Ok(())
    }
}
