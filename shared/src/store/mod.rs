//! Storage ports of the user store (one narrow trait per capability) and the
//! error every store returns. The implementations live in `crate::adapters`.

use crate::domain::{Role, UserId};
use crate::error::ApiError;
use async_trait::async_trait;

/// The keyed hash of a normalized value, used as its lookup key: a user is
/// found by the blind index of its email (`crate::crypto::FieldCipher::blind_index`).
pub type BlindIndex = [u8; 32];

/// A storage failure. `Duplicate` is an expected outcome; the rest are outages.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a record with this key already exists")]
    Duplicate,
    #[error("stored data is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => ApiError::unavailable(err),
            other => ApiError::internal(other),
        }
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub email_index: BlindIndex,
    pub email_ciphertext: Vec<u8>,
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub created_at: i64,
}

/// A stored user. The email stays encrypted until a handler needs it.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: UserId,
    pub email_ciphertext: Vec<u8>,
    pub password_hash: String,
    pub mfa_enabled: bool,
    pub created_at: i64,
}

/// A user as administrators see it: no password hash.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub id: UserId,
    pub email_ciphertext: Vec<u8>,
    pub mfa_enabled: bool,
    pub created_at: i64,
    pub roles: Vec<Role>,
}

/// The check [`UserStore::revoke_role_checked`] runs on the locked assignments.
pub type RevokeGuard<'a> = dyn for<'b> Fn(&'b [(UserId, Role)]) -> bool + Send + Sync + 'a;

/// A role removal that `may_revoke` decides on: see [`UserStore::revoke_role_checked`].
#[derive(Clone, Copy)]
pub struct RoleRemoval<'a> {
    pub id: UserId,
    pub role: &'a Role,
    pub watched: &'a [Role],
    pub may_revoke: &'a RevokeGuard<'a>,
}

/// Users and their roles.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates the user with its roles atomically; `Duplicate` if the email is taken.
    async fn insert_user(&self, user: &NewUser) -> Result<(), StoreError>;
    async fn find_by_email_index(&self, index: &BlindIndex) -> Result<Option<UserRecord>, StoreError>;
    async fn find_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError>;
    async fn set_password_hash(&self, id: UserId, phc: &str, now: i64) -> Result<(), StoreError>;
    async fn roles_of(&self, id: UserId) -> Result<Vec<Role>, StoreError>;
    /// Adds a role; granting a role the user already has is not an error.
    async fn grant_role(&self, id: UserId, role: &Role, now: i64) -> Result<(), StoreError>;
    /// Removes a role; removing one the user does not have is not an error.
    async fn revoke_role(&self, id: UserId, role: &Role) -> Result<(), StoreError>;
    /// Removes a role unless `may_revoke` refuses. It is shown every assignment
    /// of the `watched` roles as it stands, read under a lock held until the
    /// removal commits: two removals that watch a common role run one after the
    /// other, and the second sees the first's outcome. False when refused
    /// (nothing changed).
    async fn revoke_role_checked(&self, removal: RoleRemoval<'_>) -> Result<bool, StoreError>;
    async fn exists(&self, id: UserId) -> Result<bool, StoreError>;
    /// Up to `limit` users ordered by id, starting after `after`.
    async fn list_users(&self, after: Option<UserId>, limit: u32) -> Result<Vec<UserSummary>, StoreError>;
}

/// A user's TOTP state (secrets still encrypted).
#[derive(Debug, Clone, Default)]
pub struct MfaState {
    pub mfa_enabled: bool,
    pub email_ciphertext: Vec<u8>,
    pub secret: Option<Vec<u8>>,
    pub pending: Option<Vec<u8>>,
    pub last_step: Option<i64>,
}

/// The columns [`MfaStore::mfa_state`] reads, in [`MfaState`]'s order (a SQL row).
pub type MfaRow = (bool, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);

impl From<MfaRow> for MfaState {
    fn from((mfa_enabled, email_ciphertext, secret, pending, last_step): MfaRow) -> Self {
        Self { mfa_enabled, email_ciphertext, secret, pending, last_step }
    }
}

/// The SHA-256 hash a recovery code is stored as.
pub type CodeHash = [u8; 32];

/// MFA state and recovery codes.
#[async_trait]
pub trait MfaStore: Send + Sync {
    async fn mfa_state(&self, id: UserId) -> Result<Option<MfaState>, StoreError>;
    /// Stores an enrolment's secret until it is confirmed.
    async fn set_pending(&self, id: UserId, ciphertext: &[u8], now: i64) -> Result<(), StoreError>;
    /// Atomically: the pending secret becomes the secret, MFA is on, `step` is the
    /// last accepted step, and `codes` replace any recovery codes. False when there
    /// was no pending secret.
    async fn activate(&self, id: UserId, step: i64, codes: &[CodeHash], now: i64)
        -> Result<bool, StoreError>;
    /// Accepts `step` only if it is later than every step accepted before (replay
    /// defence); false otherwise. Atomic.
    async fn accept_step(&self, id: UserId, step: i64) -> Result<bool, StoreError>;
    /// Spends a recovery code; false when unknown or already used. Atomic.
    async fn use_recovery_code(&self, id: UserId, hash: &CodeHash, now: i64) -> Result<bool, StoreError>;
    /// Turns MFA off and forgets the secret and recovery codes.
    async fn disable(&self, id: UserId, now: i64) -> Result<(), StoreError>;
}

/// Wrapped key material (never plaintext private keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// What the key is for, e.g. `field-encryption`, `token-signing`.
    pub purpose: String,
    /// 1 for the first key of a purpose; rotation adds the next.
    pub generation: u32,
    pub kid: String,
    /// Public half, where the key is asymmetric (SEC1 uncompressed point).
    pub public_key: Vec<u8>,
    /// The data key, wrapped by the key provider under a purpose-bound context.
    pub wrapped_key: Vec<u8>,
    /// Private material sealed with the data key (empty when the data key is the key).
    pub sealed: Vec<u8>,
    pub created_at: i64,
    /// When the key was revoked (`portcullis keys revoke`); `None` while it is not.
    pub revoked_at: Option<i64>,
}

/// The public half of a key: what a verifier may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyRecord {
    pub kid: String,
    /// SEC1 uncompressed point.
    pub public_key: Vec<u8>,
    pub revoked: bool,
}

/// Storage of wrapped key material.
#[async_trait]
pub trait KeyMaterialStore: Send + Sync {
    /// Every key of a purpose, newest generation first.
    async fn keys(&self, purpose: &str) -> Result<Vec<KeyRecord>, StoreError>;
    /// The public half of every key of a purpose, revoked ones included, newest
    /// generation first: the only columns the authorizer may read.
    async fn public_keys(&self, purpose: &str) -> Result<Vec<PublicKeyRecord>, StoreError>;
    /// Inserts unless that purpose already has this generation (the first writer
    /// wins a cold-start race; the loser reads the winner's key).
    async fn insert_if_absent(&self, record: &KeyRecord) -> Result<(), StoreError>;
    /// Marks a key revoked at `now`; true if this call revoked it, false when the
    /// purpose has no such key or it was revoked already (the first time stays).
    async fn revoke(&self, purpose: &str, kid: &str, now: i64) -> Result<bool, StoreError>;
}
