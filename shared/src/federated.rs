//! Portcullis' tokens for sessions an external identity provider authenticated.
//!
//! The provider (a Cognito pool) checks the password and the second factor and
//! issues its tokens to the functions; the client receives ours instead: an
//! access token signed by our key (with our `sid`, `amr`, `auth_time`, roles)
//! that carries the provider's access token sealed in its `pvt` claim, and a
//! refresh token that is the provider's refresh token sealed. Sealed tokens are
//! bound to their session (AES-GCM associated data), so one cannot be moved into
//! another session's token. The functions open them to call the provider on the
//! user's behalf; the user cannot call the provider with them.

use crate::http::{bearer, Caller};
use crate::identity::{issued_claims, IdentityError, IdentityProvider, ProviderTokens};
use crate::sessions::{SessionPolicy, SessionRecord, SessionStore};
use crate::tokens::{Grant, TokenIssuer, TokenResponse};
use crate::ApiError;
use secrecy::{ExposeSecret, SecretString};

fn access_owner(sub: &str, sid: &str) -> String {
    format!("access\u{0}{sub}\u{0}{sid}")
}

fn refresh_owner(sub: &str, sid: &str) -> String {
    format!("refresh\u{0}{sub}\u{0}{sid}")
}

fn internal(what: &'static str) -> ApiError {
    ApiError::internal(std::io::Error::other(what))
}

fn sealing_failed(err: IdentityError) -> ApiError {
    crate::identity::api_error(err, internal("sealing a provider token"))
}

/// Our access token for `session`, carrying the provider's access token sealed.
pub async fn issue_access(
    idp: &dyn IdentityProvider,
    issuer: &TokenIssuer,
    session: &SessionRecord,
    roles: Vec<String>,
    provider_access: &SecretString,
) -> Result<String, ApiError> {
    let owner = access_owner(&session.user_id, &session.sid);
    let sealed = idp.seal(provider_access.expose_secret(), &owner).await.map_err(sealing_failed)?;
    let (token, _) = issuer
        .issue_carrying(Grant::for_session(session, roles), Some(sealed))
        .map_err(ApiError::internal)?;
    Ok(token)
}

/// The provider's refresh token sealed for the client, with the provider's
/// username its refresh flow needs.
pub async fn seal_refresh(
    idp: &dyn IdentityProvider,
    sub: &str,
    sid: &str,
    username: &str,
    refresh_token: &SecretString,
) -> Result<String, ApiError> {
    let inner = serde_json::json!({ "u": username, "t": refresh_token.expose_secret() }).to_string();
    idp.seal(&inner, &refresh_owner(sub, sid)).await.map_err(sealing_failed)
}

/// The (provider username, provider refresh token) inside a refresh token from
/// [`seal_refresh`] for this session; `None` for anything else.
pub async fn open_refresh(
    idp: &dyn IdentityProvider,
    session: &SessionRecord,
    presented: &str,
) -> Option<(String, SecretString)> {
    let inner = idp.open(presented, &refresh_owner(&session.user_id, &session.sid)).await.ok()?;
    let value: serde_json::Value = serde_json::from_str(inner.expose_secret()).ok()?;
    Some((value.get("u")?.as_str()?.to_owned(), SecretString::from(value.get("t")?.as_str()?.to_owned())))
}

/// The provider's access token inside the caller's (authorizer-verified) access
/// token, for a call to the provider on the caller's behalf. Only opens for the
/// session the authorizer named; anything else is `Unauthenticated`.
pub async fn provider_access(
    idp: &dyn IdentityProvider,
    req: &lambda_http::Request,
) -> Result<SecretString, ApiError> {
    #[derive(serde::Deserialize)]
    struct Carried {
        pvt: String,
    }
    let caller = Caller::from_request(req)?;
    let sid = caller.sid.as_deref().ok_or(ApiError::Unauthenticated)?;
    let token = bearer(req).ok_or(ApiError::Unauthenticated)?;
    let carried: Carried = crate::tokens::unverified_payload(token).ok_or(ApiError::Unauthenticated)?;
    idp.open(&carried.pvt, &access_owner(&caller.sub, sid)).await.map_err(|err| match err {
        IdentityError::Refused => ApiError::Unauthenticated,
        other => crate::identity::api_error(other, ApiError::Unauthenticated),
    })
}

/// Records Portcullis' session for a provider's fresh login and answers with
/// our tokens (no token leaves without its session). The provider's roles are
/// its groups; the session id is the provider's (Cognito's `origin_jti`).
#[allow(clippy::too_many_arguments)]
pub async fn start_session(
    idp: &dyn IdentityProvider,
    issuer: &TokenIssuer,
    sessions: &dyn SessionStore,
    policy: &SessionPolicy,
    issued: ProviderTokens,
    amr: Vec<String>,
    meta: &crate::http::ClientMeta,
    now: i64,
) -> Result<(String, TokenResponse), ApiError> {
    let claims = issued_claims(issued.access_token.expose_secret())
        .ok_or_else(|| internal("provider token claims"))?;
    let refresh = issued.refresh_token.ok_or_else(|| internal("provider issued no refresh token"))?;
    let refresh_token = seal_refresh(idp, &claims.sub, &claims.sid, &claims.username, &refresh).await?;
    let external = crate::sessions::External {
        user_id: &claims.sub,
        sid: &claims.sid,
        refresh_token: &refresh_token,
        roles: claims.groups.clone(),
        amr,
    };
    let session = crate::sessions::record_external(sessions, policy, external, meta, now).await?;
    let access_token = issue_access(idp, issuer, &session, claims.groups, &issued.access_token).await?;
    Ok((
        claims.sub,
        TokenResponse { access_token, refresh_token, token_type: "Bearer", expires_in: issuer.ttl_secs() },
    ))
}
