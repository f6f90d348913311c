//! `portcullis policy check` and `portcullis policy explain`, run as a team
//! runs them: the binary, the policy file the configuration names, and the
//! API's SAM template (the shipped one, and a team's with mistakes in it).

use crate::helpers::binary;
use portcullis_shared::routes::{Access, ROUTES};

/// The team's policy: owned orders read by support, a step-up refund, a
/// report route the template forgets to protect, a rule with no route.
const POLICY: &str = r#"{
  "permissions": ["users:read", "users:manage", "sessions:revoke", "apikeys:manage", "audit:read",
                  "orders:read", "orders:read:any", "orders:refund", "reports:read"],
  "roles": {"user": ["orders:read"], "support": {"grants": ["orders:read", "orders:read:any"], "mfa": true},
            "admin": {"grants": ["users:*", "sessions:*", "apikeys:*", "audit:*"], "mfa": true}, "finance": ["orders:*", "reports:read"]},
  "routes": [
    {"method": "GET", "path": "/orders/{user_id}/{order_id}", "permission": "orders:read",
     "owner": {"param": "user_id", "unless": "orders:read:any"}, "api_keys": true},
    {"method": "POST", "path": "/orders/{order_id}/refund", "permission": "orders:refund",
     "max_auth_age_secs": 300},
    {"method": "GET", "path": "/reports", "permission": "reports:read"},
    {"method": "DELETE", "path": "/orders/{order_id}", "permission": "orders:refund"},
    {"method": "POST", "path": "/orders/{order_id}/{action}", "permission": "session"}
  ]
}"#;

/// A team's template: one route names the owner parameter otherwise, one has
/// no rule, one skips the authorizer that its rule needs.
const TEMPLATE: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Portcullis
        Authorizers:
          Portcullis: { FunctionArn: !GetAtt Authorizer.Arn }
  Orders:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Read: { Type: HttpApi, Properties: { ApiId: !Ref Api, Method: GET, Path: "/orders/{user_id}/{order_id}" } }
        ReadByCustomer: { Type: HttpApi, Properties: { ApiId: !Ref Api, Method: get, Path: "/orders/{customer}/{id}/" } }
        Refund: { Type: HttpApi, Properties: { ApiId: !Ref Api, Method: POST, Path: "/orders/{order_id}/refund" } }
        Action: { Type: HttpApi, Properties: { ApiId: !Ref Api, Method: POST, Path: "/orders/{id}/{verb}" } }
        Export: { Type: HttpApi, Properties: { ApiId: !Ref Api, Method: GET, Path: /export } }
        Reports:
          Type: HttpApi
          Properties: { ApiId: !Ref Api, Method: GET, Path: /reports, Auth: { Authorizer: NONE } }
  Fallback:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref Api, RouteKey: "ANY /files/{proxy+}", AuthorizationType: CUSTOM }
"#;

/// Runs `portcullis policy ARGS` with `policy` as the deployment's file:
/// (exit status, stdout + stderr).
fn run(policy: Option<&str>, args: &[&str]) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("pc-policy-cli-{}", crate::helpers::hex_token()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut cmd = std::process::Command::new(binary("portcullis"));
    cmd.arg("policy").args(args).current_dir(&dir).env_remove("PORTCULLIS_POLICY_FILE");
    if let Some(policy) = policy {
        std::fs::write(dir.join("policy.json"), policy).expect("policy");
        cmd.env("PORTCULLIS_POLICY_FILE", dir.join("policy.json"));
    }
    std::fs::write(dir.join("template.yaml"), TEMPLATE).expect("template");
    let out = cmd.output().expect("run portcullis");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_shipped_template_and_policy_agree_route_for_route() {
    let template = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    let (status, out) = run(None, &["check", "--template", &template.display().to_string()]);
    assert_eq!(status, 0, "{out}");
    let guarded = ROUTES.iter().filter(|r| r.access != Access::Public).count();
    let counts = format!("{} routes, {guarded} behind the authorizer", ROUTES.len());
    assert!(out.contains(&counts), "expected {counts}: {out}");
    assert!(out.contains("every protected route has a rule and every rule a route"), "{out}");
}

/// The example's template adds its routes to the Portcullis API behind the
/// authorizer (`AWS::ApiGatewayV2::Route`s): its own policy decides each one.
#[test]
fn the_notes_example_template_and_policy_agree_route_for_route() {
    let template = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/notes/template.yaml");
    let policy = std::fs::read_to_string(crate::example_notes::POLICY).expect("the example's policy");
    let (status, out) = run(Some(&policy), &["check", "--template", &template.display().to_string()]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("valid, 4 rules of the team's"), "{out}");
    assert!(out.contains("4 routes, 4 behind the authorizer"), "{out}");
    assert!(out.contains("every protected route has a rule and every rule a route"), "{out}");
}

#[test]
fn check_names_every_disagreement_between_policy_and_template() {
    let (status, out) = run(Some(POLICY), &["check"]);
    assert_eq!(status, 0, "the policy alone is valid: {out}");
    assert!(out.contains("valid, 5 rules of the team's"), "{out}");
    let (status, out) = run(Some(POLICY), &["check", "--template", "template.yaml"]);
    assert_eq!(status, 1, "{out}");
    let problems: Vec<&str> = out.lines().filter(|l| l.starts_with("problem: ")).collect();
    for expected in [
        "GET /orders/{customer}/{id}/ (Orders.Events.ReadByCustomer): its rule (GET /orders/{user_id}/{order_id}) reads the owner from `{user_id}`",
        "GET /export (Orders.Events.Export): no rule decides it",
        "ANY /files/{proxy+} (Fallback): no rule covers any request of it",
        "team rule GET /reports: never applied: its route GET /reports (Orders.Events.Reports) does not call the authorizer",
        "team rule DELETE /orders/{order_id}: never applied: no route of the template matches it",
        "POST /orders/{id}/{verb} (Orders.Events.Action): the rule POST /orders/{order_id}/refund is more specific than the route's (POST /orders/{order_id}/{action})",
    ] {
        assert!(problems.iter().any(|p| p.contains(expected)), "missing {expected:?} in {out}");
    }
    assert_eq!(problems.len(), 6, "{out}");
    let (status, out) = run(Some("{\"permissions\": []"), &["check"]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("policy.json") && out.contains("not a valid policy"), "{out}");
}

#[test]
fn explain_gives_the_rule_the_decision_and_the_reason() {
    let explain = |args: &[&str]| run(Some(POLICY), &[&["explain"], args].concat());
    let (status, out) = explain(&["GET", "/orders/ada/7", "--sub", "ada"]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("rule: GET /orders/{user_id}/{order_id} requires `orders:read`"), "{out}");
    assert!(out.contains("decision: allow, with permission orders:read"), "{out}");
    let (status, out) = explain(&["GET", "/orders/bob/7", "--sub", "ada"]);
    assert_eq!((status, out.contains("deny (403): the caller does not own the record")), (2, true), "{out}");
    // Support's grants need a second factor; finance's `orders:*` does not cover the exception.
    let (status, out) = explain(&["GET", "/orders/bob/7", "--role", "support"]);
    assert_eq!((status, out.contains("the caller does not own the record")), (2, true), "{out}");
    let (status, _) = explain(&["GET", "/orders/bob/7", "--role", "support", "--amr", "pwd,otp"]);
    assert_eq!(status, 0);
    let (status, out) = explain(&["GET", "/orders/bob/7", "--role", "finance", "--sub", "fin"]);
    assert_eq!((status, out.contains("does not own")), (2, true), "{out}");
    let (status, out) = explain(&["GET", "/orders/bob/7", "--api-key-grant", "orders:read"]);
    assert_eq!((status, out.contains("does not own")), (2, true), "an API key owns nothing: {out}");
    let any =
        ["GET", "/orders/bob/7", "--api-key-grant", "orders:read", "--api-key-grant", "orders:read:any"];
    let (status, out) = explain(&any);
    assert_eq!(status, 0, "{out}");
    let (status, out) = explain(&["POST", "/orders/7/refund", "--role", "finance", "--auth-age", "301"]);
    assert_eq!((status, out.contains("needs a recent authentication")), (2, true), "{out}");
    let (status, _) = explain(&["POST", "/orders/7/refund", "--role", "finance", "--auth-age", "60"]);
    assert_eq!(status, 0);
    let (status, out) = explain(&["GET", "/nowhere"]);
    assert_eq!((status, out.contains("rule: none")), (2, true), "{out}");
    let (status, out) = explain(&["GET", "/orders/ada/..%2Fbob", "--sub", "ada"]);
    assert_eq!((status, out.contains("rule: none")), (2, true), "{out}");
}
