//! MFA challenges: the `mfa_token` between a correct password and the second
//! factor. Five minutes, single use, at most five wrong codes, then burned.

use crate::store::StoreError;
use async_trait::async_trait;

/// Wrong codes an `mfa_token` survives; the fifth burns it.
pub const MAX_ATTEMPTS: i64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub user_id: String,
    pub attempts: i64,
    pub expires_at: i64,
    /// The throttle key the password step counted under (the account's, or a
    /// known device's: `crate::device`); the second step counts there too.
    pub throttle_key: Option<String>,
    /// The device token the password step minted, sealed
    /// (`crate::device::seal_for_challenge`), handed out only once the second
    /// factor succeeds (the mfa function cannot read the password hash it is bound to).
    pub device_token: Option<String>,
}

#[async_trait]
pub trait ChallengeStore: Send + Sync {
    /// Stores a new challenge; `Duplicate` (nothing changed) when one with this
    /// hash exists, so a live challenge's spent attempts are never reset.
    async fn create(&self, hash: &[u8; 32], challenge: &Challenge) -> Result<(), StoreError>;
    /// The live challenge (not expired, not burned), if any.
    async fn get(&self, hash: &[u8; 32], now: i64) -> Result<Option<Challenge>, StoreError>;
    /// Counts a wrong code; returns the attempts left (0 means burned).
    async fn fail(&self, hash: &[u8; 32], now: i64) -> Result<i64, StoreError>;
    /// Uses the challenge up; false when it was already used, burned or expired.
    async fn consume(&self, hash: &[u8; 32], now: i64) -> Result<bool, StoreError>;
}
