//! The configuration's parsing and validation rules.

use super::*;
use std::collections::HashMap;

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_are_the_embedded_mode() {
    let c = config(&[]).expect("defaults are valid");
    assert!(matches!(c.store, StoreBackend::Sqlite));
    assert_eq!(c.sessions, SessionBackend::Sqlite);
    assert_eq!(c.sqlite_file, PathBuf::from(".portcullis/portcullis.db"));
    assert!(matches!(c.keys, KeyBackend::LocalFile { .. }));
    assert_eq!(c.access_token_ttl_secs, 900);
    assert_eq!(c.password_min_length, 12);
}

#[test]
fn mysql_without_url_names_the_missing_variable() {
    let err = config(&[("PORTCULLIS_STORE", "mysql")]).expect_err("must fail");
    assert!(err.to_string().contains("PORTCULLIS_DATABASE_URL"), "{err}");
}

#[test]
fn a_password_secret_excludes_a_password_in_the_url() {
    let url = "mysql://portcullis_login@db:3306/portcullis";
    let secret = "arn:aws:secretsmanager:eu-west-1:1:secret:s/database/login-AbCdEf";
    let c = config(&[
        ("PORTCULLIS_STORE", "mysql"),
        ("PORTCULLIS_DATABASE_URL", url),
        ("PORTCULLIS_DATABASE_PASSWORD_SECRET", secret),
    ])
    .expect("valid");
    assert!(matches!(&c.store, StoreBackend::Mysql { password_secret: Some(s), .. } if s == secret));
    let err = config(&[
        ("PORTCULLIS_STORE", "mysql"),
        ("PORTCULLIS_DATABASE_URL", "mysql://portcullis_login:hunter2@db:3306/portcullis"),
        ("PORTCULLIS_DATABASE_PASSWORD_SECRET", secret),
    ])
    .expect_err("two passwords");
    assert!(err.to_string().contains("PORTCULLIS_DATABASE_URL"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // Local and development use: a password in the URL, no secret.
    let c = config(&[("PORTCULLIS_STORE", "mysql"), ("PORTCULLIS_DATABASE_URL", "mysql://u:p@db/x")])
        .expect("valid");
    assert!(matches!(c.store, StoreBackend::Mysql { password_secret: None, .. }));
}

#[test]
fn bad_numbers_name_the_variable() {
    let err = config(&[("PORTCULLIS_ACCESS_TOKEN_TTL_SECS", "soon")]).expect_err("must fail");
    assert!(err.to_string().contains("PORTCULLIS_ACCESS_TOKEN_TTL_SECS"), "{err}");
    let err = config(&[("PORTCULLIS_PASSWORD_MIN_LENGTH", "4")]).expect_err("must fail");
    assert!(err.to_string().contains("outside"), "{err}");
}

#[test]
fn plain_http_breach_service_is_refused_off_loopback() {
    for refused in [
        "http://example.com",
        "http://localhost.evil.com",
        "http://localhost@evil.com/",
        "http://127.0.0.1.evil.com",
        "http://127.0.0.1@evil.com",
        "http://10.0.0.1/",
        "ftp://localhost/",
        "https://",
        "not a url",
    ] {
        assert!(config(&[("PORTCULLIS_HIBP_URL", refused)]).is_err(), "{refused}");
    }
    for allowed in [
        "https://api.pwnedpasswords.com",
        "http://127.0.0.1:9/",
        "http://127.8.9.10/",
        "http://localhost:8080",
        "http://LOCALHOST/",
        "http://[::1]:9/",
    ] {
        assert!(config(&[("PORTCULLIS_HIBP_URL", allowed)]).is_ok(), "{allowed}");
    }
}

#[test]
fn session_settings_are_validated() {
    let err = config(&[("PORTCULLIS_SESSION_STORE", "dynamodb")]).expect_err("needs a table");
    assert!(err.to_string().contains("PORTCULLIS_DYNAMODB_TABLE"), "{err}");
    let err =
        config(&[("PORTCULLIS_SESSION_IDLE_SECS", "7200"), ("PORTCULLIS_SESSION_ABSOLUTE_SECS", "3600")])
            .expect_err("idle beyond absolute");
    assert!(err.to_string().contains("PORTCULLIS_SESSION_IDLE_SECS"), "{err}");
    let c = config(&[]).expect("defaults");
    assert_eq!((c.session_idle_secs, c.session_absolute_secs), (1800, 43_200));
}

#[test]
fn lambda_refuses_the_memory_and_embedded_stores() {
    let refused = |pairs: &[(&str, &str)]| config(pairs).expect("valid").require_durable_store().is_err();
    let url = ("PORTCULLIS_DATABASE_URL", "mysql://u:p@db/x");
    let table = ("PORTCULLIS_DYNAMODB_TABLE", "t");
    assert!(refused(&[]), "nothing configured: the embedded file, never in a Lambda function");
    assert!(refused(&[("PORTCULLIS_STORE", "memory")]));
    assert!(refused(&[url]), "sessions beside MySQL default to memory");
    assert!(refused(&[url, table, ("PORTCULLIS_SESSION_STORE", "sqlite")]));
    assert!(refused(&[("PORTCULLIS_STORE", "sqlite"), table, ("PORTCULLIS_SESSION_STORE", "dynamodb")]));
    // The template's configuration.
    let c = config(&[("PORTCULLIS_STORE", "mysql"), url, table, ("PORTCULLIS_SESSION_STORE", "dynamodb")])
        .expect("valid");
    c.require_durable_store().expect("MySQL and DynamoDB are durable");
    assert!(matches!(c.store, StoreBackend::Mysql { .. }));
    assert_eq!(c.sessions, SessionBackend::Dynamo { table: "t".into() });
}

#[test]
fn the_store_follows_the_database_url_unless_named() {
    let url = ("PORTCULLIS_DATABASE_URL", "mysql://u:p@db/x");
    assert!(matches!(config(&[url]).expect("valid").store, StoreBackend::Mysql { .. }));
    let c = config(&[url, ("PORTCULLIS_STORE", "sqlite"), ("PORTCULLIS_SQLITE_FILE", "/var/pc.db")])
        .expect("valid");
    assert!(matches!(c.store, StoreBackend::Sqlite));
    assert_eq!(c.sqlite_file, PathBuf::from("/var/pc.db"));
    let c = config(&[("PORTCULLIS_STORE", "memory")]).expect("valid");
    assert_eq!(c.sessions, SessionBackend::Memory, "sessions follow an in-memory store");
    let err = config(&[("PORTCULLIS_STORE", "postgres")]).expect_err("unknown");
    assert!(err.to_string().contains("PORTCULLIS_STORE"), "{err}");
    let err = config(&[("PORTCULLIS_SESSION_STORE", "redis")]).expect_err("unknown");
    assert!(err.to_string().contains("PORTCULLIS_SESSION_STORE"), "{err}");
}

#[test]
fn the_identity_provider_is_native_unless_a_pool_is_named() {
    assert_eq!(config(&[]).expect("valid").identity, IdentityBackend::Native);
    let err = config(&[("PORTCULLIS_IDENTITY_PROVIDER", "cognito")]).expect_err("needs a pool");
    assert!(err.to_string().contains("PORTCULLIS_COGNITO_USER_POOL_ID"), "{err}");
    let err = config(&[("PORTCULLIS_IDENTITY_PROVIDER", "ldap")]).expect_err("unknown");
    assert!(err.to_string().contains("PORTCULLIS_IDENTITY_PROVIDER"), "{err}");
    let c = config(&[
        ("PORTCULLIS_IDENTITY_PROVIDER", "cognito"),
        ("PORTCULLIS_COGNITO_USER_POOL_ID", "eu-west-1_AbC"),
        ("PORTCULLIS_COGNITO_REGION", "eu-west-1"),
        ("PORTCULLIS_COGNITO_CLIENT_IDS", "client-1, client-2"),
    ])
    .expect("valid");
    assert_eq!(
        c.identity,
        IdentityBackend::Cognito { pool_id: "eu-west-1_AbC".into(), client_id: "client-1".into() }
    );
}

#[test]
fn mail_settings_are_one_line_values_and_links_stay_on_https() {
    let c = config(&[]).expect("defaults");
    assert_eq!(c.mail.message, crate::mail::MailConfig::default());
    assert_eq!(c.mail.transport, MailTransport::Outbox { dir: PathBuf::from(".portcullis/outbox") });
    assert!(!c.in_lambda);
    let c = config(&[
        ("PORTCULLIS_MAIL_PRODUCT_NAME", "Acme Cloud"),
        ("PORTCULLIS_MAIL_FROM", "security@acme.example"),
        ("PORTCULLIS_MAIL_LINK_BASE", "https://app.acme.example/account"),
        ("PORTCULLIS_MAIL_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/portcullis-notify"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
    ])
    .expect("valid");
    assert_eq!(c.mail.message.product, "Acme Cloud");
    assert_eq!(c.mail.message.from, "security@acme.example");
    let url = "https://sqs.eu-west-1.amazonaws.com/1/portcullis-notify";
    assert_eq!(c.mail.transport, MailTransport::Queue { url: url.into() });
    assert!(c.in_lambda);
    for (var, bad) in [
        // A line break in a value that becomes a header would add a header (Bcc: …).
        ("PORTCULLIS_MAIL_PRODUCT_NAME", "Acme\r\nBcc: everyone@example.com"),
        ("PORTCULLIS_MAIL_FROM", "a@b\nBcc: c@d"),
        ("PORTCULLIS_MAIL_FROM", "no-address"),
        ("PORTCULLIS_MAIL_FROM", "@acme.example"),
        // The token travels wherever the link points.
        ("PORTCULLIS_MAIL_LINK_BASE", "http://app.acme.example/account"),
        ("PORTCULLIS_MAIL_LINK_BASE", "https://app.acme.example/account?next=x"),
        ("PORTCULLIS_MAIL_LINK_BASE", "javascript:alert(1)"),
        ("PORTCULLIS_MAIL_QUEUE_URL", "http://sqs.eu-west-1.amazonaws.com/1/q"),
    ] {
        let err = config(&[(var, bad)]).expect_err(bad);
        assert!(err.to_string().contains(var), "{bad}: {err}");
    }
    let long = "x".repeat(65);
    assert!(config(&[("PORTCULLIS_MAIL_PRODUCT_NAME", long.as_str())]).is_err());
}
