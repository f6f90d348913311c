//! A user who calls the Cognito pool directly, around Portcullis, on moto: the
//! client never holds a token the pool accepts, a challenge session cannot be
//! answered without the client secret, and Portcullis refuses to run on a
//! public app client. (moto does not check `SECRET_HASH` on `SignUp` or on
//! `InitiateAuth` with `USER_PASSWORD_AUTH`, nor `AllowAdminCreateUserOnly`:
//! those are held by the template test in `iac/cognito.rs`; see
//! docs/security/cognito.md.)

use crate::local_server::{call, oathtool};
use crate::providers::{cognito_pool, login, register, server, Provider, PASSWORD};
use aws_sdk_cognitoidentityprovider::types::{AuthFlowType, ChallengeNameType, SoftwareTokenMfaSettingsType};
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("b64"))
        .expect("json")
}

fn refused<T, E: aws_sdk_cognitoidentityprovider::error::ProvideErrorMetadata>(
    result: Result<T, aws_sdk_cognitoidentityprovider::error::SdkError<E>>,
) -> bool {
    match result {
        Ok(_) => false,
        Err(err) => err.as_service_error().and_then(|e| e.code()) == Some("NotAuthorizedException"),
    }
}

/// With the pool's own access token a user could turn TOTP off without a code
/// (`SetUserMFAPreference`), change the password leaving our sessions alive
/// (`ChangePassword`), or enrol another authenticator. The tokens Portcullis
/// hands out are its own: the pool refuses every one of them.
#[tokio::test]
async fn cognito_the_client_holds_no_token_the_pool_accepts() {
    let (provider, client) = cognito_pool().await;
    let Provider::Cognito { pool_id, client_id, secret } = &provider else { unreachable!() };
    let server = server(&provider, &[]).await;
    let email = format!("hi-{}@example.com", crate::helpers::hex_token());
    register(&server, &provider, &email).await;
    let (status, _, tokens) = login(&server, &email, PASSWORD).await;
    assert_eq!(status, 200, "an account registered through Portcullis signs in at once: {tokens}");
    let access = tokens["access_token"].as_str().expect("access token").to_owned();
    let refresh = tokens["refresh_token"].as_str().expect("refresh token").to_owned();

    // TOTP on, through Portcullis.
    let (status, _, body) =
        call(Method::POST, format!("{}/auth/mfa/totp/enroll", server.base), Some(&access), None).await;
    assert_eq!(status, 200, "{body}");
    let totp =
        serde_json::from_str::<Value>(&body).expect("json")["secret"].as_str().expect("secret").to_owned();
    let (status, _, body) = call(
        Method::POST,
        format!("{}/auth/mfa/totp/confirm", server.base),
        Some(&access),
        Some(json!({"code": oathtool(&totp)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let claims = payload(&access);
    assert_ne!(claims["iss"], format!("https://cognito-idp.us-east-1.amazonaws.com/{pool_id}"));
    assert!(claims["pvt"].as_str().is_some_and(|p| p.starts_with("pcs_")), "the pool's token travels sealed");

    let off = SoftwareTokenMfaSettingsType::builder().enabled(false).preferred_mfa(false).build();
    let turn_off = client.set_user_mfa_preference().access_token(&access).software_token_mfa_settings(off);
    assert!(refused(turn_off.send().await), "SetUserMFAPreference with our access token");
    let change = client
        .change_password()
        .access_token(&access)
        .previous_password(PASSWORD)
        .proposed_password("x".repeat(20));
    assert!(refused(change.send().await), "ChangePassword with our access token");
    assert!(
        refused(client.associate_software_token().access_token(&access).send().await),
        "AssociateSoftwareToken"
    );
    assert!(refused(client.get_user().access_token(&access).send().await), "GetUser");
    // (moto has no DeleteUser; the pool refuses it for the same reason as GetUser.)
    assert!(refused(client.global_sign_out().access_token(&access).send().await), "GlobalSignOut");
    // Our refresh token is no pool refresh token, even with a right SECRET_HASH.
    let direct_refresh = client
        .initiate_auth()
        .client_id(client_id)
        .auth_flow(AuthFlowType::RefreshTokenAuth)
        .auth_parameters("REFRESH_TOKEN", &refresh)
        .auth_parameters("SECRET_HASH", crate::cognito::secret_hash(secret, client_id, &email))
        .send()
        .await;
    assert!(direct_refresh.is_err(), "REFRESH_TOKEN_AUTH with our refresh token");

    // Still on, and the Portcullis routes still work with the same tokens.
    let (status, _, body) = call(Method::GET, format!("{}/me", server.base), Some(&access), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["mfa_enabled"], true, "{body}");
    let (status, _, body) = call(
        Method::POST,
        format!("{}/auth/token/refresh", server.base),
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The `mfa_token` carries the pool's challenge session; answering it at the
/// pool directly would skip our second-factor throttle and yield the pool's
/// tokens. Without the client secret's `SECRET_HASH` the pool refuses, and the
/// same challenge still completes through Portcullis.
#[tokio::test]
async fn cognito_a_challenge_cannot_be_answered_at_the_pool_directly() {
    let (provider, client) = cognito_pool().await;
    let Provider::Cognito { pool_id, client_id, secret } = &provider else { unreachable!() };
    let server = server(&provider, &[]).await;
    let email = format!("ja-{}@example.com", crate::helpers::hex_token());
    register(&server, &provider, &email).await;
    let (_, _, tokens) = login(&server, &email, PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("access token").to_owned();
    let (_, _, body) =
        call(Method::POST, format!("{}/auth/mfa/totp/enroll", server.base), Some(&access), None).await;
    let totp =
        serde_json::from_str::<Value>(&body).expect("json")["secret"].as_str().expect("secret").to_owned();
    let (status, _, _) = call(
        Method::POST,
        format!("{}/auth/mfa/totp/confirm", server.base),
        Some(&access),
        Some(json!({"code": oathtool(&totp)})),
    )
    .await;
    assert_eq!(status, 200);

    let (_, _, challenge) = login(&server, &email, PASSWORD).await;
    let mfa_token = challenge["mfa_token"].as_str().expect("mfa_token").to_owned();
    // The pool's challenge session is sealed inside the token (AEAD under the
    // field key): the client has nothing to answer at the pool with.
    let opened = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(mfa_token.trim_start_matches("pcx_"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    assert!(opened.is_none(), "the mfa_token shows the pool session: {opened:?}");
    // Even with a challenge session in hand, the pool wants the client secret's SECRET_HASH.
    let started = client
        .admin_initiate_auth()
        .user_pool_id(pool_id)
        .client_id(client_id)
        .auth_flow(aws_sdk_cognitoidentityprovider::types::AuthFlowType::AdminUserPasswordAuth)
        .auth_parameters("USERNAME", &email)
        .auth_parameters("PASSWORD", PASSWORD)
        .auth_parameters("SECRET_HASH", crate::cognito::secret_hash(secret, client_id, &email))
        .send()
        .await
        .expect("a challenge started with the secret");
    let direct = client
        .respond_to_auth_challenge()
        .client_id(client_id)
        .challenge_name(ChallengeNameType::SoftwareTokenMfa)
        .session(started.session().expect("challenge session"))
        .challenge_responses("USERNAME", &email)
        .challenge_responses("SOFTWARE_TOKEN_MFA_CODE", oathtool(&totp))
        .send()
        .await;
    assert!(refused(direct), "RespondToAuthChallenge without SECRET_HASH");

    let (status, _, body) = call(
        Method::POST,
        format!("{}/auth/mfa/verify", server.base),
        None,
        Some(json!({"mfa_token": mfa_token, "code": oathtool(&totp)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let tokens: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(payload(tokens["access_token"].as_str().expect("token"))["amr"], json!(["pwd", "otp"]));
}

/// Portcullis fails closed on a public app client: with no secret to compute a
/// `SECRET_HASH`, it would be one of many callers of the pool.
#[tokio::test]
async fn cognito_a_public_app_client_is_refused() {
    let (provider, client) = cognito_pool().await;
    let Provider::Cognito { pool_id, secret, .. } = &provider else { unreachable!() };
    let public = client
        .create_user_pool_client()
        .user_pool_id(pool_id)
        .client_name("public")
        .explicit_auth_flows(
            aws_sdk_cognitoidentityprovider::types::ExplicitAuthFlowsType::AllowUserPasswordAuth,
        )
        .send()
        .await
        .expect("CreateUserPoolClient");
    let public_id = public.user_pool_client().and_then(|c| c.client_id()).expect("id").to_owned();
    let provider =
        Provider::Cognito { pool_id: pool_id.clone(), client_id: public_id, secret: secret.clone() };
    let server = server(&provider, &[]).await;
    let email = format!("ka-{}@example.com", crate::helpers::hex_token());
    register(&server, &provider, &email).await;
    let (status, _, body) = login(&server, &email, PASSWORD).await;
    assert_eq!(status, 503, "{body}");
}
