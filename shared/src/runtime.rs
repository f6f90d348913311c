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
use crate::config::{Config, KeyBackend, SessionBackend, StoreBackend};
use crate::crypto::{KeyProvider, KmsKeyProvider, LocalKeyProvider};
use crate::sessions::SessionStore;
use crate::store::{AuditStore, KeyMaterialStore, UserStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

static AWS: OnceCell<aws_config::SdkConfig> = OnceCell::const_new();

/// The AWS SDK configuration, loaded once per process: standard retries (3
/// attempts with backoff) and timeouts, so an unreachable or throttling service
/// turns into a bounded wait and then a 503, never a hung invocation.
pub async fn aws_config() -> &'static aws_config::SdkConfig {
    AWS.get_or_init(|| async {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_millis(500))
            .operation_attempt_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(5))
            .build();
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(aws_http_client())
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
            .load()
            .await
    })
    .await
}

/// An AWS SDK client whose configuration ([`aws_config`]: the credential and
/// region chains, the TLS context) is built by the first call that needs it,
/// not at cold start: a request that never reaches the service (a missing
/// token, a health check) never pays for it. Building it is CPU work, not I/O,
/// so starting it in the background would gain nothing on a Lambda instance's
/// single vCPU (measured: it delayed the first response as much). Clones share
/// one client.
pub struct AwsClient<C> {
    cell: Arc<OnceCell<C>>,
}

/// The SDK clients built from the process's [`aws_config`].
pub trait SdkClient: Send + Sync + 'static {
    fn from_sdk_config(config: &aws_config::SdkConfig) -> Self;
}

impl SdkClient for aws_sdk_dynamodb::Client {
    fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(config)
    }
}

impl SdkClient for aws_sdk_kms::Client {
    fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(config)
    }
}

impl SdkClient for aws_sdk_secretsmanager::Client {
    fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(config)
    }
}

impl SdkClient for aws_sdk_cognitoidentityprovider::Client {
    fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(config)
    }
}

impl<C> Clone for AwsClient<C> {
    fn clone(&self) -> Self {
        Self { cell: self.cell.clone() }
    }
}

impl<C: SdkClient> AwsClient<C> {
    /// A client built from the process's [`aws_config`] on first use.
    pub fn lazy() -> Self {
        Self { cell: Arc::new(OnceCell::new()) }
    }

    /// The client, built on the first call (building cannot fail: credentials resolve per request).
    pub async fn get(&self) -> &C {
        self.cell.get_or_init(|| async { C::from_sdk_config(aws_config().await) }).await
    }
}

/// A client that is already built (tests, the command-line tool).
impl<C: SdkClient> From<C> for AwsClient<C> {
    fn from(client: C) -> Self {
        Self { cell: Arc::new(OnceCell::new_with(Some(client))) }
    }
}

/// The roots AWS service endpoints chain to (Amazon Trust Services, and the
/// Starfield root that cross-signs them), compiled in.
const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// The HTTPS client of every AWS SDK client: rustls on aws-lc-rs trusting only
/// the Amazon Trust Services roots, plus the PEM bundle named by
/// `PORTCULLIS_AWS_CA_BUNDLE` for an endpoint behind another CA (a TLS-inspecting
/// proxy, a private emulator). Trusting a five-root list instead of the system
/// store narrows who can impersonate KMS, and skips reading and parsing every
/// file of `/etc/ssl/certs` at cold start (about 5 ms).
fn aws_http_client() -> aws_sdk_kms::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let mut trust = TrustStore::empty().with_native_roots(false).with_pem_certificate(AMAZON_TRUST_SERVICES);
    if let Ok(path) = std::env::var("PORTCULLIS_AWS_CA_BUNDLE") {
        match std::fs::read(&path) {
            Ok(pem) => trust.add_pem_certificate(pem),
            // Fail closed: without the bundle, that endpoint is simply not trusted.
            Err(e) => {
                tracing::error!(path, error = %e, "PORTCULLIS_AWS_CA_BUNDLE unreadable; not trusted");
                &mut trust
            }
        };
    }
    // `build` cannot fail (it only moves its fields); a fallback to the default
    // context would mean the system store, so there is none.
    let context = TlsContext::builder().with_trust_store(trust).build().expect("TLS context");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

/// A failure at cold start: the process must not serve.
#[derive(Debug, thiserror::Error)]
#[error("startup failed: {0}")]
pub struct BootError(pub String);

/// Marks a [`BootError`] that is an answer, not an outage (see [`BootError::refused`]).
const REFUSAL: &str = "refused: ";

impl BootError {
    pub fn from_error(context: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        Self(format!("{context}: {}", crate::http::error_chain(err)))
    }

    /// A load that read what it needed and was told no (the key it holds was
    /// revoked or retired): a value kept from before must not stand in for it,
    /// unlike after an outage (`crate::deferred::MaxAge`).
    pub fn refused(what: impl std::fmt::Display) -> Self {
        Self(format!("{REFUSAL}{what}"))
    }

    /// True for [`BootError::refused`].
    pub fn is_refusal(&self) -> bool {
        self.0.starts_with(REFUSAL)
    }
}

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
    /// Set in the embedded mode, for inspection by the local server and tests.
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
            Arc::new(NativeProvider::new(config, backends, hasher))
        }
        crate::config::IdentityBackend::Cognito { pool_id, client_id } => {
            let app = AppClient::new(AwsClient::lazy(), pool_id.clone(), client_id.clone());
            Arc::new(CognitoProvider::new(app, backends.sessions.clone(), config.session_policy()))
        }
    })
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

/// What a function's key loader works from; each load attempt gets a copy.
#[derive(Clone)]
pub struct KeySource {
    pub config: Config,
    pub backends: Backends,
    pub provider: Arc<dyn KeyProvider>,
    pub clock: Arc<dyn crate::clock::Clock>,
}

impl KeySource {
    pub fn new(
        config: &Config,
        backends: &Backends,
        provider: Arc<dyn KeyProvider>,
        clock: &Arc<dyn crate::clock::Clock>,
    ) -> Self {
        Self { config: config.clone(), backends: backends.clone(), provider, clock: clock.clone() }
    }

    /// Starts `load` in the background from cold start on (see [`crate::deferred`]).
    pub fn prefetch<T, F, Fut>(self, load: F) -> crate::deferred::Deferred<T>
    where
        T: Send + Sync + 'static,
        F: Fn(KeySource) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, BootError>> + Send + 'static,
    {
        crate::deferred::Deferred::prefetch(move || load(self.clone()))
    }

    /// Like [`KeySource::prefetch`], for key material that must stay current:
    /// rechecked once it is [`KEY_RECHECK_SECS`](crate::crypto::KEY_RECHECK_SECS)
    /// old, refused once it could not be rechecked for
    /// [`KEY_TRUST_SECS`](crate::crypto::KEY_TRUST_SECS). `load` gets the value
    /// it loaded last, to keep what has not changed.
    pub fn prefetch_current<T, F, Fut>(self, load: F) -> crate::deferred::Deferred<T>
    where
        T: Send + Sync + 'static,
        F: Fn(KeySource, Option<Arc<T>>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Arc<T>, BootError>> + Send + 'static,
    {
        let max_age = key_max_age(&self.clock);
        crate::deferred::Deferred::prefetch_current(max_age, move |current| load(self.clone(), current))
    }

    /// The token issuer for the current signing key: `previous` when it still
    /// signs with that key (one read of the key table's public columns), else a
    /// new one ([`KeySource::tokens`]). Fails rather than sign with a revoked key.
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

    /// The token issuer ([`token_issuer`]; creates the signing key on the very first start).
    pub async fn tokens(&self) -> Result<crate::tokens::TokenIssuer, BootError> {
        token_issuer(&self.config, &self.backends, self.provider.as_ref(), self.clock.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::{pem::PemObject, CertificateDer};

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

    #[tokio::test]
    async fn a_lazy_client_is_built_once_on_first_use_and_shared_by_clones() {
        let lazy = super::AwsClient::<aws_sdk_dynamodb::Client>::lazy();
        assert!(lazy.cell.get().is_none(), "nothing is built before the first call");
        let copy = lazy.clone();
        let first: *const _ = copy.get().await;
        assert!(lazy.cell.get().is_some());
        assert!(std::ptr::eq(first, lazy.get().await), "clones share one client");
    }

    #[test]
    fn the_compiled_in_trust_store_holds_the_five_amazon_roots() {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(super::AMAZON_TRUST_SERVICES)
            .collect::<Result<_, _>>()
            .expect("PEM");
        assert_eq!(certs.len(), 5);
        let mut roots = rustls::RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(certs);
        assert_eq!((added, ignored), (5, 0));
    }
}
