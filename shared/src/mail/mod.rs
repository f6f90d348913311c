//! Security mail, off the request path. A request renders its message from a
//! template ([`templates`]) and hands it to a [`MailQueue`]; whatever sends it
//! later (the `notify` function reading SQS in AWS, a background task in the
//! local server) does so through a [`MailSender`]: Amazon SES v2, or the
//! outbox folder a developer reads. No response, and no response time, depends
//! on whether mail went out.
//!
//! A message may carry a single-use link (verification, reset): its bodies are
//! zeroized on drop and never logged; only its kind and a message id are.

pub mod outbox;
pub mod queue;
pub mod ses;
pub mod templates;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// What a message is about; logged and counted, never the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailKind {
    VerifyEmail,
    RegistrationAttempt,
    PasswordReset,
    SecurityNotice,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::RegistrationAttempt => "registration_attempt",
            Self::PasswordReset => "password_reset",
            Self::SecurityNotice => "security_notice",
        }
    }
}

/// One rendered message.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mail {
    /// Unique per message: the outbox file's name, the queue's deduplication.
    pub id: String,
    pub kind: MailKind,
    pub from: String,
    pub to: String,
    pub subject: String,
    #[serde(with = "secret_text")]
    pub text: Zeroizing<String>,
    #[serde(with = "secret_text")]
    pub html: Zeroizing<String>,
}

/// A body on the queue: serialized as a plain string, held zeroized.
mod secret_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(value: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
        String::deserialize(d).map(Zeroizing::new)
    }
}

impl std::fmt::Debug for Mail {
    // Addresses are personal data and bodies may hold a link: neither is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail").field("id", &self.id).field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// Why a message could not be sent (or queued); the queue retries.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the mail service is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the message was refused: {0}")]
    Refused(String),
}

/// Sends one message now.
#[async_trait::async_trait]
pub trait MailSender: Send + Sync {
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;
}

/// Takes a message to be sent later; returns once it is safely queued.
#[async_trait::async_trait]
pub trait MailQueue: Send + Sync {
    async fn enqueue(&self, mail: Mail) -> Result<(), MailError>;
}

/// Product name, sender and link base of every message (configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    /// How messages name the service.
    pub product: String,
    /// The sender address (an identity verified in SES).
    pub from: String,
    /// Where links point, e.g. `https://app.example.com/account`;
    /// a link is `<base>/<action>#token=<token>` (a fragment never reaches a server log).
    pub link_base: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            product: "Portcullis".into(),
            from: "no-reply@localhost".into(),
            link_base: "http://127.0.0.1:8080/account".into(),
        }
    }
}
