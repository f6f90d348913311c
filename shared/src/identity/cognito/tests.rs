//! The Cognito provider's own rules that need no pool.

use super::*;
use crate::mfa::CHALLENGE_TTL_SECS;

#[tokio::test]
async fn a_sealed_challenge_expires_like_a_stored_one_and_carries_its_bucket() {
    let config = crate::config::Config::from_lookup(|_| None).expect("default configuration");
    let app = AppClient::new(crate::aws::AwsClient::lazy(), "pool".into(), "client".into());
    let sessions = Arc::new(crate::adapters::memory::MemorySessionStore::new());
    let provider = CognitoProvider::new(app, sessions, config.session_policy());
    let fields = FieldCipher::new(&[5u8; 32]);
    let pending = PendingFactor {
        user_id: None,
        email: Some(Email::parse("ada@example.com").expect("address")),
        pool_session: Some(SecretString::from("pool-session".to_owned())),
    };
    let seed = ChallengeSeed { bucket: "device-bucket".into(), device_token: "device-token".into() };
    let issued = provider.challenge(&fields, pending, seed, 1_000).await.expect("sealed");
    assert_eq!(issued.methods, ["totp"], "the pool keeps no recovery codes");
    let token = SecretString::from(issued.mfa_token);
    let live = provider.open_challenge(&fields, &token, 1_000 + CHALLENGE_TTL_SECS - 1).await.expect("opens");
    let live = live.expect("live until its expiry");
    assert_eq!((live.bucket.as_str(), live.device_token.as_deref()), ("device-bucket", Some("device-token")));
    let dead = provider.open_challenge(&fields, &token, 1_000 + CHALLENGE_TTL_SECS).await.expect("opens");
    assert!(dead.is_none(), "an expired challenge is dead");
}
