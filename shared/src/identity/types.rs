//! What passes between the handlers and an identity provider: accounts,
//! challenges, sign-ins, principals and renewals. Provider-specific handles
//! are crate-private, so a handler cannot tell the providers apart.

use super::{IdentityError, ProviderTokens};
use crate::domain::Email;
use crate::http::Caller;
use crate::sessions::TokenHash;
use crate::store::UserRecord;
use crate::ApiError;
use secrecy::SecretString;

/// The account a typed email names, before its password is checked.
#[derive(Debug)]
pub struct Account {
    /// The throttle key of the account: the user id of a known native account,
    /// otherwise the keyed hash of what was typed (unknown accounts lock alike).
    pub key: String,
    /// What a device cookie of this account is bound to (empty when the
    /// provider keeps the password hash).
    pub binding: Vec<u8>,
    /// The user id, when known before the password is checked (the audit subject).
    pub subject: Option<String>,
    /// The audit reason when its password is refused.
    pub refusal: &'static str,
    pub(crate) email: Option<Email>,
    pub(crate) user: Option<UserRecord>,
}

/// What a provider may not offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    RecoveryCodes,
    RemoveTotp,
}

/// What a right password leads to.
#[derive(Debug)]
pub enum Next {
    SignedIn(SignedIn),
    /// A second factor decides; answer it with [`IdentityProvider::challenge`].
    SecondFactor(PendingFactor),
}

/// A right password.
#[derive(Debug)]
pub struct Verified {
    /// The device binding after the check (a rehash of the password changes it).
    pub binding: Vec<u8>,
    pub next: Next,
}

/// A login waiting for its second factor.
#[derive(Debug)]
pub struct PendingFactor {
    pub(crate) user_id: Option<String>,
    pub(crate) email: Option<Email>,
    pub(crate) pool_session: Option<SecretString>,
}

/// What a challenge carries from the password step to the second: the throttle
/// key that step counted under, and the device token the login earns.
#[derive(Debug, Clone)]
pub struct ChallengeSeed {
    pub bucket: String,
    pub device_token: String,
}

/// An `mfa_token` handed to the client.
#[derive(Debug)]
pub struct IssuedChallenge {
    pub mfa_token: String,
    pub methods: &'static [&'static str],
}

/// A live challenge, opened from its `mfa_token`.
#[derive(Debug)]
pub struct Challenge {
    /// The throttle key the password step counted under.
    pub bucket: String,
    /// The account, when the provider knows its id before the answer.
    pub subject: Option<String>,
    /// The device token to hand out once the second factor succeeds.
    pub device_token: Option<String>,
    pub(crate) inner: ChallengeHandle,
}

#[derive(Debug)]
pub(crate) enum ChallengeHandle {
    Stored { hash: [u8; 32], user_id: crate::domain::UserId },
    Sealed { email: String, session: SecretString },
}

/// An answer to a challenge.
pub enum Answer<'a> {
    Totp(&'a SecretString),
    RecoveryCode(&'a SecretString),
}

/// A completed authentication, ready to become a session.
#[derive(Debug)]
pub struct SignedIn {
    pub user_id: String,
    /// How (RFC 8176 `amr`): `pwd`, then `otp` or `mfa`.
    pub amr: Vec<String>,
    pub(crate) pool: Option<ProviderTokens>,
}

/// What a route needs to know of its caller: each function's database user
/// reads only the columns its routes need (the MFA function cannot read
/// password hashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The address and whether a second factor is on.
    Profile,
    /// The password too: password change and re-authentication (the device
    /// binding is the password hash's).
    Password,
}

/// The authenticated caller as its provider knows it.
#[derive(Debug)]
pub struct Principal {
    pub caller: Caller,
    pub email: Email,
    pub mfa_enabled: bool,
    /// The throttle key of the account's guessable routes, and its device binding.
    pub account_key: String,
    pub binding: Vec<u8>,
    pub(crate) user_id: Option<crate::domain::UserId>,
    pub(crate) user: Option<UserRecord>,
    pub(crate) pool_access: Option<SecretString>,
}

/// A started TOTP enrolment.
#[derive(Debug)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// What a refresh of a session carries into its rotation.
#[derive(Debug)]
pub struct Renewal {
    pub roles: Vec<String>,
    /// The successor refresh token and its hash; `None` keeps the presented one.
    pub successor: Option<(SecretString, TokenHash)>,
    /// A session that changed meanwhile may be read again and renewed anew
    /// (false once the provider has rotated on its side).
    pub retry_on_change: bool,
    pub(crate) pool_access: Option<SecretString>,
}

/// Why a refresh is refused (the client sees one answer; the audit the reason).
#[derive(Debug)]
pub enum RenewRefusal {
    Refused(&'static str),
    Provider(IdentityError),
    Failed(ApiError),
}
