//! Sessions and refresh-token families: rotation, reuse, role versions,
//! re-authentication and revocation.

use super::identity::race;
use portcullis_shared::sessions::{
    new_refresh_token, NewSession, Reauth, Rotate, Rotation, SessionRecord, SessionStore, TokenHash,
};
use portcullis_shared::store::StoreError;
use std::sync::Arc;

const EXPIRES: i64 = 4_000_000_000;

fn session(user_id: &str) -> (SessionRecord, TokenHash) {
    let (_, first) = new_refresh_token();
    let record = SessionRecord {
        user_id: user_id.into(),
        sid: uuid::Uuid::new_v4().to_string(),
        created_at: 100,
        last_used_at: 100,
        revoked_at: None,
        user_agent: Some("Mozilla/5.0 🦀𝄞 \"quoted\"".into()),
        ip: Some("203.0.113.9".into()),
        amr: vec!["pwd".into()],
        auth_time: 100,
        roles: vec!["user".into()],
        roles_version: 0,
        head: Some(first),
    };
    (record, first)
}

fn token() -> TokenHash {
    new_refresh_token().1
}

async fn started(store: &Arc<dyn SessionStore>) -> (SessionRecord, TokenHash) {
    let (record, first) = session(&uuid::Uuid::new_v4().to_string());
    store.create(NewSession { session: &record, first: &first, expires_at: EXPIRES }).await.expect("create");
    (record, first)
}

pub async fn run(stores: &[Arc<dyn SessionStore>]) {
    sessions_round_trip_and_duplicates_are_refused(&stores[0]).await;
    a_rotation_spends_the_token_and_a_reused_one_is_detected(&stores[0]).await;
    concurrent_rotations_of_one_token_have_one_winner(stores).await;
    a_role_change_or_revocation_stops_a_stale_rotation(&stores[0]).await;
    reauthentication_moves_the_live_token_only_from_the_head(stores).await;
    sessions_are_listed_per_user_in_creation_order(&stores[0]).await;
}

async fn sessions_round_trip_and_duplicates_are_refused(store: &Arc<dyn SessionStore>) {
    let (record, first) = started(store).await;
    assert_eq!(store.get(&record.user_id, &record.sid).await.expect("get"), Some(record.clone()));
    let token = store.refresh_token(&first).await.expect("token").expect("present");
    assert_eq!(
        (token.user_id.as_str(), token.sid.as_str(), token.spent),
        (record.user_id.as_str(), record.sid.as_str(), false)
    );
    let again =
        store.create(NewSession { session: &record, first: &self::token(), expires_at: EXPIRES }).await;
    assert!(matches!(again, Err(StoreError::Duplicate)), "same session: {again:?}");
    let (other, _) = session(&record.user_id);
    let reused = store.create(NewSession { session: &other, first: &first, expires_at: EXPIRES }).await;
    assert!(matches!(reused, Err(StoreError::Duplicate)), "same first token: {reused:?}");
    assert_eq!(store.get(&other.user_id, &other.sid).await.expect("get"), None, "nothing half-written");
    assert!(store.refresh_token(&self::token()).await.expect("token").is_none());
    assert!(store.get("nobody", "nothing").await.expect("get").is_none());
}

async fn a_rotation_spends_the_token_and_a_reused_one_is_detected(store: &Arc<dyn SessionStore>) {
    let (record, first) = started(store).await;
    let next = token();
    let roles = vec!["user".to_owned(), "admin".to_owned()];
    assert_eq!(
        store
            .rotate(Rotate {
                session: &record,
                old: &first,
                new: &next,
                roles: &roles,
                now: 200,
                expires_at: EXPIRES
            })
            .await
            .expect("rotate"),
        Rotation::Rotated
    );
    assert!(store.refresh_token(&first).await.expect("token").expect("present").spent);
    assert!(!store.refresh_token(&next).await.expect("token").expect("present").spent);
    let now = store.get(&record.user_id, &record.sid).await.expect("get").expect("present");
    assert_eq!((now.last_used_at, now.roles.clone(), now.head), (200, roles.clone(), Some(next)));
    assert_eq!(now.roles_version, 0, "a rotation is not a role change");
    let replay = store
        .rotate(Rotate {
            session: &now,
            old: &first,
            new: &token(),
            roles: &roles,
            now: 300,
            expires_at: EXPIRES,
        })
        .await
        .expect("rotate");
    assert_eq!(replay, Rotation::AlreadySpent, "reuse of a spent token is detected");
    assert_eq!(
        store
            .rotate(Rotate {
                session: &now,
                old: &token(),
                new: &token(),
                roles: &roles,
                now: 300,
                expires_at: EXPIRES
            })
            .await
            .expect("rotate"),
        Rotation::AlreadySpent
    );
    assert_eq!(
        store.get(&record.user_id, &record.sid).await.expect("get").expect("present").head,
        Some(next)
    );
}

async fn concurrent_rotations_of_one_token_have_one_winner(stores: &[Arc<dyn SessionStore>]) {
    let (record, first) = started(&stores[0]).await;
    let shared = record.clone();
    let won = race(stores, move |s| {
        let record = shared.clone();
        async move {
            let outcome = s
                .rotate(Rotate {
                    session: &record,
                    old: &first,
                    new: &token(),
                    roles: &record.roles,
                    now: 200,
                    expires_at: EXPIRES,
                })
                .await;
            match outcome.expect("a lost race is an answer, not an outage") {
                Rotation::Rotated => true,
                Rotation::AlreadySpent => false,
                Rotation::SessionChanged => panic!("nothing changed the session"),
            }
        }
    })
    .await;
    assert_eq!(won, 1, "exactly one rotation of one token wins");
    let head =
        stores[0].get(&record.user_id, &record.sid).await.expect("get").expect("present").head.expect("head");
    assert!(
        !stores[0].refresh_token(&head).await.expect("token").expect("present").spent,
        "the winner's token is live"
    );
}

async fn a_role_change_or_revocation_stops_a_stale_rotation(store: &Arc<dyn SessionStore>) {
    let (record, first) = started(store).await;
    store.set_roles(&record.user_id, &record.sid, &["support".into()]).await.expect("set roles");
    let changed = store.get(&record.user_id, &record.sid).await.expect("get").expect("present");
    assert_eq!((changed.roles.clone(), changed.roles_version), (vec!["support".to_owned()], 1));
    let stale = store
        .rotate(Rotate {
            session: &record,
            old: &first,
            new: &token(),
            roles: &record.roles,
            now: 200,
            expires_at: EXPIRES,
        })
        .await
        .expect("rotate");
    assert_eq!(stale, Rotation::SessionChanged, "a rotation read before the role change writes nothing");
    assert!(
        !store.refresh_token(&first).await.expect("token").expect("present").spent,
        "the token stays live"
    );
    store.touch(&record.user_id, &record.sid, &["support".into(), "user".into()], 250).await.expect("touch");
    let touched = store.get(&record.user_id, &record.sid).await.expect("get").expect("present");
    assert_eq!((touched.last_used_at, touched.roles.len(), touched.roles_version), (250, 2, 1));
    store.revoke(&record.user_id, &record.sid, 300).await.expect("revoke");
    store.revoke(&record.user_id, &record.sid, 400).await.expect("revocation is idempotent");
    store.touch(&record.user_id, &record.sid, &[], 500).await.expect("touch");
    let ended = store.get(&record.user_id, &record.sid).await.expect("get").expect("present");
    assert_eq!(
        (ended.revoked_at, ended.last_used_at),
        (Some(300), 250),
        "the first revocation stays; no touch after it"
    );
    let late = store
        .rotate(Rotate {
            session: &ended,
            old: &first,
            new: &token(),
            roles: &[],
            now: 600,
            expires_at: EXPIRES,
        })
        .await
        .expect("rotate");
    assert_eq!(late, Rotation::SessionChanged, "a revoked session does not rotate");
    store.revoke("nobody", "nothing", 1).await.expect("revoking nothing is not an error");
    store.set_roles("nobody", "nothing", &[]).await.expect("nor is setting its roles");
    assert!(store.get("nobody", "nothing").await.expect("get").is_none(), "nor does it create one");
}

async fn reauthentication_moves_the_live_token_only_from_the_head(stores: &[Arc<dyn SessionStore>]) {
    let store = &stores[0];
    let (record, first) = started(store).await;
    let headless = SessionRecord { head: None, ..record.clone() };
    let amr = vec!["pwd".to_owned(), "otp".to_owned()];
    assert_eq!(
        store
            .reauthenticate(Reauth {
                session: &headless,
                new: &token(),
                amr: &amr,
                now: 150,
                expires_at: EXPIRES
            })
            .await
            .expect("reauth"),
        Rotation::SessionChanged
    );
    let next = token();
    assert_eq!(
        store
            .reauthenticate(Reauth { session: &record, new: &next, amr: &amr, now: 150, expires_at: EXPIRES })
            .await
            .expect("reauth"),
        Rotation::Rotated
    );
    assert!(store.refresh_token(&first).await.expect("token").expect("present").spent);
    let now = store.get(&record.user_id, &record.sid).await.expect("get").expect("present");
    assert_eq!(
        (now.auth_time, now.last_used_at, now.amr.clone(), now.head),
        (150, 150, amr.clone(), Some(next))
    );
    let stale = store
        .reauthenticate(Reauth { session: &record, new: &token(), amr: &amr, now: 160, expires_at: EXPIRES })
        .await
        .expect("reauth");
    assert_eq!(stale, Rotation::SessionChanged, "the head moved on");
    let shared = now.clone();
    let won = race(stores, move |s| {
        let (now, amr) = (shared.clone(), amr.clone());
        async move {
            s.reauthenticate(Reauth {
                session: &now,
                new: &token(),
                amr: &amr,
                now: 170,
                expires_at: EXPIRES,
            })
            .await
            .expect("reauth")
                == Rotation::Rotated
        }
    })
    .await;
    assert_eq!(won, 1, "concurrent re-authentications from one head: one wins");
}

async fn sessions_are_listed_per_user_in_creation_order(store: &Arc<dyn SessionStore>) {
    let user = uuid::Uuid::new_v4().to_string();
    let mut sids = Vec::new();
    for created_at in [300, 100, 200] {
        let (record, first) = session(&user);
        let record = SessionRecord { created_at, last_used_at: created_at, ..record };
        store
            .create(NewSession { session: &record, first: &first, expires_at: EXPIRES })
            .await
            .expect("create");
        sids.push((created_at, record.sid));
    }
    store.revoke(&user, &sids[0].1, 400).await.expect("revoke");
    sids.sort();
    let listed = store.list(&user).await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.sid.clone()).collect::<Vec<_>>(),
        sids.into_iter().map(|(_, s)| s).collect::<Vec<_>>()
    );
    assert_eq!(listed.iter().filter(|s| s.revoked_at.is_some()).count(), 1, "revoked ones included");
    assert!(store.list(&uuid::Uuid::new_v4().to_string()).await.expect("list").is_empty());
}
