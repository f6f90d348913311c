//! TLS to MySQL. With `PORTCULLIS_DATABASE_CA_FILE` (on AWS, the RDS CA
//! bundle) the connection is encrypted and the server's certificate must chain
//! to that bundle alone. scripts/test.sh starts MariaDB with a certificate for
//! 127.0.0.1 from a throw-away CA, and makes a second CA that signed nothing.

use crate::helpers::admin_url;
use mysql_async::prelude::Queryable;
use portcullis_shared::config::{Config, ConfigError};
use portcullis_shared::runtime::Backends;
use secrecy::SecretString;

fn ca_path(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run the tests with scripts/test.sh"))
}

fn config(ca_file: &str) -> Result<Config, ConfigError> {
    let url = format!("{}/mysql", admin_url());
    Config::from_lookup(|name| match name {
        "PORTCULLIS_STORE" => Some("mysql".into()),
        "PORTCULLIS_DATABASE_URL" => Some(url.clone()),
        "PORTCULLIS_DATABASE_CA_FILE" => Some(ca_file.into()),
        _ => None,
    })
}

/// The session's TLS cipher, or the connection error.
async fn cipher(config: &Config) -> Result<String, mysql_async::Error> {
    let backends = Backends::open(config).await.expect("backends open without connecting");
    let pool = backends.mysql.expect("a MySQL store").pool().clone();
    let mut conn = pool.get_conn().await?;
    let row: Option<(String, String)> = conn.query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'").await?;
    Ok(row.map(|(_, cipher)| cipher).unwrap_or_default())
}

#[tokio::test]
async fn the_server_certificate_must_chain_to_the_configured_ca() {
    portcullis_shared::crypto::install_tls_provider();
    let trusted = config(&ca_path("PORTCULLIS_TEST_MYSQL_CA")).expect("config");
    let cipher_name = cipher(&trusted).await.expect("TLS connection with the server's CA");
    assert!(!cipher_name.is_empty(), "the session is not encrypted");

    // The URL asks for no TLS; the CA file alone makes it required.
    let plain = Config::from_lookup(|name| match name {
        "PORTCULLIS_STORE" => Some("mysql".into()),
        "PORTCULLIS_DATABASE_URL" => Some(format!("{}/mysql", admin_url())),
        _ => None,
    })
    .expect("config");
    assert_eq!(cipher(&plain).await.expect("plain connection"), "", "control: no CA file, no TLS");

    let other = config(&ca_path("PORTCULLIS_TEST_MYSQL_OTHER_CA")).expect("config");
    let refused = cipher(&other).await.expect_err("a CA that did not sign the server's certificate");
    assert!(format!("{refused:?}").contains("UnknownIssuer"), "{refused:?}");

    // TLS demanded by the URL, no CA file: only the public web roots, which do
    // not include a private (or RDS) CA.
    let url = SecretString::from(format!("{}/mysql?require_ssl=true", admin_url()));
    let opts = portcullis_shared::adapters::mysql::mysql_opts(&url, None).expect("opts");
    let refused = mysql_async::Conn::new(opts).await.expect_err("a private CA is not a web root");
    assert!(format!("{refused:?}").contains("UnknownIssuer"), "{refused:?}");
}

#[test]
fn a_missing_or_malformed_ca_file_stops_the_start() {
    let missing = config("/nonexistent/rds-ca.pem").expect_err("missing file");
    assert!(missing.to_string().contains("PORTCULLIS_DATABASE_CA_FILE"), "{missing}");
    let path = std::env::temp_dir().join(format!("portcullis-not-a-ca-{}.pem", std::process::id()));
    std::fs::write(&path, "not a certificate\n").expect("write");
    let garbage = config(path.to_str().expect("utf-8 path")).expect_err("no certificate");
    std::fs::remove_file(&path).ok();
    assert!(garbage.to_string().contains("no PEM certificate"), "{garbage}");
}
