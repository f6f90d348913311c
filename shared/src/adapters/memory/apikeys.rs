//! In-process API keys (local server, unit tests).

use crate::apikeys::{ApiKeyRecord, ApiKeyStore};
use crate::store::StoreError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

/// In-process API keys (local server, unit tests).
#[derive(Default)]
pub struct MemoryApiKeyStore(Mutex<HashMap<String, ApiKeyRecord>>);

#[async_trait]
impl ApiKeyStore for MemoryApiKeyStore {
    async fn create(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut map = self.0.lock().map_err(|_| StoreError::Corrupt("api key lock"))?;
        if map.contains_key(&key.key_id) {
            return Err(StoreError::Duplicate);
        }
        map.insert(key.key_id.clone(), key.clone());
        Ok(())
    }

    async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.0.lock().map_err(|_| StoreError::Corrupt("api key lock"))?.get(key_id).cloned())
    }

    async fn revoke(&self, key_id: &str, now: i64) -> Result<bool, StoreError> {
        let mut map = self.0.lock().map_err(|_| StoreError::Corrupt("api key lock"))?;
        Ok(map.get_mut(key_id).map(|k| k.revoked_at.get_or_insert(now)).is_some())
    }

    async fn list_by_creator(&self, creator: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let map = self.0.lock().map_err(|_| StoreError::Corrupt("api key lock"))?;
        Ok(map.values().filter(|k| k.created_by == creator).cloned().collect())
    }
}
