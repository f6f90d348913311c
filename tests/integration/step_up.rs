//! Step-up (re-authentication) for sensitive changes, through the Lambda
//! handlers on MariaDB and moto's DynamoDB. Every request carries the context
//! the real authorizer derives from the real access token, as API Gateway does.

use crate::helpers::GOOD_PASSWORD;
use crate::helpers::{parts, request, request_with_context};
use portcullis_authorizer::Decision;
use portcullis_shared::clock::Clock;

/// The step-up tests' deployment: every function on MariaDB and moto.
pub(crate) type World = crate::app::TestApp;

pub(crate) async fn world(extra: &[(&str, String)]) -> World {
    crate::app::spawn_app_with(crate::app::Backend::Mysql, extra).await
}

pub(crate) fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

pub(crate) fn oathtool(secret: &str, at: i64) -> String {
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", "--now", &format!("@{at}"), secret])
        .output()
        .expect("oathtool is installed by scripts/test.sh");
    String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
}

pub(crate) fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).expect("a JWT");
    json(
        &String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("b64"))
            .expect("utf8"),
    )
}

impl World {
    pub(crate) async fn register(&self, email: &str) {
        let body = serde_json::json!({"email": email, "password": GOOD_PASSWORD}).to_string();
        let (status, text, _) = parts(
            portcullis_login::handle(&self.login, request("POST", "/auth/register", Some(&body), None)).await,
        );
        assert_eq!(status, 201, "{text}");
    }

    /// Enrols TOTP for the person `token` signs in and steps up with the
    /// password and the next code: the session's new access token, whose `amr`
    /// holds `otp`, as the grants of an employee role (`"mfa": true`) need.
    pub(crate) async fn with_second_factor(&self, token: &str) -> String {
        let (status, enrolment) =
            self.call("POST", "/auth/mfa/totp/enroll", serde_json::json!({}), token).await;
        assert_eq!(status, 200, "{enrolment}");
        let secret = enrolment["secret"].as_str().expect("secret").to_owned();
        let code = serde_json::json!({"code": oathtool(&secret, self.clock.now_secs())});
        let (status, body) = self.call("POST", "/auth/mfa/totp/confirm", code, token).await;
        assert_eq!(status, 200, "{body}");
        self.clock.advance(30);
        let body =
            serde_json::json!({"password": GOOD_PASSWORD, "code": oathtool(&secret, self.clock.now_secs())});
        let (status, stepped) = self.call("POST", "/auth/reauth", body, token).await;
        assert_eq!(status, 200, "{stepped}");
        stepped["access_token"].as_str().expect("access token").to_owned()
    }

    pub(crate) async fn login(&self, email: &str) -> serde_json::Value {
        let body = serde_json::json!({"email": email, "password": GOOD_PASSWORD}).to_string();
        let (status, text, _) = parts(
            portcullis_login::handle(&self.login, request("POST", "/auth/login", Some(&body), None)).await,
        );
        assert_eq!(status, 200, "{text}");
        json(&text)
    }

    /// A request as API Gateway forwards it after the authorizer allowed `token`.
    pub(crate) async fn authorized(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
        token: &str,
    ) -> lambda_http::Request {
        let header = format!("Bearer {token}");
        let ask = portcullis_authorizer::Ask { method, path, authorization: Some(&header), api_key: None };
        let Decision::Allow(identity) = portcullis_authorizer::authorize(&self.authorizer, ask).await else {
            panic!("the authorizer refused the token for {method} {path}");
        };
        let fields: Vec<(&str, String)> = portcullis_authorizer::context_of(&identity)
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default().to_owned()))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(k, v)| (leak(k), v))
            .collect();
        let text = body.to_string();
        request_with_context(method, path, Some(&text), Some(&fields))
    }

    /// Status and JSON body of one call to the function serving `path`.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
        token: &str,
    ) -> (u16, serde_json::Value) {
        let req = self.authorized(method, path, body, token).await;
        let resp = if path.starts_with("/auth/mfa") {
            portcullis_mfa::handle(&self.mfa, req).await
        } else {
            portcullis_login::handle(&self.login, req).await
        };
        let (status, text, _) = parts(resp);
        (status, json(&text))
    }

    pub(crate) async fn refresh_with(&self, refresh_token: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({"refresh_token": refresh_token}).to_string();
        let req = request("POST", "/auth/token/refresh", Some(&body), None);
        let (status, text, _) = parts(portcullis_refresh::handle(&self.refresh, req).await);
        (status, json(&text))
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn kind(body: &serde_json::Value) -> &str {
    body["type"].as_str().unwrap_or_default().trim_start_matches("urn:portcullis:problem:")
}

/// A token whose login is older than the re-authentication window can no
/// longer enrol a factor or change the password; `POST /auth/reauth` with the
/// password mends it, for the same session, and spends its old refresh token.
#[tokio::test]
async fn an_old_login_cannot_enrol_totp_or_change_the_password_until_it_reauthenticates() {
    let w = world(&[]).await;
    w.register("stepup@example.com").await;
    let tokens = w.login("stepup@example.com").await;
    let old = tokens["access_token"].as_str().expect("token").to_owned();
    w.clock.advance(301);
    let (status, body) = w.call("POST", "/auth/mfa/totp/enroll", serde_json::json!({}), &old).await;
    assert_eq!((status, kind(&body)), (401, "reauthentication-required"), "{body}");
    let change =
        serde_json::json!({"current_password": GOOD_PASSWORD, "new_password": "quartz-lantern-meadow-9413"});
    let (status, body) = w.call("POST", "/auth/password", change.clone(), &old).await;
    assert_eq!((status, kind(&body)), (401, "reauthentication-required"), "{body}");

    let wrong = serde_json::json!({"password": "not-the-password-at-all"});
    let (status, body) = w.call("POST", "/auth/reauth", wrong, &old).await;
    assert_eq!((status, kind(&body)), (401, "invalid-credentials"), "{body}");
    let (status, fresh) =
        w.call("POST", "/auth/reauth", serde_json::json!({"password": GOOD_PASSWORD}), &old).await;
    assert_eq!(status, 200, "{fresh}");
    let access = fresh["access_token"].as_str().expect("access token");
    let (before, after) = (claims(&old), claims(access));
    assert_eq!(after["sid"], before["sid"], "the same session");
    assert_eq!(after["auth_time"], w.clock.now_secs(), "{after}");
    assert_eq!(after["amr"], serde_json::json!(["pwd"]));

    let (status, body) = w.call("POST", "/auth/mfa/totp/enroll", serde_json::json!({}), access).await;
    assert_eq!(status, 200, "{body}");
    // The old token still authenticates, but its own login is still old.
    let (status, body) = w.call("POST", "/auth/password", change.clone(), &old).await;
    assert_eq!((status, kind(&body)), (401, "reauthentication-required"), "{body}");

    // A refresh after the re-authentication keeps its auth_time; the refresh
    // token it replaced is spent, and presenting it is reuse.
    let (status, refreshed) = w.refresh_with(fresh["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(claims(refreshed["access_token"].as_str().expect("at"))["auth_time"], w.clock.now_secs());
    // Past the window again, even the re-authenticated token must step up again.
    w.clock.advance(301);
    let (status, body) = w.call("POST", "/auth/password", change, access).await;
    assert_eq!((status, kind(&body)), (401, "reauthentication-required"), "{body}");
    let (status, _) = w.refresh_with(tokens["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, 401, "the refresh token from before the re-authentication is spent");
    // … and presenting it was reuse: the whole session is revoked.
    let (status, _) = w.refresh_with(refreshed["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, 401);
}

/// With TOTP on, a recent password alone is not enough: removing the factor
/// needs it in `amr`, and re-authentication asks for the code.
#[tokio::test]
async fn with_totp_on_step_up_needs_the_second_factor() {
    let w = world(&[]).await;
    w.register("stepup-otp@example.com").await;
    let tokens = w.login("stepup-otp@example.com").await;
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    let (status, enrolment) = w.call("POST", "/auth/mfa/totp/enroll", serde_json::json!({}), &token).await;
    assert_eq!(status, 200, "{enrolment}");
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    let now = w.clock.now_secs();
    let (status, body) = w
        .call("POST", "/auth/mfa/totp/confirm", serde_json::json!({"code": oathtool(&secret, now)}), &token)
        .await;
    assert_eq!(status, 200, "{body}");

    // A fresh login, but with the password only: not enough to remove the factor.
    w.clock.advance(30);
    let code = |w: &World| oathtool(&secret, w.clock.now_secs());
    let (status, body) =
        w.call("DELETE", "/auth/mfa/totp", serde_json::json!({"code": code(&w)}), &token).await;
    assert_eq!((status, kind(&body)), (401, "reauthentication-required"), "{body}");
    let change =
        serde_json::json!({"current_password": GOOD_PASSWORD, "new_password": "quartz-lantern-meadow-9413"});
    let (status, body) = w.call("POST", "/auth/password", change, &token).await;
    assert_eq!((status, kind(&body)), (401, "reauthentication-required"), "{body}");

    let (status, body) =
        w.call("POST", "/auth/reauth", serde_json::json!({"password": GOOD_PASSWORD}), &token).await;
    assert_eq!((status, kind(&body)), (401, "invalid-mfa"), "{body}");
    let (status, body) = w
        .call(
            "POST",
            "/auth/reauth",
            serde_json::json!({"password": GOOD_PASSWORD, "code": "000000"}),
            &token,
        )
        .await;
    assert_eq!((status, kind(&body)), (401, "invalid-mfa"), "{body}");
    let (status, stepped) = w
        .call(
            "POST",
            "/auth/reauth",
            serde_json::json!({"password": GOOD_PASSWORD, "code": code(&w)}),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{stepped}");
    let access = stepped["access_token"].as_str().expect("access token").to_owned();
    assert_eq!(claims(&access)["amr"], serde_json::json!(["pwd", "otp"]));
    // The same code again is a replay, at re-authentication as anywhere.
    let (status, body) = w
        .call(
            "POST",
            "/auth/reauth",
            serde_json::json!({"password": GOOD_PASSWORD, "code": code(&w)}),
            &access,
        )
        .await;
    assert_eq!((status, kind(&body)), (401, "invalid-mfa"), "{body}");

    w.clock.advance(30);
    let (status, body) =
        w.call("DELETE", "/auth/mfa/totp", serde_json::json!({"code": code(&w)}), &access).await;
    assert_eq!(status, 204, "{body}");
}

/// Re-authentication is a password guess like any other: counted on the
/// account's login counter, locked with 429 at the limit, for the right
/// password too.
#[tokio::test]
async fn reauthentication_guesses_are_counted_with_the_logins() {
    let w = world(&[("PORTCULLIS_LOCKOUT_MAX_FAILURES", "3".to_owned())]).await;
    w.register("stepup-guess@example.com").await;
    let token = w.login("stepup-guess@example.com").await["access_token"].as_str().expect("token").to_owned();
    for i in 0..3 {
        let (status, body) = w
            .call("POST", "/auth/reauth", serde_json::json!({"password": format!("wrong-guess-{i}")}), &token)
            .await;
        assert_eq!(status, 401, "guess {i}: {body}");
    }
    let (status, body) =
        w.call("POST", "/auth/reauth", serde_json::json!({"password": GOOD_PASSWORD}), &token).await;
    assert_eq!((status, kind(&body)), (429, "too-many-requests"), "{body}");
    // The login route shares the count.
    let body =
        serde_json::json!({"email": "stepup-guess@example.com", "password": GOOD_PASSWORD}).to_string();
    let (status, _, _) =
        parts(portcullis_login::handle(&w.login, request("POST", "/auth/login", Some(&body), None)).await);
    assert_eq!(status, 429);
}

/// A session written before sessions recorded their live refresh token has no
/// `head`: re-authenticating in it would leave its old token live beside the new
/// one (two chains, neither's use ever reuse of the other). It is refused, and
/// the login's refresh token stays the session's only chain.
#[tokio::test]
async fn reauthentication_in_a_session_without_a_recorded_live_token_is_refused() {
    let w = world(&[]).await;
    w.register("legacy@example.com").await;
    let tokens = w.login("legacy@example.com").await;
    let access = tokens["access_token"].as_str().expect("at").to_owned();
    let sid = claims(&access)["sid"].as_str().expect("sid").to_owned();
    let client = aws_sdk_dynamodb::Client::new(portcullis_shared::aws::aws_config().await);
    let items = client.scan().table_name(&w.table).send().await.expect("scan");
    let (pk, sk) = items
        .items()
        .iter()
        .find(|i| i.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|s| s == &format!("SESSION#{sid}")))
        .map(|i| (i["pk"].clone(), i["sk"].clone()))
        .expect("the session item");
    client
        .update_item()
        .table_name(&w.table)
        .key("pk", pk)
        .key("sk", sk)
        .update_expression("REMOVE head")
        .send()
        .await
        .expect("remove head");
    let (status, body) =
        w.call("POST", "/auth/reauth", serde_json::json!({"password": GOOD_PASSWORD}), &access).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = w.refresh_with(tokens["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, 200, "the login's chain is the only one, and still live: {body}");
}
