//! The mfa function's handlers and their dependencies.

use http::StatusCode;
use lambda_http::Request;
use portcullis_shared::audit::{Auditor, EventType};
use portcullis_shared::clock::Clock;
use portcullis_shared::crypto::FieldCipher;
use portcullis_shared::deferred::Deferred;
use portcullis_shared::error::BootError;
use portcullis_shared::http::{json, no_content, parse_json, ClientMeta, HandlerResult};
use portcullis_shared::identity::{self, Answer, Feature, IdentityError, IdentityProvider, Need, Principal};
use portcullis_shared::routes::{MfaRoute, Resolved};
use portcullis_shared::runtime::Boot;
use portcullis_shared::sessions::{self, SessionStore};
use portcullis_shared::tokens::TokenIssuer;
use portcullis_shared::ApiError;
use secrecy::SecretString;
use serde::Deserialize;
use std::sync::Arc;

/// Everything the MFA handlers use, built once at cold start.
pub struct Deps {
    /// Where accounts and their second factors live: the one backend switch.
    pub identity: Arc<dyn IdentityProvider>,
    pub throttle: portcullis_shared::throttle::Throttle,
    pub sessions: Arc<dyn SessionStore>,
    /// Unwrapped in the background from cold start on (see [`Deferred`]).
    pub keys: Deferred<MfaKeys>,
    pub auditor: Auditor,
    pub clock: Arc<dyn Clock>,
    pub max_body_bytes: usize,
    /// How recent an authentication enrolling or removing a factor needs.
    pub reauth_max_age_secs: u64,
}

/// The MFA function's key material: the field key sealing TOTP secrets, and
/// the signing key for the tokens a completed challenge earns.
pub struct MfaKeys {
    pub fields: Arc<FieldCipher>,
    pub tokens: Arc<TokenIssuer>,
}

impl Deps {
    pub async fn build(boot: &Boot) -> Result<Self, BootError> {
        let (config, backends, clock) = (&boot.config, &boot.backends, boot.clock.clone());
        // The signing key is rechecked within the key bound (a warm instance moves
        // off a revoked or retired key); the field key is kept.
        let keys = boot.clone().prefetch_current(|keys, previous: Option<Arc<MfaKeys>>| async move {
            let fields = keys.fields_kept(previous.as_ref().map(|p| &p.fields)).await?;
            let tokens = keys.current_tokens(previous.as_ref().map(|p| &p.tokens)).await?;
            Ok(Arc::new(MfaKeys { fields, tokens }))
        });
        Ok(Self {
            identity: portcullis_shared::runtime::identity_provider(config, backends)?,
            throttle: portcullis_shared::runtime::throttle(config, backends, clock.clone()),
            sessions: backends.sessions.clone(),
            keys,
            auditor: Auditor::new(backends.audit.clone(), clock.clone()),
            clock,
            max_body_bytes: config.max_body_bytes,
            reauth_max_age_secs: config.reauth_max_age_secs,
        })
    }
}

/// The handler of each MFA route (the route table names them).
pub(crate) async fn dispatch(deps: &Deps, found: Resolved<'_, MfaRoute>, req: &Request) -> HandlerResult {
    match found.route {
        MfaRoute::Enroll => enroll(deps, req).await,
        MfaRoute::Confirm => confirm(deps, req).await,
        MfaRoute::RemoveTotp => disable(deps, req).await,
        MfaRoute::Verify => verify(deps, req).await,
        MfaRoute::Recovery => recovery(deps, req).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: SecretString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    mfa_token: SecretString,
    code: SecretString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoveryBody {
    mfa_token: SecretString,
    recovery_code: SecretString,
}

/// Counts a second-factor attempt under `bucket` (the account's, or the known
/// device's its password step counted under) and the source IP; a lock answers
/// 429, an unreachable counter store 503.
async fn admit(
    deps: &Deps,
    bucket: &str,
    subject: Option<String>,
    meta: &ClientMeta,
) -> Result<(), ApiError> {
    let subject = subject.or_else(|| Some(bucket.to_owned()));
    deps.throttle.admit_audited(&deps.auditor, bucket, subject, meta, |_| "second_factor").await
}

/// The caller and its keys, for the enrolment routes.
async fn principal(deps: &Deps, req: &Request) -> Result<(Arc<MfaKeys>, Principal), ApiError> {
    let keys = deps.keys.get().await?;
    let principal = deps.identity.principal(&keys.fields, req, Need::Profile).await?;
    Ok((keys, principal))
}

pub async fn enroll(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let (keys, principal) = principal(deps, req).await?;
    if principal.mfa_enabled {
        return Err(ApiError::Conflict);
    }
    let now = deps.clock.now_secs();
    // Step-up: a stolen access token alone must not bind the account to the thief's authenticator.
    principal.caller.require_recent_auth(now, deps.reauth_max_age_secs, principal.mfa_enabled)?;
    let enrolment = deps.identity.begin_totp(&keys.fields, &principal, now).await;
    let enrolment = enrolment.map_err(|e| identity::api_error(e, ApiError::Unauthenticated))?;
    deps.auditor.record(EventType::MfaEnrol, Some(principal.caller.sub.clone()), &meta, None).await;
    let body = serde_json::json!({
        "secret": enrolment.secret,
        "otpauth_uri": enrolment.otpauth_uri,
        "qr_svg": enrolment.qr_svg,
    });
    json(StatusCode::OK, &body)
}

/// The enrolment's first code is counted too, in a bucket of the account's
/// enrolments: the caller chose the secret it answers for, so a right code
/// proves no factor of the account and must neither reset nor spend the
/// count its logins share.
pub async fn confirm(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let (keys, principal) = principal(deps, req).await?;
    let body: CodeBody = parse_json(req, deps.max_body_bytes)?;
    let subject = principal.caller.sub.clone();
    let bucket = format!("enrol:{}", principal.account_key);
    admit(deps, &bucket, Some(subject.clone()), &meta).await?;
    let now = deps.clock.now_secs();
    let codes = match deps.identity.confirm_totp(&keys.fields, &principal, &body.code, now).await {
        Ok(codes) => codes,
        Err(err @ (IdentityError::WrongCode | IdentityError::Refused | IdentityError::Throttled)) => {
            let reason =
                if matches!(err, IdentityError::Throttled) { "provider_throttled" } else { "enrolment_code" };
            deps.auditor.record(EventType::MfaVerifyFailure, Some(subject), &meta, Some(reason)).await;
            return Err(identity::api_error(err, ApiError::InvalidMfa));
        }
        Err(other) => return Err(identity::api_error(other, ApiError::InvalidMfa)),
    };
    deps.throttle.success(Some(&bucket), meta.source_ip.as_deref()).await;
    deps.auditor.record(EventType::MfaConfirm, Some(subject), &meta, None).await;
    json(StatusCode::OK, &serde_json::json!({ "recovery_codes": codes }))
}

pub async fn disable(deps: &Deps, req: &Request) -> HandlerResult {
    if !deps.identity.supports(Feature::RemoveTotp) {
        // A pool's administrators turn its TOTP off; it cannot be checked here.
        return Err(ApiError::Unsupported);
    }
    let meta = ClientMeta::from_request(req);
    let (keys, principal) = principal(deps, req).await?;
    let body: CodeBody = parse_json(req, deps.max_body_bytes)?;
    if !principal.mfa_enabled {
        return Err(ApiError::Conflict);
    }
    let now = deps.clock.now_secs();
    principal.caller.require_recent_auth(now, deps.reauth_max_age_secs, true)?;
    // A code that turns the factor off is counted with the second-factor
    // attempts of the account: a stolen access token cannot guess it. Counted
    // on the account: a device cookie buys no budget here.
    let (bucket, subject) = (principal.account_key.clone(), principal.caller.sub.clone());
    admit(deps, &bucket, Some(subject.clone()), &meta).await?;
    if let Err(err) = deps.identity.remove_totp(&keys.fields, &principal, &body.code, now).await {
        if matches!(err, IdentityError::WrongCode | IdentityError::Replayed) {
            let reason = Some("disable_code");
            deps.auditor.record(EventType::MfaVerifyFailure, Some(subject), &meta, reason).await;
        }
        return Err(identity::api_error(err, ApiError::InvalidMfa));
    }
    // Not a login's last factor either: the account's count stands.
    deps.throttle.success(None, meta.source_ip.as_deref()).await;
    sessions::revoke_all(deps.sessions.as_ref(), &subject, principal.caller.sid.as_deref(), now).await?;
    deps.auditor.record(EventType::MfaDisabled, Some(subject), &meta, None).await;
    no_content()
}

/// The second step of a login: the answer to the `mfa_token`'s challenge,
/// counted where the password step counted, then the session and its tokens.
async fn second_step(
    deps: &Deps,
    req: &Request,
    mfa_token: &SecretString,
    answer: Answer<'_>,
) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    // Before anything is spent (an attempt, the challenge): without keys, a 503 and nothing used.
    let keys = deps.keys.get().await?;
    let now = deps.clock.now_secs();
    let Some(challenge) = deps.identity.open_challenge(&keys.fields, mfa_token, now).await? else {
        deps.auditor.record(EventType::MfaVerifyFailure, None, &meta, Some("dead_mfa_token")).await;
        return Err(ApiError::InvalidMfa);
    };
    let subject = challenge.subject.clone();
    admit(deps, &challenge.bucket, subject.clone(), &meta).await?;
    let recovery = matches!(answer, Answer::RecoveryCode(_));
    let signed_in = match deps.identity.answer(&keys.fields, &challenge, answer, now).await {
        Ok(signed_in) => signed_in,
        Err(err) => {
            let (event, reason) = match (&err, recovery) {
                (IdentityError::Burned, _) => (EventType::MfaVerifyFailure, "mfa_token_burned"),
                // RFC 6238 §5.2: a code is accepted once.
                (IdentityError::Replayed, _) => (EventType::MfaReplay, "replayed_code"),
                (IdentityError::WrongCode, false) => (EventType::MfaVerifyFailure, "wrong_code"),
                (IdentityError::WrongCode, true) => (EventType::MfaVerifyFailure, "wrong_recovery_code"),
                (IdentityError::Refused, _) => (EventType::MfaVerifyFailure, "provider_refused"),
                (IdentityError::Throttled, _) => (EventType::MfaVerifyFailure, "provider_throttled"),
                _ => return Err(identity::api_error(err, ApiError::InvalidMfa)),
            };
            deps.auditor.record(event, subject, &meta, Some(reason)).await;
            return Err(identity::api_error(err, ApiError::InvalidMfa));
        }
    };
    deps.throttle.success(Some(&challenge.bucket), meta.source_ip.as_deref()).await;
    let event = if recovery { EventType::MfaRecoveryUsed } else { EventType::MfaVerifySuccess };
    let (user_id, tokens) = deps.identity.start_session(&keys.tokens, signed_in, &meta, now).await?;
    deps.auditor.record(event, Some(user_id), &meta, None).await;
    // The login is complete: this client is now a known device of the account.
    let response = json(StatusCode::OK, &tokens)?;
    Ok(match &challenge.device_token {
        Some(token) => portcullis_shared::device::remember(response, token),
        None => response,
    })
}

pub async fn verify(deps: &Deps, req: &Request) -> HandlerResult {
    let body: VerifyBody = parse_json(req, deps.max_body_bytes)?;
    second_step(deps, req, &body.mfa_token, Answer::Totp(&body.code)).await
}

pub async fn recovery(deps: &Deps, req: &Request) -> HandlerResult {
    if !deps.identity.supports(Feature::RecoveryCodes) {
        // A pool keeps no recovery codes: its own account recovery applies.
        return Err(ApiError::Unsupported);
    }
    let body: RecoveryBody = parse_json(req, deps.max_body_bytes)?;
    second_step(deps, req, &body.mfa_token, Answer::RecoveryCode(&body.recovery_code)).await
}
