//! API Gateway authorizer payloads: HTTP API (payload 2.0, simple responses)
//! and REST API REQUEST authorizers (IAM policy documents). Anything else is
//! refused, never an invocation error.

use crate::{authorize_route, context_of, refuse, Ask, Decision, Deps, Matched};
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayV2CustomAuthorizerV2Request,
};
use http::HeaderMap;
use serde_json::{json, Value};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The decision on `method path` with the credentials these headers carry,
/// and what API Gateway matched when `path` is the route template.
async fn decide(
    deps: &Deps,
    (method, path): (&str, &str),
    matched: Option<Matched<'_>>,
    headers: &HeaderMap,
) -> Decision {
    // A backend may run another method than the one judged (Express's
    // method-override, Spring's HiddenHttpMethodFilter): no request names one.
    if METHOD_OVERRIDES.iter().any(|h| headers.contains_key(*h)) {
        return refuse(Decision::Forbidden, "a method-override header");
    }
    let authorization = header(headers, "authorization");
    let ask = Ask { method, path, authorization, api_key: header(headers, "x-api-key") };
    authorize_route(deps, ask, matched).await
}

/// What a rule is looked up by: API Gateway's route template (`template`,
/// with its method) when it matched a route of one method and fixed depth;
/// else the request's own method and path (an `ANY` route, a greedy
/// `{proxy+}` one, or none), whose parameters the rule's template then reads.
fn lookup<'a>(
    template: Option<(&'a str, &'a str)>,
    stated: Option<&'a str>,
    raw: Option<&'a str>,
) -> Option<((&'a str, &'a str), bool)> {
    match template {
        Some((method, path)) if method != "ANY" && !path.contains("+}") => Some(((method, path), true)),
        _ => Some(((stated?, raw.unwrap_or_default()), false)),
    }
}

/// Headers with which a client asks a backend to run another method.
pub const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// The prefix of the only resources a REST policy may name.
const EXECUTE_API_ARN: &str = "arn:aws:execute-api:";

/// The HTTP method as the event states it at `pointer`, if it states one. The
/// event types read a missing or empty method as GET; nothing is decided on a
/// method the request did not name.
fn stated_method(event: &Value, pointer: &str) -> Option<String> {
    event.pointer(pointer).and_then(Value::as_str).filter(|m| !m.is_empty()).map(str::to_owned)
}

/// Any authorizer event: HTTP API 2.0 or REST REQUEST, told apart by shape.
pub async fn handle_event(deps: &Deps, event: Value) -> Value {
    if event.get("version").and_then(Value::as_str) == Some("2.0") {
        handle_v2(deps, event).await
    } else if event.get("type").and_then(Value::as_str) == Some("REQUEST") && event.get("methodArn").is_some()
    {
        handle_rest(deps, event).await
    } else {
        tracing::info!(target: "audit", event_type = "authorizer_deny", reason = "unrecognised payload", "request refused");
        json!({ "isAuthorized": false, "context": {} })
    }
}

/// HTTP API simple response: `{isAuthorized, context}`.
pub async fn handle_v2(deps: &Deps, event: Value) -> Value {
    let stated = stated_method(&event, "/requestContext/http/method");
    let at = |pointer| event.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    let (stage, domain) = (at("/requestContext/stage"), at("/requestContext/domainName"));
    let decision = match serde_json::from_value::<ApiGatewayV2CustomAuthorizerV2Request>(event) {
        Ok(request) => {
            let route =
                request.route_key.as_deref().filter(|r| *r != "$default").and_then(|r| r.split_once(' '));
            let raw = request
                .raw_path
                .as_deref()
                .map(|p| portcullis_shared::http::without_stage(p, stage.as_deref(), domain.as_deref()));
            match lookup(route, stated.as_deref(), raw) {
                Some((ask, templated)) => {
                    let params = &request.path_parameters;
                    let matched = templated.then_some(Matched { params, raw_path: raw });
                    decide(deps, ask, matched, &request.headers).await
                }
                None => refuse(Decision::Unauthorized, "no HTTP method"),
            }
        }
        Err(_) => Decision::Unauthorized,
    };
    match decision {
        Decision::Allow(identity) => json!({ "isAuthorized": true, "context": context_of(&identity) }),
        _ => json!({ "isAuthorized": false, "context": {} }),
    }
}

/// REST API REQUEST authorizer: an IAM policy for exactly the invoked method ARN.
/// Allowing only that ARN keeps a cached policy from granting other routes: a
/// cached Allow is never wider than what this caller was checked for.
pub async fn handle_rest(deps: &Deps, event: Value) -> Value {
    let stated = stated_method(&event, "/httpMethod");
    let parsed = serde_json::from_value::<ApiGatewayCustomAuthorizerRequestTypeRequest>(event);
    let (decision, method_arn) = match parsed {
        Ok(request) => {
            let method_arn = request.method_arn.clone().unwrap_or_default();
            let decision = match stated {
                // Without an ARN to name, nothing can be allowed: no decision is made.
                _ if !method_arn.starts_with(EXECUTE_API_ARN) => {
                    refuse(Decision::Unauthorized, "methodArn is not an execute-api ARN")
                }
                None => refuse(Decision::Unauthorized, "no HTTP method"),
                Some(method) => {
                    let template = request.resource.as_deref().map(|r| (method.as_str(), r));
                    match lookup(template, Some(&method), request.path.as_deref()) {
                        Some((ask, templated)) => {
                            let (params, raw_path) = (&request.path_parameters, request.path.as_deref());
                            let matched = templated.then_some(Matched { params, raw_path });
                            decide(deps, ask, matched, &request.headers).await
                        }
                        None => refuse(Decision::Unauthorized, "no HTTP method"),
                    }
                }
            };
            (decision, method_arn)
        }
        Err(_) => (Decision::Unauthorized, String::new()),
    };
    // Every Deny is the same anonymous answer, on everything when the ARN is unusable.
    let (principal, effect, context, resource) = match &decision {
        // A public rule names no one; REST needs a principal all the same.
        Decision::Allow(identity) if identity.sub.is_empty() => {
            ("anonymous".to_owned(), "Allow", Value::Object(context_of(identity)), method_arn)
        }
        Decision::Allow(identity) => {
            (identity.sub.clone(), "Allow", Value::Object(context_of(identity)), method_arn)
        }
        _ => {
            let resource = if method_arn.starts_with(EXECUTE_API_ARN) { method_arn } else { "*".to_owned() };
            ("anonymous".to_owned(), "Deny", json!({}), resource)
        }
    };
    json!({
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{ "Action": "execute-api:Invoke", "Effect": effect, "Resource": resource }]
        },
        "context": context
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_shared::clock::{Clock, SystemClock};
    use portcullis_shared::config::Config;
    use portcullis_shared::http::ClientMeta;
    use portcullis_shared::runtime::{key_provider, token_issuer, Backends};
    use portcullis_shared::sessions;
    use portcullis_shared::tokens::Grant;
    use std::sync::Arc;

    /// The authorizer's dependencies on in-memory stores, and a valid token of a
    /// live session with the `user` role.
    async fn world() -> (Deps, String) {
        let dir = std::env::temp_dir().join(format!("portcullis-authorizer-events-{}", uuid::Uuid::new_v4()));
        let key_file = dir.join("master.key").display().to_string();
        let config = Config::from_lookup(|v| match v {
            "PORTCULLIS_LOCAL_KEY_FILE" => Some(key_file.clone()),
            "PORTCULLIS_STORE" => Some("memory".into()),
            _ => None,
        })
        .expect("config");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let backends = Backends::open(&config).await.expect("backends");
        let provider = key_provider(&config).expect("keys");
        let issuer =
            token_issuer(&config, &backends, provider.as_ref(), clock.clone()).await.expect("issuer");
        let (session, _) = sessions::start(
            backends.sessions.as_ref(),
            &config.session_policy(),
            "user-1",
            vec!["user".into()],
            vec!["pwd".into()],
            &ClientMeta::default(),
            clock.now_secs(),
        )
        .await
        .expect("session");
        let token = issuer.issue(Grant::for_session(&session, vec!["user".into()])).expect("token").0;
        let deps = Deps::build(&config, &backends, clock).await.expect("deps");
        let _ = std::fs::remove_dir_all(&dir);
        (deps, token)
    }

    fn rest_event(method: Option<&str>, method_arn: &str, token: &str) -> Value {
        let mut event = json!({
            "type": "REQUEST",
            "methodArn": method_arn,
            "resource": "/me",
            "path": "/me",
            "headers": { "Authorization": format!("Bearer {token}") },
            "requestContext": {}
        });
        if let Some(method) = method {
            event["httpMethod"] = method.into();
        }
        event
    }

    fn v2_event(route_key: &str, method: &str, token: &str) -> Value {
        json!({
            "version": "2.0",
            "type": "REQUEST",
            "routeKey": route_key,
            "rawPath": "/me",
            "headers": { "authorization": format!("Bearer {token}") },
            "requestContext": { "http": { "method": method, "path": "/me" } }
        })
    }

    #[tokio::test]
    async fn a_named_stage_in_the_raw_path_is_not_part_of_the_route() {
        let (deps, token) = world().await;
        let staged = |stage: &str, raw: &str| {
            let mut event = v2_event("$default", "GET", &token);
            event["rawPath"] = raw.into();
            event["requestContext"]["stage"] = stage.into();
            event["requestContext"]["domainName"] = "abc123.execute-api.us-east-1.amazonaws.com".into();
            event
        };
        for (stage, raw) in [("prod", "/prod/me"), ("$default", "/me"), ("v1", "/me")] {
            let response = handle_event(&deps, staged(stage, raw)).await;
            assert_eq!(response["isAuthorized"], true, "{stage} {raw}: {response}");
        }
        let response = handle_event(&deps, staged("prod", "/production/me")).await;
        assert_eq!(response["isAuthorized"], false, "only the whole stage segment: {response}");
        let response = handle_event(&deps, staged("$default", "/prod/me")).await;
        assert_eq!(response["isAuthorized"], false, "{response}");
        // A custom domain's path holds no stage: a first segment named like it stays.
        let mut custom = staged("me", "/me");
        custom["requestContext"]["domainName"] = "api.example.com".into();
        assert_eq!(handle_event(&deps, custom).await["isAuthorized"], true);
        let mut custom = staged("prod", "/prod/me");
        custom["requestContext"]["domainName"] = "api.example.com".into();
        assert_eq!(handle_event(&deps, custom).await["isAuthorized"], false, "/prod/me is no route");
    }

    #[tokio::test]
    async fn a_rest_allow_on_a_public_route_names_an_anonymous_principal() {
        let (deps, _) = world().await;
        let mut event = rest_event(Some("GET"), ME_ARN, "");
        event["resource"] = "/health".into();
        event["path"] = "/health".into();
        event["headers"] = json!({});
        let response = handle_event(&deps, event).await;
        assert_eq!(response["policyDocument"]["Statement"][0]["Effect"], "Allow", "{response}");
        assert_eq!(response["principalId"], "anonymous", "{response}");
    }

    const ME_ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/me";

    #[tokio::test]
    async fn a_rest_deny_for_an_unusable_method_arn_names_no_one() {
        let (deps, token) = world().await;
        let allowed = handle_event(&deps, rest_event(Some("GET"), ME_ARN, &token)).await;
        assert_eq!(allowed["policyDocument"]["Statement"][0]["Effect"], "Allow", "{allowed}");
        assert_eq!(allowed["principalId"], "user-1");
        for arn in ["", "not-an-arn", "arn:aws:s3:::bucket/GET/me"] {
            let denied = handle_event(&deps, rest_event(Some("GET"), arn, &token)).await;
            let statement = &denied["policyDocument"]["Statement"][0];
            assert_eq!(
                (&statement["Effect"], &statement["Resource"]),
                (&json!("Deny"), &json!("*")),
                "{denied}"
            );
            // A Deny is the same for everyone: no principal, no context from the token.
            assert_eq!(denied["principalId"], "anonymous", "{arn:?}: {denied}");
            assert_eq!(denied["context"], json!({}), "{arn:?}: {denied}");
        }
    }

    #[tokio::test]
    async fn a_missing_or_empty_method_is_refused_not_read_as_get() {
        let (deps, token) = world().await;
        let effect = |response: &Value| response["policyDocument"]["Statement"][0]["Effect"].clone();
        assert_eq!(effect(&handle_event(&deps, rest_event(Some("GET"), ME_ARN, &token)).await), "Allow");
        for method in [Some(""), None] {
            let response = handle_event(&deps, rest_event(method, ME_ARN, &token)).await;
            assert_eq!(effect(&response), "Deny", "REST httpMethod {method:?}: {response}");
        }
        let v2 = |route_key, method| handle_event(&deps, v2_event(route_key, method, &token));
        assert_eq!(v2("$default", "GET").await["isAuthorized"], true);
        assert_eq!(v2("GET /me", "").await["isAuthorized"], true, "the route key states the method");
        let response = v2("$default", "").await;
        assert_eq!(response["isAuthorized"], false, "HTTP API method \"\" on $default: {response}");
    }
}
