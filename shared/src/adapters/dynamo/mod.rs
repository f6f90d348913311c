//! DynamoDB adapters of the short-lived state: sessions and refresh tokens, API
//! keys, MFA challenges and attempt counters, all in one table, each change a
//! conditional write or a transaction.
//!
//! # The table
//!
//! Partition key `pk` and sort key `sk`, both strings; on-demand; DynamoDB's
//! TTL deletes an item once its `expires_at` (seconds) has passed. Every item
//! kind has its own `pk` prefix, so the template's `dynamodb:LeadingKeys`
//! conditions hold each function to the kinds it uses (only the admin function
//! may write `APIKEY#` items).
//!
//! | item | `pk` | `sk` | attributes |
//! | --- | --- | --- | --- |
//! | session | `USER#<user id>` | `SESSION#<sid>` | `created_at`, `last_used_at`, optional `revoked_at`, `user_agent`, `ip`; `amr`, `auth_time`, `roles`, `roles_version`, `head` (hash of the live refresh token) |
//! | refresh token | `RT#<sha-256 hex>` | `RT` | `user_id`, `sid`, `state` (`active` or `spent`), `spent_at` |
//! | API key | `APIKEY#<key id>` | `APIKEY` | `hash`, `name`, `permissions`, `created_by`, `created_at`, `valid_until`, optional `revoked_at` |
//! | API keys by creator | `APIKEY#BY#<creator>` | `<key id>` | none: written in the key's transaction, so one consistent query finds every key of a creator |
//! | MFA challenge | `MFA#<sha-256 hex of the mfa_token>` | `MFA` | `user_id`, `attempts`, optional `throttle_key`, `device_token` |
//! | attempt counter | `THROTTLE#<key>` (`ACCT#<account>` or `IP#<address>`) | `THROTTLE` | `failures`, `window_start`, `locked_until`, `level` |
//! | pending one-time token | `PENDING#<user id>` | the purpose (`verify_email`, `reset_password`, `change_email`) | `hash` (SHA-256 of the token's secret), optional `detail` |
//!
//! Every item carries `expires_at`: a session and its refresh tokens a day
//! after the session's absolute timeout, an API key and its index entry a day
//! after `valid_until`, a challenge or a pending token at its end, a counter
//! once its window and lock are over.

mod apikeys;
mod challenges;
mod counters;
mod pending;
mod sessions;

pub use apikeys::DynamoApiKeyStore;
pub use challenges::DynamoChallengeStore;
pub use counters::DynamoCounterStore;
pub use pending::DynamoPendingStore;
pub use sessions::DynamoSessionStore;

use crate::store::StoreError;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::{TransactWriteItemsError, TransactWriteItemsOutput};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

/// One item, or one item's key.
type Item = HashMap<String, AttributeValue>;

/// The table's DynamoDB client, built on first use.
type DynamoClient = crate::aws::AwsClient<Client>;

/// DynamoDB did not answer, or refused the request (throttling, access, a
/// malformed request): the store is unavailable.
fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(err))
}

/// The errors of the writes that carry a condition, and how each says the
/// condition failed: a single-item write answers `ConditionalCheckFailed`, a
/// transaction is cancelled as a whole.
trait ConditionFailure {
    fn is_condition_failure(&self) -> bool;
}

impl ConditionFailure for PutItemError {
    fn is_condition_failure(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailure for UpdateItemError {
    fn is_condition_failure(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailure for DeleteItemError {
    fn is_condition_failure(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailure for TransactWriteItemsError {
    fn is_condition_failure(&self) -> bool {
        self.is_transaction_canceled_exception()
    }
}

/// The outcome of a conditional write: `Ok(Ok(output))` when it was written,
/// `Ok(Err(refusal))` when its condition failed (an answer, not an outage: the
/// caller says what it means), `Err` when DynamoDB is unavailable.
fn conditional<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<Result<T, E>, StoreError>
where
    E: ConditionFailure + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Ok(out)),
        Err(SdkError::ServiceError(e)) if e.err().is_condition_failure() => Ok(Err(e.into_err())),
        Err(e) => Err(unavailable(e)),
    }
}

/// A conditional create: the condition failing means the item exists.
fn created<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<(), StoreError>
where
    E: ConditionFailure + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match conditional(result)? {
        Ok(_) => Ok(()),
        Err(_) => Err(StoreError::Duplicate),
    }
}

/// The item at `key` decoded by `decode`, read consistently (see
/// [`read_item`]); `None` when there is none. An item `decode` cannot read
/// (it answers `None`) is `Corrupt(what)`.
async fn read_as<T>(
    (client, table): (&DynamoClient, &str),
    key: Item,
    what: &'static str,
    decode: impl FnOnce(&Item) -> Option<T>,
) -> Result<Option<T>, StoreError> {
    match read_item(client, table, key).await? {
        None => Ok(None),
        Some(item) => decode(&item).map(Some).ok_or(StoreError::Corrupt(what)),
    }
}

/// Every item of partition `pk` (whose sort key begins with `prefix`, when
/// given), all pages, read consistently.
async fn query_all(
    (client, table): (&DynamoClient, &str),
    pk: String,
    prefix: Option<&str>,
) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let query = client
            .get()
            .await
            .query()
            .table_name(table)
            .expression_attribute_values(":pk", s(pk.clone()))
            .consistent_read(true)
            .set_exclusive_start_key(start.take());
        let query = match prefix {
            Some(prefix) => query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
            None => query.key_condition_expression("pk = :pk"),
        };
        let page = query.send().await.map_err(unavailable)?;
        let next = page.last_evaluated_key.filter(|key| !key.is_empty());
        items.extend(page.items.unwrap_or_default());
        match next {
            Some(key) => start = Some(key),
            None => return Ok(items),
        }
    }
}

/// One transaction of `steps`: all are written, or none.
async fn transact(
    client: &DynamoClient,
    steps: Vec<TransactWriteItem>,
) -> Result<TransactWriteItemsOutput, SdkError<TransactWriteItemsError, HttpResponse>> {
    client.get().await.transact_write_items().set_transact_items(Some(steps)).send().await
}

/// An UpdateItem on the item at `key`.
async fn update_at(client: &DynamoClient, table: &str, key: Item) -> UpdateItemFluentBuilder {
    client.get().await.update_item().table_name(table).set_key(Some(key))
}

/// The condition of a write that creates an item: none stands at its key.
const NEW_ITEM: Option<&str> = Some("attribute_not_exists(pk)");

/// A transaction step writing `item` where `condition` holds (`None`: always).
fn put_step(table: &str, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .set_condition_expression(condition.map(str::to_owned))
        .build()
        .map_err(unavailable)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// One item by its key, read consistently (a check-then-write reads what was
/// last written), or `None`.
async fn read_item(
    client: &DynamoClient,
    table: &str,
    key: HashMap<String, AttributeValue>,
) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
    let out = client
        .get()
        .await
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(unavailable)?;
    Ok(out.item)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn list(values: &[String]) -> AttributeValue {
    AttributeValue::L(values.iter().map(s).collect())
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// The strings of a list attribute; none when it is absent.
fn get_list(item: &Item, name: &str) -> Vec<String> {
    item.get(name)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|a| a.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

/// Creates the table as the IaC declares it (on-demand, TTL on `expires_at`).
/// For tests, emulators and local development; AWS deployments use the template.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let attr = |name: &str| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
    };
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    client
        .create_table()
        .table_name(table)
        .attribute_definitions(attr("pk").map_err(unavailable)?)
        .attribute_definitions(attr("sk").map_err(unavailable)?)
        .key_schema(key("pk", KeyType::Hash).map_err(unavailable)?)
        .key_schema(key("sk", KeyType::Range).map_err(unavailable)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(unavailable)?;
    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name("expires_at")
        .build()
        .map_err(unavailable)?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(unavailable)?;
    Ok(())
}
