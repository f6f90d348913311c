//! API keys: creation within the creator's permissions, revocation, and the
//! re-evaluation of a person's keys when that person loses permissions.

use crate::handlers::{actor, require, Deps};
use http::StatusCode;
use lambda_http::Request;
use portcullis_shared::apikeys::{self, new_api_key, reveal, ApiKeyRecord};
use portcullis_shared::audit::EventType;
use portcullis_shared::domain::UserId;
use portcullis_shared::error::Violation;
use portcullis_shared::http::{json, no_content, parse_json, Caller, ClientMeta, HandlerResult};
use portcullis_shared::sessions;
use portcullis_shared::ApiError;
use serde::{Deserialize, Serialize};

/// What the audit trail records of a key revoked for exceeding its creator
/// (the `detail` column holds 255 characters).
fn exceeded_detail(key_id: &str, lacking: &[String]) -> String {
    let mut text = format!("{key_id}: creator no longer holds {}", lacking.join(","));
    if text.len() > 255 {
        let mut end = 252;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// Revokes every live key `creator` made that carries a permission the
/// creator's roles (as MySQL holds them now) no longer grant; one audit event
/// per key. Run after every removal of a role, in the same request.
pub(crate) async fn bound_by_creator(
    deps: &Deps,
    caller: &Caller,
    creator: UserId,
    meta: &ClientMeta,
) -> Result<(), ApiError> {
    let roles = sessions::role_names(deps.users.as_ref(), creator).await?;
    let holds = |p: &str| deps.policy.allows(&roles, p);
    let now = deps.clock.now_secs();
    let exceeding = apikeys::exceeding(deps.api_keys.as_ref(), &creator.to_string(), holds, now).await?;
    // Each revocation is audited before the next is tried, so a failure part
    // way leaves no revoked key unrecorded (a repeated request finds the rest).
    for key in exceeding {
        deps.api_keys.revoke(&key.key_id, now).await?;
        deps.auditor
            .record_admin(
                EventType::ApiKeyRevoked,
                &actor(caller),
                Some(creator.to_string()),
                Some(exceeded_detail(&key.key_id, &key.lacking)),
                meta,
            )
            .await;
    }
    Ok(())
}

/// After the write: the creator's roles as MySQL holds them now must still
/// grant every permission of the new key. A role removal that ran between the
/// creation's check and its write did not find the key; this second read sees
/// that removal (its MySQL change committed before it looked for keys, which
/// was before the key was written). Fails closed: a key it cannot confirm is
/// revoked, and the creation refused.
async fn confirm_within_creator(
    deps: &Deps,
    caller: &Caller,
    record: &ApiKeyRecord,
    meta: &ClientMeta,
) -> Result<(), ApiError> {
    if !deps.identity.is_native() {
        // Pool users' roles are their Cognito groups, which this function does
        // not read (docs/security/api-keys.md, "Limits").
        return Ok(());
    }
    let roles = match UserId::parse(&caller.sub) {
        Some(id) => sessions::role_names(deps.users.as_ref(), id).await,
        None => Ok(Vec::new()),
    };
    let lacking = match &roles {
        Ok(roles) => record.beyond(|p| deps.policy.allows(roles, p)),
        Err(_) => Vec::new(),
    };
    if roles.is_ok() && lacking.is_empty() {
        return Ok(());
    }
    deps.api_keys.revoke(&record.key_id, deps.clock.now_secs()).await?;
    let detail = match &roles {
        Ok(_) => exceeded_detail(&record.key_id, &lacking),
        Err(_) => format!("{}: creator's roles unreadable after creation", record.key_id),
    };
    deps.auditor
        .record_admin(EventType::ApiKeyRevoked, &actor(caller), Some(caller.sub.clone()), Some(detail), meta)
        .await;
    roles?;
    Err(ApiError::Forbidden)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
    permissions: Vec<String>,
    expires_in_days: u32,
}

#[derive(Serialize)]
struct NewKeyView {
    key_id: String,
    api_key: String,
}

/// The request's violations: name, lifetime, and permissions that exist and
/// that the caller holds.
fn violations(deps: &Deps, caller: &Caller, body: &NewKeyBody) -> Vec<Violation> {
    let mut broken = Vec::new();
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        broken.push(Violation {
            rule: "invalid_name",
            field: "name",
            message: "1 to 64 printable characters".into(),
        });
    }
    if !(1..=365).contains(&body.expires_in_days) {
        broken.push(Violation {
            rule: "out_of_range",
            field: "expires_in_days",
            message: "1 to 365 days".into(),
        });
    }
    if body.permissions.is_empty() || body.permissions.len() > 16 {
        broken.push(Violation {
            rule: "invalid_permissions",
            field: "permissions",
            message: "1 to 16 permissions".into(),
        });
    }
    for p in &body.permissions {
        if !deps.policy.is_permission(p) {
            broken.push(Violation {
                rule: "unknown_permission",
                field: "permissions",
                message: format!("`{p}` is not a permission"),
            });
        } else if !deps.policy.grants(&caller.roles, &caller.amr, p) {
            broken.push(Violation {
                rule: "not_held",
                field: "permissions",
                message: format!("you do not hold `{p}`"),
            });
        }
    }
    broken
}

/// Creates an API key whose permissions the creating person holds, checked
/// against the caller's roles before the write and against MySQL after it (no
/// key carries more than its creator; keys cannot mint keys).
pub async fn create_api_key(deps: &Deps, req: &Request) -> HandlerResult {
    let caller = require(deps, req)?;
    if caller.api_key_id.is_some() {
        return Err(ApiError::Forbidden);
    }
    let body: NewKeyBody = parse_json(req, deps.max_body_bytes)?;
    let broken = violations(deps, &caller, &body);
    if !broken.is_empty() {
        return Err(ApiError::Validation(broken));
    }
    let now = deps.clock.now_secs();
    let (key_id, key, hash) = new_api_key();
    let record = ApiKeyRecord {
        key_id: key_id.clone(),
        name: body.name.trim().to_owned(),
        hash,
        permissions: body.permissions,
        created_by: caller.sub.clone(),
        created_at: now,
        valid_until: now + i64::from(body.expires_in_days) * 86_400,
        revoked_at: None,
    };
    deps.api_keys.create(&record).await?;
    let meta = ClientMeta::from_request(req);
    deps.auditor
        .record_admin(EventType::ApiKeyCreated, &actor(&caller), None, Some(key_id.clone()), &meta)
        .await;
    confirm_within_creator(deps, &caller, &record, &meta).await?;
    json(StatusCode::CREATED, &NewKeyView { key_id, api_key: reveal(&key) })
}

pub async fn revoke_api_key(deps: &Deps, req: &Request, key_id: &str) -> HandlerResult {
    let caller = require(deps, req)?;
    let valid_id = key_id.len() == 16 && key_id.chars().all(|c| c.is_ascii_hexdigit());
    if !valid_id || !deps.api_keys.revoke(key_id, deps.clock.now_secs()).await? {
        return Err(ApiError::NotFound);
    }
    let meta = ClientMeta::from_request(req);
    deps.auditor
        .record_admin(EventType::ApiKeyRevoked, &actor(&caller), None, Some(key_id.to_owned()), &meta)
        .await;
    no_content()
}
