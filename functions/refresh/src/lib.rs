//! The `refresh` function: refresh-token rotation with reuse detection, logout
//! (this session or all), and the caller's session list (RFC 9700 §4.14, ASVS V3).
//!
//! `handle` is a plain async function over a request and [`Deps`]; Lambda
//! (`main.rs`), the local server and the tests all call it.

mod federated;
mod handlers;

pub use handlers::Deps;

use http::Method;
use lambda_http::{Body, Request, Response};
use portcullis_shared::http::{finish, HandlerResult};

/// Routes one request to its handler; always answers, never panics.
pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let result: HandlerResult = match (req.method(), path.as_str(), deps.identity.as_deref()) {
        (&Method::POST, "/auth/token/refresh", Some(idp)) => federated::refresh(deps, idp, &req).await,
        (&Method::POST, "/auth/logout/all", Some(idp)) => federated::logout_all(deps, idp, &req).await,
        (&Method::POST, "/auth/token/refresh", None) => handlers::refresh(deps, &req).await,
        (&Method::POST, "/auth/logout/all", None) => handlers::logout_all(deps, &req).await,
        // Our session records serve both providers.
        (&Method::POST, "/auth/logout", _) => handlers::logout(deps, &req).await,
        (&Method::GET, "/auth/sessions", _) => handlers::list(deps, &req).await,
        _ => Err(portcullis_shared::routes::unrouted(req.method(), &path)),
    };
    finish(result)
}

portcullis_shared::http_function!(Deps, handle);
