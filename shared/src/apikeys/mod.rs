//! API keys for machine callers: `pck_<key id>_<secret>` where the secret is 256
//! bits from the OS CSPRNG. Only a SHA-256 of the whole key is stored, found by
//! its key id (the lookup prefix) and compared in constant time. Keys carry
//! explicit permissions, an expiry, and can be revoked.
//!
//! A key never carries more than its creator (a person) holds: creation checks
//! it, and every removal of a role from the creator revokes the creator's keys
//! that exceed what remains ([`exceeding`]). The authorizer has no access
//! to roles; it trusts the key record, which the admin function keeps within
//! those bounds (`docs/security/api-keys.md`).

use crate::sessions::TokenHash;
use crate::store::StoreError;
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

pub const API_KEY_PREFIX: &str = "pck_";
const KEY_ID_LEN: usize = 16;
const SECRET_LEN: usize = 43; // 32 bytes, base64url without padding

/// A stored API key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub name: String,
    pub hash: TokenHash,
    pub permissions: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub valid_until: i64,
    pub revoked_at: Option<i64>,
}

fn sha256(text: &str) -> TokenHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    TokenHash(out)
}

/// A new key: `(key id, the key shown once, its hash)`.
pub fn new_api_key() -> (String, SecretString, TokenHash) {
    let key_id = hex::encode(crate::crypto::random_bytes::<8>());
    let mut secret = crate::crypto::random_bytes::<32>();
    let key = format!("{API_KEY_PREFIX}{key_id}_{}", URL_SAFE_NO_PAD.encode(secret));
    zeroize::Zeroize::zeroize(&mut secret);
    let hash = sha256(&key);
    (key_id, SecretString::from(key), hash)
}

/// `(key id, hash)` of a presented key, or `None` when it is not shaped like one.
pub fn parse_presented(key: &str) -> Option<(String, TokenHash)> {
    let body = key.strip_prefix(API_KEY_PREFIX)?;
    if body.len() != KEY_ID_LEN + 1 + SECRET_LEN || !body.is_char_boundary(KEY_ID_LEN) {
        return None;
    }
    let (key_id, rest) = body.split_at(KEY_ID_LEN);
    let secret = rest.strip_prefix('_')?;
    let ok_id = key_id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    let ok_secret = URL_SAFE_NO_PAD.decode(secret).is_ok_and(|b| b.len() == 32);
    (ok_id && ok_secret).then(|| (key_id.to_owned(), sha256(key)))
}

/// Why a presented key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerdict {
    Valid,
    Unknown,
    Revoked,
    Expired,
}

impl ApiKeyRecord {
    /// True while the key is neither revoked nor expired.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.valid_until
    }

    /// The key's permissions that `holds` denies, each once: empty when the
    /// key is within its creator's bounds.
    pub fn beyond(&self, holds: impl Fn(&str) -> bool) -> Vec<String> {
        let set: std::collections::BTreeSet<&str> =
            self.permissions.iter().map(String::as_str).filter(|p| !holds(p)).collect();
        set.into_iter().map(str::to_owned).collect()
    }

    /// Checks a presented key's hash (constant time), revocation and expiry.
    pub fn check(&self, presented: &TokenHash, now: i64) -> KeyVerdict {
        if aws_lc_rs::constant_time::verify_slices_are_equal(&self.hash.0, &presented.0).is_err() {
            KeyVerdict::Unknown
        } else if self.revoked_at.is_some() {
            KeyVerdict::Revoked
        } else if now >= self.valid_until {
            KeyVerdict::Expired
        } else {
            KeyVerdict::Valid
        }
    }
}

/// Storage of API keys.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn create(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Marks a key revoked; false when no such key exists.
    async fn revoke(&self, key_id: &str, now: i64) -> Result<bool, StoreError>;
    /// Every stored key `creator` made (live or not), read consistently: a key
    /// whose `create` has returned is in the answer.
    async fn list_by_creator(&self, creator: &str) -> Result<Vec<ApiKeyRecord>, StoreError>;
}

/// A key revoked because its creator no longer holds some of its permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeding {
    pub key_id: String,
    /// The permissions the creator lacks.
    pub lacking: Vec<String>,
}

/// Every live key of `creator` that carries a permission `holds` (the
/// creator's current permissions) denies. The caller revokes each whole: a
/// key is the contract its automation was built against, so it is not
/// narrowed into something that half works.
pub async fn exceeding(
    store: &dyn ApiKeyStore,
    creator: &str,
    holds: impl Fn(&str) -> bool + Sync,
    now: i64,
) -> Result<Vec<Exceeding>, StoreError> {
    Ok(store
        .list_by_creator(creator)
        .await?
        .into_iter()
        .filter(|k| k.is_live(now))
        .map(|k| Exceeding { lacking: k.beyond(&holds), key_id: k.key_id })
        .filter(|e| !e.lacking.is_empty())
        .collect())
}

/// Exposes a new key once, for the creation response.
pub fn reveal(key: &SecretString) -> String {
    key.expose_secret().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_malformed_keys_are_refused() {
        let (id, key, hash) = new_api_key();
        assert_eq!(parse_presented(key.expose_secret()), Some((id.clone(), hash)));
        let text = key.expose_secret();
        for bad in [
            "",
            "pck_",
            &text[..text.len() - 1],
            &format!("{text}A"),
            &text.replace("pck_", "pcx_"),
            &format!("pck_{}_{}", "Z".repeat(16), &text[21..]),
        ] {
            assert_eq!(parse_presented(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_key_is_valid_until_revoked_or_expired() {
        let (id, key, hash) = new_api_key();
        let mut rec = ApiKeyRecord {
            key_id: id,
            name: "ci".into(),
            hash,
            permissions: vec!["users:read".into()],
            created_by: "admin".into(),
            created_at: 0,
            valid_until: 100,
            revoked_at: None,
        };
        let presented = parse_presented(key.expose_secret()).expect("parses").1;
        assert_eq!(rec.check(&presented, 99), KeyVerdict::Valid);
        assert_eq!(rec.check(&presented, 100), KeyVerdict::Expired);
        let (_, other, _) = new_api_key();
        let other = parse_presented(other.expose_secret()).expect("parses").1;
        assert_eq!(rec.check(&other, 1), KeyVerdict::Unknown);
        rec.revoked_at = Some(5);
        assert_eq!(rec.check(&presented, 6), KeyVerdict::Revoked);
    }

    fn record(creator: &str, permissions: &[&str], valid_until: i64) -> ApiKeyRecord {
        let (key_id, _, hash) = new_api_key();
        ApiKeyRecord {
            key_id,
            name: "automation".into(),
            hash,
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            created_by: creator.into(),
            created_at: 0,
            valid_until,
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn only_the_creators_live_keys_beyond_its_permissions_exceed() {
        let store = crate::adapters::memory::MemoryApiKeyStore::default();
        let within = record("ada", &["users:read"], 100);
        let beyond = record("ada", &["users:read", "users:manage", "users:manage"], 100);
        let expired = record("ada", &["users:manage"], 10);
        let other = record("bob", &["users:manage"], 100);
        for key in [&within, &beyond, &expired, &other] {
            store.create(key).await.expect("create");
        }
        let holds = |p: &str| p == "users:read";
        let found = exceeding(&store, "ada", holds, 50).await.expect("list");
        assert_eq!(
            found,
            [Exceeding { key_id: beyond.key_id.clone(), lacking: vec!["users:manage".into()] }]
        );
        store.revoke(&beyond.key_id, 50).await.expect("revoke");
        let store = &store;
        let state = |id: String| async move { store.get(&id).await.expect("get").expect("key").revoked_at };
        assert_eq!(state(beyond.key_id.clone()).await, Some(50));
        for untouched in [&within, &expired, &other] {
            assert_eq!(state(untouched.key_id.clone()).await, None);
        }
        assert!(exceeding(store, "ada", holds, 60).await.expect("again").is_empty(), "a revoked key is done");
    }
}
