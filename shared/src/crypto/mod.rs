//! Cryptography, all from aws-lc-rs, argon2 and jsonwebtoken: nothing hand-rolled.

mod field;
mod keyring;
mod keys;
mod passwords;

pub use field::FieldCipher;
pub use keyring::{
    current_signing_kid, load_field_cipher, load_signing_key, load_verifying_keys, revoke_signing_key,
    rotate_signing_key, signing_keys, KeyInfo, KeyState, KeyringError, Revocation, RevokeError, SigningKey,
    VerifyingKey, KEY_RECHECK_SECS, KEY_TRUST_SECS,
};
pub use keys::{DataKey, EncryptionContext, KeyError, KeyProvider, KmsKeyProvider, LocalKeyProvider};
pub use passwords::{HashError, PasswordHasher};

/// Installs aws-lc-rs as the process-wide rustls provider (MySQL TLS, HTTPS clients).
/// Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// `n` bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // aws-lc-rs' RNG only fails if the OS has no entropy source; nothing is safe then.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut out).expect("the OS random number generator failed");
    out
}
