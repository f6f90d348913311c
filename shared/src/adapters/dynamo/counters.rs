//! Attempt counters in the table (items `THROTTLE#…`, see the table layout in
//! the parent module). The rules of `crate::throttle` are applied in
//! conditional writes, so concurrent attempts on other instances each get
//! their own count: count within an open window, lock once over the limit (the
//! first to get there wins), else start a new window.

use super::{conditional, get_n, n, read_item, s, unavailable, update_at, DynamoClient, Item};
use crate::store::StoreError;
use crate::throttle::{CounterStore, Limit, Verdict};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use std::collections::HashMap;

/// How often an attempt is tried again when another one changed the counter
/// between its conditional writes.
const ROUNDS: usize = 4;

/// Counters in the DynamoDB table.
#[derive(Clone)]
pub struct DynamoCounterStore {
    client: DynamoClient,
    table: String,
}

impl DynamoCounterStore {
    pub fn new(client: impl Into<DynamoClient>, table: String) -> Self {
        Self { client: client.into(), table }
    }

    fn key(key: &str) -> Item {
        HashMap::from([("pk".to_owned(), s(format!("THROTTLE#{key}"))), ("sk".to_owned(), s("THROTTLE"))])
    }

    /// Counts one attempt within an active, unlocked window: the counter as it
    /// is now, or `None` when there is no such window (locked, missing, ended).
    async fn count(&self, key: &str, cutoff: i64, now: i64) -> Result<Option<Item>, StoreError> {
        let counted = update_at(&self.client, &self.table, Self::key(key))
            .await
            .update_expression("SET failures = failures + :one")
            .condition_expression("attribute_exists(pk) AND window_start > :cutoff AND locked_until <= :now")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cutoff", n(cutoff))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        Ok(conditional(counted)?.ok().map(|out| out.attributes().cloned().unwrap_or_default()))
    }

    /// Locks the key at `level` until `until`; false when another attempt
    /// locked it first.
    async fn lock(
        &self,
        key: &str,
        limit: &Limit,
        level: i64,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let locked = update_at(&self.client, &self.table, Self::key(key))
            .await
            .update_expression(
                "SET locked_until = :until, #level = :level, failures = :zero, window_start = :until, expires_at = :exp",
            )
            .condition_expression("locked_until <= :now")
            .expression_attribute_names("#level", "level")
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":level", n(level))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":exp", n(until + limit.window_secs + 60))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        Ok(conditional(locked)?.is_ok())
    }

    /// The counter as stored (empty when there is none).
    async fn read(&self, key: &str) -> Result<Item, StoreError> {
        let current = read_item(&self.client, &self.table, Self::key(key)).await?;
        Ok(current.unwrap_or_default())
    }

    /// Starts a new window holding this attempt, at back-off `level`, unless
    /// another attempt started one first (false).
    async fn start_window(&self, key: &str, limit: &Limit, level: i64, now: i64) -> Result<bool, StoreError> {
        let mut fresh = Self::key(key);
        fresh.insert("failures".into(), n(1));
        fresh.insert("window_start".into(), n(now));
        fresh.insert("locked_until".into(), n(0));
        fresh.insert("level".into(), n(level));
        fresh.insert("expires_at".into(), n(now + limit.window_secs + limit.max_lock_secs + 60));
        let started = self
            .client
            .get()
            .await
            .put_item()
            .table_name(&self.table)
            .set_item(Some(fresh))
            .condition_expression(
                "attribute_not_exists(pk) OR (window_start <= :cutoff AND locked_until <= :now)",
            )
            .expression_attribute_values(":cutoff", n(now - limit.window_secs))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        Ok(conditional(started)?.is_ok())
    }
}

/// A numeric attribute of a counter; absent counts as 0.
fn num(item: &Item, name: &str) -> i64 {
    get_n(item, name).unwrap_or(0)
}

#[async_trait]
impl CounterStore for DynamoCounterStore {
    async fn attempt(&self, key: &str, limit: &Limit, now: i64) -> Result<Verdict, StoreError> {
        let cutoff = now - limit.window_secs;
        for _ in 0..ROUNDS {
            // 1. Count within an active, unlocked window.
            if let Some(item) = self.count(key, cutoff, now).await? {
                if num(&item, "failures") <= limit.max_failures {
                    return Ok(Verdict::Proceed);
                }
                // Over the limit: lock (the first to get here wins; the rest see the lock).
                let level = num(&item, "level") + 1;
                let until = now + limit.lock_secs(level);
                if self.lock(key, limit, level, until, now).await? {
                    return Ok(Verdict::Locked { retry_after_secs: until - now });
                }
                continue; // someone else locked it: read the lock below
            }
            // 2. Locked, missing, or the window ended: look.
            let item = self.read(key).await?;
            let locked_until = num(&item, "locked_until");
            if locked_until > now {
                return Ok(Verdict::Locked { retry_after_secs: locked_until - now });
            }
            // 3. Start a new window; the back-off level survives while locks are recent.
            let level = if item.is_empty() || locked_until + limit.window_secs <= now {
                0
            } else {
                num(&item, "level")
            };
            if self.start_window(key, limit, level, now).await? {
                return Ok(if limit.max_failures >= 1 {
                    Verdict::Proceed
                } else {
                    Verdict::Locked { retry_after_secs: 1 }
                });
            }
            // Lost a race with another attempt creating the window: count again.
        }
        Err(StoreError::Unavailable("attempt counter kept changing under contention".into()))
    }

    async fn succeed(&self, key: &str, reset: bool) -> Result<(), StoreError> {
        if reset {
            self.client
                .get()
                .await
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(key)))
                .send()
                .await
                .map_err(unavailable)?;
            return Ok(());
        }
        let returned = update_at(&self.client, &self.table, Self::key(key))
            .await
            .update_expression("SET failures = failures - :one")
            .condition_expression("failures > :zero")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        // No failure counted (or no counter): nothing to give back.
        conditional(returned)?.ok();
        Ok(())
    }
}
