//! The admin function on MariaDB, connected as the admin user: its column-level
//! grants are enough to list users (emails decrypted), grant and revoke roles.

use crate::app::{spawn_app, Backend};
use crate::helpers::{parts, request_as, GOOD_PASSWORD};
use mysql_async::prelude::Queryable;

/// event_type, actor, subject, detail
type AdminAuditRow = (String, Option<String>, Option<String>, Option<String>);

/// A deployment with `emails` registered through the login function; the
/// admin function is connected as the admin database user. The new users' ids.
async fn deployment(emails: &[&str]) -> (crate::app::TestApp, Vec<String>) {
    let app = spawn_app(Backend::Mysql).await;
    let mut ids = Vec::new();
    for email in emails {
        let body = serde_json::json!({"email": email, "password": GOOD_PASSWORD}).to_string();
        let (status, text, _) = parts(
            portcullis_login::handle(
                &app.login,
                crate::helpers::request("POST", "/auth/register", Some(&body), None),
            )
            .await,
        );
        assert_eq!(status, 201, "{text}");
        ids.push(
            serde_json::from_str::<serde_json::Value>(&text).expect("json")["user_id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    (app, ids)
}

/// A request with these authorizer context fields set, as the authorizer sets them.
fn with_context(mut req: lambda_http::Request, fields: &[(&str, &str)]) -> lambda_http::Request {
    if let Some(lambda_http::request::RequestContext::ApiGatewayV2(mut ctx)) =
        lambda_http::RequestExt::request_context_ref(&req).cloned()
    {
        if let Some(a) = ctx.authorizer.as_mut() {
            for (key, value) in fields {
                a.fields.insert((*key).into(), (*value).into());
            }
        }
        req = lambda_http::RequestExt::with_request_context(
            req,
            lambda_http::request::RequestContext::ApiGatewayV2(ctx),
        );
    }
    req
}

#[tokio::test]
async fn admin_lists_users_and_changes_roles_as_the_admin_database_user() {
    let (app, ids) = deployment(&["zoe@example.com", "yan@example.com"]).await;
    let (db, admin) = (app.db(), &app.admin);
    let me = Some(("admin-user", "admin-session"));
    let call = |method: &'static str, path: String, body: Option<String>| {
        // The authorizer context names the caller's roles.
        let req = with_context(request_as(method, &path, body.as_deref(), me), &[("roles", "admin")]);
        portcullis_admin::handle(admin, req)
    };
    let (status, body, _) = parts(call("GET", "/admin/users".into(), None).await);
    assert_eq!(status, 200, "{body}");
    let users: serde_json::Value = serde_json::from_str(&body).expect("json");
    let emails: Vec<&str> =
        users.as_array().expect("array").iter().filter_map(|u| u["email"].as_str()).collect();
    assert_eq!(emails.len(), 2);
    assert!(emails.contains(&"zoe@example.com") && emails.contains(&"yan@example.com"));
    assert!(!body.contains("argon2"), "password hashes must never reach the admin view");

    let (status, body, _) = parts(
        call("POST", format!("/admin/users/{}/roles", ids[0]), Some(r#"{"role":"auditor"}"#.into())).await,
    );
    assert_eq!(status, 204, "{body}");
    let (status, _, _) = parts(call("DELETE", format!("/admin/users/{}/roles/user", ids[0]), None).await);
    assert_eq!(status, 204);
    let (status, _, _) = parts(
        call(
            "POST",
            "/admin/users/01900000-0000-7000-8000-000000000000/roles".into(),
            Some(r#"{"role":"auditor"}"#.into()),
        )
        .await,
    );
    assert_eq!(status, 404);
    let (status, body, _) = parts(call("GET", "/admin/users".into(), None).await);
    assert_eq!(status, 200);
    let users: serde_json::Value = serde_json::from_str(&body).expect("json");
    let zoe = users
        .as_array()
        .expect("array")
        .iter()
        .find(|u| u["user_id"] == ids[0].as_str())
        .expect("zoe listed");
    assert_eq!(zoe["roles"], serde_json::json!(["auditor"]));

    let mut owner = db.owner_conn().await;
    let rows: Vec<AdminAuditRow> = owner
        .query("SELECT event_type, actor, subject, detail FROM audit_log WHERE event_type LIKE 'role_%' ORDER BY id")
        .await
        .expect("audit");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "role_granted");
    assert_eq!(rows[0].1.as_deref(), Some("admin-user"));
    assert_eq!(rows[0].2.as_deref(), Some(ids[0].as_str()));
    assert_eq!(rows[0].3.as_deref(), Some("auditor"));
}

/// No escalation through role grants: an API key, even one holding every
/// permission, may not grant (or revoke) `admin`, `support` or `auditor` (a
/// stolen key would otherwise make its holder's own account an admin that
/// outlives the key); a role with no permissions it may.
#[tokio::test]
async fn an_api_key_cannot_grant_a_role_that_carries_permissions() {
    let (app, ids) = deployment(&["target@example.com"]).await;
    let admin = &app.admin;
    let target = ids[0].clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (key_id, _, hash) = portcullis_shared::apikeys::new_api_key();
    let all: Vec<String> = ["users:read", "users:manage", "sessions:revoke", "apikeys:manage", "audit:read"]
        .map(String::from)
        .to_vec();
    admin
        .api_keys
        .create(&portcullis_shared::apikeys::ApiKeyRecord {
            key_id: key_id.clone(),
            name: "provisioning".into(),
            hash,
            permissions: all,
            created_by: "someone".into(),
            created_at: now,
            valid_until: now + 86_400,
            revoked_at: None,
        })
        .await
        .expect("key");
    let as_key = |method: &'static str, path: String, body: Option<&'static str>| {
        let req = request_as(method, &path, body, Some((&format!("apikey:{key_id}"), "")));
        let req = with_context(req, &[("roles", ""), ("api_key_id", &key_id)]);
        portcullis_admin::handle(admin, req)
    };
    for role in ["admin", "support", "auditor"] {
        let body: &'static str = match role {
            "admin" => r#"{"role":"admin"}"#,
            "support" => r#"{"role":"support"}"#,
            _ => r#"{"role":"auditor"}"#,
        };
        let (status, text, _) =
            parts(as_key("POST", format!("/admin/users/{target}/roles"), Some(body)).await);
        assert_eq!(status, 403, "{role}: {text}");
    }
    let (status, _, _) = parts(as_key("DELETE", format!("/admin/users/{target}/roles/admin"), None).await);
    assert_eq!(status, 403, "revoking a role beyond the key is refused too");
    let (status, text, _) = parts(as_key("DELETE", format!("/admin/users/{target}/roles/user"), None).await);
    assert_eq!(status, 204, "a role without permissions is the key's to manage: {text}");
    let id = portcullis_shared::domain::UserId::parse(&target).expect("id");
    let roles: Vec<String> =
        admin.users.roles_of(id).await.expect("roles").iter().map(|r| r.as_str().to_owned()).collect();
    assert!(roles.is_empty(), "only the role without permissions changed (it was revoked): {roles:?}");
}

/// A path the admin function serves, with a method it does not: 405 with the
/// methods the route table lists for the path (it answered 404 before, and every
/// function sent `Allow: GET, POST, DELETE` whatever the path).
#[tokio::test]
async fn a_wrong_method_on_an_admin_route_is_a_405_with_its_methods() {
    let (app, _) = deployment(&[]).await;
    let admin = &app.admin;
    for (method, path, allow) in [
        ("GET", "/admin/api-keys", "POST"),
        ("PUT", "/admin/users/u1/roles/admin", "DELETE"),
        ("DELETE", "/admin/users", "GET"),
    ] {
        let req = crate::helpers::request(method, path, None, None);
        let (status, text, headers) = crate::helpers::parts(portcullis_admin::handle(admin, req).await);
        assert_eq!(status, 405, "{method} {path}: {text}");
        assert_eq!(headers["allow"], allow, "{method} {path}");
    }
    let req = crate::helpers::request("GET", "/admin/nowhere", None, None);
    assert_eq!(crate::helpers::parts(portcullis_admin::handle(admin, req).await).0, 404);
}

/// Defence in depth: the admin function checks the permission the route table
/// gives each route itself, so a person whose roles lack it is refused even if a
/// request reaches the function past the authorizer.
#[tokio::test]
async fn the_admin_function_checks_each_routes_permission_itself() {
    let (app, ids) = deployment(&["plain@example.com"]).await;
    let admin = &app.admin;
    let user = ids[0].as_str();
    let grant = format!("/admin/users/{user}/roles");
    let revoke = format!("/admin/users/{user}/roles/admin");
    let sessions = format!("/admin/users/{user}/sessions/revoke");
    let cases: [(&str, &str, Option<&str>, &str); 5] = [
        ("GET", "/admin/users", None, "support,user"),
        ("POST", &grant, Some(r#"{"role":"admin"}"#), "support"),
        ("DELETE", &revoke, None, "support"),
        ("POST", &sessions, None, "user"),
        (
            "POST",
            "/admin/api-keys",
            Some(r#"{"name":"k","permissions":["users:read"],"expires_in_days":1}"#),
            "support",
        ),
    ];
    for (method, path, body, roles) in cases {
        let req = with_context(crate::helpers::request(method, path, body, Some(user)), &[("roles", roles)]);
        let (status, text, _) = crate::helpers::parts(portcullis_admin::handle(admin, req).await);
        let expected = if roles.contains("support") && method == "GET" { 200 } else { 403 };
        assert_eq!(status, expected, "{method} {path} as {roles}: {text}");
    }
}
