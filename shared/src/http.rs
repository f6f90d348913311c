//! The HTTP edge shared by every function: security headers on every response,
//! problem+json for every failure, strict JSON body parsing, and the request
//! metadata API Gateway supplies (source IP, request id, authorizer context).

use crate::error::{error_chain, ApiError};
use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Default request body limit; `PORTCULLIS_MAX_BODY_BYTES` overrides it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;

/// The headers of the HTTP contract, set on every response (success or error).
pub const SECURITY_HEADERS: [(&str, &str); 6] = [
    ("cache-control", "no-store"),
    ("pragma", "no-cache"),
    ("x-content-type-options", "nosniff"),
    ("strict-transport-security", "max-age=63072000; includeSubDomains"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
];

/// Adds the security headers of the contract, replacing any weaker value.
pub fn apply_security_headers(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// A handler's outcome before it becomes a response.
pub type HandlerResult = Result<Response<Body>, ApiError>;

/// 200/201 with a JSON body.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> HandlerResult {
    let text = serde_json::to_string(body).map_err(ApiError::internal)?;
    let mut resp = Response::new(Body::Text(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// 204 No Content.
pub fn no_content() -> HandlerResult {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// The problem+json response for an error. Server-side failures are logged here,
/// with their source chain, and nothing of the chain reaches the body.
pub fn problem_response(err: &ApiError) -> Response<Body> {
    let status = err.status();
    if status.is_server_error() {
        tracing::error!(error = %error_chain(err), kind = err.kind(), "request failed");
    }
    let problem = err.to_problem();
    let text = serde_json::to_string(&problem)
        .unwrap_or_else(|_| r#"{"type":"about:blank","title":"Internal error","status":500}"#.into());
    let mut resp = Response::new(Body::Text(text));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    if let ApiError::TooManyRequests { retry_after_secs } = err {
        headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
    }
    if let ApiError::MethodNotAllowed { allow } = err {
        if let Ok(value) = HeaderValue::from_str(allow) {
            headers.insert(http::header::ALLOW, value);
        }
    }
    resp
}

/// Turns a handler result into the final response, with the security headers.
pub fn finish(result: HandlerResult) -> Response<Body> {
    let mut resp = result.unwrap_or_else(|err| problem_response(&err));
    apply_security_headers(resp.headers_mut());
    debug_assert_eq!(resp.headers().get(CACHE_CONTROL).map(|v| v.as_bytes()), Some(&b"no-store"[..]));
    resp
}

/// Answers one request for the function whose routes are `R`: its own routes
/// go to `dispatch` (which matches `R` exhaustively), anything else gets the
/// route table's 405 or 404; always an answer, never a panic.
pub async fn serve<'r, R, D, F>(req: &'r Request, dispatch: D) -> Response<Body>
where
    R: crate::routes::Served,
    D: FnOnce(crate::routes::Resolved<'r, R>) -> F,
    F: std::future::Future<Output = HandlerResult>,
{
    let result = match crate::routes::resolve::<R>(req.method(), served_path(req)) {
        Ok(found) => dispatch(found).await,
        Err(err) => Err(err),
    };
    finish(result)
}

/// The path the authorizer judged and the function serves: API Gateway's own
/// (`rawPath` of an HTTP API, without the stage on the API's own endpoint; a
/// REST API's `path`), never the URI that lambda_http rebuilds from the
/// client's `Host` and `X-Forwarded-Proto` headers (a forged
/// `X-Forwarded-Proto: https://x/other/path?` would move its path). Outside
/// API Gateway (the local server, tests), the request's own path.
pub fn served_path(req: &Request) -> &str {
    let raw = req.raw_http_path();
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) if !raw.is_empty() => {
            without_stage(raw, ctx.stage.as_deref(), ctx.domain_name.as_deref())
        }
        // No rawPath: the path API Gateway states in its context, never the rebuilt URI's.
        Some(RequestContext::ApiGatewayV2(ctx)) if ctx.http.path.is_some() => {
            ctx.http.path.as_deref().unwrap_or_default()
        }
        _ if !raw.is_empty() => raw,
        _ => req.uri().path(),
    }
}

/// True for a request API Gateway delivered (an event, or the local server's
/// emulation, [`as_delivered`]): its path and query are read from what it
/// states, never from the URI lambda_http rebuilds.
fn delivered(req: &Request) -> bool {
    !req.raw_http_path().is_empty()
        || matches!(req.request_context_ref(), Some(RequestContext::ApiGatewayV2(ctx)) if ctx.http.path.is_some())
}

/// A request body as lambda_http hands it on: none, text when it is UTF-8,
/// else binary (the local server and a function run behind forward-auth).
pub fn body_of(bytes: &[u8]) -> Body {
    if bytes.is_empty() {
        return Body::Empty;
    }
    match String::from_utf8(bytes.to_vec()) {
        Ok(text) => Body::Text(text),
        Err(raw) => Body::Binary(raw.into_bytes()),
    }
}

/// `req` as lambda_http hands on an API Gateway event: its path and its query
/// (parsed, repeats kept) stated beside the URI, as the local server and the
/// forward-auth reader deliver requests.
pub fn as_delivered(req: Request) -> Request {
    let path = req.uri().path().to_owned();
    let mut query: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned() {
        query.entry(k).or_default().push(v);
    }
    req.with_raw_http_path(path).with_query_string_parameters(query)
}

/// The path a route of the API names: on the API's own endpoint
/// (`*.execute-api.<region>.amazonaws.com`), an HTTP API's `rawPath` begins
/// with the stage's name on a named stage (never on `$default`), where its
/// routes' paths do not. A custom domain's path holds no stage (its API
/// mapping key, if any, stays: see docs/security/policy.md).
pub fn without_stage<'a>(raw: &'a str, stage: Option<&str>, domain: Option<&str>) -> &'a str {
    let aws = |d: &str| d.ends_with(".amazonaws.com") || d.ends_with(".amazonaws.com.cn");
    let endpoint = domain.is_some_and(|d| d.contains(".execute-api.") && aws(d));
    let Some(stage) = stage.filter(|s| endpoint && !s.is_empty() && *s != "$default") else { return raw };
    let rest = raw.strip_prefix('/').and_then(|r| r.strip_prefix(stage));
    rest.filter(|r| r.is_empty() || r.starts_with('/')).unwrap_or(raw)
}

/// Parses a JSON body strictly: `application/json` only (415), at most `limit`
/// bytes (413), well-formed (400), and the target type is expected to use
/// `#[serde(deny_unknown_fields)]` so unknown fields are a 400 as well.
pub fn parse_json<T: DeserializeOwned>(req: &Request, limit: usize) -> Result<T, ApiError> {
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let essence = v.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    serde_json::from_slice(bytes).map_err(ApiError::MalformedBody)
}

/// The request's query parameters, decoded, repeats kept. From an API Gateway
/// event, the query it delivered (`rawQueryString`, parsed by lambda_http),
/// never the query of the URI lambda_http rebuilds from the client's `Host`
/// and `X-Forwarded-Proto` (a forged `https://x/p?limit=999#` would replace
/// it); in the local server, the query as sent, in its order.
pub fn query_params(req: &Request) -> Vec<(String, String)> {
    if delivered(req) {
        let parsed = req.query_string_parameters_ref();
        return parsed
            .map(|q| q.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
            .unwrap_or_default();
    }
    req.uri()
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Request metadata for audit events and throttling. The source IP is the one API
/// Gateway saw on the connection, never a client-supplied `X-Forwarded-For`.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl ClientMeta {
    /// Reads the metadata from the API Gateway request context.
    pub fn from_request(req: &Request) -> Self {
        let user_agent = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect());
        let (source_ip, request_id) = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => (ctx.http.source_ip.clone(), ctx.request_id.clone()),
            Some(RequestContext::ApiGatewayV1(ctx)) => {
                (ctx.identity.source_ip.clone(), ctx.request_id.clone())
            }
            _ => (None, None),
        };
        Self { source_ip, user_agent, request_id }
    }
}

/// The identity the authorizer established for this request, read from the
/// context API Gateway attaches after the authorizer allowed it. Only API Gateway
/// (or the local server emulating it) can set this context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    pub sid: Option<String>,
    pub roles: Vec<String>,
    /// Set when the caller authenticated with an API key rather than as a person.
    pub api_key_id: Option<String>,
    /// When the person last proved who they are (the token's `auth_time`), and how (`amr`).
    pub auth_time: Option<i64>,
    pub amr: Vec<String>,
    /// The permission of the policy rule that allowed the request, if any.
    pub permission: Option<String>,
}

impl Caller {
    /// The authenticated caller, or `Unauthenticated` when no authorizer ran.
    pub fn from_request(req: &Request) -> Result<Self, ApiError> {
        let fields = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().map(|a| &a.fields),
            Some(RequestContext::ApiGatewayV1(ctx)) => Some(&ctx.authorizer.fields),
            _ => None,
        }
        .ok_or(ApiError::Unauthenticated)?;
        let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let sub = text("sub").filter(|s| !s.is_empty()).ok_or(ApiError::Unauthenticated)?;
        let list = |key: &str| -> Vec<String> {
            text(key)
                .map(|r| r.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        Ok(Self {
            sub,
            sid: text("sid").filter(|s| !s.is_empty()),
            roles: list("roles"),
            api_key_id: text("api_key_id").filter(|s| !s.is_empty()),
            auth_time: text("auth_time").and_then(|t| t.parse().ok()),
            amr: list("amr"),
            permission: text("permission").filter(|s| !s.is_empty()),
        })
    }

    /// Step-up (ASVS 5.0 V7.5.1, Kratos `privileged_session_max_age`): a sensitive
    /// change needs a person whose last authentication is at most `max_age_secs`
    /// old and, when the account has a second factor, included it. Anything else,
    /// a missing or future `auth_time` or an API key included, is a 401
    /// `reauthentication-required` (`POST /auth/reauth` mends it).
    pub fn require_recent_auth(
        &self,
        now: i64,
        max_age_secs: u64,
        second_factor_enrolled: bool,
    ) -> Result<(), ApiError> {
        let recent = match self.auth_time {
            Some(at) => at <= now + crate::clock::LEEWAY_SECS && now - at <= max_age_secs as i64,
            None => false,
        };
        let factors = !second_factor_enrolled || crate::rbac::has_second_factor(&self.amr);
        if recent && factors && self.api_key_id.is_none() {
            Ok(())
        } else {
            Err(ApiError::ReauthenticationRequired)
        }
    }
}

/// `Bearer <token>` (scheme case-insensitive, RFC 7235), else `None`.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
}

/// The bearer token of the request's `Authorization` header (already verified
/// by the authorizer when the route is protected).
pub fn bearer(req: &Request) -> Option<&str> {
    bearer_token(req.headers().get(http::header::AUTHORIZATION)?.to_str().ok()?)
}

/// The request id to log: API Gateway's, else the Lambda invocation's, else `-`.
pub fn request_id(req: &Request) -> String {
    ClientMeta::from_request(req)
        .request_id
        .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()))
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP API event for `GET /admin/audit?<query>` with these headers.
    fn event(query: &str, headers: serde_json::Value) -> Request {
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "GET /admin/audit", "rawPath": "/admin/audit", "rawQueryString": query,
            "headers": headers,
            "requestContext": {"http": {"method": "GET", "path": "/admin/audit", "protocol": "HTTP/1.1",
                                        "sourceIp": "203.0.113.9", "userAgent": "t"},
                               "domainName": "abc.execute-api.us-east-1.amazonaws.com", "stage": "$default",
                               "requestId": "r", "routeKey": "GET /admin/audit", "accountId": "1", "apiId": "abc",
                               "domainPrefix": "abc", "time": "t", "timeEpoch": 0},
            "isBase64Encoded": false
        });
        lambda_http::request::from_str(&event.to_string()).expect("an HTTP API event")
    }

    #[test]
    fn the_path_and_query_are_api_gateways_whatever_the_client_headers_say() {
        let forged = serde_json::json!({"host": "abc.execute-api.us-east-1.amazonaws.com",
                                        "x-forwarded-proto": "https://x/admin/users?limit=999&type=x#"});
        let req = event("limit=1&type=login_failure&type=login_success", forged);
        assert_eq!(served_path(&req), "/admin/audit");
        let mut params = query_params(&req);
        params.sort();
        assert_eq!(
            params,
            [("limit", "1"), ("type", "login_failure"), ("type", "login_success")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert!(query_params(&event("", serde_json::json!({}))).is_empty());
        // An event without rawPath: API Gateway's stated path, and still its query.
        let mut raw: serde_json::Value = serde_json::json!({
            "version": "2.0", "routeKey": "GET /admin/audit", "rawQueryString": "limit=1",
            "headers": {"host": "abc.execute-api.us-east-1.amazonaws.com", "x-forwarded-proto": "https://x/admin/users?limit=9#"},
            "requestContext": {"http": {"method": "GET", "path": "/admin/audit", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "t"},
                               "stage": "$default", "requestId": "r", "routeKey": "GET /admin/audit", "accountId": "1",
                               "apiId": "abc", "domainName": "abc.execute-api.us-east-1.amazonaws.com", "domainPrefix": "abc", "time": "t", "timeEpoch": 0},
            "isBase64Encoded": false
        });
        raw["rawPath"] = serde_json::Value::Null;
        let req = lambda_http::request::from_str(&raw.to_string()).expect("an event");
        assert_eq!(
            (served_path(&req), query_params(&req)),
            ("/admin/audit", vec![("limit".to_owned(), "1".to_owned())])
        );
    }

    fn person(auth_time: Option<i64>, amr: &[&str]) -> Caller {
        Caller {
            sub: "u".into(),
            sid: Some("s".into()),
            roles: vec!["user".into()],
            api_key_id: None,
            auth_time,
            amr: amr.iter().map(|m| m.to_string()).collect(),
            permission: None,
        }
    }

    #[test]
    fn step_up_needs_a_recent_authentication_with_the_second_factor_when_enrolled() {
        let now = 1_000_000;
        let ok = |c: &Caller, mfa: bool| c.require_recent_auth(now, 300, mfa).is_ok();
        assert!(ok(&person(Some(now - 300), &["pwd"]), false), "exactly at the window");
        assert!(!ok(&person(Some(now - 301), &["pwd"]), false), "one second past it");
        assert!(!ok(&person(None, &["pwd"]), false), "no auth_time fails closed");
        assert!(ok(&person(Some(now + LEEWAY), &["pwd"]), false), "clock skew within the leeway");
        assert!(!ok(&person(Some(now + LEEWAY + 1), &["pwd"]), false), "an auth_time in the future");
        assert!(!ok(&person(Some(now), &["pwd"]), true), "the second factor is enrolled but not proven");
        assert!(ok(&person(Some(now), &["pwd", "otp"]), true));
        assert!(ok(&person(Some(now), &["pwd", "mfa"]), true), "a recovery code is a second factor");
        let mut key = person(Some(now), &["pwd", "otp"]);
        key.api_key_id = Some("k".into());
        assert!(!ok(&key, false), "an API key is never a recent authentication");
    }

    const LEEWAY: i64 = crate::clock::LEEWAY_SECS;
}
