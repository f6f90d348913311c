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
use crate::error::ApiError;
use crate::error::BootError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Mutex;

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

/// A value loaded at most once (until it succeeds, or until a reload), shared by clones.
pub struct Deferred<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    /// The value and when it was loaded (seconds by `clock`).
    value: RwLock<Option<(Arc<T>, i64)>>,
    /// One load at a time; concurrent callers wait for it and share its result.
    loading: Mutex<()>,
    load: Box<Loader<T>>,
    clock: Arc<dyn Clock>,
    max_age: Option<MaxAge>,
}

impl<T> Clone for Deferred<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T> std::fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred").field("loaded", &self.current().is_some()).finish()
    }
}

impl<T> Deferred<T> {
    fn current(&self) -> Option<(Arc<T>, i64)> {
        match self.inner.value.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, value: Arc<T>) {
        let entry = Some((value, self.inner.clock.now_secs()));
        match self.inner.value.write() {
            Ok(mut guard) => *guard = entry,
            Err(poisoned) => *poisoned.into_inner() = entry,
        }
    }

    /// Seconds since the current value was loaded.
    fn age(&self, loaded_at: i64) -> i64 {
        self.inner.clock.now_secs().saturating_sub(loaded_at)
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
        Self {
            inner: Arc::new(Inner {
                value: RwLock::new(None),
                loading: Mutex::new(()),
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
        let (value, loaded_at) = self.current()?;
        match &self.inner.max_age {
            Some(max) if self.age(loaded_at) >= max.recheck_secs => None,
            _ => Some(value),
        }
    }

    /// The value, loading it if no load has succeeded yet or (with a
    /// [`MaxAge`]) if it is due for a recheck. Concurrent callers share one
    /// load. A failure is a 503 to the client, with the cause logged.
    pub async fn get(&self) -> Result<Arc<T>, ApiError> {
        if let Some(value) = self.loaded() {
            return Ok(value);
        }
        let _one_at_a_time = self.inner.loading.lock().await;
        if let Some(value) = self.loaded() {
            return Ok(value);
        }
        match (self.current(), &self.inner.max_age) {
            (Some((value, loaded_at)), Some(max)) => match self.load_now(Some(value.clone())).await {
                Ok(fresh) => Ok(fresh),
                // Availability within the hard bound, refusal past it; a load
                // that was answered "no" is a refusal at once.
                Err(e)
                    if !matches!(&e, ApiError::Unavailable(cause) if is_refusal(cause.as_ref()))
                        && self.age(loaded_at) < max.trust_secs =>
                {
                    Ok(value)
                }
                Err(e) => Err(e),
            },
            (current, _) => self.load_now(current.map(|(value, _)| value)).await,
        }
    }

    /// Loads again if the value is older than `min_age` (for a key published
    /// since: a token with an unknown `kid`), else returns the current one. At
    /// most one reload per `min_age`, so a flood of unknown kids costs one read
    /// per interval. A failed reload keeps the current value.
    pub async fn reload_if_older(&self, min_age: Duration) -> Result<Arc<T>, ApiError> {
        let _one_at_a_time = self.inner.loading.lock().await;
        let min_age = i64::try_from(min_age.as_secs()).unwrap_or(i64::MAX);
        match self.current() {
            Some((value, loaded_at)) if self.age(loaded_at) < min_age => Ok(value),
            Some((value, _)) => Ok(self.load_now(Some(value.clone())).await.unwrap_or(value)),
            None => self.load_now(None).await,
        }
    }

    async fn load_now(&self, current: Option<Arc<T>>) -> Result<Arc<T>, ApiError> {
        match (self.inner.load)(current).await {
            Ok(value) => {
                self.store(value.clone());
                Ok(value)
            }
            Err(e) => {
                tracing::error!(error = %e, "key material unavailable");
                Err(ApiError::Unavailable(Box::new(e)))
            }
        }
    }
}

/// True when a load's error is a [`BootError::refused`].
fn is_refusal(cause: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    cause.downcast_ref::<BootError>().is_some_and(BootError::is_refusal)
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
        assert!(matches!(first, ApiError::Unavailable(_)));
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
        assert!(matches!(refused, ApiError::Unavailable(_)));
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
}
