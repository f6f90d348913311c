//! Cold-start wiring shared by every function and the local server: opens the
//! configured stores and key provider once, so warm invocations reuse them.

use crate::adapters::dynamo::{
    DynamoApiKeyStore, DynamoChallengeStore, DynamoCounterStore, DynamoSessionStore,
};
use crate::adapters::memory::{
    MemoryApiKeyStore, MemoryChallengeStore, MemoryCounterStore, MemorySessionStore, MemoryStore,
};
use crate::adapters::mysql::MySqlStore;
use crate::apikeys::ApiKeyStore;
use crate::audit::AuditStore;
use crate::aws::{aws_config, AwsClient};
use crate::clock::Clock;
use crate::config::{Config, KeyBackend, SessionBackend, StoreBackend};
use crate::crypto::{KeyProvider, KmsKeyProvider, LocalKeyProvider};
use crate::error::BootError;
use crate::sessions::SessionStore;
use crate::store::{KeyMaterialStore, UserStore};
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The opened stores; one object may serve several ports.
#[derive(Clone)]
pub struct Backends {
    pub users: Arc<dyn UserStore>,
    pub audit: Arc<dyn AuditStore>,
    pub keys: Arc<dyn KeyMaterialStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub api_keys: Arc<dyn ApiKeyStore>,
    pub challenges: Arc<dyn crate::mfa::ChallengeStore>,
    pub counters: Arc<dyn crate::throttle::CounterStore>,
    pub mfa: Arc<dyn crate::store::MfaStore>,
    /// Set with the in-memory store, for inspection by tests.
    pub memory: Option<Arc<MemoryStore>>,
    /// Set when backed by MySQL.
    pub mysql: Option<MySqlStore>,
}

impl Backends {
    /// Opens the configured stores. MySQL connections are made lazily by the
    /// pool; the embedded file is opened (and its schema migrated) here, once.
    pub async fn open(config: &Config) -> Result<Self, BootError> {
        type Dynamic = (
            Arc<dyn SessionStore>,
            Arc<dyn ApiKeyStore>,
            Arc<dyn crate::mfa::ChallengeStore>,
            Arc<dyn crate::throttle::CounterStore>,
        );
        let embedded = open_embedded(config).await?;
        let from_embedded =
            || embedded.clone().ok_or_else(|| BootError("the embedded store was not opened".into()));
        let (sessions, api_keys, challenges, counters): Dynamic = match &config.sessions {
            SessionBackend::Memory => (
                Arc::new(MemorySessionStore::new()),
                Arc::new(MemoryApiKeyStore::default()),
                Arc::new(MemoryChallengeStore::default()),
                Arc::new(MemoryCounterStore::default()),
            ),
            SessionBackend::Sqlite => {
                let b = from_embedded()?;
                (b.sessions, b.api_keys, b.challenges, b.counters)
            }
            SessionBackend::Dynamo { table } => {
                let client = AwsClient::lazy();
                (
                    Arc::new(DynamoSessionStore::new(client.clone(), table.clone())),
                    Arc::new(DynamoApiKeyStore::new(client.clone(), table.clone())),
                    Arc::new(DynamoChallengeStore::new(client.clone(), table.clone())),
                    Arc::new(DynamoCounterStore::new(client, table.clone())),
                )
            }
        };
        let backends = match &config.store {
            StoreBackend::Memory => Ok(Self::memory(Arc::new(MemoryStore::new()), sessions)),
            StoreBackend::Sqlite => Ok(Self { sessions, ..from_embedded()? }),
            StoreBackend::Mysql { .. } => {
                // A Lambda instance serves one request at a time: a few connections suffice.
                let store = MySqlStore::connect(database_opts(config).await?, 4)
                    .map_err(|e| BootError::from_error("PORTCULLIS_DATABASE_URL", &e))?;
                Ok(Self::mysql(store, sessions))
            }
        };
        backends.map(|b| Self { api_keys, challenges, counters, ..b })
    }

    /// The stores the native identity provider works on.
    pub fn native_stores(&self) -> crate::identity::NativeStores {
        crate::identity::NativeStores {
            users: self.users.clone(),
            mfa: self.mfa.clone(),
            challenges: self.challenges.clone(),
            sessions: self.sessions.clone(),
        }
    }

    /// Every port served by one SQLite file.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(store: crate::adapters::sqlite::SqliteStore) -> Self {
        let store = Arc::new(store);
        Self {
            users: store.clone(),
            audit: store.clone(),
            keys: store.clone(),
            sessions: store.clone(),
            api_keys: store.clone(),
            challenges: store.clone(),
            counters: store.clone(),
            mfa: store,
            memory: None,
            mysql: None,
        }
    }

    pub fn memory(store: Arc<MemoryStore>, sessions: Arc<dyn SessionStore>) -> Self {
        Self {
            users: store.clone(),
            audit: store.clone(),
            keys: store.clone(),
            sessions,
            api_keys: Arc::new(MemoryApiKeyStore::default()),
            challenges: Arc::new(MemoryChallengeStore::default()),
            counters: Arc::new(MemoryCounterStore::default()),
            mfa: store.clone(),
            memory: Some(store),
            mysql: None,
        }
    }

    pub fn mysql(store: MySqlStore, sessions: Arc<dyn SessionStore>) -> Self {
        let shared = Arc::new(store.clone());
        Self {
            users: shared.clone(),
            audit: shared.clone(),
            keys: shared.clone(),
            sessions,
            api_keys: Arc::new(MemoryApiKeyStore::default()),
            challenges: Arc::new(MemoryChallengeStore::default()),
            counters: Arc::new(MemoryCounterStore::default()),
            mfa: shared,
            memory: None,
            mysql: Some(store),
        }
    }
}

/// The embedded store's ports, when the users or the sessions live in it
/// (`PORTCULLIS_SQLITE_FILE`). A build without the `sqlite` feature (the Lambda
/// functions) refuses to start rather than fall back to another store.
async fn open_embedded(config: &Config) -> Result<Option<Backends>, BootError> {
    let wanted =
        matches!(config.store, StoreBackend::Sqlite) || matches!(config.sessions, SessionBackend::Sqlite);
    if !wanted {
        return Ok(None);
    }
    #[cfg(feature = "sqlite")]
    {
        let now = crate::clock::Clock::now_secs(&crate::clock::SystemClock);
        let store = crate::adapters::sqlite::SqliteStore::open(&config.sqlite_file, now)
            .await
            .map_err(|e| BootError::from_error("PORTCULLIS_SQLITE_FILE", &e))?;
        Ok(Some(Backends::sqlite(store)))
    }
    #[cfg(not(feature = "sqlite"))]
    Err(BootError("PORTCULLIS_SQLITE_FILE: this build has no embedded store (feature `sqlite`)".into()))
}

/// Database credentials by secret ARN, each read once per process: the first
/// call fetches (a failed fetch is tried again by the next call), later ones
/// reuse it. The pool keeps the options built from it for the process lifetime.
static DATABASE_SECRETS: std::sync::Mutex<
    std::collections::BTreeMap<
        String,
        Arc<OnceCell<crate::adapters::mysql::credentials::DatabaseCredentials>>,
    >,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The credentials in the Secrets Manager secret `arn` (endpoint from
/// `AWS_ENDPOINT_URL` when set), cached for the process lifetime.
pub async fn database_credentials(
    arn: &str,
) -> Result<crate::adapters::mysql::credentials::DatabaseCredentials, BootError> {
    let var = "PORTCULLIS_DATABASE_PASSWORD_SECRET";
    let cell = DATABASE_SECRETS
        .lock()
        .map_err(|_| BootError(format!("{var}: secret cache poisoned")))?
        .entry(arn.to_owned())
        .or_default()
        .clone();
    let read = cell
        .get_or_try_init(|| async {
            let client = aws_sdk_secretsmanager::Client::new(aws_config().await);
            crate::adapters::mysql::credentials::read_credentials(&client, arn).await
        })
        .await;
    read.cloned().map_err(|e| BootError::from_error(var, &e))
}

/// The MySQL connection options of this process: `PORTCULLIS_DATABASE_URL` (and
/// the CA bundle), with the password from `PORTCULLIS_DATABASE_PASSWORD_SECRET`
/// when that names a secret.
pub async fn database_opts(config: &Config) -> Result<mysql_async::Opts, BootError> {
    let StoreBackend::Mysql { url, password_secret } = &config.store else {
        return Err(BootError("PORTCULLIS_STORE must be `mysql`".into()));
    };
    let opts = config.mysql_opts(url).map_err(|e| BootError::from_error("PORTCULLIS_DATABASE_URL", &e))?;
    match password_secret {
        None => Ok(opts),
        Some(arn) => {
            let credentials = database_credentials(arn).await?;
            Ok(crate::adapters::mysql::credentials::with_credentials(opts, &credentials))
        }
    }
}

/// The configured identity provider: the native one over the opened stores,
/// or a Cognito user pool.
pub fn identity_provider(
    config: &Config,
    backends: &Backends,
) -> Result<Arc<dyn crate::identity::IdentityProvider>, BootError> {
    use crate::identity::{AppClient, CognitoProvider, NativeProvider};
    Ok(match &config.identity {
        crate::config::IdentityBackend::Native => {
            let hasher = crate::crypto::PasswordHasher::new()
                .map_err(|e| BootError::from_error("password hasher", &e))?;
            Arc::new(NativeProvider::new(backends.native_stores(), config.session_policy(), hasher))
        }
        crate::config::IdentityBackend::Cognito { pool_id, client_id } => {
            let app = AppClient::new(AwsClient::lazy(), pool_id.clone(), client_id.clone());
            Arc::new(CognitoProvider::new(app, backends.sessions.clone(), config.session_policy()))
        }
    })
}

/// The queue security mail leaves through: the configured SQS queue, or the
/// local server's outbox folder behind a background task (started here, on the
/// current runtime). A Lambda function without a queue stops at cold start: a
/// frozen instance would hold its messages unsent.
pub async fn mail_queue(config: &Config) -> Result<Arc<dyn crate::mail::MailQueue>, BootError> {
    use crate::config::MailTransport;
    match &config.mail.transport {
        MailTransport::Queue { url } => {
            let client = aws_sdk_sqs::Client::new(aws_config().await);
            Ok(Arc::new(crate::mail::queue::Sqs::new(client, url.clone())))
        }
        MailTransport::Outbox { .. } if config.in_lambda => Err(BootError(
            "PORTCULLIS_MAIL_QUEUE_URL is required in a Lambda function (the outbox is for the local server)"
                .into(),
        )),
        MailTransport::Outbox { dir } => {
            let outbox = Arc::new(crate::mail::outbox::Outbox::new(dir.clone()));
            Ok(Arc::new(crate::mail::queue::Background::start(outbox, Default::default())))
        }
    }
}

/// The configured key provider: KMS (endpoint from `AWS_ENDPOINT_URL` when set) or the local file.
pub fn key_provider(config: &Config) -> Result<Arc<dyn KeyProvider>, BootError> {
    match &config.keys {
        KeyBackend::LocalFile { path } => LocalKeyProvider::open_or_create(path)
            .map(|p| Arc::new(p) as Arc<dyn KeyProvider>)
            .map_err(|e| BootError::from_error("PORTCULLIS_LOCAL_KEY_FILE", &e)),
        KeyBackend::Kms { key_id } => Ok(Arc::new(KmsKeyProvider::new(AwsClient::lazy(), key_id.clone()))),
    }
}

/// The token issuer of a function that signs tokens (login, refresh, mfa): the
/// current signing key, unwrapped once at cold start (creating it on first start).
pub async fn token_issuer(
    config: &Config,
    backends: &Backends,
    provider: &dyn KeyProvider,
    clock: Arc<dyn crate::clock::Clock>,
) -> Result<crate::tokens::TokenIssuer, BootError> {
    let signing = crate::crypto::load_signing_key(backends.keys.as_ref(), provider, clock.now_secs())
        .await
        .map_err(|e| BootError::from_error("token-signing key", &e))?;
    Ok(crate::tokens::TokenIssuer::new(
        &signing,
        config.issuer.clone(),
        config.audience.clone(),
        config.access_token_ttl_secs,
        clock,
    ))
}

/// The freshness policy of token-signing keys held by a warm process.
pub fn key_max_age(clock: &Arc<dyn crate::clock::Clock>) -> crate::deferred::MaxAge {
    crate::deferred::MaxAge {
        clock: clock.clone(),
        recheck_secs: crate::crypto::KEY_RECHECK_SECS,
        trust_secs: crate::crypto::KEY_TRUST_SECS,
    }
}

/// The attempt limiter of a function that checks credentials.
pub fn throttle(
    config: &Config,
    backends: &Backends,
    clock: Arc<dyn crate::clock::Clock>,
) -> crate::throttle::Throttle {
    crate::throttle::Throttle {
        store: backends.counters.clone(),
        account: config.account_limit,
        ip: config.ip_limit,
        clock,
    }
}

/// The field cipher of a function that reads or writes encrypted personal data
/// (login, mfa, admin): the field-encryption data key, unwrapped once at cold start.
pub async fn field_cipher(
    backends: &Backends,
    provider: &dyn KeyProvider,
    now: i64,
) -> Result<crate::crypto::FieldCipher, BootError> {
    crate::crypto::load_field_cipher(backends.keys.as_ref(), provider, now)
        .await
        .map_err(|e| BootError::from_error("field-encryption key", &e))
}

/// What a function is built from at cold start: its configuration, the stores
/// it opened, its key provider and its clock. Its key loaders get a copy each.
#[derive(Clone)]
pub struct Boot {
    pub config: Config,
    pub backends: Backends,
    pub provider: Arc<dyn KeyProvider>,
    pub clock: Arc<dyn Clock>,
}

impl Boot {
    pub fn new(
        config: &Config,
        backends: &Backends,
        provider: Arc<dyn KeyProvider>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { config: config.clone(), backends: backends.clone(), provider, clock }
    }

    /// Starts `load` in the background from cold start on (see [`crate::deferred`]).
    pub fn prefetch<T, F, Fut>(self, load: F) -> crate::deferred::Deferred<T>
    where
        T: Send + Sync + 'static,
        F: Fn(Boot) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, BootError>> + Send + 'static,
    {
        crate::deferred::Deferred::prefetch(move || load(self.clone()))
    }

    /// Like [`Boot::prefetch`], for key material that must stay current:
    /// rechecked once it is [`KEY_RECHECK_SECS`](crate::crypto::KEY_RECHECK_SECS)
    /// old, refused once it could not be rechecked for
    /// [`KEY_TRUST_SECS`](crate::crypto::KEY_TRUST_SECS). `load` gets the value
    /// it loaded last, to keep what has not changed.
    pub fn prefetch_current<T, F, Fut>(self, load: F) -> crate::deferred::Deferred<T>
    where
        T: Send + Sync + 'static,
        F: Fn(Boot, Option<Arc<T>>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Arc<T>, BootError>> + Send + 'static,
    {
        let max_age = key_max_age(&self.clock);
        crate::deferred::Deferred::prefetch_current(max_age, move |current| load(self.clone(), current))
    }

    /// The token issuer for the current signing key: `previous` when it still
    /// signs with that key (one read of the key table's public columns), else a
    /// new one ([`Boot::tokens`]). Fails rather than sign with a revoked key.
    pub async fn current_tokens(
        &self,
        previous: Option<&Arc<crate::tokens::TokenIssuer>>,
    ) -> Result<Arc<crate::tokens::TokenIssuer>, BootError> {
        if let Some(previous) = previous {
            let current = crate::crypto::current_signing_kid(self.backends.keys.as_ref())
                .await
                .map_err(|e| BootError::from_error("token-signing key", &e))?;
            if current.as_deref() == Some(previous.kid()) {
                return Ok(previous.clone());
            }
            // The table answered: the key held is no longer current (revoked or
            // retired). Whatever the next load does, it must not be used again.
            return self.tokens().await.map(Arc::new).map_err(|e| {
                BootError::refused(format_args!(
                    "the held signing key {} is no longer current: {}",
                    previous.kid(),
                    e.0
                ))
            });
        }
        self.tokens().await.map(Arc::new)
    }

    /// The field-encryption cipher ([`field_cipher`]).
    pub async fn fields(&self) -> Result<crate::crypto::FieldCipher, BootError> {
        field_cipher(&self.backends, self.provider.as_ref(), self.clock.now_secs()).await
    }

    /// The field cipher a recheck keeps (it is not revoked like a signing
    /// key), else the one unwrapped now.
    pub async fn fields_kept(
        &self,
        previous: Option<&Arc<crate::crypto::FieldCipher>>,
    ) -> Result<Arc<crate::crypto::FieldCipher>, BootError> {
        match previous {
            Some(previous) => Ok(previous.clone()),
            None => Ok(Arc::new(self.fields().await?)),
        }
    }

    /// The token issuer ([`token_issuer`]; creates the signing key on the very first start).
    pub async fn tokens(&self) -> Result<crate::tokens::TokenIssuer, BootError> {
        token_issuer(&self.config, &self.backends, self.provider.as_ref(), self.clock.clone()).await
    }
}

#[cfg(test)]
mod tests {
    /// Off the local server, mail needs a queue that outlives the instance.
    #[tokio::test]
    async fn a_lambda_function_without_a_mail_queue_stops_naming_it() {
        let lambda = |name: &str| (name == "AWS_LAMBDA_RUNTIME_API").then(|| "127.0.0.1:9001".to_owned());
        let config = crate::config::Config::from_lookup(lambda).expect("valid");
        match super::mail_queue(&config).await {
            Ok(_) => panic!("a Lambda function would keep its mail in a task the runtime freezes"),
            Err(e) => assert!(e.0.contains("PORTCULLIS_MAIL_QUEUE_URL"), "{e}"),
        }
    }

    /// The local server's default: each message becomes a file in the outbox.
    #[tokio::test]
    async fn the_local_default_queue_writes_the_outbox() {
        let outbox = std::env::temp_dir().join(format!("pc-queue-{}", uuid::Uuid::new_v4())).join("outbox");
        let path = outbox.to_string_lossy().into_owned();
        let get = |name: &str| (name == "PORTCULLIS_MAIL_OUTBOX_DIR").then(|| path.clone());
        let config = crate::config::Config::from_lookup(get).expect("valid");
        let queue = super::mail_queue(&config).await.expect("the outbox");
        let message = crate::mail::templates::Message::VerifyEmail { token: "t0k3n", hours: 24 };
        let mail = crate::mail::templates::render(&config.mail.message, "ada@example.com", &message);
        let id = mail.id.clone();
        queue.enqueue(mail).await.expect("queued");
        let file = outbox.join(format!("{id}.eml"));
        for _ in 0..200 {
            if file.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let eml = std::fs::read_to_string(&file).expect("the message's file");
        assert!(eml.contains("http://127.0.0.1:8080/account/verify-email#token=t0k3n"), "{eml}");
        let _ = std::fs::remove_dir_all(outbox.parent().expect("its folder"));
    }

    /// The Lambda functions are built without the embedded store: a default
    /// configuration stops their start instead of choosing another store.
    #[cfg(not(feature = "sqlite"))]
    #[tokio::test]
    async fn a_build_without_the_embedded_store_refuses_to_open_it() {
        let config = crate::config::Config::from_lookup(|_| None).expect("defaults");
        match super::Backends::open(&config).await {
            Ok(_) => panic!("opened a store that this build does not have"),
            Err(e) => assert!(e.0.contains("PORTCULLIS_SQLITE_FILE"), "{e}"),
        }
    }
}
