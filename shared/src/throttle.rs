//! Brute-force and credential-stuffing defence (OWASP A07, ASVS V2.2/V6.3).
//!
//! Every attempt is counted *before* its credential is checked: an atomic
//! increment that refuses while a lock is in force. So N parallel attempts get N
//! distinct counts and at most `max_failures` of them are checked; the rest are
//! refused. A success resets the account's counter (and gives its slot back to
//! the source IP). Crossing the limit locks with growing back-off (base, 2×base,
//! 4×base … capped); attempts during a lock are refused without counting, so a
//! lock is never extended by them. Unknown accounts are counted exactly like
//! existing ones. The counters live behind the `CounterStore` port (`crate::adapters`).

use crate::store::StoreError;
use async_trait::async_trait;

/// One limit: how many attempts in a window, and how long locks last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max_failures: i64,
    pub window_secs: i64,
    pub base_lock_secs: i64,
    pub max_lock_secs: i64,
}

impl Limit {
    /// Lock length for the `level`-th lock in a row: base · 2^(level-1), capped.
    pub fn lock_secs(&self, level: i64) -> i64 {
        let factor = 1_i64.checked_shl(level.clamp(1, 32) as u32 - 1).unwrap_or(i64::MAX);
        self.base_lock_secs.saturating_mul(factor).min(self.max_lock_secs)
    }
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the credential.
    Proceed,
    /// Refuse: locked for this many more seconds.
    Locked { retry_after_secs: i64 },
}

/// Atomic attempt counters.
#[async_trait]
pub trait CounterStore: Send + Sync {
    /// Counts one attempt against `key` and says whether it may proceed.
    async fn attempt(&self, key: &str, limit: &Limit, now: i64) -> Result<Verdict, StoreError>;
    /// After a success: forget the key's failures (`reset`) or give back the
    /// attempt's slot (`!reset`, for shared keys such as a source IP).
    async fn succeed(&self, key: &str, reset: bool) -> Result<(), StoreError>;
}

/// One key's count, and the rules every store that reads it whole applies
/// (the memory and SQLite stores; DynamoDB applies them in conditional writes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counter {
    pub(crate) failures: i64,
    pub(crate) window_start: i64,
    pub(crate) locked_until: i64,
    pub(crate) level: i64,
}

impl Counter {
    /// Counts one attempt at `now` (refused without counting while locked).
    pub(crate) fn attempt(&mut self, limit: &Limit, now: i64) -> Verdict {
        if self.locked_until > now {
            return Verdict::Locked { retry_after_secs: self.locked_until - now };
        }
        if self.window_start + limit.window_secs <= now {
            // The back-off level survives while the last lock is recent.
            let level = if self.locked_until + limit.window_secs > now { self.level } else { 0 };
            *self = Counter { failures: 0, window_start: now, locked_until: 0, level };
        }
        self.failures += 1;
        if self.failures > limit.max_failures {
            self.level += 1;
            self.locked_until = now + limit.lock_secs(self.level);
            self.failures = 0;
            self.window_start = self.locked_until;
            return Verdict::Locked { retry_after_secs: self.locked_until - now };
        }
        Verdict::Proceed
    }

    /// Gives one attempt's slot back.
    pub(crate) fn give_back(&mut self) {
        self.failures = (self.failures - 1).max(0);
    }
}

/// Why an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Account,
    SourceIp,
}

/// The account and source-IP limits over one counter store.
#[derive(Clone)]
pub struct Throttle {
    pub store: std::sync::Arc<dyn CounterStore>,
    pub account: Limit,
    pub ip: Limit,
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
}

impl Throttle {
    /// [`Throttle::admit`] with the answer a route gives: a 429 with
    /// `Retry-After`, audited as `login_throttled` with `reason(why)`, when the
    /// account or the source IP is over its limit; a 503, audited as
    /// `throttle_unavailable`, when the counters are unreachable (fail closed:
    /// no unthrottled guessing).
    pub async fn admit_audited(
        &self,
        auditor: &crate::audit::Auditor,
        account: &str,
        subject: Option<String>,
        meta: &crate::http::ClientMeta,
        reason: impl Fn(Refusal) -> &'static str,
    ) -> Result<(), crate::ApiError> {
        use crate::audit::EventType;
        match self.admit(Some(account), meta.source_ip.as_deref()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((why, retry_after))) => {
                auditor.record(EventType::LoginThrottled, subject, meta, Some(reason(why))).await;
                Err(crate::ApiError::TooManyRequests { retry_after_secs: retry_after.max(1) as u64 })
            }
            Err(err) => {
                auditor
                    .record(EventType::ThrottleUnavailable, subject, meta, Some("counter_store_error"))
                    .await;
                Err(crate::ApiError::unavailable(err))
            }
        }
    }

    /// Counts an attempt against the account (if known) and the source IP; `Err`
    /// when the counters are unreachable (callers fail closed with 503).
    pub async fn admit(
        &self,
        account: Option<&str>,
        ip: Option<&str>,
    ) -> Result<Result<(), (Refusal, i64)>, StoreError> {
        let now = self.clock.now_secs();
        let ip_key = format!("IP#{}", ip.unwrap_or("unknown"));
        let account_key = account.map(|a| format!("ACCT#{a}"));
        let (ip_verdict, account_verdict) = tokio::join!(self.store.attempt(&ip_key, &self.ip, now), async {
            match &account_key {
                Some(key) => self.store.attempt(key, &self.account, now).await.map(Some),
                None => Ok(None),
            }
        });
        let mut refusal: Option<(Refusal, i64)> = None;
        if let Some(Verdict::Locked { retry_after_secs }) = account_verdict? {
            refusal = Some((Refusal::Account, retry_after_secs));
        }
        if let Verdict::Locked { retry_after_secs } = ip_verdict? {
            let longer = refusal.map(|(_, r)| r.max(retry_after_secs)).unwrap_or(retry_after_secs);
            refusal = Some((Refusal::SourceIp, longer));
        }
        Ok(refusal.map_or(Ok(()), Err))
    }

    /// Forgets an account's failures and leaves the source IP's count as it is.
    /// Best effort: a counter store that does not answer is logged, and the
    /// count runs out with its window.
    pub async fn forget(&self, account: &str) {
        let forgotten = self.store.succeed(&format!("ACCT#{account}"), true).await;
        log_unsettled(forgotten);
    }

    /// After a successful step, best effort (as [`Throttle::forget`]): the
    /// source IP's slot is returned, and with `account` (the last factor of a
    /// login) the account's failures are forgotten. A step that is not the last
    /// (a right password before the second factor, a right current password)
    /// passes `None`: it must not wipe the count the account's other guessable
    /// routes share.
    pub async fn success(&self, account: Option<&str>, ip: Option<&str>) {
        if let Some(account) = account {
            self.forget(account).await;
        }
        let returned = self.store.succeed(&format!("IP#{}", ip.unwrap_or("unknown")), false).await;
        log_unsettled(returned);
    }
}

fn log_unsettled(result: Result<(), StoreError>) {
    if let Err(err) = result {
        tracing::warn!(error = %crate::error::error_chain(&err), "could not reset the attempt counter");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: Limit =
        Limit { max_failures: 5, window_secs: 900, base_lock_secs: 60, max_lock_secs: 900 };

    #[test]
    fn back_off_doubles_and_caps() {
        let secs: Vec<i64> = (1..=6).map(|l| ACCOUNT.lock_secs(l)).collect();
        assert_eq!(secs, [60, 120, 240, 480, 900, 900]);
        assert_eq!(ACCOUNT.lock_secs(1000), 900);
    }
}
