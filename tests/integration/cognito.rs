//! The authorizer accepting Amazon Cognito user-pool tokens, on moto's Cognito
//! (which publishes a JWKS per pool): groups map to roles, and tokens from
//! another pool, another client or tampered ones are refused.

use crate::helpers::{config, key_file};
use aws_sdk_cognitoidentityprovider::types::{
    AdminCreateUserConfigType, AuthFlowType, ExplicitAuthFlowsType, PasswordPolicyType,
    PreventUserExistenceErrorTypes, UserPoolPolicyType,
};
use aws_sdk_cognitoidentityprovider::Client;
use portcullis_authorizer::{authorize, Ask, Decision};
use portcullis_shared::aws::aws_config;
use portcullis_shared::clock::SystemClock;
use portcullis_shared::runtime::Backends;
use std::sync::Arc;

pub(crate) struct Pool {
    pub(crate) id: String,
    pub(crate) client_id: String,
    /// The app client's secret, which only the functions (and these tests) hold.
    pub(crate) secret: String,
}

/// `SECRET_HASH` as Cognito documents it: Base64(HMAC-SHA256(secret, username + client id)).
pub(crate) fn secret_hash(secret: &str, client_id: &str, username: &str) -> String {
    use base64::Engine;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{username}{client_id}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// A user pool like the SAM template's: 12-character minimum and no composition
/// rules (our own policy runs first), self sign-up off, and a confidential app
/// client (with a secret) allowing only the password and refresh flows.
pub(crate) async fn pool(client: &Client, name: &str) -> Pool {
    let policy = PasswordPolicyType::builder()
        .minimum_length(12)
        .require_uppercase(false)
        .require_lowercase(false)
        .require_numbers(false)
        .require_symbols(false)
        .build();
    let created = client
        .create_user_pool()
        .pool_name(name)
        .policies(UserPoolPolicyType::builder().password_policy(policy).build())
        .admin_create_user_config(
            AdminCreateUserConfigType::builder().allow_admin_create_user_only(true).build(),
        )
        .send()
        .await
        .expect("CreateUserPool");
    let id = created.user_pool().and_then(|p| p.id()).expect("pool id").to_owned();
    let app = client
        .create_user_pool_client()
        .user_pool_id(&id)
        .client_name("portcullis")
        .generate_secret(true)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
        .prevent_user_existence_errors(PreventUserExistenceErrorTypes::Enabled)
        .enable_token_revocation(true)
        .allowed_o_auth_flows_user_pool_client(false)
        .send()
        .await
        .expect("CreateUserPoolClient");
    let created = app.user_pool_client().expect("client");
    let client_id = created.client_id().expect("client id").to_owned();
    let secret = created.client_secret().expect("a confidential client has a secret").to_owned();
    Pool { id, client_id, secret }
}

async fn user_token(client: &Client, pool: &Pool, username: &str, group: Option<&str>) -> String {
    let password = "Velvet-Otter-Quantum-71!";
    client
        .admin_create_user()
        .user_pool_id(&pool.id)
        .username(username)
        .send()
        .await
        .expect("AdminCreateUser");
    client
        .admin_set_user_password()
        .user_pool_id(&pool.id)
        .username(username)
        .password(password)
        .permanent(true)
        .send()
        .await
        .expect("AdminSetUserPassword");
    if let Some(group) = group {
        let _ = client.create_group().user_pool_id(&pool.id).group_name(group).send().await;
        client
            .admin_add_user_to_group()
            .user_pool_id(&pool.id)
            .username(username)
            .group_name(group)
            .send()
            .await
            .expect("AdminAddUserToGroup");
    }
    let auth = client
        .initiate_auth()
        .client_id(&pool.client_id)
        .auth_flow(AuthFlowType::UserPasswordAuth)
        .auth_parameters("USERNAME", username)
        .auth_parameters("PASSWORD", password)
        .auth_parameters("SECRET_HASH", secret_hash(&pool.secret, &pool.client_id, username))
        .send()
        .await
        .expect("InitiateAuth");
    auth.authentication_result().and_then(|r| r.access_token()).expect("access token").to_owned()
}

/// A deployment's policy where the pool's `support` group reads tickets (a
/// team permission: a pool's password-only token can hold it).
const POLICY: &str = r#"{
  "permissions": ["users:read", "users:manage", "sessions:revoke", "apikeys:manage", "audit:read", "tickets:read"],
  "roles": {"user": [], "support": ["tickets:read"],
            "admin": {"grants": ["users:*", "sessions:*", "apikeys:*", "audit:*"], "mfa": true}},
  "routes": [{"method": "GET", "path": "/tickets", "permission": "tickets:read"}]
}"#;

async fn authorizer_for(pool: &Pool, client_id: &str) -> portcullis_authorizer::Deps {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL: run scripts/test.sh");
    let policy = std::env::temp_dir().join(format!("pc-cognito-policy-{}.json", crate::helpers::hex_token()));
    std::fs::write(&policy, POLICY).expect("policy");
    let cfg = config(&[
        ("PORTCULLIS_POLICY_FILE", policy.display().to_string()),
        ("PORTCULLIS_LOCAL_KEY_FILE", key_file()),
        ("PORTCULLIS_COGNITO_USER_POOL_ID", pool.id.clone()),
        ("PORTCULLIS_COGNITO_REGION", "us-east-1".into()),
        ("PORTCULLIS_COGNITO_CLIENT_IDS", client_id.into()),
        ("PORTCULLIS_COGNITO_JWKS_URL", format!("{endpoint}/{}/.well-known/jwks.json", pool.id)),
    ]);
    let backends = Backends::open(&cfg).await.expect("backends");
    portcullis_authorizer::Deps::build(&cfg, &backends, Arc::new(SystemClock)).await.expect("authorizer")
}

async fn decide(deps: &portcullis_authorizer::Deps, method: &str, path: &str, token: &str) -> Decision {
    let header = format!("Bearer {token}");
    authorize(deps, Ask { method, path, authorization: Some(&header), api_key: None }).await
}

#[tokio::test]
async fn the_authorizer_accepts_its_pool_and_refuses_others() {
    let client = Client::new(aws_config().await);
    let a = pool(&client, &format!("pc-a-{}", crate::helpers::hex_token())).await;
    let b = pool(&client, &format!("pc-b-{}", crate::helpers::hex_token())).await;
    let support = user_token(&client, &a, "sam", Some("support")).await;
    let plain = user_token(&client, &a, "pat", None).await;
    let stranger = user_token(&client, &b, "eve", Some("admin")).await;
    let deps = authorizer_for(&a, &a.client_id).await;

    match decide(&deps, "GET", "/tickets", &support).await {
        Decision::Allow(identity) => assert_eq!(identity.roles, ["support"]),
        other => panic!("pool token with the support group refused: {other:?}"),
    }
    assert_eq!(decide(&deps, "GET", "/tickets", &plain).await, Decision::Forbidden);
    assert_eq!(decide(&deps, "POST", "/admin/api-keys", &support).await, Decision::Forbidden);
    // Another pool (even with an admin group), a tampered token, another client: refused.
    assert_eq!(decide(&deps, "GET", "/admin/users", &stranger).await, Decision::Unauthorized);
    let mut parts: Vec<String> = support.split('.').map(str::to_owned).collect();
    let last = parts[2].pop().map(|c| if c == 'A' { 'B' } else { 'A' }).expect("signature");
    parts[2].push(last);
    assert_eq!(decide(&deps, "GET", "/admin/users", &parts.join(".")).await, Decision::Unauthorized);
    let other_client = authorizer_for(&a, "some-other-client").await;
    assert_eq!(decide(&other_client, "GET", "/admin/users", &support).await, Decision::Unauthorized);
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_most_once_per_ten_seconds() {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { r#"{"keys":[]}"# }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let cfg = portcullis_shared::cognito::CognitoConfig::for_pool(
        "us-east-1",
        "us-east-1_test",
        vec!["client".into()],
        Some(format!("http://{addr}/jwks.json")),
        "access".into(),
    );
    let verifier = portcullis_shared::cognito::CognitoVerifier::new(cfg, Arc::new(SystemClock));
    use base64::Engine;
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    for i in 0..20 {
        let token = format!(
            "{}.{}.c2ln",
            b64(serde_json::json!({"alg": "RS256", "kid": format!("forged-{i}")})),
            b64(serde_json::json!({}))
        );
        assert!(verifier.verify(&token).await.is_err());
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "20 unknown kids caused more than one fetch"
    );
}

/// Pool tokens get the 30 s leeway on `exp` and `iat` of docs/security/cognito.md, no more, no
/// less: probed 2 s inside and 2 s outside it with a clock set around a real
/// moto-issued token.
#[tokio::test]
async fn pool_tokens_get_the_leeway_on_exp_and_iat_and_no_more() {
    use base64::Engine;
    use portcullis_shared::clock::{Clock, ManualClock};
    use portcullis_shared::tokens::TokenError;
    const DOCUMENTED_LEEWAY: i64 = 30;
    let client = Client::new(aws_config().await);
    let a = pool(&client, &format!("pc-leeway-{}", crate::helpers::hex_token())).await;
    let token = user_token(&client, &a, "lee", None).await;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).expect("payload"))
            .expect("b64"),
    )
    .expect("claims");
    let (exp, iat) = (claims["exp"].as_i64().expect("exp"), claims["iat"].as_i64().expect("iat"));
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL: run scripts/test.sh");
    let verifier_at = |at: i64| {
        let clock = ManualClock::new(at);
        let cfg = portcullis_shared::cognito::CognitoConfig::for_pool(
            "us-east-1",
            &a.id,
            vec![a.client_id.clone()],
            Some(format!("{endpoint}/{}/.well-known/jwks.json", a.id)),
            "access".into(),
        );
        (portcullis_shared::cognito::CognitoVerifier::new(cfg, Arc::new(clock.clone())), clock)
    };
    let (verifier, clock) = verifier_at(exp + DOCUMENTED_LEEWAY - 2);
    let verdict = verifier.verify(&token).await;
    assert!(verdict.is_ok(), "refused inside the leeway after exp: {verdict:?}");
    clock.advance(4);
    assert_eq!(verifier.verify(&token).await, Err(TokenError::Expired), "accepted past the leeway");
    let (verifier, clock) = verifier_at(iat - DOCUMENTED_LEEWAY + 2);
    let verdict = verifier.verify(&token).await;
    assert!(verdict.is_ok(), "refused inside the leeway before iat: {verdict:?}");
    clock.advance(-4);
    assert_eq!(clock.now_secs(), iat - DOCUMENTED_LEEWAY - 2);
    assert_eq!(verifier.verify(&token).await, Err(TokenError::NotYetValid), "accepted before the leeway");
}

/// The `(n, e)` of a DER `RSAPublicKey` (RFC 8017 A.1.1): a SEQUENCE of two INTEGERs.
fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn item(der: &[u8], tag: u8) -> (&[u8], &[u8]) {
        assert_eq!(der[0], tag, "unexpected DER tag");
        let (len, start) = match der[1] {
            short if short < 0x80 => (short as usize, 2),
            long => {
                let n = (long & 0x7f) as usize;
                (der[2..2 + n].iter().fold(0usize, |acc, b| acc << 8 | *b as usize), 2 + n)
            }
        };
        (&der[start..start + len], &der[start + len..])
    }
    let (body, _) = item(der, 0x30);
    let (n, rest) = item(body, 0x02);
    let (e, _) = item(rest, 0x02);
    let strip = |v: &[u8]| v.iter().skip_while(|b| **b == 0).copied().collect::<Vec<u8>>();
    (strip(n), strip(e))
}

/// The pool verifier's header allow-list (`alg`, `kid`, `typ`): each edited
/// header is signed with the pool's own RSA key (served as its JWKS), so the
/// signature and `kid` are good and only the header check can refuse it.
#[tokio::test]
async fn pool_tokens_with_edited_headers_signed_by_the_pool_key_are_refused() {
    use aws_lc_rs::signature::KeyPair as _;
    use base64::Engine;
    use portcullis_shared::clock::Clock;
    use portcullis_shared::tokens::TokenError;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
    let (n, e) = rsa_components(pair.public_key().as_ref());
    let jwks = serde_json::json!({"keys": [{"kty": "RSA", "kid": "pool-key", "alg": "RS256", "use": "sig", "n": b64(&n), "e": b64(&e)}]});
    let app =
        axum::Router::new().route("/jwks.json", axum::routing::get(move || async move { jwks.to_string() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let cfg = portcullis_shared::cognito::CognitoConfig::for_pool(
        "us-east-1",
        "us-east-1_headers",
        vec!["client".into()],
        Some(format!("http://{addr}/jwks.json")),
        "access".into(),
    );
    let now = SystemClock.now_secs();
    let claims = serde_json::json!({
        "iss": cfg.issuer, "sub": "pool-user", "token_use": "access", "client_id": "client",
        "exp": now + 600, "iat": now,
    });
    let verifier = portcullis_shared::cognito::CognitoVerifier::new(cfg, Arc::new(SystemClock));
    let sign = |header: &serde_json::Value| {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let mut signature = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .expect("sign");
        format!("{input}.{}", b64(&signature))
    };
    let with = |name: &str, value: serde_json::Value| {
        let mut header = serde_json::json!({"alg": "RS256", "kid": "pool-key", "typ": "JWT"});
        header[name] = value;
        header
    };
    let control = verifier.verify(&sign(&with("typ", "JWT".into()))).await;
    assert!(control.is_ok(), "the pool-signed control token was refused: {control:?}");
    let jwk = serde_json::json!({"kty": "RSA", "n": b64(&n), "e": b64(&e)});
    const EXTRA: TokenError = TokenError::Header("unexpected header parameter");
    let cases = [
        (with("jku", "https://attacker.example/jwks.json".into()), EXTRA),
        (with("x5u", "https://attacker.example/cert.pem".into()), EXTRA),
        (with("jwk", jwk), EXTRA),
        (with("x5c", serde_json::json!(["MIIB"])), EXTRA),
        (with("crit", serde_json::json!(["exp"])), EXTRA),
        (with("cty", "JWT".into()), EXTRA),
        (with("urn:x", "1".into()), EXTRA),
        (with("alg", "RS384".into()), TokenError::Header("alg must be RS256")),
        (with("kid", "".into()), TokenError::Header("kid is required")),
    ];
    let mut wrong = Vec::new();
    for (header, refusal) in cases {
        let verdict = verifier.verify(&sign(&header)).await.map(|_| "accepted");
        if verdict != Err(refusal) {
            wrong.push(format!("{header}: {verdict:?}"));
        }
    }
    assert!(wrong.is_empty(), "not refused by the header check:\n{}", wrong.join("\n"));
}
