//! Pending one-time tokens in the table (items `PENDING#<user id>`, sort key
//! the purpose, see the table layout in the parent module): one item per
//! account and purpose, so a newer token overwrites an older; taking one is a
//! delete conditional on its hash and its expiry, which succeeds once.

use super::{conditional, get_n, get_s, n, s, unavailable, DynamoClient, Item};
use crate::pending::{Pending, PendingStore, Purpose};
use crate::store::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use std::collections::HashMap;

/// Pending tokens in the DynamoDB table.
#[derive(Clone)]
pub struct DynamoPendingStore {
    client: DynamoClient,
    table: String,
}

impl DynamoPendingStore {
    pub fn new(client: impl Into<DynamoClient>, table: String) -> Self {
        Self { client: client.into(), table }
    }
}

fn key(user_id: &str, purpose: Purpose) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("PENDING#{user_id}"))),
        ("sk".to_owned(), s(purpose.as_str())),
    ])
}

#[async_trait]
impl PendingStore for DynamoPendingStore {
    async fn put(&self, p: &Pending, hash: &[u8; 32]) -> Result<(), StoreError> {
        let mut item = key(&p.user_id, p.purpose);
        item.insert("hash".into(), AttributeValue::B(Blob::new(hash.to_vec())));
        item.insert("expires_at".into(), n(p.expires_at));
        if let Some(detail) = &p.detail {
            item.insert("detail".into(), s(detail));
        }
        let client = self.client.get().await;
        client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(unavailable)?;
        Ok(())
    }

    async fn take(
        &self,
        user_id: &str,
        purpose: Purpose,
        hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<Pending>, StoreError> {
        let result = self
            .client
            .get()
            .await
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(user_id, purpose)))
            .condition_expression("#h = :hash AND expires_at > :now")
            .expression_attribute_names("#h", "hash")
            .expression_attribute_values(":hash", AttributeValue::B(Blob::new(hash.to_vec())))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        // The condition failing: a wrong, replaced, spent or expired token.
        let Ok(out) = conditional(result)? else { return Ok(None) };
        let old = out.attributes().ok_or(StoreError::Corrupt("a taken token returned nothing"))?;
        let expires_at =
            get_n(old, "expires_at").ok_or(StoreError::Corrupt("a pending token without expiry"))?;
        Ok(Some(Pending { user_id: user_id.to_owned(), purpose, expires_at, detail: get_s(old, "detail") }))
    }

    async fn revoke(&self, user_id: &str, purpose: Purpose) -> Result<(), StoreError> {
        let client = self.client.get().await;
        let delete = client.delete_item().table_name(&self.table).set_key(Some(key(user_id, purpose)));
        delete.send().await.map_err(unavailable)?;
        Ok(())
    }
}
