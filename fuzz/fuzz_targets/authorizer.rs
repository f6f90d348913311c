//! Fuzzes everything the authorizer takes from the outside, each input through
//! the path it targets. The first byte picks the mode:
//!
//! - 0 token: raw JWT text through `TokenVerifier::verify` and through `authorize`
//!   with only a bearer header (and as the raw `Authorization` value);
//! - 1 API key: `X-Api-Key` text through `authorize` with no bearer header; the
//!   store holds real keys (valid, wildcard, revoked, expired);
//! - 2 event: a whole API Gateway event (HTTP API 2.0 or REST) through `handle_event`;
//! - 3 edited token: the header, claims or signature segment of a real token
//!   replaced, without the key (`\n` separates the three; an empty one is kept);
//! - 4 re-signed token: fuzzed header and claims JSON (`\n` between, empty keeps
//!   the real one) signed with the real key, so the claim checks that follow the
//!   signature (`iss`, `aud`, `exp`, `nbf`, `iat`, `sub`, `sid`, `roles`, …) are fuzzed too;
//! - 5 spliced token: `[offset hi, offset lo, length, bytes…]` cut and inserted
//!   anywhere in a real token.
//!
//! In every mode but 2 the second byte picks the route (its top bit picks
//! the user's or the admin's real token in modes 3 to 5). The placeholders
//! `REPLACE_WITH_ACCESS_TOKEN`, `REPLACE_WITH_ADMIN_TOKEN` and `REPLACE_WITH_KID`
//! stand for a real user token, admin token and signing key id, made at start-up:
//! seeds cannot hold them, the signing key is new in each process. The clock is
//! fixed, so runs are reproducible and the times in the committed seeds keep
//! their meaning.
//!
//! A panic is a finding, and so is a broken invariant (`assert!`): nothing the
//! verifier refuses is allowed; a token edited without the key is allowed only
//! when its signed part is untouched; an allowed caller holds the roles of its
//! live session (never those of its token) and the permission of the route, and a
//! live session with that permission is allowed; an allowed API key is the
//! presented key, live and covering the route; a REST Allow names exactly the
//! invoked method ARN.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use portcullis_authorizer::{authorize, bearer_token, handle_event, Ask, Decision, Deps};
use portcullis_shared::apikeys::{parse_presented, ApiKeyRecord};
use portcullis_shared::clock::{Clock, ManualClock, LEEWAY_SECS};
use portcullis_shared::config::Config;
use portcullis_shared::crypto::load_signing_key;
use portcullis_shared::rbac::{Policy, Requirement};
use portcullis_shared::runtime::{key_provider, token_issuer, Backends};
use portcullis_shared::sessions::{new_refresh_token, SessionRecord};
use portcullis_shared::tokens::{AccessClaims, Grant, TokenError, TokenVerifier, TOKEN_TYPE};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// The fixed time of every run.
const NOW: i64 = 1_800_000_000;

/// Routes of the policy (templates and concrete paths) and a few it lacks.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/me"),
    ("POST", "/auth/logout"),
    ("GET", "/auth/sessions"),
    ("DELETE", "/auth/mfa/totp"),
    ("POST", "/auth/password"),
    ("GET", "/admin/users"),
    ("POST", "/admin/users/{user_id}/roles"),
    ("POST", "/admin/users/u-1/roles"),
    ("DELETE", "/admin/users/u-1/roles/admin"),
    ("POST", "/admin/users/u-1/sessions/revoke"),
    ("POST", "/admin/api-keys"),
    ("DELETE", "/admin/api-keys/0000000000000000"),
    ("GET", "/admin/api-keys"),
    ("get", "/me"),
    ("GET", "/me/"),
    ("PUT", "/nowhere"),
];

/// The store's API keys: `(text, permissions, revoked, expired)`. Test keys of
/// this harness only, committed in its seeds.
const API_KEYS: &[(&str, &[&str], bool, bool)] = &[
    ("pck_00000000000000a1_oaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaE", &["users:read"], false, false),
    (
        "pck_00000000000000a2_oqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqI",
        &["users:*", "apikeys:*"],
        false,
        false,
    ),
    ("pck_00000000000000a3_o6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6M", &["users:read"], true, false),
    ("pck_00000000000000a4_pKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKQ", &["users:read"], false, true),
];

/// The store's sessions: `(user, sid, roles, created, last used, revoked)`.
const SESSIONS: &[(&str, &str, &[&str], i64, i64, Option<i64>)] = &[
    ("u-fuzz-user", "s-user", &["user"], NOW - 600, NOW - 60, None),
    ("u-fuzz-admin", "s-admin", &["admin"], NOW - 600, NOW - 60, None),
    ("u-fuzz-support", "s-support", &["support"], NOW - 600, NOW - 60, None),
    ("u-fuzz-user", "s-revoked", &["admin"], NOW - 600, NOW - 60, Some(NOW - 30)),
    ("u-fuzz-user", "s-idle", &["admin"], NOW - 7_200, NOW - 7_200, None),
    ("u-fuzz-user", "s-old", &["admin"], NOW - 90 * 86_400, NOW - 60, None),
];

struct World {
    deps: Deps,
    verifier: Arc<TokenVerifier>,
    /// The real signing key and its `kid`, for re-signing fuzzed claims.
    signer: EncodingKey,
    kid: String,
    issuer: String,
    audience: String,
    user_token: String,
    admin_token: String,
    /// Roles of each session that is live at [`NOW`].
    live: HashMap<(String, String), Vec<String>>,
    /// Permissions of each live API key, by key id.
    keys: HashMap<String, Vec<String>>,
}

/// Runs every input: one thread, no scheduler hand-offs.
static RT: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"));

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("portcullis-fuzz-{}", std::process::id()));
    let key_file = dir.join("master.key").display().to_string();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(NOW));
    let world = RT.block_on(async {
        let config = Config::from_lookup(|n| match n {
            "PORTCULLIS_LOCAL_KEY_FILE" => Some(key_file.clone()),
            "PORTCULLIS_STORE" => Some("memory".into()),
            _ => None,
        })
        .expect("config");
        let backends = Backends::open(&config).await.expect("backends");
        let provider = key_provider(&config).expect("keys");
        // Creates the signing key, so real signatures are in play, and issues as login does.
        let issuer =
            token_issuer(&config, &backends, provider.as_ref(), clock.clone()).await.expect("issuer");
        let signing =
            load_signing_key(backends.keys.as_ref(), provider.as_ref(), NOW).await.expect("signing key");
        let mint = |sub: &str, sid: &str, roles: &[&str]| {
            let grant = Grant {
                sub: sub.into(),
                sid: sid.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                amr: vec!["pwd".into()],
                auth_time: NOW - 600,
            };
            issuer.issue(grant).expect("issues").0
        };
        let policy = config.session_policy();
        let mut live = HashMap::new();
        for &(user, sid, roles, created_at, last_used_at, revoked_at) in SESSIONS {
            let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
            let first = new_refresh_token().1;
            let session = SessionRecord {
                user_id: user.into(),
                sid: sid.into(),
                created_at,
                last_used_at,
                revoked_at,
                user_agent: None,
                ip: None,
                amr: vec!["pwd".into()],
                auth_time: created_at,
                roles: roles.clone(),
                roles_version: 0,
                head: Some(first),
            };
            backends.sessions.create(&session, &first, policy.expires_at(created_at)).await.expect("session");
            if policy.state(&session, NOW) == portcullis_shared::sessions::SessionState::Live {
                live.insert((user.to_owned(), sid.to_owned()), roles);
            }
        }
        let mut keys = HashMap::new();
        for &(text, permissions, revoked, expired) in API_KEYS {
            let (key_id, hash) = parse_presented(text).expect("harness key is well formed");
            let permissions: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
            let record = ApiKeyRecord {
                key_id: key_id.clone(),
                name: "fuzz".into(),
                hash,
                permissions: permissions.clone(),
                created_by: "u-fuzz-admin".into(),
                created_at: NOW - 86_400,
                valid_until: if expired { NOW - 1 } else { NOW + 86_400 },
                revoked_at: revoked.then_some(NOW - 60),
            };
            backends.api_keys.create(&record).await.expect("api key");
            if !revoked && !expired {
                keys.insert(key_id, permissions);
            }
        }
        let deps = Deps::build(&config, &backends, clock.clone()).await.expect("deps");
        let verifier = deps.verifier.get().await.expect("verification keys");
        World {
            user_token: mint("u-fuzz-user", "s-user", &["user"]),
            admin_token: mint("u-fuzz-admin", "s-admin", &["admin"]),
            signer: EncodingKey::from_ec_der(&signing.pkcs8),
            kid: signing.kid.clone(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            deps,
            verifier,
            live,
            keys,
        }
    });
    // Every key is unwrapped by now; the master key file is not read again.
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        matches!(
            world.decide("GET", "/me", Some(&format!("Bearer {}", world.user_token)), None),
            Decision::Allow(_)
        ),
        "the harness's own token must be allowed"
    );
    world
});

impl World {
    fn decide(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        api_key: Option<&str>,
    ) -> Decision {
        RT.block_on(authorize(&self.deps, Ask { method, path, authorization, api_key }))
    }

    fn placeholders(&self, text: &str) -> String {
        if !text.contains("REPLACE_WITH_") {
            return text.to_owned();
        }
        text.replace("REPLACE_WITH_ACCESS_TOKEN", &self.user_token)
            .replace("REPLACE_WITH_ADMIN_TOKEN", &self.admin_token)
            .replace("REPLACE_WITH_KID", &self.kid)
    }

    fn requirement(&self, method: &str, path: &str) -> Option<&Requirement> {
        self.deps.policy.requirement(method, path)
    }

    /// `token` through the verifier and through `authorize` with only a bearer
    /// header; checks the invariants of a user decision and returns both results.
    fn bearer(&self, route: u8, token: &str) -> (Result<AccessClaims, TokenError>, Decision) {
        let (method, path) = ROUTES[usize::from(route & 0x7f) % ROUTES.len()];
        let header = format!("Bearer {token}");
        // What `authorize` verifies: the header's token, trimmed; none when malformed.
        let verified = bearer_token(&header).map_or(Err(TokenError::Malformed), |t| self.verifier.verify(t));
        let decision = self.decide(method, path, Some(&header), None);
        let requirement = self.requirement(method, path);
        let session_roles =
            verified.as_ref().ok().and_then(|c| self.live.get(&(c.sub.clone(), c.sid.clone())));
        let permitted = |roles: &[String]| match requirement {
            None => false,
            Some(Requirement::Public) | Some(Requirement::Session) => true,
            Some(Requirement::Permission(p)) => self.deps.policy.allows(roles, p),
        };
        match &decision {
            Decision::Allow(identity) => {
                let claims = verified.as_ref().expect("allowed a token the verifier refuses");
                assert_eq!(
                    (&identity.sub, &identity.sid),
                    (&claims.sub, &claims.sid),
                    "identity is the token's"
                );
                let roles = session_roles.expect("allowed a token without a live session");
                assert_eq!(&identity.roles, roles, "roles come from the session, never the token");
                assert!(permitted(roles), "allowed without the route's permission");
                assert!(identity.api_key_id.is_none());
            }
            _ => assert!(
                !session_roles.is_some_and(|r| permitted(r)),
                "refused a verified token of a live session with the route's permission"
            ),
        }
        (verified, decision)
    }
}

/// Input bytes as text; invalid UTF-8 becomes U+FFFD.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn split_route(rest: &[u8]) -> (u8, &[u8]) {
    rest.split_first().map(|(r, p)| (*r, p)).unwrap_or((0, &[]))
}

/// Mode 0: raw JWT text.
fn raw_token(world: &World, rest: &[u8]) {
    let (route, payload) = split_route(rest);
    let token = world.placeholders(&text(payload));
    let _ = portcullis_shared::tokens::peek_session(&token);
    let _ = portcullis_shared::cognito::peek_issuer(&token);
    let _ = world.verifier.verify(&token);
    let _ = world.bearer(route, &token);
    // The whole `Authorization` value from the input: scheme parsing.
    let (method, path) = ROUTES[usize::from(route & 0x7f) % ROUTES.len()];
    if let Decision::Allow(_) = world.decide(method, path, Some(&token), None) {
        let inner = bearer_token(&token).expect("allowed a malformed Authorization header");
        assert!(world.verifier.verify(inner).is_ok(), "allowed a header whose token the verifier refuses");
    }
}

/// Mode 1: `X-Api-Key` text.
fn api_key(world: &World, rest: &[u8]) {
    let (route, payload) = split_route(rest);
    let key = text(payload);
    let (method, path) = ROUTES[usize::from(route) % ROUTES.len()];
    let parsed = parse_presented(&key);
    let live = parsed.as_ref().and_then(|(id, _)| world.keys.get(id).map(|p| (id, p)));
    let real = API_KEYS.iter().any(|(text, ..)| *text == key);
    let covered = match world.requirement(method, path) {
        Some(Requirement::Permission(p)) => live.is_some_and(|(_, grants)| world.deps.policy.grants_cover(grants, p)),
        _ => false,
    };
    match world.decide(method, path, None, Some(&key)) {
        Decision::Allow(identity) => {
            let (id, _) = live.expect("allowed a key that is not live");
            assert!(real, "allowed a key other than a stored one");
            assert!(covered, "allowed a key without the route's permission");
            assert_eq!(identity.api_key_id.as_ref(), Some(id));
            assert!(identity.roles.is_empty());
        }
        _ => assert!(!(real && covered), "refused a live key with the route's permission"),
    }
}

/// Mode 2: a whole API Gateway event.
fn event(world: &World, rest: &[u8]) {
    let parsed = if rest.windows(13).any(|w| w == b"REPLACE_WITH_") {
        serde_json::from_str::<Value>(&world.placeholders(&text(rest)))
    } else {
        serde_json::from_slice::<Value>(rest)
    };
    let Ok(event) = parsed else { return };
    let method_arn = event.get("methodArn").cloned();
    let response = RT.block_on(handle_event(&world.deps, event));
    if let Some(authorized) = response.get("isAuthorized") {
        let authorized = authorized.as_bool().expect("isAuthorized is a boolean");
        let context = response["context"].as_object().expect("context is an object");
        assert_eq!(authorized, context.contains_key("sub"), "a context only with an Allow");
        assert!(context.values().all(Value::is_string), "context values are strings");
    } else {
        let statement = &response["policyDocument"]["Statement"][0];
        let effect = statement["Effect"].as_str().expect("Effect");
        let resource = statement["Resource"].as_str().expect("Resource");
        if effect == "Allow" {
            assert!(resource.starts_with("arn:aws:execute-api:"), "Allow on {resource}");
            assert_eq!(
                method_arn.as_ref().and_then(Value::as_str),
                Some(resource),
                "Allow only on the invoked ARN"
            );
        } else {
            assert_eq!(effect, "Deny");
            assert_eq!(response["principalId"], "anonymous");
        }
    }
}

fn real_token(world: &World, route: u8) -> &str {
    if route & 0x80 == 0 {
        &world.user_token
    } else {
        &world.admin_token
    }
}

/// The token's signed part: header and claims segments.
fn signed_part(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(signed, _)| signed)
}

/// An allowed token edited without the key: what `authorize` verified (the
/// header's token, trimmed) must have the real token's signed part.
fn assert_unforged(token: &str, original: &str) {
    let header = format!("Bearer {token}");
    let presented = bearer_token(&header).expect("allowed a malformed header");
    assert_eq!(signed_part(presented), signed_part(original), "allowed a token edited without the key");
}

/// Mode 3: segments of a real token replaced, without the key.
fn edited_token(world: &World, rest: &[u8]) {
    let (route, payload) = split_route(rest);
    let original = real_token(world, route);
    let mut parts = payload.splitn(3, |b| *b == b'\n');
    let mut segments = original.split('.');
    let next = |replacement: Option<&[u8]>, original: &str| match replacement {
        Some(bytes) if !bytes.is_empty() => URL_SAFE_NO_PAD.encode(world.placeholders(&text(bytes))),
        _ => original.to_owned(),
    };
    let header = next(parts.next(), segments.next().unwrap_or_default());
    let claims = next(parts.next(), segments.next().unwrap_or_default());
    let signature = match parts.next() {
        Some(bytes) if !bytes.is_empty() => URL_SAFE_NO_PAD.encode(bytes),
        _ => segments.next().unwrap_or_default().to_owned(),
    };
    let token = format!("{header}.{claims}.{signature}");
    if let (_, Decision::Allow(_)) = world.bearer(route, &token) {
        assert_unforged(&token, original);
    }
}

/// Mode 4: fuzzed header and claims, signed with the real key.
fn resigned_token(world: &World, rest: &[u8]) {
    let (route, payload) = split_route(rest);
    let original = real_token(world, route);
    let decoded = |i: usize| {
        let segment = original.split('.').nth(i).unwrap_or_default();
        URL_SAFE_NO_PAD.decode(segment).unwrap_or_default()
    };
    let (header, claims) = match payload.iter().position(|b| *b == b'\n') {
        Some(at) => (&payload[..at], &payload[at + 1..]),
        None => (&[][..], payload),
    };
    let header = if header.is_empty() { decoded(0) } else { world.placeholders(&text(header)).into_bytes() };
    let claims = if claims.is_empty() { decoded(1) } else { world.placeholders(&text(claims)).into_bytes() };
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(&header), URL_SAFE_NO_PAD.encode(&claims));
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &world.signer, Algorithm::ES256).expect("signs");
    let token = format!("{signing_input}.{signature}");
    let (verified, _) = world.bearer(route, &token);
    if let Ok(claims) = verified {
        // What the verifier accepted, checked from the outside.
        let header: serde_json::Map<String, Value> =
            serde_json::from_slice(&header).expect("accepted header is JSON");
        assert!(header.keys().all(|k| matches!(k.as_str(), "alg" | "typ" | "kid")), "header {header:?}");
        assert_eq!(header.get("alg").and_then(Value::as_str), Some("ES256"));
        let typ = header.get("typ").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
        assert!(typ == TOKEN_TYPE || typ == "application/at+jwt", "typ {typ}");
        assert_eq!(header.get("kid").and_then(Value::as_str), Some(world.kid.as_str()));
        assert_eq!(claims.iss, world.issuer);
        assert_eq!(claims.aud, world.audience);
        assert!(claims.exp > NOW - LEEWAY_SECS, "expired token accepted: {claims:?}");
        assert!(
            claims.nbf <= NOW + LEEWAY_SECS && claims.iat <= NOW + LEEWAY_SECS,
            "future token: {claims:?}"
        );
    }
}

/// Mode 5: bytes cut and inserted anywhere in a real token.
fn spliced_token(world: &World, rest: &[u8]) {
    let (route, payload) = split_route(rest);
    let original = real_token(world, route);
    let (edit, insert) = payload.split_at(payload.len().min(3));
    let at = match edit {
        [hi, lo, ..] => usize::from(*hi) << 8 | usize::from(*lo),
        [lo] => usize::from(*lo),
        [] => 0,
    } % (original.len() + 1);
    let cut = usize::from(edit.get(2).copied().unwrap_or(0)).min(original.len() - at);
    // The token is ASCII: every offset is a character boundary.
    let token = format!("{}{}{}", &original[..at], text(insert), &original[at + cut..]);
    if let (_, Decision::Allow(_)) = world.bearer(route, &token) {
        assert_unforged(&token, original);
    }
}

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 6 {
        0 => raw_token(world, rest),
        1 => api_key(world, rest),
        2 => event(world, rest),
        3 => edited_token(world, rest),
        4 => resigned_token(world, rest),
        _ => spliced_token(world, rest),
    }
});
