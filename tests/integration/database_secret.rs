//! Database passwords from Secrets Manager (moto), never from the environment:
//! the deployed configuration names a secret, the URL carries no password, and
//! the function connects to MariaDB with the password the secret holds.

use crate::helpers::{binary, new_table, TestDb};
use crate::kms::new_kms_key;
use crate::lambda_runtime::{spawn_function, RuntimeApi};
use mysql_async::prelude::Queryable;
use portcullis_shared::config::Config;
use portcullis_shared::runtime::{database_credentials, Backends};
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::time::Duration;

async fn secrets_client() -> aws_sdk_secretsmanager::Client {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run the tests with scripts/test.sh, which starts moto"
    );
    aws_sdk_secretsmanager::Client::new(portcullis_shared::aws::aws_config().await)
}

/// A new secret holding `value`; its ARN.
async fn new_secret(value: &str) -> String {
    let name = format!("portcullis-test/database/{}", uuid::Uuid::new_v4().simple());
    let out = secrets_client()
        .await
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("moto CreateSecret");
    out.arn().expect("secret ARN").to_owned()
}

/// A function's configuration as the template deploys it: the URL without a
/// password, and the secret's ARN.
fn deployed(url: String, secret: Option<String>) -> Config {
    let mut env = HashMap::from([
        ("PORTCULLIS_STORE".to_owned(), "mysql".to_owned()),
        ("PORTCULLIS_DATABASE_URL".to_owned(), url),
    ]);
    if let Some(arn) = secret {
        env.insert("PORTCULLIS_DATABASE_PASSWORD_SECRET".to_owned(), arn);
    }
    Config::from_lookup(|name| env.get(name).cloned()).expect("valid configuration")
}

/// Who the pool is connected as, or the connection's error.
async fn current_user(config: &Config) -> Result<String, String> {
    let backends = Backends::open(config).await.map_err(|e| e.to_string())?;
    let pool = backends.mysql.expect("a MySQL store").pool().clone();
    let mut conn = pool.get_conn().await.map_err(|e| e.to_string())?;
    let user: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.map_err(|e| e.to_string())?;
    Ok(user.unwrap_or_default())
}

#[tokio::test]
async fn a_function_connects_with_the_password_from_its_secret_and_none_without_it() {
    let db = TestDb::create().await;
    let secret = new_secret(&db.user_secret("login").to_string()).await;
    let url = db.user_url_without_password("login");
    assert!(!url.contains(db.user_secret("login")["password"].as_str().expect("password")));

    let user = current_user(&deployed(url.clone(), Some(secret))).await.expect("connects");
    assert_eq!(user, format!("{}_login@%", db.name));
    // The same URL alone is refused: the password came from the secret.
    let refused = current_user(&deployed(url, None)).await.expect_err("no password, no connection");
    assert!(refused.contains("Access denied"), "{refused}");
}

#[tokio::test]
async fn a_wrong_unreadable_or_malformed_secret_stops_the_start_without_showing_it() {
    let db = TestDb::create().await;
    let url = db.user_url_without_password("login");
    let mut wrong = db.user_secret("login");
    wrong["password"] = "not-the-password-0f9c".into();
    let refused = current_user(&deployed(url.clone(), Some(new_secret(&wrong.to_string()).await))).await;
    let refused = refused.expect_err("wrong password");
    assert!(refused.contains("Access denied") && !refused.contains("0f9c"), "{refused}");

    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:portcullis-test/none-AbCdEf";
    let err = current_user(&deployed(url.clone(), Some(missing.into()))).await.expect_err("no such secret");
    assert!(err.contains("PORTCULLIS_DATABASE_PASSWORD_SECRET") && err.contains(missing), "{err}");

    let plain = new_secret("plain-text-password-7e21").await;
    let err = current_user(&deployed(url, Some(plain))).await.expect_err("not the JSON object");
    assert!(err.contains("PORTCULLIS_DATABASE_PASSWORD_SECRET") && !err.contains("7e21"), "{err}");
}

/// Read once per process: a later change of the secret reaches a function at
/// its next cold start, not in the middle of its life.
#[tokio::test]
async fn a_secret_is_read_once_per_process() {
    let first = serde_json::json!({ "password": "first-password" }).to_string();
    let arn = new_secret(&first).await;
    let read = database_credentials(&arn).await.expect("reads");
    assert_eq!(read.password.expose_secret(), "first-password");
    secrets_client()
        .await
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(serde_json::json!({ "password": "second-password" }).to_string())
        .send()
        .await
        .expect("moto PutSecretValue");
    let direct = secrets_client().await.get_secret_value().secret_id(&arn).send().await.expect("reads");
    assert!(direct.secret_string().is_some_and(|s| s.contains("second-password")), "moto changed it");
    let again = database_credentials(&arn).await.expect("cached");
    assert_eq!(again.password.expose_secret(), "first-password");
}

/// The login binary, configured as the template deploys it, registers and logs
/// in on MariaDB with no password in its environment.
#[tokio::test]
async fn the_login_binary_runs_on_its_secret_with_no_password_in_its_environment() {
    assert!(binary("portcullis-login").exists(), "build the binaries first (cargo build --workspace --bins)");
    let db = TestDb::create().await;
    let secret = new_secret(&db.user_secret("login").to_string()).await;
    let events: Vec<(String, serde_json::Value)> = [
        ("health", include_str!("../../events/login/health.json")),
        ("register", include_str!("../../events/login/register.json")),
        ("login", include_str!("../../events/login/login.json")),
    ]
    .iter()
    .map(|(name, text)| (name.to_string(), serde_json::from_str(text).expect("event JSON")))
    .collect();
    let (api, addr) = RuntimeApi::start(events).await;
    let env = [
        ("PORTCULLIS_STORE", "mysql".to_owned()),
        ("PORTCULLIS_DATABASE_URL", db.user_url_without_password("login")),
        ("PORTCULLIS_DATABASE_PASSWORD_SECRET", secret),
        ("PORTCULLIS_KEY_PROVIDER", "kms".into()),
        ("PORTCULLIS_KMS_KEY_ID", new_kms_key().await),
        ("PORTCULLIS_SESSION_STORE", "dynamodb".into()),
        ("PORTCULLIS_DYNAMODB_TABLE", new_table().await),
    ];
    let password = db.user_secret("login")["password"].as_str().expect("password").to_owned();
    assert!(env.iter().all(|(_, value)| !value.contains(&password)), "a password in the environment");
    let mut child = spawn_function("portcullis-login", &addr, &env);
    let answers = api.answers(3, Duration::from_secs(120)).await;
    child.kill().await.ok();
    assert!(!answers.contains_key("init"), "the function failed to start: {answers:?}");
    for (name, status) in [("health", 200), ("register", 201), ("login", 200)] {
        assert_eq!(answers[name]["statusCode"], status, "{name}: {}", answers[name]);
    }
}
