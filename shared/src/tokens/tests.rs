use super::*;
use crate::clock::ManualClock;
use crate::crypto::{load_signing_key, LocalKeyProvider};
use crate::store::MemoryStore;

async fn setup() -> (TokenIssuer, TokenVerifier, ManualClock, SigningKey) {
    let dir = std::env::temp_dir().join(format!("pc-tok-{}", uuid::Uuid::new_v4()));
    let provider = LocalKeyProvider::open_or_create(&dir.join("k")).expect("key file");
    let store = MemoryStore::new();
    let key = load_signing_key(&store, &provider, 0).await.expect("signing key");
    let clock = ManualClock::new(1_800_000_000);
    let issuer = TokenIssuer::new(&key, "iss".into(), "aud".into(), 900, Arc::new(clock.clone()));
    let verifier =
        TokenVerifier::new(std::slice::from_ref(&key.public), "iss", "aud", Arc::new(clock.clone()));
    (issuer, verifier, clock, key)
}

fn grant() -> Grant {
    Grant {
        sub: "u1".into(),
        sid: "s1".into(),
        roles: vec!["user".into()],
        amr: vec!["pwd".into()],
        auth_time: 1,
    }
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn issued_tokens_verify_until_they_expire() {
    let (issuer, verifier, clock, _) = setup().await;
    let (token, claims) = issuer.issue(grant()).expect("issues");
    assert_eq!(verifier.verify(&token).expect("valid"), claims);
    clock.advance(900 + LEEWAY_SECS);
    assert_eq!(verifier.verify(&token), Err(TokenError::Expired));
}

#[tokio::test]
async fn tokens_from_the_future_are_refused() {
    let (issuer, verifier, clock, _) = setup().await;
    let (token, _) = issuer.issue(grant()).expect("issues");
    clock.advance(-(LEEWAY_SECS + 5));
    assert_eq!(verifier.verify(&token), Err(TokenError::NotYetValid));
}

#[tokio::test]
async fn forged_headers_are_refused() {
    let (issuer, verifier, _, key) = setup().await;
    let (token, _) = issuer.issue(grant()).expect("issues");
    let mut parts = token.split('.');
    let (_, payload, sig) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let cases = [
        serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": key.kid}),
        serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": key.kid}),
        serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": key.kid}),
        serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "unknown"}),
        serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid, "jku": "https://evil"}),
        serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid, "crit": ["exp"]}),
        serde_json::json!({"alg": "ES256", "typ": "at+jwt"}),
    ];
    for header in cases {
        let forged = format!("{}.{payload}.{sig}", b64(&header));
        assert!(verifier.verify(&forged).is_err(), "accepted {header}");
    }
    assert_eq!(verifier.verify(&format!("{token}.x")), Err(TokenError::Malformed));
    assert_eq!(verifier.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)), Err(TokenError::Malformed));
}

#[tokio::test]
async fn tampered_payloads_and_wrong_audiences_are_refused() {
    let (issuer, verifier, clock, key) = setup().await;
    let (token, mut claims) = issuer.issue(grant()).expect("issues");
    let mut parts: Vec<&str> = token.split('.').collect();
    claims.roles = vec!["admin".into()];
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
    parts[1] = &payload;
    assert_eq!(verifier.verify(&parts.join(".")), Err(TokenError::Invalid));
    let other =
        TokenVerifier::new(std::slice::from_ref(&key.public), "iss", "other-aud", Arc::new(clock.clone()));
    assert_eq!(other.verify(&token), Err(TokenError::Invalid));
    let other = TokenVerifier::new(std::slice::from_ref(&key.public), "other-iss", "aud", Arc::new(clock));
    assert_eq!(other.verify(&token), Err(TokenError::Invalid));
}

#[tokio::test]
async fn jwks_publishes_the_public_key_only() {
    let (_, _, _, key) = setup().await;
    let doc = jwks(std::slice::from_ref(&key.public));
    let jwk = &doc["keys"][0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["kid"], key.kid.as_str());
    assert!(jwk.get("d").is_none());
}
