//! Lambda wiring for `refresh`: see `portcullis_shared::lambda::serve_http`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    portcullis_shared::lambda::serve_http::<portcullis_refresh::Deps>().await
}
