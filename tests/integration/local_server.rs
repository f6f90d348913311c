//! The README's run command: `portcullis serve`, driven over HTTP like curl.

use crate::helpers::{binary, TestDb};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const PASSWORD: &str = "velvet-otter-quantum-harbor-71";
const ADMIN_PASSWORD: &str = "granite-heron-solstice-ember-58";

/// A running local server and its base URL; killed on drop.
struct Server {
    _child: tokio::process::Child,
    base: String,
    _dir: std::path::PathBuf,
}

async fn serve(env: &[(&str, String)]) -> Server {
    let dir = std::env::temp_dir().join(format!("pc-serve-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut cmd = tokio::process::Command::new(binary("portcullis"));
    cmd.arg("serve")
        .current_dir(&dir)
        .env("PORTCULLIS_ADDR", "127.0.0.1:0")
        .env("PORTCULLIS_LOG", "warn")
        .env("PORTCULLIS_BOOTSTRAP_ADMIN_EMAIL", "root@example.com")
        .env("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn portcullis serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if let Some(url) = line.strip_prefix("portcullis: listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("portcullis serve exited before listening");
    })
    .await
    .expect("server starts within 60 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server { _child: child, base, _dir: dir }
}

async fn call(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, reqwest::header::HeaderMap, String) {
    portcullis_shared::crypto::install_tls_provider();
    let client = reqwest::Client::new();
    let mut req = client.request(method, url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

async fn login(server: &Server, email: &str, password: &str) -> String {
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{}/auth/login", server.base),
        None,
        Some(serde_json::json!({"email": email, "password": password})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let tokens: serde_json::Value = serde_json::from_str(&body).expect("json");
    tokens["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn register_login_and_me_work_through_the_local_server() {
    let server = serve(&[]).await;
    let (status, headers, body) =
        call(reqwest::Method::GET, format!("{}/health", server.base), None, None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    for (name, value) in portcullis_shared::http::SECURITY_HEADERS {
        assert_eq!(headers[name], value, "{name}");
    }
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{}/auth/register", server.base),
        None,
        Some(serde_json::json!({"email": "ivy@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = login(&server, "ivy@example.com", PASSWORD).await;
    let (status, _, body) =
        call(reqwest::Method::GET, format!("{}/me", server.base), Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(me["email"], "ivy@example.com");

    let (status, headers, _) = call(reqwest::Method::GET, format!("{}/me", server.base), None, None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, _, _) =
        call(reqwest::Method::GET, format!("{}/me", server.base), Some("not.a.token"), None).await;
    assert_eq!(status, 401);
    let (status, headers, _) =
        call(reqwest::Method::GET, format!("{}/nowhere", server.base), None, None).await;
    assert_eq!(status, 404);
    assert_eq!(headers["cache-control"], "no-store");
    let (status, _, _) =
        call(reqwest::Method::DELETE, format!("{}/auth/login", server.base), None, None).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn admin_routes_pass_the_gateway_for_the_bootstrap_admin_only() {
    let server = serve(&[]).await;
    call(
        reqwest::Method::POST,
        format!("{}/auth/register", server.base),
        None,
        Some(serde_json::json!({"email": "jack@example.com", "password": PASSWORD})),
    )
    .await;
    let user = login(&server, "jack@example.com", PASSWORD).await;
    let admin = login(&server, "root@example.com", ADMIN_PASSWORD).await;
    let (status, _, _) =
        call(reqwest::Method::GET, format!("{}/admin/users", server.base), Some(&user), None).await;
    assert_eq!(status, 403);
    // The admin passes the authorizer and reaches the admin function, which is not built yet.
    let (status, _, body) =
        call(reqwest::Method::GET, format!("{}/admin/users", server.base), Some(&admin), None).await;
    assert_eq!(status, 501, "{body}");
    let (status, _, body) =
        call(reqwest::Method::GET, format!("{}/me", server.base), Some(&admin), None).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"admin\""), "{body}");
}

#[tokio::test]
async fn the_mysql_switch_keeps_users_across_restarts() {
    let db = TestDb::create().await;
    // Both runs share one master key file, as one deployment would.
    let key = std::env::temp_dir().join(format!("pc-key-{}", uuid::Uuid::new_v4())).join("master.key");
    let env = [
        ("PORTCULLIS_STORE", "mysql".to_string()),
        ("PORTCULLIS_DATABASE_URL", db.owner_url()),
        ("PORTCULLIS_LOCAL_KEY_FILE", key.display().to_string()),
    ];
    let first = serve(&env).await;
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{}/auth/register", first.base),
        None,
        Some(serde_json::json!({"email": "kim@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    drop(first);
    let second = serve(&env).await;
    let token = login(&second, "kim@example.com", PASSWORD).await;
    let (status, _, body) =
        call(reqwest::Method::GET, format!("{}/me", second.base), Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("kim@example.com"));
}

#[tokio::test]
async fn refresh_logout_and_revocation_work_through_the_local_server() {
    let server = serve(&[]).await;
    call(
        reqwest::Method::POST,
        format!("{}/auth/register", server.base),
        None,
        Some(serde_json::json!({"email": "max@example.com", "password": PASSWORD})),
    )
    .await;
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{}/auth/login", server.base),
        None,
        Some(serde_json::json!({"email": "max@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 200);
    let tokens: serde_json::Value = serde_json::from_str(&body).expect("json");
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{}/auth/token/refresh", server.base),
        None,
        Some(serde_json::json!({"refresh_token": tokens["refresh_token"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rotated: serde_json::Value = serde_json::from_str(&body).expect("json");
    let access = rotated["access_token"].as_str().expect("access");
    let (status, _, body) =
        call(reqwest::Method::GET, format!("{}/auth/sessions", server.base), Some(access), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"current\":true"), "{body}");
    let (status, _, _) =
        call(reqwest::Method::POST, format!("{}/auth/logout", server.base), Some(access), None).await;
    assert_eq!(status, 204);
    // The revoked session's still-unexpired access token is refused on its next request.
    let (status, _, _) = call(reqwest::Method::GET, format!("{}/me", server.base), Some(access), None).await;
    assert_eq!(status, 401);
}
