//! In-process MFA challenges (unit tests): the same rules as the stored ones
//! under one mutex.

use crate::mfa::{Challenge, ChallengeStore, MAX_ATTEMPTS};
use crate::store::StoreError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryChallengeStore(Mutex<HashMap<[u8; 32], Challenge>>);

impl MemoryChallengeStore {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<[u8; 32], Challenge>>, StoreError> {
        self.0.lock().map_err(|_| StoreError::Corrupt("challenge lock"))
    }
}

#[async_trait]
impl ChallengeStore for MemoryChallengeStore {
    async fn create(&self, hash: &[u8; 32], challenge: &Challenge) -> Result<(), StoreError> {
        match self.lock()?.entry(*hash) {
            std::collections::hash_map::Entry::Occupied(_) => Err(StoreError::Duplicate),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(challenge.clone());
                Ok(())
            }
        }
    }

    async fn get(&self, hash: &[u8; 32], now: i64) -> Result<Option<Challenge>, StoreError> {
        Ok(self.lock()?.get(hash).filter(|c| c.expires_at > now && c.attempts < MAX_ATTEMPTS).cloned())
    }

    async fn fail(&self, hash: &[u8; 32], now: i64) -> Result<i64, StoreError> {
        let mut map = self.lock()?;
        let Some(c) = map.get_mut(hash).filter(|c| c.expires_at > now && c.attempts < MAX_ATTEMPTS) else {
            return Ok(0);
        };
        c.attempts += 1;
        let left = MAX_ATTEMPTS - c.attempts;
        if left == 0 {
            map.remove(hash);
        }
        Ok(left)
    }

    async fn consume(&self, hash: &[u8; 32], now: i64) -> Result<bool, StoreError> {
        let mut map = self.lock()?;
        let live = map.get(hash).is_some_and(|c| c.expires_at > now && c.attempts < MAX_ATTEMPTS);
        map.remove(hash);
        Ok(live)
    }
}
