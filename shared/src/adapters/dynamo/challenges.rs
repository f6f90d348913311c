//! MFA challenges in the table (items `MFA#…`, see the table layout in the
//! parent module): every count and the final use are conditional on the
//! challenge being live, so a burned or used one stays so.

use super::{conditional, created, get_n, get_s, n, read_as, s, update_at, DynamoClient, Item};
use crate::mfa::{Challenge, ChallengeStore, MAX_ATTEMPTS};
use crate::store::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use std::collections::HashMap;

/// MFA challenges in the DynamoDB table.
#[derive(Clone)]
pub struct DynamoChallengeStore {
    client: DynamoClient,
    table: String,
}

impl DynamoChallengeStore {
    pub fn new(client: impl Into<DynamoClient>, table: String) -> Self {
        Self { client: client.into(), table }
    }
}

fn key(hash: &[u8; 32]) -> Item {
    HashMap::from([("pk".to_owned(), s(format!("MFA#{}", hex::encode(hash)))), ("sk".to_owned(), s("MFA"))])
}

const LIVE: &str = "attribute_exists(pk) AND attempts < :max AND expires_at > :now";

#[async_trait]
impl ChallengeStore for DynamoChallengeStore {
    async fn create(&self, hash: &[u8; 32], c: &Challenge) -> Result<(), StoreError> {
        let mut item = key(hash);
        item.insert("user_id".into(), s(&c.user_id));
        item.insert("attempts".into(), n(c.attempts));
        item.insert("expires_at".into(), n(c.expires_at));
        if let Some(key) = &c.throttle_key {
            item.insert("throttle_key".into(), s(key));
        }
        if let Some(token) = &c.device_token {
            item.insert("device_token".into(), s(token));
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
        created(result)
    }

    async fn get(&self, hash: &[u8; 32], now: i64) -> Result<Option<Challenge>, StoreError> {
        let found = read_as((&self.client, &self.table), key(hash), "challenge", |item| {
            Some(Challenge {
                user_id: get_s(item, "user_id")?,
                attempts: get_n(item, "attempts")?,
                expires_at: get_n(item, "expires_at")?,
                throttle_key: get_s(item, "throttle_key"),
                device_token: get_s(item, "device_token"),
            })
        })
        .await?;
        Ok(found.filter(|c| c.expires_at > now && c.attempts < MAX_ATTEMPTS))
    }

    async fn fail(&self, hash: &[u8; 32], now: i64) -> Result<i64, StoreError> {
        let result = update_at(&self.client, &self.table, key(hash))
            .await
            .update_expression("SET attempts = attempts + :one")
            .condition_expression(LIVE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(MAX_ATTEMPTS))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        // Not live (used, burned, expired or unknown): no attempts left.
        let Ok(out) = conditional(result)? else { return Ok(0) };
        let attempts = out.attributes().and_then(|a| get_n(a, "attempts")).unwrap_or(MAX_ATTEMPTS);
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
        // Not live: already used, burned or expired.
        Ok(conditional(result)?.is_ok())
    }
}
