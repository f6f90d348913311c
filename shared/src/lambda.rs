//! The Lambda entry point shared by the HTTP functions: JSON logs, configuration
//! read once (fail fast), durable stores required, stores and key provider
//! opened once (key material unwrapped in the background, see
//! [`crate::deferred`]), then every invocation handled in a span carrying its request id
//! and cold-start flag. Warm invocations reuse everything built here.

use crate::clock::SystemClock;
use crate::config::Config;
use crate::error::BootError;
use crate::runtime::{key_provider, Backends, Boot};
use async_trait::async_trait;
use lambda_http::{service_fn, Body, Request, Response};
use std::sync::Arc;
use tracing::Instrument;

/// A function behind API Gateway: built once at cold start, then handles requests.
#[async_trait]
pub trait HttpFunction: Sized + Send + Sync + 'static {
    async fn build(boot: &Boot) -> Result<Self, BootError>;

    async fn handle(&self, req: Request) -> Response<Body>;
}

/// Runs `F` as a Lambda function until the runtime stops it.
pub async fn serve_http<F: HttpFunction>() -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let config = Config::from_env()?;
    config.require_durable_store()?;
    let backends = Backends::open(&config).await?;
    let provider = key_provider(&config)?;
    let function = Arc::new(F::build(&Boot::new(&config, &backends, provider, Arc::new(SystemClock))).await?);
    lambda_http::run(service_fn(move |req: Request| {
        let function = function.clone();
        async move {
            let span = crate::telemetry::request_span(&crate::http::request_id(&req));
            Ok::<_, std::convert::Infallible>(function.handle(req).instrument(span).await)
        }
    }))
    .await
}

/// Implements [`HttpFunction`] for a function's `Deps` whose inherent
/// `build(&Boot)` and free `handle(&Deps, Request)`
/// have the shapes every HTTP function uses.
#[macro_export]
macro_rules! http_function {
    ($deps:ty, $handle:path) => {
        #[async_trait::async_trait]
        impl $crate::lambda::HttpFunction for $deps {
            async fn build(boot: &$crate::runtime::Boot) -> Result<Self, $crate::error::BootError> {
                <$deps>::build(boot).await
            }

            async fn handle(&self, req: lambda_http::Request) -> lambda_http::Response<lambda_http::Body> {
                $handle(self, req).await
            }
        }
    };
}
