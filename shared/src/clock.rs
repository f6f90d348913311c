//! Time as a port, so expiry, rotation and TOTP windows are testable.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Clock skew tolerated on a time another party stated: a token's `exp`, `nbf`
/// and `iat`, a caller's `auth_time`.
pub const LEEWAY_SECS: i64 = 30;

/// Seconds since the Unix epoch, from some source.
pub trait Clock: Send + Sync {
    fn now_secs(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// A clock tests move by hand.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: i64) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_secs(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
