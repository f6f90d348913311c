//! Pending one-time tokens: the single-use secrets in the links security mail
//! carries (confirm an address, reset a password, confirm a new address). A
//! token is `<user id>.<secret>`, the secret 256 bits from the OS CSPRNG; only
//! the SHA-256 of the secret is stored, one per account and purpose, so a newer
//! request replaces (invalidates) an older token, and a token is used up at
//! most once whatever races: taking it is one conditional delete.

use crate::store::StoreError;
use async_trait::async_trait;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
    ChangeEmail,
}

impl Purpose {
    pub const ALL: [Purpose; 3] = [Self::VerifyEmail, Self::ResetPassword, Self::ChangeEmail];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::ChangeEmail => "change_email",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// One account's pending token of one purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub user_id: String,
    pub purpose: Purpose,
    pub expires_at: i64,
    /// What the token confirms beyond the account, sealed by the caller (the
    /// new address of an email change); never read before the token is taken.
    pub detail: Option<String>,
}

/// The stored form of a token: its account and the SHA-256 of its secret.
pub struct TokenKey {
    pub user_id: String,
    pub hash: [u8; 32],
}

/// A fresh token for `user_id`: the token to mail, and the hash to store.
pub fn new_token(user_id: &str) -> (SecretString, [u8; 32]) {
    let secret = zeroize::Zeroizing::new(crate::crypto::random_bytes::<32>());
    let encoded = zeroize::Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*secret));
    let hash = digest(encoded.as_bytes());
    (SecretString::from(format!("{user_id}.{}", encoded.as_str())), hash)
}

/// The account and hash of a presented token, or `None` when it cannot be one.
pub fn parse_token(token: &SecretString) -> Option<TokenKey> {
    let (user_id, secret) = token.expose_secret().trim().split_once('.')?;
    let well_formed =
        secret.len() == 43 && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let user = crate::domain::UserId::parse(user_id)?;
    well_formed.then(|| TokenKey { user_id: user.to_string(), hash: digest(secret.as_bytes()) })
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[async_trait]
pub trait PendingStore: Send + Sync {
    /// Stores the token of `pending.user_id` and `pending.purpose`, replacing
    /// any earlier one of the pair.
    async fn put(&self, pending: &Pending, hash: &[u8; 32]) -> Result<(), StoreError>;
    /// Uses up the pair's token when `hash` is its hash and it has not expired
    /// at `now`: its record, once; `None` for a wrong, replaced, spent or
    /// expired token.
    async fn take(
        &self,
        user_id: &str,
        purpose: Purpose,
        hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<Pending>, StoreError>;
    /// Ends the pair's token, if any (a password change ends a pending reset).
    async fn revoke(&self, user_id: &str, purpose: Purpose) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_account_and_only_its_hash_is_kept() {
        let user = "0193f1a2-7c4e-7000-8000-000000000001";
        let (token, hash) = new_token(user);
        let key = parse_token(&token).expect("well formed");
        assert_eq!((key.user_id.as_str(), key.hash), (user, hash));
        assert!(!token.expose_secret().contains(&hex::encode(hash)));
        let (other, _) = new_token(user);
        assert_ne!(other.expose_secret(), token.expose_secret());
        for bad in [
            "",
            "nodot",
            &format!("{user}.short"),
            &format!("not-a-user.{}", "a".repeat(43)),
            &format!("{user}.{}", "é".repeat(43)),
        ] {
            assert!(parse_token(&SecretString::from(bad.to_owned())).is_none(), "{bad}");
        }
    }
}
