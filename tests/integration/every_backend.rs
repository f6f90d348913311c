//! One account's life on every backend the test app offers (MariaDB,
//! DynamoDB, the embedded SQLite file, a Cognito pool): the same handlers, the
//! same answers. Register, log in, the authorizer names the caller, `/me`,
//! refresh, a replayed refresh token ends the session, and a logout ends it.

use crate::app::{spawn_app, Backend, TestApp};
use crate::helpers::{authorize_me, parts, request, request_as, GOOD_PASSWORD};
use portcullis_authorizer::Decision;
use serde_json::{json, Value};

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The caller the authorizer finds behind `tokens`' access token, or a panic.
async fn caller(app: &TestApp, tokens: &Value) -> (String, String) {
    let header = format!("Bearer {}", tokens["access_token"].as_str().expect("access token"));
    match authorize_me(&app.authorizer, &header).await {
        Decision::Allow(identity) => (identity.sub, identity.sid),
        other => panic!("a fresh access token was refused: {other:?}"),
    }
}

async fn refresh(app: &TestApp, token: &Value) -> (u16, Value) {
    let body = json!({ "refresh_token": token }).to_string();
    let (status, body, _) = parts(
        portcullis_refresh::handle(&app.refresh, request("POST", "/auth/token/refresh", Some(&body), None))
            .await,
    );
    (status, json_of(&body))
}

async fn account_life(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = format!("ada-{}@example.com", crate::helpers::hex_token());
    let creds = json!({ "email": email, "password": GOOD_PASSWORD }).to_string();
    let login = |path| portcullis_login::handle(&app.login, request("POST", path, Some(&creds), None));
    let (status, body, _) = parts(login("/auth/register").await);
    assert_eq!(status, 201, "{backend:?} register: {body}");
    let (status, body, headers) = parts(login("/auth/login").await);
    assert_eq!(status, 200, "{backend:?} login: {body}");
    assert_eq!(headers["cache-control"], "no-store");
    let tokens = json_of(&body);
    let (sub, sid) = caller(&app, &tokens).await;

    let bearer = |mut req: lambda_http::Request| {
        let header = format!("Bearer {}", tokens["access_token"].as_str().unwrap_or_default());
        req.headers_mut().insert(http::header::AUTHORIZATION, header.parse().expect("header"));
        req
    };
    let me = bearer(request_as("GET", "/me", None, Some((&sub, &sid))));
    let (status, body, _) = parts(portcullis_login::handle(&app.login, me).await);
    assert_eq!(status, 200, "{backend:?} /me: {body}");
    assert_eq!(json_of(&body)["email"], email.as_str());

    if let Some((pool, client)) = &app.pool {
        // The account lives in the pool (the functions hold no password of it).
        let user = client.admin_get_user().user_pool_id(&pool.id).username(&email).send().await;
        assert!(user.is_ok(), "the pool has no {email}: {user:?}");
    }
    let (status, renewed) = refresh(&app, &tokens["refresh_token"]).await;
    assert_eq!(status, 200, "{backend:?} refresh: {renewed}");
    assert_eq!(caller(&app, &renewed).await, (sub.clone(), sid.clone()), "{backend:?}: the same session");

    // Where Portcullis rotates the refresh token, the spent one replayed ends
    // the session; where the pool keeps it, the same token refreshes again.
    let rotated = renewed["refresh_token"] != tokens["refresh_token"];
    assert_eq!(rotated, backend != Backend::Cognito, "{backend:?}: who rotates the refresh token");
    if rotated {
        let (status, body) = refresh(&app, &tokens["refresh_token"]).await;
        assert_eq!(status, 401, "{backend:?} replay: {body}");
        let (status, body) = refresh(&app, &renewed["refresh_token"]).await;
        assert_eq!(status, 401, "{backend:?}: the session ended with the replay: {body}");
        return;
    }
    let logout = bearer(request_as("POST", "/auth/logout", None, Some((&sub, &sid))));
    let (status, body, _) = parts(portcullis_refresh::handle(&app.refresh, logout).await);
    assert_eq!(status, 204, "{backend:?} logout: {body}");
    let (status, body) = refresh(&app, &renewed["refresh_token"]).await;
    assert_eq!(status, 401, "{backend:?}: a logged-out session refreshes no more: {body}");
}

#[tokio::test]
async fn an_account_lives_alike_on_mysql() {
    account_life(Backend::Mysql).await;
}

#[tokio::test]
async fn an_account_lives_alike_on_dynamodb() {
    account_life(Backend::Dynamo).await;
}

#[tokio::test]
async fn an_account_lives_alike_on_the_embedded_file() {
    account_life(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_account_lives_alike_on_a_cognito_pool() {
    account_life(Backend::Cognito).await;
}
