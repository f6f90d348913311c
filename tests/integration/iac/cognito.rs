//! The Cognito pool is reachable only through the functions: a confidential app
//! client with exactly the flows they use and no OAuth, self sign-up off, the
//! client secret nowhere in the stack, and IAM rights on that pool only, held by
//! the functions that call it (docs/security/cognito.md).

use super::{parsed, properties, statements, yaml::Value};
use std::collections::{BTreeMap, BTreeSet};

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

#[test]
fn the_pool_refuses_callers_without_the_client_secret() {
    let template = parsed();
    let pool = properties(&template, "UserPool");
    let admin_only = pool.get("AdminCreateUserConfig").and_then(|c| text(c, "AllowAdminCreateUserOnly"));
    assert_eq!(admin_only, Some("true"), "self sign-up must be off");
    let client = properties(&template, "UserPoolClient");
    assert_eq!(text(client, "GenerateSecret"), Some("true"), "the app client must be confidential");
    let flows: Vec<String> = client
        .get("ExplicitAuthFlows")
        .map(Value::items)
        .unwrap_or_default()
        .iter()
        .map(|f| f.to_string())
        .collect();
    assert_eq!(
        flows,
        ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        "only the flows the functions use"
    );
    assert_eq!(text(client, "AllowedOAuthFlowsUserPoolClient"), Some("false"), "no OAuth / managed login");
    for absent in ["AllowedOAuthFlows", "AllowedOAuthScopes", "CallbackURLs", "LogoutURLs"] {
        assert!(client.get(absent).is_none(), "{absent} opens an OAuth flow");
    }
    assert_eq!(text(client, "PreventUserExistenceErrors"), Some("ENABLED"));
    assert_eq!(text(client, "EnableTokenRevocation"), Some("true"));
    // The functions read the secret from the pool; no output, parameter or
    // environment variable carries it.
    assert!(
        !super::template().contains("ClientSecret"),
        "the client secret must not be referenced in the stack"
    );
}

/// Every statement granting a `cognito-idp:` action, by the role or function holding it.
fn cognito_grants(template: &Value) -> Vec<(String, &Value)> {
    let mut found = Vec::new();
    for (name, resource) in template.get("Resources").map(Value::entries).unwrap_or_default() {
        let Some(props) = resource.get("Properties") else { continue };
        let mut documents: Vec<(String, &Value)> = props
            .get("Policies")
            .map(Value::items)
            .unwrap_or_default()
            .into_iter()
            .map(|d| (name.clone(), d))
            .collect();
        if let Some(document) = props.get("PolicyDocument") {
            let roles = props.get("Roles").map(Value::items).unwrap_or_default();
            documents.extend(roles.into_iter().map(|r| (r.to_string(), document)));
        }
        for (holder, document) in documents {
            for statement in statements(Some(document)) {
                let actions = statement.get("Action").map(Value::items).unwrap_or_default();
                if actions.iter().any(|a| a.to_string().to_ascii_lowercase().starts_with("cognito-idp:")) {
                    found.push((holder.clone(), statement));
                }
            }
        }
    }
    found
}

#[test]
fn only_the_functions_calling_the_pool_hold_rights_on_it_and_on_it_only() {
    let template = parsed();
    let mut granted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (holder, statement) in cognito_grants(&template) {
        assert_eq!(statement.get("Effect").and_then(Value::as_str), Some("Allow"));
        let resource = statement.get("Resource").map(Value::to_string);
        assert_eq!(resource.as_deref(), Some("!GetAtt UserPool.Arn"), "{holder}: this pool only");
        for action in statement.get("Action").map(Value::items).unwrap_or_default() {
            assert!(!action.to_string().contains('*'), "{holder}: no wildcard Cognito actions");
            granted.entry(holder.clone()).or_default().insert(action.to_string());
        }
    }
    let set = |actions: &[&str]| actions.iter().map(|a| format!("cognito-idp:{a}")).collect::<BTreeSet<_>>();
    let expected = BTreeMap::from([
        (
            "!Ref LoginFunctionRole".to_owned(),
            set(&["DescribeUserPoolClient", "AdminCreateUser", "AdminSetUserPassword", "AdminDeleteUser"]),
        ),
        ("!Ref MfaFunctionRole".to_owned(), set(&["DescribeUserPoolClient"])),
        ("!Ref RefreshFunctionRole".to_owned(), set(&["DescribeUserPoolClient"])),
    ]);
    assert_eq!(granted, expected);
}
