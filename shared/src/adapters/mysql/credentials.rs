//! A deployed function's database password, kept in AWS Secrets Manager rather
//! than in its environment, where anyone allowed to read the function's
//! configuration would see it. The secret is the JSON object RDS and its rotation
//! functions write, `{"username": …, "password": …}` (other fields ignored); it is
//! read once per process at cold start (`crate::runtime::database_opts`).

use mysql_async::{Opts, OptsBuilder};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// The user and password a secret holds.
#[derive(Debug, Clone)]
pub struct DatabaseCredentials {
    /// The secret's `username`, when it has one: it replaces the URL's user (an
    /// alternating-users rotation switches between two).
    pub username: Option<String>,
    pub password: SecretString,
}

/// The secret could not be read or used. Never carries the secret's content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {arn} could not be read")]
    Unavailable {
        arn: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "secret {arn} is not a JSON object with a non-empty string `password` (its content is not shown)"
    )]
    Malformed { arn: String },
}

#[derive(serde::Deserialize)]
struct Stored {
    #[serde(default)]
    username: Option<String>,
    password: SecretString,
}

/// Parses a secret's text. A serde error is dropped, not wrapped: its message
/// can quote the input.
pub fn parse_credentials(arn: &str, text: &str) -> Result<DatabaseCredentials, SecretError> {
    let malformed = || SecretError::Malformed { arn: arn.to_owned() };
    let stored: Stored = serde_json::from_str(text).map_err(|_| malformed())?;
    if stored.password.expose_secret().is_empty() || stored.username.as_deref() == Some("") {
        return Err(malformed());
    }
    Ok(DatabaseCredentials { username: stored.username, password: stored.password })
}

/// Reads the current version of the secret `arn`.
pub async fn read_credentials(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<DatabaseCredentials, SecretError> {
    let mut out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError::Unavailable { arn: arn.to_owned(), source: Box::new(e) })?;
    // Taken out of the response so that it is zeroized once parsed.
    let text = Zeroizing::new(out.secret_string.take().unwrap_or_default());
    parse_credentials(arn, &text)
}

/// `opts` with the secret's password (and user, when it names one).
pub fn with_credentials(opts: Opts, credentials: &DatabaseCredentials) -> Opts {
    let mut builder = OptsBuilder::from_opts(opts).pass(Some(credentials.password.expose_secret()));
    if let Some(user) = &credentials.username {
        builder = builder.user(Some(user));
    }
    builder.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_gives_its_password_and_user_to_the_connection() {
        let creds = parse_credentials(
            "arn:x",
            r#"{"username":"portcullis_login","password":"p@ss:w/rd","engine":"mysql","port":3306}"#,
        )
        .expect("parses");
        let base =
            Opts::from_url("mysql://someone@db.example:3306/portcullis?require_ssl=true").expect("url");
        let opts = with_credentials(base, &creds);
        assert_eq!(opts.user(), Some("portcullis_login"));
        assert_eq!(opts.pass(), Some("p@ss:w/rd"));
        assert_eq!(opts.db_name(), Some("portcullis"));
        assert_eq!(opts.ip_or_hostname(), "db.example");
        let without_user = parse_credentials("arn:x", r#"{"password":"x"}"#).expect("parses");
        let opts = with_credentials(Opts::from_url("mysql://me@h/db").expect("url"), &without_user);
        assert_eq!((opts.user(), opts.pass()), (Some("me"), Some("x")));
    }

    #[test]
    fn a_malformed_secret_is_refused_without_quoting_it() {
        for text in [
            "hunter2-plain-text",
            r#"{"username":"u"}"#,
            r#"{"password":""}"#,
            r#"{"password":"hunter2","username":""}"#,
            r#"{"password":"hunter2","username":7}"#,
            r#"{"password":["hunter2"]}"#,
            r#"["hunter2"]"#,
            "",
        ] {
            let err = parse_credentials("arn:aws:secretsmanager:x", text).expect_err(text);
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("arn:aws:secretsmanager:x"), "{shown}");
        }
    }
}
