//! The `login` function: registration, password login, password change, the
//! caller's profile, and the JWKS of the token-signing keys.
//!
//! `handle` is a plain async function over a request and [`Deps`]; Lambda
//! (`main.rs`), the local server and the tests all call it.

mod handlers;
#[cfg(test)]
mod tests;

pub use handlers::{register_user, Deps};

use lambda_http::{Body, Request, Response};
use portcullis_shared::routes::LoginRoute;

/// Routes one request to its handler by the route table; always answers, never panics.
pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    portcullis_shared::http::serve::<LoginRoute, _, _>(&req, |found| handlers::dispatch(deps, found, &req))
        .await
}

portcullis_shared::http_function!(Deps, handle);
