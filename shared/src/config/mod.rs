//! Typed configuration read once from the environment at cold start. A bad value
//! stops the process with a message naming the variable (fail fast).

mod areas;
#[cfg(test)]
mod tests;

use areas::*;
use secrecy::SecretString;
use std::path::PathBuf;

/// A configuration problem, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is required{why}")]
    Missing { var: &'static str, why: &'static str },
    #[error("{var} has an invalid value: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// Where users, roles and the audit trail live.
#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// In-process store, lost when the process ends: unit tests only.
    Memory,
    /// The embedded SQLite file (`Config::sqlite_file`): the local server's default.
    Sqlite,
    /// MySQL/MariaDB at this URL; with `password_secret`, the password (and user)
    /// come from that Secrets Manager secret, read at cold start, and the URL
    /// carries none (how the template deploys every function).
    Mysql { url: SecretString, password_secret: Option<String> },
}

/// Who holds the master key that wraps data keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBackend {
    /// A local master key file, created 0600 on first use (embedded mode).
    LocalFile { path: PathBuf },
    /// AWS KMS with this key id or ARN (the endpoint honours `AWS_ENDPOINT_URL`).
    Kms { key_id: String },
}

/// Where sessions and refresh-token families live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionBackend {
    /// In-process, lost when the process ends (unit tests only).
    Memory,
    /// The embedded SQLite file (`Config::sqlite_file`), beside the users.
    Sqlite,
    /// A DynamoDB table (endpoint from `AWS_ENDPOINT_URL` when set).
    Dynamo { table: String },
}

/// Where users live: our MySQL tables and tokens, or an Amazon Cognito user pool
/// (users, passwords and TOTP in the pool; sessions, throttling, audit and RBAC ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityBackend {
    Native,
    /// The pool, and the app client (the first of `PORTCULLIS_COGNITO_CLIENT_IDS`,
    /// without a secret) that signs users in.
    Cognito {
        pool_id: String,
        client_id: String,
    },
}

/// The whole configuration of a Portcullis process.
#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreBackend,
    pub keys: KeyBackend,
    pub sessions: SessionBackend,
    /// The embedded database file (`PORTCULLIS_SQLITE_FILE`), used by whichever
    /// of `store` and `sessions` is `Sqlite`.
    pub sqlite_file: PathBuf,
    /// Idle and absolute session timeouts.
    pub session_idle_secs: u64,
    pub session_absolute_secs: u64,
    /// `iss` of the tokens we issue and the only issuer we accept.
    pub issuer: String,
    /// `aud` of the tokens we issue and accept.
    pub audience: String,
    pub access_token_ttl_secs: u64,
    /// How recent an authentication a sensitive change needs (`PORTCULLIS_REAUTH_MAX_AGE_SECS`).
    pub reauth_max_age_secs: u64,
    pub password_min_length: usize,
    /// Base URL of a Have I Been Pwned compatible range API; `None` disables the check.
    pub hibp_url: Option<String>,
    /// The deployment's access-control policy (`PORTCULLIS_POLICY_FILE`); `None`
    /// is the bundled `infra/rbac.json`.
    pub policy_file: Option<PathBuf>,
    pub max_body_bytes: usize,
    /// Per-account and per-source-IP attempt limits.
    pub account_limit: crate::throttle::Limit,
    pub ip_limit: crate::throttle::Limit,
    /// A Cognito user pool whose tokens the authorizer also accepts.
    pub cognito: Option<crate::cognito::CognitoConfig>,
    /// Where users, passwords and second factors live (`PORTCULLIS_IDENTITY_PROVIDER`).
    pub identity: IdentityBackend,
    /// The PEM certificates MySQL's server certificate must chain to
    /// (`PORTCULLIS_DATABASE_CA_FILE`, for RDS its CA bundle). When set, TLS is
    /// required and only these roots are trusted.
    pub database_ca: Option<std::sync::Arc<[u8]>>,
    /// Where backups go (the backup function and `portcullis backup`).
    pub backup: BackupConfig,
    /// The administrator the local server creates at its first start, if absent.
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// Security mail (`PORTCULLIS_MAIL_*`).
    pub mail: MailSettings,
    /// Whether this process is a Lambda function: `AWS_LAMBDA_RUNTIME_API` is set, the
    /// signal the runtime client (and the notes example) go by.
    pub in_lambda: bool,
}

/// Security mail: what messages say and how they leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// Product name, sender and link base of every message.
    pub message: crate::mail::MailConfig,
    pub transport: MailTransport,
}

/// How the mail a request causes leaves it (never on the request path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTransport {
    /// An SQS queue the `notify` function reads (`PORTCULLIS_MAIL_QUEUE_URL`).
    Queue { url: String },
    /// The local server's outbox folder (`PORTCULLIS_MAIL_OUTBOX_DIR`), written
    /// by a background task; refused in a Lambda function, whose instance may
    /// be frozen with the task's messages unsent.
    Outbox { dir: PathBuf },
}

/// Where backups go.
#[derive(Debug, Clone, Default)]
pub struct BackupConfig {
    /// The S3 bucket (`PORTCULLIS_BACKUP_BUCKET`).
    pub bucket: Option<String>,
    /// The KMS key S3 encrypts the objects with (`PORTCULLIS_BACKUP_KMS_KEY_ID`).
    pub kms_key_id: Option<String>,
    /// A local folder instead of S3 (`PORTCULLIS_BACKUP_DIR`, the command line only).
    pub dir: Option<PathBuf>,
}

/// `PORTCULLIS_BOOTSTRAP_ADMIN_EMAIL` and `PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD`,
/// both set: the local server's first administrator. Local use only; the
/// password is checked against the policy like any other.
#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    pub email: String,
    pub password: SecretString,
}

/// `PORTCULLIS_LOG`: the log filter, read before the rest of the configuration
/// (logging starts first, so a bad configuration can be logged).
pub fn log_filter() -> Option<String> {
    std::env::var("PORTCULLIS_LOG").ok().filter(|v| !v.trim().is_empty())
}

/// `PORTCULLIS_AWS_CA_BUNDLE`: a PEM bundle an AWS endpoint may also chain to
/// (a TLS-inspecting proxy, a private emulator), read where the process's one
/// AWS HTTP client is built.
pub fn aws_ca_bundle() -> Option<String> {
    std::env::var("PORTCULLIS_AWS_CA_BUNDLE").ok().filter(|v| !v.trim().is_empty())
}

impl IdentityBackend {
    /// True when accounts are Portcullis' own (not a pool's).
    pub fn is_native(&self) -> bool {
        matches!(self, Self::Native)
    }
}

impl Config {
    /// Reads every `PORTCULLIS_*` variable; `docs/configuration.md` has the table.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same as [`Config::from_env`] over any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let store = store_backend(&get)?;
        let sessions = session_backend(&get, &store)?;
        let (session_idle_secs, session_absolute_secs) = session_timeouts(&get)?;
        let cognito = cognito_pool(&get)?;
        let identity = identity_backend(&get, cognito.as_ref())?;
        let (account_limit, ip_limit) = attempt_limits(&get)?;
        Ok(Self {
            store,
            keys: key_backend(&get)?,
            sessions,
            sqlite_file: get("PORTCULLIS_SQLITE_FILE")
                .unwrap_or_else(|| ".portcullis/portcullis.db".into())
                .into(),
            session_idle_secs,
            session_absolute_secs,
            issuer: get("PORTCULLIS_ISSUER").unwrap_or_else(|| "portcullis".into()),
            audience: get("PORTCULLIS_AUDIENCE").unwrap_or_else(|| "portcullis".into()),
            access_token_ttl_secs: number(&get, "PORTCULLIS_ACCESS_TOKEN_TTL_SECS", 900, 60, 86_400)?,
            reauth_max_age_secs: number(&get, "PORTCULLIS_REAUTH_MAX_AGE_SECS", 300, 30, 86_400)?,
            password_min_length: number(&get, "PORTCULLIS_PASSWORD_MIN_LENGTH", 12, 8, 64)? as usize,
            hibp_url: breach_service(&get)?,
            policy_file: get("PORTCULLIS_POLICY_FILE").filter(|f| !f.trim().is_empty()).map(PathBuf::from),
            max_body_bytes: number(&get, "PORTCULLIS_MAX_BODY_BYTES", 16 * 1024, 1024, 1 << 20)? as usize,
            account_limit,
            ip_limit,
            cognito,
            identity,
            database_ca: get("PORTCULLIS_DATABASE_CA_FILE").map(|path| read_ca_file(&path)).transpose()?,
            backup: BackupConfig {
                bucket: get("PORTCULLIS_BACKUP_BUCKET"),
                kms_key_id: get("PORTCULLIS_BACKUP_KMS_KEY_ID"),
                dir: get("PORTCULLIS_BACKUP_DIR").map(PathBuf::from),
            },
            bootstrap_admin: bootstrap_admin(&get),
            mail: mail_settings(&get)?,
            in_lambda: get("AWS_LAMBDA_RUNTIME_API").is_some(),
        })
    }

    /// The configuration of a command given a database URL on its command line:
    /// only `PORTCULLIS_DATABASE_CA_FILE` is read, the rest is the defaults.
    pub fn database_ca_only() -> Result<Self, ConfigError> {
        let wanted = "PORTCULLIS_DATABASE_CA_FILE";
        Self::from_lookup(|name| (name == wanted).then(|| std::env::var(name).ok()).flatten())
    }

    /// The MySQL connection options: the URL, and the CA bundle if one is configured.
    pub fn mysql_opts(&self, url: &SecretString) -> Result<mysql_async::Opts, crate::store::StoreError> {
        crate::adapters::mysql::mysql_opts(url, self.database_ca.as_deref())
    }

    /// Lambda functions need shared, durable state: refuse the in-memory and the
    /// embedded stores there (an instance's own file is neither shared nor kept).
    pub fn require_durable_store(&self) -> Result<(), ConfigError> {
        if !matches!(self.store, StoreBackend::Mysql { .. }) {
            return Err(ConfigError::Missing {
                var: "PORTCULLIS_STORE",
                why: " to be `mysql` in a Lambda function (`sqlite` and `memory` are for the local server)",
            });
        }
        if !matches!(self.sessions, SessionBackend::Dynamo { .. }) {
            return Err(ConfigError::Missing {
                var: "PORTCULLIS_SESSION_STORE",
                why:
                    " to be `dynamodb` in a Lambda function (`sqlite` and `memory` are for the local server)",
            });
        }
        Ok(())
    }

    /// The session timeouts as a policy.
    pub fn session_policy(&self) -> crate::sessions::SessionPolicy {
        crate::sessions::SessionPolicy {
            idle_secs: self.session_idle_secs as i64,
            absolute_secs: self.session_absolute_secs as i64,
        }
    }
}
