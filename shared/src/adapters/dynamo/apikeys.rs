//! API keys in the table (items `APIKEY#…` and the creator index
//! `APIKEY#BY#…`, see the table layout in the parent module): a key and its
//! index entry are written in one transaction.

use super::{
    conditional, created, get_list, get_n, get_s, list, n, put_step, query_all, read_as, s, transact,
    update_at, DynamoClient, Item, NEW_ITEM,
};
use crate::apikeys::{ApiKeyRecord, ApiKeyStore};
use crate::sessions::TokenHash;
use crate::store::StoreError;
use async_trait::async_trait;
use std::collections::HashMap;

/// API keys in the DynamoDB table.
#[derive(Clone)]
pub struct DynamoApiKeyStore {
    client: DynamoClient,
    table: String,
}

impl DynamoApiKeyStore {
    pub fn new(client: impl Into<DynamoClient>, table: String) -> Self {
        Self { client: client.into(), table }
    }
}

fn key_of(key_id: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(format!("APIKEY#{key_id}"))), ("sk".to_owned(), s("APIKEY"))])
}

fn index_of(creator: &str, key_id: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(format!("APIKEY#BY#{creator}"))), ("sk".to_owned(), s(key_id))])
}

#[async_trait]
impl ApiKeyStore for DynamoApiKeyStore {
    async fn create(&self, k: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut item = key_of(&k.key_id);
        item.insert("hash".into(), s(k.hash.hex()));
        item.insert("name".into(), s(&k.name));
        item.insert("permissions".into(), list(&k.permissions));
        item.insert("created_by".into(), s(&k.created_by));
        item.insert("created_at".into(), n(k.created_at));
        item.insert("valid_until".into(), n(k.valid_until));
        let expires_at = n(k.valid_until + 86_400);
        item.insert("expires_at".into(), expires_at.clone());
        let mut index = index_of(&k.created_by, &k.key_id);
        index.insert("expires_at".into(), expires_at);
        let steps = vec![put_step(&self.table, item, NEW_ITEM)?, put_step(&self.table, index, None)?];
        created(transact(&self.client, steps).await)
    }

    async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        read_as((&self.client, &self.table), key_of(key_id), "api key item", |item| {
            let hash: [u8; 32] = hex::decode(get_s(item, "hash")?).ok()?.try_into().ok()?;
            Some(ApiKeyRecord {
                key_id: key_id.to_owned(),
                name: get_s(item, "name").unwrap_or_default(),
                hash: TokenHash(hash),
                permissions: get_list(item, "permissions"),
                created_by: get_s(item, "created_by").unwrap_or_default(),
                created_at: get_n(item, "created_at")?,
                valid_until: get_n(item, "valid_until")?,
                revoked_at: get_n(item, "revoked_at"),
            })
        })
        .await
    }

    async fn revoke(&self, key_id: &str, now: i64) -> Result<bool, StoreError> {
        let result = update_at(&self.client, &self.table, key_of(key_id))
            .await
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :now)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        // No such key: nothing to revoke.
        Ok(conditional(result)?.is_ok())
    }

    async fn list_by_creator(&self, creator: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let index = query_all((&self.client, &self.table), format!("APIKEY#BY#{creator}"), None).await?;
        let ids = index.iter().filter_map(|i| i.get("sk")?.as_s().ok().cloned());
        let mut keys = Vec::new();
        for id in ids {
            // A key that expiry has already removed needs no revocation.
            keys.extend(self.get(&id).await?.filter(|k| k.created_by == creator));
        }
        Ok(keys)
    }
}
