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

/// argon2id hasher and verifier.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    dummy_hash: Arc<str>,
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
        Ok(Self { params, dummy_hash })
    }

    fn argon(params: &Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
    }

    /// PHC-format hash with a fresh 128-bit salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let params = self.params.clone();
        let pw = password.clone();
        tokio::task::spawn_blocking(move || hash_blocking(&params, pw.expose().as_bytes())).await?
    }

    /// True when `password` matches `phc`. A malformed stored hash is a mismatch.
    pub async fn verify(&self, password: &Password, phc: &str) -> Result<bool, HashError> {
        let pw = password.clone();
        let phc = phc.to_owned();
        let params = self.params.clone();
        Ok(tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc)
                .map(|parsed| Self::argon(&params).verify_password(pw.expose().as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await?)
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
}
