//! Token issue and verify throughput, and the refresh handler's own time with
//! the session store in memory (so no DynamoDB round trip is counted). Prints
//! numbers. Run: `cargo bench -p portcullis-refresh --bench tokens`.

use lambda_http::{Body, Request};
use portcullis_shared::clock::{Clock, SystemClock};
use portcullis_shared::config::Config;
use portcullis_shared::crypto::load_verifying_keys;
use portcullis_shared::runtime::{key_provider, token_issuer, Backends, Boot};
use portcullis_shared::tokens::{Grant, TokenVerifier};
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: usize = 20_000;
const REFRESHES: usize = 2_000;

fn request(path: &str, body: &str) -> Request {
    http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::Text(body.to_owned()))
        .expect("request")
}

fn percentile(samples: &mut [Duration], p: usize) -> f64 {
    samples.sort();
    samples[samples.len() * p / 100].as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let key_file =
        std::env::temp_dir().join(format!("portcullis-bench-tokens-{}", std::process::id())).join("k");
    let config = Config::from_lookup(|name| match name {
        "PORTCULLIS_LOCAL_KEY_FILE" => Some(key_file.display().to_string()),
        "PORTCULLIS_STORE" => Some("memory".into()),
        _ => None,
    })
    .expect("config");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backends = Backends::open(&config).await.expect("backends");
    let provider = key_provider(&config).expect("keys");
    let issuer = token_issuer(&config, &backends, provider.as_ref(), clock.clone()).await.expect("issuer");
    let keys = load_verifying_keys(backends.keys.as_ref()).await.expect("keys");
    let verifier = TokenVerifier::new(&keys, &config.issuer, &config.audience, clock.clone());

    let grant = |i: usize| Grant {
        sub: format!("user-{i}"),
        sid: format!("session-{i}"),
        roles: vec!["user".into()],
        amr: vec!["pwd".into()],
        auth_time: clock.now_secs(),
    };
    let start = Instant::now();
    let tokens: Vec<String> = (0..N).map(|i| issuer.issue(grant(i)).expect("issue").0).collect();
    let issue = start.elapsed();
    let start = Instant::now();
    for token in &tokens {
        verifier.verify(token).expect("verify");
    }
    let verify = start.elapsed();

    // Refresh chain against in-memory stores: the handler's own work only.
    let login =
        portcullis_login::Deps::build(&Boot::new(&config, &backends, provider.clone(), clock.clone()))
            .await
            .expect("login");
    let refresh =
        portcullis_refresh::Deps::build(&Boot::new(&config, &backends, provider.clone(), clock.clone()))
            .await
            .expect("refresh");
    let creds =
        serde_json::json!({"email": "bench@example.com", "password": "velvet-otter-quantum-harbor-71"})
            .to_string();
    assert_eq!(portcullis_login::handle(&login, request("/auth/register", &creds)).await.status(), 201);
    let resp = portcullis_login::handle(&login, request("/auth/login", &creds)).await;
    let body: serde_json::Value = serde_json::from_slice(resp.body().as_ref()).expect("json");
    let mut token = body["refresh_token"].as_str().expect("refresh token").to_owned();
    let mut samples = Vec::with_capacity(REFRESHES);
    for _ in 0..REFRESHES {
        let body = serde_json::json!({ "refresh_token": token }).to_string();
        let start = Instant::now();
        let resp = portcullis_refresh::handle(&refresh, request("/auth/token/refresh", &body)).await;
        samples.push(start.elapsed());
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(resp.body().as_ref()).expect("json");
        token = body["refresh_token"].as_str().expect("refresh token").to_owned();
    }
    let per_sec = |d: Duration| N as f64 / d.as_secs_f64();
    println!("token benchmark (ES256, jsonwebtoken on aws-lc-rs, one thread)");
    println!(
        "  issue    {:>9.0} tokens/s   ({:.1} us each)",
        per_sec(issue),
        issue.as_secs_f64() * 1e6 / N as f64
    );
    println!(
        "  verify   {:>9.0} tokens/s   ({:.1} us each)",
        per_sec(verify),
        verify.as_secs_f64() * 1e6 / N as f64
    );
    let (p50, p95) = (percentile(&mut samples, 50), percentile(&mut samples, 95));
    println!(
        "  refresh handler without DynamoDB: p50 {p50:.1} us   p95 {p95:.1} us   ({REFRESHES} rotations)"
    );
    let issue_us = issue.as_secs_f64() * 1e6 / N as f64;
    println!(
        "ROW\trefresh handler p50, no DynamoDB round trip\t{p50:.1} us\tES256 signing alone {issue_us:.1} us\t{:.2}x",
        p50 / issue_us
    );
}
