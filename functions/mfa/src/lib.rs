//! The `mfa` function: TOTP enrolment, confirmation and removal, and the second
//! step of a login (a TOTP code or a single-use recovery code for the
//! `mfa_token` the password step returned).

mod handlers;
#[cfg(test)]
mod tests;

pub use handlers::Deps;

use lambda_http::{Body, Request, Response};
use portcullis_shared::routes::MfaRoute;

/// Routes one request to its handler by the route table; always answers, never panics.
pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    portcullis_shared::http::serve::<MfaRoute, _, _>(&req, |found| handlers::dispatch(deps, found, &req))
        .await
}

portcullis_shared::http_function!(Deps, handle);
