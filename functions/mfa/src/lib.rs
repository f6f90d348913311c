//! The `mfa` function: TOTP enrolment, confirmation and removal, and the second
//! step of a login (a TOTP code or a single-use recovery code for the
//! `mfa_token` the password step returned).

mod handlers;
#[cfg(test)]
mod tests;

pub use handlers::Deps;

use http::Method;
use lambda_http::{Body, Request, Response};
use portcullis_shared::http::{finish, HandlerResult};

/// Routes one request to its handler; always answers, never panics.
pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let result: HandlerResult = match (req.method(), path.as_str()) {
        (&Method::POST, "/auth/mfa/totp/enroll") => handlers::enroll(deps, &req).await,
        (&Method::POST, "/auth/mfa/totp/confirm") => handlers::confirm(deps, &req).await,
        (&Method::DELETE, "/auth/mfa/totp") => handlers::disable(deps, &req).await,
        (&Method::POST, "/auth/mfa/verify") => handlers::verify(deps, &req).await,
        (&Method::POST, "/auth/mfa/recovery") => handlers::recovery(deps, &req).await,
        _ => Err(portcullis_shared::routes::unrouted(req.method(), &path)),
    };
    finish(result)
}

portcullis_shared::http_function!(Deps, handle);
