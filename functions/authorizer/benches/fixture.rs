#![allow(dead_code)] // each user takes the parts it measures
//! A world for measuring decisions, shared by the `decisions` benchmark and the
//! `instructions` regression guard: in-memory stores, a local key file, and
//! `n` valid ES256 tokens, each for its own live session.

use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_FIXED};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis_authorizer::Deps;
use portcullis_shared::clock::{Clock, SystemClock};
use portcullis_shared::config::Config;
use portcullis_shared::crypto::{load_verifying_keys, VerifyingKey};
use portcullis_shared::http::ClientMeta;
use portcullis_shared::runtime::{key_provider, token_issuer, Backends};
use portcullis_shared::sessions;
use portcullis_shared::tokens::Grant;
use std::sync::Arc;

pub struct World {
    pub config: Config,
    pub deps: Deps,
    pub tokens: Vec<String>,
    /// `Bearer <token>` for each token.
    pub headers: Vec<String>,
    /// Each token's signing input and raw signature, for the bare verify.
    pub signed: Vec<(String, Vec<u8>)>,
    pub public: ParsedPublicKey,
    pub keys: Vec<VerifyingKey>,
    /// The stores the sessions live in (for a second authorizer on them).
    pub backends: Backends,
}

pub async fn world(dir: &std::path::Path, n: usize) -> World {
    let key_file = dir.join("master.key");
    let config = Config::from_lookup(|v| match v {
        "PORTCULLIS_LOCAL_KEY_FILE" => Some(key_file.display().to_string()),
        "PORTCULLIS_STORE" => Some("memory".into()),
        _ => None,
    })
    .expect("config");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backends = Backends::open(&config).await.expect("backends");
    let provider = key_provider(&config).expect("keys");
    let issuer = token_issuer(&config, &backends, provider.as_ref(), clock.clone()).await.expect("issuer");
    let deps = Deps::build(&config, &backends, clock.clone()).await.expect("deps");
    deps.verifier.get().await.expect("verification keys");
    let policy = config.session_policy();
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let (session, _) = sessions::start(
            backends.sessions.as_ref(),
            &policy,
            &format!("user-{i}"),
            vec!["user".into()],
            vec!["pwd".into()],
            &ClientMeta::default(),
            clock.now_secs(),
        )
        .await
        .expect("session");
        tokens.push(issuer.issue(Grant::for_session(&session, vec!["user".into()])).expect("token").0);
    }
    let keys = load_verifying_keys(backends.keys.as_ref()).await.expect("keys");
    let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, keys[0].point.clone()).expect("public key");
    World {
        headers: tokens.iter().map(|t| format!("Bearer {t}")).collect(),
        signed: tokens
            .iter()
            .map(|t| {
                let (input, sig) = t.rsplit_once('.').expect("three segments");
                (input.to_owned(), URL_SAFE_NO_PAD.decode(sig).expect("signature"))
            })
            .collect(),
        tokens,
        public,
        keys,
        config,
        deps,
        backends,
    }
}

/// A team policy of `n` routes `GET /r{i}/items/{user_id}/{item_id}`, each
/// owned by `user_id` unless the caller holds `items:read:any`.
pub fn team_policy(n: usize) -> portcullis_shared::rbac::Policy {
    let routes: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({"method": "GET", "path": format!("/r{i}/items/{{user_id}}/{{item_id}}"),
                "permission": "items:read", "owner": {"param": "user_id", "unless": "items:read:any"}})
        })
        .collect();
    let policy = serde_json::json!({
        "permissions": ["users:read", "users:manage", "sessions:revoke", "apikeys:manage", "audit:read",
                        "items:read", "items:read:any"],
        "roles": {"user": ["items:read"], "admin": {"grants": ["users:*", "sessions:*", "apikeys:*", "audit:*"], "mfa": true}},
        "routes": routes
    });
    portcullis_shared::rbac::Policy::parse(&policy.to_string()).expect("the team policy is valid")
}

/// For token `i` of a world, its own item under the last of [`team_policy`]`(200)`'s routes.
pub fn team_paths(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/r199/items/user-{i}/7")).collect()
}
