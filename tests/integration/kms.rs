//! Envelope encryption with KMS, on moto server (`AWS_ENDPOINT_URL`).

use crate::helpers::{config, deps_with, GOOD_PASSWORD};
use crate::helpers::{parts, request, TestDb};
use mysql_async::prelude::Queryable;
use portcullis_shared::crypto::{EncryptionContext, KeyError, KeyProvider, KmsKeyProvider};

pub async fn kms_client() -> aws_sdk_kms::Client {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run the tests with scripts/test.sh, which starts moto"
    );
    aws_sdk_kms::Client::new(portcullis_shared::aws::aws_config().await)
}

pub async fn new_kms_key() -> String {
    let out =
        kms_client().await.create_key().description("portcullis test").send().await.expect("moto CreateKey");
    out.key_metadata().map(|m| m.key_id().to_owned()).expect("key id")
}

#[tokio::test]
async fn kms_data_keys_unwrap_only_under_their_encryption_context() {
    let provider = KmsKeyProvider::new(kms_client().await, new_kms_key().await);
    let context = EncryptionContext::new([("purpose", "field-encryption"), ("kid", "k1")]);
    let data_key = provider.generate_data_key(&context).await.expect("GenerateDataKey");
    assert_ne!(data_key.wrapped.len(), 32, "the wrapped key must not be the plaintext");
    let again = provider.decrypt_data_key(&data_key.wrapped, &context).await.expect("Decrypt");
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&again),
        secrecy::ExposeSecret::expose_secret(&data_key.plaintext)
    );
    let other = EncryptionContext::new([("purpose", "token-signing"), ("kid", "k1")]);
    let refused = provider.decrypt_data_key(&data_key.wrapped, &other).await;
    assert!(matches!(refused, Err(KeyError::Unwrap)), "decrypted under another context");
}

#[tokio::test]
async fn login_runs_on_kms_wrapped_keys_shared_by_every_instance() {
    let db = TestDb::create().await;
    let key_id = new_kms_key().await;
    let cfg = config(&[
        ("PORTCULLIS_STORE", "mysql".into()),
        ("PORTCULLIS_DATABASE_URL", db.user_url("login")),
        ("PORTCULLIS_KEY_PROVIDER", "kms".into()),
        ("PORTCULLIS_KMS_KEY_ID", key_id),
    ]);
    let first = deps_with(&cfg).await;
    let body = serde_json::json!({"email": "kms@example.com", "password": GOOD_PASSWORD}).to_string();
    let (status, _, _) =
        parts(portcullis_login::handle(&first, request("POST", "/auth/register", Some(&body), None)).await);
    assert_eq!(status, 201);

    // A second cold start unwraps the same keys: it finds the user by its blind
    // index and decrypts the email the first instance encrypted.
    let second = deps_with(&cfg).await;
    let (status, text, _) =
        parts(portcullis_login::handle(&second, request("POST", "/auth/login", Some(&body), None)).await);
    assert_eq!(status, 200, "{text}");

    let mut owner = db.owner_conn().await;
    let keys: Vec<(String, Vec<u8>, Vec<u8>)> = owner
        .query("SELECT purpose, wrapped_key, sealed FROM key_material ORDER BY purpose")
        .await
        .expect("rows");
    assert_eq!(keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["field-encryption", "token-signing"]);
    assert!(keys.iter().all(|k| k.1.len() > 32), "data keys are stored wrapped");
    assert!(
        !keys[1].2.windows(2).any(|w| w == [0x30, 0x81]),
        "the signing key is sealed, not PKCS#8 in the clear"
    );
}
