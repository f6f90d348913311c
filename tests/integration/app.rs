//! One test app: [`spawn_app`] gives a test every function's handlers, the
//! stores each function opened (as its own database user) and the clock, on
//! a backend of its own (a fresh database, a fresh DynamoDB table).

use crate::helpers::{config, key_file, new_table, TestDb};
use portcullis_shared::clock::{Clock, ManualClock};
use portcullis_shared::config::Config;
use portcullis_shared::runtime::{key_provider, Backends, Boot};
use std::collections::HashMap;
use std::sync::Arc;

/// Where a test app keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// What a deployment runs: accounts, keys and the audit trail on MariaDB
    /// (each function connected as its own least-privilege user), sessions,
    /// counters, challenges and API keys on moto's DynamoDB.
    Mysql,
    /// Accounts in memory, sessions, counters, challenges and API keys on
    /// moto's DynamoDB: the DynamoDB adapters without a database.
    Dynamo,
    /// Accounts in an Amazon Cognito user pool on moto (a fresh pool and
    /// confidential app client, as the template declares them), keys and the
    /// audit trail on MariaDB, the short-lived state on DynamoDB.
    Cognito,
    /// Everything in one embedded SQLite file (the local server's default),
    /// shared by every function as the local server shares it.
    Sqlite,
}

/// The functions of one deployment, sharing a key file, a table and a clock.
pub struct TestApp {
    /// The test's database (`Backend::Mysql`).
    pub db: Option<TestDb>,
    /// The test's DynamoDB table.
    pub table: String,
    /// The test's user pool and a client of moto's Cognito (`Backend::Cognito`).
    pub pool: Option<(crate::cognito::Pool, aws_sdk_cognitoidentityprovider::Client)>,
    pub clock: ManualClock,
    pub login: portcullis_login::Deps,
    pub mfa: portcullis_mfa::Deps,
    pub refresh: portcullis_refresh::Deps,
    pub admin: portcullis_admin::Deps,
    pub authorizer: portcullis_authorizer::Deps,
    /// Each function's configuration and opened stores, by function name
    /// (`login`, `mfa`, `refresh`, `admin`, `authorizer`).
    pub opened: HashMap<&'static str, (Config, Backends)>,
}

/// A test app on `backend` with the default configuration.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// A test app on `backend`, with these configuration pairs besides the
/// backend's own (limits, timeouts). Its clock starts at the current time and
/// moves only when the test moves it.
pub async fn spawn_app_with(backend: Backend, extra: &[(&str, String)]) -> TestApp {
    let db = match backend {
        Backend::Mysql | Backend::Cognito => Some(TestDb::create().await),
        Backend::Dynamo | Backend::Sqlite => None,
    };
    let pool = match backend {
        Backend::Cognito => Some(new_pool().await),
        _ => None,
    };
    let table = new_table().await;
    let keys = key_file();
    let embedded = std::env::temp_dir().join(format!("pc-app-{}.db", crate::helpers::hex_token()));
    let clock = ManualClock::new(portcullis_shared::clock::SystemClock.now_secs());
    let c: Arc<dyn Clock> = Arc::new(clock.clone());
    let env = |function: &str| {
        let mut pairs = vec![("PORTCULLIS_LOCAL_KEY_FILE", keys.clone())];
        match backend {
            Backend::Sqlite => {
                pairs.push(("PORTCULLIS_STORE", "sqlite".to_owned()));
                pairs.push(("PORTCULLIS_SQLITE_FILE", embedded.display().to_string()));
            }
            _ => {
                pairs.push(("PORTCULLIS_SESSION_STORE", "dynamodb".to_owned()));
                pairs.push(("PORTCULLIS_DYNAMODB_TABLE", table.clone()));
            }
        }
        if let Some(db) = &db {
            pairs.push(("PORTCULLIS_STORE", "mysql".to_owned()));
            pairs.push(("PORTCULLIS_DATABASE_URL", db.user_url(function)));
        }
        if let Some((pool, _)) = &pool {
            pairs.extend(crate::providers::cognito_settings(&pool.id, &pool.client_id));
        }
        pairs.extend(extra.iter().cloned());
        config(&pairs)
    };
    let mut opened = HashMap::new();
    // One memory store (or one file) stands for the one database every function shares.
    let shared = match backend {
        Backend::Dynamo | Backend::Sqlite => Some(Backends::open(&env("login")).await.expect("backends")),
        Backend::Mysql | Backend::Cognito => None,
    };
    for function in ["login", "mfa", "refresh", "admin", "authorizer"] {
        let cfg = env(function);
        let backends = match &shared {
            Some(backends) => backends.clone(),
            None => Backends::open(&cfg).await.expect("backends"),
        };
        opened.insert(function, (cfg, backends));
    }
    let (cfg, backends) = &opened["login"];
    let provider = key_provider(cfg).expect("keys");
    let login = portcullis_login::Deps::build(&Boot::new(cfg, backends, provider.clone(), c.clone()))
        .await
        .expect("login");
    // The first start creates the keys; the others then find them.
    login.keys.get().await.expect("signing key created");
    let (cfg, backends) = &opened["mfa"];
    let mfa = portcullis_mfa::Deps::build(&Boot::new(cfg, backends, provider.clone(), c.clone()))
        .await
        .expect("mfa");
    let (cfg, backends) = &opened["refresh"];
    let refresh = portcullis_refresh::Deps::build(&Boot::new(cfg, backends, provider.clone(), c.clone()))
        .await
        .expect("refresh");
    let (cfg, backends) = &opened["admin"];
    let admin = portcullis_admin::Deps::build(&Boot::new(cfg, backends, provider.clone(), c.clone()))
        .await
        .expect("admin");
    let (cfg, backends) = &opened["authorizer"];
    let authorizer = portcullis_authorizer::Deps::build(cfg, backends, c).await.expect("authorizer");
    TestApp { db, table, pool, clock, login, mfa, refresh, admin, authorizer, opened }
}

impl TestApp {
    /// The test's database; panics on a backend without one.
    pub fn db(&self) -> &TestDb {
        self.db.as_ref().expect("this backend has no database")
    }

    /// A new authorizer instance on the authorizer's configuration and stores,
    /// as a cold start builds it (no key read yet).
    pub async fn cold_authorizer(&self) -> portcullis_authorizer::Deps {
        let (cfg, backends) = &self.opened["authorizer"];
        let clock: Arc<dyn Clock> = Arc::new(self.clock.clone());
        portcullis_authorizer::Deps::build(cfg, backends, clock).await.expect("authorizer")
    }

    /// The stores a function opened.
    pub fn backends_of(&self, function: &str) -> &Backends {
        &self.opened[function].1
    }
}

/// A fresh user pool on moto's Cognito, with its client.
async fn new_pool() -> (crate::cognito::Pool, aws_sdk_cognitoidentityprovider::Client) {
    let client = aws_sdk_cognitoidentityprovider::Client::new(portcullis_shared::aws::aws_config().await);
    let pool = crate::cognito::pool(&client, &format!("pc-app-{}", crate::helpers::hex_token())).await;
    (pool, client)
}
