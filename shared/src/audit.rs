//! Security audit events (ASVS V7): one structured log line on the `audit`
//! target and one row in the append-only audit table. Event names are defined
//! here, once, so alarms and queries can rely on them.

use crate::clock::Clock;
use crate::error::error_chain;
use crate::http::ClientMeta;
use crate::store::StoreError;
use async_trait::async_trait;
use std::sync::Arc;

/// Every audit event type Portcullis emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Register,
    LoginSuccess,
    LoginFailure,
    PasswordChange,
    PasswordChangeFailure,
    TokenRefresh,
    RefreshFailure,
    RefreshTokenReuse,
    Logout,
    LogoutAll,
    SessionsRevoked,
    RoleGranted,
    RoleRevoked,
    ApiKeyCreated,
    ApiKeyRevoked,
    AdminRefused,
    MfaChallenge,
    MfaEnrol,
    MfaConfirm,
    MfaVerifySuccess,
    MfaVerifyFailure,
    MfaRecoveryUsed,
    MfaDisabled,
    MfaReplay,
    Reauthentication,
    ReauthenticationFailure,
    LoginThrottled,
    ThrottleUnavailable,
    /// An employee searched the audit trail (`GET /admin/audit`).
    AuditRead,
}

impl EventType {
    /// Every event type, for validating a query's `type`.
    pub const ALL: [EventType; 29] = [
        Self::Register,
        Self::LoginSuccess,
        Self::LoginFailure,
        Self::PasswordChange,
        Self::PasswordChangeFailure,
        Self::TokenRefresh,
        Self::RefreshFailure,
        Self::RefreshTokenReuse,
        Self::Logout,
        Self::LogoutAll,
        Self::SessionsRevoked,
        Self::RoleGranted,
        Self::RoleRevoked,
        Self::ApiKeyCreated,
        Self::ApiKeyRevoked,
        Self::AdminRefused,
        Self::MfaChallenge,
        Self::MfaEnrol,
        Self::MfaConfirm,
        Self::MfaVerifySuccess,
        Self::MfaVerifyFailure,
        Self::MfaRecoveryUsed,
        Self::MfaDisabled,
        Self::MfaReplay,
        Self::Reauthentication,
        Self::ReauthenticationFailure,
        Self::LoginThrottled,
        Self::ThrottleUnavailable,
        Self::AuditRead,
    ];

    /// The stable name used in logs, the audit table and metric filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::LoginSuccess => "login_success",
            Self::LoginFailure => "login_failure",
            Self::PasswordChange => "password_change",
            Self::PasswordChangeFailure => "password_change_failure",
            Self::TokenRefresh => "token_refresh",
            Self::RefreshFailure => "refresh_failure",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::SessionsRevoked => "sessions_revoked",
            Self::RoleGranted => "role_granted",
            Self::RoleRevoked => "role_revoked",
            Self::ApiKeyCreated => "api_key_created",
            Self::ApiKeyRevoked => "api_key_revoked",
            Self::AdminRefused => "admin_refused",
            Self::MfaChallenge => "mfa_challenge",
            Self::MfaEnrol => "mfa_enrol",
            Self::MfaConfirm => "mfa_confirm",
            Self::MfaVerifySuccess => "mfa_verify_success",
            Self::MfaVerifyFailure => "mfa_verify_failure",
            Self::MfaRecoveryUsed => "mfa_recovery_used",
            Self::MfaDisabled => "mfa_disabled",
            Self::MfaReplay => "mfa_replay",
            Self::Reauthentication => "reauth_success",
            Self::ReauthenticationFailure => "reauth_failure",
            Self::LoginThrottled => "login_throttled",
            Self::ThrottleUnavailable => "throttle_unavailable",
            Self::AuditRead => "audit_read",
        }
    }

    pub fn outcome(self) -> &'static str {
        match self {
            Self::LoginFailure
            | Self::PasswordChangeFailure
            | Self::RefreshFailure
            | Self::RefreshTokenReuse
            | Self::AdminRefused
            | Self::MfaVerifyFailure
            | Self::MfaReplay
            | Self::ReauthenticationFailure
            | Self::LoginThrottled
            | Self::ThrottleUnavailable => "failure",
            _ => "success",
        }
    }
}

/// One audit record. Never holds a secret; the subject is a user id, not an email.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub event_type: EventType,
    pub subject: Option<String>,
    /// Who acted, when not the subject (an administrator, an API key).
    pub actor: Option<String>,
    /// What changed (a role name, an API key id); never a secret.
    pub detail: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub occurred_at: i64,
    /// A short machine-readable reason, e.g. `unknown_account`.
    pub reason: Option<&'static str>,
}

/// The largest page `GET /admin/audit` returns, and its default.
pub const MAX_PAGE: u32 = 200;
pub const DEFAULT_PAGE: u32 = 50;

/// A search of the audit trail: every filter set must hold. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub subject: Option<String>,
    pub event_type: Option<String>,
    pub outcome: Option<String>,
    /// Occurred at or after (seconds since the epoch).
    pub since: Option<i64>,
    /// Occurred at or before.
    pub until: Option<i64>,
    /// Only events older than the one with this id (the previous page's cursor).
    pub before_id: Option<i64>,
    /// At most this many (1..=[`MAX_PAGE`]).
    pub limit: u32,
}

/// One event as the trail holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub occurred_at: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub outcome: String,
    pub subject: Option<String>,
    pub actor: Option<String>,
    pub detail: Option<String>,
    pub reason: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl AuditQuery {
    /// Whether `r` passes every filter (for stores that filter in memory).
    pub fn admits(&self, r: &AuditRecord) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        eq(&self.subject, r.subject.as_deref())
            && eq(&self.event_type, Some(&r.event_type))
            && eq(&self.outcome, Some(&r.outcome))
            && self.since.is_none_or(|s| r.occurred_at >= s)
            && self.until.is_none_or(|u| r.occurred_at <= u)
            && self.before_id.is_none_or(|b| r.id < b)
    }
}

impl AuditEvent {
    /// The event as a store would read it back, under `id`.
    pub fn record(&self, id: i64) -> AuditRecord {
        AuditRecord {
            id,
            occurred_at: self.occurred_at,
            event_type: self.event_type.as_str().to_owned(),
            outcome: self.event_type.outcome().to_owned(),
            subject: self.subject.clone(),
            actor: self.actor.clone(),
            detail: self.detail.clone(),
            reason: self.reason.map(str::to_owned),
            source_ip: self.source_ip.clone(),
            user_agent: self.user_agent.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// The append-only security audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError>;

    /// The events `query` selects, newest first, at most `query.limit`.
    async fn search(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Writes audit events to the log and the audit store.
#[derive(Clone)]
pub struct Auditor {
    store: Arc<dyn AuditStore>,
    clock: Arc<dyn Clock>,
}

impl Auditor {
    pub fn new(store: Arc<dyn AuditStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Records an event. A failing audit store is logged as an error and does not
    /// fail the user's request; the log line is written first, so the event is
    /// never lost entirely.
    pub async fn record(
        &self,
        event_type: EventType,
        subject: Option<String>,
        meta: &ClientMeta,
        reason: Option<&'static str>,
    ) {
        self.write(event_type, subject, None, None, meta, reason).await
    }

    /// Records an administrative action: `actor` did `event_type` to `subject`.
    pub async fn record_admin(
        &self,
        event_type: EventType,
        actor: &str,
        subject: Option<String>,
        detail: Option<String>,
        meta: &ClientMeta,
    ) {
        self.write(event_type, subject, Some(actor.to_owned()), detail, meta, None).await
    }

    async fn write(
        &self,
        event_type: EventType,
        subject: Option<String>,
        actor: Option<String>,
        detail: Option<String>,
        meta: &ClientMeta,
        reason: Option<&'static str>,
    ) {
        let event = AuditEvent {
            event_type,
            subject,
            actor,
            detail,
            source_ip: meta.source_ip.clone(),
            user_agent: meta.user_agent.clone(),
            request_id: meta.request_id.clone(),
            occurred_at: self.clock.now_secs(),
            reason,
        };
        tracing::info!(
            target: "audit",
            event_type = event.event_type.as_str(),
            outcome = event.event_type.outcome(),
            subject = event.subject.as_deref(),
            actor = event.actor.as_deref(),
            detail = event.detail.as_deref(),
            source_ip = event.source_ip.as_deref(),
            user_agent = event.user_agent.as_deref(),
            request_id = event.request_id.as_deref(),
            reason = event.reason,
            "audit event"
        );
        if let Err(err) = self.store.append(&event).await {
            tracing::error!(event_type = event.event_type.as_str(), error = %error_chain(&err), "audit store write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EventType;

    #[test]
    fn failures_and_refusals_are_logged_as_failures() {
        for e in [
            EventType::LoginFailure,
            EventType::RefreshTokenReuse,
            EventType::MfaVerifyFailure,
            EventType::MfaReplay,
            EventType::ReauthenticationFailure,
            EventType::LoginThrottled,
            EventType::ThrottleUnavailable,
        ] {
            assert_eq!(e.outcome(), "failure", "{}", e.as_str());
        }
        assert_eq!(EventType::LoginSuccess.outcome(), "success");
    }
}
