//! Refresh and logout when users live in an external identity provider (an
//! Amazon Cognito user pool). The client's refresh token is the pool's, sealed
//! (`portcullis_shared::federated`); the function opens it and refreshes at the
//! pool (`REFRESH_TOKEN_AUTH` with the client secret's `SECRET_HASH`).
//! Portcullis keeps the session record the login wrote, so idle and absolute
//! timeouts, revocation and reuse detection (when the pool rotates refresh
//! tokens) apply exactly as for native sessions, and the authorizer refuses a
//! revoked session's access tokens on the next request.

use crate::handlers::{admit, live_session, refreshed, refuse, rotate, Deps, RefreshBody};
use lambda_http::Request;
use portcullis_shared::audit::EventType;
use portcullis_shared::federated::{issue_access, open_refresh, provider_access, seal_refresh};
use portcullis_shared::http::{no_content, parse_json, Caller, ClientMeta, HandlerResult};
use portcullis_shared::identity::{self, IdentityProvider};
use portcullis_shared::sessions::{self, hash_external};
use portcullis_shared::tokens::TokenResponse;
use portcullis_shared::ApiError;
use secrecy::ExposeSecret;

pub async fn refresh(deps: &Deps, idp: &dyn IdentityProvider, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let body: RefreshBody = parse_json(req, deps.max_body_bytes)?;
    admit(deps, &meta).await?;
    // Only refresh tokens a Portcullis login recorded are accepted.
    let presented = body.refresh_token.expose_secret();
    let hash = hash_external(presented);
    let now = deps.clock.now_secs();
    let session = live_session(deps, &meta, &hash, now).await?;
    let Some((username, inner)) = open_refresh(idp, &session, presented).await else {
        return Err(refuse(deps, &meta, Some(&session.user_id), "unsealable_token").await);
    };
    let issued = match idp.refresh(&username, &inner).await {
        Ok(issued) => issued,
        Err(err) => {
            let user = Some(session.user_id.clone());
            deps.auditor.record(EventType::RefreshFailure, user, &meta, Some("provider_refused")).await;
            return Err(identity::api_error(err, ApiError::InvalidRefreshToken));
        }
    };
    let claims = identity::issued_claims(issued.access_token.expose_secret())
        .ok_or_else(|| ApiError::internal(std::io::Error::other("provider token claims")))?;
    if (claims.sub.as_str(), claims.sid.as_str()) != (session.user_id.as_str(), session.sid.as_str()) {
        return Err(refuse(deps, &meta, Some(&session.user_id), "provider_session_mismatch").await);
    }
    let tokens = deps.tokens.get().await?;
    let refresh_token = match issued.refresh_token {
        // The pool rotated the token: ours rotates with it, so the old one is spent.
        Some(successor) if successor.expose_secret() != inner.expose_secret() => {
            let sealed = seal_refresh(idp, &session.user_id, &session.sid, &username, &successor).await?;
            // The pool already rotated, so this cannot start again: a session
            // revoked or changed meanwhile refuses (the client logs in again).
            if !rotate(deps, &meta, &session, &hash, &hash_external(&sealed), &claims.groups, now).await? {
                return Err(refuse(deps, &meta, Some(&session.user_id), "session_changed").await);
            }
            sealed
        }
        _ => {
            deps.sessions.touch(&session.user_id, &session.sid, &claims.groups, now).await?;
            presented.to_owned()
        }
    };
    let access_token = issue_access(idp, &tokens, &session, claims.groups, &issued.access_token).await?;
    let response =
        TokenResponse { access_token, refresh_token, token_type: "Bearer", expires_in: tokens.ttl_secs() };
    refreshed(deps, &meta, &session, &response).await
}

/// Every session ends: ours (the authorizer refuses their tokens at once) and
/// the pool's (`GlobalSignOut` revokes its refresh tokens).
pub async fn logout_all(deps: &Deps, idp: &dyn IdentityProvider, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let caller = Caller::from_request(req)?;
    let token = provider_access(idp, req).await?;
    sessions::revoke_all(deps.sessions.as_ref(), &caller.sub, None, deps.clock.now_secs()).await?;
    if let Err(err) = idp.sign_out_everywhere(token.expose_secret()).await {
        // Ours are revoked already, which is what the authorizer checks.
        tracing::warn!(error = %err, "GlobalSignOut failed after the sessions were revoked");
    }
    deps.auditor.record(EventType::LogoutAll, Some(caller.sub.clone()), &meta, None).await;
    no_content()
}
