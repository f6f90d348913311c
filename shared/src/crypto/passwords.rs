//! Password hashing with argon2id (OWASP: m=19456 KiB, t=2, p=1 at least),
//! always off the async runtime, with a dummy hash so an unknown account costs
//! the same work as a wrong password.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use std::sync::Arc;

use crate::domain::Password;

/// An argon2id hash with the default parameters of a random password nobody
/// knows: the unknown-account path verifies against it.
const DEFAULT_DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$Fe5IhSVTI04o69fybLklVQ$8893hTzfwYpgNTarSwU5/fNgxUDOFubE9TDCu+Lww/Q";

/// Hashing failed for a reason other than a wrong password.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Argon(String),
    #[error("password hashing task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// argon2id hasher and verifier. At most [`PasswordHasher::concurrency`]
/// hashes run at once (one per core by default): each takes 19 MiB and a core
/// for its whole run, so more at once only queue inside the blocking pool,
/// grow memory without bound and slow every other request.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    dummy_hash: Arc<str>,
    slots: Arc<tokio::sync::Semaphore>,
    concurrency: usize,
    running: Arc<Running>,
}

/// How many hashes run now, the most that ever ran at once, and how many ran.
#[derive(Default)]
struct Running {
    now: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    total: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").field("params", &self.params).finish()
    }
}

impl PasswordHasher {
    /// OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
    pub const MEMORY_KIB: u32 = 19_456;
    pub const ITERATIONS: u32 = 2;
    pub const PARALLELISM: u32 = 1;

    /// The hasher with OWASP's argon2id baseline.
    pub fn new() -> Result<Self, HashError> {
        Self::with_params(Self::MEMORY_KIB, Self::ITERATIONS, Self::PARALLELISM)
    }

    /// A hasher with other argon2id costs. Production uses [`PasswordHasher::new`];
    /// benchmarks use a minimal cost to measure everything around the hash.
    pub fn with_params(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| HashError::Argon(e.to_string()))?;
        // Verifying against the dummy costs exactly what a real verification costs as
        // long as its parameters are the same. With the default parameters a fixed
        // hash (of a random, forgotten password) serves and saves ~20 ms of cold
        // start; other parameters get a dummy computed once here.
        let dummy_hash: Arc<str> = if memory_kib == Self::MEMORY_KIB
            && iterations == Self::ITERATIONS
            && parallelism == Self::PARALLELISM
        {
            DEFAULT_DUMMY_HASH.into()
        } else {
            let dummy_pw = hex::encode(crate::crypto::random_bytes::<16>());
            hash_blocking(&params, dummy_pw.as_bytes())?.into()
        };
        let concurrency = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        Ok(Self {
            params,
            dummy_hash,
            slots: Arc::new(tokio::sync::Semaphore::new(concurrency)),
            concurrency,
            running: Arc::default(),
        })
    }

    /// The same hasher, with at most `n` (at least 1) hashes at once.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self.slots = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
        self
    }

    /// How many hashes may run at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The most hashes that ever ran at once on this hasher.
    pub fn peak_concurrency(&self) -> usize {
        self.running.peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many argon2 computations this hasher has run.
    pub fn computations(&self) -> u64 {
        self.running.total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs one argon2 computation on the blocking pool once a slot is free. The
    /// slot travels with the computation, so a caller that gives up (a dropped
    /// request) frees it only when the computation really ends.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        use std::sync::atomic::Ordering::Relaxed;
        let slot =
            self.slots.clone().acquire_owned().await.map_err(|_| HashError::Argon("hasher closed".into()))?;
        let running = self.running.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let now = running.now.fetch_add(1, Relaxed) + 1;
            running.peak.fetch_max(now, Relaxed);
            running.total.fetch_add(1, Relaxed);
            let out = work();
            running.now.fetch_sub(1, Relaxed);
            drop(slot);
            out
        })
        .await?)
    }

    fn argon(params: &Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
    }

    /// PHC-format hash with a fresh 128-bit salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let params = self.params.clone();
        let pw = password.clone();
        self.run(move || hash_blocking(&params, pw.expose().as_bytes())).await?
    }

    /// True when `password` matches `phc`. A malformed stored hash is a mismatch.
    pub async fn verify(&self, password: &Password, phc: &str) -> Result<bool, HashError> {
        let pw = password.clone();
        let phc = phc.to_owned();
        let params = self.params.clone();
        self.run(move || {
            PasswordHash::new(&phc)
                .map(|parsed| Self::argon(&params).verify_password(pw.expose().as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
    }

    /// The same work as [`PasswordHasher::verify`] for an account that does not
    /// exist; always false.
    pub async fn verify_dummy(&self, password: &Password) -> Result<bool, HashError> {
        let dummy = self.dummy_hash.clone();
        self.verify(password, &dummy).await.map(|_| false)
    }

    /// True when a stored hash was made with weaker parameters than the current ones.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        match PasswordHash::new(phc).ok().and_then(|h| Params::try_from(&h).ok().map(|p| (h.algorithm, p))) {
            Some((alg, p)) => {
                alg != argon2::ARGON2ID_IDENT
                    || p.m_cost() < self.params.m_cost()
                    || p.t_cost() < self.params.t_cost()
            }
            None => true,
        }
    }
}

fn hash_blocking(params: &Params, password: &[u8]) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    PasswordHasher::argon(params)
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_use_owasp_parameters() {
        let h = PasswordHasher::new().expect("builds");
        let pw = Password::new("correct horse battery staple");
        let phc = h.hash(&pw).await.expect("hashes");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(h.verify(&pw, &phc).await.expect("verifies"));
        assert!(!h.verify(&Password::new("wrong horse battery staple"), &phc).await.expect("verifies"));
        assert!(!h.verify(&pw, "not a phc string").await.expect("verifies"));
        assert!(!h.verify_dummy(&pw).await.expect("runs"));
        // The fixed dummy carries exactly the parameters real hashes have, so it costs the same.
        assert!(!h.needs_rehash(DEFAULT_DUMMY_HASH));
        assert_eq!(&DEFAULT_DUMMY_HASH[..30], &phc[..30]);
        assert!(!h.needs_rehash(&phc));
        assert!(h.needs_rehash("$argon2id$v=19$m=4096,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"));
    }

    /// A burst of verifications never runs more argon2 at once than the bound,
    /// and does use the bound (the slots are real, not a queue of one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hashing_concurrency_is_bounded() {
        let h = PasswordHasher::new().expect("builds").with_concurrency(2);
        let pw = Password::new("correct horse battery staple");
        let phc = h.hash(&pw).await.expect("hashes");
        let burst: Vec<_> = (0..12)
            .map(|_| {
                let (h, pw, phc) = (h.clone(), pw.clone(), phc.clone());
                tokio::spawn(async move { h.verify(&pw, &phc).await.expect("verifies") })
            })
            .collect();
        for task in burst {
            assert!(task.await.expect("task"));
        }
        assert_eq!(h.peak_concurrency(), 2, "the bound is 2");
        assert_eq!(
            PasswordHasher::new().expect("builds").concurrency(),
            std::thread::available_parallelism().map(usize::from).unwrap_or(1)
        );
    }
}
