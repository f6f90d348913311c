//! The `login` function: registration, password login, password change, the
//! caller's profile, and the JWKS of the token-signing keys.
//!
//! `handle` is a plain async function over a request and [`Deps`]; Lambda
//! (`main.rs`), the local server and the tests all call it.

mod handlers;
#[cfg(test)]
mod tests;

pub use handlers::{register_user, Deps};

use http::Method;
use lambda_http::{Body, Request, Response};
use portcullis_shared::http::{finish, HandlerResult};

/// Routes one request to its handler; always answers, never panics.
pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let result: HandlerResult = match (req.method(), path.as_str()) {
        (&Method::GET, "/health") => handlers::health(),
        (&Method::POST, "/auth/register") => handlers::register(deps, &req).await,
        (&Method::POST, "/auth/login") => handlers::login(deps, &req).await,
        (&Method::POST, "/auth/password") => handlers::change_password(deps, &req).await,
        (&Method::POST, "/auth/reauth") => handlers::reauth(deps, &req).await,
        (&Method::GET, "/me") => handlers::me(deps, &req).await,
        (&Method::GET, "/.well-known/jwks.json") => handlers::jwks(deps).await,
        _ => Err(portcullis_shared::routes::unrouted(req.method(), &path)),
    };
    finish(result)
}

portcullis_shared::http_function!(Deps, handle);
