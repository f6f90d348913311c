//! Server-side sessions and refresh-token families (ASVS V3, RFC 9700 §4.14).
//!
//! A login starts a session and its first refresh token. Refresh tokens are
//! opaque 256-bit secrets stored only as SHA-256 hashes; each use spends the
//! token and issues its successor in one atomic write. A spent token presented
//! again means the family leaked: the whole session is revoked. Sessions end by
//! revocation, idle timeout or absolute timeout, all judged against the `Clock`.

use crate::store::StoreError;
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

/// Prefix of every refresh token, so secret scanners can recognise a leaked one.
pub const REFRESH_TOKEN_PREFIX: &str = "pcr_";

/// SHA-256 of a refresh token: the only form in which it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A new refresh token (shown to the client once) and its hash.
pub fn new_refresh_token() -> (SecretString, TokenHash) {
    let mut secret = crate::crypto::random_bytes::<32>();
    let token = format!("{REFRESH_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    zeroize::Zeroize::zeroize(&mut secret);
    let hash = hash_token(&token);
    (SecretString::from(token), hash)
}

/// The hash of a presented refresh token, or `None` when it is not shaped like one
/// (no store lookup is spent on garbage).
pub fn hash_presented(token: &SecretString) -> Option<TokenHash> {
    let text = token.expose_secret();
    let body = text.strip_prefix(REFRESH_TOKEN_PREFIX)?;
    let decoded = URL_SAFE_NO_PAD.decode(body).ok()?;
    (decoded.len() == 32).then(|| hash_token(text))
}

/// The hash under which another provider's refresh token is recorded.
pub fn hash_external(token: &str) -> TokenHash {
    hash_token(token)
}

fn hash_token(token: &str) -> TokenHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    TokenHash(out)
}

/// One session of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub user_id: String,
    pub sid: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub revoked_at: Option<i64>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Authentication methods of the latest authentication (`pwd`, `otp`, …):
    /// the login that started it, or the last re-authentication.
    pub amr: Vec<String>,
    /// When the person last proved who they are in this session (login or
    /// `POST /auth/reauth`): the `auth_time` of every access token it issues.
    pub auth_time: i64,
    /// The user's current roles. Refreshed at every rotation and rewritten when an
    /// admin changes them, so the authorizer applies role changes on the next request.
    pub roles: Vec<String>,
    /// Counts the writes of `roles` other than rotations (an admin's change, a
    /// login's correction). A rotation writes roles only while it is unchanged
    /// since the rotation read the session, so a role change that lands while a
    /// refresh is in flight is never undone by it.
    pub roles_version: i64,
    /// The hash of the session's live refresh token, when the store knows it.
    pub head: Option<TokenHash>,
}

/// What a refresh-token hash refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub user_id: String,
    pub sid: String,
    /// True once the token has been exchanged for its successor.
    pub spent: bool,
}

/// The result of an attempted rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The old token is spent and the new one is live.
    Rotated,
    /// The old token was already spent (reuse, or a concurrent refresh won).
    AlreadySpent,
    /// The session was revoked, or its roles changed, since it was read; nothing
    /// was written. Read it again: an ended session refuses, a changed one retries.
    SessionChanged,
}

/// Why a session is no longer usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Live,
    Revoked,
    IdleExpired,
    AbsoluteExpired,
}

/// Idle and absolute timeouts (ASVS V3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle_secs: i64,
    pub absolute_secs: i64,
}

impl SessionPolicy {
    pub fn state(&self, session: &SessionRecord, now: i64) -> SessionState {
        if session.revoked_at.is_some() {
            SessionState::Revoked
        } else if now - session.created_at >= self.absolute_secs {
            SessionState::AbsoluteExpired
        } else if now - session.last_used_at >= self.idle_secs {
            SessionState::IdleExpired
        } else {
            SessionState::Live
        }
    }

    /// When the store may forget a session and its tokens: a day after it can
    /// no longer be used, so reuse of its tokens is still recognised until then.
    pub fn expires_at(&self, created_at: i64) -> i64 {
        created_at + self.absolute_secs + 86_400
    }
}

/// Starts a session for a completed login and returns it with its first refresh
/// token. Nothing is issued unless this write succeeded.
pub async fn start(
    store: &dyn SessionStore,
    policy: &SessionPolicy,
    user_id: &str,
    roles: Vec<String>,
    amr: Vec<String>,
    meta: &crate::http::ClientMeta,
    now: i64,
) -> Result<(SessionRecord, SecretString), StoreError> {
    let (token, hash) = new_refresh_token();
    let sid = uuid::Uuid::new_v4().to_string();
    let session = record(store, policy, Started { user_id, sid, hash: &hash, roles, amr }, meta, now).await?;
    Ok((session, token))
}

/// Records a session another identity provider started (a Cognito login): `sid`
/// is the provider's session id (Cognito's `origin_jti`), `refresh_token` the
/// provider's, kept only as a hash. The authorizer and the refresh function then
/// apply the same timeouts and revocations as to our own sessions.
pub async fn record_external(
    store: &dyn SessionStore,
    policy: &SessionPolicy,
    external: External<'_>,
    meta: &crate::http::ClientMeta,
    now: i64,
) -> Result<SessionRecord, StoreError> {
    let hash = hash_token(external.refresh_token);
    let started = Started {
        user_id: external.user_id,
        sid: external.sid.to_owned(),
        hash: &hash,
        roles: external.roles,
        amr: external.amr,
    };
    record(store, policy, started, meta, now).await
}

/// A session another identity provider started (see [`record_external`]).
#[derive(Debug)]
pub struct External<'a> {
    pub user_id: &'a str,
    pub sid: &'a str,
    pub refresh_token: &'a str,
    pub roles: Vec<String>,
    pub amr: Vec<String>,
}

struct Started<'a> {
    user_id: &'a str,
    sid: String,
    hash: &'a TokenHash,
    roles: Vec<String>,
    amr: Vec<String>,
}

async fn record(
    store: &dyn SessionStore,
    policy: &SessionPolicy,
    started: Started<'_>,
    meta: &crate::http::ClientMeta,
    now: i64,
) -> Result<SessionRecord, StoreError> {
    let session = SessionRecord {
        user_id: started.user_id.to_owned(),
        sid: started.sid,
        created_at: now,
        last_used_at: now,
        revoked_at: None,
        user_agent: meta.user_agent.clone(),
        ip: meta.source_ip.clone(),
        amr: started.amr,
        auth_time: now,
        roles: started.roles,
        roles_version: 0,
        head: Some(*started.hash),
    };
    store
        .create(NewSession { session: &session, first: started.hash, expires_at: policy.expires_at(now) })
        .await?;
    Ok(session)
}

/// Revokes every live session of a user except `keep`; returns how many.
pub async fn revoke_all(
    store: &dyn SessionStore,
    user_id: &str,
    keep: Option<&str>,
    now: i64,
) -> Result<usize, StoreError> {
    let mut revoked = 0;
    for session in store.list(user_id).await? {
        if session.revoked_at.is_none() && Some(session.sid.as_str()) != keep {
            store.revoke(user_id, &session.sid, now).await?;
            revoked += 1;
        }
    }
    Ok(revoked)
}

/// Starts the session of a completed login with the user's roles, read from
/// the user store, and reads them again once the session exists: an admin's
/// change that landed in between (after its write to the user store, before
/// the session was there to be updated) is applied to it, not lost.
pub async fn start_for_user(
    store: &dyn SessionStore,
    policy: &SessionPolicy,
    users: &dyn crate::store::UserStore,
    user_id: crate::domain::UserId,
    amr: Vec<String>,
    meta: &crate::http::ClientMeta,
    now: i64,
) -> Result<(SessionRecord, SecretString), StoreError> {
    let roles = role_names(users, user_id).await?;
    let (mut session, token) = start(store, policy, &user_id.to_string(), roles, amr, meta, now).await?;
    for _ in 0..ROLE_SYNC_ROUNDS {
        let current = role_names(users, user_id).await?;
        if current == session.roles {
            return Ok((session, token));
        }
        store.set_roles(&session.user_id, &session.sid, &current).await?;
        session.roles = current;
        session.roles_version += 1;
    }
    Err(StoreError::Unavailable("the user's roles kept changing while the session started".into()))
}

/// The names of a user's roles in the user store.
pub async fn role_names(
    users: &dyn crate::store::UserStore,
    user_id: crate::domain::UserId,
) -> Result<Vec<String>, StoreError> {
    Ok(users.roles_of(user_id).await?.iter().map(|r| r.as_str().to_owned()).collect())
}

/// Records the user's roles, as the user store holds them now, on every live
/// session of the user (after an admin changed them), and reads them again until
/// they stand still: of two changes landing at once, the one whose write to the
/// sessions comes last may have read the roles before the other's change, so it
/// checks and writes again. Returns the roles written.
pub async fn update_roles(
    store: &dyn SessionStore,
    users: &dyn crate::store::UserStore,
    user_id: crate::domain::UserId,
) -> Result<Vec<String>, StoreError> {
    let mut roles = role_names(users, user_id).await?;
    for _ in 0..ROLE_SYNC_ROUNDS {
        for session in store.list(&user_id.to_string()).await? {
            if session.revoked_at.is_none() && session.roles != roles {
                store.set_roles(&session.user_id, &session.sid, &roles).await?;
            }
        }
        let now = role_names(users, user_id).await?;
        if now == roles {
            return Ok(roles);
        }
        roles = now;
    }
    Err(StoreError::Unavailable("the user's roles kept changing while the sessions were updated".into()))
}

/// How often [`update_roles`] and [`start_for_user`] write again when the roles
/// changed under them.
const ROLE_SYNC_ROUNDS: usize = 4;

/// A new session and its first refresh token, whose items may be deleted
/// after `expires_at` (the session's absolute end).
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    pub session: &'a SessionRecord,
    pub first: &'a TokenHash,
    pub expires_at: i64,
}

/// A refresh of `session` as it was read: `old` spent, `new` its live token
/// (expiring at `expires_at`), its roles set to `roles` and its use to `now`.
#[derive(Debug, Clone, Copy)]
pub struct Rotate<'a> {
    pub session: &'a SessionRecord,
    pub old: &'a TokenHash,
    pub new: &'a TokenHash,
    pub roles: &'a [String],
    pub now: i64,
    pub expires_at: i64,
}

/// A re-authentication in `session` as it was read: its live token spent,
/// `new` the live one (expiring at `expires_at`), `amr` and `auth_time` (`now`) set.
#[derive(Debug, Clone, Copy)]
pub struct Reauth<'a> {
    pub session: &'a SessionRecord,
    pub new: &'a TokenHash,
    pub amr: &'a [String],
    pub now: i64,
    pub expires_at: i64,
}

/// The session store (DynamoDB in AWS, in-memory locally).
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Writes a session and its first refresh token together, or neither.
    async fn create(&self, new: NewSession<'_>) -> Result<(), StoreError>;
    async fn refresh_token(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError>;
    async fn get(&self, user_id: &str, sid: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Atomically: `old` active → spent, `new` written as active, the session's
    /// `last_used_at` set to `now` and its roles to `roles` — only if `old` is
    /// still active, the session is not revoked and its `roles_version` is still
    /// `session.roles_version`. Two rotations of one token never both succeed.
    async fn rotate(&self, step: Rotate<'_>) -> Result<Rotation, StoreError>;
    /// Records a use of a live session (`last_used_at`, for the idle timeout) and
    /// its current roles: for sessions whose refresh tokens another identity
    /// provider rotates. A revoked or unknown session is left as it is.
    async fn touch(&self, user_id: &str, sid: &str, roles: &[String], now: i64) -> Result<(), StoreError>;
    /// Replaces the roles recorded on one session and advances its `roles_version`.
    async fn set_roles(&self, user_id: &str, sid: &str, roles: &[String]) -> Result<(), StoreError>;
    /// A re-authentication in a live session: atomically, the session's live
    /// refresh token (`session.head`; a session without one is `SessionChanged`) spent, `new` written as active,
    /// and the session's `auth_time`, `amr` and `last_used_at` set — only if the
    /// session is not revoked and `session.head` is still its live token.
    async fn reauthenticate(&self, step: Reauth<'_>) -> Result<Rotation, StoreError>;
    /// Marks a session revoked (idempotent).
    async fn revoke(&self, user_id: &str, sid: &str, now: i64) -> Result<(), StoreError>;
    /// Every session of a user, revoked and expired ones included.
    async fn list(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_256_bit_and_hash_consistently() {
        let (token, hash) = new_refresh_token();
        assert!(token.expose_secret().starts_with(REFRESH_TOKEN_PREFIX));
        assert_eq!(hash_presented(&token), Some(hash));
        let (other, other_hash) = new_refresh_token();
        assert_ne!(hash, other_hash);
        assert_ne!(token.expose_secret(), other.expose_secret());
        for bad in ["", "pcr_", "pcr_abc", "xyz_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "pcr_!!!!"] {
            assert_eq!(hash_presented(&SecretString::from(bad)), None, "{bad}");
        }
    }

    #[test]
    fn sessions_end_by_revocation_idle_or_absolute_timeout() {
        let policy = SessionPolicy { idle_secs: 1800, absolute_secs: 43_200 };
        let mut s = SessionRecord {
            user_id: "u".into(),
            sid: "s".into(),
            created_at: 0,
            last_used_at: 0,
            revoked_at: None,
            user_agent: None,
            ip: None,
            amr: vec!["pwd".into()],
            auth_time: 0,
            roles: vec!["user".into()],
            roles_version: 0,
            head: None,
        };
        assert_eq!(policy.state(&s, 1799), SessionState::Live);
        assert_eq!(policy.state(&s, 1800), SessionState::IdleExpired);
        s.last_used_at = 43_000;
        assert_eq!(policy.state(&s, 43_199), SessionState::Live);
        assert_eq!(policy.state(&s, 43_200), SessionState::AbsoluteExpired);
        s.revoked_at = Some(1);
        assert_eq!(policy.state(&s, 2), SessionState::Revoked);
    }
}
