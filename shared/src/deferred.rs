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
//! (the authorizer does so for a token signed by a key published since).

use crate::error::ApiError;
use crate::runtime::BootError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

type Loader<T> = dyn Fn() -> Pin<Box<dyn Future<Output = Result<T, BootError>> + Send>> + Send + Sync;

/// A value loaded at most once (until it succeeds, or until a reload), shared by clones.
pub struct Deferred<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    /// The value and when it was loaded.
    value: RwLock<Option<(Arc<T>, Instant)>>,
    /// One load at a time; concurrent callers wait for it and share its result.
    loading: Mutex<()>,
    load: Box<Loader<T>>,
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
    fn current(&self) -> Option<(Arc<T>, Instant)> {
        match self.inner.value.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, value: Arc<T>) {
        let entry = Some((value, Instant::now()));
        match self.inner.value.write() {
            Ok(mut guard) => *guard = entry,
            Err(poisoned) => *poisoned.into_inner() = entry,
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
        let this = Self::lazy(load);
        let background = this.clone();
        tokio::spawn(async move {
            // An error is logged by `get`; the first request that needs the value retries.
            let _ = background.get().await;
        });
        this
    }

    /// Loads on first use: for a value only some requests need, when a
    /// background load would compete with answering the others.
    pub fn lazy<F, Fut>(load: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, BootError>> + Send + 'static,
    {
        Self {
            inner: Arc::new(Inner {
                value: RwLock::new(None),
                loading: Mutex::new(()),
                load: Box::new(move || Box::pin(load())),
            }),
        }
    }

    /// The value if a load has succeeded, without waiting or loading.
    pub fn loaded(&self) -> Option<Arc<T>> {
        self.current().map(|(value, _)| value)
    }

    /// The value, loading it if no load has succeeded yet. Concurrent callers
    /// share one load. A failure is a 503 to the client, with the cause logged.
    pub async fn get(&self) -> Result<Arc<T>, ApiError> {
        if let Some(value) = self.loaded() {
            return Ok(value);
        }
        let _one_at_a_time = self.inner.loading.lock().await;
        match self.loaded() {
            Some(value) => Ok(value),
            None => self.load_now().await,
        }
    }

    /// Loads again if the value is older than `min_age` (for a key published
    /// since: a token with an unknown `kid`), else returns the current one. At
    /// most one reload per `min_age`, so a flood of unknown kids costs one read
    /// per interval. A failed reload keeps the current value.
    pub async fn reload_if_older(&self, min_age: Duration) -> Result<Arc<T>, ApiError> {
        let _one_at_a_time = self.inner.loading.lock().await;
        match self.current() {
            Some((value, loaded_at)) if loaded_at.elapsed() < min_age => Ok(value),
            Some((value, _)) => Ok(self.load_now().await.unwrap_or(value)),
            None => self.load_now().await,
        }
    }

    async fn load_now(&self) -> Result<Arc<T>, ApiError> {
        match (self.inner.load)().await {
            Ok(value) => {
                let value = Arc::new(value);
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
}
