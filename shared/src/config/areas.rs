//! Each area of the configuration, read and validated by its own function.

use super::{
    BootstrapAdmin, ConfigError, IdentityBackend, KeyBackend, MailSettings, MailTransport, SessionBackend,
    StoreBackend,
};
use secrecy::{ExposeSecret, SecretString};

/// `PORTCULLIS_STORE`; unset, MySQL when `PORTCULLIS_DATABASE_URL` names a
/// database and the embedded SQLite file otherwise.
pub(super) fn store_backend(get: &impl Fn(&str) -> Option<String>) -> Result<StoreBackend, ConfigError> {
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
pub(super) fn session_backend(
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

pub(super) fn mysql_backend(get: &impl Fn(&str) -> Option<String>) -> Result<StoreBackend, ConfigError> {
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

pub(super) fn number(
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
pub(super) fn read_ca_file(path: &str) -> Result<std::sync::Arc<[u8]>, ConfigError> {
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
pub(super) fn https_or_loopback_url(raw: &str) -> bool {
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

/// `PORTCULLIS_KEY_PROVIDER`: the local master key file, or KMS.
pub(super) fn key_backend(get: &impl Fn(&str) -> Option<String>) -> Result<KeyBackend, ConfigError> {
    match get("PORTCULLIS_KEY_PROVIDER").as_deref().unwrap_or("local") {
        "local" => Ok(KeyBackend::LocalFile {
            path: get("PORTCULLIS_LOCAL_KEY_FILE").unwrap_or_else(|| ".portcullis/master.key".into()).into(),
        }),
        "kms" => Ok(KeyBackend::Kms {
            key_id: get("PORTCULLIS_KMS_KEY_ID").ok_or(ConfigError::Missing {
                var: "PORTCULLIS_KMS_KEY_ID",
                why: " when PORTCULLIS_KEY_PROVIDER=kms",
            })?,
        }),
        other => Err(ConfigError::Invalid {
            var: "PORTCULLIS_KEY_PROVIDER",
            reason: format!("`{other}` is neither `local` nor `kms`"),
        }),
    }
}

/// The idle and absolute session timeouts; idle may not exceed absolute.
pub(super) fn session_timeouts(get: &impl Fn(&str) -> Option<String>) -> Result<(u64, u64), ConfigError> {
    let idle = number(get, "PORTCULLIS_SESSION_IDLE_SECS", 1800, 60, 86_400)?;
    let absolute = number(get, "PORTCULLIS_SESSION_ABSOLUTE_SECS", 43_200, 300, 30 * 86_400)?;
    if idle > absolute {
        return Err(ConfigError::Invalid {
            var: "PORTCULLIS_SESSION_IDLE_SECS",
            reason: "must not exceed PORTCULLIS_SESSION_ABSOLUTE_SECS".into(),
        });
    }
    Ok((idle, absolute))
}

/// A Cognito user pool whose tokens the authorizer also accepts.
pub(super) fn cognito_pool(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::cognito::CognitoConfig>, ConfigError> {
    let Some(pool) = get("PORTCULLIS_COGNITO_USER_POOL_ID") else {
        return Ok(None);
    };
    let region =
        get("PORTCULLIS_COGNITO_REGION").or_else(|| get("AWS_REGION")).ok_or(ConfigError::Missing {
            var: "PORTCULLIS_COGNITO_REGION",
            why: " (or AWS_REGION) with PORTCULLIS_COGNITO_USER_POOL_ID",
        })?;
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
    let jwks = get("PORTCULLIS_COGNITO_JWKS_URL");
    Ok(Some(crate::cognito::CognitoConfig::for_pool(&region, &pool, clients, jwks, token_use)))
}

/// `PORTCULLIS_IDENTITY_PROVIDER`: our accounts, or the configured pool's.
pub(super) fn identity_backend(
    get: &impl Fn(&str) -> Option<String>,
    cognito: Option<&crate::cognito::CognitoConfig>,
) -> Result<IdentityBackend, ConfigError> {
    match get("PORTCULLIS_IDENTITY_PROVIDER").as_deref() {
        None | Some("native") => Ok(IdentityBackend::Native),
        Some("cognito") => {
            let pool = cognito.ok_or(ConfigError::Missing {
                var: "PORTCULLIS_COGNITO_USER_POOL_ID",
                why: " with PORTCULLIS_IDENTITY_PROVIDER=cognito",
            })?;
            let pool_id = pool.issuer.rsplit('/').next().unwrap_or_default().to_owned();
            Ok(IdentityBackend::Cognito { pool_id, client_id: pool.client_ids[0].clone() })
        }
        Some(other) => Err(ConfigError::Invalid {
            var: "PORTCULLIS_IDENTITY_PROVIDER",
            reason: format!("`{other}` is neither `native` nor `cognito`"),
        }),
    }
}

/// The per-account and per-source-IP attempt limits.
pub(super) fn attempt_limits(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<(crate::throttle::Limit, crate::throttle::Limit), ConfigError> {
    let account = crate::throttle::Limit {
        max_failures: number(get, "PORTCULLIS_LOCKOUT_MAX_FAILURES", 5, 1, 100)? as i64,
        window_secs: number(get, "PORTCULLIS_LOCKOUT_WINDOW_SECS", 900, 60, 86_400)? as i64,
        base_lock_secs: number(get, "PORTCULLIS_LOCKOUT_BASE_SECS", 60, 1, 3600)? as i64,
        max_lock_secs: number(get, "PORTCULLIS_LOCKOUT_MAX_SECS", 900, 1, 86_400)? as i64,
    };
    let ip_lock = number(get, "PORTCULLIS_IP_LOCK_SECS", 900, 1, 86_400)? as i64;
    let ip = crate::throttle::Limit {
        max_failures: number(get, "PORTCULLIS_IP_MAX_FAILURES", 100, 1, 100_000)? as i64,
        window_secs: number(get, "PORTCULLIS_IP_WINDOW_SECS", 900, 60, 86_400)? as i64,
        base_lock_secs: ip_lock,
        max_lock_secs: ip_lock,
    };
    Ok((account, ip))
}

/// `PORTCULLIS_HIBP_URL`: a breach service over https (plain http only on loopback).
pub(super) fn breach_service(get: &impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    let url = get("PORTCULLIS_HIBP_URL");
    if url.as_deref().is_some_and(|u| !https_or_loopback_url(u)) {
        return Err(ConfigError::Invalid {
            var: "PORTCULLIS_HIBP_URL",
            reason: "must be an https URL (plain http only for a loopback test server)".into(),
        });
    }
    Ok(url)
}

/// Both bootstrap variables, or none.
pub(super) fn bootstrap_admin(get: &impl Fn(&str) -> Option<String>) -> Option<BootstrapAdmin> {
    let email = get("PORTCULLIS_BOOTSTRAP_ADMIN_EMAIL")?;
    let password = SecretString::from(get("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD")?);
    Some(BootstrapAdmin { email, password })
}

/// A value that goes into a mail header (the product name in the subject, the
/// sender): one line, printable, bounded, so configuration cannot inject a header.
fn header_value(var: &'static str, value: String, max: usize) -> Result<String, ConfigError> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ConfigError::Invalid {
            var,
            reason: format!("must be one line of at most {max} printable characters"),
        });
    }
    Ok(value)
}

/// The product name, sender, link base and transport of security mail.
pub(super) fn mail_settings(get: &impl Fn(&str) -> Option<String>) -> Result<MailSettings, ConfigError> {
    let defaults = crate::mail::MailConfig::default();
    let product = header_value(
        "PORTCULLIS_MAIL_PRODUCT_NAME",
        get("PORTCULLIS_MAIL_PRODUCT_NAME").unwrap_or(defaults.product),
        64,
    )?;
    let from =
        header_value("PORTCULLIS_MAIL_FROM", get("PORTCULLIS_MAIL_FROM").unwrap_or(defaults.from), 254)?;
    if from.split_once('@').is_none_or(|(local, domain)| local.is_empty() || domain.is_empty()) {
        return Err(ConfigError::Invalid { var: "PORTCULLIS_MAIL_FROM", reason: "is not an address".into() });
    }
    let link_base = get("PORTCULLIS_MAIL_LINK_BASE").unwrap_or(defaults.link_base);
    // A link's token goes wherever the base points: https, or http on this machine.
    if !https_or_loopback_url(&link_base) || link_base.contains(['#', '?']) {
        return Err(ConfigError::Invalid {
            var: "PORTCULLIS_MAIL_LINK_BASE",
            reason: "must be an https URL without query or fragment (plain http only on loopback)".into(),
        });
    }
    let transport = match get("PORTCULLIS_MAIL_QUEUE_URL") {
        Some(url) if https_or_loopback_url(&url) => MailTransport::Queue { url },
        Some(_) => {
            return Err(ConfigError::Invalid {
                var: "PORTCULLIS_MAIL_QUEUE_URL",
                reason: "must be the https URL of an SQS queue".into(),
            })
        }
        None => MailTransport::Outbox {
            dir: get("PORTCULLIS_MAIL_OUTBOX_DIR").unwrap_or_else(|| ".portcullis/outbox".into()).into(),
        },
    };
    Ok(MailSettings { message: crate::mail::MailConfig { product, from, link_base }, transport })
}
