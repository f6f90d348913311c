use super::*;
use crate::adapters::memory::MemoryStore;
use crate::clock::ManualClock;
use crate::crypto::VerifyingKey;
use crate::crypto::{load_signing_key, LocalKeyProvider};

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

/// The leeway docs/security/README.md promises on `exp`, `nbf` and `iat`. Written out, not
/// read from [`LEEWAY_SECS`]: the tests below fail if the leeway is removed or
/// changed, so a change to it is a decision.
const DOCUMENTED_LEEWAY: i64 = 30;

/// A token over `header` and `claims` with a real ES256 signature by our key:
/// whatever the verifier refuses in it, the signature is not the reason.
fn signed(issuer: &TokenIssuer, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &issuer.key, Algorithm::ES256).expect("signs");
    format!("{input}.{signature}")
}

fn our_header(key: &SigningKey) -> serde_json::Value {
    serde_json::json!({"typ": "at+jwt", "alg": "ES256", "kid": key.kid})
}

/// The claims `issuer` would issue now, with `changes` applied.
fn claims_with(issuer: &TokenIssuer, changes: serde_json::Value) -> serde_json::Value {
    let (_, claims) = issuer.issue(grant()).expect("issues");
    let mut claims = serde_json::to_value(claims).expect("claims");
    for (name, value) in changes.as_object().expect("changes") {
        claims[name] = value.clone();
    }
    claims
}

#[tokio::test]
async fn issued_tokens_verify_until_their_expiry_plus_the_leeway() {
    let (issuer, verifier, clock, _) = setup().await;
    let (token, claims) = issuer.issue(grant()).expect("issues");
    assert_eq!(verifier.verify(&token).expect("valid"), claims);
    clock.advance(900 + DOCUMENTED_LEEWAY - 2);
    assert_eq!(verifier.verify(&token), Ok(claims), "refused inside the leeway after exp");
    clock.advance(4);
    assert_eq!(verifier.verify(&token), Err(TokenError::Expired), "accepted past the leeway after exp");
}

#[tokio::test]
async fn an_exp_just_inside_the_leeway_passes_and_just_outside_fails() {
    let (issuer, verifier, clock, key) = setup().await;
    let now = clock.now_secs();
    let inside = claims_with(&issuer, serde_json::json!({"exp": now - DOCUMENTED_LEEWAY + 2}));
    assert!(verifier.verify(&signed(&issuer, &our_header(&key), &inside)).is_ok());
    let outside = claims_with(&issuer, serde_json::json!({"exp": now - DOCUMENTED_LEEWAY - 2}));
    assert_eq!(verifier.verify(&signed(&issuer, &our_header(&key), &outside)), Err(TokenError::Expired));
}

#[tokio::test]
async fn an_nbf_or_iat_just_inside_the_leeway_passes_and_just_outside_fails() {
    let (issuer, verifier, clock, key) = setup().await;
    let now = clock.now_secs();
    for claim in ["nbf", "iat"] {
        let inside = claims_with(&issuer, serde_json::json!({ claim: now + DOCUMENTED_LEEWAY - 2 }));
        let verdict = verifier.verify(&signed(&issuer, &our_header(&key), &inside));
        assert!(verdict.is_ok(), "{claim} inside the leeway refused: {verdict:?}");
        let outside = claims_with(&issuer, serde_json::json!({ claim: now + DOCUMENTED_LEEWAY + 2 }));
        let verdict = verifier.verify(&signed(&issuer, &our_header(&key), &outside));
        assert_eq!(verdict, Err(TokenError::NotYetValid), "{claim} past the leeway");
    }
    // The same through the clock: an issued token, read by a verifier running behind.
    let (token, _) = issuer.issue(grant()).expect("issues");
    clock.advance(-(DOCUMENTED_LEEWAY - 2));
    assert!(verifier.verify(&token).is_ok(), "refused with the verifier's clock inside the leeway");
    clock.advance(-4);
    assert_eq!(verifier.verify(&token), Err(TokenError::NotYetValid));
}

/// RFC 8725 §3.1/§3.10: the header allow-list. Every edited header is signed
/// again with our own key, so the signature is good and the `kid` ours; only
/// the header check can refuse them, and each refusal names its reason. The
/// values are of the types `jsonwebtoken` parses (it would otherwise refuse
/// them itself and hide a missing check).
#[tokio::test]
async fn edited_headers_signed_with_our_key_are_refused_by_the_header_check() {
    let (issuer, verifier, _, key) = setup().await;
    let claims = claims_with(&issuer, serde_json::json!({}));
    let control = signed(&issuer, &our_header(&key), &claims);
    assert!(verifier.verify(&control).is_ok(), "the re-signing itself is broken");
    let jwk = jwks(std::slice::from_ref(&key.public))["keys"][0].clone();
    let with = |name: &str, value: serde_json::Value| {
        let mut header = our_header(&key);
        header[name] = value;
        header
    };
    const REMOTE: TokenError = TokenError::Header("embedded or remote keys are never trusted");
    let cases = [
        (with("jku", "https://attacker.example/jwks.json".into()), REMOTE),
        (with("x5u", "https://attacker.example/cert.pem".into()), REMOTE),
        (with("jwk", jwk), REMOTE),
        (with("x5c", serde_json::json!(["MIIB"])), REMOTE),
        (with("crit", serde_json::json!(["exp"])), TokenError::Header("crit is not supported")),
        (with("cty", "JWT".into()), TokenError::Header("unexpected header parameter")),
        (with("x5t", "AAAA".into()), TokenError::Header("unexpected header parameter")),
        (with("urn:x", "1".into()), TokenError::Header("unexpected header parameter")),
        (with("typ", "JWT".into()), TokenError::Header("typ must be at+jwt")),
        (serde_json::json!({"alg": "ES256", "kid": key.kid}), TokenError::Header("typ must be at+jwt")),
        (with("alg", "none".into()), TokenError::Header("alg must be ES256")),
        (with("alg", "HS256".into()), TokenError::Header("alg must be ES256")),
        (serde_json::json!({"alg": "ES256", "typ": "at+jwt"}), TokenError::Header("kid is required")),
        (with("kid", "".into()), TokenError::Header("kid is required")),
        (with("kid", "k".repeat(65).into()), TokenError::Header("kid is required")),
        (with("kid", "unknown".into()), TokenError::UnknownKey),
    ];
    let wrong: Vec<String> = cases
        .into_iter()
        .filter_map(|(header, refusal)| {
            let verdict = verifier.verify(&signed(&issuer, &header, &claims)).map(|_| "accepted");
            (verdict != Err(refusal)).then(|| format!("{header}: {verdict:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "not refused by the header check:\n{}", wrong.join("\n"));
    // RFC 9068 §4: the media type, in any case, is the same typ.
    for typ in ["application/at+jwt", "AT+JWT"] {
        assert!(verifier.verify(&signed(&issuer, &with("typ", typ.into()), &claims)).is_ok(), "{typ}");
    }
}

#[tokio::test]
async fn malformed_and_oversized_tokens_are_refused_before_parsing() {
    let (issuer, verifier, _, _) = setup().await;
    let (token, _) = issuer.issue(grant()).expect("issues");
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

#[tokio::test]
async fn hs256_keyed_with_our_public_key_is_refused() {
    // The classic algorithm-confusion forgery: HMAC with the public key as secret.
    let (issuer, verifier, _, key) = setup().await;
    let (token, claims) = issuer.issue(grant()).expect("issues");
    assert!(verifier.verify(&token).is_ok());
    let pem_like = jwks(std::slice::from_ref(&key.public)).to_string();
    for secret in [key.public.point.clone(), pem_like.into_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(key.kid.clone());
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).expect("hmac");
        assert!(verifier.verify(&forged).is_err());
    }
}

fn wycheproof_jws() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/wycheproof/json_web_signature_test.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("vectors are JSON")
}

#[tokio::test]
async fn every_wycheproof_jws_vector_is_refused_by_our_verifier() {
    let (_, ours, clock, _) = setup().await;
    let vectors = wycheproof_jws();
    let mut count = 0;
    for group in vectors["testGroups"].as_array().expect("groups") {
        // A verifier that even trusts the group's own EC key under its kid.
        let theirs = group["public"]
            .as_object()
            .filter(|k| k.get("crv").and_then(|c| c.as_str()) == Some("P-256"))
            .and_then(|k| {
                let x = URL_SAFE_NO_PAD.decode(k.get("x")?.as_str()?).ok()?;
                let y = URL_SAFE_NO_PAD.decode(k.get("y")?.as_str()?).ok()?;
                let point = [&[4u8][..], &x, &y].concat();
                let kid = k.get("kid").and_then(|v| v.as_str()).unwrap_or("wycheproof").to_owned();
                Some(TokenVerifier::new(
                    &[VerifyingKey { kid, point }],
                    "iss",
                    "aud",
                    Arc::new(clock.clone()),
                ))
            });
        for test in group["tests"].as_array().expect("tests") {
            let jws = test["jws"].as_str().unwrap_or_default();
            assert!(ours.verify(jws).is_err(), "tcId {} accepted", test["tcId"]);
            if let Some(theirs) = &theirs {
                // Valid JWS but not access tokens (no at+jwt, no claims): refused all the same.
                assert!(theirs.verify(jws).is_err(), "tcId {} accepted with its own key", test["tcId"]);
            }
            count += 1;
        }
    }
    assert!(count > 400, "only {count} vectors read");
}

#[test]
fn es256_signatures_match_the_wycheproof_verdicts() {
    // Known-answer check of the ES256 primitive under our verifier (jsonwebtoken on
    // aws-lc-rs): every valid vector verifies; no invalid one does once its
    // segments decode canonically (the full verifier refuses the rest anyway).
    let vectors = wycheproof_jws();
    let mut checked = 0;
    for group in vectors["testGroups"].as_array().expect("groups") {
        let Some(public) =
            group["public"].as_object().filter(|k| k.get("alg").and_then(|a| a.as_str()) == Some("ES256"))
        else {
            continue;
        };
        let (Some(x), Some(y)) = (public["x"].as_str(), public["y"].as_str()) else { continue };
        let key = DecodingKey::from_ec_components(x, y).expect("P-256 key");
        for test in group["tests"].as_array().expect("tests") {
            let jws = test["jws"].as_str().unwrap_or_default();
            let parts: Vec<&str> = jws.split('.').collect();
            if parts.len() != 3 {
                assert_ne!(test["result"], "valid");
                continue;
            }
            let message = format!("{}.{}", parts[0], parts[1]);
            let verified = jsonwebtoken::crypto::verify(parts[2], message.as_bytes(), &key, Algorithm::ES256)
                .unwrap_or(false);
            let canonical = parts
                .iter()
                .all(|p| URL_SAFE_NO_PAD.decode(p).is_ok_and(|b| URL_SAFE_NO_PAD.encode(b) == *p));
            if test["result"] == "valid" {
                assert!(verified, "valid tcId {} did not verify", test["tcId"]);
            } else if canonical {
                assert!(!verified, "invalid tcId {} verified", test["tcId"]);
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} ES256 vectors checked");
}
