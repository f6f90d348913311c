//! The same HTTP-level behaviour from both identity providers, through the
//! local server (authorizer first, then the functions): the native one, and an
//! Amazon Cognito user pool on moto (pool, app client and users created here).
//! Each scenario runs once per provider; where Cognito differs on purpose (no
//! recovery codes) the scenario says so.

use crate::local_server::{call, oathtool, oathtool_at, payload, serve, Server};
use aws_sdk_cognitoidentityprovider::Client;
use portcullis_shared::aws::aws_config;
use reqwest::Method;
use serde_json::{json, Value};

pub(crate) const PASSWORD: &str = "velvet-otter-quantum-harbor-71";
const NEW_PASSWORD: &str = "granite-heron-solstice-ember-58";

#[derive(Clone)]
pub(crate) enum Provider {
    Native,
    Cognito { pool_id: String, client_id: String, secret: String },
}

/// A fresh pool (see [`crate::cognito::pool`]) as a provider.
pub(crate) async fn cognito_pool() -> (Provider, Client) {
    let client = Client::new(aws_config().await);
    let pool = crate::cognito::pool(&client, &format!("pc-http-{}", crate::helpers::hex_token())).await;
    (Provider::Cognito { pool_id: pool.id, client_id: pool.client_id, secret: pool.secret }, client)
}

/// The settings that put the functions on a pool of moto's Cognito.
pub(crate) fn cognito_settings(pool_id: &str, client_id: &str) -> [(&'static str, String); 5] {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL: run scripts/test.sh");
    [
        ("PORTCULLIS_IDENTITY_PROVIDER", "cognito".to_owned()),
        ("PORTCULLIS_COGNITO_USER_POOL_ID", pool_id.to_owned()),
        ("PORTCULLIS_COGNITO_CLIENT_IDS", client_id.to_owned()),
        ("PORTCULLIS_COGNITO_REGION", "us-east-1".to_owned()),
        ("PORTCULLIS_COGNITO_JWKS_URL", format!("{endpoint}/{pool_id}/.well-known/jwks.json")),
    ]
}

pub(crate) async fn server(provider: &Provider, extra: &[(&str, String)]) -> Server {
    let mut env: Vec<(&str, String)> = extra.to_vec();
    if let Provider::Cognito { pool_id, client_id, .. } = provider {
        env.extend(cognito_settings(pool_id, client_id));
    }
    serve(&env).await
}

/// Registers through the contract (with Cognito, the account is created with the
/// admin APIs and can sign in at once, as a native one).
pub(crate) async fn register(server: &Server, _provider: &Provider, email: &str) {
    let (status, _, body) = call(
        Method::POST,
        format!("{}/auth/register", server.base),
        None,
        Some(json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

pub(crate) async fn login(
    server: &Server,
    email: &str,
    password: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let (status, headers, body) = call(
        Method::POST,
        format!("{}/auth/login", server.base),
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await;
    (status, headers, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn problem(body: &Value) -> (Value, Value, Value) {
    (body["type"].clone(), body["title"].clone(), body["status"].clone())
}

async fn login_me_refresh_logout(provider: Provider) {
    let server = server(&provider, &[]).await;
    let email = format!("ada-{}@example.com", crate::helpers::hex_token());
    register(&server, &provider, &email).await;

    // Enumeration-safe: a wrong password and an unknown account look the same.
    let (wrong, _, wrong_body) = login(&server, &email, "not-the-password-at-all-9").await;
    let (unknown, _, unknown_body) = login(&server, "nobody-here@example.com", PASSWORD).await;
    assert_eq!((wrong, unknown), (401, 401));
    assert_eq!(problem(&wrong_body), problem(&unknown_body));
    assert_eq!(wrong_body.as_object().map(|o| o.len()), unknown_body.as_object().map(|o| o.len()));

    let (status, headers, tokens) = login(&server, &email, PASSWORD).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_i64().unwrap_or(0) > 0);
    let access = tokens["access_token"].as_str().expect("access token").to_owned();
    let refresh = tokens["refresh_token"].as_str().expect("refresh token").to_owned();

    let (status, _, body) = call(Method::GET, format!("{}/me", server.base), Some(&access), None).await;
    assert_eq!(status, 200, "{body}");
    let me: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["mfa_enabled"], false);
    assert!(!me["user_id"].as_str().unwrap_or_default().is_empty());

    let (status, _, body) = call(
        Method::POST,
        format!("{}/auth/token/refresh", server.base),
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let renewed: Value = serde_json::from_str(&body).expect("json");
    let access2 = renewed["access_token"].as_str().expect("access token").to_owned();
    let refresh2 = renewed["refresh_token"].as_str().expect("refresh token").to_owned();
    let (status, _, body) =
        call(Method::GET, format!("{}/auth/sessions", server.base), Some(&access2), None).await;
    assert_eq!(status, 200, "{body}");
    let sessions: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(sessions[0]["current"], true);

    let (status, _, _) =
        call(Method::POST, format!("{}/auth/logout", server.base), Some(&access2), None).await;
    assert_eq!(status, 204);
    // The revocation is known to the authorizer: both access tokens of the session die now.
    for token in [&access, &access2] {
        let (status, _, _) = call(Method::GET, format!("{}/me", server.base), Some(token), None).await;
        assert_eq!(status, 401);
    }
    let (status, _, _) = call(
        Method::POST,
        format!("{}/auth/token/refresh", server.base),
        None,
        Some(json!({"refresh_token": refresh2})),
    )
    .await;
    assert_eq!(status, 401);
}

async fn password_change_and_lockout(provider: Provider) {
    let server = server(&provider, &[]).await;
    let email = format!("bo-{}@example.com", crate::helpers::hex_token());
    register(&server, &provider, &email).await;
    let (_, _, tokens) = login(&server, &email, PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("access token").to_owned();
    let change = |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let (status, _, body) = call(
        Method::POST,
        format!("{}/auth/password", server.base),
        Some(&access),
        Some(change("wrong-current-password-1", NEW_PASSWORD)),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = call(
        Method::POST,
        format!("{}/auth/password", server.base),
        Some(&access),
        Some(change(PASSWORD, "password")),
    )
    .await;
    assert_eq!(status, 422, "our policy runs first: {body}");
    let (status, _, body) = call(
        Method::POST,
        format!("{}/auth/password", server.base),
        Some(&access),
        Some(change(PASSWORD, NEW_PASSWORD)),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    // Three attempts so far (a right current password resets nothing); this is the
    // fourth, and the login with the new password, the fifth, resets the count.
    assert_eq!(login(&server, &email, PASSWORD).await.0, 401);
    assert_eq!(login(&server, &email, NEW_PASSWORD).await.0, 200);

    // Lockout: the same 429 with Retry-After for an existing and an unknown account.
    for account in [email.as_str(), "ghost@example.com"] {
        let mut last = (0, None);
        for _ in 0..6 {
            let (status, headers, _) = login(&server, account, "wrong-password-again-42").await;
            last = (status, headers.get("retry-after").map(|v| v.to_str().unwrap_or_default().to_owned()));
        }
        assert_eq!(last.0, 429, "{account}");
        assert!(last.1.is_some_and(|v| v.parse::<u64>().unwrap_or(0) >= 1), "{account}");
    }
}

/// Registers `email` and turns TOTP on for it; the base32 secret.
async fn with_totp(server: &Server, provider: &Provider, email: &str) -> String {
    register(server, provider, email).await;
    let (_, _, tokens) = login(server, email, PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("access token").to_owned();
    let (status, _, body) =
        call(Method::POST, format!("{}/auth/mfa/totp/enroll", server.base), Some(&access), None).await;
    assert_eq!(status, 200, "{body}");
    let enrolment: Value = serde_json::from_str(&body).expect("json");
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    assert!(enrolment["otpauth_uri"].as_str().unwrap_or_default().starts_with("otpauth://totp/"));
    let (status, _, body) = call(
        Method::POST,
        format!("{}/auth/mfa/totp/confirm", server.base),
        Some(&access),
        Some(json!({"code": oathtool(&secret)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    secret
}

async fn totp_enrolment_and_login(provider: Provider) {
    let server = server(&provider, &[]).await;
    let email = format!("cy-{}@example.com", crate::helpers::hex_token());
    let secret = with_totp(&server, &provider, &email).await;
    let (status, _, challenge) = login(&server, &email, PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(challenge["mfa_required"], true, "{challenge}");
    assert!(challenge.get("access_token").is_none());
    let verify = |code: String| json!({"mfa_token": challenge["mfa_token"], "code": code});
    let (status, _, _) =
        call(Method::POST, format!("{}/auth/mfa/verify", server.base), None, Some(verify("000000".into())))
            .await;
    assert_eq!(status, 401, "a wrong code is refused");
    // The confirmation used the current step (native refuses its replay): take the next one.
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_secs(30 - now % 30 + 1)).await;
    let (status, _, body) =
        call(Method::POST, format!("{}/auth/mfa/verify", server.base), None, Some(verify(oathtool(&secret))))
            .await;
    assert_eq!(status, 200, "{body}");
    let tokens: Value = serde_json::from_str(&body).expect("json");
    let (status, _, body) =
        call(Method::GET, format!("{}/me", server.base), tokens["access_token"].as_str(), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"mfa_enabled\":true"), "{body}");
}

/// `POST /auth/password` is no unlimited oracle: each wrong current password
/// counts once with the account's login attempts (limit set to 3 here, apart
/// from the default), and the fourth attempt, right or wrong, is refused with
/// 429 and `Retry-After`, login with it.
async fn current_password_guesses_lock_the_account(provider: Provider) {
    let server = server(&provider, &[("PORTCULLIS_LOCKOUT_MAX_FAILURES", "3".into())]).await;
    let email = format!("do-{}@example.com", crate::helpers::hex_token());
    register(&server, &provider, &email).await;
    let (_, _, tokens) = login(&server, &email, PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("access token").to_owned();
    let change = |current: &str| json!({"current_password": current, "new_password": NEW_PASSWORD});
    for attempt in 1..=3 {
        let (status, _, body) = call(
            Method::POST,
            format!("{}/auth/password", server.base),
            Some(&access),
            Some(change(&format!("wrong-current-password-{attempt}"))),
        )
        .await;
        assert_eq!(status, 401, "attempt {attempt}: {body}");
    }
    let (status, headers, body) =
        call(Method::POST, format!("{}/auth/password", server.base), Some(&access), Some(change(PASSWORD)))
            .await;
    assert_eq!(status, 429, "the wrong guesses were not counted: {body}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("60"));
    assert_eq!(login(&server, &email, PASSWORD).await.0, 429, "the lock is the account's");
}

/// A correct password does not reset the second-factor failures: after a
/// login and four wrong codes, logging in again is the sixth attempt.
async fn a_correct_password_keeps_second_factor_failures(provider: Provider) {
    let server = server(&provider, &[]).await;
    let email = format!("ed-{}@example.com", crate::helpers::hex_token());
    let secret = with_totp(&server, &provider, &email).await;
    let right = oathtool(&secret);
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let (status, _, challenge) = login(&server, &email, PASSWORD).await;
    assert_eq!((status, &challenge["mfa_required"]), (200, &Value::Bool(true)), "{challenge}");
    for _ in 0..4 {
        let (status, _, body) = call(
            Method::POST,
            format!("{}/auth/mfa/verify", server.base),
            None,
            Some(json!({"mfa_token": challenge["mfa_token"], "code": wrong})),
        )
        .await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, headers, body) = login(&server, &email, PASSWORD).await;
    assert_eq!(status, 429, "the correct password reset the count: {body}");
    assert!(headers.contains_key("retry-after"));
}

/// The Cognito `mfa_token` is sealed: the client can neither read the account
/// in it nor edit it (before, another spelling of the address inside it got a
/// bucket of its own). An edited token is refused before the pool is asked;
/// the genuine one still counts on the account's bucket and completes.
#[tokio::test]
async fn cognito_an_edited_mfa_token_is_refused_and_the_genuine_one_counts_on_the_account() {
    use base64::Engine;
    let provider = cognito_pool().await.0;
    let server = server(&provider, &[]).await;
    let email = format!("fa-{}@example.com", crate::helpers::hex_token());
    let secret = with_totp(&server, &provider, &email).await;
    let right = oathtool(&secret);
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let (_, _, challenge) = login(&server, &email, PASSWORD).await;
    let token = challenge["mfa_token"].as_str().expect("mfa_token").to_owned();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let sealed = b64.decode(token.trim_start_matches("pcx_")).expect("b64");
    assert!(!String::from_utf8_lossy(&sealed).contains("example.com"), "the account shows in the token");
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let forged =
        format!("pcx_{}", b64.encode(json!({"u": email.to_uppercase(), "s": "anything"}).to_string()));
    let verify = |mfa_token: String, code: &str| {
        call(
            Method::POST,
            format!("{}/auth/mfa/verify", server.base),
            None,
            Some(json!({"mfa_token": mfa_token, "code": code})),
        )
    };
    for edited in [format!("pcx_{}", b64.encode(&flipped)), forged] {
        let (status, _, body) = verify(edited, &right).await;
        assert_eq!(status, 401, "an edited mfa_token was accepted: {body}");
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(verify(token.clone(), wrong).await.0);
    }
    assert_eq!(statuses, [401, 401, 401, 401], "counted on the account, with the password step: 5 in all");
    let (status, _, _) = verify(token.clone(), &right).await;
    assert_eq!(status, 429, "the account's fifth failure locked it");
}

/// Device cookies on both backends, through the local server: a guesser
/// locks the account for every client without one; the owner's known device
/// still logs in (#16 item 6).
async fn a_known_device_logs_in_while_the_account_is_locked(provider: Provider) {
    let server = server(&provider, &[]).await;
    let email = format!("dv-{}@example.com", crate::helpers::hex_token());
    register(&server, &provider, &email).await;
    let attempt = |password: String, cookie: Option<String>| {
        let client = reqwest::Client::new();
        let mut req = client
            .post(format!("{}/auth/login", server.base))
            .json(&json!({"email": email, "password": password}));
        if let Some(cookie) = cookie {
            req = req.header(reqwest::header::COOKIE, cookie);
        }
        async move {
            let resp = req.send().await.expect("request");
            let cookie = resp
                .headers()
                .get(reqwest::header::SET_COOKIE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(str::to_owned);
            (resp.status().as_u16(), cookie)
        }
    };
    let (status, cookie) = attempt(PASSWORD.to_owned(), None).await;
    assert_eq!(status, 200);
    let cookie = cookie.expect("a completed login sets the device cookie");
    assert!(cookie.starts_with("__Host-portcullis-device="), "{cookie}");
    for i in 0..5 {
        assert_eq!(attempt(format!("guess-number-{i}"), None).await.0, 401);
    }
    assert_eq!(attempt(PASSWORD.to_owned(), None).await.0, 429, "locked for unknown clients");
    assert_eq!(attempt(PASSWORD.to_owned(), Some(cookie)).await.0, 200, "not for the owner's device");
}

#[tokio::test]
async fn native_a_known_device_logs_in_while_the_account_is_locked() {
    a_known_device_logs_in_while_the_account_is_locked(Provider::Native).await;
}

#[tokio::test]
async fn cognito_a_known_device_logs_in_while_the_account_is_locked() {
    a_known_device_logs_in_while_the_account_is_locked(cognito_pool().await.0).await;
}

/// Step-up on both backends: a token whose login had no second factor cannot
/// change the password once TOTP is on; `POST /auth/reauth` with the password
/// alone is refused, with the code it answers a token that can.
async fn step_up_once_totp_is_on(provider: Provider) {
    let server = server(&provider, &[]).await;
    let email = format!("su-{}@example.com", crate::helpers::hex_token());
    register(&server, &provider, &email).await;
    let (_, _, tokens) = login(&server, &email, PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("access token").to_owned();
    let (status, _, body) =
        call(Method::POST, format!("{}/auth/mfa/totp/enroll", server.base), Some(&access), None).await;
    assert_eq!(status, 200, "{body}");
    let secret =
        serde_json::from_str::<Value>(&body).expect("json")["secret"].as_str().expect("secret").to_owned();
    let confirm = json!({"code": oathtool(&secret)});
    let (status, _, body) =
        call(Method::POST, format!("{}/auth/mfa/totp/confirm", server.base), Some(&access), Some(confirm))
            .await;
    assert_eq!(status, 200, "{body}");
    let change = json!({"current_password": PASSWORD, "new_password": "quartz-lantern-meadow-9413"});
    let (status, _, body) =
        call(Method::POST, format!("{}/auth/password", server.base), Some(&access), Some(change.clone()))
            .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("reauthentication-required"), "{body}");
    let reauth =
        |body: Value| call(Method::POST, format!("{}/auth/reauth", server.base), Some(&access), Some(body));
    let (status, _, body) = reauth(json!({"password": PASSWORD})).await;
    assert_eq!(status, 401, "the second factor is required: {body}");
    let (status, _, body) = reauth(json!({"password": "not-my-password-at-all"})).await;
    assert_eq!(status, 401, "{body}");
    // Ours accepts a code once (the next step's, as confirm took this one); the pool checks the current step.
    let code = match provider {
        Provider::Native => oathtool_at(&secret, 30),
        Provider::Cognito { .. } => oathtool(&secret),
    };
    let (status, _, body) = reauth(json!({"password": PASSWORD, "code": code})).await;
    assert_eq!(status, 200, "{body}");
    let stepped: Value = serde_json::from_str(&body).expect("json");
    let stepped = stepped["access_token"].as_str().expect("access token").to_owned();
    assert_eq!(payload(&stepped)["amr"], json!(["pwd", "otp"]));
    let (status, _, body) =
        call(Method::POST, format!("{}/auth/password", server.base), Some(&stepped), Some(change)).await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test]
async fn native_step_up_once_totp_is_on() {
    step_up_once_totp_is_on(Provider::Native).await;
}

#[tokio::test]
async fn cognito_step_up_once_totp_is_on() {
    step_up_once_totp_is_on(cognito_pool().await.0).await;
}

/// Registering a taken address is throttled per address (before any hashing):
/// the sixth 409 in the window is a 429; another address from the same source
/// still registers.
async fn registering_a_taken_address_is_throttled(provider: Provider) {
    let server = server(&provider, &[]).await;
    let email = format!("ga-{}@example.com", crate::helpers::hex_token());
    register(&server, &provider, &email).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..6 {
        let (status, headers, _) = call(
            Method::POST,
            format!("{}/auth/register", server.base),
            None,
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
        statuses.push(status);
        retry_after = headers.get("retry-after").map(|v| v.to_str().unwrap_or_default().to_owned());
    }
    assert_eq!(statuses, [409, 409, 409, 409, 409, 429]);
    assert!(retry_after.is_some_and(|v| v.parse::<u64>().unwrap_or(0) >= 1));
    register(&server, &provider, &format!("gb-{}@example.com", crate::helpers::hex_token())).await;
}

#[tokio::test]
async fn native_registering_a_taken_address_is_throttled() {
    registering_a_taken_address_is_throttled(Provider::Native).await;
}

#[tokio::test]
async fn cognito_registering_a_taken_address_is_throttled() {
    registering_a_taken_address_is_throttled(cognito_pool().await.0).await;
}

#[tokio::test]
async fn native_current_password_guesses_lock_the_account() {
    current_password_guesses_lock_the_account(Provider::Native).await;
}

#[tokio::test]
async fn cognito_current_password_guesses_lock_the_account() {
    current_password_guesses_lock_the_account(cognito_pool().await.0).await;
}

#[tokio::test]
async fn native_a_correct_password_keeps_second_factor_failures() {
    a_correct_password_keeps_second_factor_failures(Provider::Native).await;
}

#[tokio::test]
async fn cognito_a_correct_password_keeps_second_factor_failures() {
    a_correct_password_keeps_second_factor_failures(cognito_pool().await.0).await;
}

#[tokio::test]
async fn native_login_me_refresh_logout() {
    login_me_refresh_logout(Provider::Native).await;
}

#[tokio::test]
async fn cognito_login_me_refresh_logout() {
    login_me_refresh_logout(cognito_pool().await.0).await;
}

#[tokio::test]
async fn native_password_change_and_lockout() {
    password_change_and_lockout(Provider::Native).await;
}

#[tokio::test]
async fn cognito_password_change_and_lockout() {
    password_change_and_lockout(cognito_pool().await.0).await;
}

#[tokio::test]
async fn native_totp_enrolment_and_login() {
    totp_enrolment_and_login(Provider::Native).await;
}

#[tokio::test]
async fn cognito_totp_enrolment_and_login() {
    totp_enrolment_and_login(cognito_pool().await.0).await;
}

/// The pool's tokens are only accepted with a session a Portcullis login wrote;
/// one from another pool, or one issued by the pool directly, is refused.
#[tokio::test]
async fn cognito_tokens_need_our_pool_and_our_session() {
    let (provider, client) = cognito_pool().await;
    let (other, _) = cognito_pool().await;
    let server = server(&provider, &[]).await;
    let email = format!("di-{}@example.com", crate::helpers::hex_token());
    register(&server, &provider, &email).await;
    for (pool, who) in [(&provider, email.as_str()), (&other, "someone-else@example.com")] {
        let Provider::Cognito { pool_id, client_id, secret } = pool else { unreachable!() };
        if who != email {
            client.admin_create_user().user_pool_id(pool_id).username(who).send().await.expect("user");
            client
                .admin_set_user_password()
                .user_pool_id(pool_id)
                .username(who)
                .password(PASSWORD)
                .permanent(true)
                .send()
                .await
                .expect("password");
        }
        // Signed in at the pool directly, not through Portcullis: no session record.
        let direct = client
            .initiate_auth()
            .client_id(client_id)
            .auth_flow(aws_sdk_cognitoidentityprovider::types::AuthFlowType::UserPasswordAuth)
            .auth_parameters("USERNAME", who)
            .auth_parameters("PASSWORD", PASSWORD)
            .auth_parameters("SECRET_HASH", crate::cognito::secret_hash(secret, client_id, who))
            .send()
            .await
            .expect("InitiateAuth");
        let token = direct.authentication_result().and_then(|r| r.access_token()).expect("token");
        let (status, _, _) = call(Method::GET, format!("{}/me", server.base), Some(token), None).await;
        assert_eq!(status, 401, "{who}");
    }
    let (status, _, tokens) = login(&server, &email, PASSWORD).await;
    assert_eq!(status, 200);
    let (status, _, _) =
        call(Method::GET, format!("{}/me", server.base), tokens["access_token"].as_str(), None).await;
    assert_eq!(status, 200);
}

/// An admin (a pool group mapped to the `admin` role) revokes a pool user's
/// sessions; the authorizer refuses that user's live access token at once.
#[tokio::test]
async fn cognito_admin_revocation_reaches_the_authorizer() {
    let (provider, client) = cognito_pool().await;
    let Provider::Cognito { pool_id, .. } = &provider else { unreachable!() };
    let server = server(&provider, &[]).await;
    let admin = format!("ad-{}@example.com", crate::helpers::hex_token());
    let user = format!("us-{}@example.com", crate::helpers::hex_token());
    // The shipped `admin` role's grants count only with a second factor.
    let admin_secret = with_totp(&server, &provider, &admin).await;
    register(&server, &provider, &user).await;
    client.create_group().user_pool_id(pool_id).group_name("admin").send().await.expect("CreateGroup");
    client
        .admin_add_user_to_group()
        .user_pool_id(pool_id)
        .username(&admin)
        .group_name("admin")
        .send()
        .await
        .expect("AdminAddUserToGroup");
    let (_, _, challenge) = login(&server, &admin, PASSWORD).await;
    // The confirmation used the current step (its replay is refused): take the next one.
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_secs(30 - now % 30 + 1)).await;
    let verify = json!({"mfa_token": challenge["mfa_token"], "code": oathtool(&admin_secret)});
    let (status, _, body) =
        call(Method::POST, format!("{}/auth/mfa/verify", server.base), None, Some(verify)).await;
    assert_eq!(status, 200, "{body}");
    let admin_tokens: Value = serde_json::from_str(&body).expect("json");
    let (_, _, user_tokens) = login(&server, &user, PASSWORD).await;
    let user_access = user_tokens["access_token"].as_str().expect("token");
    let (status, _, body) = call(Method::GET, format!("{}/me", server.base), Some(user_access), None).await;
    assert_eq!(status, 200, "{body}");
    let sub =
        serde_json::from_str::<Value>(&body).expect("json")["user_id"].as_str().expect("sub").to_owned();

    // The plain user may not revoke anyone; the pool's admin group may.
    let revoke = format!("{}/admin/users/{sub}/sessions/revoke", server.base);
    let (status, _, _) = call(Method::POST, revoke.clone(), Some(user_access), None).await;
    assert_eq!(status, 403);
    let (status, _, body) = call(Method::POST, revoke, admin_tokens["access_token"].as_str(), None).await;
    assert_eq!(status, 204, "{body}");
    let (status, _, _) = call(Method::GET, format!("{}/me", server.base), Some(user_access), None).await;
    assert_eq!(status, 401);
}

/// What the pool cannot do answers one clear problem, 501 `unsupported`,
/// before anything is counted or checked: it keeps no recovery codes (its own
/// account recovery applies), and its administrators turn TOTP off.
#[tokio::test]
async fn cognito_recovery_codes_and_removing_totp_are_unsupported() {
    let provider = cognito_pool().await.0;
    let server = server(&provider, &[]).await;
    let email = format!("un-{}@example.com", crate::helpers::hex_token());
    let secret = with_totp(&server, &provider, &email).await;
    let (_, _, challenge) = login(&server, &email, PASSWORD).await;
    let recovery = json!({"mfa_token": challenge["mfa_token"], "recovery_code": "aaaa-bbbb-cccc-dddd"});
    let (status, _, body) =
        call(Method::POST, format!("{}/auth/mfa/recovery", server.base), None, Some(recovery)).await;
    assert_eq!(status, 501, "{body}");
    let body: Value = serde_json::from_str(&body).expect("problem");
    assert_eq!(body["type"], "urn:portcullis:problem:unsupported");
    let verify = json!({"mfa_token": challenge["mfa_token"], "code": oathtool(&secret)});
    // The confirmation used the current step: wait for the next one.
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_secs(30 - now % 30 + 1)).await;
    let verify = json!({"mfa_token": verify["mfa_token"], "code": oathtool(&secret)});
    let (status, _, body) =
        call(Method::POST, format!("{}/auth/mfa/verify", server.base), None, Some(verify)).await;
    assert_eq!(status, 200, "{body}");
    let tokens: Value = serde_json::from_str(&body).expect("tokens");
    let (status, _, body) = call(
        Method::DELETE,
        format!("{}/auth/mfa/totp", server.base),
        tokens["access_token"].as_str(),
        Some(json!({"code": oathtool(&secret)})),
    )
    .await;
    assert_eq!(status, 501, "{body}");
    assert!(body.contains("urn:portcullis:problem:unsupported"), "{body}");
}
