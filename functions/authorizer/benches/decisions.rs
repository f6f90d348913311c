//! Authorizer decisions per second on one core for distinct valid tokens, the raw
//! ES256 signature-verify cost (the physical limit of a decision), and
//! aws-jwt-verify verifying the same tokens in the same run. Prints numbers.
//!
//! Run: `cargo bench -p portcullis-authorizer --bench decisions`. The comparison
//! needs `node` and aws-jwt-verify installed under `PORTCULLIS_NODE_MODULES`
//! (`scripts/bench.sh` installs it); without them it is skipped and says so.
//! The session store is in memory here, so the numbers are the authorizer's own
//! CPU cost; in AWS each decision adds one DynamoDB GetItem.

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis_authorizer::{authorize, Ask, Decision, Deps};
use portcullis_shared::clock::{Clock, SystemClock};
use portcullis_shared::config::Config;
use portcullis_shared::crypto::load_verifying_keys;
use portcullis_shared::http::ClientMeta;
use portcullis_shared::runtime::{key_provider, token_issuer, Backends};
use portcullis_shared::sessions;
use portcullis_shared::tokens::Grant;
use std::sync::Arc;
use std::time::Instant;

const TOKENS: usize = 20_000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::env::temp_dir().join(format!("portcullis-bench-authz-{}", std::process::id()));
    let key_file = dir.join("master.key");
    let config =
        Config::from_lookup(|n| (n == "PORTCULLIS_LOCAL_KEY_FILE").then(|| key_file.display().to_string()))
            .expect("config");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backends = Backends::open(&config).await.expect("backends");
    let provider = key_provider(&config).await.expect("keys");
    let issuer = token_issuer(&config, &backends, provider.as_ref(), clock.clone()).await.expect("issuer");
    let deps = Deps::build(&config, &backends, clock.clone()).await.expect("deps");
    let policy = config.session_policy();
    let mut tokens = Vec::with_capacity(TOKENS);
    for i in 0..TOKENS {
        let user = format!("user-{i}");
        let meta = ClientMeta::default();
        let (session, _) = sessions::start(
            backends.sessions.as_ref(),
            &policy,
            &user,
            vec!["user".into()],
            vec!["pwd".into()],
            &meta,
            clock.now_secs(),
        )
        .await
        .expect("session");
        tokens.push(issuer.issue(Grant::for_session(&session, vec!["user".into()])).expect("token").0);
    }
    let headers: Vec<String> = tokens.iter().map(|t| format!("Bearer {t}")).collect();

    // Decisions: verify, session lookup, RBAC, context.
    let start = Instant::now();
    for header in &headers {
        let ask = Ask { method: "GET", path: "/me", authorization: Some(header), api_key: None };
        assert!(matches!(authorize(&deps, ask).await, Decision::Allow(_)));
    }
    let decisions = start.elapsed();

    // Raw ES256 verification of the same signatures with aws-lc-rs.
    let keys = load_verifying_keys(backends.keys.as_ref()).await.expect("keys");
    let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, keys[0].point.clone());
    let split: Vec<(String, Vec<u8>)> = tokens
        .iter()
        .map(|t| {
            let (input, sig) = t.rsplit_once('.').expect("three segments");
            (input.to_owned(), URL_SAFE_NO_PAD.decode(sig).expect("signature"))
        })
        .collect();
    let start = Instant::now();
    for (input, sig) in &split {
        public.verify(input.as_bytes(), sig).expect("valid signature");
    }
    let raw = start.elapsed();

    let per_sec = |d: std::time::Duration| TOKENS as f64 / d.as_secs_f64();
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6 / TOKENS as f64;
    println!("authorizer benchmark: {TOKENS} distinct ES256 tokens, one core");
    println!("  authorizer decision        {:>9.0} /s   {:>6.1} us each", per_sec(decisions), us(decisions));
    println!("  raw ES256 verify (aws-lc)  {:>9.0} /s   {:>6.1} us each", per_sec(raw), us(raw));
    println!("  decision / raw verify      {:>9.2}x", decisions.as_secs_f64() / raw.as_secs_f64());

    match std::env::var("PORTCULLIS_NODE_MODULES") {
        Ok(modules) => {
            std::fs::create_dir_all(&dir).expect("dir");
            let tokens_path = dir.join("tokens.json");
            let jwks_path = dir.join("jwks.json");
            std::fs::write(&tokens_path, serde_json::to_vec(&tokens).expect("json")).expect("write");
            std::fs::write(&jwks_path, portcullis_shared::tokens::jwks(&keys).to_string()).expect("write");
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/aws-jwt-verify.mjs");
            // ES modules resolve packages from the script's folder upwards; link it beside them.
            let linked = std::path::Path::new(&modules).join("..").join("aws-jwt-verify-bench.mjs");
            std::fs::copy(script, &linked).expect("copy script");
            let out = std::process::Command::new("node")
                .arg(&linked)
                .args([&tokens_path, &jwks_path])
                .args([&config.issuer, &config.audience])
                .output()
                .expect("run node");
            assert!(out.status.success(), "aws-jwt-verify failed: {}", String::from_utf8_lossy(&out.stderr));
            let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("node JSON");
            let node_per_sec = result["per_sec"].as_f64().unwrap_or(0.0);
            println!(
                "  aws-jwt-verify (Node {}) {:>9.0} /s   {:>6.1} us each (verify only, same tokens)",
                String::from_utf8_lossy(
                    &std::process::Command::new("node")
                        .arg("--version")
                        .output()
                        .map(|o| o.stdout)
                        .unwrap_or_default()
                )
                .trim(),
                node_per_sec,
                result["us_each"].as_f64().unwrap_or(0.0)
            );
            println!(
                "  Portcullis decisions / aws-jwt-verify verifications: {:.2}x",
                per_sec(decisions) / node_per_sec
            );
        }
        Err(_) => println!("  aws-jwt-verify: skipped (set PORTCULLIS_NODE_MODULES; scripts/bench.sh does)"),
    }
}
