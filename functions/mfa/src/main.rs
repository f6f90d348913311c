//! Lambda wiring for `mfa`: see `portcullis_shared::lambda::serve_http`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    portcullis_shared::lambda::serve_http::<portcullis_mfa::Deps>().await
}
