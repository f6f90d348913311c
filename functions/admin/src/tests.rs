//! The admin function's handlers on the memory backends: the route table's
//! permission re-checked, user listing, role grant and revocation with the
//! last-holder guard, session revocation, and API keys bounded by their creator.

use crate::{handle, Deps};
use portcullis_authorizer::Decision;
use portcullis_shared::audit::EventType;
use portcullis_shared::domain::{Role, UserId};
use portcullis_shared::runtime::Boot;
use portcullis_test_support::{register, reply, request, sign_in, with_context, Reply, World};

struct App {
    world: World,
    login: portcullis_login::Deps,
    deps: Deps,
}

/// A registered, signed-in person.
struct Person {
    id: String,
    token: String,
}

async fn app() -> App {
    let world = World::new().await;
    let login = world.login().await;
    let deps = Deps::build(&Boot::new(&world.config, &world.backends, world.provider.clone(), world.clock()))
        .await
        .expect("admin deps");
    App { world, login, deps }
}

impl App {
    async fn call(&self, req: lambda_http::Request) -> Reply {
        reply(handle(&self.deps, req).await)
    }

    /// `email` registered with these roles besides `user` (granted in the store
    /// before the first login), and signed in; an employee (any further role)
    /// with a second factor, as the shipped policy's `admin` and `auditor` need.
    async fn person(&self, email: &str, roles: &[&str]) -> Person {
        let id = register(&self.login, email).await;
        let user = UserId::parse(&id).expect("a user id");
        for role in roles {
            let role = Role::parse(role).expect("a role");
            self.world.backends.users.grant_role(user, &role, 0).await.expect("grant");
        }
        let mut token = sign_in(&self.login, email).await.text("access_token");
        if !roles.is_empty() {
            token = self.world.with_second_factor(&self.login, &token).await;
        }
        Person { id, token }
    }

    /// A request the authorizer let through for `person`.
    async fn as_person(&self, person: &Person, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.call(self.world.bearer(request(method, path, body), &person.token).await).await
    }

    /// A request whose authorizer context names these roles, with a second
    /// factor in `amr`, as if the authorizer had let it through (defence in
    /// depth: the handler re-checks).
    async fn with_roles(&self, roles: &str, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.with_roles_amr(roles, "pwd,otp", method, path, body).await
    }

    /// [`App::with_roles`] with this `amr`.
    async fn with_roles_amr(
        &self,
        roles: &str,
        amr: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Reply {
        let context = serde_json::json!({
            "sub": "01900000-0000-7000-8000-00000000abcd",
            "sid": "00000000-0000-4000-8000-000000000000",
            "roles": roles,
            "auth_time": portcullis_shared::clock::Clock::now_secs(&self.world.clock).to_string(),
            "amr": amr,
        });
        let context = context.as_object().expect("an object").clone();
        self.call(with_context(request(method, path, body), &context)).await
    }

    async fn decide(&self, person: &Person, method: &str, path: &str) -> Decision {
        self.world.decide(method, path, &person.token).await
    }
}

fn role(name: &str) -> String {
    serde_json::json!({ "role": name }).to_string()
}

fn new_key(permissions: &[&str]) -> String {
    serde_json::json!({ "name": "ci", "permissions": permissions, "expires_in_days": 30 }).to_string()
}

/// Every admin route takes its permission from the route table: a caller whose
/// roles lack it is refused by the handler itself, whatever the authorizer did.
#[tokio::test]
async fn a_caller_without_the_routes_permission_is_refused_403() {
    let app = app().await;
    let target = app.person("target@example.com", &[]).await;
    let routes = [
        ("GET", "/admin/users".to_owned(), None),
        ("POST", format!("/admin/users/{}/roles", target.id), Some(role("support"))),
        ("DELETE", format!("/admin/users/{}/roles/user", target.id), None),
        ("POST", format!("/admin/users/{}/sessions/revoke", target.id), None),
        ("POST", "/admin/api-keys".to_owned(), Some(new_key(&["users:read"]))),
        ("DELETE", "/admin/api-keys/0123456789abcdef".to_owned(), None),
    ];
    for (method, path, body) in &routes {
        let answer = app.with_roles("user", method, path, body.as_deref()).await;
        assert_eq!(answer.problem(403), "urn:portcullis:problem:forbidden", "{method} {path}");
        assert_eq!(app.with_roles("", method, path, body.as_deref()).await.status, 403, "{method} {path}");
    }
    app.call(request("GET", "/admin/users", None)).await.problem(401);
    // `support` holds users:read and sessions:revoke, not users:manage.
    assert_eq!(app.with_roles("support", "GET", "/admin/users", None).await.status, 200);
    let (method, path, body) = &routes[1];
    assert_eq!(app.with_roles("support", method, path, body.as_deref()).await.status, 403);
    assert!(app.world.audit().iter().all(|e| e.event_type != EventType::RoleGranted));
}

/// The shipped policy holds `admin`, `auditor` and `support` to a second factor: with a
/// password-only login their grants count for nothing, at the authorizer and
/// in the handler's own re-check; the same person with TOTP in `amr` passes.
#[tokio::test]
async fn the_shipped_employee_roles_count_only_with_a_second_factor() {
    let app = app().await;
    for role in ["admin", "auditor", "support"] {
        let path = if role == "support" { "/admin/users" } else { "/admin/audit" };
        let id = register(&app.login, &format!("{role}@example.com")).await;
        let user = UserId::parse(&id).expect("a user id");
        app.world.backends.users.grant_role(user, &Role::parse(role).expect("role"), 0).await.expect("grant");
        let password_only = sign_in(&app.login, &format!("{role}@example.com")).await.text("access_token");
        assert_eq!(app.world.decide("GET", path, &password_only).await, Decision::Forbidden, "{role}");
        assert_eq!(app.with_roles_amr(role, "pwd", "GET", path, None).await.status, 403, "{role}");
        let both = app.world.with_second_factor(&app.login, &password_only).await;
        let answer = app.call(app.world.bearer(request("GET", path, None), &both).await).await;
        assert_eq!(answer.status, 200, "{role}: {}", answer.body);
    }
}

#[tokio::test]
async fn an_admin_lists_users_with_their_emails_decrypted_in_pages() {
    let app = app().await;
    let admin = app.person("root@example.com", &["admin"]).await;
    app.person("zoe@example.com", &[]).await;
    let listed = app.as_person(&admin, "GET", "/admin/users", None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let users = listed.json();
    let emails: Vec<&str> =
        users.as_array().expect("list").iter().filter_map(|u| u["email"].as_str()).collect();
    assert_eq!(emails.len(), 2);
    assert!(emails.contains(&"root@example.com") && emails.contains(&"zoe@example.com"), "{emails:?}");
    let first = app.as_person(&admin, "GET", "/admin/users?limit=1", None).await.json();
    let after = first[0]["user_id"].as_str().expect("id").to_owned();
    let rest = app.as_person(&admin, "GET", &format!("/admin/users?after={after}"), None).await.json();
    assert_eq!(rest.as_array().map(Vec::len), Some(1));
    assert_ne!(rest[0]["user_id"], first[0]["user_id"]);
    for query in ["limit=0", "limit=101", "limit=x", "after=not-an-id"] {
        let answer = app.as_person(&admin, "GET", &format!("/admin/users?{query}"), None).await;
        assert_eq!(answer.problem(400), "urn:portcullis:problem:validation-failed", "{query}");
    }
}

/// A role change reaches the target's live session at its next request.
#[tokio::test]
async fn an_admin_grants_and_revokes_a_role_and_the_targets_session_follows() {
    let app = app().await;
    let admin = app.person("root@example.com", &["admin"]).await;
    let mut target = app.person("yan@example.com", &[]).await;
    // With a second factor already, as the shipped `support` role's grants need.
    target.token = app.world.with_second_factor(&app.login, &target.token).await;
    let roles = format!("/admin/users/{}/roles", target.id);
    assert_eq!(app.decide(&target, "GET", "/admin/users").await, Decision::Forbidden);
    let granted = app.as_person(&admin, "POST", &roles, Some(&role("support"))).await;
    assert_eq!(granted.status, 204, "{}", granted.body);
    assert!(matches!(app.decide(&target, "GET", "/admin/users").await, Decision::Allow(_)));
    let revoked = app.as_person(&admin, "DELETE", &format!("{roles}/support"), None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    assert_eq!(app.decide(&target, "GET", "/admin/users").await, Decision::Forbidden);
    let unknown = app.as_person(&admin, "POST", &roles, Some(&role("superuser"))).await;
    assert_eq!(unknown.problem(400), "urn:portcullis:problem:validation-failed");
    let nobody = "/admin/users/01900000-0000-7000-8000-000000000000/roles";
    assert_eq!(
        app.as_person(&admin, "POST", nobody, Some(&role("support"))).await.problem(404),
        "urn:portcullis:problem:not-found"
    );
    let audit = app.world.audit();
    let actions: Vec<_> =
        audit.iter().filter(|e| e.actor.is_some()).map(|e| (e.event_type, e.detail.as_deref())).collect();
    assert_eq!(
        actions,
        [(EventType::RoleGranted, Some("support")), (EventType::RoleRevoked, Some("support"))]
    );
}

#[tokio::test]
async fn the_last_holder_of_a_permission_keeps_it() {
    let app = app().await;
    let admin = app.person("only@example.com", &["admin"]).await;
    let own = format!("/admin/users/{}/roles/admin", admin.id);
    let refused = app.as_person(&admin, "DELETE", &own, None).await;
    assert_eq!(refused.problem(409), "urn:portcullis:problem:last-holder");
    assert!(matches!(app.decide(&admin, "GET", "/admin/users").await, Decision::Allow(_)));
    // With a second admin, the first may step down.
    let second = app.person("second@example.com", &["admin"]).await;
    assert_eq!(app.as_person(&second, "DELETE", &own, None).await.status, 204);
    assert_eq!(app.decide(&admin, "GET", "/admin/users").await, Decision::Forbidden);
}

#[tokio::test]
async fn an_admin_revokes_every_session_of_a_user() {
    let app = app().await;
    let admin = app.person("root@example.com", &["admin"]).await;
    let target = app.person("victim@example.com", &[]).await;
    assert!(matches!(app.decide(&target, "GET", "/me").await, Decision::Allow(_)));
    let path = format!("/admin/users/{}/sessions/revoke", target.id);
    assert_eq!(app.as_person(&admin, "POST", &path, None).await.status, 204);
    assert_eq!(app.decide(&target, "GET", "/me").await, Decision::Unauthorized);
    assert!(
        matches!(app.decide(&admin, "GET", "/me").await, Decision::Allow(_)),
        "the admin's own session ended"
    );
}

/// A key carries no permission that does not exist, cannot mint keys, and dies
/// with its creator's permission: when the creator loses `admin`, its key does too.
#[tokio::test]
async fn api_keys_are_bounded_by_their_creator() {
    let app = app().await;
    let creator = app.person("creator@example.com", &["admin"]).await;
    let other = app.person("other@example.com", &["admin"]).await;
    let created = app.as_person(&creator, "POST", "/admin/api-keys", Some(&new_key(&["users:read"]))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.text("api_key");
    assert!(matches!(app.world.decide_key("GET", "/admin/users", &key).await, Decision::Allow(_)));
    assert_eq!(app.world.decide_key("POST", "/admin/api-keys", &key).await, Decision::Forbidden);
    let unknown = app.as_person(&creator, "POST", "/admin/api-keys", Some(&new_key(&["root:all"]))).await;
    assert_eq!(unknown.problem(400), "urn:portcullis:problem:validation-failed");
    let by_key =
        serde_json::json!({"sub": "apikey:x", "sid": "", "roles": "", "api_key_id": created.text("key_id")});
    let by_key = with_context(
        request("POST", "/admin/api-keys", Some(&new_key(&["users:read"]))),
        by_key.as_object().expect("map"),
    );
    assert_eq!(app.call(by_key).await.status, 403, "a key minted a key");
    let demote = format!("/admin/users/{}/roles/admin", creator.id);
    assert_eq!(app.as_person(&other, "DELETE", &demote, None).await.status, 204);
    assert_eq!(app.world.decide_key("GET", "/admin/users", &key).await, Decision::Unauthorized);
    let revocations =
        app.world.audit().into_iter().filter(|e| e.event_type == EventType::ApiKeyRevoked).count();
    assert_eq!(revocations, 1);
}

#[tokio::test]
async fn a_revoked_api_key_stops_at_once_and_an_unknown_one_is_not_found() {
    let app = app().await;
    let admin = app.person("root@example.com", &["admin"]).await;
    let created = app.as_person(&admin, "POST", "/admin/api-keys", Some(&new_key(&["users:read"]))).await;
    let (key_id, key) = (created.text("key_id"), created.text("api_key"));
    let path = format!("/admin/api-keys/{key_id}");
    assert_eq!(app.as_person(&admin, "DELETE", &path, None).await.status, 204);
    assert_eq!(app.world.decide_key("GET", "/admin/users", &key).await, Decision::Unauthorized);
    // Revoking is idempotent; a key that never existed is not found.
    assert_eq!(app.as_person(&admin, "DELETE", &path, None).await.status, 204);
    assert_eq!(app.world.decide_key("GET", "/admin/users", &key).await, Decision::Unauthorized);
    let never = app.as_person(&admin, "DELETE", "/admin/api-keys/0123456789abcdef", None).await;
    assert_eq!(never.problem(404), "urn:portcullis:problem:not-found");
    for bad in ["not-hex-at-all!!", "0123", "0123456789ABCDEFG"] {
        assert_eq!(
            app.as_person(&admin, "DELETE", &format!("/admin/api-keys/{bad}"), None).await.status,
            404
        );
    }
    for body in [
        "{",
        r#"{"name":"x","permissions":["users:read"],"expires_in_days":0}"#,
        r#"{"name":"","permissions":[],"expires_in_days":30}"#,
    ] {
        let answer = app.as_person(&admin, "POST", "/admin/api-keys", Some(body)).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
    }
}

/// `GET /me/events`: a person reads the events of its own account, newest
/// first, a page at a time; that an employee acted, not who; nobody else's;
/// never with an API key.
#[tokio::test]
async fn a_person_reads_the_events_of_its_own_account_only() {
    let app = app().await;
    let admin = app.person("root@example.com", &["admin"]).await;
    let ada = app.person("ada@example.com", &[]).await;
    let _bob = app.person("bob@example.com", &[]).await;
    let grant = format!("/admin/users/{}/roles", ada.id);
    assert_eq!(app.as_person(&admin, "POST", &grant, Some(&role("support"))).await.status, 204);

    let answer = app.as_person(&ada, "GET", "/me/events", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let events = answer.json()["events"].as_array().expect("events").clone();
    let own = app.world.audit().into_iter().filter(|e| e.subject.as_deref() == Some(ada.id.as_str())).count();
    assert!(own >= 3, "registration, login and the grant at least: {own}");
    assert_eq!(events.len(), own, "exactly the events about Ada: {events:?}");
    let granted = events.iter().find(|e| e["type"] == "role_granted").expect("the grant");
    assert_eq!(granted["by_administrator"], true, "{granted}");
    assert!(
        granted["source_ip"].is_null() && granted["user_agent"].is_null(),
        "where the admin was: {granted}"
    );
    assert!(
        events.iter().any(|e| e["by_administrator"] == false && e["source_ip"].is_string()),
        "{events:?}"
    );
    for e in &events {
        assert!(e.get("actor").is_none() && e.get("detail").is_none() && e.get("subject").is_none(), "{e}");
    }
    let times: Vec<i64> = events.iter().map(|e| e["occurred_at"].as_i64().expect("time")).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");

    let first = app.as_person(&ada, "GET", "/me/events?limit=1", None).await.json();
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let second =
        app.as_person(&ada, "GET", &format!("/me/events?limit=1&cursor={cursor}"), None).await.json();
    assert_eq!(
        (first["events"][0].clone(), second["events"][0].clone()),
        (events[0].clone(), events[1].clone())
    );

    let other = app.as_person(&ada, "GET", "/me/events?subject=root", None).await;
    assert_eq!(other.problem(400), "urn:portcullis:problem:validation-failed");
    let key = serde_json::json!({"sub": "apikey:0123456789abcdef", "sid": "", "roles": "", "api_key_id": "0123456789abcdef"});
    let key =
        app.call(with_context(request("GET", "/me/events", None), key.as_object().expect("object"))).await;
    assert_eq!(key.status, 403, "{}", key.body);
}
