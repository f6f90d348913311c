//! Cold-start wiring shared by every function and the local server: opens the
//! configured stores and key provider once, so warm invocations reuse them.

use crate::config::{Config, KeyBackend, StoreBackend};
use crate::crypto::{KeyProvider, KmsKeyProvider, LocalKeyProvider};
use crate::store::{AuditStore, KeyMaterialStore, MemoryStore, MySqlStore, UserStore};
use std::sync::Arc;

/// A failure at cold start: the process must not serve.
#[derive(Debug, thiserror::Error)]
#[error("startup failed: {0}")]
pub struct BootError(pub String);

impl BootError {
    pub fn from_error(context: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        Self(format!("{context}: {}", crate::http::error_chain(err)))
    }
}

/// The opened stores; one object may serve several ports.
#[derive(Clone)]
pub struct Backends {
    pub users: Arc<dyn UserStore>,
    pub audit: Arc<dyn AuditStore>,
    pub keys: Arc<dyn KeyMaterialStore>,
    /// Set in the embedded mode, for inspection by the local server and tests.
    pub memory: Option<Arc<MemoryStore>>,
    /// Set when backed by MySQL.
    pub mysql: Option<MySqlStore>,
}

impl Backends {
    /// Opens the configured store. MySQL connections are made lazily by the pool.
    pub fn open(config: &Config) -> Result<Self, BootError> {
        match &config.store {
            StoreBackend::Memory => Ok(Self::memory(Arc::new(MemoryStore::new()))),
            StoreBackend::Mysql { url } => {
                // A Lambda instance serves one request at a time: a few connections suffice.
                let store = MySqlStore::connect(url, 4)
                    .map_err(|e| BootError::from_error("PORTCULLIS_DATABASE_URL", &e))?;
                Ok(Self::mysql(store))
            }
        }
    }

    pub fn memory(store: Arc<MemoryStore>) -> Self {
        Self {
            users: store.clone(),
            audit: store.clone(),
            keys: store.clone(),
            memory: Some(store),
            mysql: None,
        }
    }

    pub fn mysql(store: MySqlStore) -> Self {
        let shared = Arc::new(store.clone());
        Self { users: shared.clone(), audit: shared.clone(), keys: shared, memory: None, mysql: Some(store) }
    }
}

/// The configured key provider: KMS (endpoint from `AWS_ENDPOINT_URL` when set) or the local file.
pub async fn key_provider(config: &Config) -> Result<Arc<dyn KeyProvider>, BootError> {
    match &config.keys {
        KeyBackend::LocalFile { path } => LocalKeyProvider::open_or_create(path)
            .map(|p| Arc::new(p) as Arc<dyn KeyProvider>)
            .map_err(|e| BootError::from_error("PORTCULLIS_LOCAL_KEY_FILE", &e)),
        KeyBackend::Kms { key_id } => {
            let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let client = aws_sdk_kms::Client::new(&sdk);
            Ok(Arc::new(KmsKeyProvider::new(client, key_id.clone())))
        }
    }
}
