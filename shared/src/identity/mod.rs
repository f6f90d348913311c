//! The identity port: where accounts, passwords and second factors live.
//!
//! Every login, MFA, refresh and re-authentication handler is written once
//! against [`IdentityProvider`] (parse → policy → throttle → provider → session
//! → audit). Two providers implement it:
//!
//! - [`NativeProvider`]: Portcullis' own accounts (MySQL or the embedded store,
//!   argon2id, our TOTP and recovery codes, our refresh tokens). The timing
//!   defence for unknown accounts (one dummy argon2 verification) lives here.
//! - [`CognitoProvider`]: an Amazon Cognito user pool checks passwords and TOTP
//!   codes; the pool's own tokens never reach the client unsealed.
//!
//! Throttling, audit, validation, the password policy, security headers,
//! session records (timeouts, revocation), RBAC and the tokens the client holds
//! are Portcullis' with either. What a provider cannot do answers
//! [`IdentityError::Unsupported`] (a `501 unsupported` problem).

mod cognito;
mod native;
mod types;

pub use cognito::{issued_claims, AppClient, CognitoProvider, IssuedClaims, PasswordLogin, ProviderTokens};
pub use native::{NativeProvider, NativeStores};
pub use types::*;

use crate::crypto::FieldCipher;
use crate::domain::{Email, Password, Role};
use crate::http::ClientMeta;
use crate::sessions::{SessionRecord, TokenHash};
use crate::tokens::{TokenIssuer, TokenResponse};
use crate::ApiError;
use async_trait::async_trait;
use lambda_http::Request;
use secrecy::SecretString;

/// Provider failures, already mapped to what the client may learn.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Wrong password, unknown or unconfirmed or disabled account: one answer for all.
    #[error("credentials refused")]
    Refused,
    #[error("wrong or expired code")]
    WrongCode,
    /// A right TOTP code presented again (RFC 6238 §5.2: accepted once).
    #[error("code already used")]
    Replayed,
    /// The wrong answer that used up the challenge's attempts.
    #[error("challenge burned")]
    Burned,
    #[error("the account exists")]
    Exists,
    #[error("the request conflicts with the account's state")]
    Conflict,
    #[error("the provider refused the new password: {0}")]
    PasswordRejected(String),
    #[error("the provider is throttling")]
    Throttled,
    #[error("this identity provider does not support it")]
    Unsupported,
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// A failure of our own stores or keys, answered as such.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<crate::store::StoreError> for IdentityError {
    fn from(err: crate::store::StoreError) -> Self {
        Self::Api(err.into())
    }
}

/// The answer for provider failures every route treats alike; `refused` is the
/// route's own "no" (401 invalid credentials, invalid MFA, invalid refresh token).
pub fn api_error(err: IdentityError, refused: ApiError) -> ApiError {
    match err {
        IdentityError::Refused
        | IdentityError::WrongCode
        | IdentityError::Replayed
        | IdentityError::Burned => refused,
        IdentityError::Exists => ApiError::EmailUnavailable,
        IdentityError::Conflict => ApiError::Conflict,
        IdentityError::PasswordRejected(message) => ApiError::WeakPassword(vec![crate::error::Violation {
            rule: "provider_policy",
            field: "password",
            message,
        }]),
        IdentityError::Throttled => ApiError::TooManyRequests { retry_after_secs: 1 },
        IdentityError::Unsupported => ApiError::Unsupported,
        IdentityError::Api(err) => err,
        other => ApiError::unavailable(other),
    }
}

/// The typed email, when it is an address, and its keyed hash: the account's
/// lookup key and its throttle bucket. Not an address: still counted, under the
/// keyed hash of what was typed.
pub fn typed_email(fields: &FieldCipher, raw: &str) -> (Option<Email>, crate::store::BlindIndex) {
    let email = Email::parse(raw).ok();
    let index = match &email {
        Some(email) => fields.blind_index(email.as_str()),
        None => fields.blind_index(&raw.trim().to_lowercase()),
    };
    (email, index)
}

/// The port. Handlers call it; see the module docs for who implements it.
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// Whether this provider offers `feature`; a route that needs one it lacks
    /// answers `unsupported` before anything else.
    fn supports(&self, feature: Feature) -> bool {
        let _ = feature;
        true
    }

    /// Creates an account with `roles` (the password policy was checked); its id.
    async fn register(
        &self,
        fields: &FieldCipher,
        email: &Email,
        password: &Password,
        roles: Vec<Role>,
        now: i64,
    ) -> Result<String, IdentityError>;

    /// The account `typed` names (it may not exist, or not be an address).
    async fn locate(&self, fields: &FieldCipher, typed: &str) -> Result<Account, ApiError>;

    /// Checks the password; an unknown account costs the same work and is refused alike.
    async fn check_password(
        &self,
        account: Account,
        password: &Password,
        now: i64,
    ) -> Result<Verified, IdentityError>;

    /// The `mfa_token` of a login waiting for its second factor.
    async fn challenge(
        &self,
        fields: &FieldCipher,
        pending: PendingFactor,
        seed: ChallengeSeed,
        now: i64,
    ) -> Result<IssuedChallenge, ApiError>;

    /// The live challenge of an `mfa_token`, or `None` (dead, forged, edited).
    async fn open_challenge(
        &self,
        fields: &FieldCipher,
        mfa_token: &SecretString,
        now: i64,
    ) -> Result<Option<Challenge>, ApiError>;

    /// Answers a challenge; a wrong answer counts against it.
    async fn answer(
        &self,
        fields: &FieldCipher,
        challenge: &Challenge,
        answer: Answer<'_>,
        now: i64,
    ) -> Result<SignedIn, IdentityError>;

    /// Records the session of a completed login and answers its tokens (no
    /// token without its session); returns the user id too.
    async fn start_session(
        &self,
        issuer: &TokenIssuer,
        signed_in: SignedIn,
        meta: &ClientMeta,
        now: i64,
    ) -> Result<(String, TokenResponse), ApiError>;

    /// The caller behind an authorizer-verified request, read as far as `need` says.
    async fn principal(&self, fields: &FieldCipher, req: &Request, need: Need)
        -> Result<Principal, ApiError>;

    /// The caller's roles as the provider holds them now.
    async fn roles(&self, principal: &Principal) -> Result<Vec<String>, ApiError>;

    /// Checks `current` and sets `new` (the policy was checked).
    async fn change_password(
        &self,
        principal: &Principal,
        current: &Password,
        new: &Password,
        now: i64,
    ) -> Result<(), IdentityError>;

    /// Proves the password, and the second factor when enrolled, again.
    async fn reauthenticate(
        &self,
        fields: &FieldCipher,
        principal: &Principal,
        password: &Password,
        code: Option<&SecretString>,
        now: i64,
    ) -> Result<SignedIn, IdentityError>;

    /// The caller's session after a re-authentication: fresh `auth_time` and
    /// `amr`, a new refresh token (the old one spent), fresh tokens.
    async fn resume_session(
        &self,
        issuer: &TokenIssuer,
        principal: &Principal,
        signed_in: SignedIn,
        meta: &ClientMeta,
        now: i64,
    ) -> Result<TokenResponse, ApiError>;

    /// The stored hash a presented refresh token is looked up by.
    fn refresh_hash(&self, presented: &SecretString) -> Option<TokenHash>;

    /// What a refresh of `session` (its token `presented`) rotates to.
    async fn renew(&self, session: &SessionRecord, presented: &SecretString)
        -> Result<Renewal, RenewRefusal>;

    /// The access token of a refreshed session.
    async fn access_token(
        &self,
        issuer: &TokenIssuer,
        session: &SessionRecord,
        renewal: Renewal,
    ) -> Result<String, ApiError>;

    /// Ends the account's sessions at the provider too (ours are revoked by the caller).
    async fn sign_out_everywhere(&self, req: &Request);

    async fn begin_totp(
        &self,
        fields: &FieldCipher,
        principal: &Principal,
        now: i64,
    ) -> Result<Enrolment, IdentityError>;

    /// Confirms an enrolment with a first code; the recovery codes to show once.
    async fn confirm_totp(
        &self,
        fields: &FieldCipher,
        principal: &Principal,
        code: &SecretString,
        now: i64,
    ) -> Result<Vec<String>, IdentityError>;

    /// Turns TOTP off, proven by a current code.
    async fn remove_totp(
        &self,
        fields: &FieldCipher,
        principal: &Principal,
        code: &SecretString,
        now: i64,
    ) -> Result<(), IdentityError>;
}
