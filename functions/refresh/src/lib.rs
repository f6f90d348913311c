//! The `refresh` function. Its issue has not landed: every route answers an honest
//! 501 problem+json, never a fake success.

use lambda_http::{Body, Request, Response};

/// Answers every request with 501 Not Implemented.
pub async fn handle(_req: Request) -> Response<Body> {
    portcullis_shared::http::not_implemented("token refresh and sessions")
}
