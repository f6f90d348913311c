//! The README's run command: `portcullis serve`, driven over HTTP like curl.

use crate::helpers::{binary, TestDb};

const PASSWORD: &str = "velvet-otter-quantum-harbor-71";
const ADMIN_PASSWORD: &str = "granite-heron-solstice-ember-58";

/// A running local server and its base URL; killed on drop.
pub(crate) struct Server {
    _child: tokio::process::Child,
    pub(crate) base: String,
    /// Its working directory (the home of its `.portcullis/`).
    pub(crate) dir: std::path::PathBuf,
}

pub(crate) async fn serve(env: &[(&str, String)]) -> Server {
    let dir = std::env::temp_dir().join(format!("pc-serve-{}", uuid::Uuid::new_v4()));
    serve_in(&dir, env).await
}

impl Server {
    /// Ends the server with SIGKILL (no shutdown of any kind) and waits for it.
    pub(crate) async fn kill(mut self) {
        self._child.kill().await.expect("SIGKILL");
    }
}

/// `portcullis serve` with `dir` as its working directory (and so the home of
/// its `.portcullis/`).
pub(crate) async fn serve_in(dir: &std::path::Path, env: &[(&str, String)]) -> Server {
    let dir = dir.to_owned();
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
    let base = crate::helpers::announced(&mut child, "portcullis: listening on ").await;
    Server { _child: child, base, dir }
}

pub(crate) async fn call(
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

pub(crate) async fn login(server: &Server, email: &str, password: &str) -> String {
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
    let (status, headers, _) =
        call(reqwest::Method::DELETE, format!("{}/auth/login", server.base), None, None).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST", "the methods of this path, from the route table");
    let (status, headers, _) =
        call(reqwest::Method::GET, format!("{}/admin/api-keys", server.base), None, None).await;
    assert_eq!((status, headers["allow"].to_str().ok()), (405, Some("POST")));
}

pub(crate) async fn call_with_key(method: reqwest::Method, url: String, key: &str) -> u16 {
    portcullis_shared::crypto::install_tls_provider();
    let resp =
        reqwest::Client::new().request(method, url).header("x-api-key", key).send().await.expect("request");
    resp.status().as_u16()
}

#[tokio::test]
async fn rbac_role_changes_revocations_and_api_keys_apply_on_the_next_request() {
    let server = serve(&[]).await;
    let (_, _, body) = call(
        reqwest::Method::POST,
        format!("{}/auth/register", server.base),
        None,
        Some(serde_json::json!({"email": "jack@example.com", "password": PASSWORD})),
    )
    .await;
    let jack_id = serde_json::from_str::<serde_json::Value>(&body).expect("json")["user_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Jack signs in with a second factor, as the shipped `support` role's grants need.
    let user = login_with_second_factor(&server, "jack@example.com", PASSWORD).await;
    let admin = admin_login(&server).await;
    let users_url = format!("{}/admin/users", server.base);

    let (status, _, _) = call(reqwest::Method::GET, users_url.clone(), Some(&user), None).await;
    assert_eq!(status, 403, "a plain user reached an admin route");
    let (status, _, body) = call(reqwest::Method::GET, users_url.clone(), Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    let emails: Vec<&str> =
        listed.as_array().expect("array").iter().filter_map(|u| u["email"].as_str()).collect();
    assert!(emails.contains(&"jack@example.com") && emails.contains(&"root@example.com"), "{emails:?}");

    // Granting `support` applies to jack's very next request, with the same token.
    let roles_url = format!("{}/admin/users/{jack_id}/roles", server.base);
    let (status, _, body) = call(
        reqwest::Method::POST,
        roles_url.clone(),
        Some(&admin),
        Some(serde_json::json!({"role": "support"})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _, _) = call(reqwest::Method::GET, users_url.clone(), Some(&user), None).await;
    assert_eq!(status, 200, "the new role did not apply on the next request");
    let (status, _, _) = call(
        reqwest::Method::POST,
        roles_url.clone(),
        Some(&user),
        Some(serde_json::json!({"role": "admin"})),
    )
    .await;
    assert_eq!(status, 403, "support must not grant roles");
    let (status, _, _) = call(
        reqwest::Method::POST,
        roles_url.clone(),
        Some(&admin),
        Some(serde_json::json!({"role": "root"})),
    )
    .await;
    assert_eq!(status, 400, "unknown roles are refused");
    let (status, _, _) =
        call(reqwest::Method::DELETE, format!("{roles_url}/support"), Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, _, _) = call(reqwest::Method::GET, users_url.clone(), Some(&user), None).await;
    assert_eq!(status, 403, "the removed role still applied");

    // An admin revokes jack's sessions: his next request is refused.
    let (status, _, _) = call(
        reqwest::Method::POST,
        format!("{}/admin/users/{jack_id}/sessions/revoke", server.base),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, _) = call(reqwest::Method::GET, format!("{}/me", server.base), Some(&user), None).await;
    assert_eq!(status, 401);

    // API keys: scoped, shown once, useless for user routes, dead once revoked.
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{}/admin/api-keys", server.base),
        Some(&admin),
        Some(serde_json::json!({"name": "reporting", "permissions": ["users:read"], "expires_in_days": 30})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).expect("json");
    let key = created["api_key"].as_str().expect("key").to_owned();
    let key_id = created["key_id"].as_str().expect("id").to_owned();
    assert_eq!(call_with_key(reqwest::Method::GET, users_url.clone(), &key).await, 200);
    assert_eq!(call_with_key(reqwest::Method::GET, format!("{}/me", server.base), &key).await, 403);
    assert_eq!(
        call_with_key(
            reqwest::Method::POST,
            format!("{}/admin/users/{jack_id}/sessions/revoke", server.base),
            &key
        )
        .await,
        403
    );
    let (status, _, _) = call(
        reqwest::Method::POST,
        format!("{}/admin/api-keys", server.base),
        Some(&user),
        Some(serde_json::json!({"name": "x", "permissions": ["users:read"], "expires_in_days": 1})),
    )
    .await;
    assert_eq!(status, 401, "jack's session is revoked");
    let (status, _, _) =
        call(reqwest::Method::DELETE, format!("{}/admin/api-keys/{key_id}", server.base), Some(&admin), None)
            .await;
    assert_eq!(status, 204);
    assert_eq!(call_with_key(reqwest::Method::GET, users_url.clone(), &key).await, 401);
    let last = if key.ends_with('A') { 'B' } else { 'A' };
    let tampered = format!("{}{last}", &key[..key.len() - 1]);
    assert_eq!(call_with_key(reqwest::Method::GET, users_url, &tampered).await, 401);
}

/// The key and role rules of docs/security/api-keys.md, on the local server's
/// embedded stores: a key dies with its creator's admin role, and the last admin
/// cannot remove its own.
#[tokio::test]
async fn a_key_dies_with_its_creators_role_and_the_last_admin_stays() {
    let server = serve(&[]).await;
    let (_, _, body) = call(
        reqwest::Method::POST,
        format!("{}/auth/register", server.base),
        None,
        Some(serde_json::json!({"email": "kim@example.com", "password": PASSWORD})),
    )
    .await;
    let kim_id = serde_json::from_str::<serde_json::Value>(&body).expect("json")["user_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let root = admin_login(&server).await;
    let users_url = format!("{}/admin/users", server.base);
    let (_, _, body) = call(reqwest::Method::GET, users_url.clone(), Some(&root), None).await;
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    let root_id = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|u| u["email"] == "root@example.com")
        .and_then(|u| u["user_id"].as_str())
        .expect("root listed")
        .to_owned();
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{}/admin/users/{kim_id}/roles", server.base),
        Some(&root),
        Some(serde_json::json!({"role": "admin"})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let kim = login_with_second_factor(&server, "kim@example.com", PASSWORD).await;
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{}/admin/api-keys", server.base),
        Some(&kim),
        Some(serde_json::json!({"name": "sync", "permissions": ["users:read"], "expires_in_days": 7})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let key = serde_json::from_str::<serde_json::Value>(&body).expect("json")["api_key"]
        .as_str()
        .expect("key")
        .to_owned();
    assert_eq!(call_with_key(reqwest::Method::GET, users_url.clone(), &key).await, 200);

    let (status, _, _) = call(
        reqwest::Method::DELETE,
        format!("{}/admin/users/{kim_id}/roles/admin", server.base),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        call_with_key(reqwest::Method::GET, users_url, &key).await,
        401,
        "the key outlived its creator's admin role"
    );

    let (status, headers, body) = call(
        reqwest::Method::DELETE,
        format!("{}/admin/users/{root_id}/roles/admin", server.base),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, 409, "the last admin removed its own role: {body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, _, _) =
        call(reqwest::Method::GET, format!("{}/admin/users", server.base), Some(&root), None).await;
    assert_eq!(status, 200, "root is still an admin");
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

/// The bootstrap admin (`root@example.com`) signed in with a second factor,
/// as the shipped `admin` role's grants need. Once per server.
pub(crate) async fn admin_login(server: &Server) -> String {
    login_with_second_factor(server, "root@example.com", ADMIN_PASSWORD).await
}

/// `email` signed in with a second factor: its password-only session enrols
/// TOTP and steps up (`POST /auth/reauth`) with the password and the next
/// step's code. Once per account: the secret is not kept.
pub(crate) async fn login_with_second_factor(server: &Server, email: &str, password: &str) -> String {
    let token = login(server, email, password).await;
    let post = |path: &str, body: Option<serde_json::Value>| {
        call(reqwest::Method::POST, format!("{}{path}", server.base), Some(&token), body)
    };
    let (status, _, body) = post("/auth/mfa/totp/enroll", None).await;
    assert_eq!(status, 200, "{body}");
    let secret = serde_json::from_str::<serde_json::Value>(&body).expect("json")["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let (status, _, body) =
        post("/auth/mfa/totp/confirm", Some(serde_json::json!({"code": oathtool(&secret)}))).await;
    assert_eq!(status, 200, "{body}");
    let reauth = serde_json::json!({"password": password, "code": oathtool_at(&secret, 30)});
    let (status, _, body) = post("/auth/reauth", Some(reauth)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).expect("json")["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// The code `offset_secs` from now.
pub(crate) fn oathtool_at(secret: &str, offset_secs: u64) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let at = format!("@{}", now + offset_secs);
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", "--now", &at, secret])
        .output()
        .expect("oathtool");
    String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
}

/// The claims of a JWT, unverified (the test reads what it was just given).
pub(crate) fn payload(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

pub(crate) fn oathtool(secret: &str) -> String {
    let out =
        std::process::Command::new("oathtool").args(["--totp", "-b", secret]).output().expect("oathtool");
    String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
}

#[tokio::test]
async fn mfa_enrolment_and_login_work_through_the_local_server() {
    let server = serve(&[]).await;
    let creds = serde_json::json!({"email": "otp@example.com", "password": PASSWORD});
    call(reqwest::Method::POST, format!("{}/auth/register", server.base), None, Some(creds.clone())).await;
    let token = login(&server, "otp@example.com", PASSWORD).await;
    let (status, _, body) =
        call(reqwest::Method::POST, format!("{}/auth/mfa/totp/enroll", server.base), Some(&token), None)
            .await;
    assert_eq!(status, 200, "{body}");
    let secret = serde_json::from_str::<serde_json::Value>(&body).expect("json")["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{}/auth/mfa/totp/confirm", server.base),
        Some(&token),
        Some(serde_json::json!({"code": oathtool(&secret)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Step-up: this token's login had no second factor, so it cannot remove the
    // one just enrolled (a stolen token would otherwise turn it off with one code).
    let (status, _, body) = call(
        reqwest::Method::DELETE,
        format!("{}/auth/mfa/totp", server.base),
        Some(&token),
        Some(serde_json::json!({"code": oathtool(&secret)})),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("urn:portcullis:problem:reauthentication-required"), "{body}");
    // POST /auth/reauth with the password alone is refused now that TOTP is on;
    // with the next step's code it answers fresh tokens for the same session.
    let reauth = |body: serde_json::Value| {
        call(reqwest::Method::POST, format!("{}/auth/reauth", server.base), Some(&token), Some(body))
    };
    let (status, _, body) = reauth(serde_json::json!({"password": PASSWORD})).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) =
        reauth(serde_json::json!({"password": PASSWORD, "code": oathtool_at(&secret, 30)})).await;
    assert_eq!(status, 200, "{body}");
    let stepped: serde_json::Value = serde_json::from_str(&body).expect("json");
    let claims = payload(stepped["access_token"].as_str().expect("access token"));
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp"]), "{claims}");
    assert_eq!(claims["sid"], payload(&token)["sid"], "the same session");
    let (status, _, _) =
        call(reqwest::Method::POST, format!("{}/auth/logout", server.base), Some(&token), None).await;
    assert_eq!(status, 204);
    let (status, _, body) =
        call(reqwest::Method::POST, format!("{}/auth/login", server.base), None, Some(creds)).await;
    assert_eq!(status, 200);
    let challenge: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(challenge["mfa_required"], true, "{body}");
    // The re-authentication consumed the next step; wait for it, then use the one after (real clock here).
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_secs(30 - now % 30 + 1)).await;
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{}/auth/mfa/verify", server.base),
        None,
        Some(serde_json::json!({"mfa_token": challenge["mfa_token"], "code": oathtool_at(&secret, 30)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let tokens: serde_json::Value = serde_json::from_str(&body).expect("json");
    let (status, _, body) =
        call(reqwest::Method::GET, format!("{}/me", server.base), tokens["access_token"].as_str(), None)
            .await;
    assert_eq!(status, 200);
    assert!(body.contains("\"mfa_enabled\":true"), "{body}");
}

/// The local server hands the functions the query string as API Gateway does:
/// `GET /admin/users?limit=1` is one user, not all of them.
#[tokio::test]
async fn query_parameters_reach_the_functions_through_the_local_server() {
    let server = serve(&[]).await;
    for email in ["q1@example.com", "q2@example.com"] {
        let body = serde_json::json!({"email": email, "password": PASSWORD});
        let (status, _, text) =
            call(reqwest::Method::POST, format!("{}/auth/register", server.base), None, Some(body)).await;
        assert_eq!(status, 201, "{text}");
    }
    let token = admin_login(&server).await;
    let (status, _, body) =
        call(reqwest::Method::GET, format!("{}/admin/users?limit=1", server.base), Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    let users: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    assert_eq!(users.len(), 1, "{body}");
    let (status, _, body) =
        call(reqwest::Method::GET, format!("{}/admin/users?limit=0", server.base), Some(&token), None).await;
    assert_eq!(status, 400, "{body}");
}

/// `GET /me/events` through the local server, on the embedded store: a person
/// sees the wrong password tried on its account, and nothing of anyone else's.
#[tokio::test]
async fn a_person_sees_its_own_security_events_through_the_local_server() {
    let server = serve(&[]).await;
    for email in ["eve@example.com", "sam@example.com"] {
        let creds = serde_json::json!({"email": email, "password": PASSWORD});
        call(reqwest::Method::POST, format!("{}/auth/register", server.base), None, Some(creds)).await;
    }
    let wrong = serde_json::json!({"email": "eve@example.com", "password": "not-her-password-at-all"});
    let (status, _, _) =
        call(reqwest::Method::POST, format!("{}/auth/login", server.base), None, Some(wrong)).await;
    assert_eq!(status, 401);
    let eve = login(&server, "eve@example.com", PASSWORD).await;
    let _sam = login(&server, "sam@example.com", PASSWORD).await;
    let (status, headers, body) =
        call(reqwest::Method::GET, format!("{}/me/events?limit=200", server.base), Some(&eve), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let events: serde_json::Value = serde_json::from_str(&body).expect("json");
    let types: Vec<&str> =
        events["events"].as_array().expect("events").iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types.iter().filter(|t| **t == "login_success").count(),
        1,
        "Eve's login only, not Sam's: {types:?}"
    );
    assert!(types.contains(&"login_failure"), "{types:?}");
    let (status, _, _) = call(reqwest::Method::GET, format!("{}/me/events", server.base), None, None).await;
    assert_eq!(status, 401);
}
