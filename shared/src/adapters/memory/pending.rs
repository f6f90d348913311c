//! In-process pending tokens (unit tests): the same rules as the stored ones
//! under one mutex.

use crate::pending::{Pending, PendingStore, Purpose};
use crate::store::StoreError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

type Pair = (String, Purpose);
type Tokens = HashMap<Pair, (Pending, [u8; 32])>;

#[derive(Default)]
pub struct MemoryPendingStore(Mutex<Tokens>);

impl MemoryPendingStore {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Tokens>, StoreError> {
        self.0.lock().map_err(|_| StoreError::Corrupt("pending lock"))
    }
}

#[async_trait]
impl PendingStore for MemoryPendingStore {
    async fn put(&self, pending: &Pending, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.lock()?.insert((pending.user_id.clone(), pending.purpose), (pending.clone(), *hash));
        Ok(())
    }

    async fn take(
        &self,
        user_id: &str,
        purpose: Purpose,
        hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<Pending>, StoreError> {
        let mut map = self.lock()?;
        let pair = (user_id.to_owned(), purpose);
        let live = map.get(&pair).is_some_and(|(p, h)| h == hash && p.expires_at > now);
        Ok(if live { map.remove(&pair).map(|(p, _)| p) } else { None })
    }

    async fn revoke(&self, user_id: &str, purpose: Purpose) -> Result<(), StoreError> {
        self.lock()?.remove(&(user_id.to_owned(), purpose));
        Ok(())
    }
}
