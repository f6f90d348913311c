//! Typed configuration read once from the environment at cold start. A bad value
//! stops the process with a message naming the variable (fail fast).

use secrecy::{ExposeSecret, SecretString};
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
        let keys = match get("PORTCULLIS_KEY_PROVIDER").as_deref().unwrap_or("local") {
            "local" => KeyBackend::LocalFile {
                path: get("PORTCULLIS_LOCAL_KEY_FILE")
                    .unwrap_or_else(|| ".portcullis/master.key".into())
                    .into(),
            },
            "kms" => KeyBackend::Kms {
                key_id: get("PORTCULLIS_KMS_KEY_ID").ok_or(ConfigError::Missing {
                    var: "PORTCULLIS_KMS_KEY_ID",
                    why: " when PORTCULLIS_KEY_PROVIDER=kms",
                })?,
            },
            other => {
                return Err(ConfigError::Invalid {
                    var: "PORTCULLIS_KEY_PROVIDER",
                    reason: format!("`{other}` is neither `local` nor `kms`"),
                })
            }
        };
        let sessions = session_backend(&get, &store)?;
        let session_idle_secs = number(&get, "PORTCULLIS_SESSION_IDLE_SECS", 1800, 60, 86_400)?;
        let session_absolute_secs =
            number(&get, "PORTCULLIS_SESSION_ABSOLUTE_SECS", 43_200, 300, 30 * 86_400)?;
        if session_idle_secs > session_absolute_secs {
            return Err(ConfigError::Invalid {
                var: "PORTCULLIS_SESSION_IDLE_SECS",
                reason: "must not exceed PORTCULLIS_SESSION_ABSOLUTE_SECS".into(),
            });
        }
        let cognito = match get("PORTCULLIS_COGNITO_USER_POOL_ID") {
            None => None,
            Some(pool) => {
                let region = get("PORTCULLIS_COGNITO_REGION").or_else(|| get("AWS_REGION")).ok_or(
                    ConfigError::Missing {
                        var: "PORTCULLIS_COGNITO_REGION",
                        why: " (or AWS_REGION) with PORTCULLIS_COGNITO_USER_POOL_ID",
                    },
                )?;
                let clients: Vec<String> = get("PORTCULLIS_COGNITO_CLIENT_IDS")
                    .unwrap_or_default()
                    .split(',')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty())
                    .collect();
                if clients.is_empty() {
                    return Err(ConfigError::Missing {
                        var: "PORTCULLIS_COGNITO_CLIENT_IDS",
                        why: " with PORTCULLIS_COGNITO_USER_POOL_ID",
                    });
                }
                let token_use = get("PORTCULLIS_COGNITO_TOKEN_USE").unwrap_or_else(|| "access".into());
                if token_use != "access" && token_use != "id" {
                    return Err(ConfigError::Invalid {
                        var: "PORTCULLIS_COGNITO_TOKEN_USE",
                        reason: format!("`{token_use}` is neither `access` nor `id`"),
                    });
                }
                Some(crate::cognito::CognitoConfig::for_pool(
                    &region,
                    &pool,
                    clients,
                    get("PORTCULLIS_COGNITO_JWKS_URL"),
                    token_use,
                ))
            }
        };
        let identity = match get("PORTCULLIS_IDENTITY_PROVIDER").as_deref() {
            None | Some("native") => IdentityBackend::Native,
            Some("cognito") => {
                let Some(pool) = &cognito else {
                    return Err(ConfigError::Missing {
                        var: "PORTCULLIS_COGNITO_USER_POOL_ID",
                        why: " with PORTCULLIS_IDENTITY_PROVIDER=cognito",
                    });
                };
                let pool_id = pool.issuer.rsplit('/').next().unwrap_or_default().to_owned();
                IdentityBackend::Cognito { pool_id, client_id: pool.client_ids[0].clone() }
            }
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "PORTCULLIS_IDENTITY_PROVIDER",
                    reason: format!("`{other}` is neither `native` nor `cognito`"),
                })
            }
        };
        let account_limit = crate::throttle::Limit {
            max_failures: number(&get, "PORTCULLIS_LOCKOUT_MAX_FAILURES", 5, 1, 100)? as i64,
            window_secs: number(&get, "PORTCULLIS_LOCKOUT_WINDOW_SECS", 900, 60, 86_400)? as i64,
            base_lock_secs: number(&get, "PORTCULLIS_LOCKOUT_BASE_SECS", 60, 1, 3600)? as i64,
            max_lock_secs: number(&get, "PORTCULLIS_LOCKOUT_MAX_SECS", 900, 1, 86_400)? as i64,
        };
        let ip_lock = number(&get, "PORTCULLIS_IP_LOCK_SECS", 900, 1, 86_400)? as i64;
        let ip_limit = crate::throttle::Limit {
            max_failures: number(&get, "PORTCULLIS_IP_MAX_FAILURES", 100, 1, 100_000)? as i64,
            window_secs: number(&get, "PORTCULLIS_IP_WINDOW_SECS", 900, 60, 86_400)? as i64,
            base_lock_secs: ip_lock,
            max_lock_secs: ip_lock,
        };
        let hibp_url = get("PORTCULLIS_HIBP_URL");
        if let Some(url) = &hibp_url {
            if !breach_service_url_is_allowed(url) {
                return Err(ConfigError::Invalid {
                    var: "PORTCULLIS_HIBP_URL",
                    reason: "must be an https URL (plain http only for a loopback test server)".into(),
                });
            }
        }
        let access_token_ttl_secs = number(&get, "PORTCULLIS_ACCESS_TOKEN_TTL_SECS", 900, 60, 86_400)?;
        let reauth_max_age_secs = number(&get, "PORTCULLIS_REAUTH_MAX_AGE_SECS", 300, 30, 86_400)?;
        let password_min_length = number(&get, "PORTCULLIS_PASSWORD_MIN_LENGTH", 12, 8, 64)? as usize;
        let max_body_bytes = number(&get, "PORTCULLIS_MAX_BODY_BYTES", 16 * 1024, 1024, 1 << 20)? as usize;
        Ok(Self {
            store,
            keys,
            sessions,
            sqlite_file: get("PORTCULLIS_SQLITE_FILE")
                .unwrap_or_else(|| ".portcullis/portcullis.db".into())
                .into(),
            session_idle_secs,
            session_absolute_secs,
            issuer: get("PORTCULLIS_ISSUER").unwrap_or_else(|| "portcullis".into()),
            audience: get("PORTCULLIS_AUDIENCE").unwrap_or_else(|| "portcullis".into()),
            access_token_ttl_secs,
            reauth_max_age_secs,
            password_min_length,
            hibp_url,
            max_body_bytes,
            account_limit,
            ip_limit,
            cognito,
            identity,
            database_ca: get("PORTCULLIS_DATABASE_CA_FILE").map(|path| read_ca_file(&path)).transpose()?,
        })
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

/// `PORTCULLIS_STORE`; unset, MySQL when `PORTCULLIS_DATABASE_URL` names a
/// database and the embedded SQLite file otherwise.
fn store_backend(get: &impl Fn(&str) -> Option<String>) -> Result<StoreBackend, ConfigError> {
    let default = if get("PORTCULLIS_DATABASE_URL").is_some() { "mysql" } else { "sqlite" };
    match get("PORTCULLIS_STORE").as_deref().unwrap_or(default) {
        "sqlite" => Ok(StoreBackend::Sqlite),
        "mysql" => mysql_backend(get),
        "memory" => Ok(StoreBackend::Memory),
        other => Err(ConfigError::Invalid {
            var: "PORTCULLIS_STORE",
            reason: format!("`{other}` is none of `sqlite`, `mysql` and `memory`"),
        }),
    }
}

/// `PORTCULLIS_SESSION_STORE`; unset, beside the users when they are embedded
/// (the SQLite file, or memory) and in memory beside MySQL (a Lambda function
/// names `dynamodb`).
fn session_backend(
    get: &impl Fn(&str) -> Option<String>,
    store: &StoreBackend,
) -> Result<SessionBackend, ConfigError> {
    let default = if let StoreBackend::Sqlite = store { "sqlite" } else { "memory" };
    match get("PORTCULLIS_SESSION_STORE").as_deref().unwrap_or(default) {
        "sqlite" => Ok(SessionBackend::Sqlite),
        "memory" => Ok(SessionBackend::Memory),
        "dynamodb" => Ok(SessionBackend::Dynamo {
            table: get("PORTCULLIS_DYNAMODB_TABLE").ok_or(ConfigError::Missing {
                var: "PORTCULLIS_DYNAMODB_TABLE",
                why: " when PORTCULLIS_SESSION_STORE=dynamodb",
            })?,
        }),
        other => Err(ConfigError::Invalid {
            var: "PORTCULLIS_SESSION_STORE",
            reason: format!("`{other}` is none of `sqlite`, `dynamodb` and `memory`"),
        }),
    }
}

fn mysql_backend(get: &impl Fn(&str) -> Option<String>) -> Result<StoreBackend, ConfigError> {
    let url = get("PORTCULLIS_DATABASE_URL").map(SecretString::from).ok_or(ConfigError::Missing {
        var: "PORTCULLIS_DATABASE_URL",
        why: " when PORTCULLIS_STORE=mysql",
    })?;
    let password_secret = get("PORTCULLIS_DATABASE_PASSWORD_SECRET");
    // Two passwords would leave it unclear which one is in use, and the one in
    // the URL is the one that should not be there.
    let has_password = url::Url::parse(url.expose_secret()).is_ok_and(|u| u.password().is_some());
    if password_secret.is_some() && has_password {
        return Err(ConfigError::Invalid {
            var: "PORTCULLIS_DATABASE_URL",
            reason:
                "carries a password while PORTCULLIS_DATABASE_PASSWORD_SECRET names one; drop it from the URL"
                    .into(),
        });
    }
    Ok(StoreBackend::Mysql { url, password_secret })
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(raw) = get(var) else {
        return Ok(default);
    };
    let value: u64 = raw
        .trim()
        .parse()
        .map_err(|_| ConfigError::Invalid { var, reason: format!("`{raw}` is not a whole number") })?;
    if !(min..=max).contains(&value) {
        return Err(ConfigError::Invalid { var, reason: format!("{value} is outside {min}..={max}") });
    }
    Ok(value)
}

/// Reads a PEM bundle of CA certificates; at least one certificate, and
/// nothing unparseable, or the cold start stops naming the variable.
fn read_ca_file(path: &str) -> Result<std::sync::Arc<[u8]>, ConfigError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let invalid = |reason: String| ConfigError::Invalid { var: "PORTCULLIS_DATABASE_CA_FILE", reason };
    let pem = std::fs::read(path).map_err(|e| invalid(format!("cannot read {path}: {e}")))?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| invalid(format!("{path} is not a PEM certificate bundle: {e:?}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(invalid(format!("{path} holds no PEM certificate")));
    }
    Ok(pem.into())
}

/// An https URL, or plain http to a loopback host (a test server). The host is
/// the parsed one: `http://localhost.evil.com` and `http://localhost@evil.com`
/// name hosts elsewhere.
fn breach_service_url_is_allowed(raw: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(raw) else {
        return false;
    };
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Domain(host))) => host.eq_ignore_ascii_case("localhost"),
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_mode() {
        let c = config(&[]).expect("defaults are valid");
        assert!(matches!(c.store, StoreBackend::Sqlite));
        assert_eq!(c.sessions, SessionBackend::Sqlite);
        assert_eq!(c.sqlite_file, PathBuf::from(".portcullis/portcullis.db"));
        assert!(matches!(c.keys, KeyBackend::LocalFile { .. }));
        assert_eq!(c.access_token_ttl_secs, 900);
        assert_eq!(c.password_min_length, 12);
    }

    #[test]
    fn mysql_without_url_names_the_missing_variable() {
        let err = config(&[("PORTCULLIS_STORE", "mysql")]).expect_err("must fail");
        assert!(err.to_string().contains("PORTCULLIS_DATABASE_URL"), "{err}");
    }

    #[test]
    fn a_password_secret_excludes_a_password_in_the_url() {
        let url = "mysql://portcullis_login@db:3306/portcullis";
        let secret = "arn:aws:secretsmanager:eu-west-1:1:secret:s/database/login-AbCdEf";
        let c = config(&[
            ("PORTCULLIS_STORE", "mysql"),
            ("PORTCULLIS_DATABASE_URL", url),
            ("PORTCULLIS_DATABASE_PASSWORD_SECRET", secret),
        ])
        .expect("valid");
        assert!(matches!(&c.store, StoreBackend::Mysql { password_secret: Some(s), .. } if s == secret));
        let err = config(&[
            ("PORTCULLIS_STORE", "mysql"),
            ("PORTCULLIS_DATABASE_URL", "mysql://portcullis_login:hunter2@db:3306/portcullis"),
            ("PORTCULLIS_DATABASE_PASSWORD_SECRET", secret),
        ])
        .expect_err("two passwords");
        assert!(err.to_string().contains("PORTCULLIS_DATABASE_URL"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // Local and development use: a password in the URL, no secret.
        let c = config(&[("PORTCULLIS_STORE", "mysql"), ("PORTCULLIS_DATABASE_URL", "mysql://u:p@db/x")])
            .expect("valid");
        assert!(matches!(c.store, StoreBackend::Mysql { password_secret: None, .. }));
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let err = config(&[("PORTCULLIS_ACCESS_TOKEN_TTL_SECS", "soon")]).expect_err("must fail");
        assert!(err.to_string().contains("PORTCULLIS_ACCESS_TOKEN_TTL_SECS"), "{err}");
        let err = config(&[("PORTCULLIS_PASSWORD_MIN_LENGTH", "4")]).expect_err("must fail");
        assert!(err.to_string().contains("outside"), "{err}");
    }

    #[test]
    fn plain_http_breach_service_is_refused_off_loopback() {
        for refused in [
            "http://example.com",
            "http://localhost.evil.com",
            "http://localhost@evil.com/",
            "http://127.0.0.1.evil.com",
            "http://127.0.0.1@evil.com",
            "http://10.0.0.1/",
            "ftp://localhost/",
            "https://",
            "not a url",
        ] {
            assert!(config(&[("PORTCULLIS_HIBP_URL", refused)]).is_err(), "{refused}");
        }
        for allowed in [
            "https://api.pwnedpasswords.com",
            "http://127.0.0.1:9/",
            "http://127.8.9.10/",
            "http://localhost:8080",
            "http://LOCALHOST/",
            "http://[::1]:9/",
        ] {
            assert!(config(&[("PORTCULLIS_HIBP_URL", allowed)]).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn session_settings_are_validated() {
        let err = config(&[("PORTCULLIS_SESSION_STORE", "dynamodb")]).expect_err("needs a table");
        assert!(err.to_string().contains("PORTCULLIS_DYNAMODB_TABLE"), "{err}");
        let err =
            config(&[("PORTCULLIS_SESSION_IDLE_SECS", "7200"), ("PORTCULLIS_SESSION_ABSOLUTE_SECS", "3600")])
                .expect_err("idle beyond absolute");
        assert!(err.to_string().contains("PORTCULLIS_SESSION_IDLE_SECS"), "{err}");
        let c = config(&[]).expect("defaults");
        assert_eq!((c.session_idle_secs, c.session_absolute_secs), (1800, 43_200));
    }

    #[test]
    fn lambda_refuses_the_memory_and_embedded_stores() {
        let refused = |pairs: &[(&str, &str)]| config(pairs).expect("valid").require_durable_store().is_err();
        let url = ("PORTCULLIS_DATABASE_URL", "mysql://u:p@db/x");
        let table = ("PORTCULLIS_DYNAMODB_TABLE", "t");
        assert!(refused(&[]), "nothing configured: the embedded file, never in a Lambda function");
        assert!(refused(&[("PORTCULLIS_STORE", "memory")]));
        assert!(refused(&[url]), "sessions beside MySQL default to memory");
        assert!(refused(&[url, table, ("PORTCULLIS_SESSION_STORE", "sqlite")]));
        assert!(refused(&[("PORTCULLIS_STORE", "sqlite"), table, ("PORTCULLIS_SESSION_STORE", "dynamodb")]));
        // The template's configuration.
        let c =
            config(&[("PORTCULLIS_STORE", "mysql"), url, table, ("PORTCULLIS_SESSION_STORE", "dynamodb")])
                .expect("valid");
        c.require_durable_store().expect("MySQL and DynamoDB are durable");
        assert!(matches!(c.store, StoreBackend::Mysql { .. }));
        assert_eq!(c.sessions, SessionBackend::Dynamo { table: "t".into() });
    }

    #[test]
    fn the_store_follows_the_database_url_unless_named() {
        let url = ("PORTCULLIS_DATABASE_URL", "mysql://u:p@db/x");
        assert!(matches!(config(&[url]).expect("valid").store, StoreBackend::Mysql { .. }));
        let c = config(&[url, ("PORTCULLIS_STORE", "sqlite"), ("PORTCULLIS_SQLITE_FILE", "/var/pc.db")])
            .expect("valid");
        assert!(matches!(c.store, StoreBackend::Sqlite));
        assert_eq!(c.sqlite_file, PathBuf::from("/var/pc.db"));
        let c = config(&[("PORTCULLIS_STORE", "memory")]).expect("valid");
        assert_eq!(c.sessions, SessionBackend::Memory, "sessions follow an in-memory store");
        let err = config(&[("PORTCULLIS_STORE", "postgres")]).expect_err("unknown");
        assert!(err.to_string().contains("PORTCULLIS_STORE"), "{err}");
        let err = config(&[("PORTCULLIS_SESSION_STORE", "redis")]).expect_err("unknown");
        assert!(err.to_string().contains("PORTCULLIS_SESSION_STORE"), "{err}");
    }

    #[test]
    fn the_identity_provider_is_native_unless_a_pool_is_named() {
        assert_eq!(config(&[]).expect("valid").identity, IdentityBackend::Native);
        let err = config(&[("PORTCULLIS_IDENTITY_PROVIDER", "cognito")]).expect_err("needs a pool");
        assert!(err.to_string().contains("PORTCULLIS_COGNITO_USER_POOL_ID"), "{err}");
        let err = config(&[("PORTCULLIS_IDENTITY_PROVIDER", "ldap")]).expect_err("unknown");
        assert!(err.to_string().contains("PORTCULLIS_IDENTITY_PROVIDER"), "{err}");
        let c = config(&[
            ("PORTCULLIS_IDENTITY_PROVIDER", "cognito"),
            ("PORTCULLIS_COGNITO_USER_POOL_ID", "eu-west-1_AbC"),
            ("PORTCULLIS_COGNITO_REGION", "eu-west-1"),
            ("PORTCULLIS_COGNITO_CLIENT_IDS", "client-1, client-2"),
        ])
        .expect("valid");
        assert_eq!(
            c.identity,
            IdentityBackend::Cognito { pool_id: "eu-west-1_AbC".into(), client_id: "client-1".into() }
        );
    }
}
