//! The Cognito app client Portcullis calls the pool through: a confidential
//! client whose secret only the functions hold.
//!
//! The secret is read once per process from the pool itself
//! (`DescribeUserPoolClient`, allowed to the functions' roles on this pool only),
//! never from the environment: it has one home, Cognito, and a rotated secret
//! reaches every function at its next cold start. It serves two purposes, kept
//! apart by their own HMAC labels:
//! - `SECRET_HASH` (HMAC-SHA256 of username + client id, base64) on every call
//!   that takes one, so `InitiateAuth`, `RespondToAuthChallenge`, `SignUp`,
//!   `ForgotPassword` … are refused to anyone calling the pool with only the
//!   (public) client id;
//! - sealing the pool's tokens (AES-256-GCM, bound to the session): the client
//!   receives Portcullis' own tokens, and the pool's access and refresh tokens
//!   travel inside them only as ciphertext, so a user never holds a token the
//!   pool's self-service APIs (`ChangePassword`, `SetUserMFAPreference`,
//!   `AssociateSoftwareToken`, `DeleteUser` …) would accept.

use crate::aws::AwsClient;
use crate::crypto::FieldCipher;
use crate::identity::IdentityError;
use aws_lc_rs::hmac;
use aws_sdk_cognitoidentityprovider::Client;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

/// Prefix of a sealed pool token, so a leaked one is recognisable.
pub const SEALED_PREFIX: &str = "pcs_";

/// The keys derived from the client secret.
struct AppSecret {
    /// Keyed with the client secret itself, as Cognito computes `SECRET_HASH`.
    secret_hash: hmac::Key,
    seal: FieldCipher,
}

impl AppSecret {
    fn new(secret: &SecretString) -> Self {
        let raw = secret.expose_secret().as_bytes();
        let secret_hash = hmac::Key::new(hmac::HMAC_SHA256, raw);
        // A separate key for sealing: HMAC-SHA256 as a PRF under its own label, so
        // nothing sealed can be related to a SECRET_HASH.
        let derived =
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, raw), b"portcullis cognito token seal v1");
        let mut key = [0u8; 32];
        key.copy_from_slice(derived.as_ref());
        let seal = FieldCipher::new(&key);
        zeroize::Zeroize::zeroize(&mut key);
        Self { secret_hash, seal }
    }
}

/// The pool and its confidential app client.
pub struct AppClient {
    client: AwsClient<Client>,
    pool_id: String,
    client_id: String,
    secret: OnceCell<AppSecret>,
}

impl AppClient {
    pub fn new(client: impl Into<AwsClient<Client>>, pool_id: String, client_id: String) -> Self {
        Self { client: client.into(), pool_id, client_id, secret: OnceCell::new() }
    }

    /// An app client whose secret is already known (unit tests).
    pub fn with_secret(
        client: impl Into<AwsClient<Client>>,
        pool_id: String,
        client_id: String,
        secret: &SecretString,
    ) -> Self {
        let app = Self::new(client, pool_id, client_id);
        let _ = app.secret.set(AppSecret::new(secret));
        app
    }

    pub fn sdk(&self) -> &AwsClient<Client> {
        &self.client
    }

    pub fn pool_id(&self) -> &str {
        &self.pool_id
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The secret's keys, read from the pool on first use (retried on the next
    /// call if that read fails). A client without a secret is refused: Portcullis
    /// would then be one of many callers of a public client (fail closed).
    async fn secret(&self) -> Result<&AppSecret, IdentityError> {
        self.secret
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get()
                    .await
                    .describe_user_pool_client()
                    .user_pool_id(&self.pool_id)
                    .client_id(&self.client_id)
                    .send()
                    .await
                    .map_err(|e| IdentityError::Unavailable(crate::error::error_chain(&e)))?;
                let secret = out
                    .user_pool_client()
                    .and_then(|c| c.client_secret())
                    .filter(|s| !s.is_empty())
                    .map(|s| SecretString::from(s.to_owned()))
                    .ok_or_else(|| {
                        IdentityError::Unavailable(
                            "the Cognito app client has no secret: refusing to use a public client".into(),
                        )
                    })?;
                Ok(AppSecret::new(&secret))
            })
            .await
    }

    /// `SECRET_HASH` for `username`: Base64(HMAC-SHA256(client secret, username + client id)).
    pub async fn secret_hash(&self, username: &str) -> Result<String, IdentityError> {
        let secret = self.secret().await?;
        let mut context = hmac::Context::with_key(&secret.secret_hash);
        context.update(username.as_bytes());
        context.update(self.client_id.as_bytes());
        Ok(STANDARD.encode(context.sign().as_ref()))
    }

    /// A pool token sealed for the client, bound to `owner` (the session it belongs to).
    pub async fn seal(&self, plaintext: &str, owner: &str) -> Result<String, IdentityError> {
        let secret = self.secret().await?;
        Ok(format!(
            "{SEALED_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(secret.seal.encrypt(plaintext.as_bytes(), owner.as_bytes()))
        ))
    }

    /// What [`AppClient::seal`] sealed for the same owner; anything else is `Refused`.
    pub async fn open(&self, sealed: &str, owner: &str) -> Result<SecretString, IdentityError> {
        let secret = self.secret().await?;
        let bytes = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .ok_or(IdentityError::Refused)?;
        let plain = secret.seal.decrypt(&bytes, owner.as_bytes()).map_err(|_| IdentityError::Refused)?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| IdentityError::Refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(secret: &str) -> AppClient {
        let sdk = Client::from_conf(
            aws_sdk_cognitoidentityprovider::Config::builder()
                .behavior_version(aws_sdk_cognitoidentityprovider::config::BehaviorVersion::latest())
                .region(aws_sdk_cognitoidentityprovider::config::Region::new("us-east-1"))
                .build(),
        );
        AppClient::with_secret(sdk, "pool".into(), "client-id".into(), &SecretString::from(secret.to_owned()))
    }

    #[tokio::test]
    async fn the_secret_hash_is_the_documented_hmac() {
        // Computed independently: printf 'ada@example.comclient-id' |
        //   openssl dgst -sha256 -hmac 'app-secret' -binary | base64
        let expected = "iuRvGzkdwgaVwg1/PBxsyRv9VZlQxmvgSfXYhxbOaIs=";
        assert_eq!(app("app-secret").secret_hash("ada@example.com").await.expect("hash"), expected);
    }

    #[tokio::test]
    async fn a_sealed_token_opens_only_for_its_owner_and_key() {
        let a = app("app-secret");
        let sealed = a.seal("cognito-access-token", "access:u1:s1").await.expect("seal");
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("cognito-access-token"));
        let opened = a.open(&sealed, "access:u1:s1").await.expect("opens");
        assert_eq!(opened.expose_secret(), "cognito-access-token");
        assert!(a.open(&sealed, "access:u2:s1").await.is_err(), "another session");
        assert!(app("other-secret").open(&sealed, "access:u1:s1").await.is_err(), "another secret");
        assert!(a.open("pcs_!!", "access:u1:s1").await.is_err());
        assert!(a.open("cognito-access-token", "access:u1:s1").await.is_err());
    }
}
