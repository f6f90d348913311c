//! Attack tokens forged by PyJWT (an independent JOSE library, driven by the
//! test command) against the authorizer. A correctly signed control token from
//! the same forger must pass, so every refusal is for what the forgery attacks.

use crate::app::{spawn_app, Backend};
use crate::helpers::GOOD_PASSWORD;
use crate::helpers::{parts, request, request_as};
use base64::Engine;
use portcullis_authorizer::Decision;
use portcullis_shared::clock::Clock;
use portcullis_shared::crypto::load_signing_key;
use portcullis_shared::runtime::key_provider;

fn python() -> String {
    std::env::var("PORTCULLIS_TEST_PYTHON")
        .expect("PORTCULLIS_TEST_PYTHON is not set: run the tests with scripts/test.sh, which installs PyJWT")
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

#[tokio::test]
async fn every_forged_token_is_refused_and_the_control_passes() {
    let app = spawn_app(Backend::Dynamo).await;
    let (login, refresh, authorizer) = (&app.login, &app.refresh, &app.authorizer);
    let creds = serde_json::json!({"email": "victim@example.com", "password": GOOD_PASSWORD}).to_string();
    parts(portcullis_login::handle(login, request("POST", "/auth/register", Some(&creds), None)).await);
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (status, body, _) =
            parts(portcullis_login::handle(login, request("POST", "/auth/login", Some(&creds), None)).await);
        assert_eq!(status, 200);
        tokens.push(serde_json::from_str::<serde_json::Value>(&body).expect("json"));
    }
    // Revoke the second session; its still-unexpired token is one of the attacks.
    let revoked = tokens[1]["access_token"].as_str().expect("token").to_owned();
    let identity = match crate::helpers::authorize_me(authorizer, &format!("Bearer {revoked}")).await {
        Decision::Allow(identity) => identity,
        other => panic!("fresh token refused: {other:?}"),
    };
    let (status, _, _) = parts(
        portcullis_refresh::handle(
            refresh,
            request_as("POST", "/auth/logout", None, Some((&identity.sub, &identity.sid))),
        )
        .await,
    );
    assert_eq!(status, 204);

    // The claims of the live session, for the forger to re-sign and mutate.
    let live = tokens[0]["access_token"].as_str().expect("token");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(live.split('.').nth(1).expect("payload"))
            .expect("b64"),
    )
    .expect("claims");
    let (cfg, backends) = &app.opened["login"];
    let provider = key_provider(cfg).expect("keys");
    let signing = load_signing_key(backends.keys.as_ref(), provider.as_ref(), app.clock.now_secs())
        .await
        .expect("signing key");
    let job = serde_json::json!({
        "private_pem": pem(&signing.pkcs8),
        "kid": signing.kid,
        "claims": claims,
        "refresh_token": tokens[0]["refresh_token"],
        "revoked_token": revoked,
    });
    let mut child = tokio::process::Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/forge_tokens.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the forger");
    tokio::io::AsyncWriteExt::write_all(child.stdin.as_mut().expect("stdin"), job.to_string().as_bytes())
        .await
        .expect("write job");
    drop(child.stdin.take());
    let output = child.wait_with_output().await.expect("forger output");
    assert!(output.status.success(), "forger failed");
    let forged: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("forger JSON");
    assert!(forged.len() >= 35, "only {} forgeries", forged.len());

    // Each forgery meets a warm authorizer (keys loaded) and a cold one, where
    // the session the token names is read while the keys load, before any check.
    let mut accepted = Vec::new();
    for item in &forged {
        let name = item["name"].as_str().expect("name");
        let token = item["token"].as_str().expect("token");
        let cold = app.cold_authorizer().await;
        assert!(cold.verifier.loaded().is_none(), "a new instance has read no keys yet");
        for (instance, deps) in [("warm", authorizer), ("cold", &cold)] {
            let decision = crate::helpers::authorize_me(deps, &format!("Bearer {token}")).await;
            let allowed = matches!(decision, Decision::Allow(_));
            if name == "control" {
                assert!(allowed, "the correctly signed control token was refused ({instance}): {decision:?}");
            } else if allowed {
                accepted.push(format!("{name} ({instance})"));
            } else {
                assert_eq!(decision, Decision::Unauthorized, "{name} ({instance})");
            }
        }
    }
    assert!(accepted.is_empty(), "forgeries accepted: {accepted:?}");
}

/// The authorizer reads our keys only for our tokens: a cold instance answers
/// a missing credential and an API key without touching them.
#[tokio::test]
async fn keys_are_read_when_the_first_bearer_token_arrives() {
    let app = spawn_app(Backend::Dynamo).await;
    let login = &app.login;
    let creds = serde_json::json!({"email": "first@example.com", "password": GOOD_PASSWORD}).to_string();
    parts(portcullis_login::handle(login, request("POST", "/auth/register", Some(&creds), None)).await);
    let (status, body, _) =
        parts(portcullis_login::handle(login, request("POST", "/auth/login", Some(&creds), None)).await);
    assert_eq!(status, 200, "{body}");
    let access = serde_json::from_str::<serde_json::Value>(&body).expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_owned();

    let authorizer = app.cold_authorizer().await;
    let ask = |authorization, api_key| portcullis_authorizer::Ask {
        method: "GET",
        path: "/admin/users",
        authorization,
        api_key,
    };
    let missing = portcullis_authorizer::authorize(&authorizer, ask(None, None)).await;
    assert_eq!(missing, Decision::Unauthorized);
    let key = format!("pck_{}_{}", "0".repeat(32), "A".repeat(43));
    let unknown_key = portcullis_authorizer::authorize(&authorizer, ask(None, Some(&key))).await;
    assert_eq!(unknown_key, Decision::Unauthorized);
    assert!(authorizer.verifier.loaded().is_none(), "no key read for requests without a bearer token");

    let decision = crate::helpers::authorize_me(&authorizer, &format!("Bearer {access}")).await;
    assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
    assert!(authorizer.verifier.loaded().is_some(), "the first token loaded the keys");
}
