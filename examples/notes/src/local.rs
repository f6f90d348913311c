//! The function as a local HTTP server behind `portcullis serve --upstream`:
//! each request becomes the Lambda request API Gateway would deliver, with the
//! authorizer context the proxy sent as headers
//! ([`portcullis_shared::forwarded`]). It trusts those headers only with the
//! proxy's secret (the 0600 file the proxy writes, read at each request, so
//! either may start first), and listens on loopback only.

use crate::{handle, Deps};
use axum::extract::ConnectInfo;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The largest request body read (the function's own limit is smaller).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Serves until the process ends; prints `notes: listening on http://ADDR`.
/// `secret_file` holds the proxy's secret.
pub async fn serve(deps: Arc<Deps>, addr: SocketAddr, secret_file: PathBuf) -> std::io::Result<()> {
    portcullis_shared::forwarded::require_loopback(&addr).map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("notes: listening on http://{}", listener.local_addr()?);
    let secret_file = Arc::new(secret_file);
    let app = axum::Router::new().fallback(move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req| {
        let (deps, secret_file) = (deps.clone(), secret_file.clone());
        async move { answer(&deps, req, peer, &secret_file).await }
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
}

async fn answer(
    deps: &Deps,
    req: axum::extract::Request,
    peer: SocketAddr,
    secret_file: &std::path::Path,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => portcullis_shared::http::body_of(&bytes),
        Err(_) => {
            let limit = MAX_BODY_BYTES;
            return into_axum(portcullis_shared::http::finish(Err(
                portcullis_shared::ApiError::PayloadTooLarge { limit },
            )));
        }
    };
    // No secret yet (the proxy has not started): no request carries a caller.
    let secret = portcullis_shared::forwarded::proxy_secret(secret_file, false).ok();
    let request = portcullis_shared::forwarded::into_lambda_request(parts, body, peer, secret.as_deref());
    into_axum(handle(deps, request).await)
}

fn into_axum(resp: lambda_http::Response<lambda_http::Body>) -> axum::response::Response {
    resp.map(axum::body::Body::new)
}
