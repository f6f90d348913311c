//! The deployment's own policy file (`PORTCULLIS_POLICY_FILE`) at the real
//! authorizer, on DynamoDB sessions and API keys: customers reach only their
//! own orders, support reads any, an API key with the read permission reads,
//! a refund needs a recent authentication, an export a second factor, a route
//! the policy does not name is refused, and API Gateway's events (a matched
//! template with its path parameters, an `ANY /{proxy+}` route) are judged
//! by the same rules.

use crate::app::{spawn_app_with, Backend, TestApp};
use crate::helpers::{parts, request, GOOD_PASSWORD};
use portcullis_authorizer::{authorize, Ask, Decision};
use portcullis_shared::apikeys::{new_api_key, reveal, ApiKeyRecord};
use portcullis_shared::clock::Clock;
use portcullis_shared::domain::{Role, UserId};
use serde_json::{json, Value};

const POLICY: &str = r#"{
  "permissions": ["users:read", "users:manage", "sessions:revoke", "apikeys:manage", "audit:read",
                  "orders:read", "orders:read:any", "orders:refund", "orders:export"],
  "roles": {
    "user": ["orders:read", "orders:export"],
    "support": ["orders:read:any", "orders:refund"],
    "admin": {"grants": ["users:*", "sessions:*", "apikeys:*", "audit:*", "orders:*"], "mfa": true}
  },
  "routes": [
    {"method": "GET", "path": "/orders/{user_id}/{order_id}", "permission": "orders:read",
     "owner": {"param": "user_id", "unless": "orders:read:any"}, "api_keys": true},
    {"method": "POST", "path": "/orders/{order_id}/refund", "permission": "orders:refund",
     "max_auth_age_secs": 300},
    {"method": "GET", "path": "/exports/{user_id}", "permission": "orders:export",
     "owner": {"param": "user_id"}, "mfa": true},
    {"method": "ANY", "path": "/files/{proxy+}", "permission": "session"},
    {"method": "POST", "path": "/orders/{order_id}/{action}", "permission": "session"}
  ]
}"#;

/// A test app whose authorizer and admin function read [`POLICY`] from a file.
async fn app() -> TestApp {
    let file = std::env::temp_dir().join(format!("pc-policy-{}.json", crate::helpers::hex_token()));
    std::fs::write(&file, POLICY).expect("write the policy");
    spawn_app_with(Backend::Dynamo, &[("PORTCULLIS_POLICY_FILE", file.display().to_string())]).await
}

/// Registers `email` with `roles` besides `user`, logs in: `(sub, access token)`.
pub(crate) async fn person(app: &TestApp, email: &str, roles: &[&str]) -> (String, String) {
    let creds = json!({"email": email, "password": GOOD_PASSWORD}).to_string();
    let (status, body, _) = parts(
        portcullis_login::handle(&app.login, request("POST", "/auth/register", Some(&creds), None)).await,
    );
    assert_eq!(status, 201, "{body}");
    let sub = serde_json::from_str::<Value>(&body).expect("json")["user_id"].as_str().expect("id").to_owned();
    let id = UserId::parse(&sub).expect("user id");
    for role in roles {
        let users = &app.backends_of("admin").users;
        users.grant_role(id, &Role::parse(role).expect("role"), app.clock.now_secs()).await.expect("grant");
    }
    let (status, body, _) =
        parts(portcullis_login::handle(&app.login, request("POST", "/auth/login", Some(&creds), None)).await);
    assert_eq!(status, 200, "{body}");
    let token =
        serde_json::from_str::<Value>(&body).expect("json")["access_token"].as_str().expect("t").to_owned();
    (sub, token)
}

async fn decide(app: &TestApp, method: &str, path: &str, token: &str) -> Decision {
    let header = format!("Bearer {token}");
    authorize(&app.authorizer, Ask { method, path, authorization: Some(&header), api_key: None }).await
}

fn permission(decision: &Decision) -> Option<&str> {
    match decision {
        Decision::Allow(identity) => identity.permission.as_deref(),
        _ => None,
    }
}

#[tokio::test]
async fn customers_read_their_own_orders_support_reads_any_and_unnamed_routes_are_refused() {
    let app = app().await;
    let (ada, ada_token) = person(&app, "ada@example.com", &[]).await;
    let (bob, _) = person(&app, "bob@example.com", &[]).await;
    let (_, sam_token) = person(&app, "sam@example.com", &["support"]).await;

    let own = decide(&app, "GET", &format!("/orders/{ada}/1"), &ada_token).await;
    assert_eq!(permission(&own), Some("orders:read"), "{own:?}");
    assert_eq!(decide(&app, "GET", &format!("/orders/{bob}/1"), &ada_token).await, Decision::Forbidden);
    let support = decide(&app, "GET", &format!("/orders/{bob}/1"), &sam_token).await;
    assert_eq!(permission(&support), Some("orders:read"), "{support:?}");
    // Not in the policy: denied, whoever asks.
    for path in ["/orders", "/invoices/1", &format!("/orders/{ada}/1/lines")] {
        assert_eq!(decide(&app, "GET", path, &ada_token).await, Decision::Forbidden, "{path}");
    }
    assert_eq!(decide(&app, "DELETE", &format!("/orders/{ada}/1"), &ada_token).await, Decision::Forbidden);
    // A greedy route for any method, any depth.
    assert!(matches!(decide(&app, "PUT", "/files/a/b/c.txt", &ada_token).await, Decision::Allow(_)));
    // Portcullis' own routes keep their rules under the team's policy.
    assert_eq!(decide(&app, "GET", "/admin/users", &ada_token).await, Decision::Forbidden);
    assert!(matches!(decide(&app, "GET", "/me", &ada_token).await, Decision::Allow(_)));
}

#[tokio::test]
async fn step_up_and_second_factor_conditions_and_api_keys_with_the_read_permission() {
    let app = app().await;
    let (ada, ada_token) = person(&app, "ada@example.com", &[]).await;
    let (_, sam_token) = person(&app, "sam@example.com", &["support"]).await;
    let (_, root_token) = person(&app, "root@example.com", &["admin"]).await;

    assert_eq!(
        permission(&decide(&app, "POST", "/orders/9/refund", &sam_token).await),
        Some("orders:refund")
    );
    app.clock.advance(301);
    assert_eq!(decide(&app, "POST", "/orders/9/refund", &sam_token).await, Decision::Forbidden, "stale");
    // A password-only login has no second factor: no export, and admin's grants count for nothing.
    assert_eq!(decide(&app, "GET", &format!("/exports/{ada}"), &ada_token).await, Decision::Forbidden);
    assert_eq!(decide(&app, "GET", &format!("/orders/{ada}/1"), &root_token).await, Decision::Forbidden);

    let (key_id, key, hash) = new_api_key();
    let now = app.clock.now_secs();
    let record = ApiKeyRecord {
        key_id,
        name: "reports".into(),
        hash,
        permissions: vec!["orders:read".into(), "orders:read:any".into(), "orders:refund".into()],
        created_by: ada.clone(),
        created_at: now,
        valid_until: now + 86_400,
        revoked_at: None,
    };
    app.backends_of("admin").api_keys.create(&record).await.expect("key");
    let (key, own) = (reveal(&key), format!("/orders/{ada}/1"));
    let with_key = |method, path| Ask { method, path, authorization: None, api_key: Some(&key) };
    let read = authorize(&app.authorizer, with_key("GET", &own)).await;
    assert_eq!(permission(&read), Some("orders:read"), "{read:?}");
    // The refund rule does not admit keys, whatever their grants.
    assert_eq!(authorize(&app.authorizer, with_key("POST", "/orders/9/refund")).await, Decision::Forbidden);
}

/// An HTTP API authorizer event for `route_key` (`METHOD /template`) at `raw_path`.
fn event(route_key: &str, method: &str, raw_path: &str, params: Value, token: &str) -> Value {
    json!({
        "version": "2.0", "type": "REQUEST", "routeKey": route_key, "rawPath": raw_path,
        "headers": {"authorization": format!("Bearer {token}")},
        "requestContext": {"http": {"method": method, "path": raw_path, "sourceIp": "203.0.113.10"},
                           "routeKey": route_key, "requestId": "team-policy"},
        "pathParameters": params
    })
}

#[tokio::test]
async fn api_gateway_templates_carry_their_path_parameters_and_greedy_routes_use_the_path() {
    let app = app().await;
    let (ada, token) = person(&app, "ada@example.com", &[]).await;
    let (bob, _) = person(&app, "bob@example.com", &[]).await;
    let route = "GET /orders/{user_id}/{order_id}";
    let mine =
        event(route, "GET", &format!("/orders/{ada}/1"), json!({"user_id": ada, "order_id": "1"}), &token);
    let answer = portcullis_authorizer::handle_v2(&app.authorizer, mine).await;
    assert_eq!(answer["isAuthorized"], true, "{answer}");
    assert_eq!(answer["context"]["permission"], "orders:read");
    assert_eq!(answer["context"]["sub"], ada.as_str());
    // The parameter API Gateway extracted decides, not the raw path.
    let theirs =
        event(route, "GET", &format!("/orders/{ada}/1"), json!({"user_id": bob, "order_id": "1"}), &token);
    assert_eq!(portcullis_authorizer::handle_v2(&app.authorizer, theirs).await["isAuthorized"], false);
    // A parameter named otherwise than in the policy fails closed.
    let renamed =
        event("GET /orders/{uid}/{order_id}", "GET", "/x", json!({"uid": ada, "order_id": "1"}), &token);
    assert_eq!(portcullis_authorizer::handle_v2(&app.authorizer, renamed).await["isAuthorized"], false);
    // `ANY /{proxy+}`: the request's own method and path find the rule.
    let proxy = |path: &str| event("ANY /{proxy+}", "GET", path, json!({"proxy": path}), &token);
    let own = portcullis_authorizer::handle_v2(&app.authorizer, proxy(&format!("/orders/{ada}/1"))).await;
    assert_eq!(own["isAuthorized"], true, "{own}");
    let other = portcullis_authorizer::handle_v2(&app.authorizer, proxy(&format!("/orders/{bob}/1"))).await;
    assert_eq!(other["isAuthorized"], false, "{other}");
    // A route of the API looser than a rule of the policy: the rule is not passed over.
    let action = |path: &str, action: &str| {
        let params = json!({"order_id": "7", "action": action});
        event("POST /orders/{order_id}/{action}", "POST", path, params, &token)
    };
    let cancel =
        portcullis_authorizer::handle_v2(&app.authorizer, action("/orders/7/cancel", "cancel")).await;
    assert_eq!(cancel["isAuthorized"], true, "{cancel}");
    let refund =
        portcullis_authorizer::handle_v2(&app.authorizer, action("/orders/7/refund", "refund")).await;
    assert_eq!(refund["isAuthorized"], false, "the refund rule decides, not the route's: {refund}");
    // Nor is it passed over by a spelling a case-insensitive backend routes to it.
    let refund =
        portcullis_authorizer::handle_v2(&app.authorizer, action("/orders/7/Refund", "Refund")).await;
    assert_eq!(refund["isAuthorized"], false, "{refund}");
    // A method-override header would let the backend run another method than the one judged.
    let mut overridden = action("/orders/7/cancel", "cancel");
    overridden["headers"]["x-http-method-override"] = "DELETE".into();
    assert_eq!(portcullis_authorizer::handle_v2(&app.authorizer, overridden).await["isAuthorized"], false);
    // API Gateway's decoded parameters and the raw path must be plain too.
    let sneaky = format!("/orders/{ada}/..%2F..%2F{bob}%2F7");
    let params = json!({"user_id": ada, "order_id": format!("../../{bob}/7")});
    let answer =
        portcullis_authorizer::handle_v2(&app.authorizer, event(route, "GET", &sneaky, params, &token)).await;
    assert_eq!(answer["isAuthorized"], false, "{answer}");
    // A path the backend would decode or normalise into another record is no path of any rule.
    for sneaky in [format!("/orders/{ada}/..%2F..%2F{bob}%2F1"), format!("/files/..%2Forders%2F{bob}%2F1")] {
        let answer = portcullis_authorizer::handle_v2(&app.authorizer, proxy(&sneaky)).await;
        assert_eq!(answer["isAuthorized"], false, "{sneaky}: {answer}");
    }
}
