//! Wiring: under Lambda (`AWS_LAMBDA_RUNTIME_API` set) the function answers API
//! Gateway's events; otherwise it serves HTTP on `NOTES_LISTEN` (loopback only,
//! default `127.0.0.1:3000`) behind `portcullis serve --upstream`, whose secret
//! it reads from `NOTES_PROXY_SECRET_FILE` (default `.portcullis/upstream-secret`).

use lambda_http::{service_fn, Request};
use portcullis_example_notes::{handle, Deps, Notes};
use std::sync::Arc;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    portcullis_shared::telemetry::init();
    let table =
        std::env::var("NOTES_TABLE").map_err(|_| "NOTES_TABLE: the name of the notes table is required")?;
    let client = aws_sdk_dynamodb::Client::new(portcullis_shared::aws::aws_config().await);
    let deps = Arc::new(Deps { notes: Notes::new(client, table), now: unix_now });
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda_http::run(service_fn(move |req: Request| {
            let deps = deps.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(&deps, req).await) }
        }))
        .await;
    }
    let addr = std::env::var("NOTES_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let addr = addr.parse().map_err(|e| format!("NOTES_LISTEN={addr}: {e}"))?;
    let secret_file = std::env::var("NOTES_PROXY_SECRET_FILE")
        .unwrap_or_else(|_| portcullis_shared::forwarded::DEFAULT_SECRET_FILE.into());
    portcullis_example_notes::local::serve(deps, addr, secret_file.into()).await?;
    Ok(())
}
