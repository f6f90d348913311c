//! Runs the built `portcullis-login` binary against a local Lambda Runtime API
//! (the protocol AWS uses) and feeds it the sample events in `events/login/`.

use crate::helpers::{binary, new_table, parts, request, TestDb};
use crate::kms::new_kms_key;
use std::time::Duration;

pub use portcullis_tests::RuntimeApi;

/// Starts a function binary as Lambda would, pointed at `api_addr`.
pub fn spawn_function(name: &str, api_addr: &str, env: &[(&str, String)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(binary(name));
    cmd.env("AWS_LAMBDA_RUNTIME_API", api_addr)
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/test")
        .env("PORTCULLIS_LOG", "warn")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn function binary")
}

/// A function's environment as deployed: its own MySQL user, KMS, DynamoDB.
fn deployment_env(db: &TestDb, table: &str, key_id: &str, user: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PORTCULLIS_STORE", "mysql".to_string()),
        ("PORTCULLIS_DATABASE_URL", db.user_url(user)),
        ("PORTCULLIS_KEY_PROVIDER", "kms".into()),
        ("PORTCULLIS_KMS_KEY_ID", key_id.to_owned()),
        ("PORTCULLIS_SESSION_STORE", "dynamodb".into()),
        ("PORTCULLIS_DYNAMODB_TABLE", table.to_owned()),
    ]
}

/// The events and the status each must produce, in invocation order.
const LOGIN_EVENTS: [(&str, &str, u16); 11] = [
    ("health", include_str!("../../events/login/health.json"), 200),
    ("register", include_str!("../../events/login/register.json"), 201),
    ("register-weak-password", include_str!("../../events/login/register-weak-password.json"), 422),
    ("register-unknown-field", include_str!("../../events/login/register-unknown-field.json"), 400),
    ("login", include_str!("../../events/login/login.json"), 200),
    ("login-wrong-password", include_str!("../../events/login/login-wrong-password.json"), 401),
    ("login-unknown-account", include_str!("../../events/login/login-unknown-account.json"), 401),
    ("login-malformed-json", include_str!("../../events/login/login-malformed-json.json"), 400),
    ("login-wrong-content-type", include_str!("../../events/login/login-wrong-content-type.json"), 415),
    ("me-without-authorizer", include_str!("../../events/login/me-without-authorizer.json"), 401),
    ("me-unknown-user", include_str!("../../events/login/me-unknown-user.json"), 401),
];

#[tokio::test]
async fn login_binary_answers_every_sample_event_through_the_runtime_api() {
    let db = TestDb::create().await;
    let events = LOGIN_EVENTS
        .iter()
        .map(|(name, text, _)| (name.to_string(), serde_json::from_str(text).expect("event JSON")))
        .collect();
    let (api, addr) = RuntimeApi::start(events).await;
    let mut child = spawn_function(
        "portcullis-login",
        &addr,
        &[
            ("PORTCULLIS_STORE", "mysql".into()),
            ("PORTCULLIS_DATABASE_URL", db.user_url("login")),
            ("PORTCULLIS_KEY_PROVIDER", "kms".into()),
            ("PORTCULLIS_KMS_KEY_ID", new_kms_key().await),
            ("PORTCULLIS_SESSION_STORE", "dynamodb".into()),
            ("PORTCULLIS_DYNAMODB_TABLE", new_table().await),
        ],
    );
    let answers = api.answers(LOGIN_EVENTS.len(), Duration::from_secs(120)).await;
    child.kill().await.ok();
    assert!(!answers.contains_key("init"), "the function failed to start: {answers:?}");
    for (name, _, expected) in LOGIN_EVENTS {
        let answer = &answers[name];
        assert_eq!(answer["statusCode"], expected, "{name}: {answer}");
        let headers = &answer["headers"];
        assert_eq!(headers["cache-control"], "no-store", "{name}: {answer}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{name}");
        if expected >= 400 {
            assert_eq!(headers["content-type"], "application/problem+json", "{name}");
        }
    }
    let login: serde_json::Value =
        serde_json::from_str(answers["login"]["body"].as_str().expect("body")).expect("json");
    assert!(login["access_token"].as_str().is_some_and(|t| t.split('.').count() == 3));
    assert_eq!(answers["login-wrong-password"]["body"], answers["login-unknown-account"]["body"]);
}

#[tokio::test]
async fn a_lambda_with_a_bad_configuration_stops_at_cold_start_naming_the_variable() {
    let (_api, addr) = RuntimeApi::start(vec![]).await;
    let mut child = spawn_function("portcullis-login", &addr, &[("PORTCULLIS_STORE", "mysql".into())]);
    let mut stderr = child.stderr.take().expect("stderr piped");
    let status =
        tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits").expect("status");
    assert!(!status.success(), "started without a database URL");
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await.expect("read stderr");
    assert!(text.contains("PORTCULLIS_DATABASE_URL"), "{text}");
}

const REFRESH_EVENTS: [(&str, &str); 8] = [
    ("refresh", include_str!("../../events/refresh/refresh.json")),
    ("refresh-malformed-token", include_str!("../../events/refresh/refresh-malformed-token.json")),
    ("refresh-unknown-field", include_str!("../../events/refresh/refresh-unknown-field.json")),
    ("refresh-wrong-content-type", include_str!("../../events/refresh/refresh-wrong-content-type.json")),
    ("logout-without-authorizer", include_str!("../../events/refresh/logout-without-authorizer.json")),
    (
        "logout-all-without-authorizer",
        include_str!("../../events/refresh/logout-all-without-authorizer.json"),
    ),
    ("sessions-without-authorizer", include_str!("../../events/refresh/sessions-without-authorizer.json")),
    ("sessions", include_str!("../../events/refresh/sessions.json")),
];

#[tokio::test]
async fn refresh_binary_rotates_detects_reuse_and_refuses_bad_events() {
    let db = TestDb::create().await;
    let table = new_table().await;
    let key_id = new_kms_key().await;
    let env = |user: &str| deployment_env(&db, &table, &key_id, user);
    // A real login, in process, gives the live refresh token the first events carry.
    let login = crate::helpers::deps_with(&crate::helpers::config(&env("login"))).await;
    let creds =
        serde_json::json!({"email": "lambda-refresh@example.com", "password": crate::helpers::GOOD_PASSWORD})
            .to_string();
    assert_eq!(
        parts(portcullis_login::handle(&login, request("POST", "/auth/register", Some(&creds), None)).await)
            .0,
        201
    );
    let (status, body, _) =
        parts(portcullis_login::handle(&login, request("POST", "/auth/login", Some(&creds), None)).await);
    assert_eq!(status, 200, "{body}");
    let live = serde_json::from_str::<serde_json::Value>(&body).expect("json")["refresh_token"]
        .as_str()
        .expect("rt")
        .to_owned();

    let mut events: Vec<(String, serde_json::Value)> = Vec::new();
    for (name, text) in REFRESH_EVENTS {
        let mut event: serde_json::Value = serde_json::from_str(text).expect("event JSON");
        if name == "refresh" {
            event["body"] = serde_json::json!({ "refresh_token": live }).to_string().into();
            let mut replay = event.clone();
            replay["requestContext"]["requestId"] = "evt-refresh-replayed".into();
            events.push(("refresh".into(), event));
            events.push(("refresh-replayed".into(), replay));
        } else {
            events.push((name.to_string(), event));
        }
    }
    let expected: [(&str, u16); 9] = [
        ("refresh", 200),
        ("refresh-replayed", 401),
        ("refresh-malformed-token", 401),
        ("refresh-unknown-field", 400),
        ("refresh-wrong-content-type", 415),
        ("logout-without-authorizer", 401),
        ("logout-all-without-authorizer", 401),
        ("sessions-without-authorizer", 401),
        ("sessions", 200),
    ];
    let (api, addr) = RuntimeApi::start(events).await;
    let mut child = spawn_function("portcullis-refresh", &addr, &env("refresh"));
    let answers = api.answers(expected.len(), Duration::from_secs(120)).await;
    child.kill().await.ok();
    assert!(!answers.contains_key("init"), "the function failed to start: {answers:?}");
    for (name, status) in expected {
        let answer = &answers[name];
        assert_eq!(answer["statusCode"], status, "{name}: {answer}");
        assert_eq!(answer["headers"]["cache-control"], "no-store", "{name}");
    }
    let rotated: serde_json::Value =
        serde_json::from_str(answers["refresh"]["body"].as_str().expect("body")).expect("json");
    assert_ne!(rotated["refresh_token"].as_str(), Some(live.as_str()));
    assert_eq!(answers["sessions"]["body"], "[]");
}

const AUTHORIZER_EVENTS: [(&str, &str, bool); 10] = [
    ("http-api-allow", include_str!("../../events/authorizer/http-api-allow.json"), true),
    ("http-api-missing-header", include_str!("../../events/authorizer/http-api-missing-header.json"), false),
    (
        "http-api-admin-route-as-user",
        include_str!("../../events/authorizer/http-api-admin-route-as-user.json"),
        false,
    ),
    ("http-api-unknown-route", include_str!("../../events/authorizer/http-api-unknown-route.json"), false),
    ("http-api-garbage-token", include_str!("../../events/authorizer/http-api-garbage-token.json"), false),
    ("http-api-bad-api-key", include_str!("../../events/authorizer/http-api-bad-api-key.json"), false),
    ("rest-allow", include_str!("../../events/authorizer/rest-allow.json"), true),
    ("rest-missing-header", include_str!("../../events/authorizer/rest-missing-header.json"), false),
    (
        "rest-admin-route-as-user",
        include_str!("../../events/authorizer/rest-admin-route-as-user.json"),
        false,
    ),
    ("not-an-authorizer-event", include_str!("../../events/authorizer/not-an-authorizer-event.json"), false),
];

#[tokio::test]
async fn authorizer_binary_answers_both_api_gateway_payloads_through_the_runtime_api() {
    let db = TestDb::create().await;
    let table = new_table().await;
    let key_id = new_kms_key().await;
    let env = |user: &str| deployment_env(&db, &table, &key_id, user);
    let login = crate::helpers::deps_with(&crate::helpers::config(&env("login"))).await;
    let creds =
        serde_json::json!({"email": "lambda-authz@example.com", "password": crate::helpers::GOOD_PASSWORD})
            .to_string();
    assert_eq!(
        parts(portcullis_login::handle(&login, request("POST", "/auth/register", Some(&creds), None)).await)
            .0,
        201
    );
    let (_, body, _) =
        parts(portcullis_login::handle(&login, request("POST", "/auth/login", Some(&creds), None)).await);
    let access = serde_json::from_str::<serde_json::Value>(&body).expect("json")["access_token"]
        .as_str()
        .expect("at")
        .to_owned();

    let events = AUTHORIZER_EVENTS
        .iter()
        .map(|(name, text, _)| {
            (
                name.to_string(),
                serde_json::from_str(&text.replace("REPLACE_WITH_ACCESS_TOKEN", &access)).expect("event"),
            )
        })
        .collect();
    let (api, addr) = RuntimeApi::start(events).await;
    let mut child = spawn_function("portcullis-authorizer", &addr, &env("authorizer"));
    let answers = api.answers(AUTHORIZER_EVENTS.len(), Duration::from_secs(120)).await;
    child.kill().await.ok();
    assert!(!answers.contains_key("init"), "the function failed to start: {answers:?}");
    for (name, _, allow) in AUTHORIZER_EVENTS {
        let answer = &answers[name];
        assert!(answer.get("invocation_error").is_none(), "{name}: an authorizer must never fail: {answer}");
        if name.starts_with("rest") {
            let statement = &answer["policyDocument"]["Statement"][0];
            assert_eq!(statement["Effect"], if allow { "Allow" } else { "Deny" }, "{name}: {answer}");
            if allow {
                // Exactly the invoked method ARN: a cached policy never covers another route.
                assert_eq!(
                    statement["Resource"],
                    "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/me"
                );
                assert_eq!(answer["context"]["roles"], "user");
            }
        } else {
            assert_eq!(answer["isAuthorized"], allow, "{name}: {answer}");
            if allow {
                assert!(answer["context"]["sub"].as_str().is_some_and(|s| !s.is_empty()));
                assert!(answer["context"]["sid"].as_str().is_some_and(|s| !s.is_empty()));
            }
        }
    }
}

const MFA_EVENTS: [(&str, &str, u16); 7] = [
    ("enroll", include_str!("../../events/mfa/enroll.json"), 200),
    ("confirm-wrong-code", include_str!("../../events/mfa/confirm-wrong-code.json"), 401),
    ("enroll-without-authorizer", include_str!("../../events/mfa/enroll-without-authorizer.json"), 401),
    ("verify-dead-token", include_str!("../../events/mfa/verify-dead-token.json"), 401),
    ("verify-unknown-field", include_str!("../../events/mfa/verify-unknown-field.json"), 400),
    ("recovery-malformed", include_str!("../../events/mfa/recovery-malformed.json"), 400),
    ("disable-without-authorizer", include_str!("../../events/mfa/disable-without-authorizer.json"), 401),
];

#[tokio::test]
async fn mfa_binary_answers_every_sample_event_through_the_runtime_api() {
    let db = TestDb::create().await;
    let table = new_table().await;
    let key_id = new_kms_key().await;
    let env = |user: &str| deployment_env(&db, &table, &key_id, user);
    let login = crate::helpers::deps_with(&crate::helpers::config(&env("login"))).await;
    let creds =
        serde_json::json!({"email": "lambda-mfa@example.com", "password": crate::helpers::GOOD_PASSWORD})
            .to_string();
    let (status, body, _) =
        parts(portcullis_login::handle(&login, request("POST", "/auth/register", Some(&creds), None)).await);
    assert_eq!(status, 201);
    let user = serde_json::from_str::<serde_json::Value>(&body).expect("json")["user_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let events = MFA_EVENTS
        .iter()
        .map(|(name, text, _)| {
            let text = text
                .replace("REPLACE_WITH_USER_ID", &user)
                .replace("REPLACE_WITH_WRONG_CODE", "000000")
                .replace("REPLACE_WITH_AUTH_TIME", &now_secs().to_string());
            (name.to_string(), serde_json::from_str(&text).expect("event"))
        })
        .collect();
    let (api, addr) = RuntimeApi::start(events).await;
    let mut child = spawn_function("portcullis-mfa", &addr, &env("mfa"));
    let answers = api.answers(MFA_EVENTS.len(), Duration::from_secs(120)).await;
    child.kill().await.ok();
    assert!(!answers.contains_key("init"), "the function failed to start: {answers:?}");
    for (name, _, expected) in MFA_EVENTS {
        let answer = &answers[name];
        // 000000 is the right code once in a million: accept that the wrong-code event then confirms.
        if name == "confirm-wrong-code" && answer["statusCode"] == 200 {
            continue;
        }
        assert_eq!(answer["statusCode"], expected, "{name}: {answer}");
        assert_eq!(answer["headers"]["cache-control"], "no-store", "{name}");
    }
    let enrolment: serde_json::Value =
        serde_json::from_str(answers["enroll"]["body"].as_str().expect("body")).expect("json");
    assert!(enrolment["otpauth_uri"].as_str().is_some_and(|u| u.contains("lambda-mfa%40example.com")));
}

#[tokio::test]
async fn backup_binary_takes_a_backup_on_the_scheduled_event() {
    let db = TestDb::create().await;
    let key_id = new_kms_key().await;
    let bucket = format!("pct-lambda-backups-{}", crate::helpers::hex_token());
    let s3 = aws_sdk_s3::Client::new(portcullis_shared::aws::aws_config().await);
    s3.create_bucket().bucket(&bucket).send().await.expect("moto CreateBucket");
    let event = serde_json::from_str(include_str!("../../events/backup/scheduled.json")).expect("event");
    let (api, addr) = RuntimeApi::start(vec![("scheduled".into(), event)]).await;
    let mut child = spawn_function(
        "portcullis-backup",
        &addr,
        &[
            ("PORTCULLIS_STORE", "mysql".into()),
            ("PORTCULLIS_DATABASE_URL", db.user_url("backup")),
            ("PORTCULLIS_KEY_PROVIDER", "kms".into()),
            ("PORTCULLIS_KMS_KEY_ID", key_id),
            ("PORTCULLIS_BACKUP_BUCKET", bucket.clone()),
        ],
    );
    let answers = api.answers(1, Duration::from_secs(120)).await;
    child.kill().await.ok();
    let manifest = &answers["scheduled"];
    assert!(manifest.get("invocation_error").is_none(), "{manifest}");
    assert_eq!(manifest["database"], db.name.as_str());
    let key = format!("manifests/{}.json", manifest["backup_id"].as_str().expect("id"));
    s3.head_object().bucket(&bucket).key(&key).send().await.expect("the manifest is in the bucket");
}

#[tokio::test]
async fn backup_binary_refuses_any_other_event_without_touching_the_bucket() {
    let db = TestDb::create().await;
    let bucket = format!("pct-lambda-backups-{}", crate::helpers::hex_token());
    let s3 = aws_sdk_s3::Client::new(portcullis_shared::aws::aws_config().await);
    s3.create_bucket().bucket(&bucket).send().await.expect("moto CreateBucket");
    let event = serde_json::from_str(include_str!("../../events/backup/not-scheduled.json")).expect("event");
    let (api, addr) = RuntimeApi::start(vec![("manual".into(), event)]).await;
    let mut env = deployment_env(&db, &new_table().await, &new_kms_key().await, "backup");
    env.push(("PORTCULLIS_BACKUP_BUCKET", bucket.clone()));
    let mut child = spawn_function("portcullis-backup", &addr, &env);
    let answers = api.answers(1, Duration::from_secs(120)).await;
    child.kill().await.ok();
    assert!(answers["manual"].get("invocation_error").is_some(), "{answers:?}");
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.expect("ListObjectsV2");
    assert_eq!(listed.key_count(), Some(0), "nothing was written");
}

/// Keys load in the background: with KMS refusing, a request that needs no key
/// is still answered, and one that does gets a 503 problem, never a guess or a 500.
#[tokio::test]
async fn login_binary_answers_health_and_fails_closed_while_its_keys_cannot_load() {
    let db = TestDb::create().await;
    let events = [
        ("health", include_str!("../../events/login/health.json")),
        ("login", include_str!("../../events/login/login.json")),
    ]
    .iter()
    .map(|(name, text)| (name.to_string(), serde_json::from_str(text).expect("event JSON")))
    .collect();
    let (api, addr) = RuntimeApi::start(events).await;
    // A key id KMS does not know: every unwrap is refused.
    let missing_key = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000";
    let env = deployment_env(&db, &new_table().await, missing_key, "login");
    let mut child = spawn_function("portcullis-login", &addr, &env);
    let answers = api.answers(2, Duration::from_secs(120)).await;
    child.kill().await.ok();
    assert!(!answers.contains_key("init"), "the function failed to start: {answers:?}");
    assert_eq!(answers["health"]["statusCode"], 200, "{answers:?}");
    assert_eq!(answers["login"]["statusCode"], 503, "{answers:?}");
    assert_eq!(answers["login"]["headers"]["content-type"], "application/problem+json");
    let body = answers["login"]["body"].as_str().unwrap_or_default();
    assert!(!body.contains("kms") && !body.contains("KMS"), "no internals leak: {body}");
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
