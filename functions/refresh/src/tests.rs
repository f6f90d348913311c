//! The refresh function's handlers on the memory backends: rotation, reuse
//! detection, timeouts, logout, logout everywhere and the session list.

use crate::{handle, Deps};
use portcullis_authorizer::Decision;
use portcullis_shared::audit::EventType;
use portcullis_shared::runtime::Boot;
use portcullis_test_support::{event, post, register, reply, request, sign_in, Reply, World};

struct App {
    world: World,
    login: portcullis_login::Deps,
    deps: Deps,
}

/// One session's tokens.
struct Session {
    access: String,
    refresh: String,
}

async fn app() -> App {
    let world = World::new().await;
    let login = world.login().await;
    let deps = Deps::build(&Boot::new(&world.config, &world.backends, world.provider.clone(), world.clock()))
        .await
        .expect("refresh deps");
    App { world, login, deps }
}

impl App {
    async fn call(&self, req: lambda_http::Request) -> Reply {
        reply(handle(&self.deps, req).await)
    }

    async fn as_bearer(&self, method: &str, path: &str, token: &str) -> Reply {
        self.call(self.world.bearer(request(method, path, None), token).await).await
    }

    /// A new session of `email`, registered with [`App::person`].
    async fn session(&self, email: &str) -> Session {
        let tokens = sign_in(&self.login, email).await;
        Session { access: tokens.text("access_token"), refresh: tokens.text("refresh_token") }
    }

    async fn person(&self, email: &str) {
        register(&self.login, email).await;
    }

    async fn refresh(&self, token: &str) -> Reply {
        self.call(post("/auth/token/refresh", &serde_json::json!({ "refresh_token": token }))).await
    }

    async fn live(&self, access_token: &str) -> bool {
        match self.world.decide("GET", "/me", access_token).await {
            Decision::Allow(_) => true,
            Decision::Unauthorized => false,
            other => panic!("unexpected decision: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_refresh_rotates_the_token_and_keeps_the_session() {
    let app = app().await;
    app.person("rotate@example.com").await;
    let first = app.session("rotate@example.com").await;
    app.world.clock.advance(60);
    let rotated = app.refresh(&first.refresh).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.headers["cache-control"], "no-store");
    let (access, successor) = (rotated.text("access_token"), rotated.text("refresh_token"));
    assert_ne!(successor, first.refresh, "the refresh token was not rotated");
    assert_ne!(access, first.access);
    assert!(app.live(&access).await);
    assert_eq!(rotated.json()["expires_in"], 900);
    assert_eq!(app.refresh(&successor).await.status, 200, "the successor works in turn");
    assert_eq!(app.world.reasons(EventType::TokenRefresh).len(), 2);
}

/// RFC 9700 §4.14.2: a spent token coming back means the family leaked; the
/// whole session dies, its newest token and access token included.
#[tokio::test]
async fn a_reused_refresh_token_revokes_the_session() {
    let app = app().await;
    app.person("reuse@example.com").await;
    let session = app.session("reuse@example.com").await;
    let other = app.session("reuse@example.com").await;
    let successor = app.refresh(&session.refresh).await.text("refresh_token");
    let replayed = app.refresh(&session.refresh).await;
    assert_eq!(replayed.problem(401), "urn:portcullis:problem:invalid-refresh-token");
    assert_eq!(app.world.reasons(EventType::RefreshTokenReuse), [Some("spent_token_presented")]);
    assert_eq!(app.refresh(&successor).await.status, 401, "the newest token of the family died too");
    assert!(!app.live(&session.access).await, "the session's access token still passes");
    assert!(app.live(&other.access).await, "another session of the account was revoked");
}

#[tokio::test]
async fn every_refusal_of_a_token_looks_the_same_and_bad_bodies_are_problems() {
    let app = app().await;
    app.person("refuse@example.com").await;
    let session = app.session("refuse@example.com").await;
    app.refresh(&session.refresh).await;
    let reused = app.refresh(&session.refresh).await;
    let unknown = app.call(event(include_str!("../../../events/refresh/refresh.json"))).await;
    let malformed =
        app.call(event(include_str!("../../../events/refresh/refresh-malformed-token.json"))).await;
    for other in [&unknown, &malformed] {
        assert_eq!((other.status, other.body.as_str()), (reused.status, reused.body.as_str()));
    }
    let reasons = app.world.reasons(EventType::RefreshFailure);
    assert_eq!(reasons, [Some("unknown_token"), Some("malformed_token")]);
    app.call(event(include_str!("../../../events/refresh/refresh-unknown-field.json"))).await.problem(400);
    app.call(event(include_str!("../../../events/refresh/refresh-wrong-content-type.json")))
        .await
        .problem(415);
    for body in ["{", "null", r#"{"refresh_token":7}"#, "\u{0}"] {
        app.call(request("POST", "/auth/token/refresh", Some(body))).await.problem(400);
    }
    let huge = serde_json::json!({ "refresh_token": "x".repeat(20_000) });
    app.call(post("/auth/token/refresh", &huge)).await.problem(413);
}

#[tokio::test]
async fn an_idle_session_cannot_be_refreshed() {
    let app = app().await;
    app.person("idle@example.com").await;
    let session = app.session("idle@example.com").await;
    app.world.clock.advance(1801);
    assert_eq!(app.refresh(&session.refresh).await.status, 401);
    assert_eq!(app.world.reasons(EventType::RefreshFailure), [Some("idle_timeout")]);
}

#[tokio::test]
async fn logout_ends_this_session_only() {
    let app = app().await;
    app.person("out@example.com").await;
    let (this, other) = (app.session("out@example.com").await, app.session("out@example.com").await);
    app.call(event(include_str!("../../../events/refresh/logout-without-authorizer.json")))
        .await
        .problem(401);
    let out = app.as_bearer("POST", "/auth/logout", &this.access).await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(!app.live(&this.access).await);
    assert_eq!(app.refresh(&this.refresh).await.status, 401);
    assert!(app.live(&other.access).await);
    assert_eq!(app.refresh(&other.refresh).await.status, 200);
    assert_eq!(app.world.reasons(EventType::Logout).len(), 1);
}

#[tokio::test]
async fn logout_everywhere_ends_every_session_of_the_account() {
    let app = app().await;
    app.person("all@example.com").await;
    let (this, other) = (app.session("all@example.com").await, app.session("all@example.com").await);
    app.person("bystander@example.com").await;
    let bystander = sign_in(&app.login, "bystander@example.com").await.text("access_token");
    let event_reply =
        app.call(event(include_str!("../../../events/refresh/logout-all-without-authorizer.json")));
    event_reply.await.problem(401);
    assert_eq!(app.as_bearer("POST", "/auth/logout/all", &this.access).await.status, 204);
    for session in [&this, &other] {
        assert!(!app.live(&session.access).await);
        assert_eq!(app.refresh(&session.refresh).await.status, 401);
    }
    assert!(app.live(&bystander).await, "another account's session ended");
    assert_eq!(app.world.reasons(EventType::LogoutAll).len(), 1);
}

#[tokio::test]
async fn the_session_list_shows_the_live_sessions_and_marks_the_current_one() {
    let app = app().await;
    app.person("list@example.com").await;
    let (this, other) = (app.session("list@example.com").await, app.session("list@example.com").await);
    let third = app.session("list@example.com").await;
    app.as_bearer("POST", "/auth/logout", &third.access).await;
    let listed = app.as_bearer("GET", "/auth/sessions", &this.access).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let sessions = listed.json();
    let sessions = sessions.as_array().expect("a list");
    assert_eq!(sessions.len(), 2, "the ended session is listed: {sessions:?}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(sessions.iter().all(|s| s["user_agent"] == "handler-test" && s["ip"] == "198.51.100.7"));
    let from_other = app.as_bearer("GET", "/auth/sessions", &other.access).await.json();
    let current = |list: &serde_json::Value| {
        list.as_array().expect("list").iter().find(|s| s["current"] == true).map(|s| s["session_id"].clone())
    };
    assert_ne!(current(&from_other), current(&listed.json()), "both calls marked one session current");
    app.call(event(include_str!("../../../events/refresh/sessions-without-authorizer.json")))
        .await
        .problem(401);
    // A caller with no sessions (the sample event's unknown account) gets an empty list, not another's.
    let unknown = app.call(event(include_str!("../../../events/refresh/sessions.json"))).await;
    assert_eq!((unknown.status, unknown.json()), (200, serde_json::json!([])));
}
