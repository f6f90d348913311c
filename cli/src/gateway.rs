//! The local server: the HTTP contract on one port, routed as API Gateway would.
//! A protected route first runs the authorizer handler; its context is attached
//! to the request the function handler receives, exactly as in AWS. The very
//! handlers the Lambda functions run serve each route.

use aws_lambda_events::apigw::{ApiGatewayRequestAuthorizer, ApiGatewayV2httpRequestContext};
use axum::body::Body as AxumBody;
use axum::extract::{ConnectInfo, State};
use http::{HeaderMap, Request as HttpRequest};
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use portcullis_authorizer::Decision;
use portcullis_shared::clock::{Clock, SystemClock};
use portcullis_shared::config::Config;
use portcullis_shared::domain::{Email, Password, Role};
use portcullis_shared::http::{finish, request_id};
use portcullis_shared::routes::{self, Access, Function};
use portcullis_shared::runtime::{key_provider, Backends, Boot};
use portcullis_shared::{telemetry, ApiError};
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::Instrument;

/// The functions behind the gateway.
pub struct Gateway {
    login: portcullis_login::Deps,
    refresh: portcullis_refresh::Deps,
    admin: portcullis_admin::Deps,
    mfa: portcullis_mfa::Deps,
    authorizer: portcullis_authorizer::Deps,
    max_body_bytes: usize,
    /// The team's backend, behind forward-auth (`serve --upstream`).
    upstream: Option<crate::forward::Upstream>,
}

impl Gateway {
    /// Builds every function's dependencies from one configuration.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let backends = Backends::open(config).await?;
        let provider = key_provider(config)?;
        // Login first: on a first start it creates the signing key the authorizer loads.
        let login =
            portcullis_login::Deps::build(&Boot::new(config, &backends, provider.clone(), clock.clone()))
                .await?;
        let refresh =
            portcullis_refresh::Deps::build(&Boot::new(config, &backends, provider.clone(), clock.clone()))
                .await?;
        let admin =
            portcullis_admin::Deps::build(&Boot::new(config, &backends, provider.clone(), clock.clone()))
                .await?;
        let mfa = portcullis_mfa::Deps::build(&Boot::new(config, &backends, provider.clone(), clock.clone()))
            .await?;
        let authorizer = portcullis_authorizer::Deps::build(config, &backends, clock).await?;
        Ok(Self {
            login,
            refresh,
            admin,
            mfa,
            authorizer,
            max_body_bytes: config.max_body_bytes,
            upstream: None,
        })
    }

    /// Creates the configured bootstrap admin (`config.bootstrap_admin`), if it is absent.
    pub async fn bootstrap_admin(&self, config: &Config) -> anyhow::Result<()> {
        let Some(admin) = &config.bootstrap_admin else {
            return Ok(());
        };
        let email = Email::parse(&admin.email)
            .map_err(|e| anyhow::anyhow!("PORTCULLIS_BOOTSTRAP_ADMIN_EMAIL: {e}"))?;
        let password = Password::new(secrecy::ExposeSecret::expose_secret(&admin.password));
        match portcullis_login::register_user(
            &self.login,
            &email,
            &password,
            vec![Role::user(), Role::admin()],
        )
        .await
        {
            Ok(id) => tracing::info!(user_id = %id, "bootstrap admin created"),
            Err(ApiError::EmailUnavailable) => tracing::info!("bootstrap admin already exists"),
            // A pool's roles are its groups: its administrators are made there.
            Err(ApiError::Unsupported) => {
                tracing::warn!(
                    "bootstrap admin not created: with Cognito, add the admin to the pool's admin group"
                )
            }
            Err(ApiError::WeakPassword(rules)) => {
                let names: Vec<_> = rules.iter().map(|r| r.rule).collect();
                anyhow::bail!("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD breaks the password policy: {names:?}")
            }
            Err(other) => anyhow::bail!("bootstrap admin: {other}"),
        }
        Ok(())
    }

    /// Serves one request as API Gateway plus the Lambda functions would.
    pub async fn dispatch(&self, req: HttpRequest<AxumBody>, peer: SocketAddr) -> http::Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, self.max_body_bytes).await {
            Ok(bytes) => bytes,
            Err(_) => return finish(Err(ApiError::PayloadTooLarge { limit: self.max_body_bytes })),
        };
        let path = parts.uri.path().to_owned();
        let route = match routes::find(&parts.method, &path) {
            Ok(route) => route,
            Err(_) => return finish(Err(routes::unrouted(&parts.method, &path))),
        };
        let mut context = ApiGatewayV2httpRequestContext::default();
        context.request_id = Some(uuid::Uuid::new_v4().to_string());
        context.route_key = Some(format!("{} {}", route.method, route.template));
        context.stage = Some("$default".into());
        context.http.method = parts.method.clone();
        context.http.path = Some(path.clone());
        context.http.source_ip = Some(peer.ip().to_string());
        context.http.user_agent = header(&parts.headers, http::header::USER_AGENT);
        if route.access != Access::Public {
            match self.authorize(&parts.method, &path, &parts.headers).await {
                Ok(fields) => {
                    let mut authorizer = ApiGatewayRequestAuthorizer::default();
                    authorizer.fields = fields;
                    context.authorizer = Some(authorizer);
                }
                Err(err) => return finish(Err(err)),
            }
        }
        let body = portcullis_shared::http::body_of(&bytes);
        let request = portcullis_shared::http::as_delivered(HttpRequest::from_parts(parts, body))
            .with_request_context(RequestContext::ApiGatewayV2(context));
        let span = telemetry::request_span(&request_id(&request));
        async {
            match route.function() {
                Function::Login => portcullis_login::handle(&self.login, request).await,
                Function::Mfa => portcullis_mfa::handle(&self.mfa, request).await,
                Function::Refresh => portcullis_refresh::handle(&self.refresh, request).await,
                Function::Admin => portcullis_admin::handle(&self.admin, request).await,
            }
        }
        .instrument(span)
        .await
    }

    /// A request for no Portcullis route, with an upstream: the authorizer
    /// decides on its method and path as sent (API Gateway's `rawPath`), and an
    /// allowed one streams to the upstream with the context.
    async fn forward(
        &self,
        upstream: &crate::forward::Upstream,
        req: HttpRequest<AxumBody>,
        peer: SocketAddr,
    ) -> http::Response<AxumBody> {
        let path = req.uri().path().to_owned();
        let overridden =
            portcullis_authorizer::METHOD_OVERRIDES.iter().any(|h| req.headers().contains_key(*h));
        let decision = match overridden {
            true => Err(ApiError::Forbidden),
            false => self.authorize(req.method(), &path, req.headers()).await,
        };
        let answer = match decision {
            Ok(context) => upstream.forward(req, &context, peer).await,
            Err(err) => Err(err),
        };
        answer.unwrap_or_else(|err| to_axum(finish(Err(err))))
    }

    /// Runs the authorizer; the context fields on success, else 401/403.
    async fn authorize(
        &self,
        method: &http::Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<std::collections::HashMap<String, serde_json::Value>, ApiError> {
        let authorization = header(headers, http::header::AUTHORIZATION);
        let api_key = header(headers, http::header::HeaderName::from_static("x-api-key"));
        let ask = portcullis_authorizer::Ask {
            method: method.as_str(),
            path,
            authorization: authorization.as_deref(),
            api_key: api_key.as_deref(),
        };
        match portcullis_authorizer::authorize(&self.authorizer, ask).await {
            Decision::Allow(identity) => {
                Ok(portcullis_authorizer::context_of(&identity).into_iter().collect())
            }
            Decision::Forbidden => Err(ApiError::Forbidden),
            Decision::Unauthorized => Err(ApiError::Unauthenticated),
        }
    }
}

fn header(headers: &HeaderMap, name: http::header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn handler(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: HttpRequest<AxumBody>,
) -> http::Response<AxumBody> {
    if let Some(upstream) = &gateway.upstream {
        if routes::find(req.method(), req.uri().path()).is_err() {
            return gateway.forward(upstream, req, peer).await;
        }
    }
    to_axum(gateway.dispatch(req, peer).await)
}

fn to_axum(resp: http::Response<Body>) -> http::Response<AxumBody> {
    resp.map(AxumBody::new)
}

/// Binds `addr` and serves until Ctrl-C; with an `upstream`, forward-auth for
/// every request that is not a Portcullis route.
pub async fn serve(
    config: Config,
    addr: SocketAddr,
    upstream: Option<crate::forward::Upstream>,
) -> anyhow::Result<()> {
    let mut gateway = Gateway::build(&config).await?;
    if upstream.is_some() {
        eprintln!("portcullis: requests for no Portcullis route go to the upstream after the authorizer");
    }
    gateway.upstream = upstream;
    let gateway = Arc::new(gateway);
    gateway.bootstrap_admin(&config).await?;
    let app = axum::Router::new().fallback(handler).with_state(gateway);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "portcullis local server listening");
    eprintln!("portcullis: listening on http://{bound}");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
