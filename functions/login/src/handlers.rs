//! The login function's handlers and their dependencies.

use http::StatusCode;
use lambda_http::Request;
use portcullis_shared::audit::{Auditor, EventType};
use portcullis_shared::clock::Clock;
use portcullis_shared::crypto::FieldCipher;
use portcullis_shared::deferred::Deferred;
use portcullis_shared::device;
use portcullis_shared::domain::{Email, Password, Role};
use portcullis_shared::error::BootError;
use portcullis_shared::error::Violation;
use portcullis_shared::http::{json, no_content, parse_json, ClientMeta, HandlerResult};
use portcullis_shared::identity::{
    self, ChallengeSeed, IdentityError, IdentityProvider, Need, Next, Principal,
};
use portcullis_shared::policy::PasswordPolicy;
use portcullis_shared::routes::{LoginRoute, Resolved};
use portcullis_shared::runtime::Boot;
use portcullis_shared::sessions::{self, SessionStore};
use portcullis_shared::throttle::Refusal;
use portcullis_shared::tokens::TokenIssuer;
use portcullis_shared::ApiError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Everything the login handlers use, built once at cold start.
pub struct Deps {
    /// Where accounts live (native or a Cognito pool): the one backend switch.
    pub identity: Arc<dyn IdentityProvider>,
    /// The key table's public side, for the JWKS.
    pub key_store: Arc<dyn portcullis_shared::store::KeyMaterialStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub throttle: portcullis_shared::throttle::Throttle,
    pub auditor: Auditor,
    /// Unwrapped in the background from cold start on (see [`Deferred`]).
    pub keys: Deferred<LoginKeys>,
    pub policy: PasswordPolicy,
    pub clock: Arc<dyn Clock>,
    pub max_body_bytes: usize,
    /// How recent an authentication a password change needs.
    pub reauth_max_age_secs: u64,
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
    pub async fn build(boot: &Boot) -> Result<Self, BootError> {
        let (config, backends, clock) = (&boot.config, &boot.backends, boot.clock.clone());
        let keys = boot.clone().prefetch_current(|keys, previous: Option<Arc<LoginKeys>>| async move {
            let fields = keys.fields_kept(previous.as_ref().map(|p| &p.fields)).await?;
            let tokens = keys.current_tokens(previous.as_ref().map(|p| &p.tokens)).await?;
            // The held signing key is no longer current: whatever fails after
            // this point must not let the previous keys (with it) serve on.
            let moved_on = previous.as_ref().is_some_and(|p| !Arc::ptr_eq(&p.tokens, &tokens));
            let published = portcullis_shared::crypto::load_verifying_keys(keys.backends.keys.as_ref())
                .await
                .map_err(|e| match moved_on {
                    true => BootError::refused(format_args!("the signing key moved on: {e}")),
                    false => BootError::from_error("verification keys", &e),
                })?;
            Ok(Arc::new(LoginKeys { fields, tokens, jwks: portcullis_shared::tokens::jwks(&published) }))
        });
        Ok(Self {
            identity: portcullis_shared::runtime::identity_provider(config, backends)?,
            key_store: backends.keys.clone(),
            sessions: backends.sessions.clone(),
            throttle: portcullis_shared::runtime::throttle(config, backends, clock.clone()),
            auditor: Auditor::new(backends.audit.clone(), clock.clone()),
            keys,
            policy: PasswordPolicy::new(config.password_min_length, config.hibp_url.clone()),
            clock,
            max_body_bytes: config.max_body_bytes,
            reauth_max_age_secs: config.reauth_max_age_secs,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: Password,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: Password,
    new_password: Password,
}

/// `POST /auth/reauth`: the password again, and the TOTP code when enrolled.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reauth {
    password: Password,
    #[serde(default)]
    code: Option<secrecy::SecretString>,
}

#[derive(Serialize)]
struct Profile {
    user_id: String,
    email: String,
    roles: Vec<String>,
    mfa_enabled: bool,
}

/// The handler of each login route (the route table names them).
pub(crate) async fn dispatch(deps: &Deps, found: Resolved<'_, LoginRoute>, req: &Request) -> HandlerResult {
    match found.route {
        LoginRoute::Health => health(),
        LoginRoute::Register => register(deps, req).await,
        LoginRoute::Login => login(deps, req).await,
        LoginRoute::ChangePassword => change_password(deps, req).await,
        LoginRoute::Reauth => reauth(deps, req).await,
        LoginRoute::Me => me(deps, req).await,
        LoginRoute::Jwks => jwks(deps).await,
    }
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
) -> Result<String, ApiError> {
    // Our policy first (breached passwords, the email's local part); a pool's own after.
    deps.policy.check(password, email, "password").await?;
    let keys = deps.keys.get().await?;
    let now = deps.clock.now_secs();
    deps.identity
        .register(&keys.fields, email, password, roles, now)
        .await
        .map_err(|e| identity::api_error(e, ApiError::EmailUnavailable))
}

/// Registrations are counted before any work (the policy, a breach lookup, an
/// argon2 hash): per address, in a bucket of its own under the address's keyed
/// hash, and per source IP with every other guess. A taken address answers 409,
/// so a run of them is an enumeration oracle and a CPU sink: the sixth in the
/// window answers 429. A registration that succeeds clears the address's bucket
/// but keeps its IP slot, so mass sign-ups from one source are capped too. The bucket.
async fn admit_registration(deps: &Deps, email: &Email, meta: &ClientMeta) -> Result<String, ApiError> {
    let keys = deps.keys.get().await?;
    let bucket = format!("register:{}", hex::encode(keys.fields.blind_index(email.as_str())));
    let reason = |why| match why {
        Refusal::Account => "registration_address",
        Refusal::SourceIp => "registration_source_ip",
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
    deps.auditor.record(EventType::Register, Some(id.clone()), &meta, None).await;
    json(StatusCode::CREATED, &serde_json::json!({ "user_id": id }))
}

/// Counts an attempt at a guessable secret against `bucket` (the account's, or
/// a known device's: see `device`) and the source IP: a 429 (with its audit
/// event) when either is over its limit, a 503 when the counters are
/// unreachable (fail closed: no unthrottled guessing).
async fn admit(
    deps: &Deps,
    bucket: &str,
    subject: Option<String>,
    meta: &ClientMeta,
) -> Result<(), ApiError> {
    let reason = |why| match why {
        Refusal::Account => "account_locked",
        Refusal::SourceIp => "source_ip_throttled",
    };
    deps.throttle.admit_audited(&deps.auditor, bucket, subject, meta, reason).await
}

/// Wrong password, unknown account and malformed email end in the same 401
/// body after the same work (the provider's), and lock alike.
pub async fn login(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let body: Credentials = parse_json(req, deps.max_body_bytes)?;
    let keys = deps.keys.get().await?;
    let now = deps.clock.now_secs();
    let account = deps.identity.locate(&keys.fields, &body.email).await?;
    let (key, subject, refusal) = (account.key.clone(), account.subject.clone(), account.refusal);
    let bucket = device::throttle_key(&keys.fields, req, &key, &account.binding, now);
    // A refused attempt checks nothing and so costs no argon2: known and unknown
    // accounts lock alike and get the same 429, so its speed tells nothing.
    admit(deps, &bucket, subject.clone(), &meta).await?;
    let verified = match deps.identity.check_password(account, &body.password, now).await {
        Ok(verified) => verified,
        Err(IdentityError::Refused) => {
            deps.auditor.record(EventType::LoginFailure, subject, &meta, Some(refusal)).await;
            return Err(ApiError::InvalidCredentials);
        }
        Err(other) => return Err(identity::api_error(other, ApiError::InvalidCredentials)),
    };
    // This client's device token once the login completes (the MFA step hands it out).
    let device_token = device::issue(&keys.fields, &key, &verified.binding, now);
    match verified.next {
        Next::SecondFactor(pending) => {
            // The password was right; the second factor decides. No session, no
            // token yet, and the account's count stands until that factor succeeds.
            deps.throttle.success(None, meta.source_ip.as_deref()).await;
            let seed = ChallengeSeed { bucket, device_token };
            let issued = deps.identity.challenge(&keys.fields, pending, seed, now).await?;
            deps.auditor.record(EventType::MfaChallenge, subject, &meta, None).await;
            let body = serde_json::json!({"mfa_required": true, "mfa_token": issued.mfa_token, "methods": issued.methods});
            json(StatusCode::OK, &body)
        }
        Next::SignedIn(signed_in) => {
            // The last factor succeeded: only now are the account's failures forgotten.
            deps.throttle.success(Some(&bucket), meta.source_ip.as_deref()).await;
            let (user_id, tokens) = deps.identity.start_session(&keys.tokens, signed_in, &meta, now).await?;
            deps.auditor.record(EventType::LoginSuccess, Some(user_id), &meta, None).await;
            Ok(device::remember(json(StatusCode::OK, &tokens)?, &device_token))
        }
    }
}

pub async fn me(deps: &Deps, req: &Request) -> HandlerResult {
    let keys = deps.keys.get().await?;
    let principal = deps.identity.principal(&keys.fields, req, Need::Profile).await?;
    let roles = deps.identity.roles(&principal).await?;
    json(
        StatusCode::OK,
        &Profile {
            user_id: principal.caller.sub.clone(),
            email: principal.email.as_str().to_owned(),
            roles,
            mfa_enabled: principal.mfa_enabled,
        },
    )
}

/// The throttle bucket of a signed-in account's guessable routes: its own, or
/// this device's when the request carries the account's device cookie.
fn principal_bucket(keys: &LoginKeys, req: &Request, principal: &Principal, now: i64) -> String {
    device::throttle_key(&keys.fields, req, &principal.account_key, &principal.binding, now)
}

pub async fn change_password(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let keys = deps.keys.get().await?;
    let principal = deps.identity.principal(&keys.fields, req, Need::Password).await?;
    let body: PasswordChange = parse_json(req, deps.max_body_bytes)?;
    let now = deps.clock.now_secs();
    principal.caller.require_recent_auth(now, deps.reauth_max_age_secs, principal.mfa_enabled)?;
    // The current password is guessable: counted with the account's login
    // attempts, so neither route is an unlimited oracle; counted before any
    // work (the policy's breach lookup, argon2).
    let subject = principal.caller.sub.clone();
    admit(deps, &principal_bucket(&keys, req, &principal, now), Some(subject.clone()), &meta).await?;
    deps.policy.check(&body.new_password, &principal.email, "new_password").await?;
    let changed = deps.identity.change_password(&principal, &body.current_password, &body.new_password, now);
    if let Err(err) = changed.await {
        if matches!(err, IdentityError::Refused) {
            let reason = Some("wrong_password");
            deps.auditor.record(EventType::PasswordChangeFailure, Some(subject), &meta, reason).await;
        }
        return Err(identity::api_error(err, ApiError::InvalidCredentials));
    }
    // Not the account's count: other guessable routes share it.
    deps.throttle.success(None, meta.source_ip.as_deref()).await;
    deps.auditor.record(EventType::PasswordChange, Some(subject.clone()), &meta, None).await;
    // ASVS V3.3.3: a password change ends every other session of the user.
    let keep = principal.caller.sid.as_deref();
    let revoked = sessions::revoke_all(deps.sessions.as_ref(), &subject, keep, now).await?;
    if revoked > 0 {
        let reason = Some("password_change");
        deps.auditor.record(EventType::SessionsRevoked, Some(subject), &meta, reason).await;
    }
    no_content()
}

/// `POST /auth/reauth` (step-up): the password, and the TOTP code when the
/// account has one, proven again inside the caller's session. Counted with the
/// account's login attempts (the same limiter, so neither route is an
/// unlimited oracle). On success the session's `auth_time` and `amr` are now
/// and what was proven, its refresh token is replaced (the old one is spent),
/// and fresh tokens are returned.
pub async fn reauth(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let keys = deps.keys.get().await?;
    let principal = deps.identity.principal(&keys.fields, req, Need::Password).await?;
    principal.caller.sid.as_deref().ok_or(ApiError::Unauthenticated)?;
    let body: Reauth = parse_json(req, deps.max_body_bytes)?;
    let now = deps.clock.now_secs();
    let bucket = principal_bucket(&keys, req, &principal, now);
    let subject = principal.caller.sub.clone();
    admit(deps, &bucket, Some(subject.clone()), &meta).await?;
    let proven =
        deps.identity.reauthenticate(&keys.fields, &principal, &body.password, body.code.as_ref(), now);
    let signed_in = match proven.await {
        Ok(signed_in) => signed_in,
        Err(err) => {
            let (reason, refused) = match &err {
                IdentityError::Refused => ("wrong_password", ApiError::InvalidCredentials),
                IdentityError::Replayed => ("replayed_code", ApiError::InvalidMfa),
                IdentityError::WrongCode if body.code.is_none() => {
                    ("second_factor_missing", ApiError::InvalidMfa)
                }
                IdentityError::WrongCode => ("wrong_code", ApiError::InvalidMfa),
                IdentityError::Throttled => ("provider_throttled", ApiError::InvalidCredentials),
                _ => return Err(identity::api_error(err, ApiError::InvalidCredentials)),
            };
            deps.auditor.record(EventType::ReauthenticationFailure, Some(subject), &meta, Some(reason)).await;
            return Err(identity::api_error(err, refused));
        }
    };
    deps.throttle.success(Some(&bucket), meta.source_ip.as_deref()).await;
    let how = if signed_in.amr.len() > 1 { "password_and_totp" } else { "password" };
    let tokens = deps.identity.resume_session(&keys.tokens, &principal, signed_in, &meta, now).await?;
    deps.auditor.record(EventType::Reauthentication, Some(subject), &meta, Some(how)).await;
    json(StatusCode::OK, &tokens)
}
