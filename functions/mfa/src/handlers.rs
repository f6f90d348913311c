//! The mfa function's handlers and their dependencies.

use http::StatusCode;
use lambda_http::Request;
use portcullis_shared::audit::{Auditor, EventType};
use portcullis_shared::clock::Clock;
use portcullis_shared::config::Config;
use portcullis_shared::crypto::{FieldCipher, KeyProvider};
use portcullis_shared::deferred::Deferred;
use portcullis_shared::domain::UserId;
use portcullis_shared::http::{json, no_content, parse_json, Caller, ClientMeta, HandlerResult};
use portcullis_shared::mfa::{self, ChallengeStore};
use portcullis_shared::runtime::{Backends, BootError, KeySource};
use portcullis_shared::sessions::{self, SessionPolicy, SessionStore};
use portcullis_shared::store::{MfaState, MfaStore, UserStore};
use portcullis_shared::tokens::{Grant, TokenIssuer, TokenResponse};
use portcullis_shared::ApiError;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;

/// Everything the MFA handlers use, built once at cold start.
pub struct Deps {
    pub users: Arc<dyn UserStore>,
    pub mfa: Arc<dyn MfaStore>,
    pub challenges: Arc<dyn ChallengeStore>,
    pub throttle: portcullis_shared::throttle::Throttle,
    pub sessions: Arc<dyn SessionStore>,
    pub session_policy: SessionPolicy,
    /// Unwrapped in the background from cold start on (see [`Deferred`]).
    pub keys: Deferred<MfaKeys>,
    pub auditor: Auditor,
    pub clock: Arc<dyn Clock>,
    pub max_body_bytes: usize,
    /// How recent an authentication enrolling or removing a factor needs.
    pub reauth_max_age_secs: u64,
    /// Set when users live in an external provider (Cognito); `None` is native.
    pub identity: Option<Arc<dyn portcullis_shared::identity::IdentityProvider>>,
}

/// The MFA function's key material: the field key sealing TOTP secrets, and
/// the signing key for the tokens a completed challenge earns.
pub struct MfaKeys {
    pub fields: Arc<FieldCipher>,
    pub tokens: Arc<TokenIssuer>,
}

impl Deps {
    pub async fn build(
        config: &Config,
        backends: &Backends,
        provider: Arc<dyn KeyProvider>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BootError> {
        // The signing key is rechecked within the key bound (a warm instance moves
        // off a revoked or retired key); the field key is kept.
        let keys = KeySource::new(config, backends, provider, &clock).prefetch_current(
            |keys, previous: Option<Arc<MfaKeys>>| async move {
                let fields = match &previous {
                    Some(previous) => previous.fields.clone(),
                    None => Arc::new(keys.fields().await?),
                };
                let tokens = keys.current_tokens(previous.as_ref().map(|p| &p.tokens)).await?;
                Ok(Arc::new(MfaKeys { fields, tokens }))
            },
        );
        Ok(Self {
            users: backends.users.clone(),
            mfa: backends.mfa.clone(),
            challenges: backends.challenges.clone(),
            throttle: portcullis_shared::runtime::throttle(config, backends, clock.clone()),
            sessions: backends.sessions.clone(),
            session_policy: config.session_policy(),
            keys,
            auditor: Auditor::new(backends.audit.clone(), clock.clone()),
            clock,
            max_body_bytes: config.max_body_bytes,
            reauth_max_age_secs: config.reauth_max_age_secs,
            identity: portcullis_shared::runtime::identity_provider(config),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeBody {
    pub(crate) code: SecretString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyBody {
    pub(crate) mfa_token: SecretString,
    pub(crate) code: SecretString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoveryBody {
    mfa_token: SecretString,
    recovery_code: SecretString,
}

async fn caller_state(deps: &Deps, req: &Request) -> Result<(Caller, UserId, MfaState), ApiError> {
    let caller = Caller::from_request(req)?;
    let id = UserId::parse(&caller.sub).ok_or(ApiError::Unauthenticated)?;
    let state = deps.mfa.mfa_state(id).await?.ok_or(ApiError::Unauthenticated)?;
    Ok((caller, id, state))
}

/// The user's pending TOTP secret; one that does not open fails closed as a wrong factor.
fn open_secret(keys: &MfaKeys, id: UserId, sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, ApiError> {
    mfa::open_secret(&keys.fields, id, sealed).ok_or(ApiError::InvalidMfa)
}

pub async fn enroll(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let (caller, id, state) = caller_state(deps, req).await?;
    if state.mfa_enabled {
        return Err(ApiError::Conflict);
    }
    // Step-up: a stolen access token alone must not bind the account to the thief's authenticator.
    caller.require_recent_auth(deps.clock.now_secs(), deps.reauth_max_age_secs, state.mfa_enabled)?;
    let keys = deps.keys.get().await?;
    let email = keys.fields.decrypt(&state.email_ciphertext, &id.as_bytes()).map_err(ApiError::internal)?;
    let email = String::from_utf8(email).map_err(ApiError::internal)?;
    let secret = mfa::new_totp_secret();
    let (base32, uri, svg) = mfa::enrolment(&secret, &email)
        .ok_or_else(|| ApiError::internal(std::io::Error::other("TOTP enrolment")))?;
    deps.mfa
        .set_pending(id, &keys.fields.encrypt(&secret, &mfa::secret_aad(id)), deps.clock.now_secs())
        .await?;
    deps.auditor.record(EventType::MfaEnrol, Some(id.to_string()), &meta, None).await;
    json(StatusCode::OK, &serde_json::json!({ "secret": base32, "otpauth_uri": uri, "qr_svg": svg }))
}

pub async fn confirm(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let (_, id, state) = caller_state(deps, req).await?;
    let body: CodeBody = parse_json(req, deps.max_body_bytes)?;
    let keys = deps.keys.get().await?;
    let pending = state.pending.as_deref().ok_or(ApiError::Conflict)?;
    let secret = open_secret(&keys, id, pending)?;
    let now = deps.clock.now_secs();
    let Some(step) = mfa::matching_step(&secret, body.code.expose_secret(), now) else {
        deps.auditor
            .record(EventType::MfaVerifyFailure, Some(id.to_string()), &meta, Some("enrolment_code"))
            .await;
        return Err(ApiError::InvalidMfa);
    };
    let codes = mfa::new_recovery_codes();
    let hashes: Vec<[u8; 32]> = codes.iter().map(|(_, h)| *h).collect();
    if !deps.mfa.activate(id, step as i64, &hashes, now).await? {
        return Err(ApiError::Conflict);
    }
    deps.auditor.record(EventType::MfaConfirm, Some(id.to_string()), &meta, None).await;
    let shown: Vec<String> = codes.iter().map(|(c, _)| mfa::reveal(c)).collect();
    json(StatusCode::OK, &serde_json::json!({ "recovery_codes": shown }))
}

pub async fn disable(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let (caller, id, state) = caller_state(deps, req).await?;
    let body: CodeBody = parse_json(req, deps.max_body_bytes)?;
    let keys = deps.keys.get().await?;
    let sealed = state.secret.as_deref().ok_or(ApiError::Conflict)?;
    caller.require_recent_auth(deps.clock.now_secs(), deps.reauth_max_age_secs, true)?;
    // A code that turns the factor off is counted with the second-factor
    // attempts of the account: a stolen access token cannot guess it.
    // Counted on the account: this function cannot read the password hash a
    // device token is bound to, so a device cookie buys no budget here.
    let bucket = id.to_string();
    admit(deps, &bucket, Some(id), &meta).await?;
    let now = deps.clock.now_secs();
    let check = mfa::check_totp(deps.mfa.as_ref(), &keys.fields, id, sealed, body.code.expose_secret(), now);
    if check.await? != mfa::TotpCheck::Accepted {
        deps.auditor
            .record(EventType::MfaVerifyFailure, Some(id.to_string()), &meta, Some("disable_code"))
            .await;
        return Err(ApiError::InvalidMfa);
    }
    deps.throttle.success(Some(&bucket), meta.source_ip.as_deref()).await;
    deps.mfa.disable(id, now).await?;
    sessions::revoke_all(deps.sessions.as_ref(), &id.to_string(), caller.sid.as_deref(), now).await?;
    deps.auditor.record(EventType::MfaDisabled, Some(id.to_string()), &meta, None).await;
    no_content()
}

/// Starts the session the second factor completes and answers with its tokens.
async fn complete_login(
    deps: &Deps,
    keys: &MfaKeys,
    id: UserId,
    amr: &[&str],
    meta: &ClientMeta,
    device_token: Option<String>,
) -> HandlerResult {
    let amr = amr.iter().map(|m| m.to_string()).collect();
    let now = deps.clock.now_secs();
    let (session, refresh) = sessions::start_for_user(
        deps.sessions.as_ref(),
        &deps.session_policy,
        deps.users.as_ref(),
        id,
        amr,
        meta,
        now,
    )
    .await?;
    let roles = session.roles.clone();
    let (access_token, _) =
        keys.tokens.issue(Grant::for_session(&session, roles)).map_err(ApiError::internal)?;
    let resp = json(
        StatusCode::OK,
        &TokenResponse {
            access_token,
            refresh_token: refresh.expose_secret().to_owned(),
            token_type: "Bearer",
            expires_in: keys.tokens.ttl_secs(),
        },
    )?;
    // The login is complete: this client is now a known device of the account.
    let device =
        device_token.and_then(|sealed| portcullis_shared::device::open_from_challenge(&keys.fields, &sealed));
    Ok(match device {
        Some(token) => portcullis_shared::device::remember(resp, &token),
        None => resp,
    })
}

/// A wrong second factor: counted against the `mfa_token` (burned at the fifth).
async fn wrong(
    deps: &Deps,
    hash: &[u8; 32],
    id: UserId,
    meta: &ClientMeta,
    event: EventType,
    reason: &'static str,
) -> HandlerResult {
    let left = deps.challenges.fail(hash, deps.clock.now_secs()).await?;
    let reason = if left == 0 { "mfa_token_burned" } else { reason };
    deps.auditor.record(event, Some(id.to_string()), meta, Some(reason)).await;
    Err(ApiError::InvalidMfa)
}

/// Counts a second-factor attempt under `bucket` (the account's, or the known
/// device's its password step counted under) and the source IP; a lock answers
/// 429, an unreachable counter store 503.
pub(crate) async fn admit(
    deps: &Deps,
    bucket: &str,
    subject: Option<UserId>,
    meta: &ClientMeta,
) -> Result<(), ApiError> {
    let subject = subject.map(|id| id.to_string()).or_else(|| Some(bucket.to_owned()));
    deps.throttle.admit_audited(&deps.auditor, bucket, subject, meta, |_| "second_factor").await
}

/// What a live `mfa_token` stands for.
struct Live {
    hash: [u8; 32],
    id: UserId,
    /// The throttle key its password step counted under.
    bucket: String,
    /// The device token to hand out once the second factor succeeds.
    device_token: Option<String>,
}

/// The live challenge of an `mfa_token`, or the uniform refusal.
async fn challenge(deps: &Deps, token: &SecretString, meta: &ClientMeta) -> Result<Live, ApiError> {
    let hash = mfa::hash_mfa_token(token.expose_secret());
    let found = match &hash {
        Some(h) => deps.challenges.get(h, deps.clock.now_secs()).await?,
        None => None,
    };
    let found = found.and_then(|c| UserId::parse(&c.user_id).map(|id| (id, c)));
    match (hash, found) {
        (Some(hash), Some((id, c))) => Ok(Live {
            hash,
            id,
            bucket: c.throttle_key.unwrap_or_else(|| id.to_string()),
            device_token: c.device_token,
        }),
        _ => {
            deps.auditor.record(EventType::MfaVerifyFailure, None, meta, Some("dead_mfa_token")).await;
            Err(ApiError::InvalidMfa)
        }
    }
}

pub async fn verify(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let body: VerifyBody = parse_json(req, deps.max_body_bytes)?;
    let Live { hash, id, bucket, device_token } = challenge(deps, &body.mfa_token, &meta).await?;
    // Before anything is spent (an attempt, the challenge): without keys, a 503 and nothing used.
    let keys = deps.keys.get().await?;
    admit(deps, &bucket, Some(id), &meta).await?;
    let state = deps.mfa.mfa_state(id).await?.ok_or(ApiError::InvalidMfa)?;
    let sealed = state.secret.as_deref().ok_or(ApiError::InvalidMfa)?;
    let now = deps.clock.now_secs();
    match mfa::check_totp(deps.mfa.as_ref(), &keys.fields, id, sealed, body.code.expose_secret(), now).await?
    {
        mfa::TotpCheck::Accepted => {}
        mfa::TotpCheck::Wrong => {
            return wrong(deps, &hash, id, &meta, EventType::MfaVerifyFailure, "wrong_code").await
        }
        // RFC 6238 §5.2: a code is accepted once.
        mfa::TotpCheck::Replayed => {
            return wrong(deps, &hash, id, &meta, EventType::MfaReplay, "replayed_code").await
        }
    }
    if !deps.challenges.consume(&hash, deps.clock.now_secs()).await? {
        return Err(ApiError::InvalidMfa);
    }
    deps.throttle.success(Some(&bucket), meta.source_ip.as_deref()).await;
    deps.auditor.record(EventType::MfaVerifySuccess, Some(id.to_string()), &meta, None).await;
    complete_login(deps, &keys, id, &["pwd", "otp"], &meta, device_token).await
}

pub async fn recovery(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let body: RecoveryBody = parse_json(req, deps.max_body_bytes)?;
    let Live { hash, id, bucket, device_token } = challenge(deps, &body.mfa_token, &meta).await?;
    let keys = deps.keys.get().await?;
    admit(deps, &bucket, Some(id), &meta).await?;
    let used = match mfa::hash_recovery_code(body.recovery_code.expose_secret()) {
        Some(code) => deps.mfa.use_recovery_code(id, &code, deps.clock.now_secs()).await?,
        None => false,
    };
    if !used {
        return wrong(deps, &hash, id, &meta, EventType::MfaVerifyFailure, "wrong_recovery_code").await;
    }
    if !deps.challenges.consume(&hash, deps.clock.now_secs()).await? {
        return Err(ApiError::InvalidMfa);
    }
    deps.throttle.success(Some(&bucket), meta.source_ip.as_deref()).await;
    deps.auditor.record(EventType::MfaRecoveryUsed, Some(id.to_string()), &meta, None).await;
    complete_login(deps, &keys, id, &["pwd", "mfa"], &meta, device_token).await
}
