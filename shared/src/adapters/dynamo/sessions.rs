//! Sessions and refresh tokens in the table (items `USER#…`/`SESSION#…` and
//! `RT#…`, see the table layout in the parent module): a session and its first
//! token are written together, and every rotation spends the old token, writes
//! its successor and touches the session in one transaction.

use super::{
    conditional, created, get_list, get_n, get_s, list, n, put_step, query_all, read_as, read_item, s,
    transact, unavailable, update_at, DynamoClient, Item, NEW_ITEM,
};
use crate::sessions::{
    NewSession, Reauth, RefreshRecord, Rotate, Rotation, SessionRecord, SessionStore, TokenHash,
};
use crate::store::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use std::collections::HashMap;

fn session_key(user_id: &str, sid: &str) -> Item {
    HashMap::from([("pk".into(), s(format!("USER#{user_id}"))), ("sk".into(), s(format!("SESSION#{sid}")))])
}

fn token_key(hash: &TokenHash) -> Item {
    HashMap::from([("pk".into(), s(format!("RT#{}", hash.hex()))), ("sk".into(), s("RT"))])
}

fn session_from(item: &Item) -> Result<SessionRecord, StoreError> {
    let corrupt = || StoreError::Corrupt("session item");
    let user_id =
        get_s(item, "pk").and_then(|p| p.strip_prefix("USER#").map(str::to_owned)).ok_or_else(corrupt)?;
    let sid =
        get_s(item, "sk").and_then(|p| p.strip_prefix("SESSION#").map(str::to_owned)).ok_or_else(corrupt)?;
    let created_at = get_n(item, "created_at").ok_or_else(corrupt)?;
    let head = match get_s(item, "head") {
        None => None,
        Some(text) => {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&text, &mut hash).map_err(|_| corrupt())?;
            Some(TokenHash(hash))
        }
    };
    Ok(SessionRecord {
        user_id,
        sid,
        created_at,
        last_used_at: get_n(item, "last_used_at").ok_or_else(corrupt)?,
        revoked_at: get_n(item, "revoked_at"),
        user_agent: get_s(item, "user_agent"),
        ip: get_s(item, "ip"),
        amr: get_list(item, "amr"),
        // Sessions written before re-authentication existed: their login's time.
        auth_time: get_n(item, "auth_time").unwrap_or(created_at),
        roles: get_list(item, "roles"),
        roles_version: get_n(item, "roles_version").unwrap_or(0),
        head,
    })
}

/// Sessions and refresh tokens in one DynamoDB table.
#[derive(Clone)]
pub struct DynamoSessionStore {
    client: DynamoClient,
    table: String,
}

impl DynamoSessionStore {
    pub fn new(client: impl Into<DynamoClient>, table: String) -> Self {
        Self { client: client.into(), table }
    }

    /// An UpdateItem on one session record.
    async fn update_session(&self, user_id: &str, sid: &str) -> UpdateItemFluentBuilder {
        update_at(&self.client, &self.table, session_key(user_id, sid)).await
    }

    /// The transaction item that spends refresh token `old` (only while it is active).
    fn spend(&self, old: &TokenHash, now: i64) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(token_key(old)))
            .update_expression("SET #state = :spent, spent_at = :now")
            .condition_expression("#state = :active")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":spent", s("spent"))
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn token_put(
        &self,
        hash: &TokenHash,
        session: &SessionRecord,
        expires_at: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = token_key(hash);
        item.insert("user_id".into(), s(&session.user_id));
        item.insert("sid".into(), s(&session.sid));
        item.insert("state".into(), s("active"));
        item.insert("expires_at".into(), n(expires_at));
        put_step(&self.table, item, NEW_ITEM)
    }
}

#[async_trait]
impl SessionStore for DynamoSessionStore {
    async fn create(&self, new: NewSession<'_>) -> Result<(), StoreError> {
        let NewSession { session, first, expires_at } = new;
        let mut item = session_key(&session.user_id, &session.sid);
        item.insert("created_at".into(), n(session.created_at));
        item.insert("last_used_at".into(), n(session.last_used_at));
        item.insert("amr".into(), list(&session.amr));
        item.insert("roles".into(), list(&session.roles));
        item.insert("auth_time".into(), n(session.auth_time));
        item.insert("roles_version".into(), n(session.roles_version));
        item.insert("head".into(), s(first.hex()));
        item.insert("expires_at".into(), n(expires_at));
        if let Some(ua) = &session.user_agent {
            item.insert("user_agent".into(), s(ua));
        }
        if let Some(ip) = &session.ip {
            item.insert("ip".into(), s(ip));
        }
        let steps = vec![put_step(&self.table, item, NEW_ITEM)?, self.token_put(first, session, expires_at)?];
        created(transact(&self.client, steps).await)
    }

    async fn refresh_token(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        read_as((&self.client, &self.table), token_key(hash), "refresh token item", |item| {
            Some(RefreshRecord {
                user_id: get_s(item, "user_id")?,
                sid: get_s(item, "sid")?,
                spent: get_s(item, "state")? != "active",
            })
        })
        .await
    }

    async fn get(&self, user_id: &str, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        let out = read_item(&self.client, &self.table, session_key(user_id, sid)).await?;
        out.as_ref().map(session_from).transpose()
    }

    async fn rotate(&self, step: Rotate<'_>) -> Result<Rotation, StoreError> {
        let Rotate { session, old, new, roles, now, expires_at } = step;
        let spend = self.spend(old, now)?;
        let touch = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(&session.user_id, &session.sid)))
            .update_expression("SET last_used_at = :now, #roles = :roles, head = :new")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(revoked_at) \
                 AND (attribute_not_exists(roles_version) OR roles_version = :version)",
            )
            .expression_attribute_names("#roles", "roles")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":roles", list(roles))
            .expression_attribute_values(":new", s(new.hex()))
            .expression_attribute_values(":version", n(session.roles_version))
            .build()
            .map_err(unavailable)?;
        let touch = TransactWriteItem::builder().update(touch).build();
        let result =
            transact(&self.client, vec![spend, self.token_put(new, session, expires_at)?, touch]).await;
        match conditional(result)? {
            Ok(_) => Ok(Rotation::Rotated),
            Err(cancelled) => cancelled_rotation(&reasons(&cancelled)),
        }
    }

    async fn touch(&self, user_id: &str, sid: &str, roles: &[String], now: i64) -> Result<(), StoreError> {
        let update = self
            .update_session(user_id, sid)
            .await
            .update_expression("SET #roles = :roles, last_used_at = :now")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(revoked_at)")
            .expression_attribute_names("#roles", "roles")
            .expression_attribute_values(":roles", list(roles))
            .expression_attribute_values(":now", n(now));
        // A failed condition (no such session, or one already revoked) leaves it as it is.
        conditional(update.send().await)?.ok();
        Ok(())
    }

    async fn set_roles(&self, user_id: &str, sid: &str, roles: &[String]) -> Result<(), StoreError> {
        let update = self
            .update_session(user_id, sid)
            .await
            .update_expression("SET #roles = :roles ADD roles_version :one")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#roles", "roles")
            .expression_attribute_values(":roles", list(roles))
            .expression_attribute_values(":one", n(1));
        // A failed condition (no such session, or one already revoked) leaves it as it is.
        conditional(update.send().await)?.ok();
        Ok(())
    }

    async fn reauthenticate(&self, step: Reauth<'_>) -> Result<Rotation, StoreError> {
        let Reauth { session, new, amr, now, expires_at } = step;
        let touch = Update::builder()
            .table_name(&self.table)
            .set_key(Some(session_key(&session.user_id, &session.sid)))
            .update_expression("SET last_used_at = :now, auth_time = :now, amr = :amr, head = :new")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":amr", list(amr))
            .expression_attribute_values(":new", s(new.hex()));
        // No recorded live token (a session from before `head`): nothing to spend,
        // and a second live chain would hide reuse. Refused; the caller logs in again.
        let Some(old) = &session.head else {
            return Ok(Rotation::SessionChanged);
        };
        let touch = touch
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(revoked_at) AND head = :old")
            .expression_attribute_values(":old", s(old.hex()));
        let spend = self.spend(old, now)?;
        let mut items = vec![spend];
        items.push(self.token_put(new, session, expires_at)?);
        items.push(TransactWriteItem::builder().update(touch.build().map_err(unavailable)?).build());
        let result = transact(&self.client, items).await;
        match conditional(result)? {
            Ok(_) => Ok(Rotation::Rotated),
            // The live token moved on (a refresh won) or the session ended: read it again.
            Err(_) => Ok(Rotation::SessionChanged),
        }
    }

    async fn revoke(&self, user_id: &str, sid: &str, now: i64) -> Result<(), StoreError> {
        // Already revoked, or no such session: revocation is idempotent.
        let update = self
            .update_session(user_id, sid)
            .await
            .update_expression("SET revoked_at = :now")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(revoked_at)")
            .expression_attribute_values(":now", n(now));
        // A failed condition (no such session, or one already revoked) leaves it as it is.
        conditional(update.send().await)?.ok();
        Ok(())
    }

    async fn list(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let items =
            query_all((&self.client, &self.table), format!("USER#{user_id}"), Some("SESSION#")).await?;
        let mut out = items.iter().map(session_from).collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }
}

/// Why each item of a cancelled transaction failed, in item order (DynamoDB
/// names an item that did not fail with the code "None").
fn reasons(cancelled: &TransactWriteItemsError) -> Vec<Option<String>> {
    match cancelled {
        TransactWriteItemsError::TransactionCanceledException(c) => {
            c.cancellation_reasons().iter().map(|r| r.code().map(str::to_owned)).collect()
        }
        _ => Vec::new(),
    }
}

/// What a cancelled rotation means, from DynamoDB's reasons in item order
/// (spend the old token, put its successor, touch the session). A conflict on
/// the spend is another rotation of the same token in flight: the token was
/// spent, and presenting it twice is reuse, not a fault of the store.
fn cancelled_rotation(reasons: &[Option<String>]) -> Result<Rotation, StoreError> {
    let reason = |i: usize| reasons.get(i).and_then(|r| r.as_deref());
    match (reason(0), reason(2)) {
        _ if reasons.is_empty() => Ok(Rotation::AlreadySpent),
        (Some("ConditionalCheckFailed" | "TransactionConflict"), _) => Ok(Rotation::AlreadySpent),
        (_, Some("ConditionalCheckFailed" | "TransactionConflict")) => Ok(Rotation::SessionChanged),
        _ => Err(StoreError::Unavailable(format!("transaction cancelled: {reasons:?}").into())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_conflicting_rotation_of_the_same_token_is_reuse() {
        let r = |codes: &[&str]| -> Vec<Option<String>> {
            // DynamoDB names an item that did not fail with the code "None".
            codes.iter().map(|c| Some(c.to_string())).collect()
        };
        let spent = |codes: &[&str]| {
            matches!(super::cancelled_rotation(&r(codes)), Ok(super::Rotation::AlreadySpent))
        };
        assert!(spent(&["ConditionalCheckFailed", "None", "None"]));
        assert!(spent(&["TransactionConflict", "None", "None"]), "a concurrent rotation is reuse, not a 503");
        assert!(spent(&[]));
        assert!(matches!(
            super::cancelled_rotation(&r(&["None", "None", "ConditionalCheckFailed"])),
            Ok(super::Rotation::SessionChanged)
        ));
        assert!(super::cancelled_rotation(&r(&["ThrottlingError", "None", "None"])).is_err());
    }
}
