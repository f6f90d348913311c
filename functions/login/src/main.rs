//! Lambda wiring for `login`: see `portcullis_shared::lambda::serve_http`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    portcullis_shared::lambda::serve_http::<portcullis_login::Deps>().await
}
