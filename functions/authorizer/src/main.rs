//! Lambda wiring for `authorizer`: keys, stores and the RBAC policy once; then serve.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use portcullis_authorizer::{handle_event, Deps};
use portcullis_shared::clock::SystemClock;
use portcullis_shared::config::Config;
use portcullis_shared::runtime::Backends;
use portcullis_shared::telemetry;
use std::sync::Arc;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    config.require_durable_store()?;
    let backends = Backends::open(&config).await?;
    let deps = Arc::new(Deps::build(&config, &backends, Arc::new(SystemClock)).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let deps = deps.clone();
        async move {
            let span = telemetry::request_span(&event.context.request_id);
            Ok::<_, std::convert::Infallible>(handle_event(&deps, event.payload).instrument(span).await)
        }
    }))
    .await
}
