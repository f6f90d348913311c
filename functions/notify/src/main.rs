//! Lambda wiring for `notify`: SES v2 in the function's region, then every SQS
//! batch through [`portcullis_notify::handle`].

use lambda_runtime::{service_fn, LambdaEvent};
use portcullis_shared::mail::ses::Ses;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    portcullis_shared::telemetry::init();
    let ses = Ses::new(aws_sdk_sesv2::Client::new(portcullis_shared::aws::aws_config().await));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let ses = ses.clone();
        async move { Ok::<_, std::convert::Infallible>(portcullis_notify::handle(&ses, &event.payload).await) }
    }))
    .await
}
