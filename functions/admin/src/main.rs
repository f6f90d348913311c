//! Lambda wiring for `admin`: see `portcullis_shared::lambda::serve_http`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    portcullis_shared::lambda::serve_http::<portcullis_admin::Deps>().await
}
