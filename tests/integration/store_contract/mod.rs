//! One store contract, run against every backend that serves each port:
//! memory, the embedded SQLite file, MariaDB (users, MFA, audit, key material)
//! and DynamoDB on moto (sessions, API keys, challenges, counters, pending tokens). Each case is
//! written once against the port (`&[Arc<dyn Port>]`: several handles on the
//! same data, so concurrent cases contend as separate processes would; for
//! SQLite each handle is its own connection to the file).

mod ephemeral;
mod identity;
mod pending;
mod sessions;

use crate::helpers::{new_table, TestDb};
use portcullis_shared::adapters::memory::MemoryStore;
use portcullis_shared::adapters::mysql::MySqlStore;
use portcullis_shared::adapters::sqlite::SqliteStore;
use portcullis_shared::aws::AwsClient;
use std::sync::Arc;

/// Handles on one store: SQLite opens the file once per handle.
const HANDLES: usize = 3;

async fn sqlite_handles() -> Vec<Arc<SqliteStore>> {
    let path = std::env::temp_dir()
        .join(format!("pc-contract-{}", uuid::Uuid::new_v4()))
        .join(".portcullis/portcullis.db");
    let mut out = Vec::new();
    for _ in 0..HANDLES {
        out.push(Arc::new(SqliteStore::open(&path, 0).await.expect("opens")));
    }
    out
}

async fn mysql_handles() -> Vec<Arc<MySqlStore>> {
    let db = TestDb::create().await;
    let opts = mysql_async::Opts::from_url(&db.owner_url()).expect("url");
    (0..HANDLES).map(|_| Arc::new(MySqlStore::connect(opts.clone(), 4).expect("pool"))).collect()
}

async fn dynamo() -> (AwsClient<aws_sdk_dynamodb::Client>, String) {
    let client = aws_sdk_dynamodb::Client::new(portcullis_shared::aws::aws_config().await);
    (client.into(), new_table().await)
}

/// Views every handle as the port under test.
macro_rules! ports {
    ($handles:expr, $port:path) => {
        $handles.iter().map(|h| h.clone() as Arc<dyn $port>).collect::<Vec<_>>()
    };
}

#[tokio::test]
async fn memory_stores_keep_the_contract() {
    let store = Arc::new(MemoryStore::new());
    let same = vec![store.clone(); HANDLES];
    identity::run(
        &ports!(same, portcullis_shared::store::UserStore),
        &ports!(same, portcullis_shared::store::MfaStore),
        &ports!(same, portcullis_shared::audit::AuditStore),
        &ports!(same, portcullis_shared::store::KeyMaterialStore),
    )
    .await;
    let sessions = Arc::new(portcullis_shared::adapters::memory::MemorySessionStore::new());
    self::sessions::run(&ports!(vec![sessions; HANDLES], portcullis_shared::sessions::SessionStore)).await;
    let keys = Arc::new(portcullis_shared::adapters::memory::MemoryApiKeyStore::default());
    let challenges = Arc::new(portcullis_shared::adapters::memory::MemoryChallengeStore::default());
    let counters = Arc::new(portcullis_shared::adapters::memory::MemoryCounterStore::default());
    ephemeral::run(
        &ports!(vec![keys; HANDLES], portcullis_shared::apikeys::ApiKeyStore),
        &ports!(vec![challenges; HANDLES], portcullis_shared::mfa::ChallengeStore),
        &ports!(vec![counters; HANDLES], portcullis_shared::throttle::CounterStore),
    )
    .await;
    let tokens = Arc::new(portcullis_shared::adapters::memory::MemoryPendingStore::default());
    pending::run(&ports!(vec![tokens; HANDLES], portcullis_shared::pending::PendingStore)).await;
}

#[tokio::test]
async fn the_embedded_sqlite_store_keeps_the_contract_for_every_port() {
    let h = sqlite_handles().await;
    identity::run(
        &ports!(h, portcullis_shared::store::UserStore),
        &ports!(h, portcullis_shared::store::MfaStore),
        &ports!(h, portcullis_shared::audit::AuditStore),
        &ports!(h, portcullis_shared::store::KeyMaterialStore),
    )
    .await;
    sessions::run(&ports!(h, portcullis_shared::sessions::SessionStore)).await;
    ephemeral::run(
        &ports!(h, portcullis_shared::apikeys::ApiKeyStore),
        &ports!(h, portcullis_shared::mfa::ChallengeStore),
        &ports!(h, portcullis_shared::throttle::CounterStore),
    )
    .await;
    pending::run(&ports!(h, portcullis_shared::pending::PendingStore)).await;
}

#[tokio::test]
async fn mysql_keeps_the_contract_for_users_mfa_audit_and_keys() {
    let h = mysql_handles().await;
    identity::run(
        &ports!(h, portcullis_shared::store::UserStore),
        &ports!(h, portcullis_shared::store::MfaStore),
        &ports!(h, portcullis_shared::audit::AuditStore),
        &ports!(h, portcullis_shared::store::KeyMaterialStore),
    )
    .await;
}

#[tokio::test]
async fn dynamodb_keeps_the_contract_for_sessions_api_keys_challenges_and_counters() {
    use portcullis_shared::adapters::dynamo::{
        DynamoApiKeyStore, DynamoChallengeStore, DynamoCounterStore, DynamoSessionStore,
    };
    use portcullis_shared::{apikeys, mfa, sessions as s, throttle};
    let (client, table) = dynamo().await;
    let one = |store: Arc<dyn s::SessionStore>| vec![store; HANDLES];
    sessions::run(&one(Arc::new(DynamoSessionStore::new(client.clone(), table.clone())))).await;
    let keys: Arc<dyn apikeys::ApiKeyStore> = Arc::new(DynamoApiKeyStore::new(client.clone(), table.clone()));
    let challenges: Arc<dyn mfa::ChallengeStore> =
        Arc::new(DynamoChallengeStore::new(client.clone(), table.clone()));
    let counters: Arc<dyn throttle::CounterStore> =
        Arc::new(DynamoCounterStore::new(client.clone(), table.clone()));
    ephemeral::run(&vec![keys; HANDLES], &vec![challenges; HANDLES], &vec![counters; HANDLES]).await;
    let tokens: Arc<dyn portcullis_shared::pending::PendingStore> =
        Arc::new(portcullis_shared::adapters::dynamo::DynamoPendingStore::new(client, table));
    pending::run(&vec![tokens; HANDLES]).await;
}
