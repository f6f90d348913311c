//! Forward-auth for the local server (`portcullis serve --upstream URL`): a
//! request for no Portcullis route is decided by the authorizer against the
//! same policy, as API Gateway would on the team's routes, and an allowed one
//! is passed to the team's backend with the authorizer context in
//! `X-Portcullis-*` headers. Bodies stream both ways.

use axum::body::Body;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use portcullis_shared::{forwarded, ApiError};
use std::collections::HashMap;

/// Headers of one hop only (RFC 9110, 7.6.1), never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What a client may claim about where a request came from or went, never passed on.
const FORWARDING: [&str; 9] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
];

/// The team's backend.
pub struct Upstream {
    scheme_authority: String,
    base_path: String,
    client: Client<HttpConnector, Body>,
    /// Proves to the upstream that a request came through here ([`forwarded::PROXY_HEADER`]).
    secret: zeroize::Zeroizing<String>,
}

impl Upstream {
    /// `url`: `http://host:port[/base]` on this machine, by address (`127.0.0.0/8`
    /// or `[::1]`: the context and the proxy secret travel in clear text, and a
    /// name such as `localhost` may resolve to an address another local user
    /// listens on). A fresh secret goes to `secret_file` at each start.
    pub fn new(url: &str, secret_file: &std::path::Path) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().map_err(|e| anyhow::anyhow!("--upstream {url}: {e}"))?;
        let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            anyhow::bail!("--upstream must be an http:// URL with a host (the team's local backend)");
        };
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        if !host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            anyhow::bail!(
                "--upstream {url}: name the backend on this machine by address (127.0.0.1 or [::1])"
            );
        }
        let secret = forwarded::renew_proxy_secret(secret_file)
            .map_err(|e| anyhow::anyhow!("the proxy secret {}: {e}", secret_file.display()))?;
        eprintln!("portcullis: the upstream checks the proxy secret in {}", secret_file.display());
        Ok(Self {
            scheme_authority: format!("http://{authority}"),
            base_path: uri.path().trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            secret: zeroize::Zeroizing::new(secret),
        })
    }

    /// Passes an allowed request on with its `context`; the upstream's answer
    /// streams back. An upstream that does not answer is a 502 problem.
    pub async fn forward(
        &self,
        req: Request<Body>,
        context: &HashMap<String, serde_json::Value>,
        peer: std::net::SocketAddr,
    ) -> Result<Response<Body>, ApiError> {
        let (mut parts, body) = req.into_parts();
        let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let target = format!("{}{}{}", self.scheme_authority, self.base_path, path_and_query);
        parts.uri = target.parse().map_err(|_| ApiError::BadGateway)?;
        let host = parts.headers.get(http::header::HOST).cloned();
        strip(&mut parts.headers);
        if let Err(why) = forwarded::write_context(&mut parts.headers, context, &self.secret) {
            tracing::error!(why, "the authorizer context cannot be forwarded");
            return Err(ApiError::internal(why));
        }
        if let Some(host) = host {
            parts.headers.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        if let Ok(ip) = HeaderValue::try_from(peer.ip().to_string()) {
            parts.headers.insert(HeaderName::from_static("x-forwarded-for"), ip);
        }
        parts.headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                // Nothing of the context (nor a backend's echo of the proof) goes back out.
                forwarded::strip_context(&mut parts.headers);
                Ok(Response::from_parts(parts, Body::new(body)))
            }
            Err(err) => {
                tracing::warn!(error = %err, "upstream did not answer");
                Err(ApiError::BadGateway)
            }
        }
    }
}

/// Removes what a client may not send on: hop-by-hop headers (and those its
/// `Connection` names), `Host` (the upstream's own is set), and any header
/// named like the authorizer's context, with `_` for `-` too (CGI, WSGI and
/// Rack read `X_Portcullis_Sub` and `X-Portcullis-Sub` as one variable).
fn strip(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(http::header::HOST);
    // Where the request came from is ours to say; a rewritten URL is a route of its own.
    for name in FORWARDING {
        headers.remove(name);
    }
    forwarded::strip_context(headers);
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP.iter().copied().chain(named.iter().map(String::as_str)) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_must_be_on_this_machine() {
        let file = std::env::temp_dir().join(format!("pc-upstream-{}/secret", uuid::Uuid::new_v4()));
        for url in ["http://127.0.0.1:3000", "http://127.0.0.1:3000/base", "http://[::1]:3000"] {
            assert!(Upstream::new(url, &file).is_ok(), "{url}");
        }
        for url in [
            "http://10.0.0.7:3000",
            "http://backend.example.com",
            "http://localhost:3000",
            "https://127.0.0.1:3000",
            "http://0.0.0.0:3000",
        ] {
            assert!(Upstream::new(url, &file).is_err(), "{url}");
        }
    }
}
