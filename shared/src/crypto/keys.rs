//! Key providers: who wraps and unwraps data keys. KMS in AWS; a local master key
//! file (created 0600) in the embedded mode. Every data key is bound to an
//! encryption context naming its purpose, so a wrapped key taken for another
//! purpose does not unwrap.

use async_trait::async_trait;
use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_sdk_kms::primitives::Blob;
use secrecy::{ExposeSecret, SecretBox};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use zeroize::Zeroize;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key service unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the wrapped key does not decrypt under this context")]
    Unwrap,
    #[error("local master key file {path}: {reason}")]
    LocalFile { path: PathBuf, reason: String },
}

/// KMS-style encryption context: key/value pairs bound to a ciphertext as
/// associated data. Ordered, so the local provider authenticates a canonical form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    pub fn new<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        Self(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
    }

    /// Canonical bytes: JSON of the ordered map.
    fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap_or_default()
    }

    fn to_hash_map(&self) -> HashMap<String, String> {
        self.0.clone().into_iter().collect()
    }
}

/// A fresh data key: the plaintext for immediate use, zeroized on drop, and its
/// wrapped form to store beside the data.
pub struct DataKey {
    pub plaintext: SecretBox<[u8; 32]>,
    pub wrapped: Vec<u8>,
}

/// The envelope-encryption port.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// The master key's identifier (KMS key id or the local file's path).
    fn key_id(&self) -> String;
    /// A new 256-bit data key wrapped under the master key with `context`.
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyError>;
    /// Unwraps a data key; fails unless `context` is the one it was wrapped with.
    async fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBox<[u8; 32]>, KeyError>;
}

fn boxed_key(bytes: &mut [u8]) -> Result<SecretBox<[u8; 32]>, KeyError> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Unwrap)?;
    bytes.zeroize();
    Ok(SecretBox::new(Box::new(array)))
}

/// Embedded mode: a 256-bit master key in a file created with mode 0600.
pub struct LocalKeyProvider {
    path: PathBuf,
    master: RandomizedNonceKey,
}

impl LocalKeyProvider {
    /// Opens the master key file, creating it (and its folder) on first run.
    /// Refuses a file that other users can read.
    pub fn open_or_create(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let fail = |reason: String| KeyError::LocalFile { path: path.to_owned(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                crate::files::create_private_dir(dir).map_err(|e| fail(e.to_string()))?;
            }
        }
        let mut created = false;
        if !path.exists() {
            let mut bytes = crate::crypto::random_bytes::<32>();
            let written = crate::files::write_new_private(path, &bytes);
            bytes.zeroize();
            written.map_err(|e| fail(e.to_string()))?;
            created = true;
        }
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(fail("is readable by other users; chmod 600 it".into()));
        }
        let mut bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        if bytes.len() != 32 {
            bytes.zeroize();
            return Err(fail("must hold exactly 32 bytes".into()));
        }
        let master = RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| fail("unusable key".into()));
        bytes.zeroize();
        if created {
            tracing::info!(path = %path.display(), "created local master key file");
        }
        Ok(Self { path: path.to_owned(), master: master? })
    }
}

#[async_trait]
impl KeyProvider for LocalKeyProvider {
    fn key_id(&self) -> String {
        format!("local:{}", self.path.display())
    }

    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyError> {
        let plaintext = crate::crypto::random_bytes::<32>();
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .master
            .seal_in_place_append_tag(Aad::from(context.canonical()), &mut in_out)
            .map_err(|_| KeyError::Unwrap)?;
        let mut wrapped = nonce.as_ref().to_vec();
        wrapped.extend_from_slice(&in_out);
        Ok(DataKey { plaintext: SecretBox::new(Box::new(plaintext)), wrapped })
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBox<[u8; 32]>, KeyError> {
        if wrapped.len() < NONCE_LEN {
            return Err(KeyError::Unwrap);
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Unwrap)?;
        let mut in_out = sealed.to_vec();
        let plain = self
            .master
            .open_in_place(nonce, Aad::from(context.canonical()), &mut in_out)
            .map_err(|_| KeyError::Unwrap)?;
        let key = boxed_key(plain);
        in_out.zeroize();
        key
    }
}

/// AWS KMS: `GenerateDataKey`/`Decrypt` with the encryption context.
pub struct KmsKeyProvider {
    client: crate::aws::AwsClient<aws_sdk_kms::Client>,
    key_id: String,
}

impl KmsKeyProvider {
    pub fn new(client: impl Into<crate::aws::AwsClient<aws_sdk_kms::Client>>, key_id: String) -> Self {
        Self { client: client.into(), key_id }
    }
}

fn kms_error(err: impl std::error::Error + Send + Sync + 'static) -> KeyError {
    KeyError::Unavailable(Box::new(err))
}

#[async_trait]
impl KeyProvider for KmsKeyProvider {
    fn key_id(&self) -> String {
        self.key_id.clone()
    }

    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyError> {
        let out = self
            .client
            .get()
            .await
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .set_encryption_context(Some(context.to_hash_map()))
            .send()
            .await
            .map_err(kms_error)?;
        let wrapped = out.ciphertext_blob().map(|b| b.as_ref().to_vec()).ok_or(KeyError::Unwrap)?;
        let mut plain = out.plaintext.map(Blob::into_inner).ok_or(KeyError::Unwrap)?;
        let plaintext = boxed_key(&mut plain)?;
        Ok(DataKey { plaintext, wrapped })
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBox<[u8; 32]>, KeyError> {
        let result = self
            .client
            .get()
            .await
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context.to_hash_map()))
            .send()
            .await;
        match result {
            Ok(out) => {
                let mut plain = out.plaintext.map(Blob::into_inner).ok_or(KeyError::Unwrap)?;
                boxed_key(&mut plain)
            }
            Err(err) => {
                let invalid = err
                    .as_service_error()
                    .map(|e| e.is_invalid_ciphertext_exception() || e.is_incorrect_key_exception())
                    .unwrap_or(false);
                if invalid {
                    Err(KeyError::Unwrap)
                } else {
                    Err(kms_error(err))
                }
            }
        }
    }
}

/// Reads a wrapped key's plaintext only long enough to copy it.
pub(crate) fn expose_key(key: &SecretBox<[u8; 32]>) -> &[u8; 32] {
    key.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> (LocalKeyProvider, PathBuf) {
        let dir = std::env::temp_dir().join(format!("pc-keys-{}", uuid::Uuid::new_v4()));
        let path = dir.join("master.key");
        (LocalKeyProvider::open_or_create(&path).expect("creates"), path)
    }

    #[tokio::test]
    async fn local_master_key_is_created_owner_only_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let (p, path) = provider();
        let mode = std::fs::metadata(&path).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let ctx = EncryptionContext::new([("purpose", "test")]);
        let dk = p.generate_data_key(&ctx).await.expect("generates");
        let again = LocalKeyProvider::open_or_create(&path).expect("reopens");
        let plain = again.decrypt_data_key(&dk.wrapped, &ctx).await.expect("unwraps");
        assert_eq!(plain.expose_secret(), dk.plaintext.expose_secret());
    }

    #[tokio::test]
    async fn a_data_key_does_not_unwrap_under_another_context() {
        let (p, _) = provider();
        let dk = p.generate_data_key(&EncryptionContext::new([("purpose", "a")])).await.expect("generates");
        let err = p.decrypt_data_key(&dk.wrapped, &EncryptionContext::new([("purpose", "b")])).await;
        assert!(matches!(err, Err(KeyError::Unwrap)));
    }

    #[test]
    fn a_world_readable_master_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let (_, path) = provider();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(LocalKeyProvider::open_or_create(&path).is_err());
    }
}
