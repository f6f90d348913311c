//! The login function's handlers on the memory backends: registration, login
//! (enumeration, lockout), hostile bodies, `/me`, password change and step-up.

use crate::{handle, Deps};
use portcullis_authorizer::Decision;
use portcullis_shared::audit::EventType;
use portcullis_shared::runtime::Boot;
use portcullis_test_support::{
    credentials, event, from_ip, post, reply, request, Reply, World, GOOD_PASSWORD,
};

const NEW_PASSWORD: &str = "amber-lantern-meridian-glacier-4";

struct App {
    world: World,
    deps: Deps,
}

async fn app() -> App {
    app_with(&[]).await
}

async fn app_with(extra: &[(&str, String)]) -> App {
    let world = World::with(extra).await;
    let deps = Deps::build(&Boot::new(&world.config, &world.backends, world.provider.clone(), world.clock()))
        .await
        .expect("login deps");
    App { world, deps }
}

impl App {
    async fn call(&self, req: lambda_http::Request) -> Reply {
        reply(handle(&self.deps, req).await)
    }

    async fn register(&self, email: &str) -> String {
        let answer = self.call(post("/auth/register", &credentials(email, GOOD_PASSWORD))).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.text("user_id")
    }

    async fn login(&self, email: &str, password: &str) -> Reply {
        self.call(post("/auth/login", &credentials(email, password))).await
    }

    /// An access token of a new session of `email`.
    async fn token(&self, email: &str) -> String {
        let answer = self.login(email, GOOD_PASSWORD).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.text("access_token")
    }

    async fn as_bearer(&self, method: &str, path: &str, body: Option<&str>, token: &str) -> Reply {
        self.call(self.world.bearer(request(method, path, body), token).await).await
    }
}

fn change(current: &str, new: &str) -> String {
    serde_json::json!({ "current_password": current, "new_password": new }).to_string()
}

#[tokio::test]
async fn the_sample_registration_creates_an_account_once_and_answers_409_after() {
    let app = app().await;
    let first = app.call(event(include_str!("../../../events/login/register.json"))).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert!(portcullis_shared::domain::UserId::parse(&first.text("user_id")).is_some());
    let again = app.call(event(include_str!("../../../events/login/register.json"))).await;
    assert_eq!(again.problem(409), "urn:portcullis:problem:email-unavailable");
    // The address is matched case-insensitively: another spelling is the same account.
    let shouted =
        app.call(post("/auth/register", &credentials("LAMBDA-User@Example.COM", GOOD_PASSWORD))).await;
    assert_eq!(shouted.status, 409, "{}", shouted.body);
    assert_eq!(app.world.reasons(EventType::Register).len(), 1);
}

#[tokio::test]
async fn a_weak_password_is_refused_with_every_reason_and_leaves_no_account() {
    let app = app().await;
    let weak = app.call(event(include_str!("../../../events/login/register-weak-password.json"))).await;
    assert_eq!(weak.problem(422), "urn:portcullis:problem:weak-password");
    let rules: Vec<String> = weak.json()["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["rule"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(rules, ["too_short", "common", "guessable"]);
    let named = app.call(post("/auth/register", &credentials("frank@example.com", "frank12345678"))).await;
    assert_eq!(named.status, 422, "a password holding the address's local part: {}", named.body);
    // Nothing was created: the same address registers now.
    app.register("weak@example.com").await;
}

#[tokio::test]
async fn wrong_password_unknown_account_and_malformed_email_get_one_identical_401() {
    let app = app().await;
    app.call(event(include_str!("../../../events/login/register.json"))).await;
    let wrong = app.call(event(include_str!("../../../events/login/login-wrong-password.json"))).await;
    let unknown = app.call(event(include_str!("../../../events/login/login-unknown-account.json"))).await;
    let malformed = app.login("not-an-email", "not-the-right-password-1").await;
    assert_eq!(wrong.problem(401), "urn:portcullis:problem:invalid-credentials");
    for other in [&unknown, &malformed] {
        assert_eq!(other.status, wrong.status);
        assert_eq!(other.body.as_bytes(), wrong.body.as_bytes());
        assert_eq!(other.headers, wrong.headers);
    }
    // The audit trail keeps what the client is not told.
    let reasons = app.world.reasons(EventType::LoginFailure);
    assert_eq!(reasons[..2], [Some("wrong_password"), Some("unknown_account")]);
}

#[tokio::test]
async fn the_sample_login_returns_bearer_tokens_the_authorizer_accepts() {
    let app = app().await;
    let id = app.call(event(include_str!("../../../events/login/register.json"))).await.text("user_id");
    let answer = app.call(event(include_str!("../../../events/login/login.json"))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.headers["cache-control"], "no-store");
    let tokens = answer.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert!(tokens["refresh_token"].as_str().is_some_and(|t| t.len() >= 32));
    match app.world.decide("GET", "/me", &answer.text("access_token")).await {
        Decision::Allow(identity) => {
            assert_eq!(identity.sub, id);
            assert_eq!(identity.roles, ["user"]);
            assert_eq!(identity.amr, ["pwd"]);
        }
        other => panic!("the authorizer refused a fresh token: {other:?}"),
    }
    assert_eq!(app.world.reasons(EventType::LoginSuccess), [None]);
}

/// The limit (3 here) counts failures per account: the fourth attempt is
/// refused before the password is checked, the right one included, and an
/// unknown account locks the same way.
#[tokio::test]
async fn failed_logins_past_the_limit_lock_the_account_with_429() {
    let app = app_with(&[("PORTCULLIS_LOCKOUT_MAX_FAILURES", "3".into())]).await;
    app.register("locked@example.com").await;
    for (email, attempt) in [("locked@example.com", 1), ("locked@example.com", 2), ("locked@example.com", 3)]
    {
        let answer = app.login(email, &format!("guess-number-{attempt}")).await;
        assert_eq!(answer.status, 401, "attempt {attempt}: {}", answer.body);
    }
    let right = app.login("locked@example.com", GOOD_PASSWORD).await;
    assert_eq!(right.problem(429), "urn:portcullis:problem:too-many-requests");
    assert_eq!(right.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("60"));
    for attempt in 1..=3 {
        assert_eq!(app.login("ghost@example.com", &format!("guess-number-{attempt}")).await.status, 401);
    }
    let ghost = app.login("ghost@example.com", GOOD_PASSWORD).await;
    assert_eq!((ghost.status, ghost.body.as_str()), (right.status, right.body.as_str()));
    assert_eq!(app.world.reasons(EventType::LoginThrottled), [Some("account_locked"); 2]);
    // The lock lifts by itself.
    app.world.clock.advance(61);
    assert_eq!(app.login("locked@example.com", GOOD_PASSWORD).await.status, 200);
}

#[tokio::test]
async fn registrations_from_one_source_are_capped_even_when_they_succeed() {
    let app = app_with(&[("PORTCULLIS_IP_MAX_FAILURES", "3".into())]).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let body = credentials(&format!("signup-{i}@example.com"), GOOD_PASSWORD);
        statuses.push(app.call(post("/auth/register", &body)).await.status);
    }
    assert_eq!(statuses, [201, 201, 201, 429]);
    // Another source is not capped by this one.
    let elsewhere =
        from_ip(post("/auth/register", &credentials("signup-9@example.com", GOOD_PASSWORD)), "203.0.113.99");
    assert_eq!(app.call(elsewhere).await.status, 201);
}

#[tokio::test]
async fn malformed_bodies_and_unknown_fields_are_400_problems_and_never_a_500() {
    let app = app().await;
    let samples = [
        (include_str!("../../../events/login/login-malformed-json.json"), 400),
        (include_str!("../../../events/login/register-unknown-field.json"), 400),
        (include_str!("../../../events/login/login-wrong-content-type.json"), 415),
    ];
    for (sample, status) in samples {
        app.call(event(sample)).await.problem(status);
    }
    let bodies = [
        "{",
        "[]",
        "null",
        "\u{0}\u{1}binary",
        r#"{"email":"a@example.com"}"#,
        r#"{"email":1,"password":2}"#,
        r#"{"email":"a@example.com","password":"x","password":"y"}"#,
        r#"{"email":"a@example.com","password":"velvet-otter-quantum-harbor-71","admin":true}"#,
    ];
    for path in ["/auth/register", "/auth/login"] {
        for body in bodies {
            let answer = app.call(request("POST", path, Some(body))).await;
            assert_eq!(answer.status, 400, "{path} {body:?}: {}", answer.body);
            answer.problem(400);
        }
    }
    let bad_email = credentials("not an email", GOOD_PASSWORD);
    assert_eq!(
        app.call(post("/auth/register", &bad_email)).await.problem(400),
        "urn:portcullis:problem:validation-failed"
    );
    assert_eq!(app.call(request("GET", "/auth/login", None)).await.status, 405);
    assert_eq!(app.call(request("GET", "/nowhere", None)).await.status, 404);
    assert_eq!(app.world.reasons(EventType::Register).len(), 0, "nothing got past the edge");
}

#[tokio::test]
async fn an_oversized_body_is_413_and_checks_no_password() {
    let app = app().await;
    let huge = credentials("a@example.com", &"x".repeat(20_000));
    for path in ["/auth/register", "/auth/login"] {
        assert_eq!(
            app.call(post(path, &huge)).await.problem(413),
            "urn:portcullis:problem:payload-too-large"
        );
    }
    assert!(app.world.audit().is_empty(), "a refused body reached the handler: {:?}", app.world.audit());
}

#[tokio::test]
async fn me_names_the_caller_and_refuses_a_request_without_a_live_account() {
    let app = app().await;
    let health = app.call(event(include_str!("../../../events/login/health.json"))).await;
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")));
    let id = app.register("me@example.com").await;
    let token = app.token("me@example.com").await;
    let me = app.as_bearer("GET", "/me", None, &token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let profile = me.json();
    assert_eq!(profile["user_id"], id.as_str());
    assert_eq!(profile["email"], "me@example.com");
    assert_eq!(profile["roles"], serde_json::json!(["user"]));
    assert_eq!(profile["mfa_enabled"], false);
    for sample in [
        include_str!("../../../events/login/me-without-authorizer.json"),
        include_str!("../../../events/login/me-unknown-user.json"),
    ] {
        app.call(event(sample)).await.problem(401);
    }
}

/// Step-up (ASVS V7.5.1): a token older than the re-authentication window (300
/// s) is still valid, but changes no password until `/auth/reauth` proves the
/// password again; the new session tokens then do.
#[tokio::test]
async fn a_password_change_needs_a_recent_authentication() {
    let app = app().await;
    app.register("stale@example.com").await;
    let token = app.token("stale@example.com").await;
    app.world.clock.advance(301);
    let body = change(GOOD_PASSWORD, NEW_PASSWORD);
    let stale = app.as_bearer("POST", "/auth/password", Some(&body), &token).await;
    assert_eq!(stale.problem(401), "urn:portcullis:problem:reauthentication-required");
    let wrong = serde_json::json!({ "password": "not-my-password-at-all" }).to_string();
    assert_eq!(app.as_bearer("POST", "/auth/reauth", Some(&wrong), &token).await.status, 401);
    assert_eq!(app.world.reasons(EventType::ReauthenticationFailure), [Some("wrong_password")]);
    let proof = serde_json::json!({ "password": GOOD_PASSWORD }).to_string();
    let renewed = app.as_bearer("POST", "/auth/reauth", Some(&proof), &token).await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let fresh = renewed.text("access_token");
    let changed = app.as_bearer("POST", "/auth/password", Some(&body), &fresh).await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    assert_eq!(app.login("stale@example.com", GOOD_PASSWORD).await.status, 401);
    assert_eq!(app.login("stale@example.com", NEW_PASSWORD).await.status, 200);
}

/// ASVS V3.3.3: the change ends every other session of the account at once
/// (the authorizer refuses their tokens); the session that made it lives on.
#[tokio::test]
async fn a_password_change_revokes_every_other_session() {
    let app = app().await;
    app.register("erin@example.com").await;
    let (here, elsewhere) = (app.token("erin@example.com").await, app.token("erin@example.com").await);
    let wrong =
        app.as_bearer("POST", "/auth/password", Some(&change("wrong-current-1", NEW_PASSWORD)), &here).await;
    assert_eq!(wrong.problem(401), "urn:portcullis:problem:invalid-credentials");
    assert!(matches!(app.world.decide("GET", "/me", &elsewhere).await, Decision::Allow(_)));
    let weak =
        app.as_bearer("POST", "/auth/password", Some(&change(GOOD_PASSWORD, "erin12345678")), &here).await;
    assert_eq!(weak.problem(422), "urn:portcullis:problem:weak-password");
    let done =
        app.as_bearer("POST", "/auth/password", Some(&change(GOOD_PASSWORD, NEW_PASSWORD)), &here).await;
    assert_eq!(done.status, 204, "{}", done.body);
    assert_eq!(app.world.decide("GET", "/me", &elsewhere).await, Decision::Unauthorized);
    assert!(matches!(app.world.decide("GET", "/me", &here).await, Decision::Allow(_)));
    assert_eq!(app.world.reasons(EventType::SessionsRevoked), [Some("password_change")]);
    let without_context =
        app.call(request("POST", "/auth/password", Some(&change(NEW_PASSWORD, GOOD_PASSWORD)))).await;
    assert_eq!(without_context.status, 401, "no authorizer context, no change");
}

/// Wrong current passwords count with the account's logins (limit 3 here): the
/// route is no unlimited password oracle.
#[tokio::test]
async fn wrong_current_passwords_lock_the_account() {
    let app = app_with(&[("PORTCULLIS_LOCKOUT_MAX_FAILURES", "3".into())]).await;
    app.register("oracle@example.com").await;
    let token = app.token("oracle@example.com").await;
    for attempt in 1..=3 {
        let guess = change(&format!("guess-number-{attempt}"), NEW_PASSWORD);
        assert_eq!(app.as_bearer("POST", "/auth/password", Some(&guess), &token).await.status, 401);
    }
    let right =
        app.as_bearer("POST", "/auth/password", Some(&change(GOOD_PASSWORD, NEW_PASSWORD)), &token).await;
    assert_eq!(right.status, 429, "the wrong guesses were not counted: {}", right.body);
    assert_eq!(app.login("oracle@example.com", GOOD_PASSWORD).await.status, 429, "the lock is the account's");
    assert_eq!(app.world.reasons(EventType::PasswordChangeFailure).len(), 3);
}
