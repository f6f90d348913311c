//! In-process attempt counters (local server, unit tests): the rules of
//! [`Counter`] under one mutex.

use crate::store::StoreError;
use crate::throttle::{Counter, CounterStore, Limit, Verdict};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

/// In-process counters (local server, unit tests): the same rules under one mutex.
#[derive(Default)]
pub struct MemoryCounterStore(Mutex<HashMap<String, Counter>>);

#[async_trait]
impl CounterStore for MemoryCounterStore {
    async fn attempt(&self, key: &str, limit: &Limit, now: i64) -> Result<Verdict, StoreError> {
        let mut map = self.0.lock().map_err(|_| StoreError::Corrupt("counter lock"))?;
        Ok(map.entry(key.to_owned()).or_default().attempt(limit, now))
    }

    async fn succeed(&self, key: &str, reset: bool) -> Result<(), StoreError> {
        let mut map = self.0.lock().map_err(|_| StoreError::Corrupt("counter lock"))?;
        if reset {
            map.remove(key);
        } else if let Some(c) = map.get_mut(key) {
            c.give_back();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: Limit =
        Limit { max_failures: 5, window_secs: 900, base_lock_secs: 60, max_lock_secs: 900 };

    #[tokio::test]
    async fn memory_counters_lock_after_the_limit_and_lift_by_themselves() {
        let store = MemoryCounterStore::default();
        for _ in 0..5 {
            assert_eq!(store.attempt("a", &ACCOUNT, 0).await.expect("ok"), Verdict::Proceed);
        }
        assert_eq!(
            store.attempt("a", &ACCOUNT, 1).await.expect("ok"),
            Verdict::Locked { retry_after_secs: 60 }
        );
        assert_eq!(
            store.attempt("a", &ACCOUNT, 30).await.expect("ok"),
            Verdict::Locked { retry_after_secs: 31 }
        );
        assert_eq!(store.attempt("a", &ACCOUNT, 61).await.expect("ok"), Verdict::Proceed);
        for _ in 0..4 {
            store.attempt("a", &ACCOUNT, 62).await.expect("ok");
        }
        assert_eq!(
            store.attempt("a", &ACCOUNT, 63).await.expect("ok"),
            Verdict::Locked { retry_after_secs: 120 }
        );
        store.succeed("b", true).await.expect("ok");
    }
}
