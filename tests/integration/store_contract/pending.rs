//! Pending one-time tokens: one per account and purpose, a newer one replacing
//! the older, used up once whatever races, never across accounts or purposes.

use portcullis_shared::crypto::random_bytes;
use portcullis_shared::pending::{Pending, PendingStore, Purpose};
use std::sync::Arc;

pub async fn run(stores: &[Arc<dyn PendingStore>]) {
    a_token_is_taken_once_by_its_hash_before_its_expiry(&stores[0]).await;
    a_newer_token_or_a_revocation_ends_the_older(&stores[0]).await;
    concurrent_takes_use_a_token_up_exactly_once(stores).await;
}

fn pending(purpose: Purpose) -> Pending {
    Pending {
        user_id: uuid::Uuid::new_v4().to_string(),
        purpose,
        expires_at: 2_000,
        detail: Some("sealed: new address 🦀𝄞".into()),
    }
}

async fn a_token_is_taken_once_by_its_hash_before_its_expiry(store: &Arc<dyn PendingStore>) {
    let p = pending(Purpose::VerifyEmail);
    let hash = random_bytes::<32>();
    store.put(&p, &hash).await.expect("put");
    let take = |user: String, purpose, hash, now| {
        let store = store.clone();
        async move { store.take(&user, purpose, &hash, now).await.expect("take") }
    };
    assert_eq!(take(p.user_id.clone(), p.purpose, random_bytes::<32>(), 1_000).await, None, "a wrong hash");
    let other = uuid::Uuid::new_v4().to_string();
    assert_eq!(take(other, p.purpose, hash, 1_000).await, None, "another account");
    assert_eq!(take(p.user_id.clone(), Purpose::ResetPassword, hash, 1_000).await, None, "another purpose");
    assert_eq!(take(p.user_id.clone(), p.purpose, hash, 2_000).await, None, "expired at its expiry");
    assert_eq!(
        take(p.user_id.clone(), p.purpose, hash, 1_999).await,
        Some(p.clone()),
        "the wrong tries spent nothing"
    );
    assert_eq!(take(p.user_id.clone(), p.purpose, hash, 1_999).await, None, "single use");
}

async fn a_newer_token_or_a_revocation_ends_the_older(store: &Arc<dyn PendingStore>) {
    let older = pending(Purpose::ResetPassword);
    let (first, second) = (random_bytes::<32>(), random_bytes::<32>());
    store.put(&older, &first).await.expect("put");
    let newer = Pending { expires_at: 3_000, detail: None, ..older.clone() };
    store.put(&newer, &second).await.expect("put again");
    // The same account's other purpose is a pair of its own.
    let verify = Pending { purpose: Purpose::VerifyEmail, ..older.clone() };
    store.put(&verify, &first).await.expect("put another purpose");
    assert_eq!(store.take(&older.user_id, older.purpose, &first, 10).await.expect("take"), None, "replaced");
    assert_eq!(store.take(&older.user_id, older.purpose, &second, 10).await.expect("take"), Some(newer));
    store.revoke(&verify.user_id, verify.purpose).await.expect("revoke");
    assert_eq!(store.take(&verify.user_id, verify.purpose, &first, 10).await.expect("take"), None, "revoked");
    store.revoke(&verify.user_id, verify.purpose).await.expect("revoking nothing is fine");
}

async fn concurrent_takes_use_a_token_up_exactly_once(stores: &[Arc<dyn PendingStore>]) {
    let p = pending(Purpose::ChangeEmail);
    let hash = random_bytes::<32>();
    stores[0].put(&p, &hash).await.expect("put");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, user) = (stores[i % stores.len()].clone(), p.user_id.clone());
            tokio::spawn(
                async move { store.take(&user, Purpose::ChangeEmail, &hash, 10).await.expect("take") },
            )
        })
        .collect();
    let mut taken = 0;
    for task in tasks {
        taken += usize::from(task.await.expect("task").is_some());
    }
    assert_eq!(taken, 1, "a token taken {taken} times");
}
