//! The login function's handlers and their dependencies.

use http::StatusCode;
use lambda_http::Request;
use portcullis_shared::audit::{Auditor, EventType};
use portcullis_shared::clock::Clock;
use portcullis_shared::config::Config;
use portcullis_shared::crypto::{BlindIndex, FieldCipher, KeyProvider, PasswordHasher};
use portcullis_shared::deferred::Deferred;
use portcullis_shared::device;
use portcullis_shared::domain::{Email, Password, Role, UserId};
use portcullis_shared::error::Violation;
use portcullis_shared::http::{json, no_content, parse_json, Caller, ClientMeta, HandlerResult};
use portcullis_shared::identity::IdentityProvider;
use portcullis_shared::policy::PasswordPolicy;
use portcullis_shared::runtime::{Backends, BootError, KeySource};
use portcullis_shared::sessions::{self, SessionPolicy, SessionStore};
use portcullis_shared::store::{NewUser, StoreError, UserRecord, UserStore};
use portcullis_shared::tokens::{Grant, TokenIssuer, TokenResponse};
use portcullis_shared::ApiError;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Everything the login handlers use, built once at cold start.
pub struct Deps {
    pub users: Arc<dyn UserStore>,
    /// Re-authentication checks the account's TOTP code.
    pub mfa: Arc<dyn portcullis_shared::store::MfaStore>,
    /// The key table's public side, for the JWKS.
    pub key_store: Arc<dyn portcullis_shared::store::KeyMaterialStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub session_policy: SessionPolicy,
    pub challenges: Arc<dyn portcullis_shared::mfa::ChallengeStore>,
    pub throttle: portcullis_shared::throttle::Throttle,
    pub auditor: Auditor,
    /// Unwrapped in the background from cold start on (see [`Deferred`]).
    pub keys: Deferred<LoginKeys>,
    pub hasher: PasswordHasher,
    pub policy: PasswordPolicy,
    pub clock: Arc<dyn Clock>,
    pub max_body_bytes: usize,
    /// How recent an authentication a password change needs.
    pub reauth_max_age_secs: u64,
    /// Set when users live in an external provider (Cognito); `None` is native.
    pub identity: Option<Arc<dyn IdentityProvider>>,
}

/// The login function's key material: the email field key, the signing key and
/// the JWKS it publishes. The signing key and the JWKS are rechecked against
/// the key table within the key bound, so a warm instance stops using and
/// publishing a revoked or retired key (docs/security/keys.md).
pub struct LoginKeys {
    pub fields: Arc<FieldCipher>,
    pub tokens: Arc<TokenIssuer>,
    pub jwks: serde_json::Value,
}

impl Deps {
    /// Builds the stores, the hasher and the policy, and starts unwrapping the
    /// keys (creating them on the very first start) in the background.
    pub async fn build(
        config: &Config,
        backends: &Backends,
        provider: Arc<dyn KeyProvider>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BootError> {
        let hasher = PasswordHasher::new().map_err(|e| BootError::from_error("password hasher", &e))?;
        let keys = KeySource::new(config, backends, provider, &clock).prefetch_current(
            |keys, previous: Option<Arc<LoginKeys>>| async move {
                let fields = match &previous {
                    Some(previous) => previous.fields.clone(),
                    None => Arc::new(keys.fields().await?),
                };
                let tokens = keys.current_tokens(previous.as_ref().map(|p| &p.tokens)).await?;
                let published = portcullis_shared::crypto::load_verifying_keys(keys.backends.keys.as_ref())
                    .await
                    .map_err(|e| BootError::from_error("verification keys", &e))?;
                Ok(Arc::new(LoginKeys { fields, tokens, jwks: portcullis_shared::tokens::jwks(&published) }))
            },
        );
        Ok(Self {
            users: backends.users.clone(),
            mfa: backends.mfa.clone(),
            key_store: backends.keys.clone(),
            sessions: backends.sessions.clone(),
            session_policy: config.session_policy(),
            challenges: backends.challenges.clone(),
            throttle: portcullis_shared::runtime::throttle(config, backends, clock.clone()),
            auditor: Auditor::new(backends.audit.clone(), clock.clone()),
            keys,
            hasher,
            policy: PasswordPolicy::new(config.password_min_length, config.hibp_url.clone()),
            clock,
            max_body_bytes: config.max_body_bytes,
            reauth_max_age_secs: config.reauth_max_age_secs,
            identity: portcullis_shared::runtime::identity_provider(config),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    pub(crate) email: String,
    pub(crate) password: Password,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    pub(crate) current_password: Password,
    pub(crate) new_password: Password,
}

/// `POST /auth/reauth`: the password again, and the TOTP code when enrolled.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reauth {
    pub(crate) password: Password,
    #[serde(default)]
    pub(crate) code: Option<secrecy::SecretString>,
}

#[derive(Serialize)]
pub(crate) struct Profile {
    pub(crate) user_id: String,
    pub(crate) email: String,
    pub(crate) roles: Vec<String>,
    pub(crate) mfa_enabled: bool,
}

pub fn health() -> HandlerResult {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// The published keys. When the signing side cannot load (its key was revoked
/// and no successor opens yet), the JWKS is still served, read from the table,
/// so verifiers elsewhere drop the revoked key rather than keep a cached set.
pub async fn jwks(deps: &Deps) -> HandlerResult {
    match deps.keys.get().await {
        Ok(keys) => json(StatusCode::OK, &keys.jwks),
        Err(_) => {
            let published = portcullis_shared::crypto::load_verifying_keys(deps.key_store.as_ref())
                .await
                .map_err(ApiError::unavailable)?;
            json(StatusCode::OK, &portcullis_shared::tokens::jwks(&published))
        }
    }
}

pub(crate) fn parse_email(raw: &str) -> Result<Email, ApiError> {
    Email::parse(raw).map_err(|message| {
        ApiError::Validation(vec![Violation {
            rule: "invalid_email",
            field: "email",
            message: message.into(),
        }])
    })
}

/// Creates a user with `roles`, enforcing the password policy. Shared by the
/// register route and the local server's bootstrap admin.
pub async fn register_user(
    deps: &Deps,
    email: &Email,
    password: &Password,
    roles: Vec<Role>,
) -> Result<UserId, ApiError> {
    deps.policy.check(password, email, "password").await?;
    let id = UserId::generate();
    let keys = deps.keys.get().await?;
    let password_hash = deps.hasher.hash(password).await.map_err(ApiError::internal)?;
    let user = NewUser {
        id,
        email_index: keys.fields.blind_index(email.as_str()),
        email_ciphertext: keys.fields.encrypt(email.as_str().as_bytes(), &id.as_bytes()),
        password_hash,
        roles,
        created_at: deps.clock.now_secs(),
    };
    match deps.users.insert_user(&user).await {
        Ok(()) => Ok(id),
        Err(StoreError::Duplicate) => Err(ApiError::EmailUnavailable),
        Err(other) => Err(other.into()),
    }
}

/// Registrations are counted before any work (the policy, a breach lookup, an
/// argon2 hash): per address, in a bucket of its own under the address's keyed
/// hash, and per source IP with every other guess. A taken address answers 409,
/// so a run of them is an enumeration oracle and a CPU sink: the sixth in the
/// window answers 429. A registration that succeeds clears the address's bucket
/// but keeps its IP slot, so mass sign-ups from one source are capped too. The bucket.
pub(crate) async fn admit_registration(
    deps: &Deps,
    email: &Email,
    meta: &ClientMeta,
) -> Result<String, ApiError> {
    let keys = deps.keys.get().await?;
    let bucket = format!("register:{}", hex::encode(keys.fields.blind_index(email.as_str())));
    let reason = |why| match why {
        portcullis_shared::throttle::Refusal::Account => "registration_address",
        portcullis_shared::throttle::Refusal::SourceIp => "registration_source_ip",
    };
    deps.throttle.admit_audited(&deps.auditor, &bucket, None, meta, reason).await?;
    Ok(bucket)
}

pub async fn register(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let body: Credentials = parse_json(req, deps.max_body_bytes)?;
    let email = parse_email(&body.email)?;
    let bucket = admit_registration(deps, &email, &meta).await?;
    let id = register_user(deps, &email, &body.password, vec![Role::user()]).await?;
    deps.throttle.forget(&bucket).await;
    deps.auditor.record(EventType::Register, Some(id.to_string()), &meta, None).await;
    json(StatusCode::CREATED, &serde_json::json!({ "user_id": id.to_string() }))
}

/// Counts a login attempt against the account and the source IP: a 429 (with
/// its audit event) when either is over its limit, a 503 when the counters are
/// unreachable (fail closed: no unthrottled guessing).
pub(crate) async fn admit(
    deps: &Deps,
    account: &str,
    subject: Option<String>,
    meta: &ClientMeta,
) -> Result<(), ApiError> {
    let reason = |why| match why {
        portcullis_shared::throttle::Refusal::Account => "account_locked",
        portcullis_shared::throttle::Refusal::SourceIp => "source_ip_throttled",
    };
    deps.throttle.admit_audited(&deps.auditor, account, subject, meta, reason).await
}

/// The typed email, when it is an address, and its keyed hash: the account's
/// lookup key and its throttle bucket. Not an address: still counted, under the
/// keyed hash of what was typed.
pub(crate) fn typed_email(keys: &LoginKeys, raw: &str) -> (Option<Email>, BlindIndex) {
    let email = Email::parse(raw).ok();
    let index = match &email {
        Some(email) => keys.fields.blind_index(email.as_str()),
        None => keys.fields.blind_index(&raw.trim().to_lowercase()),
    };
    (email, index)
}

/// Wrong password, unknown account and malformed email all take one argon2
/// verification and end in the same 401 body (ASVS V2.2, enumeration defence).
pub async fn login(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let body: Credentials = parse_json(req, deps.max_body_bytes)?;
    let keys = deps.keys.get().await?;
    let (email, index) = typed_email(&keys, &body.email);
    let user = match email {
        Some(_) => deps.users.find_by_email_index(&index).await?,
        None => None,
    };
    // An existing account is counted under its id (MFA failures count there too);
    // an unknown one under its keyed email hash, so it locks exactly the same way.
    let account = user.as_ref().map(|u| u.id.to_string()).unwrap_or_else(|| hex::encode(index));
    let ip = meta.source_ip.clone();
    // A device that completed a login for this account before has a budget of
    // its own; every other attempt counts on the account's (see `device`).
    let now = deps.clock.now_secs();
    let binding = user.as_ref().map(|u| device::password_binding(&u.password_hash)).unwrap_or_default();
    let bucket = device::throttle_key(&keys.fields, req, &account, &binding, now);
    // A refused attempt checks nothing and so costs no argon2: known and unknown
    // accounts lock alike and get the same 429, so its speed tells nothing.
    admit(deps, &bucket, user.as_ref().map(|u| u.id.to_string()), &meta).await?;
    let verified = match &user {
        Some(u) => deps.hasher.verify(&body.password, &u.password_hash).await,
        None => deps.hasher.verify_dummy(&body.password).await,
    }
    .map_err(ApiError::internal)?;
    let user = match (user, verified) {
        (Some(user), true) => user,
        (user, _) => {
            let reason = if user.is_some() { "wrong_password" } else { "unknown_account" };
            deps.auditor
                .record(EventType::LoginFailure, user.map(|u| u.id.to_string()), &meta, Some(reason))
                .await;
            return Err(ApiError::InvalidCredentials);
        }
    };
    let mut binding = binding;
    if deps.hasher.needs_rehash(&user.password_hash) {
        let phc = deps.hasher.hash(&body.password).await.map_err(ApiError::internal)?;
        deps.users.set_password_hash(user.id, &phc, now).await?;
        binding = device::password_binding(&phc);
    }
    // This client's device token once the login completes (the MFA step hands it out).
    let device_token = device::issue(&keys.fields, &account, &binding, now);
    if user.mfa_enabled {
        // The password was right; the second factor decides. No session, no token
        // yet, and the account's count stands until that factor succeeds.
        deps.throttle.success(None, ip.as_deref()).await;
        let (mfa_token, hash) = portcullis_shared::mfa::new_mfa_token();
        let challenge = portcullis_shared::mfa::Challenge {
            user_id: user.id.to_string(),
            attempts: 0,
            expires_at: now + portcullis_shared::mfa::CHALLENGE_TTL_SECS,
            throttle_key: Some(bucket),
            device_token: Some(device::seal_for_challenge(&keys.fields, &device_token)),
        };
        deps.challenges.create(&hash, &challenge).await?;
        deps.auditor.record(EventType::MfaChallenge, Some(user.id.to_string()), &meta, None).await;
        return json(
            StatusCode::OK,
            &serde_json::json!({
                "mfa_required": true,
                "mfa_token": portcullis_shared::mfa::reveal(&mfa_token),
                "methods": ["totp", "recovery_code"],
            }),
        );
    }
    // The last factor succeeded: only now are the account's failures forgotten
    // (with MFA on, the second step does it, on the same counter).
    deps.throttle.success(Some(&bucket), ip.as_deref()).await;
    // The session is written before any token exists: no token without its session.
    let (session, refresh_token) = sessions::start_for_user(
        deps.sessions.as_ref(),
        &deps.session_policy,
        deps.users.as_ref(),
        user.id,
        vec!["pwd".into()],
        &meta,
        now,
    )
    .await?;
    let grant = Grant::for_session(&session, session.roles.clone());
    let (access_token, _) = keys.tokens.issue(grant).map_err(ApiError::internal)?;
    deps.auditor.record(EventType::LoginSuccess, Some(user.id.to_string()), &meta, None).await;
    let resp = json(
        StatusCode::OK,
        &TokenResponse {
            access_token,
            refresh_token: refresh_token.expose_secret().to_owned(),
            token_type: "Bearer",
            expires_in: keys.tokens.ttl_secs(),
        },
    )?;
    Ok(device::remember(resp, &device_token))
}

async fn current_user(deps: &Deps, req: &Request) -> Result<(UserRecord, Caller), ApiError> {
    let caller = Caller::from_request(req)?;
    let id = UserId::parse(&caller.sub).ok_or(ApiError::Unauthenticated)?;
    // A token for a deleted user authenticates nobody.
    let user = deps.users.find_by_id(id).await?.ok_or(ApiError::Unauthenticated)?;
    Ok((user, caller))
}

async fn email_of(deps: &Deps, user: &UserRecord) -> Result<Email, ApiError> {
    let plain = deps
        .keys
        .get()
        .await?
        .fields
        .decrypt(&user.email_ciphertext, &user.id.as_bytes())
        .map_err(ApiError::internal)?;
    let text = String::from_utf8(plain).map_err(ApiError::internal)?;
    Email::parse(&text).map_err(|_| ApiError::internal(StoreError::Corrupt("users.email_ciphertext")))
}

pub async fn change_password(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let (user, caller) = current_user(deps, req).await?;
    let body: PasswordChange = parse_json(req, deps.max_body_bytes)?;
    caller.require_recent_auth(deps.clock.now_secs(), deps.reauth_max_age_secs, user.mfa_enabled)?;
    // The current password is guessable: counted with the account's login
    // attempts, so neither route is an unlimited oracle.
    let account = user.id.to_string();
    let keys = deps.keys.get().await?;
    let binding = device::password_binding(&user.password_hash);
    let bucket = device::throttle_key(&keys.fields, req, &account, &binding, deps.clock.now_secs());
    admit(deps, &bucket, Some(account.clone()), &meta).await?;
    let ok =
        deps.hasher.verify(&body.current_password, &user.password_hash).await.map_err(ApiError::internal)?;
    if !ok {
        deps.auditor
            .record(
                EventType::PasswordChangeFailure,
                Some(user.id.to_string()),
                &meta,
                Some("wrong_password"),
            )
            .await;
        return Err(ApiError::InvalidCredentials);
    }
    deps.throttle.success(None, meta.source_ip.as_deref()).await;
    let email = email_of(deps, &user).await?;
    deps.policy.check(&body.new_password, &email, "new_password").await?;
    let phc = deps.hasher.hash(&body.new_password).await.map_err(ApiError::internal)?;
    let now = deps.clock.now_secs();
    deps.users.set_password_hash(user.id, &phc, now).await?;
    deps.auditor.record(EventType::PasswordChange, Some(user.id.to_string()), &meta, None).await;
    // ASVS V3.3.3: a password change ends every other session of the user.
    let revoked =
        sessions::revoke_all(deps.sessions.as_ref(), &user.id.to_string(), caller.sid.as_deref(), now)
            .await?;
    if revoked > 0 {
        deps.auditor
            .record(EventType::SessionsRevoked, Some(user.id.to_string()), &meta, Some("password_change"))
            .await;
    }
    no_content()
}

pub async fn me(deps: &Deps, req: &Request) -> HandlerResult {
    let (user, _) = current_user(deps, req).await?;
    let email = email_of(deps, &user).await?;
    let roles = deps.users.roles_of(user.id).await?;
    json(
        StatusCode::OK,
        &Profile {
            user_id: user.id.to_string(),
            email: email.as_str().to_owned(),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            mfa_enabled: user.mfa_enabled,
        },
    )
}

/// How often a re-authentication reads its session again when a refresh of the
/// same session lands between its read and its write.
const REAUTH_ATTEMPTS: usize = 3;

/// `POST /auth/reauth` (step-up): the password, and the TOTP code when the
/// account has one, proven again inside the caller's session. Counted with the
/// account's login attempts (the same limiter, so neither route is an
/// unlimited oracle). On success the session's `auth_time` and `amr` are now
/// and what was proven, its live refresh token is replaced (the old one is
/// spent: presented later it is reuse), and fresh tokens are returned.
pub async fn reauth(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let (user, caller) = current_user(deps, req).await?;
    let sid = caller.sid.clone().ok_or(ApiError::Unauthenticated)?;
    let body: Reauth = parse_json(req, deps.max_body_bytes)?;
    let keys = deps.keys.get().await?;
    let account = user.id.to_string();
    let now = deps.clock.now_secs();
    let binding = device::password_binding(&user.password_hash);
    let bucket = device::throttle_key(&keys.fields, req, &account, &binding, now);
    admit(deps, &bucket, Some(account.clone()), &meta).await?;
    let failure = |reason: &'static str| {
        deps.auditor.record(EventType::ReauthenticationFailure, Some(account.clone()), &meta, Some(reason))
    };
    if !deps.hasher.verify(&body.password, &user.password_hash).await.map_err(ApiError::internal)? {
        failure("wrong_password").await;
        return Err(ApiError::InvalidCredentials);
    }
    let mut amr = vec!["pwd".to_owned()];
    if user.mfa_enabled {
        let state = deps.mfa.mfa_state(user.id).await?.ok_or(ApiError::Unauthenticated)?;
        let (Some(sealed), Some(code)) = (state.secret.as_deref(), body.code.as_ref()) else {
            failure("second_factor_missing").await;
            return Err(ApiError::InvalidMfa);
        };
        let check = portcullis_shared::mfa::check_totp(
            deps.mfa.as_ref(),
            &keys.fields,
            user.id,
            sealed,
            code.expose_secret(),
            now,
        );
        match check.await? {
            portcullis_shared::mfa::TotpCheck::Accepted => amr.push("otp".to_owned()),
            portcullis_shared::mfa::TotpCheck::Wrong => {
                failure("wrong_code").await;
                return Err(ApiError::InvalidMfa);
            }
            portcullis_shared::mfa::TotpCheck::Replayed => {
                failure("replayed_code").await;
                return Err(ApiError::InvalidMfa);
            }
        }
    }
    deps.throttle.success(Some(&bucket), meta.source_ip.as_deref()).await;
    let (refresh_token, hash) = sessions::new_refresh_token();
    let mut attempt = 0;
    let session = loop {
        let session = deps.sessions.get(&account, &sid).await?.ok_or(ApiError::Unauthenticated)?;
        if deps.session_policy.state(&session, now) != sessions::SessionState::Live {
            return Err(ApiError::Unauthenticated);
        }
        // A session from before the store recorded its live refresh token: its
        // token cannot be spent here, and a second live chain would hide reuse.
        // Such a session only re-authenticates by logging in again.
        if session.head.is_none() {
            return Err(ApiError::Unauthenticated);
        }
        let expires_at = deps.session_policy.expires_at(session.created_at);
        match deps.sessions.reauthenticate(&session, &hash, &amr, now, expires_at).await? {
            sessions::Rotation::Rotated => break session,
            _ if attempt + 1 < REAUTH_ATTEMPTS => attempt += 1,
            _ => return Err(ApiError::unavailable(std::io::Error::other("session kept changing"))),
        }
    };
    let grant = Grant {
        sub: account.clone(),
        sid: session.sid.clone(),
        roles: session.roles.clone(),
        amr: amr.clone(),
        auth_time: now,
    };
    let (access_token, _) = keys.tokens.issue(grant).map_err(ApiError::internal)?;
    let how = if user.mfa_enabled { "password_and_totp" } else { "password" };
    deps.auditor.record(EventType::Reauthentication, Some(account.clone()), &meta, Some(how)).await;
    json(
        StatusCode::OK,
        &TokenResponse {
            access_token,
            refresh_token: refresh_token.expose_secret().to_owned(),
            token_type: "Bearer",
            expires_in: keys.tokens.ttl_secs(),
        },
    )
}
