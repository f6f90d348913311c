//! `portcullis serve` with no configuration keeps its data in
//! `.portcullis/portcullis.db`: what it acknowledged survives SIGKILL.

use crate::local_server::{call, call_with_key, login, oathtool, serve_in};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "velvet-otter-quantum-harbor-71";

fn parse(body: &str) -> Value {
    serde_json::from_str(body).expect("json")
}

#[tokio::test]
async fn accounts_sessions_second_factors_and_api_keys_survive_a_killed_server() {
    let dir = std::env::temp_dir().join(format!("pc-restart-{}", uuid::Uuid::new_v4()));
    let first = serve_in(&dir, &[]).await;
    let base = first.base.clone();
    for email in ["lee@example.com", "otp@example.com"] {
        let creds = json!({"email": email, "password": PASSWORD});
        let (status, _, body) = call(Method::POST, format!("{base}/auth/register"), None, Some(creds)).await;
        assert_eq!(status, 201, "{body}");
    }
    let creds = json!({"email": "lee@example.com", "password": PASSWORD});
    let (status, _, body) = call(Method::POST, format!("{base}/auth/login"), None, Some(creds.clone())).await;
    assert_eq!(status, 200, "{body}");
    let refresh = parse(&body)["refresh_token"].clone();
    let otp = login(&first, "otp@example.com", PASSWORD).await;
    let (status, _, body) =
        call(Method::POST, format!("{base}/auth/mfa/totp/enroll"), Some(&otp), None).await;
    assert_eq!(status, 200, "{body}");
    let secret = parse(&body)["secret"].as_str().expect("secret").to_owned();
    let confirm = json!({"code": oathtool(&secret)});
    let (status, _, body) =
        call(Method::POST, format!("{base}/auth/mfa/totp/confirm"), Some(&otp), Some(confirm)).await;
    assert_eq!(status, 200, "{body}");
    let admin = crate::local_server::admin_login(&first).await;
    let request = json!({"name": "reporting", "permissions": ["users:read"], "expires_in_days": 30});
    let (status, _, body) =
        call(Method::POST, format!("{base}/admin/api-keys"), Some(&admin), Some(request)).await;
    assert_eq!(status, 201, "{body}");
    let api_key = parse(&body)["api_key"].as_str().expect("key").to_owned();
    first.kill().await;

    let second = serve_in(&dir, &[]).await;
    let base = second.base.clone();
    let (status, _, body) = call(Method::POST, format!("{base}/auth/login"), None, Some(creds)).await;
    assert_eq!(status, 200, "the account survived: {body}");
    let (status, _, body) = call(
        Method::POST,
        format!("{base}/auth/token/refresh"),
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(status, 200, "the session and its refresh token survived: {body}");
    let otp_creds = json!({"email": "otp@example.com", "password": PASSWORD});
    let (status, _, body) = call(Method::POST, format!("{base}/auth/login"), None, Some(otp_creds)).await;
    assert_eq!(
        (status, parse(&body)["mfa_required"].clone()),
        (200, json!(true)),
        "the second factor survived: {body}"
    );
    let users = call_with_key(Method::GET, format!("{base}/admin/users"), &api_key).await;
    assert_eq!(users, 200, "the API key survived");
    let mode = |path: std::path::PathBuf| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).expect("exists").permissions())
            & 0o777
    };
    assert_eq!(mode(dir.join(".portcullis")), 0o700);
    assert_eq!(mode(dir.join(".portcullis/portcullis.db")), 0o600);
}
