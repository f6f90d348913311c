//! `portcullis serve --upstream`: the local server protects a team's backend
//! as the deployed authorizer would. The backend here is a real HTTP server
//! that reports what reached it.

use crate::local_server::{call, login, serve};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const POLICY: &str = r#"{
  "permissions": ["users:read", "users:manage", "sessions:revoke", "apikeys:manage", "audit:read",
                  "orders:read", "orders:read:any"],
  "roles": {"user": ["orders:read"], "admin": {"grants": ["users:*", "sessions:*", "apikeys:*", "audit:*"], "mfa": true}},
  "routes": [
    {"method": "GET", "path": "/orders/{user_id}/{order_id}", "permission": "orders:read",
     "owner": {"param": "user_id", "unless": "orders:read:any"}},
    {"method": "*", "path": "/uploads/{proxy+}", "permission": "session"},
    {"method": "GET", "path": "/status", "permission": "public"}
  ]
}"#;

/// The byte at `i` of the bodies sent each way: crosses every chunk size.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A backend on a free port that answers each request with what it received
/// (method, path and query, the `x-portcullis-*` headers, whether the body was
/// intact) and, for `?reply=N`, N pattern bytes instead. Counts its requests.
async fn backend() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 64 << 20).await.expect("body");
            let intact = bytes.iter().enumerate().all(|(i, b)| *b == pattern(i));
            let query = parts.uri.query().unwrap_or_default().to_owned();
            if let Some(n) = query.strip_prefix("reply=").and_then(|n| n.parse::<usize>().ok()) {
                return axum::body::Body::from((0..n).map(pattern).collect::<Vec<u8>>());
            }
            let context: serde_json::Map<String, Value> = parts
                .headers
                .iter()
                .filter(|(k, _)| k.as_str().replace('_', "-").starts_with("x-portcullis-"))
                .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or("?"))))
                .collect();
            let report = json!({"method": parts.method.as_str(), "path": parts.uri.path(), "query": query,
                "context": context, "bytes": bytes.len(), "intact": intact,
                "host": parts.headers.get("host").and_then(|h| h.to_str().ok()),
                "original_url": parts.headers.get("x-original-url").and_then(|h| h.to_str().ok()),
                "forwarded_for": parts.headers.get("x-forwarded-for").and_then(|h| h.to_str().ok())});
            axum::body::Body::from(report.to_string())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("backend") });
    (url, calls)
}

async fn server_for(upstream: &str) -> (crate::local_server::Server, std::path::PathBuf) {
    let file = std::env::temp_dir().join(format!("pc-forward-{}.json", crate::helpers::hex_token()));
    std::fs::write(&file, POLICY).expect("policy");
    let env = [
        ("PORTCULLIS_POLICY_FILE", file.display().to_string()),
        ("PORTCULLIS_UPSTREAM", upstream.to_owned()),
    ];
    (serve(&env).await, file)
}

async fn register(base: &str, email: &str) -> String {
    let creds = json!({"email": email, "password": "velvet-otter-quantum-harbor-71"});
    let (status, _, body) = call(Method::POST, format!("{base}/auth/register"), None, Some(creds)).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).expect("json")["user_id"].as_str().expect("id").to_owned()
}

/// `method url` with a bearer token and extra headers: (status, body).
async fn send(method: Method, url: String, token: Option<&str>, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[tokio::test]
async fn the_local_server_authorizes_every_request_for_the_team_backend_and_forwards_the_caller() {
    portcullis_shared::crypto::install_tls_provider();
    let (upstream, calls) = backend().await;
    let (server, _policy) = server_for(&upstream).await;
    let base = server.base.clone();
    let ada = register(&base, "ada@example.com").await;
    let bob = register(&base, "bob@example.com").await;
    let token = login(&server, "ada@example.com", "velvet-otter-quantum-harbor-71").await;
    // Ada reads her own order; a copy of a context header she sent never arrives.
    let forged = [
        ("X-Portcullis-Sub", bob.as_str()),
        ("x-portcullis-roles", "admin"),
        ("X-Portcullis-Api-Key-Id", "k1"),
        ("X_Portcullis_Permission", "orders:read:any"),
        ("X-Original-URL", "/admin/users"),
        ("X-Forwarded-For", "10.0.0.1"),
    ];
    let (status, body) = send(Method::GET, format!("{base}/orders/{ada}/1?x=1"), Some(&token), &forged).await;
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).expect("report");
    assert_eq!(seen["path"], format!("/orders/{ada}/1"));
    assert_eq!(seen["query"], "x=1");
    assert_eq!(seen["context"]["x-portcullis-sub"], ada.as_str(), "{seen}");
    assert_eq!(seen["context"]["x-portcullis-roles"], "user", "{seen}");
    let secret =
        std::fs::read_to_string(server.dir.join(".portcullis/upstream-secret")).expect("the proxy secret");
    assert_eq!(seen["context"]["x-portcullis-proxy"], secret.trim(), "the proxy proves the hop: {seen}");
    assert_eq!(seen["context"]["x-portcullis-permission"], "orders:read");
    assert_eq!(seen["context"]["x-portcullis-amr"], "pwd");
    assert_eq!(seen["context"].get("x-portcullis-api-key-id"), None, "{seen}");
    assert_eq!(seen["context"].get("x_portcullis_permission"), None, "WSGI reads it as the real one: {seen}");
    assert!(seen["context"]["x-portcullis-sid"].as_str().is_some_and(|s| !s.is_empty()), "{seen}");
    assert_eq!(seen["host"], upstream.trim_start_matches("http://"));
    assert_eq!(seen["original_url"], Value::Null, "a rewritten URL is no route of this request: {seen}");
    assert_eq!(seen["forwarded_for"], "127.0.0.1", "where it came from is the server's to say: {seen}");
    let before = calls.load(Ordering::SeqCst);
    // Refusals are the authorizer's problems, and the backend never hears of them.
    for (url, token, status) in [
        (format!("{base}/orders/{bob}/1"), Some(token.as_str()), 403),
        (format!("{base}/orders/{ada}/..%2F..%2F{bob}%2F1"), Some(token.as_str()), 403),
        (format!("{base}/orders/{ada}/1"), None, 401),
        (format!("{base}/nowhere"), Some(token.as_str()), 403),
    ] {
        let (got, body) = send(Method::GET, url.clone(), token, &[]).await;
        assert_eq!(got, status, "{url}: {body}");
        assert!(body.contains("urn:portcullis:problem:"), "{url}: {body}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), before, "no refused request reached the backend");
    // A public route names nobody, whatever the client claims.
    let (status, body) = send(Method::GET, format!("{base}/status"), None, &forged).await;
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).expect("report");
    assert_eq!(seen["context"]["x-portcullis-sub"], "", "{seen}");
    assert_eq!(seen["context"]["x-portcullis-roles"], "", "{seen}");
    assert_eq!(seen["context"].get("x-portcullis-api-key-id"), None, "{seen}");
    // Portcullis' own routes are still its own.
    let (status, body) = send(Method::GET, format!("{base}/me"), Some(&token), &[]).await;
    assert_eq!((status, body.contains(&ada)), (200, true), "{body}");
}

#[tokio::test]
async fn bodies_stream_both_ways_and_an_unreachable_upstream_is_a_502_problem() {
    portcullis_shared::crypto::install_tls_provider();
    let (upstream, _) = backend().await;
    let (server, _policy) = server_for(&upstream).await;
    let base = server.base.clone();
    register(&base, "cy@example.com").await;
    let token = login(&server, "cy@example.com", "velvet-otter-quantum-harbor-71").await;
    // Far beyond the functions' body limit, and not a multiple of any buffer.
    let size = (8 << 20) + 4097;
    let upload: Vec<u8> = (0..size).map(pattern).collect();
    let resp = reqwest::Client::new()
        .put(format!("{base}/uploads/big.bin"))
        .bearer_auth(&token)
        .body(upload)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status().as_u16(), 200);
    let seen: Value = resp.json().await.expect("report");
    assert_eq!((seen["bytes"].as_u64(), &seen["intact"]), (Some(size as u64), &json!(true)), "{seen}");
    let resp = reqwest::Client::new()
        .get(format!("{base}/uploads/x?reply={size}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status().as_u16(), 200);
    let bytes = resp.bytes().await.expect("bytes");
    assert_eq!(bytes.len(), size);
    assert!(bytes.iter().enumerate().all(|(i, b)| *b == pattern(i)), "the download arrived intact");
    // A backend that is not listening.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let (server, _policy) = server_for(&dead).await;
    let (status, headers, body) = call(Method::GET, format!("{}/status", server.base), None, None).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(body.contains("urn:portcullis:problem:bad-gateway"), "{body}");
}
