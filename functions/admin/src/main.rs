//! Lambda wiring for `admin`.

use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    portcullis_shared::telemetry::init();
    lambda_http::run(service_fn(|req: Request| async move {
        Ok::<_, std::convert::Infallible>(portcullis_admin::handle(req).await)
    }))
    .await
}
