//! The `refresh` function: refresh-token rotation with reuse detection, logout
//! (this session or all), and the caller's session list (RFC 9700 §4.14, ASVS V3).
//!
//! `handle` is a plain async function over a request and [`Deps`]; Lambda
//! (`main.rs`), the local server and the tests all call it.

mod handlers;
#[cfg(test)]
mod tests;

pub use handlers::Deps;

use lambda_http::{Body, Request, Response};
use portcullis_shared::routes::RefreshRoute;

/// Routes one request to its handler by the route table; always answers, never panics.
pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    portcullis_shared::http::serve::<RefreshRoute, _, _>(&req, |found| handlers::dispatch(deps, found, &req))
        .await
}

portcullis_shared::http_function!(Deps, handle);
