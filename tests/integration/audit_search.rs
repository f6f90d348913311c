//! `GET /admin/audit` on MariaDB (the admin function's own least-privilege
//! user) and on the embedded SQLite file: filters, newest first, cursor
//! pagination with a bounded page, input refused with a problem, and the
//! search itself audited.

use crate::app::{spawn_app, Backend, TestApp};
use crate::helpers::{parts, request_with_context};
use portcullis_shared::audit::{AuditEvent, EventType};
use serde_json::Value;

const TYPES: [EventType; 4] =
    [EventType::LoginSuccess, EventType::LoginFailure, EventType::RoleGranted, EventType::MfaVerifyFailure];

/// 250 events over 250 seconds from t0: four types, five subjects (one NULL),
/// a user agent with 4-byte UTF-8, and a request id on every other one.
async fn seed(app: &TestApp, t0: i64) {
    let store = &app.backends_of("admin").audit;
    for i in 0..250i64 {
        let event = AuditEvent {
            event_type: TYPES[(i % 4) as usize],
            subject: (i % 5 != 0).then(|| format!("user-{}", i % 5)),
            actor: None,
            detail: None,
            source_ip: Some("203.0.113.9".into()),
            user_agent: Some(format!("agent 🦀 {i}")),
            request_id: (i % 2 == 0).then(|| format!("req-{i}")),
            occurred_at: t0 + i,
            reason: None,
        };
        store.append(&event).await.expect("append");
    }
}

/// `GET path` as a person holding `roles`, with both factors.
async fn get(app: &TestApp, path: &str, roles: &str) -> (u16, Value) {
    let now = portcullis_shared::clock::Clock::now_secs(&app.clock).to_string();
    let fields = [
        ("sub", "0190c8a6-0000-7000-8000-00000000a0d1".to_owned()),
        ("sid", "s-1".to_owned()),
        ("roles", roles.to_owned()),
        ("auth_time", now),
        ("amr", "pwd,otp".to_owned()),
    ];
    let req = request_with_context("GET", path, None, Some(&fields));
    let (status, body, headers) = parts(portcullis_admin::handle(&app.admin, req).await);
    assert_eq!(headers.get("cache-control").map(|v| v.to_str().unwrap_or("")), Some("no-store"), "{path}");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Every page of `query` at `limit`: the events' ids, newest first, and the pages' sizes.
async fn all_pages(app: &TestApp, query: &str, limit: u32) -> (Vec<i64>, Vec<usize>) {
    let (mut ids, mut sizes, mut cursor) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let at = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let (status, page) =
            get(app, &format!("/admin/audit?{query}&limit={limit}{at}"), "user,auditor").await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().expect("events");
        sizes.push(events.len());
        ids.extend(events.iter().map(|e| e["id"].as_i64().expect("id")));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (ids, sizes),
        }
    }
}

async fn searches_the_trail(backend: Backend) {
    let app = spawn_app(backend).await;
    let t0 = 1_700_000_000;
    seed(&app, t0).await;
    // Newest first, every event once, pages of the size asked for.
    let (ids, sizes) = all_pages(&app, "type=login_failure", 17).await;
    assert_eq!(ids.len(), 63, "every 4th of 250 starting at 1");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats: {ids:?}");
    assert_eq!(sizes, [17, 17, 17, 12]);
    // Filters combine; the time range is inclusive at both ends.
    let (status, page) = get(
        &app,
        &format!("/admin/audit?subject=user-1&outcome=failure&since={}&until={}", t0 + 1, t0 + 41),
        "auditor",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().expect("events");
    let times: Vec<i64> = events.iter().map(|e| e["occurred_at"].as_i64().expect("time") - t0).collect();
    // user-1: i % 5 == 1; failures: i % 4 in {1, 3}; 1..=41 → 1, 11, 21, 31, 41.
    assert_eq!(times, [41, 31, 21, 11, 1], "{page}");
    let first = &events[0];
    assert_eq!((first["type"].as_str(), first["subject"].as_str()), (Some("login_failure"), Some("user-1")));
    assert_eq!(first["user_agent"], "agent 🦀 41");
    assert_eq!(first["request_id"], Value::Null);
    let (_, page) = get(&app, "/admin/audit?limit=200", "auditor").await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(200));
    let (_, page) = get(&app, "/admin/audit", "auditor").await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(50), "the default page");
    // Bad input is a problem, never a wider search.
    for query in [
        "limit=0",
        "limit=201",
        "limit=x",
        "type=bogus",
        "outcome=maybe",
        "cursor=abc",
        "cursor=0",
        "since=10&until=9",
        "since=-1",
        "until=99999999999",
        "until=9223372036854775807",
        "event_type=login_failure",
        "type=login_failure&type=logout",
        "subject=",
    ] {
        let (status, body) = get(&app, &format!("/admin/audit?{query}"), "auditor").await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["type"].as_str().is_some_and(|t| t.ends_with("validation-failed")), "{query}: {body}");
    }
    // Only audit:read opens it: support and admin without it are refused.
    let (status, _) = get(&app, "/admin/audit", "user,support").await;
    assert_eq!(status, 403);
    // The searches are audited, naming who searched and for what.
    let (_, page) = get(&app, "/admin/audit?type=audit_read&limit=200", "auditor").await;
    let reads = page["events"].as_array().expect("events");
    let details: Vec<&str> = reads.iter().filter_map(|e| e["detail"].as_str()).collect();
    let second = format!("type=login_failure cursor={}", ids[16]);
    for expected in
        ["type=login_failure", second.as_str(), &format!("subject=user-1 outcome=failure since={}", t0 + 1)]
    {
        assert!(details.iter().any(|d| d.starts_with(expected)), "{expected}: {details:?}");
    }
    assert!(reads.iter().all(|e| e["actor"] == "0190c8a6-0000-7000-8000-00000000a0d1"), "{page}");
}

#[tokio::test]
async fn auditors_search_the_trail_on_mysql() {
    searches_the_trail(Backend::Mysql).await;
}

#[tokio::test]
async fn auditors_search_the_trail_on_the_embedded_file() {
    searches_the_trail(Backend::Sqlite).await;
}
