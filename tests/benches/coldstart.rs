//! Cold start of every function binary: time from process start to the first
//! response through a local Lambda Runtime API (median of 40 starts, taken
//! round robin), peak RSS, and the binary's size, beside a minimal `lambda_runtime` hello-world built in
//! the same run. Prints numbers. Each function answers an event that needs no
//! key and no store round trip (a health check, a missing token, a body with an
//! unknown field, an unauthenticated call), so the figure is the process's own
//! start-up, not the latency of the local emulators (the functions' key
//! material loads in the background meanwhile; the authorizer reads its keys
//! when the first bearer token arrives). One more row has the authorizer decide
//! on a valid token: it reads the keys (MySQL) and the session (DynamoDB). The backup function is measured
//! refusing a non-schedule event: a whole backup is `scripts/bench-backup.sh`'s. Needs the services `scripts/test.sh` starts
//! (MariaDB, moto) and the binaries: those in `PORTCULLIS_BIN_DIR`, else
//! `cargo build --profile bench --bins`; `scripts/bench.sh` starts the services
//! and measures the release build.

use mysql_async::prelude::Queryable;
use portcullis_tests::RuntimeApi;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const STARTS: usize = 40;

/// The binaries measured: `PORTCULLIS_BIN_DIR` (scripts/bench.sh points it at
/// the release build, the artifacts that ship), else this bench's profile directory.
fn bin_dir() -> PathBuf {
    match std::env::var_os("PORTCULLIS_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("bench path");
            exe.parent().and_then(|p| p.parent()).expect("profile dir").to_path_buf()
        }
    }
}

fn binary(name: &str) -> PathBuf {
    bin_dir().join(name)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// One cold start: (time to first response, peak RSS in KiB, the response).
async fn cold_start(
    name: &str,
    env: &[(String, String)],
    event: &serde_json::Value,
) -> (Duration, u64, serde_json::Value) {
    let (api, addr) = RuntimeApi::start(vec![("e".into(), event.clone())]).await;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary(name))
        .env("AWS_LAMBDA_RUNTIME_API", &addr)
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("PORTCULLIS_LOG", "error")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let answers = api.answers(1, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    assert!(!answers.contains_key("init"), "{name} failed to start");
    let rss = child
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    child.kill().await.ok();
    (elapsed, rss, answers.into_values().next().unwrap_or_default())
}

/// An authorizer event carrying a valid token for a live DynamoDB session, so
/// the first response includes reading the keys from MySQL and the session.
async fn valid_token_event(env: &[(String, String)]) -> serde_json::Value {
    use portcullis_shared::clock::{Clock, SystemClock};
    let lookup: std::collections::HashMap<_, _> = env.iter().cloned().collect();
    let config = portcullis_shared::config::Config::from_lookup(|n| {
        lookup.get(n).cloned().or_else(|| std::env::var(n).ok())
    })
    .expect("config");
    let backends = portcullis_shared::runtime::Backends::open(&config).await.expect("backends");
    let provider = portcullis_shared::runtime::key_provider(&config).expect("key provider");
    let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(SystemClock);
    let issuer =
        portcullis_shared::runtime::token_issuer(&config, &backends, provider.as_ref(), clock.clone())
            .await
            .expect("issuer");
    let (session, _) = portcullis_shared::sessions::start(
        backends.sessions.as_ref(),
        &config.session_policy(),
        "coldstart-user",
        vec!["user".into()],
        vec!["pwd".into()],
        &Default::default(),
        clock.now_secs(),
    )
    .await
    .expect("session");
    let token = issuer
        .issue(portcullis_shared::tokens::Grant::for_session(&session, vec!["user".into()]))
        .expect("token")
        .0;
    let text = event("events/authorizer/http-api-allow.json")
        .to_string()
        .replace("REPLACE_WITH_ACCESS_TOKEN", &token);
    serde_json::from_str(&text).expect("event JSON")
}

fn event(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path))
        .expect("event");
    serde_json::from_str(&text).expect("event JSON")
}

#[tokio::main]
async fn main() {
    let mysql = env_or("PORTCULLIS_TEST_MYSQL_URL", "mysql://portcullis_test:portcullis_test@127.0.0.1:3306");
    for (k, v) in [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var(k).is_err() {
            std::env::set_var(k, v);
        }
    }
    let db = format!("pc_coldstart_{}", std::process::id());
    let mut admin = mysql_async::Conn::new(mysql_async::Opts::from_url(&mysql).expect("url"))
        .await
        .expect("MariaDB (run scripts/test.sh first)");
    // sql-splice-reviewed: the database name is built here from a process id.
    let create = format!("CREATE DATABASE {db}");
    admin.query_drop(create).await.expect("create database");
    let url = format!("{mysql}/{db}");
    let mut conn =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&url).expect("url")).await.expect("connect");
    portcullis_shared::adapters::mysql::apply_migrations(&mut conn).await.expect("migrate");
    let sdk = portcullis_shared::aws::aws_config().await;
    let table = format!("pc-coldstart-{}", std::process::id());
    portcullis_shared::adapters::dynamo::create_table(&aws_sdk_dynamodb::Client::new(sdk), &table)
        .await
        .expect("table");
    let key = aws_sdk_kms::Client::new(sdk).create_key().send().await.expect("key");
    let key_id = key.key_metadata().map(|m| m.key_id().to_owned()).expect("key id");
    let bucket = format!("pc-coldstart-{}", std::process::id());
    aws_sdk_s3::Client::new(sdk).create_bucket().bucket(&bucket).send().await.expect("bucket");
    let env: Vec<(String, String)> = [
        ("PORTCULLIS_STORE", "mysql"),
        ("PORTCULLIS_DATABASE_URL", url.as_str()),
        ("PORTCULLIS_KEY_PROVIDER", "kms"),
        ("PORTCULLIS_KMS_KEY_ID", key_id.as_str()),
        ("PORTCULLIS_SESSION_STORE", "dynamodb"),
        ("PORTCULLIS_DYNAMODB_TABLE", table.as_str()),
        ("PORTCULLIS_BACKUP_BUCKET", bucket.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let functions = [
        ("hello-lambda", serde_json::json!({})),
        ("portcullis-login", event("events/login/health.json")),
        ("portcullis-authorizer", event("events/authorizer/http-api-missing-header.json")),
        ("portcullis-refresh", event("events/refresh/refresh-unknown-field.json")),
        ("portcullis-mfa", event("events/mfa/verify-unknown-field.json")),
        ("portcullis-admin", event("events/refresh/sessions-without-authorizer.json")),
        ("portcullis-backup", event("events/backup/not-scheduled.json")),
        ("portcullis-notify", event("events/notify/not-mail.json")),
    ];
    // The first login start creates the keys the others load: warm that up first.
    cold_start("portcullis-login", &env, &functions[1].1).await;
    let valid = valid_token_event(&env).await;
    println!(
        "cold start through a local Lambda Runtime API, {STARTS} starts each, binaries in {}",
        bin_dir().display()
    );
    println!(
        "{:<38} {:>10} {:>10} {:>13} {:>10} {:>10}",
        "binary", "median ms", "p90 ms", "peak RSS MB", "size MB", "vs hello"
    );
    let mut hello = 0.0;
    let mut runs: Vec<(&str, &str, &serde_json::Value)> =
        functions.iter().map(|(name, event)| (*name, "", event)).collect();
    runs.push(("portcullis-authorizer", " (valid token)", &valid));
    // Round robin: each round starts every binary once, so a slow spell of the
    // machine falls on all of them alike instead of on whichever ran then.
    let mut samples = vec![(Vec::with_capacity(STARTS), 0u64); runs.len()];
    for _ in 0..STARTS {
        for ((name, what, event), (times, rss)) in runs.iter().zip(samples.iter_mut()) {
            let (t, r, answer) = cold_start(name, &env, event).await;
            if !what.is_empty() {
                assert_eq!(answer["isAuthorized"], true, "the valid token must be allowed: {answer}");
            }
            times.push(t);
            *rss = (*rss).max(r);
        }
    }
    for ((name, what, _), (mut times, rss)) in runs.into_iter().zip(samples) {
        times.sort();
        let median = times[STARTS / 2].as_secs_f64() * 1e3;
        let p90 = times[STARTS * 9 / 10].as_secs_f64() * 1e3;
        if name == "hello-lambda" {
            hello = median;
        }
        let size = std::fs::metadata(binary(name)).map(|m| m.len()).unwrap_or(0) as f64 / 1_048_576.0;
        let label = format!("{name}{what}");
        println!(
            "{label:<38} {median:>10.2} {p90:>10.2} {:>13.1} {size:>10.1} {:>9.2}x",
            rss as f64 / 1024.0,
            median / hello
        );
        if name != "hello-lambda" {
            // Summary rows for scripts/bench.sh's table: figure, Portcullis, comparison, ratio.
            println!(
                "ROW\tcold start, {label}: first response / peak RSS / binary\t{median:.2} ms / {:.1} MB / {size:.1} MB\thello-world {hello:.2} ms\t{:.2}x",
                rss as f64 / 1024.0,
                median / hello
            );
        }
    }
    // sql-splice-reviewed: as above.
    let drop = format!("DROP DATABASE {db}");
    admin.query_drop(drop).await.expect("drop database");
}
