//! API keys are bounded by their creator, and the last holder of a permission
//! keeps it: through the login, admin and authorizer handlers on MariaDB (each
//! as its own database user) and moto's DynamoDB. Admin requests carry the
//! context the real authorizer derives from the caller's real access token.

use crate::helpers::GOOD_PASSWORD;
use crate::helpers::{parts, request, request_with_context};
use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use portcullis_authorizer::{Ask, Decision};
use portcullis_shared::apikeys::{ApiKeyRecord, ApiKeyStore};
use portcullis_shared::domain::{Role, UserId};
use portcullis_shared::store::StoreError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The login, admin and authorizer functions on MariaDB and moto.
type World = crate::app::TestApp;

async fn world() -> World {
    crate::app::spawn_app(crate::app::Backend::Mysql).await
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

impl World {
    /// Registers `email` with these roles besides `user` (granted as the admin
    /// database user, before the first login) and logs in (with TOTP when it has
    /// any): its access token.
    async fn person(&self, email: &str, roles: &[&str]) -> (UserId, String) {
        let body = serde_json::json!({"email": email, "password": GOOD_PASSWORD}).to_string();
        let (status, text, _) = parts(
            portcullis_login::handle(&self.login, request("POST", "/auth/register", Some(&body), None)).await,
        );
        assert_eq!(status, 201, "{text}");
        let id = UserId::parse(json(&text)["user_id"].as_str().expect("id")).expect("user id");
        for role in roles {
            self.admin.users.grant_role(id, &Role::parse(role).expect("role"), 0).await.expect("grant");
        }
        let (status, text, _) = parts(
            portcullis_login::handle(&self.login, request("POST", "/auth/login", Some(&body), None)).await,
        );
        assert_eq!(status, 200, "{text}");
        let token = json(&text)["access_token"].as_str().expect("token").to_owned();
        // An employee signs in with a second factor, as the shipped `admin` needs.
        let token = if roles.is_empty() { token } else { self.with_second_factor(&token).await };
        (id, token)
    }

    /// The authorizer's decision for a request with this bearer token or API key.
    async fn decide(&self, method: &str, path: &str, token: Option<&str>, key: Option<&str>) -> Decision {
        let header = token.map(|t| format!("Bearer {t}"));
        let ask = Ask { method, path, authorization: header.as_deref(), api_key: key };
        portcullis_authorizer::authorize(&self.authorizer, ask).await
    }

    /// The request API Gateway forwards to admin once the authorizer allowed `token`.
    async fn admin_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: &str,
    ) -> lambda_http::Request {
        let Decision::Allow(identity) = self.decide(method, path, Some(token), None).await else {
            panic!("the authorizer refused the token for {method} {path}");
        };
        let context = portcullis_authorizer::context_of(&identity);
        let fields: Vec<(&str, String)> =
            context.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default().to_owned())).collect();
        request_with_context(method, path, body, Some(&fields))
    }

    async fn admin_call(&self, method: &str, path: &str, body: Option<&str>, token: &str) -> (u16, String) {
        let req = self.admin_request(method, path, body, token).await;
        let (status, text, _) = parts(portcullis_admin::handle(&self.admin, req).await);
        (status, text)
    }

    /// Creates a key with these permissions as the holder of `token`: `(key id, key)`.
    async fn create_key(&self, token: &str, permissions: &[&str]) -> (String, String) {
        let body =
            serde_json::json!({"name": "automation", "permissions": permissions, "expires_in_days": 30});
        let (status, text) = self.admin_call("POST", "/admin/api-keys", Some(&body.to_string()), token).await;
        assert_eq!(status, 201, "{text}");
        let view = json(&text);
        (view["key_id"].as_str().expect("id").to_owned(), view["api_key"].as_str().expect("key").to_owned())
    }

    async fn key_allowed(&self, method: &str, path: &str, key: &str) -> bool {
        matches!(self.decide(method, path, None, Some(key)).await, Decision::Allow(_))
    }

    async fn roles_of(&self, id: UserId) -> Vec<String> {
        self.admin.users.roles_of(id).await.expect("roles").iter().map(|r| r.as_str().to_owned()).collect()
    }

    /// `(actor, subject, detail)` of every `api_key_revoked` event.
    async fn key_revocations(&self) -> Vec<(Option<String>, Option<String>, Option<String>)> {
        let mut owner = self.db().owner_conn().await;
        owner
            .query("SELECT actor, subject, detail FROM audit_log WHERE event_type = 'api_key_revoked' ORDER BY id")
            .await
            .expect("audit")
    }
}

/// A key carries only what its creator holds, and stops working the moment an
/// admin removes the role it came from: exactly the keys that exceed the
/// creator's remaining permissions are revoked (audited), in the same request.
#[tokio::test]
async fn a_key_stops_working_once_its_creator_loses_what_it_carries() {
    let w = world().await;
    let (ada, ada_token) = w.person("ada@example.com", &["admin", "support"]).await;
    let (_, bob_token) = w.person("bob@example.com", &["admin"]).await;
    let (_, read_key) = w.create_key(&ada_token, &["users:read"]).await;
    let (manage_id, manage_key) = w.create_key(&ada_token, &["users:manage"]).await;
    let grant_path = format!("/admin/users/{ada}/roles");
    assert!(w.key_allowed("GET", "/admin/users", &read_key).await);
    assert!(w.key_allowed("POST", &grant_path, &manage_key).await);

    let (status, text) =
        w.admin_call("DELETE", &format!("/admin/users/{ada}/roles/admin"), None, &bob_token).await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(
        w.decide("POST", &grant_path, None, Some(&manage_key)).await,
        Decision::Unauthorized,
        "a key whose creator no longer holds users:manage still works"
    );
    assert!(w.key_allowed("GET", "/admin/users", &read_key).await, "support still grants users:read");
    let revoked = w.key_revocations().await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    let (actor, subject, detail) = &revoked[0];
    assert_eq!(subject.as_deref(), Some(ada.to_string().as_str()));
    assert!(actor.as_deref().is_some_and(|a| a != ada.to_string()), "the admin who acted: {actor:?}");
    assert!(
        detail.as_deref().is_some_and(|d| d.contains(&manage_id) && d.contains("users:manage")),
        "{detail:?}"
    );

    // Getting the role back does not bring the key back.
    let body = r#"{"role":"admin"}"#;
    assert_eq!(w.admin_call("POST", &grant_path, Some(body), &bob_token).await.0, 204);
    assert_eq!(w.decide("POST", &grant_path, None, Some(&manage_key)).await, Decision::Unauthorized);
    let (status, _) =
        w.admin_call("DELETE", &format!("/admin/users/{ada}/roles/admin"), None, &bob_token).await;
    assert_eq!(status, 204);
    let (status, _) =
        w.admin_call("DELETE", &format!("/admin/users/{ada}/roles/support"), None, &bob_token).await;
    assert_eq!(status, 204);
    assert!(!w.key_allowed("GET", "/admin/users", &read_key).await, "nothing grants ada users:read now");
}

/// An API key store whose first `create` waits, before writing, until the test
/// says go: the creation's checks have passed, the key is not written yet.
struct HeldCreate {
    inner: Arc<dyn ApiKeyStore>,
    armed: AtomicBool,
    reached: Notify,
    go: Notify,
    created: Mutex<Option<String>>,
}

#[async_trait]
impl ApiKeyStore for HeldCreate {
    async fn create(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            self.go.notified().await;
        }
        *self.created.lock().expect("lock") = Some(key.key_id.clone());
        self.inner.create(key).await
    }
    async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.inner.get(key_id).await
    }
    async fn revoke(&self, key_id: &str, now: i64) -> Result<bool, StoreError> {
        self.inner.revoke(key_id, now).await
    }
    async fn list_by_creator(&self, creator: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.inner.list_by_creator(creator).await
    }
}

/// A key being created while an admin removes its creator's role: the removal
/// sees no key yet, the creation's checks passed on the old roles. The
/// creation checks the creator's roles again once the key is written, so the
/// key is revoked and the creation refused.
#[tokio::test]
async fn a_key_created_while_its_creator_loses_the_role_does_not_survive() {
    let mut w = world().await;
    let (ada, ada_token) = w.person("ada@example.com", &["admin"]).await;
    let (_, bob_token) = w.person("bob@example.com", &["admin"]).await;
    let held = Arc::new(HeldCreate {
        inner: w.admin.api_keys.clone(),
        armed: AtomicBool::new(true),
        reached: Notify::new(),
        go: Notify::new(),
        created: Mutex::new(None),
    });
    w.admin.api_keys = held.clone();
    let body =
        serde_json::json!({"name": "ci", "permissions": ["users:manage"], "expires_in_days": 1}).to_string();
    let create = w.admin_request("POST", "/admin/api-keys", Some(&body), &ada_token).await;
    let revoke =
        w.admin_request("DELETE", &format!("/admin/users/{ada}/roles/admin"), None, &bob_token).await;
    let w = Arc::new(w);
    let creating = tokio::spawn({
        let w = w.clone();
        async move { parts(portcullis_admin::handle(&w.admin, create).await) }
    });
    held.reached.notified().await;
    let (status, text, _) = parts(portcullis_admin::handle(&w.admin, revoke).await);
    assert_eq!(status, 204, "{text}");
    held.go.notify_one();
    let (status, text, _) = creating.await.expect("creation ran");
    assert_eq!(status, 403, "a key outlived its creator's role: {text}");
    assert!(!text.contains("pck_"), "the refused key is not shown");
    let key_id = held.created.lock().expect("lock").clone().expect("the key was written");
    let record = w.admin.api_keys.get(&key_id).await.expect("read").expect("stored");
    assert!(record.revoked_at.is_some(), "the written key is revoked");
    assert!(w
        .key_revocations()
        .await
        .iter()
        .any(|(_, _, d)| d.as_deref().is_some_and(|d| d.contains(&key_id))));
}

/// The only admin cannot remove its own (or the last) `admin` role: nobody
/// could grant it again (granting needs every permission of the role), so the
/// deployment would be locked out. 409 problem+json, nothing changes.
#[tokio::test]
async fn the_last_admin_cannot_lose_the_role() {
    let w = world().await;
    let (ada, ada_token) = w.person("ada@example.com", &["admin"]).await;
    let (sue, _) = w.person("sue@example.com", &["support"]).await;
    let own = format!("/admin/users/{ada}/roles/admin");
    let req = w.admin_request("DELETE", &own, None, &ada_token).await;
    let (status, text, headers) = parts(portcullis_admin::handle(&w.admin, req).await);
    assert_eq!(status, 409, "{text}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem = json(&text);
    assert_eq!(problem["type"], "urn:portcullis:problem:last-holder", "{text}");
    assert_eq!(w.roles_of(ada).await, ["admin", "user"]);
    // Roles whose permissions someone else still holds may go.
    let (status, text) =
        w.admin_call("DELETE", &format!("/admin/users/{sue}/roles/support"), None, &ada_token).await;
    assert_eq!(status, 204, "{text}");
    let (status, _) =
        w.admin_call("DELETE", &format!("/admin/users/{ada}/roles/user"), None, &ada_token).await;
    assert_eq!(status, 204, "a role without permissions is never the last of anything");
    // With a second admin, the first may step down.
    let grant = format!("/admin/users/{sue}/roles");
    assert_eq!(w.admin_call("POST", &grant, Some(r#"{"role":"admin"}"#), &ada_token).await.0, 204);
    assert_eq!(w.admin_call("DELETE", &own, None, &ada_token).await.0, 204);
    assert_eq!(w.roles_of(ada).await, Vec::<String>::new());
}

/// Two admins removing each other at the same moment: the removals are
/// serialised in MySQL, so exactly one succeeds and one admin remains.
#[tokio::test]
async fn two_admins_removing_each_other_at_once_leave_one() {
    let w = world().await;
    let (ada, ada_token) = w.person("ada@example.com", &["admin"]).await;
    let (bob, bob_token) = w.person("bob@example.com", &["admin"]).await;
    for round in 0..5 {
        let a = w.admin_request("DELETE", &format!("/admin/users/{bob}/roles/admin"), None, &ada_token).await;
        let b = w.admin_request("DELETE", &format!("/admin/users/{ada}/roles/admin"), None, &bob_token).await;
        let (ra, rb) =
            tokio::join!(portcullis_admin::handle(&w.admin, a), portcullis_admin::handle(&w.admin, b));
        let mut statuses = [parts(ra).0, parts(rb).0];
        statuses.sort_unstable();
        assert_eq!(statuses, [204, 409], "round {round}");
        let ada_admin = w.roles_of(ada).await.iter().any(|r| r == "admin");
        let bob_admin = w.roles_of(bob).await.iter().any(|r| r == "admin");
        assert!(ada_admin ^ bob_admin, "round {round}: ada {ada_admin}, bob {bob_admin}");
        // The survivor makes the other an admin again for the next round.
        let (survivor, other) = if ada_admin { (&ada_token, bob) } else { (&bob_token, ada) };
        let grant = format!("/admin/users/{other}/roles");
        assert_eq!(w.admin_call("POST", &grant, Some(r#"{"role":"admin"}"#), survivor).await.0, 204);
    }
}
