//! `GET /admin/audit`: employees holding `audit:read` search the audit trail,
//! newest first, a bounded page at a time. Each search is itself audited.
//! `GET /me/events`: a person reads the events about its own account, the same
//! filters but the subject, which is always the caller.

use crate::handlers::{actor, invalid, require, Deps};
use http::StatusCode;
use lambda_http::Request;
use portcullis_shared::audit::{AuditQuery, AuditRecord, EventType, DEFAULT_PAGE, MAX_PAGE};
use portcullis_shared::http::{json, query_params, Caller, ClientMeta, HandlerResult};
use portcullis_shared::ApiError;

/// The query parameters the route takes; any other is refused (a misspelt
/// filter must not silently widen a search).
const PARAMETERS: [&str; 7] = ["subject", "type", "outcome", "since", "until", "cursor", "limit"];

/// `?subject=&type=&outcome=&since=&until=&cursor=&limit=`: `{events, next_cursor}`.
pub async fn search(deps: &Deps, req: &Request) -> HandlerResult {
    let caller = require(deps, req)?;
    let query = parse(req)?;
    let (events, next_cursor) = page(deps, &query).await?;
    let detail = summary(&query);
    let meta = ClientMeta::from_request(req);
    deps.auditor.record_admin(EventType::AuditRead, &actor(&caller), None, Some(detail), &meta).await;
    json(StatusCode::OK, &serde_json::json!({ "events": events, "next_cursor": next_cursor }))
}

/// One page of `query`, newest first, and the cursor of the next page if any.
async fn page(deps: &Deps, query: &AuditQuery) -> Result<(Vec<AuditRecord>, Option<String>), ApiError> {
    let limit = query.limit as usize;
    // One more than asked: whether a next page exists, without a count.
    let mut events = deps.audit.search(&AuditQuery { limit: query.limit + 1, ..query.clone() }).await?;
    let next_cursor = (events.len() > limit).then(|| {
        events.truncate(limit);
        events.last().map(|e| e.id.to_string())
    });
    Ok((events, next_cursor.flatten()))
}

/// `GET /me/events?type=&outcome=&since=&until=&cursor=&limit=`: the caller's
/// own events, `{events, next_cursor}`. Each event shows what happened, when,
/// with what outcome and reason, and from where; for what an employee or an
/// API key did, only that (`by_administrator`): never who, nor from where, nor
/// the detail recorded for employees. A person only: an API
/// key owns no account.
pub async fn own(deps: &Deps, req: &Request) -> HandlerResult {
    let caller = Caller::from_request(req)?;
    if caller.api_key_id.is_some() {
        return Err(ApiError::Forbidden);
    }
    // A person's own session (defence in depth: the route's rule needs one).
    caller.sid.as_ref().ok_or(ApiError::Unauthenticated)?;
    if query_params(req).iter().any(|(name, _)| name == "subject") {
        return Err(invalid("query", "unknown_parameter", "unknown parameter `subject`"));
    }
    let query = AuditQuery { subject: Some(caller.sub.clone()), ..parse(req)? };
    let (events, next_cursor) = page(deps, &query).await?;
    let events: Vec<serde_json::Value> = events
        .into_iter()
        .map(|e| {
            // Where an employee (or a key) acted from would say who: not shown.
            let by_another = e.actor.is_some();
            let (source_ip, user_agent) = if by_another { (None, None) } else { (e.source_ip, e.user_agent) };
            serde_json::json!({"occurred_at": e.occurred_at, "type": e.event_type, "outcome": e.outcome,
                "reason": e.reason, "source_ip": source_ip, "user_agent": user_agent,
                "by_administrator": by_another})
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "events": events, "next_cursor": next_cursor }))
}

/// The filters of a search in one line, for its own audit event.
fn summary(q: &AuditQuery) -> String {
    let fields = [
        ("subject", q.subject.clone()),
        ("type", q.event_type.clone()),
        ("outcome", q.outcome.clone()),
        ("since", q.since.map(|s| s.to_string())),
        ("until", q.until.map(|s| s.to_string())),
        ("cursor", q.before_id.map(|s| s.to_string())),
    ];
    let set: Vec<String> = fields.into_iter().filter_map(|(k, v)| Some(format!("{k}={}", v?))).collect();
    let text = set.join(" ");
    text.chars().take(255).collect()
}

/// The last second both stores read alike (MySQL's `FROM_UNIXTIME` ends in 3001).
const LAST_SECOND: i64 = 32_503_680_000;

fn number(raw: &str, field: &'static str) -> Result<i64, ApiError> {
    let valid = |n: &i64| (0..=LAST_SECOND).contains(n);
    raw.parse::<i64>()
        .ok()
        .filter(valid)
        .ok_or_else(|| invalid(field, "invalid", "an integer from 0 to 32503680000"))
}

/// The search a request asks for, every parameter checked.
fn parse(req: &Request) -> Result<AuditQuery, ApiError> {
    let params = query_params(req);
    let mut query = AuditQuery { limit: DEFAULT_PAGE, ..AuditQuery::default() };
    for (name, _) in &params {
        if !PARAMETERS.contains(&name.as_str()) {
            return Err(invalid("query", "unknown_parameter", &format!("unknown parameter `{name}`")));
        }
    }
    for name in PARAMETERS {
        let values: Vec<&str> = params.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        let Some(&raw) = values.first() else { continue };
        if values.len() > 1 {
            return Err(invalid(name, "repeated", "given more than once"));
        }
        match name {
            "subject" if !raw.is_empty() && raw.len() <= 128 => query.subject = Some(raw.to_owned()),
            "subject" => return Err(invalid("subject", "invalid", "1 to 128 characters")),
            "type" if EventType::ALL.iter().any(|t| t.as_str() == raw) => {
                query.event_type = Some(raw.to_owned())
            }
            "type" => return Err(invalid("type", "unknown_type", "not an audit event type")),
            "outcome" if raw == "success" || raw == "failure" => query.outcome = Some(raw.to_owned()),
            "outcome" => return Err(invalid("outcome", "invalid", "`success` or `failure`")),
            "since" => query.since = Some(number(raw, "since")?),
            "until" => query.until = Some(number(raw, "until")?),
            "cursor" => {
                let id = number(raw, "cursor").ok().filter(|id| *id > 0);
                query.before_id =
                    Some(id.ok_or_else(|| invalid("cursor", "invalid_cursor", "not a cursor"))?);
            }
            _ => {
                let limit = raw.parse::<u32>().ok().filter(|l| (1..=MAX_PAGE).contains(l));
                query.limit =
                    limit.ok_or_else(|| invalid("limit", "out_of_range", "limit must be 1 to 200"))?;
            }
        }
    }
    if let (Some(since), Some(until)) = (query.since, query.until) {
        if since > until {
            return Err(invalid("since", "out_of_range", "since is after until"));
        }
    }
    Ok(query)
}
