//! Lambda wiring for `mfa`: config, stores and keys once; then serve.

use lambda_http::{service_fn, Error, Request};
use portcullis_mfa::{handle, Deps};
use portcullis_shared::clock::SystemClock;
use portcullis_shared::config::Config;
use portcullis_shared::runtime::{key_provider, Backends};
use portcullis_shared::telemetry;
use std::sync::Arc;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    config.require_durable_store()?;
    let backends = Backends::open(&config).await?;
    let provider = key_provider(&config).await?;
    let deps = Arc::new(Deps::build(&config, &backends, provider.as_ref(), Arc::new(SystemClock)).await?);
    lambda_http::run(service_fn(move |req: Request| {
        let deps = deps.clone();
        async move {
            let span = telemetry::request_span(&portcullis_shared::http::request_id(&req));
            Ok::<_, std::convert::Infallible>(handle(&deps, req).instrument(span).await)
        }
    }))
    .await
}
