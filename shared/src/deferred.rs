//! Key material loaded once per process, off the cold-start path.
//!
//! A function's keys (a KMS unwrap, a MySQL read) are fetched by a task started
//! at cold start ([`Deferred::prefetch`]) or by the first request that needs
//! them ([`Deferred::lazy`]), and awaited only by the requests that need them,
//! so the runtime starts polling for the first event without waiting on KMS,
//! and a request that needs no key (a health check, a malformed body, a
//! missing token) is answered at once. A failed fetch is not cached: the next request
//! that needs the keys tries again, and meanwhile those requests get a 503,
//! never a guess. A loaded value can be reloaded, at most once per interval
//! (the authorizer does so for a token signed by a key published since), and
//! a value that must stay current (keys that can be revoked) has a [`MaxAge`]:
//! it is rechecked once it is that old, and refused once it could not be
//! rechecked for longer than a hard bound.

use crate::clock::{Clock, SystemClock};
use crate::error::BootError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::OnceCell;

type Loader<T> =
    dyn Fn(Option<Arc<T>>) -> Pin<Box<dyn Future<Output = Result<Arc<T>, BootError>> + Send>> + Send + Sync;

/// How long a loaded value may serve: past `recheck_secs` the next caller loads
/// it again (the loader gets the current value, to keep what has not changed);
/// when that fails, the current value serves on until it is `trust_secs` old,
/// and from then on callers get the failure (fail closed) until a load succeeds.
#[derive(Clone)]
pub struct MaxAge {
    pub clock: Arc<dyn Clock>,
    pub recheck_secs: i64,
    pub trust_secs: i64,
}

/// A value loaded at most once per generation, shared by clones. A generation
/// is a [`OnceCell`] holding the outcome of one load, a failure included: its
/// first caller loads, and every caller of the generation gets that outcome.
/// The reload rules (a [`MaxAge`] recheck, [`Deferred::reload_if_older`], a
/// failed generation) start a new generation, which keeps the last good value
/// to serve through an outage, except after a refusal.
pub struct Deferred<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    generation: RwLock<Arc<Generation<T>>>,
    load: Box<Loader<T>>,
    clock: Arc<dyn Clock>,
    max_age: Option<MaxAge>,
}

/// A loaded value and when it was loaded (seconds by the clock).
type Loaded<T> = (Arc<T>, i64);

/// One generation: the outcome of its load and when it ended, and the last good
/// value before it (none after a refusal).
struct Generation<T> {
    cell: OnceCell<(Result<Loaded<T>, BootError>, i64)>,
    previous: Option<Loaded<T>>,
}

impl<T> Clone for Deferred<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T> std::fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred").field("loaded", &self.loaded_value().is_some()).finish()
    }
}

impl<T> Deferred<T> {
    fn generation(&self) -> Arc<Generation<T>> {
        match self.inner.generation.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The generation after `stale`: started here, or by a concurrent caller
    /// that saw the same one (so one load serves them all). It keeps the last
    /// good value, unless `stale` was refused.
    fn renew(&self, stale: &Arc<Generation<T>>) -> Arc<Generation<T>> {
        let mut guard = match self.inner.generation.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if Arc::ptr_eq(&guard, stale) {
            let previous = match stale.cell.get() {
                Some((Ok(loaded), _)) => Some(loaded.clone()),
                Some((Err(refused), _)) if refused.is_refusal() => None,
                _ => stale.previous.clone(),
            };
            *guard = Arc::new(Generation { cell: OnceCell::new(), previous });
        }
        guard.clone()
    }

    /// The current generation's value, if its load succeeded (due or not).
    fn loaded_value(&self) -> Option<Loaded<T>> {
        match self.generation().cell.get() {
            Some((Ok(loaded), _)) => Some(loaded.clone()),
            _ => None,
        }
    }

    /// Seconds since `at`.
    fn age(&self, at: i64) -> i64 {
        self.inner.clock.now_secs().saturating_sub(at)
    }

    /// True when a value loaded then is due for its [`MaxAge`] recheck.
    fn due(&self, loaded_at: i64) -> bool {
        self.inner.max_age.as_ref().is_some_and(|max| self.age(loaded_at) >= max.recheck_secs)
    }

    /// What a failed generation answers: the last good value while it may
    /// serve (within the [`MaxAge`] hard bound; never after a refusal), else
    /// the failure.
    fn after_failure(&self, generation: &Generation<T>, err: &BootError) -> Result<Arc<T>, BootError> {
        let trusted = |at| self.inner.max_age.as_ref().is_none_or(|max| self.age(at) < max.trust_secs);
        match &generation.previous {
            Some((value, at)) if !err.is_refusal() && trusted(*at) => Ok(value.clone()),
            _ => Err(err.clone()),
        }
    }
}

impl<T: Send + Sync + 'static> Deferred<T> {
    /// Starts loading now, in the background (a Tokio runtime must be running).
    pub fn prefetch<F, Fut>(load: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, BootError>> + Send + 'static,
    {
        Self::lazy(load).start()
    }

    /// Loads on first use: for a value only some requests need, when a
    /// background load would compete with answering the others.
    pub fn lazy<F, Fut>(load: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, BootError>> + Send + 'static,
    {
        Self::build(None, move |_| {
            let loading = load();
            async move { loading.await.map(Arc::new) }
        })
    }

    /// [`Deferred::prefetch`] for a value that must stay current ([`MaxAge`]).
    pub fn prefetch_current<F, Fut>(max_age: MaxAge, load: F) -> Self
    where
        F: Fn(Option<Arc<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<T>, BootError>> + Send + 'static,
    {
        Self::lazy_current(max_age, load).start()
    }

    /// [`Deferred::lazy`] for a value that must stay current ([`MaxAge`]).
    pub fn lazy_current<F, Fut>(max_age: MaxAge, load: F) -> Self
    where
        F: Fn(Option<Arc<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<T>, BootError>> + Send + 'static,
    {
        Self::build(Some(max_age), load)
    }

    fn build<F, Fut>(max_age: Option<MaxAge>, load: F) -> Self
    where
        F: Fn(Option<Arc<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<T>, BootError>> + Send + 'static,
    {
        let clock = max_age.as_ref().map(|m| m.clock.clone()).unwrap_or_else(|| Arc::new(SystemClock));
        let first = Arc::new(Generation { cell: OnceCell::new(), previous: None });
        Self {
            inner: Arc::new(Inner {
                generation: RwLock::new(first),
                load: Box::new(move |current| Box::pin(load(current))),
                clock,
                max_age,
            }),
        }
    }

    fn start(self) -> Self {
        let background = self.clone();
        tokio::spawn(async move {
            // An error is logged by `get`; the first request that needs the value retries.
            let _ = background.get().await;
        });
        self
    }

    /// The value if a load has succeeded and it is not due for a recheck,
    /// without waiting or loading.
    pub fn loaded(&self) -> Option<Arc<T>> {
        let (value, loaded_at) = self.loaded_value()?;
        (!self.due(loaded_at)).then_some(value)
    }

    /// The value, loading it if no load has succeeded yet, if the last one
    /// failed, or (with a [`MaxAge`]) if it is due for a recheck. Concurrent
    /// callers share one load.
    pub async fn get(&self) -> Result<Arc<T>, BootError> {
        let mut generation = self.generation();
        match generation.cell.get() {
            Some((Ok((value, loaded_at)), _)) if !self.due(*loaded_at) => return Ok(value.clone()),
            // A failed reload of a value not yet due: that value serves, nothing is loaded.
            Some((Err(err), _)) if generation.previous.as_ref().is_some_and(|(_, at)| !self.due(*at)) => {
                return self.after_failure(&generation, err)
            }
            Some(_) => generation = self.renew(&generation),
            None => {}
        }
        self.load_in(&generation).await
    }

    /// Loads again if the last load (good or failed) is older than `min_age`
    /// (for a key published since: a token with an unknown `kid`), else answers
    /// with the current value. At most one load per `min_age`, whatever the
    /// loads' outcome, so a flood of unknown kids costs one read per interval.
    pub async fn reload_if_older(&self, min_age: Duration) -> Result<Arc<T>, BootError> {
        let min_age = i64::try_from(min_age.as_secs()).unwrap_or(i64::MAX);
        let mut generation = self.generation();
        if let Some((outcome, ended_at)) = generation.cell.get() {
            if self.age(*ended_at) < min_age {
                return self.answer(&generation, outcome);
            }
            generation = self.renew(&generation);
        }
        self.load_in(&generation).await
    }

    /// The outcome of `generation`'s one load (run here if nobody ran it yet).
    async fn load_in(&self, generation: &Generation<T>) -> Result<Arc<T>, BootError> {
        let previous = generation.previous.as_ref().map(|(value, _)| value.clone());
        let (outcome, _) = generation
            .cell
            .get_or_init(|| async {
                let outcome = (self.inner.load)(previous).await;
                let now = self.inner.clock.now_secs();
                if let Err(err) = &outcome {
                    tracing::error!(error = %err, "key material unavailable");
                }
                (outcome.map(|value| (value, now)), now)
            })
            .await;
        self.answer(generation, outcome)
    }

    fn answer(
        &self,
        generation: &Generation<T>,
        outcome: &Result<Loaded<T>, BootError>,
    ) -> Result<Arc<T>, BootError> {
        match outcome {
            Ok((value, _)) => Ok(value.clone()),
            Err(err) => self.after_failure(generation, err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn loads_once_for_every_caller() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let d = Deferred::prefetch(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(42)
            }
        });
        let other = d.clone();
        let (a, b) = tokio::join!(d.get(), other.get());
        assert_eq!((*a.expect("a"), *b.expect("b")), (42, 42));
        assert_eq!(*d.get().await.expect("c"), 42);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_load_is_a_503_and_is_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let d = Deferred::prefetch(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(BootError("KMS unreachable".into()))
                } else {
                    Ok("keys")
                }
            }
        });
        // Two loads fail (the prefetch's and this call's, in either order); none is cached.
        let first = d.get().await.expect_err("the first load fails");
        assert!(first.to_string().contains("KMS unreachable"), "{first}");
        let mut value = d.get().await;
        if value.is_err() {
            value = d.get().await;
        }
        assert_eq!(*value.expect("third load succeeds"), "keys");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn reloads_at_most_once_per_interval_and_keeps_the_value_when_a_reload_fails() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let d = Deferred::lazy(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 2 {
                    Err(BootError("MySQL unreachable".into()))
                } else {
                    Ok(n)
                }
            }
        });
        assert_eq!(*d.get().await.expect("first load"), 0);
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(*d.reload_if_older(hour).await.expect("fresh"), 0, "no reload within the interval");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let now = std::time::Duration::ZERO;
        assert_eq!(*d.reload_if_older(now).await.expect("reloaded"), 1);
        assert_eq!(*d.reload_if_older(now).await.expect("failed reload"), 1, "the current value stays");
        assert_eq!(*d.get().await.expect("current"), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// A value with a max age of 60/300 s over a manual clock, whose loads fail
    /// while `down` is set; each successful load returns the number of loads so far.
    fn current_value(
        clock: &crate::clock::ManualClock,
        down: &Arc<std::sync::atomic::AtomicBool>,
    ) -> (Deferred<usize>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let (counter, down) = (calls.clone(), down.clone());
        let max_age = MaxAge { clock: Arc::new(clock.clone()), recheck_secs: 60, trust_secs: 300 };
        let d = Deferred::lazy_current(max_age, move |_previous| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let down = down.load(Ordering::SeqCst);
            async move {
                if down {
                    Err(BootError("MySQL unreachable".into()))
                } else {
                    Ok(Arc::new(n))
                }
            }
        });
        (d, calls)
    }

    #[tokio::test]
    async fn a_current_value_is_reloaded_once_it_is_older_than_the_recheck_age() {
        let clock = crate::clock::ManualClock::new(1_000);
        let (d, calls) = current_value(&clock, &Arc::default());
        assert_eq!(*d.get().await.expect("first load"), 0);
        clock.advance(59);
        assert_eq!(*d.get().await.expect("young"), 0, "no reload before the recheck age");
        assert!(d.loaded().is_some());
        clock.advance(1);
        assert!(d.loaded().is_none(), "a value due for its recheck is not handed out unchecked");
        assert_eq!(*d.get().await.expect("rechecked"), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_value_that_cannot_be_rechecked_serves_until_the_hard_bound_then_fails_closed() {
        let clock = crate::clock::ManualClock::new(1_000);
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, _) = current_value(&clock, &down);
        assert_eq!(*d.get().await.expect("first load"), 0);
        down.store(true, Ordering::SeqCst);
        clock.advance(61);
        assert_eq!(*d.get().await.expect("within the hard bound"), 0, "the loaded value serves on");
        clock.advance(238);
        assert_eq!(*d.get().await.expect("still within"), 0);
        clock.advance(1);
        let refused = d.get().await.expect_err("past the hard bound");
        assert!(refused.to_string().contains("MySQL unreachable"), "{refused}");
        down.store(false, Ordering::SeqCst);
        assert!(d.get().await.is_ok(), "a successful load restores service");
    }

    #[tokio::test]
    async fn the_loader_gets_the_current_value_to_keep_what_has_not_changed() {
        let clock = crate::clock::ManualClock::new(1_000);
        let max_age = MaxAge { clock: Arc::new(clock.clone()), recheck_secs: 60, trust_secs: 300 };
        let d = Deferred::lazy_current(max_age, |previous: Option<Arc<String>>| async move {
            Ok(previous.unwrap_or_else(|| Arc::new("loaded once".to_owned())))
        });
        let first = d.get().await.expect("first");
        clock.advance(61);
        let second = d.get().await.expect("rechecked");
        assert!(Arc::ptr_eq(&first, &second));
    }

    /// A load answered "no" (the key was revoked) drops the value at once: an
    /// outage after it does not bring the revoked value back.
    #[tokio::test]
    async fn after_a_refusal_the_old_value_never_serves_again() {
        let clock = crate::clock::ManualClock::new(1_000);
        let answer = Arc::new(AtomicUsize::new(0)); // 0 serve, 1 refuse, 2 outage
        let next = answer.clone();
        let max_age = MaxAge { clock: Arc::new(clock.clone()), recheck_secs: 60, trust_secs: 300 };
        let d = Deferred::lazy_current(max_age, move |_previous| {
            let answer = next.load(Ordering::SeqCst);
            async move {
                match answer {
                    0 => Ok(Arc::new("key-1")),
                    1 => Err(BootError::refused("key-1 was revoked")),
                    _ => Err(BootError("MySQL unreachable".into())),
                }
            }
        });
        assert_eq!(*d.get().await.expect("first load"), "key-1");
        clock.advance(61);
        answer.store(1, Ordering::SeqCst);
        assert!(d.get().await.expect_err("refused").is_refusal());
        answer.store(2, Ordering::SeqCst);
        let outage = d.get().await.expect_err("an outage does not bring the revoked key back");
        assert!(!outage.is_refusal(), "{outage}");
        assert!(d.loaded().is_none());
    }

    /// A value whose loads take 20 ms and answer what `answer` says then
    /// (0: a value, 1: refused, 2: an outage), counting the loads.
    fn slow_value(
        clock: &crate::clock::ManualClock,
    ) -> (Deferred<&'static str>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (answer, calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (next, counter) = (answer.clone(), calls.clone());
        let max_age = MaxAge { clock: Arc::new(clock.clone()), recheck_secs: 60, trust_secs: 300 };
        let d = Deferred::lazy_current(max_age, move |_previous| {
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = next.load(Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                match answer {
                    0 => Ok(Arc::new("key-1")),
                    1 => Err(BootError::refused("key-1 was revoked")),
                    _ => Err(BootError("MySQL unreachable".into())),
                }
            }
        });
        (d, answer, calls)
    }

    /// Callers racing one recheck share its outcome: a refusal reaches every
    /// one of them (none falls back to the revoked value), and an outage costs
    /// one load however many wait.
    #[tokio::test]
    async fn callers_racing_a_recheck_share_one_load_and_its_refusal() {
        let clock = crate::clock::ManualClock::new(1_000);
        let (d, answer, calls) = slow_value(&clock);
        d.get().await.expect("first load");
        clock.advance(61);
        answer.store(1, Ordering::SeqCst);
        let (a, b, c) = tokio::join!(d.get(), d.get(), d.get());
        for outcome in [a, b, c] {
            assert!(outcome.expect_err("refused").is_refusal());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one load for the racing callers");
        answer.store(2, Ordering::SeqCst);
        let (a, b) = tokio::join!(d.get(), d.get());
        assert!(a.is_err() && b.is_err(), "the revoked value never comes back");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// A flood of unknown kids while loads fail still costs one load per interval.
    #[tokio::test]
    async fn failed_reloads_are_also_at_most_one_per_interval() {
        let clock = crate::clock::ManualClock::new(1_000);
        let (d, answer, calls) = slow_value(&clock);
        d.get().await.expect("first load");
        clock.advance(11);
        answer.store(2, Ordering::SeqCst);
        let interval = std::time::Duration::from_secs(10);
        for _ in 0..5 {
            assert_eq!(*d.reload_if_older(interval).await.expect("the loaded value serves on"), "key-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one failed reload in the interval");
        clock.advance(10);
        d.reload_if_older(interval).await.expect("serves on");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
