//! Test support shared by the integration tests and the cold-start benchmark:
//! a minimal Lambda Runtime API (the protocol AWS uses) on loopback.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A minimal Lambda Runtime API: hands out queued events, collects answers.
#[derive(Default)]
pub struct RuntimeApi {
    queue: Mutex<VecDeque<(String, serde_json::Value)>>,
    answers: Mutex<HashMap<String, serde_json::Value>>,
    wake: tokio::sync::Notify,
}

impl RuntimeApi {
    /// Starts the API on a free loopback port with `events` queued.
    pub async fn start(events: Vec<(String, serde_json::Value)>) -> (Arc<Self>, String) {
        let api = Arc::new(Self { queue: Mutex::new(events.into()), ..Self::default() });
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        (api, addr)
    }

    /// Waits until `n` answers arrived (or panics after `timeout`).
    pub async fn answers(&self, n: usize, timeout: Duration) -> HashMap<String, serde_json::Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let answers = self.answers.lock().expect("lock").clone();
            if answers.len() >= n || answers.contains_key("init") {
                return answers;
            }
            if tokio::time::timeout_at(deadline, self.wake.notified()).await.is_err() {
                panic!("only {} of {n} answers arrived: {answers:?}", answers.len());
            }
        }
    }

    fn record(&self, id: String, value: serde_json::Value) {
        self.answers.lock().expect("lock").insert(id, value);
        self.wake.notify_waiters();
    }
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> axum::response::Response {
    loop {
        let item = api.queue.lock().expect("lock").pop_front();
        if let Some((id, event)) = item {
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() + 30_000)
                .unwrap_or(0);
            return axum::response::Response::builder()
                .header("Lambda-Runtime-Aws-Request-Id", id)
                .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
                .header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:portcullis",
                )
                .header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(event.to_string()))
                .expect("response");
        }
        // No more events: the function waits, as it would between invocations.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn response(
    State(api): State<Arc<RuntimeApi>>,
    Path(id): Path<String>,
    body: String,
) -> http::StatusCode {
    api.record(id, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)));
    http::StatusCode::ACCEPTED
}

async fn error(State(api): State<Arc<RuntimeApi>>, Path(id): Path<String>, body: String) -> http::StatusCode {
    api.record(id, serde_json::json!({ "invocation_error": body }));
    http::StatusCode::ACCEPTED
}

async fn init_error(State(api): State<Arc<RuntimeApi>>, body: String) -> http::StatusCode {
    api.record("init".into(), serde_json::json!({ "init_error": body }));
    http::StatusCode::ACCEPTED
}
