//! The `admin` function: user listing, role assignment, session revocation and
//! API keys, behind the authorizer's RBAC check (re-checked here as defence in
//! depth). Every action is an audit event naming the actor; role changes and
//! revocations apply on the target's next request.

mod api_keys;
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
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result: HandlerResult = match (req.method(), segments.as_slice()) {
        (&Method::GET, ["admin", "users"]) => handlers::list_users(deps, &req).await,
        (&Method::POST, ["admin", "users", user, "roles"]) => handlers::grant_role(deps, &req, user).await,
        (&Method::DELETE, ["admin", "users", user, "roles", role]) => {
            handlers::revoke_role(deps, &req, user, role).await
        }
        (&Method::POST, ["admin", "users", user, "sessions", "revoke"]) => {
            handlers::revoke_sessions(deps, &req, user).await
        }
        (&Method::POST, ["admin", "api-keys"]) => api_keys::create_api_key(deps, &req).await,
        (&Method::DELETE, ["admin", "api-keys", key]) => api_keys::revoke_api_key(deps, &req, key).await,
        _ => Err(portcullis_shared::routes::unrouted(req.method(), &path)),
    };
    finish(result)
}

portcullis_shared::http_function!(Deps, handle);
