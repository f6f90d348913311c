//! JSON logs through `tracing`, with the fields Lambda log tooling expects
//! (level, timestamp, target, current span with request id and cold start).

use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::EnvFilter;

static COLD: AtomicBool = AtomicBool::new(true);

/// Installs the JSON subscriber once; `RUST_LOG` or `PORTCULLIS_LOG` sets the filter.
/// Also installs the process-wide TLS crypto provider (aws-lc-rs).
pub fn init() {
    crate::crypto::install_tls_provider();
    let filter = crate::config::log_filter()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(true)
        .with_timer(tracing_subscriber::fmt::time::SystemTime)
        .try_init();
}

/// True for the first invocation of this process (a cold start), false afterwards.
pub fn take_cold_start() -> bool {
    COLD.swap(false, Ordering::Relaxed)
}

/// The span every invocation runs in: `request_id` and `cold_start` appear on every log line.
pub fn request_span(request_id: &str) -> tracing::Span {
    tracing::info_span!("invocation", request_id = %request_id, cold_start = take_cold_start())
}
