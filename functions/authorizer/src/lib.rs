//! The `authorizer` function: API Gateway's Lambda authorizer, the one place every
//! protected request passes.
//!
//! For a bearer token it verifies the JWT against our published keys, checks that
//! its session is live (not revoked, not idle, not past its absolute lifetime:
//! ASVS 5.0 V8.3.2) and takes the user's *current* roles from the session record,
//! so role changes and revocations apply on the next request. For an `X-Api-Key`
//! it checks the key's hash, expiry and revocation. Then the RBAC policy maps the
//! route to its required permission (the route table's, `shared/src/routes.rs`;
//! roles and their grants from `infra/rbac.json`). It fails closed:
//! no policy rule, an unexpected payload or an unreachable store all deny.

mod events;

pub use events::{handle_event, handle_rest, handle_v2, METHOD_OVERRIDES};

use portcullis_shared::apikeys::{parse_presented, ApiKeyStore, KeyVerdict};
use portcullis_shared::clock::Clock;
use portcullis_shared::cognito::{peek_issuer, CognitoVerifier};
use portcullis_shared::config::Config;
use portcullis_shared::crypto::load_verifying_keys;
use portcullis_shared::deferred::Deferred;
use portcullis_shared::error::BootError;
pub use portcullis_shared::http::bearer_token;
use portcullis_shared::rbac::{Facts, Policy, Requirement, Rule};
use portcullis_shared::runtime::Backends;
use portcullis_shared::sessions::{SessionPolicy, SessionRecord, SessionState, SessionStore};
use portcullis_shared::store::StoreError;
use portcullis_shared::tokens::{peek_session, TokenError, TokenVerifier};
use std::collections::HashMap;
use std::sync::Arc;

/// What the authorizer needs, built once at cold start.
pub struct Deps {
    /// Our published keys, read from MySQL when the first of our tokens arrives
    /// (together with that token's session), then kept for up to the key bound
    /// (then read again, the same way). Requests without one of
    /// our tokens (API keys, Cognito tokens, refusals) never wait for them, and
    /// no background read competes with answering them on a cold instance.
    pub verifier: Deferred<TokenVerifier>,
    pub sessions: Arc<dyn SessionStore>,
    pub api_keys: Arc<dyn ApiKeyStore>,
    pub policy: Policy,
    pub session_policy: SessionPolicy,
    pub clock: Arc<dyn Clock>,
    /// Set when a Cognito user pool's tokens are accepted too.
    pub cognito: Option<CognitoVerifier>,
    /// Where accounts live: when it is the pool, its tokens need a live session record.
    pub identity: portcullis_shared::config::IdentityBackend,
    /// The least time between two reloads of our keys caused by unknown `kid`s.
    pub key_reload_interval: std::time::Duration,
}

/// The default [`Deps::key_reload_interval`].
pub const KEY_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Deps {
    /// Parses the RBAC policy (an invalid one stops the cold start) and prepares
    /// the loader of the published verification keys (never private material).
    pub async fn build(
        config: &Config,
        backends: &Backends,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BootError> {
        let policy = Policy::load(config).map_err(|e| BootError(e.to_string()))?;
        let (store, issuer, audience, verifier_clock) =
            (backends.keys.clone(), config.issuer.clone(), config.audience.clone(), clock.clone());
        // Reread within the key bound even when every token's kid is known, so a
        // revoked key stops verifying on warm instances too; past the hard bound
        // without a successful read, our tokens are refused (docs/security/keys.md).
        let max_age = portcullis_shared::runtime::key_max_age(&clock);
        let verifier = Deferred::lazy_current(max_age, move |_| {
            let (store, issuer, audience, clock) =
                (store.clone(), issuer.clone(), audience.clone(), verifier_clock.clone());
            async move {
                let keys = load_verifying_keys(store.as_ref())
                    .await
                    .map_err(|e| BootError::from_error("verification keys", &e))?;
                if keys.is_empty() {
                    // Not cached: the next token tries again, once login has published a key.
                    return Err(BootError("no token-signing key is published yet".into()));
                }
                Ok(Arc::new(TokenVerifier::new(&keys, &issuer, &audience, clock)))
            }
        });
        Ok(Self {
            verifier,
            sessions: backends.sessions.clone(),
            api_keys: backends.api_keys.clone(),
            policy,
            session_policy: config.session_policy(),
            cognito: config.cognito.clone().map(|c| CognitoVerifier::new(c, clock.clone())),
            key_reload_interval: KEY_RELOAD_INTERVAL,
            identity: config.identity.clone(),
            clock,
        })
    }
}

/// The caller's identity, passed to the backend as authorizer context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub sid: String,
    pub roles: Vec<String>,
    pub api_key_id: Option<String>,
    /// When and how the person last authenticated (step-up decisions; none for API keys).
    pub auth_time: Option<i64>,
    pub amr: Vec<String>,
    /// The permission of the rule that allowed the request (none for a
    /// session or public route).
    pub permission: Option<String>,
}

/// Who presented a usable credential, before the route's rule is judged.
struct Authenticated {
    identity: Identity,
    /// A live user session backs it.
    session: bool,
    /// An API key's grants (a key holds no roles).
    key_grants: Option<Vec<String>>,
}

/// The authorizer's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Identity),
    /// No usable credential (missing, invalid, expired, revoked).
    Unauthorized,
    /// A valid credential without the permission the route requires.
    Forbidden,
}

/// One request to decide on.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub method: &'a str,
    /// The concrete path or the route template (`/admin/users/{user_id}/roles`).
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub api_key: Option<&'a str>,
}

/// A session that does not let the request through, logged like any refusal.
fn refused(reason: &str) -> Option<SessionRecord> {
    refuse(Decision::Unauthorized, reason);
    None
}

fn refuse(decision: Decision, reason: &str) -> Decision {
    tracing::info!(target: "audit", event_type = "authorizer_deny", outcome = "failure", reason = %reason, "request refused");
    decision
}

/// Decides on one request.
pub async fn authorize(deps: &Deps, ask: Ask<'_>) -> Decision {
    authorize_route(deps, ask, None).await
}

/// What API Gateway matched when `ask.path` is a route template: the path
/// parameters it extracted and the request's own path (`rawPath`, the stage
/// removed), which must lead to no more specific rule than the template.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub params: &'a HashMap<String, String>,
    pub raw_path: Option<&'a str>,
}

/// Decides on one request, with what API Gateway matched when `ask.path` is
/// the route template.
pub async fn authorize_route(deps: &Deps, ask: Ask<'_>, matched: Option<Matched<'_>>) -> Decision {
    let Some(rule) = deps.policy.rule(ask.method, ask.path) else {
        return refuse(Decision::Forbidden, "no policy rule for this route");
    };
    if let Some(raw) = matched.and_then(|m| m.raw_path) {
        // The path as sent decides too: it must have one meaning, and a rule
        // more specific than the API's route (a literal where the route has a
        // parameter) must not be passed over for the route's looser one.
        // No rule for the path as sent (no canonical form, a spelling a
        // stricter rule shadows, a prefix the route does not know) is a
        // refusal, never the route's.
        let passed_over = |r: &Rule| portcullis_shared::rbac::rules::precedence(r, rule).is_gt();
        match deps.policy.rule(ask.method, raw) {
            None => return refuse(Decision::Forbidden, "no policy rule for the request path as sent"),
            Some(other) if passed_over(other) => {
                return refuse(
                    Decision::Forbidden,
                    "a more specific rule than the API's route covers the path",
                )
            }
            Some(_) => {}
        }
    }
    let params = matched.map(|m| m.params);
    if rule.requirement == Requirement::Public {
        return Decision::Allow(Identity::default());
    }
    let caller = match (ask.authorization, ask.api_key) {
        (Some(_), Some(_)) => Err(refuse(Decision::Unauthorized, "both a bearer token and an API key")),
        (Some(header), None) => match bearer_token(header) {
            Some(token) => user_caller(deps, token).await,
            None => Err(refuse(Decision::Unauthorized, "malformed Authorization header")),
        },
        (None, Some(key)) => key_caller(deps, key).await,
        (None, None) => Err(Decision::Unauthorized),
    };
    match caller {
        Ok(caller) => judge(deps, rule, &ask, params, caller),
        Err(decision) => decision,
    }
}

/// The rule's verdict on an authenticated caller: its requirement (the
/// caller's roles under their conditions, or its key's grants) and conditions.
fn judge(
    deps: &Deps,
    rule: &Rule,
    ask: &Ask<'_>,
    params: Option<&HashMap<String, String>>,
    who: Authenticated,
) -> Decision {
    let id = &who.identity;
    let facts = Facts {
        sub: &id.sub,
        session: who.session,
        roles: &id.roles,
        key_grants: who.key_grants.as_deref(),
        amr: &id.amr,
        auth_time: id.auth_time,
        now: deps.clock.now_secs(),
    };
    match deps.policy.judge(rule, ask.path, &facts, params) {
        Ok(permission) => Decision::Allow(Identity { permission, ..who.identity }),
        Err(reason) => refuse(Decision::Forbidden, reason),
    }
}

/// A Cognito user-pool token: roles are its `cognito:groups` that the policy
/// knows. When the pool is the identity provider (`PORTCULLIS_IDENTITY_PROVIDER=
/// cognito`), its login wrote our session record under the token's `origin_jti`:
/// that session must be live (not logged out, revoked, idle or past its absolute
/// lifetime), exactly as for our own tokens, and session routes open to it.
/// Otherwise (pool tokens from elsewhere) there is no session behind the token,
/// so session-only routes stay closed to it.
async fn cognito_caller(
    deps: &Deps,
    verifier: &CognitoVerifier,
    token: &str,
) -> Result<Authenticated, Decision> {
    let identity = match verifier.verify(token).await {
        Ok(identity) => identity,
        Err(err) => return Err(refuse(Decision::Unauthorized, &format!("Cognito token: {err}"))),
    };
    // The pool's tokens carry no `amr`, and its `auth_time` survives refreshes:
    // how and when the person authenticated is our session record's (a
    // re-authentication starts a new pool session, see `POST /auth/reauth`).
    let (sid, auth_time, amr) = if !deps.identity.is_native() {
        let Some(sid) = identity.origin_jti else {
            return Err(refuse(Decision::Unauthorized, "Cognito token without origin_jti"));
        };
        match live_session(deps, &identity.sub, &sid).await {
            Some(session) => (Some(sid), Some(session.auth_time), session.amr),
            None => return Err(Decision::Unauthorized),
        }
    } else {
        (None, None, Vec::new())
    };
    let roles: Vec<String> = identity.groups.into_iter().filter(|g| deps.policy.is_role(g)).collect();
    let session = sid.is_some();
    let (sub, sid) = (identity.sub, sid.unwrap_or_default());
    let identity = Identity { sub, sid, roles, auth_time, amr, ..Identity::default() };
    Ok(Authenticated { identity, session, key_grants: None })
}

/// The session, if it exists and is live; otherwise `None` (the refusal is logged).
async fn live_session(deps: &Deps, sub: &str, sid: &str) -> Option<SessionRecord> {
    judge_session(deps, deps.sessions.get(sub, sid).await)
}

/// Judges a session read: it must exist and be live.
fn judge_session(deps: &Deps, read: Result<Option<SessionRecord>, StoreError>) -> Option<SessionRecord> {
    let session = match read {
        Ok(Some(session)) => session,
        Ok(None) => return refused("unknown session"),
        Err(err) => {
            tracing::error!(error = %portcullis_shared::error::error_chain(&err), "session store unavailable");
            return refused("session store unavailable");
        }
    };
    match deps.session_policy.state(&session, deps.clock.now_secs()) {
        SessionState::Live => Some(session),
        state => refused(&format!("session {state:?}")),
    }
}

async fn user_caller(deps: &Deps, token: &str) -> Result<Authenticated, Decision> {
    if let Some(cognito) = &deps.cognito {
        if peek_issuer(token).as_deref() == Some(cognito.issuer()) {
            return cognito_caller(deps, cognito, token).await;
        }
    }
    // On a cold instance the keys are not loaded yet (or they are due for their
    // recheck): read them and, at the same time, the session the token names. That early read decides nothing: it is
    // used only once the signature has verified and named the same session.
    let (verifier, early) = match deps.verifier.loaded() {
        Some(verifier) => (Ok(verifier), None),
        None => match peek_session(token) {
            Some((sub, sid)) => {
                let (verifier, read) = tokio::join!(deps.verifier.get(), deps.sessions.get(&sub, &sid));
                (verifier, Some((sub, sid, read)))
            }
            None => (deps.verifier.get().await, None),
        },
    };
    let verifier = match verifier {
        Ok(verifier) => verifier,
        Err(_) => return Err(refuse(Decision::Unauthorized, "verification keys unavailable")),
    };
    let verified = match verifier.verify(token) {
        // Signed by a key published after our keys were loaded (a rotation while
        // this instance was warm): read the keys again, at most once per interval.
        Err(TokenError::UnknownKey) => match deps.verifier.reload_if_older(deps.key_reload_interval).await {
            Ok(reloaded) => reloaded.verify(token),
            Err(_) => Err(TokenError::UnknownKey),
        },
        other => other,
    };
    let claims = match verified {
        Ok(claims) => claims,
        Err(err) => return Err(refuse(Decision::Unauthorized, &err.to_string())),
    };
    let read = match early {
        Some((sub, sid, read)) if sub == claims.sub && sid == claims.sid => read,
        _ => deps.sessions.get(&claims.sub, &claims.sid).await,
    };
    let Some(session) = judge_session(deps, read) else {
        return Err(Decision::Unauthorized);
    };
    let (sub, sid, roles, auth_time, amr) =
        (claims.sub, claims.sid, session.roles, Some(claims.auth_time), claims.amr);
    let identity = Identity { sub, sid, roles, auth_time, amr, ..Identity::default() };
    Ok(Authenticated { identity, session: true, key_grants: None })
}

async fn key_caller(deps: &Deps, presented: &str) -> Result<Authenticated, Decision> {
    let Some((key_id, hash)) = parse_presented(presented) else {
        return Err(refuse(Decision::Unauthorized, "malformed API key"));
    };
    let record = match deps.api_keys.get(&key_id).await {
        Ok(Some(record)) => record,
        Ok(None) => return Err(refuse(Decision::Unauthorized, "unknown API key")),
        Err(err) => {
            tracing::error!(error = %portcullis_shared::error::error_chain(&err), "API key store unavailable");
            return Err(refuse(Decision::Unauthorized, "API key store unavailable"));
        }
    };
    match record.check(&hash, deps.clock.now_secs()) {
        KeyVerdict::Valid => {}
        verdict => return Err(refuse(Decision::Unauthorized, &format!("API key {verdict:?}"))),
    }
    // A key is no person: it reaches only the permission routes that admit
    // keys and that its grants cover (see `Rule::judge`).
    let identity = Identity {
        sub: format!("apikey:{}", record.key_id),
        api_key_id: Some(record.key_id),
        ..Identity::default()
    };
    Ok(Authenticated { identity, session: false, key_grants: Some(record.permissions) })
}

/// The context map API Gateway forwards to the backend. String values only, so
/// the same context works for REST and HTTP APIs.
pub fn context_of(identity: &Identity) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    map.insert("sub".into(), identity.sub.clone().into());
    map.insert("sid".into(), identity.sid.clone().into());
    map.insert("roles".into(), identity.roles.join(",").into());
    if let Some(id) = &identity.api_key_id {
        map.insert("api_key_id".into(), id.clone().into());
    }
    if let Some(permission) = &identity.permission {
        map.insert("permission".into(), permission.clone().into());
    }
    if let Some(at) = identity.auth_time {
        map.insert("auth_time".into(), at.to_string().into());
        map.insert("amr".into(), identity.amr.join(",").into());
    }
    map
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
