//! The optional Have I Been Pwned range check, against a local stub server.

use crate::helpers::{config, deps_with, key_file};
use crate::helpers::{parts, request};

fn sha1_hex(text: &str) -> String {
    hex::encode_upper(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        text.as_bytes(),
    ))
}

/// A range API that knows one breached password, pads its answers, and records
/// the prefixes it was asked for.
async fn stub(breached: &str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let hash = sha1_hex(breached);
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    let app = axum::Router::new().route(
        "/range/{prefix}",
        axum::routing::get(move |axum::extract::Path(prefix): axum::extract::Path<String>| {
            let hash = hash.clone();
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push(prefix.clone());
                let mut body = String::from("0000000000000000000000000000000000A:0\r\n");
                if hash.starts_with(&prefix) {
                    body.push_str(&format!("{}:42\r\n", &hash[5..]));
                }
                body
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}"), asked)
}

#[tokio::test]
async fn breached_passwords_are_refused_and_only_a_hash_prefix_leaves() {
    let breached = "tangerine-walrus-cobalt-99";
    let (url, asked) = stub(breached).await;
    let deps =
        deps_with(&config(&[("PORTCULLIS_HIBP_URL", url), ("PORTCULLIS_LOCAL_KEY_FILE", key_file())])).await;
    let body = |pw: &str| serde_json::json!({"email": "gina@example.com", "password": pw}).to_string();

    let (status, text, _) = parts(
        portcullis_login::handle(&deps, request("POST", "/auth/register", Some(&body(breached)), None)).await,
    );
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("\"breached\""), "{text}");
    let (status, text, _) = parts(
        portcullis_login::handle(
            &deps,
            request("POST", "/auth/register", Some(&body("velvet-otter-quantum-harbor-71")), None),
        )
        .await,
    );
    assert_eq!(status, 201, "{text}");
    let asked = asked.lock().expect("lock").clone();
    assert_eq!(asked.len(), 2);
    assert!(asked.iter().all(|p| p.len() == 5), "only 5 hex digits are sent: {asked:?}");
}

#[tokio::test]
async fn an_unreachable_breach_service_fails_closed() {
    // Port 9 on loopback: nothing listens, so the check cannot complete.
    let deps = deps_with(&config(&[
        ("PORTCULLIS_HIBP_URL", "http://127.0.0.1:9".into()),
        ("PORTCULLIS_LOCAL_KEY_FILE", key_file()),
    ]))
    .await;
    let body = serde_json::json!({"email": "hal@example.com", "password": "velvet-otter-quantum-harbor-71"})
        .to_string();
    let (status, text, _) =
        parts(portcullis_login::handle(&deps, request("POST", "/auth/register", Some(&body), None)).await);
    assert_eq!(status, 503, "{text}");
    assert!(!text.contains("127.0.0.1"), "internal details leaked: {text}");
}
