//! Short-lived state: MFA challenges (`ChallengeStore`) and attempt counters
//! (`CounterStore`). Each change reads and writes in one `BEGIN IMMEDIATE`
//! transaction, so concurrent wrong codes cannot over-spend a challenge and
//! concurrent attempts are each counted.

use super::{classify, SqliteStore};
use crate::mfa::{Challenge, ChallengeStore, MAX_ATTEMPTS};
use crate::store::StoreError;
use crate::throttle::{Counter, CounterStore, Limit, Verdict};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

#[async_trait]
impl ChallengeStore for SqliteStore {
    async fn create(&self, hash: &[u8; 32], c: &Challenge) -> Result<(), StoreError> {
        let (hash, c) = (*hash, c.clone());
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO mfa_challenges (hash, user_id, attempts, expires_at, throttle_key, device_token) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![hash, c.user_id, c.attempts, c.expires_at, c.throttle_key, c.device_token],
            )
            .map(drop)
            .map_err(classify)
        })
        .await
    }

    async fn get(&self, hash: &[u8; 32], now: i64) -> Result<Option<Challenge>, StoreError> {
        let hash = *hash;
        self.run(move |conn| {
            conn.prepare_cached(
                "SELECT user_id, attempts, expires_at, throttle_key, device_token FROM mfa_challenges \
                 WHERE hash = ?1 AND expires_at > ?2 AND attempts < ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![hash, now, MAX_ATTEMPTS], |r| {
                    Ok(Challenge {
                        user_id: r.get(0)?,
                        attempts: r.get(1)?,
                        expires_at: r.get(2)?,
                        throttle_key: r.get(3)?,
                        device_token: r.get(4)?,
                    })
                })
                .optional()
            })
            .map_err(classify)
        })
        .await
    }

    async fn fail(&self, hash: &[u8; 32], now: i64) -> Result<i64, StoreError> {
        let hash = *hash;
        self.write(move |tx| {
            let attempts: Option<i64> = tx
                .query_row(
                    "UPDATE mfa_challenges SET attempts = attempts + 1 WHERE hash = ?1 AND expires_at > ?2 \
                     AND attempts < ?3 RETURNING attempts",
                    params![hash, now, MAX_ATTEMPTS],
                    |r| r.get(0),
                )
                .optional()
                .map_err(classify)?;
            let Some(attempts) = attempts else { return Ok(0) };
            let left = (MAX_ATTEMPTS - attempts).max(0);
            if left == 0 {
                tx.execute("DELETE FROM mfa_challenges WHERE hash = ?1", [hash]).map_err(classify)?;
            }
            Ok(left)
        })
        .await
    }

    async fn consume(&self, hash: &[u8; 32], now: i64) -> Result<bool, StoreError> {
        let hash = *hash;
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM mfa_challenges WHERE hash = ?1 AND expires_at > ?2 AND attempts < ?3",
                params![hash, now, MAX_ATTEMPTS],
            )
            .map(|n| n == 1)
            .map_err(classify)
        })
        .await
    }
}

#[async_trait]
impl CounterStore for SqliteStore {
    async fn attempt(&self, key: &str, limit: &Limit, now: i64) -> Result<Verdict, StoreError> {
        let (key, limit) = (key.to_owned(), *limit);
        self.write(move |tx| {
            let mut counter = tx
                .query_row(
                    "SELECT failures, window_start, locked_until, level FROM attempt_counters WHERE key = ?1",
                    [&key],
                    |r| Ok(Counter { failures: r.get(0)?, window_start: r.get(1)?, locked_until: r.get(2)?, level: r.get(3)? }),
                )
                .optional()
                .map_err(classify)?
                .unwrap_or_default();
            let verdict = counter.attempt(&limit, now);
            // Kept until the window and the longest lock after it have passed.
            let expires_at =
                counter.window_start.max(counter.locked_until) + limit.window_secs + limit.max_lock_secs + 60;
            tx.execute(
                "INSERT INTO attempt_counters (key, failures, window_start, locked_until, level, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, \
                 window_start = excluded.window_start, locked_until = excluded.locked_until, \
                 level = excluded.level, expires_at = excluded.expires_at",
                params![key, counter.failures, counter.window_start, counter.locked_until, counter.level, expires_at],
            )
            .map_err(classify)?;
            Ok(verdict)
        })
        .await
    }

    async fn succeed(&self, key: &str, reset: bool) -> Result<(), StoreError> {
        let key = key.to_owned();
        let sql = if reset {
            "DELETE FROM attempt_counters WHERE key = ?1"
        } else {
            "UPDATE attempt_counters SET failures = failures - 1 WHERE key = ?1 AND failures > 0"
        };
        self.run(move |conn| conn.execute(sql, [key]).map(drop).map_err(classify)).await
    }
}
