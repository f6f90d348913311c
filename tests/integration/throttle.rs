//! Lockout and credential-stuffing defence on moto's DynamoDB: account locks
//! with back-off that lift by themselves, unknown accounts locked identically,
//! a per-IP limit across accounts, exact counting under concurrency, and a
//! counter store that fails closed.

use crate::app::{spawn_app_with, Backend, TestApp};
use crate::helpers::{config, key_file, parts, GOOD_PASSWORD};
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use portcullis_shared::clock::ManualClock;
use portcullis_shared::runtime::{key_provider, Backends, Boot};
use std::sync::Arc;

struct Limits {
    login: Arc<portcullis_login::Deps>,
    /// The login function's password hasher (it counts its computations).
    hasher: portcullis_shared::crypto::PasswordHasher,
    clock: ManualClock,
    backends: Backends,
}

async fn setup(extra: &[(&str, String)]) -> Limits {
    let app = spawn_app_with(Backend::Dynamo, extra).await;
    let (cfg, backends) = app.opened["login"].clone();
    let TestApp { mut login, clock, .. } = app;
    let hasher = portcullis_shared::crypto::PasswordHasher::new().expect("hasher");
    login.identity = Arc::new(portcullis_shared::identity::NativeProvider::new(
        backends.native_stores(),
        cfg.session_policy(),
        hasher.clone(),
    ));
    Limits { login: Arc::new(login), hasher, clock, backends }
}

/// A login request from `ip`.
async fn attempt(
    deps: &portcullis_login::Deps,
    email: &str,
    password: &str,
    ip: &str,
) -> (u16, String, http::HeaderMap) {
    let body = serde_json::json!({"email": email, "password": password}).to_string();
    let req = crate::helpers::request("POST", "/auth/login", Some(&body), None);
    let mut ctx = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.clone(),
        _ => panic!("request context"),
    };
    ctx.http.source_ip = Some(ip.to_owned());
    parts(portcullis_login::handle(deps, req.with_request_context(RequestContext::ApiGatewayV2(ctx))).await)
}

async fn register(l: &Limits, email: &str) {
    let body = serde_json::json!({"email": email, "password": GOOD_PASSWORD}).to_string();
    let (status, text, _) = parts(
        portcullis_login::handle(
            &l.login,
            crate::helpers::request("POST", "/auth/register", Some(&body), None),
        )
        .await,
    );
    assert_eq!(status, 201, "{text}");
}

fn audit_count(l: &Limits, kind: &str) -> usize {
    l.backends
        .memory
        .as_ref()
        .expect("memory")
        .audit_events()
        .iter()
        .filter(|e| e.event_type.as_str() == kind)
        .count()
}

#[tokio::test]
async fn an_account_locks_after_five_failures_and_unlocks_by_itself() {
    let l = setup(&[]).await;
    register(&l, "lock@example.com").await;
    for _ in 0..5 {
        assert_eq!(attempt(&l.login, "lock@example.com", "wrong-password-123", "203.0.113.1").await.0, 401);
    }
    // Locked: even the right password is refused, and says only "try later".
    let (status, body, headers) = attempt(&l.login, "lock@example.com", GOOD_PASSWORD, "203.0.113.1").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "60");
    assert!(!body.contains("lock@example.com"));
    l.clock.advance(59);
    assert_eq!(attempt(&l.login, "lock@example.com", GOOD_PASSWORD, "203.0.113.1").await.0, 429);
    l.clock.advance(2);
    assert_eq!(attempt(&l.login, "lock@example.com", GOOD_PASSWORD, "203.0.113.1").await.0, 200);
    // Success reset the count: five more failures are needed for the next lock.
    for _ in 0..5 {
        assert_eq!(attempt(&l.login, "lock@example.com", "wrong-password-123", "203.0.113.1").await.0, 401);
    }
    assert_eq!(attempt(&l.login, "lock@example.com", GOOD_PASSWORD, "203.0.113.1").await.0, 429);
    assert!(audit_count(&l, "login_throttled") >= 3);
}

/// A locked or throttled attempt checks nothing and sheds its argon2 work, for
/// a known account and an unknown one alike (both lock the same way).
#[tokio::test]
async fn a_refused_attempt_costs_no_argon2() {
    let l = setup(&[]).await;
    register(&l, "shed@example.com").await;
    for account in ["shed@example.com", "nobody-here@example.com"] {
        for _ in 0..5 {
            assert_eq!(attempt(&l.login, account, "wrong-password-123", "203.0.113.9").await.0, 401);
        }
        let before = l.hasher.computations();
        for _ in 0..10 {
            assert_eq!(attempt(&l.login, account, GOOD_PASSWORD, "203.0.113.9").await.0, 429);
        }
        assert_eq!(l.hasher.computations(), before, "{account}: a locked attempt ran argon2");
    }
}

#[tokio::test]
async fn unknown_accounts_lock_identically_and_the_back_off_grows() {
    let l = setup(&[]).await;
    register(&l, "real@example.com").await;
    let mut answers = Vec::new();
    for email in ["real@example.com", "ghost@example.com"] {
        for _ in 0..5 {
            assert_eq!(attempt(&l.login, email, "wrong-password-123", "203.0.113.2").await.0, 401);
        }
        answers.push(attempt(&l.login, email, "wrong-password-123", "203.0.113.2").await);
    }
    assert_eq!(answers[0].0, 429);
    assert_eq!(answers[0].0, answers[1].0);
    assert_eq!(answers[0].1, answers[1].1, "429 bodies differ between a real and an unknown account");
    assert_eq!(answers[0].2["retry-after"], answers[1].2["retry-after"]);
    // After the first lock lifts, the next five failures lock for twice as long.
    l.clock.advance(61);
    for _ in 0..5 {
        assert_eq!(attempt(&l.login, "ghost@example.com", "wrong-password-123", "203.0.113.2").await.0, 401);
    }
    let (status, _, headers) =
        attempt(&l.login, "ghost@example.com", "wrong-password-123", "203.0.113.2").await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "120");
}

#[tokio::test]
async fn one_source_ip_is_throttled_across_twenty_accounts() {
    let l = setup(&[("PORTCULLIS_IP_MAX_FAILURES", "20".into())]).await;
    register(&l, "victim@example.com").await;
    for i in 0..20 {
        let (status, _, _) =
            attempt(&l.login, &format!("user{i}@example.com"), "Summer2024!pass", "198.18.0.66").await;
        assert_eq!(status, 401, "attempt {i}");
    }
    // Every account, even a correct password, is refused from that address...
    let (status, _, headers) = attempt(&l.login, "victim@example.com", GOOD_PASSWORD, "198.18.0.66").await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
    // ...and only from that address.
    assert_eq!(attempt(&l.login, "victim@example.com", GOOD_PASSWORD, "198.18.0.67").await.0, 200);
}

#[tokio::test]
async fn fifty_concurrent_wrong_attempts_are_counted_exactly() {
    let l = setup(&[]).await;
    register(&l, "burst@example.com").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let deps = l.login.clone();
        tasks.spawn(async move {
            attempt(&deps, "burst@example.com", "wrong-password-123", "203.0.113.3").await.0
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.expect("task"));
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, refused), (5, 45), "{statuses:?}");
    assert_eq!(audit_count(&l, "login_failure"), 5);
    assert_eq!(audit_count(&l, "login_throttled"), 45);
}

#[tokio::test]
async fn an_unreachable_counter_store_fails_closed() {
    let conf = aws_sdk_dynamodb::config::Builder::from(portcullis_shared::aws::aws_config().await)
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let mut backends = Backends::memory(
        Arc::new(portcullis_shared::adapters::memory::MemoryStore::new()),
        Arc::new(portcullis_shared::adapters::memory::MemorySessionStore::new()),
    );
    backends.counters = Arc::new(portcullis_shared::adapters::dynamo::DynamoCounterStore::new(
        aws_sdk_dynamodb::Client::from_conf(conf),
        "unreachable".into(),
    ));
    let cfg = config(&[("PORTCULLIS_LOCAL_KEY_FILE", key_file())]);
    let provider = key_provider(&cfg).expect("keys");
    let login = portcullis_login::Deps::build(&Boot::new(
        &cfg,
        &backends,
        provider.clone(),
        Arc::new(portcullis_shared::clock::SystemClock),
    ))
    .await
    .expect("login");
    let body = serde_json::json!({"email": "down@example.com", "password": GOOD_PASSWORD}).to_string();
    // Registration is counted too, so it fails closed as well.
    let (status, text, _) = parts(
        portcullis_login::handle(
            &login,
            crate::helpers::request("POST", "/auth/register", Some(&body), None),
        )
        .await,
    );
    assert_eq!(status, 503, "{text}");
    let email = portcullis_shared::domain::Email::parse("down@example.com").expect("email");
    let password = portcullis_shared::domain::Password::new(GOOD_PASSWORD);
    portcullis_login::register_user(&login, &email, &password, vec![portcullis_shared::domain::Role::user()])
        .await
        .expect("an account, made without the route");
    let (status, text, _) = attempt(&login, "down@example.com", GOOD_PASSWORD, "203.0.113.4").await;
    assert_eq!(status, 503, "{text}");
    let events = backends.memory.as_ref().expect("memory").audit_events();
    assert!(events.iter().any(|e| e.event_type.as_str() == "throttle_unavailable"));
}
