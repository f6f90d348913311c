//! Fuzzes everything the authorizer parses from the outside: whole API Gateway
//! events (both payload types), bearer headers, JWTs and API keys. Any panic is a
//! finding; every input must end in a decision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_authorizer::{authorize, bearer_token, handle_event, Ask, Deps};
use portcullis_shared::clock::SystemClock;
use portcullis_shared::config::Config;
use portcullis_shared::runtime::{key_provider, token_issuer, Backends};
use std::sync::{Arc, LazyLock};

struct World {
    rt: tokio::runtime::Runtime,
    deps: Deps,
    verifier: std::sync::Arc<portcullis_shared::tokens::TokenVerifier>,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = std::env::temp_dir().join(format!("portcullis-fuzz-{}", std::process::id()));
    let key_file = dir.join("master.key").display().to_string();
    let (deps, verifier) = rt.block_on(async {
        let config = Config::from_lookup(|n| (n == "PORTCULLIS_LOCAL_KEY_FILE").then(|| key_file.clone())).expect("config");
        let backends = Backends::open(&config).await.expect("backends");
        let provider = key_provider(&config).expect("keys");
        // Creates the signing key, so real signatures are in play.
        token_issuer(&config, &backends, provider.as_ref(), Arc::new(SystemClock)).await.expect("issuer");
        let deps = Deps::build(&config, &backends, Arc::new(SystemClock)).await.expect("deps");
        let verifier = deps.verifier.get().await.expect("verification keys");
        (deps, verifier)
    });
    World { rt, deps, verifier }
});

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bearer_token(text);
        let _ = portcullis_shared::apikeys::parse_presented(text);
        let _ = world.verifier.verify(text);
        let header = format!("Bearer {text}");
        world.rt.block_on(async {
            let ask = Ask { method: "GET", path: text, authorization: Some(&header), api_key: Some(text) };
            authorize(&world.deps, ask).await;
            let ask = Ask { method: "GET", path: "/me", authorization: Some(&header), api_key: None };
            authorize(&world.deps, ask).await;
        });
    }
    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) {
        world.rt.block_on(handle_event(&world.deps, event));
    }
});
