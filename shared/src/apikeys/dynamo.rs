//! API keys in the DynamoDB table.
//!
//! Items:
//! - key: `pk = APIKEY#<key id>`, `sk = APIKEY`; `hash`, `name`, `permissions`,
//!   `created_by`, `created_at`, `valid_until`, optional `revoked_at`;
//! - creator index: `pk = APIKEY#BY#<creator>`, `sk = <key id>`, written in the
//!   same transaction as the key, so every key its creator's role changes must
//!   re-evaluate is found by one consistent query. Both live under `APIKEY#`,
//!   which only the admin function may write (`dynamodb:LeadingKeys`).

use super::{ApiKeyRecord, ApiKeyStore};
use crate::sessions::TokenHash;
use crate::store::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use std::collections::HashMap;

/// API keys in the DynamoDB table (see the module docs for the items).
#[derive(Clone)]
pub struct DynamoApiKeyStore {
    client: crate::runtime::AwsClient<aws_sdk_dynamodb::Client>,
    table: String,
}

impl DynamoApiKeyStore {
    pub fn new(
        client: impl Into<crate::runtime::AwsClient<aws_sdk_dynamodb::Client>>,
        table: String,
    ) -> Self {
        Self { client: client.into(), table }
    }
}

fn key_of(key_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(format!("APIKEY#{key_id}"))),
        ("sk".to_owned(), AttributeValue::S("APIKEY".into())),
    ])
}

fn index_of(creator: &str, key_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(format!("APIKEY#BY#{creator}"))),
        ("sk".to_owned(), AttributeValue::S(key_id.to_owned())),
    ])
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(err))
}

#[async_trait]
impl ApiKeyStore for DynamoApiKeyStore {
    async fn create(&self, k: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut item = key_of(&k.key_id);
        let n = |v: i64| AttributeValue::N(v.to_string());
        item.insert("hash".into(), AttributeValue::S(k.hash.hex()));
        item.insert("name".into(), AttributeValue::S(k.name.clone()));
        item.insert(
            "permissions".into(),
            AttributeValue::L(k.permissions.iter().cloned().map(AttributeValue::S).collect()),
        );
        item.insert("created_by".into(), AttributeValue::S(k.created_by.clone()));
        item.insert("created_at".into(), n(k.created_at));
        item.insert("valid_until".into(), n(k.valid_until));
        let expires_at = n(k.valid_until + 86_400);
        item.insert("expires_at".into(), expires_at.clone());
        let mut index = index_of(&k.created_by, &k.key_id);
        index.insert("expires_at".into(), expires_at);
        let put = |item, condition: Option<&str>| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_owned))
                .build()
                .map(|put| TransactWriteItem::builder().put(put).build())
                .map_err(unavailable)
        };
        let result = self
            .client
            .get()
            .await
            .transact_write_items()
            .transact_items(put(item, Some("attribute_not_exists(pk)"))?)
            .transact_items(put(index, None)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_transaction_canceled_exception() => {
                Err(StoreError::Duplicate)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let out = self
            .client
            .get()
            .await
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(key_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = out.item() else { return Ok(None) };
        let corrupt = || StoreError::Corrupt("api key item");
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let num = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
        let hash: [u8; 32] = hex::decode(text("hash").ok_or_else(corrupt)?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(corrupt)?;
        Ok(Some(ApiKeyRecord {
            key_id: key_id.to_owned(),
            name: text("name").unwrap_or_default(),
            hash: TokenHash(hash),
            permissions: item
                .get("permissions")
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|p| p.as_s().ok().cloned()).collect())
                .unwrap_or_default(),
            created_by: text("created_by").unwrap_or_default(),
            created_at: num("created_at").ok_or_else(corrupt)?,
            valid_until: num("valid_until").ok_or_else(corrupt)?,
            revoked_at: num("revoked_at"),
        }))
    }

    async fn revoke(&self, key_id: &str, now: i64) -> Result<bool, StoreError> {
        let result = self
            .client
            .get()
            .await
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(key_id)))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :now)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn list_by_creator(&self, creator: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .get()
                .await
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(format!("APIKEY#BY#{creator}")))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            ids.extend(page.items().iter().filter_map(|i| i.get("sk")?.as_s().ok().cloned()));
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        let mut keys = Vec::new();
        for id in ids {
            // A key that expiry has already removed needs no revocation.
            keys.extend(self.get(&id).await?.filter(|k| k.created_by == creator));
        }
        Ok(keys)
    }
}
