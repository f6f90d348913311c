//! The `refresh` function: refresh-token rotation with reuse detection, logout
//! (this session or all), and the caller's session list (RFC 9700 §4.14, ASVS V3).
//!
//! `handle` is a plain async function over a request and [`Deps`]; Lambda
//! (`main.rs`), the local server and the tests all call it.

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
        (&Method::POST, "/auth/token/refresh") => handlers::refresh(deps, &req).await,
        (&Method::POST, "/auth/logout") => handlers::logout(deps, &req).await,
        (&Method::POST, "/auth/logout/all") => handlers::logout_all(deps, &req).await,
        (&Method::GET, "/auth/sessions") => handlers::list(deps, &req).await,
        _ => Err(portcullis_shared::routes::unrouted(req.method(), &path)),
    };
    finish(result)
}

portcullis_shared::http_function!(Deps, handle);
