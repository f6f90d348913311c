//! The admin function's handlers and their dependencies.

use http::StatusCode;
use lambda_http::Request;
use portcullis_shared::apikeys::ApiKeyStore;
use portcullis_shared::audit::{Auditor, EventType};
use portcullis_shared::clock::Clock;
use portcullis_shared::crypto::FieldCipher;
use portcullis_shared::deferred::Deferred;
use portcullis_shared::domain::{Role, UserId};
use portcullis_shared::error::BootError;
use portcullis_shared::error::Violation;
use portcullis_shared::http::{
    json, no_content, parse_json, query_params, Caller, ClientMeta, HandlerResult,
};
use portcullis_shared::rbac::Policy;
use portcullis_shared::routes::{AdminRoute, Resolved};
use portcullis_shared::runtime::Boot;
use portcullis_shared::sessions::{self, SessionStore};
use portcullis_shared::store::{RoleRemoval, UserStore};
use portcullis_shared::ApiError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Everything the admin handlers use, built once at cold start.
pub struct Deps {
    pub users: Arc<dyn UserStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub api_keys: Arc<dyn ApiKeyStore>,
    /// Unwrapped in the background from cold start on (see [`Deferred`]).
    pub fields: Deferred<FieldCipher>,
    pub policy: Policy,
    pub auditor: Auditor,
    /// The trail `GET /admin/audit` searches.
    pub audit: Arc<dyn portcullis_shared::audit::AuditStore>,
    pub clock: Arc<dyn Clock>,
    pub max_body_bytes: usize,
    /// Where accounts live: with a Cognito pool, user ids are the pool's subs,
    /// not rows of our users table, and roles are the pool's groups.
    pub identity: portcullis_shared::config::IdentityBackend,
}

impl Deps {
    pub async fn build(boot: &Boot) -> Result<Self, BootError> {
        let (config, backends, clock) = (&boot.config, &boot.backends, boot.clock.clone());
        let fields = boot.clone().prefetch(|keys| async move { keys.fields().await });
        Ok(Self {
            users: backends.users.clone(),
            sessions: backends.sessions.clone(),
            api_keys: backends.api_keys.clone(),
            fields,
            policy: Policy::load(config).map_err(|e| BootError(e.to_string()))?,
            auditor: Auditor::new(backends.audit.clone(), clock.clone()),
            audit: backends.audit.clone(),
            clock,
            max_body_bytes: config.max_body_bytes,
            identity: config.identity.clone(),
        })
    }
}

/// The handler of each admin route (the route table names them and their parameters).
pub(crate) async fn dispatch(deps: &Deps, found: Resolved<'_, AdminRoute>, req: &Request) -> HandlerResult {
    let param = |name| found.param(name).ok_or(ApiError::NotFound);
    match found.route {
        AdminRoute::ListUsers => list_users(deps, req).await,
        AdminRoute::GrantRole => grant_role(deps, req, param("user_id")?).await,
        AdminRoute::RevokeRole => revoke_role(deps, req, param("user_id")?, param("role")?).await,
        AdminRoute::RevokeSessions => revoke_sessions(deps, req, param("user_id")?).await,
        AdminRoute::CreateApiKey => crate::api_keys::create_api_key(deps, req).await,
        AdminRoute::RevokeApiKey => crate::api_keys::revoke_api_key(deps, req, param("key_id")?).await,
        AdminRoute::SearchAudit => crate::audit::search(deps, req).await,
        AdminRoute::MyEvents => crate::audit::own(deps, req).await,
    }
}

/// The caller, if its roles grant the permission the route table gives this
/// request's route (defence in depth: the authorizer checked it already). A
/// request the table gives no permission to is refused.
pub(crate) fn require(deps: &Deps, req: &Request) -> Result<Caller, ApiError> {
    let permission =
        match portcullis_shared::routes::find(req.method(), portcullis_shared::http::served_path(req)) {
            Ok(route) => match route.access {
                portcullis_shared::routes::Access::Permission(permission) => permission,
                _ => return Err(ApiError::Forbidden),
            },
            Err(_) => return Err(ApiError::Forbidden),
        };
    let caller = Caller::from_request(req)?;
    if caller.api_key_id.is_none() && !deps.policy.grants(&caller.roles, &caller.amr, permission) {
        return Err(ApiError::Forbidden);
    }
    Ok(caller)
}

pub(crate) fn actor(caller: &Caller) -> String {
    caller.api_key_id.as_ref().map(|k| format!("apikey:{k}")).unwrap_or_else(|| caller.sub.clone())
}

pub(crate) fn invalid(field: &'static str, rule: &'static str, message: &str) -> ApiError {
    ApiError::Validation(vec![Violation { rule, field, message: message.to_owned() }])
}

async fn target_user(deps: &Deps, raw: &str) -> Result<UserId, ApiError> {
    let id = UserId::parse(raw).ok_or(ApiError::NotFound)?;
    if deps.users.exists(id).await? {
        Ok(id)
    } else {
        Err(ApiError::NotFound)
    }
}

#[derive(Serialize)]
struct UserView {
    user_id: String,
    email: String,
    roles: Vec<String>,
    mfa_enabled: bool,
    created_at: i64,
}

/// `GET /admin/users?after=<user_id>&limit=<1..100>`: emails decrypted for the caller.
pub async fn list_users(deps: &Deps, req: &Request) -> HandlerResult {
    require(deps, req)?;
    let query = query_params(req);
    let first = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let after = match first("after") {
        Some(raw) => {
            Some(UserId::parse(raw).ok_or_else(|| invalid("after", "invalid_cursor", "not a user id"))?)
        }
        None => None,
    };
    let limit = match first("limit") {
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| invalid("limit", "out_of_range", "limit must be 1 to 100"))?,
        None => 100,
    };
    let fields = deps.fields.get().await?;
    let mut views = Vec::new();
    for user in deps.users.list_users(after, limit).await? {
        let email =
            fields.decrypt(&user.email_ciphertext, &user.id.as_bytes()).map_err(ApiError::internal)?;
        views.push(UserView {
            user_id: user.id.to_string(),
            email: String::from_utf8(email).map_err(ApiError::internal)?,
            roles: user.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            mfa_enabled: user.mfa_enabled,
            created_at: user.created_at,
        });
    }
    json(StatusCode::OK, &views)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: String,
}

fn known_role(deps: &Deps, raw: &str) -> Result<Role, ApiError> {
    Role::parse(raw)
        .ok()
        .filter(|r| deps.policy.is_role(r.as_str()))
        .ok_or_else(|| invalid("role", "unknown_role", "no such role in the RBAC policy"))
}

/// Rewrites the target's live sessions with its roles as now stored.
async fn sync_session_roles(deps: &Deps, user: UserId) -> Result<(), ApiError> {
    sessions::update_roles(deps.sessions.as_ref(), deps.users.as_ref(), user).await?;
    Ok(())
}

/// No escalation. A person may grant or revoke a role only when it holds every
/// permission of that role itself (Kubernetes RBAC's check). An API key, a
/// credential for automation that outlives its creator's roles and could turn
/// a stolen key into a person with lasting access, manages only roles that
/// grant no permission, and only while it is live and holds `users:manage`.
async fn may_assign(deps: &Deps, caller: &Caller, role: &Role) -> Result<(), ApiError> {
    let allowed = match &caller.api_key_id {
        None => deps.policy.may_assign(role.as_str(), |p| deps.policy.grants(&caller.roles, &caller.amr, p)),
        Some(key_id) => {
            let now = deps.clock.now_secs();
            let record = deps
                .api_keys
                .get(key_id)
                .await?
                .filter(|k| k.revoked_at.is_none() && now < k.valid_until)
                .ok_or(ApiError::Forbidden)?;
            deps.policy.grants_cover(&record.permissions, "users:manage")
                && deps.policy.permissions_of(role.as_str()).is_empty()
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

pub async fn grant_role(deps: &Deps, req: &Request, user: &str) -> HandlerResult {
    let caller = require(deps, req)?;
    let body: RoleBody = parse_json(req, deps.max_body_bytes)?;
    let role = known_role(deps, &body.role)?;
    may_assign(deps, &caller, &role).await?;
    let user = target_user(deps, user).await?;
    deps.users.grant_role(user, &role, deps.clock.now_secs()).await?;
    sync_session_roles(deps, user).await?;
    let meta = ClientMeta::from_request(req);
    deps.auditor
        .record_admin(
            EventType::RoleGranted,
            &actor(&caller),
            Some(user.to_string()),
            Some(role.as_str().into()),
            &meta,
        )
        .await;
    no_content()
}

pub async fn revoke_role(deps: &Deps, req: &Request, user: &str, role: &str) -> HandlerResult {
    let caller = require(deps, req)?;
    let role = known_role(deps, role)?;
    may_assign(deps, &caller, &role).await?;
    let user = target_user(deps, user).await?;
    // The last-holder guard, decided under MySQL's lock on the assignments it reads.
    let refused = std::sync::Mutex::new(Vec::new());
    let check = |assignments: &[(UserId, Role)]| {
        let last = deps.policy.last_held(assignments, &user, role.as_str());
        let allowed = last.is_empty();
        if let Ok(mut refused) = refused.lock() {
            *refused = last.into_iter().map(str::to_owned).collect();
        }
        allowed
    };
    let watched = deps.policy.roles_sharing(role.as_str());
    let removal = RoleRemoval { id: user, role: &role, watched: &watched, may_revoke: &check };
    if !deps.users.revoke_role_checked(removal).await? {
        let permissions = refused.into_inner().unwrap_or_default();
        return Err(ApiError::LastHolder(permissions));
    }
    sync_session_roles(deps, user).await?;
    let meta = ClientMeta::from_request(req);
    deps.auditor
        .record_admin(
            EventType::RoleRevoked,
            &actor(&caller),
            Some(user.to_string()),
            Some(role.as_str().into()),
            &meta,
        )
        .await;
    crate::api_keys::bound_by_creator(deps, &caller, user, &meta).await?;
    no_content()
}

pub async fn revoke_sessions(deps: &Deps, req: &Request, user: &str) -> HandlerResult {
    let caller = require(deps, req)?;
    let user = if !deps.identity.is_native() {
        // A pool user: our session records are keyed by the pool's sub.
        UserId::parse(user).ok_or(ApiError::NotFound)?
    } else {
        target_user(deps, user).await?
    };
    let count =
        sessions::revoke_all(deps.sessions.as_ref(), &user.to_string(), None, deps.clock.now_secs()).await?;
    let meta = ClientMeta::from_request(req);
    deps.auditor
        .record_admin(
            EventType::SessionsRevoked,
            &actor(&caller),
            Some(user.to_string()),
            Some(format!("{count} sessions")),
            &meta,
        )
        .await;
    no_content()
}
