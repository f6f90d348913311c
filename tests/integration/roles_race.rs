//! An admin's role change that lands while a login or a refresh is in flight
//! (after it read the roles, before it wrote them to the session) must win.
//! The delay is injected in the user store the function reads roles from; the
//! change is the admin function's own mechanism (MySQL, then every live session).

use crate::step_up::{claims, world};
use async_trait::async_trait;
use portcullis_shared::domain::{Role, UserId};
use portcullis_shared::store::{
    BlindIndex, NewUser, RoleRemoval, StoreError, UserRecord, UserStore, UserSummary,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// A user store whose first `roles_of` reads the roles, then waits for `go`
/// before answering: the answer is what the roles were before anything the
/// test does meanwhile.
struct HeldRoles {
    inner: Arc<dyn UserStore>,
    armed: AtomicBool,
    read: Notify,
    go: Notify,
}

#[async_trait]
impl UserStore for HeldRoles {
    async fn insert_user(&self, user: &NewUser) -> Result<(), StoreError> {
        self.inner.insert_user(user).await
    }
    async fn find_by_email_index(&self, index: &BlindIndex) -> Result<Option<UserRecord>, StoreError> {
        self.inner.find_by_email_index(index).await
    }
    async fn find_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        self.inner.find_by_id(id).await
    }
    async fn set_password_hash(&self, id: UserId, phc: &str, now: i64) -> Result<(), StoreError> {
        self.inner.set_password_hash(id, phc, now).await
    }
    async fn roles_of(&self, id: UserId) -> Result<Vec<Role>, StoreError> {
        let roles = self.inner.roles_of(id).await;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.read.notify_one();
            self.go.notified().await;
        }
        roles
    }
    async fn grant_role(&self, id: UserId, role: &Role, now: i64) -> Result<(), StoreError> {
        self.inner.grant_role(id, role, now).await
    }
    async fn revoke_role(&self, id: UserId, role: &Role) -> Result<(), StoreError> {
        self.inner.revoke_role(id, role).await
    }
    async fn revoke_role_checked(&self, removal: RoleRemoval<'_>) -> Result<bool, StoreError> {
        self.inner.revoke_role_checked(removal).await
    }
    async fn exists(&self, id: UserId) -> Result<bool, StoreError> {
        self.inner.exists(id).await
    }
    async fn list_users(&self, after: Option<UserId>, limit: u32) -> Result<Vec<UserSummary>, StoreError> {
        self.inner.list_users(after, limit).await
    }
}

fn held(inner: Arc<dyn UserStore>) -> Arc<HeldRoles> {
    Arc::new(HeldRoles { inner, armed: AtomicBool::new(true), read: Notify::new(), go: Notify::new() })
}

/// Holds the user store `function`'s identity provider reads, and gives it back.
fn held_in(w: &mut crate::step_up::World, function: &str) -> Arc<HeldRoles> {
    let (cfg, backends) = w.opened[function].clone();
    let store = held(backends.users.clone());
    let backends = portcullis_shared::runtime::Backends { users: store.clone(), ..backends };
    let hasher = portcullis_shared::crypto::PasswordHasher::new().expect("hasher");
    let native: Arc<dyn portcullis_shared::identity::IdentityProvider> =
        Arc::new(portcullis_shared::identity::NativeProvider::new(
            backends.native_stores(),
            cfg.session_policy(),
            hasher,
        ));
    match function {
        "login" => w.login.identity = native,
        "mfa" => w.mfa.identity = native,
        _ => w.refresh.identity = native,
    }
    store
}

/// What the admin function does on `DELETE /admin/users/{id}/roles/admin`.
async fn revoke_admin(w: &crate::step_up::World, id: UserId) {
    w.admin.users.revoke_role(id, &Role::admin()).await.expect("revoke in MySQL");
    portcullis_shared::sessions::update_roles(w.admin.sessions.as_ref(), w.admin.users.as_ref(), id)
        .await
        .expect("update sessions");
}

async fn admin_user(w: &crate::step_up::World, email: &str) -> UserId {
    w.register(email).await;
    let tokens = w.login(email).await;
    let id =
        UserId::parse(claims(tokens["access_token"].as_str().expect("at"))["sub"].as_str().expect("sub"))
            .expect("id");
    w.admin.users.grant_role(id, &Role::admin(), 0).await.expect("grant");
    id
}

async fn session_roles(w: &crate::step_up::World, id: UserId, sid: &str) -> Vec<String> {
    w.admin.sessions.get(&id.to_string(), sid).await.expect("read").expect("session").roles
}

#[tokio::test]
async fn a_role_revoked_during_a_refresh_stays_revoked() {
    let mut w = world(&[]).await;
    let id = admin_user(&w, "race-refresh@example.com").await;
    let tokens = w.login("race-refresh@example.com").await;
    let sid = claims(tokens["access_token"].as_str().expect("at"))["sid"].as_str().expect("sid").to_owned();
    assert!(session_roles(&w, id, &sid).await.contains(&"admin".to_owned()));
    let store = held_in(&mut w, "refresh");
    let w = Arc::new(w);
    let refresh = {
        let (w, rt) = (w.clone(), tokens["refresh_token"].as_str().expect("rt").to_owned());
        tokio::spawn(async move { w.refresh_with(&rt).await })
    };
    store.read.notified().await; // the refresh has read [user, admin]
    revoke_admin(&w, id).await;
    store.go.notify_one();
    let (status, body) = refresh.await.expect("refresh task");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        session_roles(&w, id, &sid).await,
        vec!["user".to_owned()],
        "the refresh undid the revocation"
    );
    assert_eq!(claims(body["access_token"].as_str().expect("at"))["roles"], serde_json::json!(["user"]));
}

#[tokio::test]
async fn a_role_revoked_during_a_login_stays_revoked() {
    let mut w = world(&[]).await;
    let id = admin_user(&w, "race-login@example.com").await;
    let store = held_in(&mut w, "login");
    let w = Arc::new(w);
    let login = {
        let w = w.clone();
        tokio::spawn(async move { w.login("race-login@example.com").await })
    };
    store.read.notified().await; // the login has read [user, admin]; its session does not exist yet
    revoke_admin(&w, id).await;
    store.go.notify_one();
    let tokens = login.await.expect("login task");
    let sid = claims(tokens["access_token"].as_str().expect("at"))["sid"].as_str().expect("sid").to_owned();
    assert_eq!(session_roles(&w, id, &sid).await, vec!["user".to_owned()], "the login undid the revocation");
}

#[tokio::test]
async fn a_role_revoked_during_the_second_factor_step_stays_revoked() {
    use crate::step_up::oathtool;
    use portcullis_shared::clock::Clock;
    let mut w = world(&[]).await;
    let id = admin_user(&w, "race-mfa@example.com").await;
    let tokens = w.login("race-mfa@example.com").await;
    let token = tokens["access_token"].as_str().expect("at").to_owned();
    let (_, enrolment) = w.call("POST", "/auth/mfa/totp/enroll", serde_json::json!({}), &token).await;
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    let code = oathtool(&secret, w.clock.now_secs());
    let (status, _) =
        w.call("POST", "/auth/mfa/totp/confirm", serde_json::json!({"code": code}), &token).await;
    assert_eq!(status, 200);
    let challenge = w.login("race-mfa@example.com").await;
    w.clock.advance(30);
    let store = held_in(&mut w, "mfa");
    let w = Arc::new(w);
    let verify = {
        let w = w.clone();
        let body = serde_json::json!({"mfa_token": challenge["mfa_token"], "code": oathtool(&secret, w.clock.now_secs())})
            .to_string();
        tokio::spawn(async move {
            let req = crate::helpers::request("POST", "/auth/mfa/verify", Some(&body), None);
            crate::helpers::parts(portcullis_mfa::handle(&w.mfa, req).await)
        })
    };
    store.read.notified().await; // the second step has read [user, admin]
    revoke_admin(&w, id).await;
    store.go.notify_one();
    let (status, text, _) = verify.await.expect("verify task");
    assert_eq!(status, 200, "{text}");
    let access = crate::step_up::json(&text)["access_token"].as_str().expect("at").to_owned();
    let sid = claims(&access)["sid"].as_str().expect("sid").to_owned();
    assert_eq!(
        session_roles(&w, id, &sid).await,
        vec!["user".to_owned()],
        "the MFA step undid the revocation"
    );
}

/// Two admin changes of one user at once: A grants `support` and reads the
/// roles, B revokes it and writes the sessions first, then A writes what it read.
/// A reads again after its write and corrects it: the revocation stands.
#[tokio::test]
async fn of_two_role_changes_at_once_the_revocation_is_not_undone() {
    let w = world(&[]).await;
    let id = admin_user(&w, "race-admins@example.com").await;
    let tokens = w.login("race-admins@example.com").await;
    let sid = claims(tokens["access_token"].as_str().expect("at"))["sid"].as_str().expect("sid").to_owned();
    let support = Role::parse("support").expect("role");
    w.admin.users.grant_role(id, &support, 0).await.expect("grant in MySQL");
    let held_store = held(w.admin.users.clone());
    let w = Arc::new(w);
    let grant = {
        let (w, store) = (w.clone(), held_store.clone());
        tokio::spawn(async move {
            portcullis_shared::sessions::update_roles(w.admin.sessions.as_ref(), store.as_ref(), id).await
        })
    };
    held_store.read.notified().await; // A has read [admin, support, user]
    w.admin.users.revoke_role(id, &support).await.expect("revoke in MySQL");
    portcullis_shared::sessions::update_roles(w.admin.sessions.as_ref(), w.admin.users.as_ref(), id)
        .await
        .expect("B updates the sessions");
    held_store.go.notify_one();
    grant.await.expect("task").expect("A updates the sessions");
    let roles = session_roles(&w, id, &sid).await;
    assert!(!roles.contains(&"support".to_owned()), "the earlier read undid the revocation: {roles:?}");
}
