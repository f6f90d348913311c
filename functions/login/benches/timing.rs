//! Enumeration timing: median login response time for an unknown account, a
//! wrong password and a locked account, 300 tries each, interleaved so that
//! machine noise falls on every case alike. The server does the same work in
//! all three (one argon2id verification, a dummy hash where no real one
//! applies), so the medians should differ by well under 5%. Prints numbers.
//! Run: `cargo bench -p portcullis-login --bench timing`.

use lambda_http::{Body, Request};
use portcullis_login::{handle, Deps};
use portcullis_shared::clock::SystemClock;
use portcullis_shared::config::Config;
use portcullis_shared::runtime::{key_provider, Backends, Boot};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TRIES: usize = 300;
const PASSWORD: &str = "velvet-otter-quantum-harbor-71";

fn request(path: &str, email: &str, password: &str) -> Request {
    let body = serde_json::json!({"email": email, "password": password}).to_string();
    http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::Text(body))
        .expect("request")
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let key_file =
        std::env::temp_dir().join(format!("portcullis-bench-timing-{}", std::process::id())).join("k");
    let config = Config::from_lookup(|name| match name {
        "PORTCULLIS_LOCAL_KEY_FILE" => Some(key_file.display().to_string()),
        "PORTCULLIS_STORE" => Some("memory".into()),
        // One benchmark client is one source address: lift the per-IP limit so only
        // the account limit is in play.
        "PORTCULLIS_IP_MAX_FAILURES" => Some("100000".into()),
        "PORTCULLIS_LOCKOUT_BASE_SECS" => Some("3600".into()),
        "PORTCULLIS_LOCKOUT_MAX_SECS" => Some("3600".into()),
        _ => None,
    })
    .expect("config");
    let backends = Backends::open(&config).await.expect("backends");
    let provider = key_provider(&config).expect("keys");
    let deps = Deps::build(&Boot::new(&config, &backends, provider.clone(), Arc::new(SystemClock)))
        .await
        .expect("deps");

    // Existing accounts for the wrong-password case (one try each, so none locks),
    // and one account locked before measuring.
    for i in 0..TRIES {
        let resp = handle(&deps, request("/auth/register", &format!("known{i}@example.com"), PASSWORD)).await;
        assert_eq!(resp.status(), 201);
    }
    assert_eq!(handle(&deps, request("/auth/register", "locked@example.com", PASSWORD)).await.status(), 201);
    for _ in 0..6 {
        handle(&deps, request("/auth/login", "locked@example.com", "wrong-password-123")).await;
    }

    let (mut unknown, mut wrong, mut locked) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..TRIES {
        let cases = [
            (&mut unknown, format!("nobody{i}@example.com"), 401),
            (&mut wrong, format!("known{i}@example.com"), 401),
            (&mut locked, "locked@example.com".to_owned(), 429),
        ];
        for (samples, email, status) in cases {
            let start = Instant::now();
            let resp = handle(&deps, request("/auth/login", &email, "wrong-password-123")).await;
            samples.push(start.elapsed());
            assert_eq!(resp.status(), status, "{email}");
        }
    }
    // An account is told apart by the answers that check a password: unknown and
    // wrong must take the same time. A locked attempt checks nothing and sheds its
    // argon2 work; it answers the same 429 for known and unknown accounts alike.
    let (unknown, wrong, locked) = (median(unknown), median(wrong), median(locked));
    let spread = (unknown - wrong).abs() / unknown.min(wrong) * 100.0;
    println!("enumeration timing: median login response, {TRIES} tries per case, in-memory stores");
    println!("  unknown account  {unknown:8.3} ms");
    println!("  wrong password   {wrong:8.3} ms");
    println!("  locked account   {locked:8.3} ms (no argon2: shed)");
    println!("  difference between unknown and wrong: {spread:.2}% (goal < 5%)");
    println!(
        "ROW\tlogin medians: unknown / wrong password (locked, shed)\t{unknown:.2} / {wrong:.2} ms ({locked:.2} ms)\tgoal: spread < 5%\t{spread:.2}% spread"
    );
}
