//! The `admin` function: user listing, role assignment, session revocation and
//! API keys, behind the authorizer's RBAC check (re-checked here as defence in
//! depth). Every action is an audit event naming the actor; role changes and
//! revocations apply on the target's next request.

mod api_keys;
mod audit;
mod handlers;
#[cfg(test)]
mod tests;

pub use handlers::Deps;

use lambda_http::{Body, Request, Response};
use portcullis_shared::routes::AdminRoute;

/// Routes one request to its handler by the route table; always answers, never panics.
pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    portcullis_shared::http::serve::<AdminRoute, _, _>(&req, |found| handlers::dispatch(deps, found, &req))
        .await
}

portcullis_shared::http_function!(Deps, handle);
