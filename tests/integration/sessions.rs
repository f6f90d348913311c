//! Sessions and refresh-token families on moto's DynamoDB: rotation, reuse
//! detection, the concurrent race, idle and absolute timeouts, logout, session
//! listing, password change, key rotation, and an unreachable DynamoDB.

use crate::app::{spawn_app_with, Backend, TestApp};
use crate::helpers::{config, key_file, parts, request, request_as, request_with_context, GOOD_PASSWORD};
use portcullis_authorizer::Decision;
use portcullis_shared::clock::{Clock, ManualClock};
use portcullis_shared::runtime::{key_provider, Backends, Boot};
use std::sync::Arc;

struct Harness {
    login: portcullis_login::Deps,
    refresh: Arc<portcullis_refresh::Deps>,
    authorizer: portcullis_authorizer::Deps,
    clock: ManualClock,
    backends: Backends,
    cfg: portcullis_shared::config::Config,
}

struct Tokens {
    access: String,
    refresh: String,
}

async fn harness(extra: &[(&str, String)]) -> Harness {
    let app = spawn_app_with(Backend::Dynamo, extra).await;
    let (cfg, backends) = app.opened["login"].clone();
    let TestApp { login, refresh, authorizer, clock, .. } = app;
    Harness { login, refresh: Arc::new(refresh), authorizer, clock, backends, cfg }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON body")
}

fn creds(email: &str) -> String {
    serde_json::json!({"email": email, "password": GOOD_PASSWORD}).to_string()
}

async fn register(h: &Harness, email: &str) -> String {
    let (status, body, _) = parts(
        portcullis_login::handle(&h.login, request("POST", "/auth/register", Some(&creds(email)), None))
            .await,
    );
    assert_eq!(status, 201, "{body}");
    json(&body)["user_id"].as_str().expect("id").to_owned()
}

async fn login(h: &Harness, email: &str) -> Tokens {
    let (status, body, _) = parts(
        portcullis_login::handle(&h.login, request("POST", "/auth/login", Some(&creds(email)), None)).await,
    );
    assert_eq!(status, 200, "{body}");
    let t = json(&body);
    Tokens {
        access: t["access_token"].as_str().expect("access").to_owned(),
        refresh: t["refresh_token"].as_str().expect("refresh").to_owned(),
    }
}

async fn refresh(h: &Harness, token: &str) -> (u16, Option<Tokens>) {
    refresh_with(&h.refresh, token).await
}

async fn refresh_with(deps: &portcullis_refresh::Deps, token: &str) -> (u16, Option<Tokens>) {
    let body = serde_json::json!({ "refresh_token": token }).to_string();
    let (status, text, _) = parts(
        portcullis_refresh::handle(deps, request("POST", "/auth/token/refresh", Some(&body), None)).await,
    );
    let tokens = (status == 200).then(|| {
        let t = json(&text);
        Tokens {
            access: t["access_token"].as_str().expect("access").to_owned(),
            refresh: t["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    });
    (status, tokens)
}

async fn identity(h: &Harness, access: &str) -> Option<portcullis_authorizer::Identity> {
    match crate::helpers::authorize_me(&h.authorizer, &format!("Bearer {access}")).await {
        Decision::Allow(identity) => Some(identity),
        _ => None,
    }
}

async fn audit_kinds(h: &Harness) -> Vec<&'static str> {
    h.backends
        .memory
        .as_ref()
        .expect("memory store")
        .audit_events()
        .iter()
        .map(|e| e.event_type.as_str())
        .collect()
}

#[tokio::test]
async fn refresh_rotates_the_token_and_keeps_the_session() {
    let h = harness(&[]).await;
    let user = register(&h, "rot@example.com").await;
    let first = login(&h, "rot@example.com").await;
    let sid = identity(&h, &first.access).await.expect("login token allowed").sid;
    let (status, second) = refresh(&h, &first.refresh).await;
    assert_eq!(status, 200);
    let second = second.expect("tokens");
    assert_ne!(second.refresh, first.refresh);
    let id = identity(&h, &second.access).await.expect("refreshed token allowed");
    assert_eq!((id.sub.as_str(), id.sid.as_str()), (user.as_str(), sid.as_str()));
    let (status, third) = refresh(&h, &second.refresh).await;
    assert_eq!(status, 200);
    assert!(third.is_some());
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_whole_session() {
    let h = harness(&[]).await;
    register(&h, "reuse@example.com").await;
    let first = login(&h, "reuse@example.com").await;
    let (_, second) = refresh(&h, &first.refresh).await;
    let second = second.expect("rotation");
    assert_eq!(refresh(&h, &first.refresh).await.0, 401, "a spent token was accepted");
    // The newest token of the family dies too, and so does the session's access token.
    assert_eq!(refresh(&h, &second.refresh).await.0, 401);
    assert!(identity(&h, &second.access).await.is_none(), "the revoked session still authorizes");
    assert!(audit_kinds(&h).await.contains(&"refresh_token_reuse"));
    // Another session of the same user is untouched.
    let other = login(&h, "reuse@example.com").await;
    assert_eq!(refresh(&h, &other.refresh).await.0, 200);
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_have_exactly_one_winner() {
    let h = harness(&[]).await;
    register(&h, "race@example.com").await;
    let tokens = login(&h, "race@example.com").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let deps = h.refresh.clone();
        let token = tokens.refresh.clone();
        tasks.spawn(async move { refresh_with(&deps, &token).await });
    }
    let mut winners = Vec::new();
    let mut statuses = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (status, new) = result.expect("task");
        statuses.push(status);
        winners.extend(new);
    }
    assert_eq!(winners.len(), 1, "statuses: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 401), "{statuses:?}");
    // The losers presented a spent token: the family is revoked, so no successor is live.
    assert_eq!(refresh(&h, &winners[0].refresh).await.0, 401);
}

#[tokio::test]
async fn idle_sessions_end_at_refresh_and_in_the_authorizer() {
    // Access tokens outlive the idle timeout here, so the authorizer's own session check is what refuses.
    let h = harness(&[
        ("PORTCULLIS_SESSION_IDLE_SECS", "600".into()),
        ("PORTCULLIS_ACCESS_TOKEN_TTL_SECS", "3600".into()),
    ])
    .await;
    register(&h, "idle@example.com").await;
    let tokens = login(&h, "idle@example.com").await;
    h.clock.advance(599);
    assert!(identity(&h, &tokens.access).await.is_some());
    h.clock.advance(1);
    assert!(identity(&h, &tokens.access).await.is_none(), "idle session still authorizes");
    assert_eq!(refresh(&h, &tokens.refresh).await.0, 401);
}

#[tokio::test]
async fn the_absolute_timeout_ends_even_an_active_session() {
    let h = harness(&[
        ("PORTCULLIS_SESSION_IDLE_SECS", "600".into()),
        ("PORTCULLIS_SESSION_ABSOLUTE_SECS", "3600".into()),
    ])
    .await;
    register(&h, "abs@example.com").await;
    let mut token = login(&h, "abs@example.com").await.refresh;
    for _ in 0..7 {
        h.clock.advance(500);
        let (status, next) = refresh(&h, &token).await;
        assert_eq!(status, 200, "refused before the absolute timeout");
        token = next.expect("tokens").refresh;
    }
    h.clock.advance(500); // 4000 s after login
    assert_eq!(refresh(&h, &token).await.0, 401);
}

#[tokio::test]
async fn logout_ends_this_session_and_logout_all_ends_every_one() {
    let h = harness(&[]).await;
    let user = register(&h, "out@example.com").await;
    let a = login(&h, "out@example.com").await;
    let b = login(&h, "out@example.com").await;
    let c = login(&h, "out@example.com").await;
    let sid_a = identity(&h, &a.access).await.expect("a").sid;
    let (status, _, _) = parts(
        portcullis_refresh::handle(
            &h.refresh,
            request_as("POST", "/auth/logout", None, Some((&user, &sid_a))),
        )
        .await,
    );
    assert_eq!(status, 204);
    assert!(identity(&h, &a.access).await.is_none());
    assert_eq!(refresh(&h, &a.refresh).await.0, 401);
    assert!(identity(&h, &b.access).await.is_some());

    let sid_b = identity(&h, &b.access).await.expect("b").sid;
    let (status, body, _) = parts(
        portcullis_refresh::handle(
            &h.refresh,
            request_as("GET", "/auth/sessions", None, Some((&user, &sid_b))),
        )
        .await,
    );
    assert_eq!(status, 200, "{body}");
    let list = json(&body);
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2, "{body}");
    let current: Vec<bool> = list.iter().map(|s| s["current"].as_bool().expect("current")).collect();
    assert_eq!(current.iter().filter(|c| **c).count(), 1);
    assert!(list.iter().all(|s| s["ip"] == "198.51.100.7" && s["user_agent"] == "integration-test"));

    let (status, _, _) = parts(
        portcullis_refresh::handle(
            &h.refresh,
            request_as("POST", "/auth/logout/all", None, Some((&user, &sid_b))),
        )
        .await,
    );
    assert_eq!(status, 204);
    for t in [&b, &c] {
        assert!(identity(&h, &t.access).await.is_none());
        assert_eq!(refresh(&h, &t.refresh).await.0, 401);
    }
    let kinds = audit_kinds(&h).await;
    assert!(kinds.contains(&"logout") && kinds.contains(&"logout_all"), "{kinds:?}");
}

#[tokio::test]
async fn a_password_change_revokes_every_other_session() {
    let h = harness(&[]).await;
    let user = register(&h, "pw@example.com").await;
    let keep = login(&h, "pw@example.com").await;
    let other = login(&h, "pw@example.com").await;
    let caller = identity(&h, &keep.access).await.expect("keep");
    assert_eq!(caller.sub, user);
    let body = serde_json::json!({"current_password": GOOD_PASSWORD, "new_password": "amber-lantern-meridian-glacier-4"}).to_string();
    // The context the authorizer derives from the token, as API Gateway forwards it.
    let fields: Vec<(&str, String)> = portcullis_authorizer::context_of(&caller)
        .into_iter()
        .map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let (status, text, _) = parts(
        portcullis_login::handle(
            &h.login,
            request_with_context("POST", "/auth/password", Some(&body), Some(&fields)),
        )
        .await,
    );
    assert_eq!(status, 204, "{text}");
    assert!(identity(&h, &other.access).await.is_none());
    assert_eq!(refresh(&h, &other.refresh).await.0, 401);
    assert!(identity(&h, &keep.access).await.is_some());
    assert_eq!(refresh(&h, &keep.refresh).await.0, 200);
    assert!(audit_kinds(&h).await.contains(&"sessions_revoked"));
}

#[tokio::test]
async fn refresh_failures_look_alike_whatever_the_reason() {
    let h = harness(&[]).await;
    register(&h, "same@example.com").await;
    let t = login(&h, "same@example.com").await;
    refresh(&h, &t.refresh).await;
    let answers = ["pcr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "not-a-token", t.refresh.as_str()];
    let mut bodies = Vec::new();
    for token in answers {
        let body = serde_json::json!({ "refresh_token": token }).to_string();
        let (status, text, _) = parts(
            portcullis_refresh::handle(&h.refresh, request("POST", "/auth/token/refresh", Some(&body), None))
                .await,
        );
        assert_eq!(status, 401);
        bodies.push(text);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[tokio::test]
async fn rotated_signing_keys_reach_warm_authorizers_and_keep_earlier_tokens_valid_until_the_next_rotation() {
    let h = harness(&[]).await;
    let provider = key_provider(&h.cfg).expect("keys");
    let clock: Arc<dyn Clock> = Arc::new(h.clock.clone());
    register(&h, "keys@example.com").await;
    let before = login(&h, "keys@example.com").await;
    // A warm authorizer instance, its keys loaded before the rotation.
    let mut warm =
        portcullis_authorizer::Deps::build(&h.cfg, &h.backends, clock.clone()).await.expect("authorizer");
    let decision = crate::helpers::authorize_me(&warm, &format!("Bearer {}", before.access)).await;
    assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");

    let new_kid = portcullis_shared::crypto::rotate_signing_key(
        h.backends.keys.as_ref(),
        provider.as_ref(),
        h.clock.now_secs(),
    )
    .await
    .expect("rotate");
    let login2 =
        portcullis_login::Deps::build(&Boot::new(&h.cfg, &h.backends, provider.clone(), clock.clone()))
            .await
            .expect("cold start");
    let kids: Vec<String> = login2.keys.get().await.expect("keys").jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0], new_kid, "the JWKS lists the current key first");
    let (status, body, _) = parts(
        portcullis_login::handle(
            &login2,
            request("POST", "/auth/login", Some(&creds("keys@example.com")), None),
        )
        .await,
    );
    assert_eq!(status, 200);
    let after = json(&body)["access_token"].as_str().expect("token").to_owned();
    let header: serde_json::Value =
        serde_json::from_slice(&base64_url(after.split('.').next().expect("header"))).expect("header json");
    assert_eq!(header["kid"], new_kid.as_str());

    // The warm instance learns the new key from the token's unknown kid (the
    // reload interval is zeroed here; 10 s by default).
    warm.key_reload_interval = std::time::Duration::ZERO;
    let decision = crate::helpers::authorize_me(&warm, &format!("Bearer {after}")).await;
    assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
    let authorizer =
        portcullis_authorizer::Deps::build(&h.cfg, &h.backends, clock.clone()).await.expect("authorizer");
    for token in [&before.access, &after] {
        let decision = crate::helpers::authorize_me(&authorizer, &format!("Bearer {token}")).await;
        assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
    }
    // A second rotation retires the first key: its tokens are refused from then on.
    portcullis_shared::crypto::rotate_signing_key(
        h.backends.keys.as_ref(),
        provider.as_ref(),
        h.clock.now_secs(),
    )
    .await
    .expect("rotate again");
    let authorizer =
        portcullis_authorizer::Deps::build(&h.cfg, &h.backends, clock).await.expect("authorizer");
    let decision = crate::helpers::authorize_me(&authorizer, &format!("Bearer {}", before.access)).await;
    assert_eq!(decision, Decision::Unauthorized);
    let decision = crate::helpers::authorize_me(&authorizer, &format!("Bearer {after}")).await;
    assert!(matches!(decision, Decision::Allow(_)));
}

fn base64_url(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

#[tokio::test]
async fn an_unreachable_session_store_means_503_and_no_token() {
    // Port 9 on loopback: nothing answers. The shared SDK config bounds the retries.
    let conf = aws_sdk_dynamodb::config::Builder::from(portcullis_shared::aws::aws_config().await)
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let sessions = Arc::new(portcullis_shared::adapters::dynamo::DynamoSessionStore::new(
        aws_sdk_dynamodb::Client::from_conf(conf),
        "unreachable".into(),
    ));
    let backends =
        Backends::memory(Arc::new(portcullis_shared::adapters::memory::MemoryStore::new()), sessions);
    let cfg = config(&[("PORTCULLIS_LOCAL_KEY_FILE", key_file())]);
    let provider = key_provider(&cfg).expect("keys");
    let clock: Arc<dyn Clock> = Arc::new(portcullis_shared::clock::SystemClock);
    let login = portcullis_login::Deps::build(&Boot::new(&cfg, &backends, provider.clone(), clock.clone()))
        .await
        .expect("login");
    let started = std::time::Instant::now();
    let (status, _, _) = parts(
        portcullis_login::handle(
            &login,
            request("POST", "/auth/register", Some(&creds("down@example.com")), None),
        )
        .await,
    );
    assert_eq!(status, 201, "registration does not need the session store");
    let (status, body, headers) = parts(
        portcullis_login::handle(
            &login,
            request("POST", "/auth/login", Some(&creds("down@example.com")), None),
        )
        .await,
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(!body.contains("access_token") && !body.contains("127.0.0.1"), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "retries are not bounded");

    let refresh =
        portcullis_refresh::Deps::build(&Boot::new(&cfg, &backends, provider.clone(), clock.clone()))
            .await
            .expect("refresh");
    let body =
        serde_json::json!({"refresh_token": "pcr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}).to_string();
    let (status, _, _) = parts(
        portcullis_refresh::handle(&refresh, request("POST", "/auth/token/refresh", Some(&body), None)).await,
    );
    assert_eq!(status, 503);
}
