//! The refresh function's handlers and their dependencies.

use http::StatusCode;
use lambda_http::Request;
use portcullis_shared::audit::{Auditor, EventType};
use portcullis_shared::clock::Clock;
use portcullis_shared::deferred::Deferred;
use portcullis_shared::error::BootError;
use portcullis_shared::http::{json, no_content, parse_json, Caller, ClientMeta, HandlerResult};
use portcullis_shared::identity::{self, IdentityProvider, RenewRefusal};
use portcullis_shared::routes::{RefreshRoute, Resolved};
use portcullis_shared::runtime::Boot;
use portcullis_shared::sessions::{
    self, Rotate, Rotation, SessionPolicy, SessionRecord, SessionState, SessionStore, TokenHash,
};
use portcullis_shared::tokens::{TokenIssuer, TokenResponse};
use portcullis_shared::ApiError;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Everything the refresh handlers use, built once at cold start.
pub struct Deps {
    /// Where accounts live (native or a Cognito pool): the one backend switch.
    pub identity: Arc<dyn IdentityProvider>,
    pub sessions: Arc<dyn SessionStore>,
    pub policy: SessionPolicy,
    /// Unwrapped in the background from cold start on (see [`Deferred`]).
    pub tokens: Deferred<TokenIssuer>,
    pub auditor: Auditor,
    pub throttle: portcullis_shared::throttle::Throttle,
    pub clock: Arc<dyn Clock>,
    pub max_body_bytes: usize,
}

impl Deps {
    pub async fn build(boot: &Boot) -> Result<Self, BootError> {
        let (config, backends, clock) = (&boot.config, &boot.backends, boot.clock.clone());
        // Rechecked against the key table within the key bound: a warm instance
        // moves off a revoked or retired key (docs/security/keys.md).
        let tokens = boot
            .clone()
            .prefetch_current(|keys, previous| async move { keys.current_tokens(previous.as_ref()).await });
        Ok(Self {
            identity: portcullis_shared::runtime::identity_provider(config, backends)?,
            sessions: backends.sessions.clone(),
            policy: config.session_policy(),
            tokens,
            auditor: Auditor::new(backends.audit.clone(), clock.clone()),
            throttle: portcullis_shared::runtime::throttle(config, backends, clock.clone()),
            clock,
            max_body_bytes: config.max_body_bytes,
        })
    }
}

/// The handler of each refresh route (the route table names them).
pub(crate) async fn dispatch(deps: &Deps, found: Resolved<'_, RefreshRoute>, req: &Request) -> HandlerResult {
    match found.route {
        RefreshRoute::Refresh => refresh(deps, req).await,
        RefreshRoute::Logout => logout(deps, req).await,
        RefreshRoute::LogoutAll => logout_all(deps, req).await,
        RefreshRoute::Sessions => list(deps, req).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: SecretString,
}

#[derive(Serialize)]
struct SessionView {
    session_id: String,
    created_at: i64,
    last_used_at: i64,
    user_agent: Option<String>,
    ip: Option<String>,
    current: bool,
}

/// Every refusal looks the same to the client (no oracle on why); the audit
/// log keeps the reason.
async fn refuse(deps: &Deps, meta: &ClientMeta, subject: Option<&str>, reason: &'static str) -> ApiError {
    deps.auditor.record(EventType::RefreshFailure, subject.map(str::to_owned), meta, Some(reason)).await;
    ApiError::InvalidRefreshToken
}

/// A spent token came back: the family has leaked, so the whole session dies
/// (RFC 9700 §4.14.2), including the newest token in the family.
async fn reuse_detected(deps: &Deps, meta: &ClientMeta, session: &SessionRecord) -> ApiError {
    if let Err(err) = deps.sessions.revoke(&session.user_id, &session.sid, deps.clock.now_secs()).await {
        return err.into();
    }
    tracing::warn!(user_id = %session.user_id, sid = %session.sid, "refresh token reuse: session revoked");
    deps.auditor
        .record(
            EventType::RefreshTokenReuse,
            Some(session.user_id.clone()),
            meta,
            Some("spent_token_presented"),
        )
        .await;
    ApiError::InvalidRefreshToken
}

/// Why a session can no longer be used, if it cannot.
fn ended(deps: &Deps, session: &SessionRecord, now: i64) -> Option<&'static str> {
    match deps.policy.state(session, now) {
        SessionState::Live => None,
        SessionState::Revoked => Some("session_revoked"),
        SessionState::IdleExpired => Some("idle_timeout"),
        SessionState::AbsoluteExpired => Some("absolute_timeout"),
    }
}

/// Refresh failures count against the source IP, like password failures.
async fn admit(deps: &Deps, meta: &ClientMeta) -> Result<(), ApiError> {
    match deps.throttle.admit(None, meta.source_ip.as_deref()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err((_, retry_after))) => {
            deps.auditor.record(EventType::LoginThrottled, None, meta, Some("refresh_source_ip")).await;
            Err(ApiError::TooManyRequests { retry_after_secs: retry_after.max(1) as u64 })
        }
        Err(err) => Err(ApiError::unavailable(err)),
    }
}

/// The live session a presented refresh token belongs to; otherwise the
/// (audited) refusal (unknown token or session, spent token: reuse, ended session).
async fn live_session(
    deps: &Deps,
    meta: &ClientMeta,
    hash: &TokenHash,
    now: i64,
) -> Result<SessionRecord, ApiError> {
    let Some(record) = deps.sessions.refresh_token(hash).await? else {
        return Err(refuse(deps, meta, None, "unknown_token").await);
    };
    let Some(session) = deps.sessions.get(&record.user_id, &record.sid).await? else {
        return Err(refuse(deps, meta, Some(&record.user_id), "unknown_session").await);
    };
    if record.spent {
        return Err(reuse_detected(deps, meta, &session).await);
    }
    if let Some(reason) = ended(deps, &session, now) {
        return Err(refuse(deps, meta, Some(&session.user_id), reason).await);
    }
    Ok(session)
}

/// How often a refresh reads the session and the roles again when an admin's
/// role change keeps landing between its read and its rotation.
const ROTATION_ATTEMPTS: usize = 3;

/// Rotation with reuse detection (RFC 9700 §4.14.2): the presented token is
/// spent and its successor written in one conditional write; losing a race
/// with another use of the same token is reuse too. The provider says what
/// the session rotates to (a successor and the roles as they are now; a pool
/// refreshes at the pool first).
pub async fn refresh(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let body: RefreshBody = parse_json(req, deps.max_body_bytes)?;
    admit(deps, &meta).await?;
    let Some(hash) = deps.identity.refresh_hash(&body.refresh_token) else {
        return Err(refuse(deps, &meta, None, "malformed_token").await);
    };
    let now = deps.clock.now_secs();
    // Before the rotation: a rotated token without a new access token is a lost session.
    let tokens = deps.tokens.get().await?;
    let mut attempt = 0;
    let (session, renewal, refresh_token) = loop {
        // The session (and its roles_version) is read before the roles: a role
        // change that lands after this read moves the version, and the rotation
        // then fails and starts again rather than writing the roles read before.
        let session = live_session(deps, &meta, &hash, now).await?;
        let renewal = match deps.identity.renew(&session, &body.refresh_token).await {
            Ok(renewal) => renewal,
            Err(refusal) => return Err(renew_refused(deps, &meta, &session, refusal).await),
        };
        let Some((successor, successor_hash)) = &renewal.successor else {
            deps.sessions.touch(&session.user_id, &session.sid, &renewal.roles, now).await?;
            let kept = body.refresh_token.expose_secret().to_owned();
            break (session, renewal, kept);
        };
        let expires_at = deps.policy.expires_at(session.created_at);
        let step = Rotate {
            session: &session,
            old: &hash,
            new: successor_hash,
            roles: &renewal.roles,
            now,
            expires_at,
        };
        match deps.sessions.rotate(step).await? {
            Rotation::Rotated => {
                let successor = successor.expose_secret().to_owned();
                break (session, renewal, successor);
            }
            Rotation::AlreadySpent => return Err(reuse_detected(deps, &meta, &session).await),
            Rotation::SessionChanged if !renewal.retry_on_change => {
                // The provider rotated already: a session revoked or changed meanwhile refuses.
                return Err(refuse(deps, &meta, Some(&session.user_id), "session_changed").await);
            }
            Rotation::SessionChanged => {}
        }
        attempt += 1;
        if attempt == ROTATION_ATTEMPTS {
            return Err(ApiError::unavailable(std::io::Error::other(
                "session kept changing during rotation",
            )));
        }
    };
    let access_token = deps.identity.access_token(&tokens, &session, renewal).await?;
    let response =
        TokenResponse { access_token, refresh_token, token_type: "Bearer", expires_in: tokens.ttl_secs() };
    refreshed(deps, &meta, &session, &response).await
}

/// A renewal the provider refused, audited with its reason.
async fn renew_refused(
    deps: &Deps,
    meta: &ClientMeta,
    session: &SessionRecord,
    refusal: RenewRefusal,
) -> ApiError {
    match refusal {
        RenewRefusal::Refused(reason) => refuse(deps, meta, Some(&session.user_id), reason).await,
        RenewRefusal::Provider(err) => {
            let user = Some(session.user_id.clone());
            deps.auditor.record(EventType::RefreshFailure, user, meta, Some("provider_refused")).await;
            identity::api_error(err, ApiError::InvalidRefreshToken)
        }
        RenewRefusal::Failed(err) => err,
    }
}

/// A successful refresh: the source IP's attempt slot released, the audit event, the tokens.
async fn refreshed(
    deps: &Deps,
    meta: &ClientMeta,
    session: &SessionRecord,
    response: &TokenResponse,
) -> HandlerResult {
    deps.throttle.success(None, meta.source_ip.as_deref()).await;
    deps.auditor.record(EventType::TokenRefresh, Some(session.user_id.clone()), meta, None).await;
    json(StatusCode::OK, response)
}

pub async fn logout(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let caller = Caller::from_request(req)?;
    let sid = caller.sid.as_deref().ok_or(ApiError::Unauthenticated)?;
    deps.sessions.revoke(&caller.sub, sid, deps.clock.now_secs()).await?;
    deps.auditor.record(EventType::Logout, Some(caller.sub.clone()), &meta, None).await;
    no_content()
}

/// Every session ends: ours (the authorizer refuses their tokens at once), and
/// the provider's.
pub async fn logout_all(deps: &Deps, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let caller = Caller::from_request(req)?;
    sessions::revoke_all(deps.sessions.as_ref(), &caller.sub, None, deps.clock.now_secs()).await?;
    deps.identity.sign_out_everywhere(req).await;
    deps.auditor.record(EventType::LogoutAll, Some(caller.sub.clone()), &meta, None).await;
    no_content()
}

pub async fn list(deps: &Deps, req: &Request) -> HandlerResult {
    let caller = Caller::from_request(req)?;
    let now = deps.clock.now_secs();
    let views: Vec<SessionView> = deps
        .sessions
        .list(&caller.sub)
        .await?
        .into_iter()
        .filter(|s| deps.policy.state(s, now) == SessionState::Live)
        .map(|s| SessionView {
            current: caller.sid.as_deref() == Some(s.sid.as_str()),
            session_id: s.sid,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            user_agent: s.user_agent,
            ip: s.ip,
        })
        .collect();
    json(StatusCode::OK, &views)
}
