//! Field encryption for personal data at rest (ASVS V6.2): AES-256-GCM with the
//! row's owner as associated data, and an HMAC-SHA256 blind index so an encrypted
//! email can still be looked up by equality. Both subkeys come from one data key
//! through HKDF-SHA256 with distinct labels.

use crate::store::BlindIndex;
use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{hkdf, hmac};

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Encrypts and indexes personal fields with subkeys of one data key.
pub struct FieldCipher {
    aead: RandomizedNonceKey,
    index: hmac::Key,
    /// Tags of device tokens (`crate::device`): its own subkey, so no blind index
    /// (which the throttle stores as a counter key) is ever a valid tag.
    device: hmac::Key,
}

/// The ciphertext is not valid for this key and owner.
#[derive(Debug, thiserror::Error)]
#[error("field ciphertext does not decrypt for this owner")]
pub struct FieldDecryptError;

impl FieldCipher {
    /// Derives the encryption and index subkeys from a 256-bit data key.
    pub fn new(data_key: &[u8; 32]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis field keys v1").extract(data_key);
        let mut enc = [0u8; 32];
        let mut idx = [0u8; 32];
        let mut dev = [0u8; 32];
        // HKDF-Expand of 32 bytes from SHA-256 cannot exceed its 255*32 output limit.
        #[allow(clippy::expect_used)]
        {
            prk.expand(&[b"field-encryption"], Len(32))
                .and_then(|okm| okm.fill(&mut enc))
                .expect("HKDF expand of 32 bytes");
            prk.expand(&[b"blind-index"], Len(32))
                .and_then(|okm| okm.fill(&mut idx))
                .expect("HKDF expand of 32 bytes");
            prk.expand(&[b"device-token"], Len(32))
                .and_then(|okm| okm.fill(&mut dev))
                .expect("HKDF expand of 32 bytes");
        }
        #[allow(clippy::expect_used)]
        let aead = RandomizedNonceKey::new(&AES_256_GCM, &enc).expect("32-byte AES key");
        let index = hmac::Key::new(hmac::HMAC_SHA256, &idx);
        let device = hmac::Key::new(hmac::HMAC_SHA256, &dev);
        zeroize::Zeroize::zeroize(&mut enc);
        zeroize::Zeroize::zeroize(&mut idx);
        zeroize::Zeroize::zeroize(&mut dev);
        Self { aead, index, device }
    }

    /// `nonce || ciphertext || tag`, bound to `owner` (e.g. the user id) so a
    /// ciphertext copied onto another row does not decrypt.
    pub fn encrypt(&self, plaintext: &[u8], owner: &[u8]) -> Vec<u8> {
        let mut in_out = plaintext.to_vec();
        // Sealing only fails for inputs beyond GCM's 64 GiB limit.
        #[allow(clippy::expect_used)]
        let nonce = self
            .aead
            .seal_in_place_append_tag(Aad::from(owner), &mut in_out)
            .expect("field fits in one GCM message");
        let mut out = Vec::with_capacity(NONCE_LEN + in_out.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        out
    }

    /// Decrypts what [`FieldCipher::encrypt`] produced for the same owner.
    pub fn decrypt(&self, sealed: &[u8], owner: &[u8]) -> Result<Vec<u8>, FieldDecryptError> {
        if sealed.len() < NONCE_LEN {
            return Err(FieldDecryptError);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| FieldDecryptError)?;
        let mut in_out = body.to_vec();
        let plain =
            self.aead.open_in_place(nonce, Aad::from(owner), &mut in_out).map_err(|_| FieldDecryptError)?;
        Ok(plain.to_vec())
    }

    /// HMAC-SHA256, under the device-token subkey, of `parts`, each framed by its
    /// length (so no two different part lists give the same input).
    pub fn device_tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.device);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// HMAC-SHA256 of an already-normalized value.
    pub fn blind_index(&self, normalized: &str) -> BlindIndex {
        let tag = hmac::sign(&self.index, normalized.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_for_the_owner_only() {
        let c = FieldCipher::new(&[7u8; 32]);
        let sealed = c.encrypt(b"alice@example.com", b"user-1");
        assert!(!sealed.windows(5).any(|w| w == b"alice"));
        assert_eq!(c.decrypt(&sealed, b"user-1").expect("decrypts"), b"alice@example.com");
        assert!(c.decrypt(&sealed, b"user-2").is_err());
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert!(c.decrypt(&tampered, b"user-1").is_err());
    }

    #[test]
    fn blind_index_is_deterministic_and_keyed() {
        let a = FieldCipher::new(&[1u8; 32]);
        let b = FieldCipher::new(&[2u8; 32]);
        assert_eq!(a.blind_index("x@example.com"), a.blind_index("x@example.com"));
        assert_ne!(a.blind_index("x@example.com"), a.blind_index("y@example.com"));
        assert_ne!(a.blind_index("x@example.com"), b.blind_index("x@example.com"));
    }
}
