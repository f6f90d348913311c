//! Loads (or, on first start, creates) the process's key material: the field
//! encryption data key and the token-signing key pair. Stored wrapped by the key
//! provider; unwrapped once at cold start.

use super::keys::expose_key;
use super::{EncryptionContext, FieldCipher, KeyError, KeyProvider};
use crate::store::{KeyMaterialStore, KeyRecord, StoreError};
use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use zeroize::Zeroizing;

const FIELD: &str = "field-encryption";
const SIGNING: &str = "token-signing";

/// How old the token-signing keys a warm process holds (the authorizer's
/// verification keys, a signer's current key, the JWKS) may get before it reads
/// the key table again: the bound within which a revoked or retired key stops
/// being accepted, published and used everywhere (docs/security/keys.md).
pub const KEY_RECHECK_SECS: i64 = 60;
/// How long a process keeps serving with keys it could not re-read (the key
/// table unreachable): past this it refuses to verify or sign until a read
/// succeeds, since a key it holds may have been revoked meanwhile.
pub const KEY_TRUST_SECS: i64 = 300;

/// Key material could not be loaded: the process must not start.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("key provider failed")]
    Key(#[from] KeyError),
    #[error("key store failed")]
    Store(#[from] StoreError),
    #[error("stored key material for {0} is invalid")]
    Invalid(&'static str),
    #[error("the current token-signing key {0} is revoked: run `portcullis keys rotate`")]
    Revoked(String),
}

/// The private signing key (PKCS#8 DER, zeroized on drop) and its id.
pub struct SigningKey {
    pub kid: String,
    pub pkcs8: Zeroizing<Vec<u8>>,
    pub public: VerifyingKey,
}

/// A public verification key: `kid` and the P-256 point (SEC1 uncompressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub kid: String,
    pub point: Vec<u8>,
}

fn context(purpose: &str, kid: &str) -> EncryptionContext {
    EncryptionContext::new([("purpose", purpose), ("kid", kid), ("app", "portcullis")])
}

async fn current_or_create<F, Fut>(
    store: &dyn KeyMaterialStore,
    purpose: &str,
    create: F,
) -> Result<KeyRecord, KeyringError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<KeyRecord, KeyringError>>,
{
    if let Some(rec) = store.keys(purpose).await?.into_iter().next() {
        return Ok(rec);
    }
    let kid = uuid::Uuid::new_v4().simple().to_string();
    store.insert_if_absent(&create(kid).await?).await?;
    store.keys(purpose).await?.into_iter().next().ok_or(KeyringError::Invalid("key store"))
}

/// The field cipher of this deployment.
pub async fn load_field_cipher(
    store: &dyn KeyMaterialStore,
    provider: &dyn KeyProvider,
    now: i64,
) -> Result<FieldCipher, KeyringError> {
    let rec = current_or_create(store, FIELD, |kid| async move {
        let dk = provider.generate_data_key(&context(FIELD, &kid)).await?;
        Ok(KeyRecord {
            purpose: FIELD.into(),
            generation: 1,
            kid,
            public_key: Vec::new(),
            wrapped_key: dk.wrapped,
            sealed: Vec::new(),
            created_at: now,
            revoked_at: None,
        })
    })
    .await?;
    let key = provider.decrypt_data_key(&rec.wrapped_key, &context(FIELD, &rec.kid)).await?;
    Ok(FieldCipher::new(expose_key(&key)))
}

/// A fresh ES256 key pair, its private half sealed under a new data key.
async fn new_signing_record(
    provider: &dyn KeyProvider,
    kid: String,
    generation: u32,
    now: i64,
) -> Result<KeyRecord, KeyringError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| KeyringError::Invalid("token-signing"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
        .map_err(|_| KeyringError::Invalid("token-signing"))?;
    let dk = provider.generate_data_key(&context(SIGNING, &kid)).await?;
    let sealer = RandomizedNonceKey::new(&AES_256_GCM, expose_key(&dk.plaintext))
        .map_err(|_| KeyringError::Invalid("token-signing"))?;
    let mut in_out = Zeroizing::new(doc.as_ref().to_vec());
    let nonce = sealer
        .seal_in_place_append_tag(Aad::from(kid.as_bytes()), &mut *in_out)
        .map_err(|_| KeyringError::Invalid("token-signing"))?;
    let mut sealed = nonce.as_ref().to_vec();
    sealed.extend_from_slice(&in_out);
    Ok(KeyRecord {
        purpose: SIGNING.into(),
        generation,
        public_key: pair.public_key().as_ref().to_vec(),
        kid,
        wrapped_key: dk.wrapped,
        sealed,
        created_at: now,
        revoked_at: None,
    })
}

/// Adds the next signing key generation and returns its `kid`. Processes that
/// start afterwards sign with it; the previous key stays published so tokens it
/// signed remain valid until they expire.
pub async fn rotate_signing_key(
    store: &dyn KeyMaterialStore,
    provider: &dyn KeyProvider,
    now: i64,
) -> Result<String, KeyringError> {
    let next = match store.keys(SIGNING).await?.first() {
        // A generation at the top of the range (only a hand-made row gets there) ends rotation here.
        Some(k) => k.generation.checked_add(1).ok_or(KeyringError::Invalid("token-signing generation"))?,
        None => 1,
    };
    let kid = uuid::Uuid::new_v4().simple().to_string();
    store.insert_if_absent(&new_signing_record(provider, kid, next, now).await?).await?;
    // A concurrent rotation may have won this generation: report the key that is current.
    let current = store.keys(SIGNING).await?.into_iter().next();
    current.map(|k| k.kid).ok_or(KeyringError::Invalid("token-signing"))
}

/// The current token-signing key (private), creating an ES256 key on first start.
pub async fn load_signing_key(
    store: &dyn KeyMaterialStore,
    provider: &dyn KeyProvider,
    now: i64,
) -> Result<SigningKey, KeyringError> {
    let rec = current_or_create(store, SIGNING, |kid| new_signing_record(provider, kid, 1, now)).await?;
    if rec.revoked_at.is_some() {
        // Never sign with a revoked key; `keys revoke --rotate` adds its successor first.
        return Err(KeyringError::Revoked(rec.kid));
    }
    // Nor with a revoked key inserted again under another kid.
    if revoked_points(store).await?.contains(&rec.public_key) {
        return Err(KeyringError::Revoked(rec.kid));
    }
    let dk = provider.decrypt_data_key(&rec.wrapped_key, &context(SIGNING, &rec.kid)).await?;
    let opener = RandomizedNonceKey::new(&AES_256_GCM, expose_key(&dk))
        .map_err(|_| KeyringError::Invalid("token-signing"))?;
    if rec.sealed.len() < NONCE_LEN {
        return Err(KeyringError::Invalid("token-signing"));
    }
    let (nonce, body) = rec.sealed.split_at(NONCE_LEN);
    let nonce =
        Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyringError::Invalid("token-signing"))?;
    let mut in_out = Zeroizing::new(body.to_vec());
    let pkcs8 = opener
        .open_in_place(nonce, Aad::from(rec.kid.as_bytes()), &mut in_out)
        .map_err(|_| KeyringError::Invalid("token-signing"))?
        .to_vec();
    Ok(SigningKey {
        public: VerifyingKey { kid: rec.kid.clone(), point: rec.public_key.clone() },
        kid: rec.kid,
        pkcs8: Zeroizing::new(pkcs8),
    })
}

/// The published verification keys: the current and the previous generation
/// (newest first), less any that is revoked. A revoked key does not make room
/// for an older one: a retired key is never published again. Needs no key
/// provider: the authorizer never touches private material.
/// A revoked key stays revoked under any kid: a row that carries a revoked
/// key's public point again (inserted by a compromised function that may insert
/// keys) is revoked too.
pub async fn load_verifying_keys(store: &dyn KeyMaterialStore) -> Result<Vec<VerifyingKey>, KeyringError> {
    let keys = store.public_keys(SIGNING).await?;
    let revoked: std::collections::HashSet<Vec<u8>> =
        keys.iter().filter(|k| k.revoked).map(|k| k.public_key.clone()).collect();
    Ok(keys
        .into_iter()
        .take(2)
        .filter(|k| !k.revoked && !revoked.contains(&k.public_key))
        .map(|k| VerifyingKey { kid: k.kid, point: k.public_key })
        .collect())
}

/// The public points of every revoked signing key.
async fn revoked_points(
    store: &dyn KeyMaterialStore,
) -> Result<std::collections::HashSet<Vec<u8>>, KeyringError> {
    Ok(store.public_keys(SIGNING).await?.into_iter().filter(|k| k.revoked).map(|k| k.public_key).collect())
}

/// The `kid` signers must sign with now: the newest generation, unless it is
/// revoked (then none). One read of public columns: cheap enough for a warm
/// signer to check before it keeps using the key it holds.
pub async fn current_signing_kid(store: &dyn KeyMaterialStore) -> Result<Option<String>, KeyringError> {
    let keys = store.public_keys(SIGNING).await?;
    let revoked = |point: &Vec<u8>| keys.iter().any(|k| k.revoked && &k.public_key == point);
    Ok(keys.first().filter(|k| !k.revoked && !revoked(&k.public_key)).map(|k| k.kid.clone()))
}

/// Where a signing key stands, for operators (`portcullis keys list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// The newest generation: signers sign with it.
    Current,
    /// The generation before: still published, so its tokens verify until they expire.
    Previous,
    /// Older: no longer published, its tokens are refused.
    Retired,
    /// Revoked by an operator: never published, never used, its tokens are refused.
    Revoked,
}

/// One token-signing key as operators see it: no private material.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub generation: u32,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub state: KeyState,
}

/// Every token-signing key, newest first, with its state.
pub async fn signing_keys(store: &dyn KeyMaterialStore) -> Result<Vec<KeyInfo>, KeyringError> {
    Ok(store
        .keys(SIGNING)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, k)| KeyInfo {
            state: match (k.revoked_at, i) {
                (Some(_), _) => KeyState::Revoked,
                (None, 0) => KeyState::Current,
                (None, 1) => KeyState::Previous,
                (None, _) => KeyState::Retired,
            },
            kid: k.kid,
            generation: k.generation,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        })
        .collect())
}

/// Why a revocation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no token-signing key has the kid {0}")]
    UnknownKey(String),
    #[error(
        "{0} is the current signing key: revoking it alone would leave nothing to sign with; \
         pass --rotate to add a new key and then revoke this one"
    )]
    CurrentKey(String),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

impl From<StoreError> for RevokeError {
    fn from(err: StoreError) -> Self {
        Self::Keyring(err.into())
    }
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub kid: String,
    /// False when the key was revoked already (nothing changed).
    pub newly_revoked: bool,
    /// The key added first when the revoked one was current (`rotate`).
    pub rotated_to: Option<String>,
}

/// Revokes the token-signing key `kid`. The current key is revoked only with
/// `rotate`: a new key is added first (so signers always have an unrevoked
/// current key to move to), then the old one is revoked. Revoking twice is not
/// an error.
pub async fn revoke_signing_key(
    store: &dyn KeyMaterialStore,
    provider: &dyn KeyProvider,
    kid: &str,
    rotate: bool,
    now: i64,
) -> Result<Revocation, RevokeError> {
    let keys = store.keys(SIGNING).await?;
    let position =
        keys.iter().position(|k| k.kid == kid).ok_or_else(|| RevokeError::UnknownKey(kid.into()))?;
    let mut rotated_to = None;
    if position == 0 && keys[0].revoked_at.is_none() {
        if !rotate {
            return Err(RevokeError::CurrentKey(kid.into()));
        }
        rotated_to = Some(rotate_signing_key(store, provider, now).await?);
    }
    let newly_revoked = store.revoke(SIGNING, kid, now).await?;
    Ok(Revocation { kid: kid.into(), newly_revoked, rotated_to })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryStore;
    use crate::crypto::LocalKeyProvider;

    fn provider() -> LocalKeyProvider {
        let dir = std::env::temp_dir().join(format!("pc-keyring-{}", uuid::Uuid::new_v4()));
        LocalKeyProvider::open_or_create(&dir.join("master.key")).expect("creates")
    }

    async fn published(store: &MemoryStore) -> Vec<String> {
        load_verifying_keys(store).await.expect("keys").into_iter().map(|k| k.kid).collect()
    }

    #[tokio::test]
    async fn the_current_key_is_revoked_only_with_a_rotation_first() {
        let (store, p) = (MemoryStore::new(), provider());
        let first = load_signing_key(&store, &p, 10).await.expect("created").kid;
        let refused = revoke_signing_key(&store, &p, &first, false, 20).await;
        assert!(matches!(refused, Err(RevokeError::CurrentKey(_))), "{refused:?}");
        assert_eq!(
            published(&store).await,
            std::slice::from_ref(&first),
            "a refused revocation changes nothing"
        );

        let done = revoke_signing_key(&store, &p, &first, true, 20).await.expect("rotate and revoke");
        let next = done.rotated_to.clone().expect("rotated");
        assert!(done.newly_revoked);
        assert_eq!(published(&store).await, std::slice::from_ref(&next), "the revoked key is not published");
        assert_eq!(current_signing_kid(&store).await.expect("read"), Some(next.clone()));
        assert_eq!(load_signing_key(&store, &p, 30).await.expect("current").kid, next);
        let again = revoke_signing_key(&store, &p, &first, false, 40).await.expect("idempotent");
        assert!(!again.newly_revoked && again.rotated_to.is_none());
        let unknown = revoke_signing_key(&store, &p, "nope", true, 40).await;
        assert!(matches!(unknown, Err(RevokeError::UnknownKey(_))));
    }

    #[tokio::test]
    async fn revoking_the_previous_key_does_not_bring_back_a_retired_one() {
        let (store, p) = (MemoryStore::new(), provider());
        let first = load_signing_key(&store, &p, 10).await.expect("created").kid;
        let second = rotate_signing_key(&store, &p, 20).await.expect("rotated");
        let third = rotate_signing_key(&store, &p, 30).await.expect("rotated");
        assert_eq!(published(&store).await, [third.clone(), second.clone()]);
        revoke_signing_key(&store, &p, &second, false, 40).await.expect("revoke the previous key");
        assert_eq!(published(&store).await, std::slice::from_ref(&third), "{first} came back");
        let states: Vec<KeyState> =
            signing_keys(&store).await.expect("list").iter().map(|k| k.state).collect();
        assert_eq!(states, [KeyState::Current, KeyState::Revoked, KeyState::Retired]);
    }

    #[tokio::test]
    async fn a_revoked_current_key_is_never_loaded_for_signing() {
        let (store, p) = (MemoryStore::new(), provider());
        let kid = load_signing_key(&store, &p, 10).await.expect("created").kid;
        // Only reachable outside the CLI (which rotates first), e.g. by hand in SQL.
        assert!(store.revoke(SIGNING, &kid, 20).await.expect("revoke"));
        assert!(matches!(load_signing_key(&store, &p, 30).await, Err(KeyringError::Revoked(_))));
        assert_eq!(current_signing_kid(&store).await.expect("read"), None);
        assert_eq!(store.keys(SIGNING).await.expect("keys").len(), 1, "no key was created in its place");
    }
}
