//! The baseline for cold-start comparisons: the smallest `lambda_runtime` function.

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_event: LambdaEvent<serde_json::Value>| async {
        Ok::<_, Error>(serde_json::json!({ "hello": "world" }))
    }))
    .await
}
