//! The login function's handlers on MariaDB, connected as the login user.

use crate::app::{spawn_app, spawn_app_with, Backend};
use crate::helpers::{parts, request, GOOD_PASSWORD};
use mysql_async::prelude::Queryable;
use portcullis_login::{handle, Deps};

/// event_type, outcome, source_ip, user_agent, reason
type AuditRow = (String, String, Option<String>, Option<String>, Option<String>);

fn creds(email: &str, password: &str) -> String {
    serde_json::json!({ "email": email, "password": password }).to_string()
}

async fn post(deps: &Deps, path: &str, body: &str, sub: Option<&str>) -> (u16, String, http::HeaderMap) {
    parts(handle(deps, request("POST", path, Some(body), sub)).await)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON body")
}

#[tokio::test]
async fn register_login_and_me_work_on_mysql_as_the_login_user() {
    let app = spawn_app(Backend::Mysql).await;
    let deps = &app.login;
    let (status, body, _) =
        post(deps, "/auth/register", &creds("alice@example.com", GOOD_PASSWORD), None).await;
    assert_eq!(status, 201, "{body}");
    let user_id = json(&body)["user_id"].as_str().expect("user_id").to_owned();

    let (status, body, headers) =
        post(deps, "/auth/login", &creds("alice@example.com", GOOD_PASSWORD), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let tokens = json(&body);
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);

    // The authorizer, connected as its own user, accepts the token and names the caller.
    let authorizer = &app.authorizer;
    let header = format!("Bearer {}", tokens["access_token"].as_str().expect("token"));
    match crate::helpers::authorize_me(authorizer, &header).await {
        portcullis_authorizer::Decision::Allow(identity) => {
            assert_eq!(identity.sub, user_id);
            assert_eq!(identity.roles, vec!["user".to_string()]);
        }
        other => panic!("token refused: {other:?}"),
    }

    let (status, body, _) = parts(handle(deps, request("GET", "/me", None, Some(&user_id))).await);
    assert_eq!(status, 200, "{body}");
    let me = json(&body);
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["roles"], serde_json::json!(["user"]));
    assert_eq!(me["mfa_enabled"], false);
}

#[tokio::test]
async fn wrong_password_and_unknown_account_get_byte_identical_answers() {
    let app = spawn_app(Backend::Mysql).await;
    let deps = &app.login;
    let (status, _, _) = post(deps, "/auth/register", &creds("bob@example.com", GOOD_PASSWORD), None).await;
    assert_eq!(status, 201);
    let wrong = post(deps, "/auth/login", &creds("bob@example.com", "not-the-password-at-all"), None).await;
    let unknown =
        post(deps, "/auth/login", &creds("nobody@example.com", "not-the-password-at-all"), None).await;
    let malformed = post(deps, "/auth/login", &creds("not-an-email", "not-the-password-at-all"), None).await;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong.0, unknown.0);
    assert_eq!(wrong.1.as_bytes(), unknown.1.as_bytes());
    assert_eq!(wrong.2, unknown.2);
    assert_eq!(wrong.1.as_bytes(), malformed.1.as_bytes());
}

#[tokio::test]
async fn emails_are_stored_encrypted_and_matched_case_insensitively() {
    let app = spawn_app(Backend::Mysql).await;
    let (db, deps) = (app.db(), &app.login);
    let (status, _, _) =
        post(deps, "/auth/register", &creds("Carol.Marker@Example.com", GOOD_PASSWORD), None).await;
    assert_eq!(status, 201);
    let mut owner = db.owner_conn().await;
    let rows: Vec<(Vec<u8>, Vec<u8>)> =
        owner.query("SELECT email_ciphertext, email_index FROM users").await.expect("rows");
    assert_eq!(rows.len(), 1);
    for column in [&rows[0].0, &rows[0].1] {
        let text = String::from_utf8_lossy(column).to_lowercase();
        assert!(!text.contains("carol") && !text.contains("example"), "plaintext email at rest");
    }
    let (status, _, _) =
        post(deps, "/auth/login", &creds("CAROL.MARKER@example.COM", GOOD_PASSWORD), None).await;
    assert_eq!(status, 200);
    let (status, body, _) =
        post(deps, "/auth/register", &creds("carol.marker@example.com", GOOD_PASSWORD), None).await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn the_audit_trail_records_registration_logins_and_failures() {
    let app = spawn_app(Backend::Mysql).await;
    let (db, deps) = (app.db(), &app.login);
    post(deps, "/auth/register", &creds("dave@example.com", GOOD_PASSWORD), None).await;
    post(deps, "/auth/login", &creds("dave@example.com", GOOD_PASSWORD), None).await;
    post(deps, "/auth/login", &creds("dave@example.com", "wrong-wrong-wrong-1"), None).await;
    post(deps, "/auth/login", &creds("ghost@example.com", "wrong-wrong-wrong-1"), None).await;
    let mut owner = db.owner_conn().await;
    let rows: Vec<AuditRow> = owner
        .query("SELECT event_type, outcome, source_ip, user_agent, reason FROM audit_log ORDER BY id")
        .await
        .expect("audit rows");
    let kinds: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(kinds, ["register", "login_success", "login_failure", "login_failure"]);
    assert_eq!(rows[2].1, "failure");
    assert_eq!(rows[2].4.as_deref(), Some("wrong_password"));
    assert_eq!(rows[3].4.as_deref(), Some("unknown_account"));
    assert!(rows
        .iter()
        .all(|r| r.2.as_deref() == Some("198.51.100.7") && r.3.as_deref() == Some("integration-test")));
}

#[tokio::test]
async fn password_change_needs_the_current_password_and_meets_the_policy() {
    let app = spawn_app(Backend::Mysql).await;
    let (db, deps) = (app.db(), &app.login);
    let (_, body, _) = post(deps, "/auth/register", &creds("erin@example.com", GOOD_PASSWORD), None).await;
    let id = json(&body)["user_id"].as_str().expect("id").to_owned();
    let change = |current: &str, new: &str| {
        serde_json::json!({"current_password": current, "new_password": new}).to_string()
    };
    let new_password = "amber-lantern-meridian-glacier-4";

    let (status, _, _) =
        post(deps, "/auth/password", &change("wrong-current-password", new_password), Some(&id)).await;
    assert_eq!(status, 401);
    let (status, body, _) =
        post(deps, "/auth/password", &change(GOOD_PASSWORD, "erin12345678"), Some(&id)).await;
    assert_eq!(status, 422, "{body}");
    let rules: Vec<String> =
        json(&body)["errors"].as_array().expect("errors").iter().map(|e| e["rule"].to_string()).collect();
    assert!(rules.iter().any(|r| r.contains("contains_email")), "{rules:?}");
    let (status, _, _) = post(deps, "/auth/password", &change(GOOD_PASSWORD, new_password), None).await;
    assert_eq!(status, 401, "no authorizer context, no password change");
    let (status, body, _) =
        post(deps, "/auth/password", &change(GOOD_PASSWORD, new_password), Some(&id)).await;
    assert_eq!(status, 204, "{body}");

    let (status, _, _) = post(deps, "/auth/login", &creds("erin@example.com", GOOD_PASSWORD), None).await;
    assert_eq!(status, 401);
    let (status, _, _) = post(deps, "/auth/login", &creds("erin@example.com", new_password), None).await;
    assert_eq!(status, 200);
    let mut owner = db.owner_conn().await;
    let changes: Vec<String> = owner
        .query("SELECT event_type FROM audit_log WHERE event_type LIKE 'password_change%' ORDER BY id")
        .await
        .expect("rows");
    assert_eq!(changes, ["password_change_failure", "password_change"]);
}

#[tokio::test]
async fn weak_and_common_passwords_are_refused_with_every_reason() {
    let app = spawn_app(Backend::Mysql).await;
    let (db, deps) = (app.db(), &app.login);
    let (status, body, headers) =
        post(deps, "/auth/register", &creds("frank@example.com", "password"), None).await;
    assert_eq!(status, 422);
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem = json(&body);
    assert_eq!(problem["type"], "urn:portcullis:problem:weak-password");
    let rules: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["rule"].as_str()).collect();
    assert_eq!(rules, ["too_short", "common", "guessable"]);
    for weak in ["123456789012", "qwertyuiop12", "iloveyou2024!", "Password1234"] {
        let (status, body, _) = post(deps, "/auth/register", &creds("frank@example.com", weak), None).await;
        assert_eq!(status, 422, "{weak} accepted: {body}");
    }
    let mut owner = db.owner_conn().await;
    let users: Vec<u64> = owner.query("SELECT COUNT(*) FROM users").await.expect("count");
    assert_eq!(users, [0], "a refused registration left a user behind");
}

#[tokio::test]
async fn bad_input_gets_problem_json_and_never_a_500() {
    let app = spawn_app(Backend::Mysql).await;
    let deps = &app.login;
    let oversized = format!(r#"{{"email":"a@example.com","password":"{}"}}"#, "x".repeat(20_000));
    let cases: Vec<(&str, &str, String, u16)> = vec![
        ("POST", "/auth/register", "{".into(), 400),
        ("POST", "/auth/register", "[]".into(), 400),
        ("POST", "/auth/register", "null".into(), 400),
        ("POST", "/auth/register", r#"{"email":"a@example.com"}"#.into(), 400),
        ("POST", "/auth/register", r#"{"email":1,"password":2}"#.into(), 400),
        (
            "POST",
            "/auth/register",
            r#"{"email":"a@example.com","password":"velvet-otter-quantum-harbor-71","admin":true}"#.into(),
            400,
        ),
        (
            "POST",
            "/auth/register",
            r#"{"email":"not an email","password":"velvet-otter-quantum-harbor-71"}"#.into(),
            400,
        ),
        ("POST", "/auth/register", oversized.clone(), 413),
        ("POST", "/auth/login", oversized, 413),
        ("POST", "/auth/login", "\u{0}\u{1}binary".into(), 400),
        ("POST", "/auth/login", r#"{"email":"a@example.com","password":"x","password":"y"}"#.into(), 400),
        ("GET", "/auth/login", String::new(), 405),
        ("GET", "/nowhere", String::new(), 404),
    ];
    for (method, path, body, expected) in cases {
        let req = request(method, path, (!body.is_empty()).then_some(body.as_str()), None);
        let (status, text, headers) = parts(handle(deps, req).await);
        assert_eq!(status, expected, "{method} {path} {body:.60}: {text}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(headers["cache-control"], "no-store");
        let problem = json(&text);
        assert_eq!(problem["status"], expected);
        assert!(problem["type"].as_str().is_some_and(|t| t.starts_with("urn:portcullis:problem:")));
    }
    // Wrong content type.
    let mut req = request("POST", "/auth/login", Some(&creds("a@example.com", "x")), None);
    req.headers_mut().insert("content-type", http::HeaderValue::from_static("text/plain"));
    assert_eq!(parts(handle(deps, req).await).0, 415);
}

/// `POST /auth/password` is no unlimited password oracle: each wrong current
/// password counts once with the account's login attempts (limit set to 3
/// here, apart from the default), so the fourth attempt is refused with 429 and
/// `Retry-After`, even for the right password, and login is locked too.
#[tokio::test]
async fn wrong_current_passwords_lock_the_account() {
    let app = spawn_app_with(Backend::Mysql, &[("PORTCULLIS_LOCKOUT_MAX_FAILURES", "3".into())]).await;
    let (db, deps) = (app.db(), &app.login);
    let (_, body, _) = post(deps, "/auth/register", &creds("oracle@example.com", GOOD_PASSWORD), None).await;
    let id = json(&body)["user_id"].as_str().expect("id").to_owned();
    let change = |current: &str| {
        serde_json::json!({"current_password": current, "new_password": "amber-lantern-meridian-glacier-4"})
            .to_string()
    };
    for attempt in 1..=3 {
        let (status, body, _) =
            post(deps, "/auth/password", &change(&format!("guess-{attempt}")), Some(&id)).await;
        assert_eq!(status, 401, "attempt {attempt}: {body}");
    }
    let (status, _, headers) = post(deps, "/auth/password", &change(GOOD_PASSWORD), Some(&id)).await;
    assert_eq!(status, 429, "the fourth attempt was not throttled: the wrong guesses were not counted");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("60"));
    let (status, _, _) = post(deps, "/auth/login", &creds("oracle@example.com", GOOD_PASSWORD), None).await;
    assert_eq!(status, 429, "the lock is the account's");
    let mut owner = db.owner_conn().await;
    let failures: Vec<String> = owner
        .query("SELECT event_type FROM audit_log WHERE event_type IN ('password_change_failure', 'login_throttled') ORDER BY id")
        .await
        .expect("audit");
    assert_eq!(failures.iter().filter(|e| *e == "password_change_failure").count(), 3);
    assert!(failures.iter().any(|e| e == "login_throttled"));
}

/// Successful registrations keep their source IP's attempt: mass sign-ups from
/// one source are capped like any other run of attempts.
#[tokio::test]
async fn registrations_from_one_source_are_capped() {
    let app = spawn_app_with(Backend::Mysql, &[("PORTCULLIS_IP_MAX_FAILURES", "3".into())]).await;
    let deps = &app.login;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let email = format!("signup-{i}@example.com");
        statuses.push(post(deps, "/auth/register", &creds(&email, GOOD_PASSWORD), None).await.0);
    }
    assert_eq!(statuses, [201, 201, 201, 429]);
}
