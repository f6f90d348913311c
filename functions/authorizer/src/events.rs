//! API Gateway authorizer payloads: HTTP API (payload 2.0, simple responses)
//! and REST API REQUEST authorizers (IAM policy documents). Anything else is
//! refused, never an invocation error.

use crate::{authorize, context_of, Ask, Decision, Deps};
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayV2CustomAuthorizerV2Request,
};
use http::HeaderMap;
use serde_json::{json, Value};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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
    let decision = match serde_json::from_value::<ApiGatewayV2CustomAuthorizerV2Request>(event) {
        Ok(request) => {
            // The route template when API Gateway matched one, else the raw path.
            let route =
                request.route_key.as_deref().filter(|r| *r != "$default").and_then(|r| r.split_once(' '));
            let method = route
                .map(|(m, _)| m.to_owned())
                .unwrap_or_else(|| request.request_context.http.method.to_string());
            let path = route.map(|(_, p)| p.to_owned()).or(request.raw_path.clone()).unwrap_or_default();
            let ask = Ask {
                method: &method,
                path: &path,
                authorization: header(&request.headers, "authorization"),
                api_key: header(&request.headers, "x-api-key"),
            };
            authorize(deps, ask).await
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
    let parsed = serde_json::from_value::<ApiGatewayCustomAuthorizerRequestTypeRequest>(event);
    let (decision, method_arn) = match parsed {
        Ok(request) => {
            let method = request.http_method.as_ref().map(|m| m.to_string()).unwrap_or_default();
            let path = request.resource.clone().or(request.path.clone()).unwrap_or_default();
            let ask = Ask {
                method: &method,
                path: &path,
                authorization: header(&request.headers, "authorization"),
                api_key: header(&request.headers, "x-api-key"),
            };
            (authorize(deps, ask).await, request.method_arn.unwrap_or_default())
        }
        Err(_) => (Decision::Unauthorized, String::new()),
    };
    let (principal, effect, context) = match &decision {
        Decision::Allow(identity) => (identity.sub.clone(), "Allow", Value::Object(context_of(identity))),
        _ => ("anonymous".to_owned(), "Deny", json!({})),
    };
    // An unparseable ARN gets a Deny on everything.
    let resource = if method_arn.starts_with("arn:aws:execute-api:") { method_arn } else { "*".to_owned() };
    let effect = if resource == "*" { "Deny" } else { effect };
    json!({
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{ "Action": "execute-api:Invoke", "Effect": effect, "Resource": resource }]
        },
        "context": context
    })
}
