//! Key material loaded once per process, off the cold-start path.
//!
//! A function's keys (a KMS unwrap, a MySQL read) are fetched by a task started
//! at cold start and awaited only by the requests that need them, so the
//! runtime starts polling for the first event without waiting on KMS, and a
//! request that needs no key (a health check, a malformed body, a missing
//! token) is answered at once. A failed fetch is not cached: the next request
//! that needs the keys tries again, and meanwhile those requests get a 503,
//! never a guess.

use crate::error::ApiError;
use crate::runtime::BootError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::OnceCell;

type Loader<T> = dyn Fn() -> Pin<Box<dyn Future<Output = Result<T, BootError>> + Send>> + Send + Sync;

/// A value loaded at most once (until it succeeds), shared by clones.
pub struct Deferred<T> {
    cell: Arc<OnceCell<Arc<T>>>,
    load: Arc<Loader<T>>,
}

impl<T> Clone for Deferred<T> {
    fn clone(&self) -> Self {
        Self { cell: self.cell.clone(), load: self.load.clone() }
    }
}

impl<T> std::fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred").field("loaded", &self.cell.initialized()).finish()
    }
}

impl<T: Send + Sync + 'static> Deferred<T> {
    /// Starts loading now, in the background (a Tokio runtime must be running).
    pub fn prefetch<F, Fut>(load: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, BootError>> + Send + 'static,
    {
        let this = Self { cell: Arc::new(OnceCell::new()), load: Arc::new(move || Box::pin(load())) };
        let background = this.clone();
        tokio::spawn(async move {
            // An error is logged by `get`; the first request that needs the value retries.
            let _ = background.get().await;
        });
        this
    }

    /// An already loaded value (tests, the local server after an eager load).
    pub fn ready(value: T) -> Self {
        Self {
            cell: Arc::new(OnceCell::new_with(Some(Arc::new(value)))),
            load: Arc::new(|| Box::pin(async { Err(BootError("already loaded".into())) })),
        }
    }

    /// The value, loading it if no load has succeeded yet. Concurrent callers
    /// share one load. A failure is a 503 to the client, with the cause logged.
    pub async fn get(&self) -> Result<Arc<T>, ApiError> {
        self.cell.get_or_try_init(|| async { (self.load)().await.map(Arc::new) }).await.cloned().map_err(
            |e| {
                tracing::error!(error = %e, "key material unavailable");
                ApiError::Unavailable(Box::new(e))
            },
        )
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
}
