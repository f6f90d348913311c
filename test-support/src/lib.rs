//! The harness of the function crates' handler tests: one [`World`] of memory
//! backends (users, sessions, counters, challenges, API keys, audit), a
//! [`ManualClock`], a throw-away local key file and the real authorizer;
//! requests shaped as API Gateway (HTTP API, payload 2.0) hands them over,
//! the events of `events/`, and TOTP codes computed from a secret.
//!
//! A world never reaches a service: its configuration names the memory stores
//! and the local key file and is built from its own pairs, never from the
//! environment (`PORTCULLIS_TEST_MYSQL_URL` and `AWS_ENDPOINT_URL` are not read).
//! Each crate calls its own `handle(&deps, req)`; [`World::login`] is for the
//! crates whose tests need a signed-in person (mfa, refresh, admin).

use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use portcullis_authorizer::{Ask, Decision};
use portcullis_shared::audit::{AuditEvent, EventType};
use portcullis_shared::clock::{Clock, ManualClock};
use portcullis_shared::config::{Config, KeyBackend, SessionBackend, StoreBackend};
use portcullis_shared::crypto::KeyProvider;
use portcullis_shared::runtime::{key_provider, Backends, Boot};
use std::collections::HashMap;
use std::sync::Arc;

/// A password the policy accepts.
pub const GOOD_PASSWORD: &str = "velvet-otter-quantum-harbor-71";
/// Where every world's clock starts (2030-03-17).
pub const START: i64 = 1_900_000_000;
/// The source IP of [`request`].
pub const SOURCE_IP: &str = "198.51.100.7";

/// A key file path in a directory of its own, created on first use.
pub fn key_file() -> String {
    std::env::temp_dir()
        .join(format!("pc-test-{}", uuid::Uuid::new_v4()))
        .join("master.key")
        .display()
        .to_string()
}

/// A configuration from exactly these pairs. One that names neither a store
/// nor a database runs on the memory store, not the local server's default
/// file (which every test run from the same folder would share).
pub fn config(pairs: &[(&str, String)]) -> Config {
    let mut map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    if !map.contains_key("PORTCULLIS_STORE") && !map.contains_key("PORTCULLIS_DATABASE_URL") {
        map.insert("PORTCULLIS_STORE".into(), "memory".into());
    }
    Config::from_lookup(|k| map.get(k).cloned()).expect("valid test config")
}

/// The memory backends, the clock, the key provider and the authorizer that
/// one test's functions share.
pub struct World {
    pub config: Config,
    pub backends: Backends,
    pub provider: Arc<dyn KeyProvider>,
    pub clock: ManualClock,
    /// Built on first use, once a function has created the signing key.
    authorizer: tokio::sync::OnceCell<portcullis_authorizer::Deps>,
}

impl World {
    /// A world with the default limits.
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    /// A world with these configuration pairs besides the memory stores and the
    /// key file. Panics if the pairs would name a service: these tests run without any.
    pub async fn with(extra: &[(&str, String)]) -> Self {
        let mut pairs = vec![
            ("PORTCULLIS_STORE", "memory".to_owned()),
            ("PORTCULLIS_SESSION_STORE", "memory".to_owned()),
            ("PORTCULLIS_LOCAL_KEY_FILE", key_file()),
        ];
        pairs.extend(extra.iter().cloned());
        let config = config(&pairs);
        assert!(matches!(config.store, StoreBackend::Memory), "a handler test names another store");
        assert!(matches!(config.sessions, SessionBackend::Memory), "a handler test names another store");
        assert!(matches!(config.keys, KeyBackend::LocalFile { .. }), "a handler test names KMS");
        let backends = Backends::open(&config).await.expect("memory backends");
        let provider = key_provider(&config).expect("local key file");
        let authorizer = tokio::sync::OnceCell::new();
        Self { config, backends, provider, clock: ManualClock::new(START), authorizer }
    }

    /// The clock as the functions take it.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }

    /// The login function on this world (the other crates sign people in with it).
    pub async fn login(&self) -> portcullis_login::Deps {
        portcullis_login::Deps::build(&Boot::new(
            &self.config,
            &self.backends,
            self.provider.clone(),
            self.clock(),
        ))
        .await
        .expect("login deps")
    }

    /// Every audit event recorded so far, oldest first.
    pub fn audit(&self) -> Vec<AuditEvent> {
        self.backends.memory.as_ref().expect("the memory store").audit_events()
    }

    /// The reasons of the audit events of this kind, oldest first.
    pub fn reasons(&self, kind: EventType) -> Vec<Option<&'static str>> {
        self.audit().into_iter().filter(|e| e.event_type == kind).map(|e| e.reason).collect()
    }

    async fn authorizer(&self) -> &portcullis_authorizer::Deps {
        self.authorizer
            .get_or_init(|| async {
                portcullis_authorizer::Deps::build(&self.config, &self.backends, self.clock())
                    .await
                    .expect("authorizer deps")
            })
            .await
    }

    /// The real authorizer's decision on `method path` with this bearer token.
    pub async fn decide(&self, method: &str, path: &str, token: &str) -> Decision {
        let authorization = format!("Bearer {token}");
        let ask = Ask { method, path, authorization: Some(&authorization), api_key: None };
        portcullis_authorizer::authorize(self.authorizer().await, ask).await
    }

    /// The real authorizer's decision on `method path` with this API key.
    pub async fn decide_key(&self, method: &str, path: &str, api_key: &str) -> Decision {
        let ask = Ask { method, path, authorization: None, api_key: Some(api_key) };
        portcullis_authorizer::authorize(self.authorizer().await, ask).await
    }

    /// `req` as API Gateway hands it on once the authorizer allowed `token`:
    /// the `Authorization` header and the authorizer's context. Panics when the
    /// authorizer refuses (a test that expects a refusal asks [`World::decide`]).
    pub async fn bearer(&self, req: Request, token: &str) -> Request {
        let (method, path) = (req.method().as_str().to_owned(), req.uri().path().to_owned());
        match self.decide(&method, &path, token).await {
            Decision::Allow(identity) => {
                let mut req = with_context(req, &portcullis_authorizer::context_of(&identity));
                let value = format!("Bearer {token}").parse().expect("header value");
                req.headers_mut().insert(http::header::AUTHORIZATION, value);
                req
            }
            other => panic!("the authorizer refused {method} {path}: {other:?}"),
        }
    }

    /// Enrols TOTP for the person `token` signs in (through the mfa function)
    /// and steps up with the password and the next code (login's
    /// `POST /auth/reauth`): the session's new access token, whose `amr` holds
    /// `otp`, as the grants of an employee role (`"mfa": true`) need.
    pub async fn with_second_factor(&self, login: &portcullis_login::Deps, token: &str) -> String {
        let boot = Boot::new(&self.config, &self.backends, self.provider.clone(), self.clock());
        let mfa = portcullis_mfa::Deps::build(&boot).await.expect("mfa deps");
        let enrol = self.bearer(request("POST", "/auth/mfa/totp/enroll", None), token).await;
        let secret = reply(portcullis_mfa::handle(&mfa, enrol).await).text("secret");
        let code = serde_json::json!({ "code": totp(&secret, self.clock.now_secs()) });
        let confirm = self.bearer(post("/auth/mfa/totp/confirm", &code), token).await;
        let confirmed = reply(portcullis_mfa::handle(&mfa, confirm).await);
        assert_eq!(confirmed.status, 200, "{}", confirmed.body);
        self.clock.advance(30);
        let body =
            serde_json::json!({ "password": GOOD_PASSWORD, "code": totp(&secret, self.clock.now_secs()) });
        let reauth = self.bearer(post("/auth/reauth", &body), token).await;
        let stepped = reply(portcullis_login::handle(login, reauth).await);
        assert_eq!(stepped.status, 200, "{}", stepped.body);
        stepped.text("access_token")
    }

    /// `req` as API Gateway hands it on once the authorizer allowed this API key.
    pub async fn with_api_key(&self, req: Request, api_key: &str) -> Request {
        let (method, path) = (req.method().as_str().to_owned(), req.uri().path().to_owned());
        match self.decide_key(&method, &path, api_key).await {
            Decision::Allow(identity) => with_context(req, &portcullis_authorizer::context_of(&identity)),
            other => panic!("the authorizer refused the API key on {method} {path}: {other:?}"),
        }
    }
}

/// A request from [`SOURCE_IP`] with no authorizer context; a body makes it JSON.
pub fn request(method: &str, path: &str, body: Option<&str>) -> Request {
    let mut builder = http::Request::builder().method(method).uri(path).header("user-agent", "handler-test");
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let body = body.map(|b| Body::Text(b.to_owned())).unwrap_or(Body::Empty);
    let mut context = aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default();
    context.request_id = Some(uuid::Uuid::new_v4().simple().to_string());
    context.http.source_ip = Some(SOURCE_IP.into());
    // API Gateway hands the query over parsed; the handlers read it from there.
    let query: HashMap<String, String> = path
        .split_once('?')
        .map(|(_, q)| {
            q.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
        })
        .unwrap_or_default();
    builder
        .body(body)
        .expect("valid request")
        .with_query_string_parameters(query)
        .with_request_context(RequestContext::ApiGatewayV2(context))
}

/// A JSON request with this body.
pub fn post(path: &str, body: &serde_json::Value) -> Request {
    request("POST", path, Some(&body.to_string()))
}

/// `req`, arriving from `ip`.
pub fn from_ip(req: Request, ip: &str) -> Request {
    let mut context = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.clone(),
        _ => panic!("not an HTTP API request"),
    };
    context.http.source_ip = Some(ip.to_owned());
    req.with_request_context(RequestContext::ApiGatewayV2(context))
}

/// `req` with exactly these authorizer context fields.
pub fn with_context(req: Request, fields: &serde_json::Map<String, serde_json::Value>) -> Request {
    let mut context = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.clone(),
        _ => panic!("not an HTTP API request"),
    };
    let mut authorizer = aws_lambda_events::apigw::ApiGatewayRequestAuthorizer::default();
    for (name, value) in fields {
        authorizer.fields.insert(name.clone(), value.clone());
    }
    context.authorizer = Some(authorizer);
    req.with_request_context(RequestContext::ApiGatewayV2(context))
}

/// An API Gateway event of `events/` (loaded with `include_str!`) as the runtime hands it over.
pub fn event(text: &str) -> Request {
    lambda_http::request::from_str(text).expect("a valid API Gateway event")
}

/// A function's answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: http::HeaderMap,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A string field of the JSON body.
    pub fn text(&self, field: &str) -> String {
        match self.json()[field].as_str() {
            Some(value) => value.to_owned(),
            None => panic!("no string `{field}` in {}", self.body),
        }
    }

    /// The problem type, after checking the answer is problem+json with this status.
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.headers["content-type"], "application/problem+json", "{}", self.body);
        assert_eq!(self.json()["status"], status);
        self.text("type")
    }
}

/// Status, body text and headers of a function's response.
pub fn reply(resp: http::Response<Body>) -> Reply {
    let (head, body) = resp.into_parts();
    let body = match body {
        Body::Text(t) => t,
        Body::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
        _ => String::new(),
    };
    Reply { status: head.status.as_u16(), body, headers: head.headers }
}

/// `{"email", "password"}`.
pub fn credentials(email: &str, password: &str) -> serde_json::Value {
    serde_json::json!({ "email": email, "password": password })
}

/// Registers `email` with [`GOOD_PASSWORD`] through the login function: its user id.
pub async fn register(login: &portcullis_login::Deps, email: &str) -> String {
    let answer = reply(
        portcullis_login::handle(login, post("/auth/register", &credentials(email, GOOD_PASSWORD))).await,
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.text("user_id")
}

/// The password step of a login with [`GOOD_PASSWORD`] (tokens, or an `mfa_token`).
pub async fn sign_in(login: &portcullis_login::Deps, email: &str) -> Reply {
    let answer =
        reply(portcullis_login::handle(login, post("/auth/login", &credentials(email, GOOD_PASSWORD))).await);
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer
}

/// The RFC 6238 code (SHA-1, 6 digits, 30-second steps) of a base32 secret at `at`.
pub fn totp(secret: &str, at: i64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned()).to_bytes().expect("a base32 secret");
    let totp = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, "test".into());
    totp.generate(at as u64)
}
