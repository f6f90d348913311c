//! Lambda wiring for `backup` (EventBridge schedule).

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    portcullis_shared::telemetry::init();
    lambda_runtime::run(service_fn(|_event: LambdaEvent<serde_json::Value>| async move {
        portcullis_backup::run().await.map_err(Error::from)
    }))
    .await
}
