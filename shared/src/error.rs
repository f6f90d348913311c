//! The one error type of the HTTP edge and its single mapping to RFC 9457
//! problem+json. The kind is for machines (`type`), the title for people; internal
//! causes are logged with their chain (`error_chain`) and never sent to the client.
//! Also the failure of a cold start (`BootError`): the process must not serve.

use http::StatusCode;
use serde::Serialize;

/// One broken rule of a validated request (field validation or password policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Machine-readable rule name, e.g. `too_short`.
    pub rule: &'static str,
    /// The field the rule applies to.
    pub field: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

/// Every failure a handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON for this route")]
    MalformedBody(#[source] serde_json::Error),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("the request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request is invalid")]
    Validation(Vec<Violation>),
    #[error("the password does not meet the password policy")]
    WeakPassword(Vec<Violation>),
    #[error("the email address cannot be registered")]
    EmailUnavailable,
    /// Wrong password and unknown account alike: the body never says which.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("authentication is required")]
    Unauthenticated,
    /// Wrong, replayed or expired second factor, or a dead `mfa_token`, alike.
    #[error("the second factor is invalid")]
    InvalidMfa,
    /// A sensitive change needs a recent authentication (`POST /auth/reauth`):
    /// the token's `auth_time` is too old, or the account's second factor is not in its `amr`.
    #[error("a recent authentication is required")]
    ReauthenticationRequired,
    #[error("the request conflicts with the current state")]
    Conflict,
    /// Removing the role would leave nobody holding these permissions, and a
    /// permission nobody holds can never be granted again.
    #[error("this role is the last grant of a permission")]
    LastHolder(Vec<String>),
    /// Unknown, spent, expired or revoked refresh token alike.
    #[error("the refresh token is invalid")]
    InvalidRefreshToken,
    #[error("the caller lacks the permission for this action")]
    Forbidden,
    /// The configured identity provider does not offer this (Cognito keeps no recovery codes).
    #[error("the identity provider does not support this")]
    Unsupported,
    #[error("no such resource")]
    NotFound,
    /// The path exists with other methods: those (for the `Allow` header).
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    /// The local server's upstream (`portcullis serve --upstream`) did not answer.
    #[error("the upstream service did not answer")]
    BadGateway,
    #[error("a dependency is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// Wraps any internal cause; it is logged, never shown.
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(err.into())
    }

    /// Wraps a dependency failure (database, KMS, breach service): 503.
    pub fn unavailable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(err.into())
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedBody(_) | Self::Validation(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::WeakPassword(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::EmailUnavailable | Self::Conflict | Self::LastHolder(_) => StatusCode::CONFLICT,
            Self::InvalidCredentials
            | Self::Unauthenticated
            | Self::InvalidRefreshToken
            | Self::InvalidMfa
            | Self::ReauthenticationRequired => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unsupported => StatusCode::NOT_IMPLEMENTED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable kind (last segment of the problem `type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MalformedBody(_) => "malformed-body",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::Validation(_) => "validation-failed",
            Self::WeakPassword(_) => "weak-password",
            Self::EmailUnavailable => "email-unavailable",
            Self::InvalidCredentials => "invalid-credentials",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidRefreshToken => "invalid-refresh-token",
            Self::InvalidMfa => "invalid-mfa",
            Self::ReauthenticationRequired => "reauthentication-required",
            Self::Conflict => "conflict",
            Self::LastHolder(_) => "last-holder",
            Self::Forbidden => "forbidden",
            Self::Unsupported => "unsupported",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::TooManyRequests { .. } => "too-many-requests",
            Self::BadGateway => "bad-gateway",
            Self::Unavailable(_) => "service-unavailable",
            Self::Internal(_) => "internal-error",
        }
    }

    /// The problem document sent to the client. It never carries the source chain.
    pub fn to_problem(&self) -> Problem {
        let (detail, errors) = match self {
            Self::Validation(v) | Self::WeakPassword(v) => (None, Some(v.clone())),
            Self::MalformedBody(e) => (Some(public_serde_detail(e)), None),
            Self::PayloadTooLarge { .. } => (Some(self.to_string()), None),
            Self::LastHolder(permissions) => (
                Some(format!(
                    "nobody else would hold {}: first give another person a role with these permissions",
                    permissions.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                )),
                None,
            ),
            _ => (None, None),
        };
        Problem {
            r#type: format!("urn:portcullis:problem:{}", self.kind()),
            title: title_of(self),
            status: self.status().as_u16(),
            detail,
            errors,
        }
    }
}

fn title_of(err: &ApiError) -> String {
    match err {
        // Internal and dependency errors get a fixed title: the Display of the source is not shown.
        ApiError::Internal(_) => "Internal error".to_owned(),
        ApiError::Unavailable(_) => "Service temporarily unavailable".to_owned(),
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

/// serde's messages name fields and positions but never echo values, except for
/// `unknown variant`/`invalid value` which quote the input; keep only the category.
fn public_serde_detail(err: &serde_json::Error) -> String {
    let msg = err.to_string();
    if msg.starts_with("unknown field") {
        // "unknown field `x`, expected one of ..." names only our schema and the caller's key.
        msg.split(" at line").next().unwrap_or("unknown field").to_owned()
    } else if msg.starts_with("missing field") {
        msg.split(" at line").next().unwrap_or("missing field").to_owned()
    } else {
        match err.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "the body is not well-formed JSON".to_owned()
            }
            _ => "a field has the wrong type or value".to_owned(),
        }
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub r#type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<Violation>>,
}

/// `a: b: c` for a logged error with its sources.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// A failure at cold start: the process must not serve.
#[derive(Debug, Clone, thiserror::Error)]
#[error("startup failed: {0}")]
pub struct BootError(pub String);

/// Key material that cannot be loaded is a dependency outage to the client: 503.
impl From<BootError> for ApiError {
    fn from(err: BootError) -> Self {
        ApiError::Unavailable(Box::new(err))
    }
}

/// Marks a [`BootError`] that is an answer, not an outage (see [`BootError::refused`]).
const REFUSAL: &str = "refused: ";

impl BootError {
    pub fn from_error(context: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        Self(format!("{context}: {}", error_chain(err)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_show_their_cause() {
        let err = ApiError::internal(std::io::Error::other("SELECT * FROM users failed"));
        let body = serde_json::to_string(&err.to_problem()).unwrap_or_default();
        assert!(!body.contains("SELECT"), "{body}");
        assert!(body.contains("\"status\":500"), "{body}");
    }

    #[test]
    fn weak_password_lists_every_rule() {
        let err = ApiError::WeakPassword(vec![
            Violation { rule: "too_short", field: "password", message: "short".into() },
            Violation { rule: "common", field: "password", message: "common".into() },
        ]);
        let problem = err.to_problem();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors.map(|e| e.len()), Some(2));
    }
}
