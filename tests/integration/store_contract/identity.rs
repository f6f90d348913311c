//! Users, roles, second factors, the audit trail and key material.

use portcullis_shared::audit::{AuditEvent, AuditStore, EventType};
use portcullis_shared::domain::{Role, UserId};
use portcullis_shared::store::{
    KeyMaterialStore, KeyRecord, MfaStore, NewUser, RoleRemoval, StoreError, UserStore,
};
use std::sync::Arc;

/// Every byte value, and text outside the Basic Multilingual Plane.
fn binary() -> Vec<u8> {
    (0..=255u8).chain(0..=255u8).collect()
}
const FOUR_BYTE: &str = "🦀𝄞😀 crab";

fn new_user(roles: &[Role]) -> NewUser {
    let id = UserId::generate();
    let mut email_index = [0u8; 32];
    email_index[..16].copy_from_slice(&id.as_bytes());
    NewUser {
        id,
        email_index,
        email_ciphertext: binary(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${FOUR_BYTE}"),
        roles: roles.to_vec(),
        created_at: 1_700_000_000,
    }
}

pub async fn run(
    users: &[Arc<dyn UserStore>],
    mfa: &[Arc<dyn MfaStore>],
    audit: &[Arc<dyn AuditStore>],
    keys: &[Arc<dyn KeyMaterialStore>],
) {
    users_round_trip_and_duplicates_are_refused(users).await;
    concurrent_registrations_of_one_email_have_one_winner(users).await;
    roles_are_granted_and_revoked_idempotently_and_listed(users).await;
    a_checked_revocation_sees_the_other_in_flight(users).await;
    second_factors_activate_once_and_steps_are_used_once(&users[0], mfa).await;
    audit_events_with_any_text_are_appended(&audit[0]).await;
    the_first_key_writer_wins_and_revocation_happens_once(keys).await;
}

async fn users_round_trip_and_duplicates_are_refused(users: &[Arc<dyn UserStore>]) {
    let store = &users[0];
    let user = new_user(&[Role::user()]);
    store.insert_user(&user).await.expect("insert");
    let found = store.find_by_email_index(&user.email_index).await.expect("find").expect("present");
    assert_eq!(
        (found.id, &found.email_ciphertext, &found.password_hash),
        (user.id, &user.email_ciphertext, &user.password_hash)
    );
    assert_eq!((found.mfa_enabled, found.created_at), (false, user.created_at));
    let by_id = users[1].find_by_id(user.id).await.expect("find").expect("present");
    assert_eq!(by_id.email_ciphertext, binary(), "binary survives");
    assert!(store.exists(user.id).await.expect("exists"));
    assert!(!store.exists(UserId::generate()).await.expect("exists"));
    assert!(store.find_by_id(UserId::generate()).await.expect("find").is_none());
    let same_email = NewUser { id: UserId::generate(), ..user.clone() };
    assert!(matches!(store.insert_user(&same_email).await, Err(StoreError::Duplicate)));
    let same_id = NewUser { email_index: [7u8; 32], ..user.clone() };
    assert!(matches!(store.insert_user(&same_id).await, Err(StoreError::Duplicate)));
    assert!(store.find_by_email_index(&[7u8; 32]).await.expect("find").is_none(), "nothing half-written");
    store.set_password_hash(user.id, "$argon2id$new", 1_700_000_100).await.expect("set");
    assert_eq!(
        store.find_by_id(user.id).await.expect("find").expect("present").password_hash,
        "$argon2id$new"
    );
}

async fn concurrent_registrations_of_one_email_have_one_winner(users: &[Arc<dyn UserStore>]) {
    let template = new_user(&[Role::user()]);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = users[i % users.len()].clone();
            let user = NewUser { id: UserId::generate(), ..template.clone() };
            tokio::spawn(async move { store.insert_user(&user).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => won += 1,
            Err(StoreError::Duplicate) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 1);
}

async fn roles_are_granted_and_revoked_idempotently_and_listed(users: &[Arc<dyn UserStore>]) {
    let store = &users[0];
    let user = new_user(&[Role::user()]);
    store.insert_user(&user).await.expect("insert");
    for _ in 0..2 {
        store.grant_role(user.id, &Role::admin(), 1).await.expect("grant is idempotent");
    }
    assert_eq!(
        store.roles_of(user.id).await.expect("roles"),
        [Role::admin(), Role::user()],
        "sorted by name"
    );
    for _ in 0..2 {
        store.revoke_role(user.id, &Role::admin()).await.expect("revoke is idempotent");
    }
    assert_eq!(store.roles_of(user.id).await.expect("roles"), [Role::user()]);
    assert!(store.roles_of(UserId::generate()).await.expect("roles").is_empty());
    let second = new_user(&[]);
    store.insert_user(&second).await.expect("insert");
    let mut ids = [user.id, second.id];
    ids.sort_by_key(|id| id.as_bytes());
    let page = store.list_users(Some(UserId::from_bytes([0; 16])), 100_000).await.expect("list");
    let mine: Vec<_> = page.iter().filter(|u| ids.contains(&u.id)).collect();
    assert_eq!(mine.iter().map(|u| u.id).collect::<Vec<_>>(), ids, "ordered by id");
    let listed = mine.iter().find(|u| u.id == user.id).expect("listed");
    assert_eq!((listed.roles.clone(), listed.email_ciphertext.clone()), (vec![Role::user()], binary()));
    let after = store.list_users(Some(ids[0]), 1).await.expect("page");
    assert!(after.len() == 1 && after[0].id.as_bytes() > ids[0].as_bytes(), "a page starts after its cursor");
}

/// Two administrators each remove the other's role while requiring another
/// administrator to remain: one removal may pass, never both.
async fn a_checked_revocation_sees_the_other_in_flight(users: &[Arc<dyn UserStore>]) {
    let auditor = Role::parse("auditor").expect("role");
    let a = new_user(std::slice::from_ref(&auditor));
    let b = new_user(std::slice::from_ref(&auditor));
    users[0].insert_user(&a).await.expect("insert");
    users[0].insert_user(&b).await.expect("insert");
    let pair = [a.id, b.id];
    let tasks: Vec<_> = [(0, b.id), (1, a.id)]
        .into_iter()
        .map(|(i, target)| {
            let store = users[i % users.len()].clone();
            let role = auditor.clone();
            tokio::spawn(async move {
                // The removal leaves one holder: allowed only while both still hold it.
                let others_remain =
                    move |held: &[(UserId, Role)]| held.iter().filter(|(u, _)| pair.contains(u)).count() >= 2;
                let watched = std::slice::from_ref(&role);
                store
                    .revoke_role_checked(RoleRemoval {
                        id: target,
                        role: &role,
                        watched,
                        may_revoke: &others_remain,
                    })
                    .await
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += usize::from(task.await.expect("task").expect("store"));
    }
    assert_eq!(passed, 1, "exactly one removal passes");
    let left = users[0].roles_of(a.id).await.expect("roles").len()
        + users[0].roles_of(b.id).await.expect("roles").len();
    assert_eq!(left, 1);
}

async fn second_factors_activate_once_and_steps_are_used_once(
    users: &Arc<dyn UserStore>,
    mfa: &[Arc<dyn MfaStore>],
) {
    let store = &mfa[0];
    let user = new_user(&[Role::user()]);
    users.insert_user(&user).await.expect("insert");
    assert!(store.mfa_state(UserId::generate()).await.expect("state").is_none());
    assert!(!store.activate(user.id, 10, &[], 1).await.expect("activate"), "nothing pending");
    assert!(!store.accept_step(user.id, 10).await.expect("step"), "no secret yet");
    store.set_pending(user.id, &binary()[..200], 1).await.expect("pending");
    let codes = [[1u8; 32], [2u8; 32]];
    assert!(store.activate(user.id, 10, &codes, 2).await.expect("activate"));
    assert!(!store.activate(user.id, 11, &codes, 3).await.expect("again"), "the pending secret was used");
    let state = store.mfa_state(user.id).await.expect("state").expect("present");
    assert!(state.mfa_enabled && state.pending.is_none());
    assert_eq!((state.secret.as_deref(), state.last_step), (Some(&binary()[..200]), Some(10)));
    assert!(users.find_by_id(user.id).await.expect("find").expect("present").mfa_enabled);
    assert!(!store.accept_step(user.id, 10).await.expect("step"), "the activation's step is used");
    assert!(!store.accept_step(user.id, 9).await.expect("step"), "an earlier step is refused");
    let spent = race(mfa, move |s| async move { s.accept_step(user.id, 12).await.expect("step") }).await;
    assert_eq!(spent, 1, "one TOTP step is accepted once, however many race for it");
    let spent =
        race(mfa, move |s| async move { s.use_recovery_code(user.id, &[1u8; 32], 5).await.expect("code") })
            .await;
    assert_eq!(spent, 1, "a recovery code is spent once");
    assert!(!store.use_recovery_code(user.id, &[9u8; 32], 5).await.expect("code"), "unknown code");
    store.disable(user.id, 6).await.expect("disable");
    let state = store.mfa_state(user.id).await.expect("state").expect("present");
    assert!(!state.mfa_enabled && state.secret.is_none() && state.last_step.is_none());
    assert!(!store.use_recovery_code(user.id, &[2u8; 32], 7).await.expect("code"), "codes are gone");
    assert!(!users.find_by_id(user.id).await.expect("find").expect("present").mfa_enabled);
}

/// How many of eight concurrent calls (spread over the handles) answer true.
pub async fn race<P, F, Fut>(handles: &[Arc<P>], call: F) -> usize
where
    P: ?Sized + Send + Sync + 'static,
    F: Fn(Arc<P>) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let tasks: Vec<_> = (0..8).map(|i| tokio::spawn(call(handles[i % handles.len()].clone()))).collect();
    let mut yes = 0;
    for task in tasks {
        yes += usize::from(task.await.expect("task"));
    }
    yes
}

async fn audit_events_with_any_text_are_appended(audit: &Arc<dyn AuditStore>) {
    let event = AuditEvent {
        event_type: EventType::LoginFailure,
        subject: Some(UserId::generate().to_string()),
        actor: Some("admin".into()),
        detail: Some(FOUR_BYTE.into()),
        source_ip: Some("2001:db8::1".into()),
        user_agent: Some("🦀 Mozilla/5.0 '; DROP TABLE audit_log; --".into()),
        request_id: Some("req-1".into()),
        occurred_at: 1_700_000_000,
        reason: Some("bad_password"),
    };
    audit.append(&event).await.expect("append");
    audit.append(&AuditEvent { subject: None, actor: None, detail: None, ..event }).await.expect("append");
}

fn key(purpose: &str, generation: u32, kid: &str) -> KeyRecord {
    KeyRecord {
        purpose: purpose.into(),
        generation,
        kid: kid.into(),
        public_key: binary()[..65].to_vec(),
        wrapped_key: binary(),
        sealed: binary()[..48].to_vec(),
        created_at: 1_700_000_000 + i64::from(generation),
        revoked_at: None,
    }
}

async fn the_first_key_writer_wins_and_revocation_happens_once(keys: &[Arc<dyn KeyMaterialStore>]) {
    let store = &keys[0];
    let purpose = &format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (store, record) = (keys[i % keys.len()].clone(), key(purpose, 1, &format!("{purpose}-k{i}")));
            tokio::spawn(async move { store.insert_if_absent(&record).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("the losers are not errors");
    }
    let first = store.keys(purpose).await.expect("keys");
    assert_eq!(first.len(), 1, "one key per generation");
    store.insert_if_absent(&key(purpose, 2, &format!("{purpose}-second"))).await.expect("insert");
    let all = store.keys(purpose).await.expect("keys");
    assert_eq!(all.iter().map(|k| k.generation).collect::<Vec<_>>(), [2, 1], "newest first");
    assert_eq!(all[0], key(purpose, 2, &format!("{purpose}-second")), "binary and times round-trip");
    let kid = all[0].kid.clone();
    assert!(store.revoke(purpose, &kid, 5).await.expect("revoke"));
    assert!(!store.revoke(purpose, &kid, 6).await.expect("revoke"), "revoked once");
    assert!(!store.revoke(purpose, "no-such-kid", 6).await.expect("revoke"));
    assert_eq!(store.keys(purpose).await.expect("keys")[0].revoked_at, Some(5), "the first time stays");
    let public = store.public_keys(purpose).await.expect("public");
    assert_eq!(public.iter().map(|k| k.revoked).collect::<Vec<_>>(), [true, false]);
    assert_eq!(public[1].public_key, binary()[..65].to_vec());
}
