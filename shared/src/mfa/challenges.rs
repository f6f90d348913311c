//! MFA challenges: the `mfa_token` between a correct password and the second
//! factor. Five minutes, single use, at most five wrong codes, then burned.
//! DynamoDB item `pk = MFA#<sha-256 hex>`, `sk = MFA`, TTL `expires_at`.

use crate::store::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use std::collections::HashMap;

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

#[derive(Clone)]
pub struct DynamoChallengeStore {
    client: crate::runtime::AwsClient<aws_sdk_dynamodb::Client>,
    table: String,
}

impl DynamoChallengeStore {
    pub fn new(
        client: impl Into<crate::runtime::AwsClient<aws_sdk_dynamodb::Client>>,
        table: String,
    ) -> Self {
        Self { client: client.into(), table }
    }
}

fn key(hash: &[u8; 32]) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(format!("MFA#{}", hex::encode(hash)))),
        ("sk".to_owned(), AttributeValue::S("MFA".into())),
    ])
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(err))
}

const LIVE: &str = "attribute_exists(pk) AND attempts < :max AND expires_at > :now";

#[async_trait]
impl ChallengeStore for DynamoChallengeStore {
    async fn create(&self, hash: &[u8; 32], c: &Challenge) -> Result<(), StoreError> {
        let mut item = key(hash);
        item.insert("user_id".into(), AttributeValue::S(c.user_id.clone()));
        item.insert("attempts".into(), n(c.attempts));
        item.insert("expires_at".into(), n(c.expires_at));
        if let Some(key) = &c.throttle_key {
            item.insert("throttle_key".into(), AttributeValue::S(key.clone()));
        }
        if let Some(token) = &c.device_token {
            item.insert("device_token".into(), AttributeValue::S(token.clone()));
        }
        let result = self
            .client
            .get()
            .await
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(StoreError::Duplicate)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get(&self, hash: &[u8; 32], now: i64) -> Result<Option<Challenge>, StoreError> {
        let out = self
            .client
            .get()
            .await
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(hash)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = out.item() else { return Ok(None) };
        let num = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
        let challenge = Challenge {
            user_id: item
                .get("user_id")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .ok_or(StoreError::Corrupt("challenge"))?,
            attempts: num("attempts").ok_or(StoreError::Corrupt("challenge"))?,
            expires_at: num("expires_at").ok_or(StoreError::Corrupt("challenge"))?,
            throttle_key: item.get("throttle_key").and_then(|v| v.as_s().ok()).cloned(),
            device_token: item.get("device_token").and_then(|v| v.as_s().ok()).cloned(),
        };
        Ok((challenge.expires_at > now && challenge.attempts < MAX_ATTEMPTS).then_some(challenge))
    }

    async fn fail(&self, hash: &[u8; 32], now: i64) -> Result<i64, StoreError> {
        let result = self
            .client
            .get()
            .await
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(hash)))
            .update_expression("SET attempts = attempts + :one")
            .condition_expression(LIVE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(MAX_ATTEMPTS))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        let attempts = match result {
            Ok(out) => out
                .attributes()
                .and_then(|a| a.get("attempts"))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(MAX_ATTEMPTS),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                return Ok(0)
            }
            Err(e) => return Err(unavailable(e)),
        };
        Ok((MAX_ATTEMPTS - attempts).max(0))
    }

    async fn consume(&self, hash: &[u8; 32], now: i64) -> Result<bool, StoreError> {
        let result = self
            .client
            .get()
            .await
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(hash)))
            .condition_expression(LIVE)
            .expression_attribute_values(":max", n(MAX_ATTEMPTS))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}
