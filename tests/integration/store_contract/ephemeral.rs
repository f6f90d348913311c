//! API keys, MFA challenges and attempt counters.

use super::identity::race;
use portcullis_shared::apikeys::{new_api_key, ApiKeyRecord, ApiKeyStore};
use portcullis_shared::mfa::{Challenge, ChallengeStore, MAX_ATTEMPTS};
use portcullis_shared::store::StoreError;
use portcullis_shared::throttle::{CounterStore, Limit, Verdict};
use std::sync::Arc;

pub async fn run(
    keys: &[Arc<dyn ApiKeyStore>],
    challenges: &[Arc<dyn ChallengeStore>],
    counters: &[Arc<dyn CounterStore>],
) {
    api_keys_round_trip_revoke_once_and_list_by_creator(&keys[0]).await;
    a_challenge_survives_four_wrong_codes_and_is_used_once(challenges).await;
    concurrent_wrong_codes_cannot_overspend_a_challenge(challenges).await;
    counters_lock_after_the_limit_and_back_off(&counters[0]).await;
    concurrent_attempts_are_each_counted(counters).await;
}

fn api_key(creator: &str, permissions: &[&str]) -> ApiKeyRecord {
    let (key_id, _, hash) = new_api_key();
    ApiKeyRecord {
        key_id,
        name: "deploy bot 🦀𝄞".into(),
        hash,
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        created_by: creator.into(),
        created_at: 1_700_000_000,
        valid_until: 1_800_000_000,
        revoked_at: None,
    }
}

async fn api_keys_round_trip_revoke_once_and_list_by_creator(store: &Arc<dyn ApiKeyStore>) {
    let creator = uuid::Uuid::new_v4().to_string();
    let key = api_key(&creator, &["users:read", "sessions:revoke"]);
    store.create(&key).await.expect("create");
    assert_eq!(store.get(&key.key_id).await.expect("get"), Some(key.clone()));
    let twin = ApiKeyRecord { created_by: "someone else".into(), ..key.clone() };
    assert!(matches!(store.create(&twin).await, Err(StoreError::Duplicate)), "a key id is unique");
    assert!(store.get("0000000000000000").await.expect("get").is_none());
    assert!(store.revoke(&key.key_id, 10).await.expect("revoke"));
    assert!(store.revoke(&key.key_id, 20).await.expect("revoke again"), "a known key");
    assert_eq!(
        store.get(&key.key_id).await.expect("get").expect("present").revoked_at,
        Some(10),
        "the first time stays"
    );
    assert!(!store.revoke("0000000000000000", 10).await.expect("revoke"), "no such key");
    let other = api_key(&creator, &[]);
    store.create(&other).await.expect("create");
    store.create(&api_key("another creator", &["users:read"])).await.expect("create");
    let mut listed: Vec<String> =
        store.list_by_creator(&creator).await.expect("list").into_iter().map(|k| k.key_id).collect();
    listed.sort();
    let mut expected = vec![key.key_id.clone(), other.key_id.clone()];
    expected.sort();
    assert_eq!(listed, expected, "every key of the creator, revoked ones included, and no other");
}

fn challenge() -> ([u8; 32], Challenge) {
    let hash = portcullis_shared::crypto::random_bytes::<32>();
    let challenge = Challenge {
        user_id: uuid::Uuid::new_v4().to_string(),
        attempts: 0,
        expires_at: 1_000,
        throttle_key: Some("ACCT#🦀".into()),
        device_token: Some("sealed device token".into()),
    };
    (hash, challenge)
}

async fn a_challenge_survives_four_wrong_codes_and_is_used_once(stores: &[Arc<dyn ChallengeStore>]) {
    let store = &stores[0];
    let (hash, c) = challenge();
    store.create(&hash, &c).await.expect("create");
    assert_eq!(store.get(&hash, 999).await.expect("get"), Some(c.clone()));
    assert_eq!(store.get(&hash, 1_000).await.expect("get"), None, "expired at its expiry");
    assert!(
        matches!(store.create(&hash, &c).await, Err(StoreError::Duplicate)),
        "a challenge is created once"
    );
    for left in (1..MAX_ATTEMPTS).rev() {
        assert_eq!(store.fail(&hash, 10).await.expect("fail"), left);
    }
    assert_eq!(store.get(&hash, 10).await.expect("get").expect("live").attempts, MAX_ATTEMPTS - 1);
    let used = race(stores, move |s| async move { s.consume(&hash, 10).await.expect("consume") }).await;
    assert_eq!(used, 1, "a challenge is used once");
    assert_eq!(store.get(&hash, 10).await.expect("get"), None);
    let (late, c) = challenge();
    store.create(&late, &c).await.expect("create");
    assert!(!store.consume(&late, 1_000).await.expect("consume"), "an expired challenge is not used");
    assert_eq!(store.fail(&late, 1_000).await.expect("fail"), 0);
    assert_eq!(store.fail(&[0u8; 32], 10).await.expect("fail"), 0, "an unknown challenge has nothing left");
}

async fn concurrent_wrong_codes_cannot_overspend_a_challenge(stores: &[Arc<dyn ChallengeStore>]) {
    let (hash, c) = challenge();
    stores[0].create(&hash, &c).await.expect("create");
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move { store.fail(&hash, 10).await.expect("fail") })
        })
        .collect();
    let mut left = Vec::new();
    for task in tasks {
        left.push(task.await.expect("task"));
    }
    left.sort();
    let mut expected = vec![0; 12 - MAX_ATTEMPTS as usize];
    expected.extend(0..MAX_ATTEMPTS);
    expected.sort();
    assert_eq!(left, expected, "each wrong code is counted once, and only five");
    assert_eq!(stores[0].get(&hash, 10).await.expect("get"), None, "burned");
    assert!(!stores[0].consume(&hash, 10).await.expect("consume"), "a burned challenge is not used");
}

const LIMIT: Limit = Limit { max_failures: 5, window_secs: 900, base_lock_secs: 60, max_lock_secs: 900 };

async fn counters_lock_after_the_limit_and_back_off(store: &Arc<dyn CounterStore>) {
    let key = format!("ACCT#{}", uuid::Uuid::new_v4());
    for _ in 0..5 {
        assert_eq!(store.attempt(&key, &LIMIT, 1_000).await.expect("attempt"), Verdict::Proceed);
    }
    assert_eq!(
        store.attempt(&key, &LIMIT, 1_001).await.expect("attempt"),
        Verdict::Locked { retry_after_secs: 60 }
    );
    assert_eq!(
        store.attempt(&key, &LIMIT, 1_030).await.expect("attempt"),
        Verdict::Locked { retry_after_secs: 31 }
    );
    assert_eq!(
        store.attempt(&key, &LIMIT, 1_061).await.expect("attempt"),
        Verdict::Proceed,
        "the lock lifts"
    );
    for _ in 0..4 {
        store.attempt(&key, &LIMIT, 1_062).await.expect("attempt");
    }
    let again = store.attempt(&key, &LIMIT, 1_063).await.expect("attempt");
    assert_eq!(again, Verdict::Locked { retry_after_secs: 120 }, "the next lock is twice as long");
    store.succeed(&key, true).await.expect("reset");
    assert_eq!(
        store.attempt(&key, &LIMIT, 1_064).await.expect("attempt"),
        Verdict::Proceed,
        "a reset forgets the lock"
    );
    let ip = format!("IP#{}", uuid::Uuid::new_v4());
    for _ in 0..5 {
        store.attempt(&ip, &LIMIT, 1_000).await.expect("attempt");
        store.succeed(&ip, false).await.expect("give back");
    }
    assert_eq!(
        store.attempt(&ip, &LIMIT, 1_000).await.expect("attempt"),
        Verdict::Proceed,
        "slots were given back"
    );
    store
        .succeed(&format!("IP#{}", uuid::Uuid::new_v4()), false)
        .await
        .expect("an unknown key is not an error");
}

async fn concurrent_attempts_are_each_counted(stores: &[Arc<dyn CounterStore>]) {
    let limit = Limit { max_failures: 20, ..LIMIT };
    let key = format!("IP#{}", uuid::Uuid::new_v4());
    let proceeded = |n: usize| {
        let key = key.clone();
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (store, key) = (stores[i % stores.len()].clone(), key.clone());
                tokio::spawn(async move { store.attempt(&key, &limit, 1_000).await.expect("attempt") })
            })
            .collect();
        async move {
            let mut proceeded = 0;
            for task in tasks {
                proceeded += usize::from(task.await.expect("task") == Verdict::Proceed);
            }
            proceeded
        }
    };
    assert_eq!(proceeded(12).await, 12, "under the limit every attempt proceeds");
    assert_eq!(proceeded(12).await, 8, "exactly the limit's worth proceed: no count is lost");
    assert_eq!(proceeded(4).await, 0, "locked");
}
