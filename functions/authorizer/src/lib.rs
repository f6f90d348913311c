//! The `authorizer` function: API Gateway's Lambda authorizer. It verifies the
//! bearer access token against our published keys, checks that the token's
//! session is still live (not revoked, not idle or past its absolute lifetime:
//! ASVS 5.0 V8.3.2, authorization changes apply on the next request), and
//! returns the caller's identity as context. It fails closed: anything
//! unexpected, including an unreachable session store, is a refusal.

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use portcullis_shared::clock::Clock;
use portcullis_shared::config::Config;
use portcullis_shared::crypto::load_verifying_keys;
use portcullis_shared::runtime::{Backends, BootError};
use portcullis_shared::sessions::{SessionPolicy, SessionState, SessionStore};
use portcullis_shared::tokens::TokenVerifier;
use std::sync::Arc;

/// What the authorizer needs, built once at cold start.
pub struct Deps {
    pub verifier: TokenVerifier,
    pub sessions: Arc<dyn SessionStore>,
    pub policy: SessionPolicy,
    pub clock: Arc<dyn Clock>,
}

impl Deps {
    /// Loads the published verification keys (never private material).
    pub async fn build(
        config: &Config,
        backends: &Backends,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BootError> {
        let keys = load_verifying_keys(backends.keys.as_ref())
            .await
            .map_err(|e| BootError::from_error("verification keys", &e))?;
        if keys.is_empty() {
            tracing::warn!("no token-signing key is published yet; every token will be refused");
        }
        Ok(Self {
            verifier: TokenVerifier::new(&keys, &config.issuer, &config.audience, clock.clone()),
            sessions: backends.sessions.clone(),
            policy: config.session_policy(),
            clock,
        })
    }
}

/// The caller's identity, passed to the backend as authorizer context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub sid: String,
    pub roles: Vec<String>,
}

/// The authorizer's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Identity),
    /// No usable credential: API Gateway answers 401.
    Unauthorized,
    /// A valid credential without the right: API Gateway answers 403.
    Forbidden,
}

/// `Bearer <token>` (scheme case-insensitive, RFC 7235), else `None`.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
}

fn deny(reason: &str) -> Decision {
    tracing::info!(target: "audit", event_type = "authorizer_deny", reason = %reason, "request refused");
    Decision::Unauthorized
}

/// Decides on an `Authorization` header value.
pub async fn decide(deps: &Deps, authorization: Option<&str>) -> Decision {
    let Some(token) = authorization.and_then(bearer_token) else {
        return Decision::Unauthorized;
    };
    let claims = match deps.verifier.verify(token) {
        Ok(claims) => claims,
        Err(err) => return deny(&err.to_string()),
    };
    match deps.sessions.get(&claims.sub, &claims.sid).await {
        Ok(Some(session)) => match deps.policy.state(&session, deps.clock.now_secs()) {
            SessionState::Live => {
                Decision::Allow(Identity { sub: claims.sub, sid: claims.sid, roles: claims.roles })
            }
            state => deny(&format!("session {state:?}")),
        },
        Ok(None) => deny("unknown session"),
        Err(err) => {
            tracing::error!(error = %portcullis_shared::http::error_chain(&err), "session store unavailable: denying");
            deny("session store unavailable")
        }
    }
}

/// The context map API Gateway forwards to the backend (string values, so the
/// same context works for REST and HTTP APIs).
pub fn context_of(identity: &Identity) -> serde_json::Value {
    serde_json::json!({ "sub": identity.sub, "sid": identity.sid, "roles": identity.roles.join(",") })
}

/// HTTP API (payload 2.0) simple response. A payload that is not an authorizer
/// request is refused, never an invocation error.
pub async fn handle_v2(deps: &Deps, event: serde_json::Value) -> ApiGatewayV2CustomAuthorizerSimpleResponse {
    let decision = match serde_json::from_value::<ApiGatewayV2CustomAuthorizerV2Request>(event) {
        Ok(request) => {
            let header = request.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            decide(deps, header).await
        }
        Err(_) => Decision::Unauthorized,
    };
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    if let Decision::Allow(identity) = decision {
        response.is_authorized = true;
        response.context = context_of(&identity);
    } else {
        response.is_authorized = false;
        response.context = serde_json::json!({});
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_bearer_headers_yield_a_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer a b"), None);
    }
}
