//! Login latency split into argon2id and everything else (parsing, lookup,
//! blind index, token signing, audit, response). Not a timed test: it prints
//! numbers. Run: `cargo bench -p portcullis-login --bench login`.
//!
//! "Everything else" is measured directly: the same login handler runs once more
//! with argon2id at its minimum cost (8 KiB, 1 pass), so what remains is
//! Portcullis' own work. With `PORTCULLIS_BENCH_MYSQL_URL` (a migrated database,
//! e.g. after `portcullis db migrate`) the store is MariaDB and the numbers
//! include its round trips; otherwise the in-memory store is used.

use lambda_http::{Body, Request};
use portcullis_login::{handle, Deps};
use portcullis_shared::clock::SystemClock;
use portcullis_shared::config::Config;
use portcullis_shared::crypto::PasswordHasher;
use portcullis_shared::domain::Password;
use portcullis_shared::runtime::{key_provider, Backends, Boot};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "velvet-otter-quantum-harbor-71";
const ROUNDS: usize = 300;

fn request(path: &str, body: &str) -> Request {
    http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::Text(body.to_owned()))
        .expect("request")
}

/// (p50, p95) in milliseconds.
fn stats(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(samples[samples.len() / 2]), ms(samples[samples.len() * 95 / 100]))
}

/// Registers a fresh user with `deps`' hasher, then times `ROUNDS` logins.
async fn logins(deps: &Deps) -> Vec<Duration> {
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let body = serde_json::json!({"email": email, "password": PASSWORD}).to_string();
    assert_eq!(handle(deps, request("/auth/register", &body)).await.status(), 201);
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let resp = handle(deps, request("/auth/login", &body)).await;
        samples.push(start.elapsed());
        assert_eq!(resp.status(), 200);
    }
    samples
}

#[tokio::main]
async fn main() {
    let mysql = std::env::var("PORTCULLIS_BENCH_MYSQL_URL").ok();
    // One key file for every run, so a MySQL database keyed by an earlier run stays readable.
    let key_file = std::env::temp_dir().join("portcullis-bench").join("master.key");
    let config = Config::from_lookup(|name| match name {
        "PORTCULLIS_STORE" => Some(if mysql.is_some() { "mysql" } else { "memory" }.into()),
        "PORTCULLIS_DATABASE_URL" => mysql.clone(),
        "PORTCULLIS_LOCAL_KEY_FILE" => Some(key_file.display().to_string()),
        _ => None,
    })
    .expect("config");
    let backends = Backends::open(&config).await.expect("backends");
    let provider = key_provider(&config).expect("keys");
    let mut deps = Deps::build(&Boot::new(&config, &backends, provider.clone(), Arc::new(SystemClock)))
        .await
        .expect("deps");

    let password = Password::new(PASSWORD);
    let hasher = PasswordHasher::new().expect("argon2id");
    let phc = hasher.hash(&password).await.expect("hash");
    let mut argon = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        assert!(hasher.verify(&password, &phc).await.expect("verify"));
        argon.push(start.elapsed());
    }
    let full = logins(&deps).await;
    let minimal = PasswordHasher::with_params(8, 1, 1).expect("minimal argon2id");
    deps.identity = Arc::new(portcullis_shared::identity::NativeProvider::new(
        backends.native_stores(),
        config.session_policy(),
        minimal,
    ));
    let rest = logins(&deps).await;

    let (argon_p50, argon_p95) = stats(argon);
    let (full_p50, full_p95) = stats(full);
    let (rest_p50, rest_p95) = stats(rest);
    let store = if mysql.is_some() { "MariaDB" } else { "in-memory" };
    println!("login benchmark: {ROUNDS} logins each, store {store}");
    println!("  login handler, argon2id m=19456 KiB t=2 p=1   p50 {full_p50:8.3} ms   p95 {full_p95:8.3} ms");
    println!(
        "  argon2id verify alone                          p50 {argon_p50:8.3} ms   p95 {argon_p95:8.3} ms"
    );
    println!("  login handler, argon2id at minimum cost        p50 {rest_p50:8.3} ms   p95 {rest_p95:8.3} ms   (everything else; goal < 3 ms)");
    // Summary row for scripts/bench.sh's table: figure, Portcullis, comparison, ratio.
    println!(
        "ROW\tlogin p50, {store}: everything but argon2id\t{rest_p50:.3} ms\targon2id verify {argon_p50:.1} ms\t{:.1}% of the login",
        rest_p50 / full_p50 * 100.0
    );
}
