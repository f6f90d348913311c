//! Key compromise (`portcullis keys revoke`) on MariaDB and moto: each function
//! runs as its own least-privilege database user, warm (its keys loaded before
//! the revocation), and time moves on a manual clock instead of sleeping.

use crate::helpers::{binary, new_table, parts, request, TestDb};
use crate::helpers::{config, key_file, GOOD_PASSWORD};
use mysql_async::prelude::Queryable;
use portcullis_authorizer::Decision;
use portcullis_shared::clock::{Clock, ManualClock};
use portcullis_shared::config::Config;
use portcullis_shared::runtime::{key_provider, Backends, Boot};
use std::sync::Arc;

/// The bound docs/security/keys.md states: warm verifiers and signers re-read
/// the key table when what they hold is older than this.
const BOUND_SECS: i64 = 60;
/// Past it, a verifier that could not re-read the table refuses (the hard bound).
const TRUST_SECS: i64 = 300;

/// One test's database, session table, master key file and clock.
struct Env {
    db: TestDb,
    table: String,
    key_file: String,
    clock: ManualClock,
}

/// The warm functions of one deployment.
struct Harness {
    env: Env,
    login: portcullis_login::Deps,
    refresh: portcullis_refresh::Deps,
    authorizer: portcullis_authorizer::Deps,
}

impl Env {
    /// The configuration of one function, as its own database user (or the schema owner).
    fn config(&self, user: &str) -> Config {
        let url = if user == "owner" { self.db.owner_url() } else { self.db.user_url(user) };
        config(&[
            ("PORTCULLIS_STORE", "mysql".into()),
            ("PORTCULLIS_DATABASE_URL", url),
            ("PORTCULLIS_SESSION_STORE", "dynamodb".into()),
            ("PORTCULLIS_DYNAMODB_TABLE", self.table.clone()),
            ("PORTCULLIS_LOCAL_KEY_FILE", self.key_file.clone()),
        ])
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }

    async fn login_deps(&self) -> portcullis_login::Deps {
        let cfg = self.config("login");
        let backends = Backends::open(&cfg).await.expect("backends");
        let provider = key_provider(&cfg).expect("keys");
        portcullis_login::Deps::build(&Boot::new(&cfg, &backends, provider, self.clock()))
            .await
            .expect("login")
    }

    async fn refresh_deps(&self) -> portcullis_refresh::Deps {
        let cfg = self.config("refresh");
        let backends = Backends::open(&cfg).await.expect("backends");
        let provider = key_provider(&cfg).expect("keys");
        portcullis_refresh::Deps::build(&Boot::new(&cfg, &backends, provider, self.clock()))
            .await
            .expect("refresh")
    }

    async fn authorizer_deps(&self) -> portcullis_authorizer::Deps {
        let cfg = self.config("authorizer");
        let backends = Backends::open(&cfg).await.expect("backends");
        portcullis_authorizer::Deps::build(&cfg, &backends, self.clock()).await.expect("authorizer")
    }
}

impl Harness {
    async fn new() -> Self {
        let env = Env {
            db: TestDb::create().await,
            table: new_table().await,
            key_file: key_file(),
            clock: ManualClock::new(1_900_000_000),
        };
        let (login, refresh, authorizer) =
            (env.login_deps().await, env.refresh_deps().await, env.authorizer_deps().await);
        Self { env, login, refresh, authorizer }
    }

    fn advance(&self, secs: i64) {
        self.env.clock.advance(secs);
    }

    /// What `portcullis keys revoke` does, as the schema owner.
    async fn revoke(&self, kid: &str, rotate: bool) -> Option<String> {
        let cfg = self.env.config("owner");
        let backends = Backends::open(&cfg).await.expect("backends");
        let provider = key_provider(&cfg).expect("keys");
        let now = self.env.clock.now_secs();
        portcullis_shared::crypto::revoke_signing_key(
            backends.keys.as_ref(),
            provider.as_ref(),
            kid,
            rotate,
            now,
        )
        .await
        .expect("revoke")
        .rotated_to
    }

    async fn rotate(&self) -> String {
        let cfg = self.env.config("owner");
        let backends = Backends::open(&cfg).await.expect("backends");
        let provider = key_provider(&cfg).expect("keys");
        let now = self.env.clock.now_secs();
        portcullis_shared::crypto::rotate_signing_key(backends.keys.as_ref(), provider.as_ref(), now)
            .await
            .expect("rotate")
    }

    async fn register(&self, email: &str) {
        let (status, body, _) = parts(
            portcullis_login::handle(
                &self.login,
                request("POST", "/auth/register", Some(&creds(email)), None),
            )
            .await,
        );
        assert_eq!(status, 201, "{body}");
    }

    /// `(access token, refresh token)` from the warm login function.
    async fn login(&self, email: &str) -> (String, String) {
        let (status, body, _) = parts(
            portcullis_login::handle(&self.login, request("POST", "/auth/login", Some(&creds(email)), None))
                .await,
        );
        assert_eq!(status, 200, "{body}");
        tokens(&body)
    }

    async fn refresh(&self, refresh_token: &str) -> (String, String) {
        let body = serde_json::json!({ "refresh_token": refresh_token }).to_string();
        let (status, text, _) = parts(
            portcullis_refresh::handle(
                &self.refresh,
                request("POST", "/auth/token/refresh", Some(&body), None),
            )
            .await,
        );
        assert_eq!(status, 200, "{text}");
        tokens(&text)
    }

    async fn allowed(&self, access: &str) -> bool {
        let decision = crate::helpers::authorize_me(&self.authorizer, &format!("Bearer {access}")).await;
        matches!(decision, Decision::Allow(_))
    }

    /// The kids the warm login function publishes.
    async fn jwks_kids(&self) -> Vec<String> {
        let (status, body, _) = parts(
            portcullis_login::handle(&self.login, request("GET", "/.well-known/jwks.json", None, None)).await,
        );
        assert_eq!(status, 200, "{body}");
        let jwks: serde_json::Value = serde_json::from_str(&body).expect("json");
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_owned())
            .collect()
    }
}

fn creds(email: &str) -> String {
    serde_json::json!({"email": email, "password": GOOD_PASSWORD}).to_string()
}

fn tokens(body: &str) -> (String, String) {
    let t: serde_json::Value = serde_json::from_str(body).expect("json");
    (
        t["access_token"].as_str().expect("access").to_owned(),
        t["refresh_token"].as_str().expect("refresh").to_owned(),
    )
}

/// The `kid` in a JWT's header.
fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).expect("base64url");
    let header: serde_json::Value = serde_json::from_slice(&bytes).expect("header json");
    header["kid"].as_str().expect("kid").to_owned()
}

#[tokio::test]
async fn a_warm_authorizer_refuses_a_revoked_key_within_the_bound() {
    let h = Harness::new().await;
    h.register("revoked@example.com").await;
    let (before, _) = h.login("revoked@example.com").await;
    let old = kid_of(&before);
    assert!(h.allowed(&before).await, "the warm authorizer has loaded the key");

    let new = h.revoke(&old, true).await.expect("the current key is rotated first");
    assert_ne!(new, old);
    h.advance(BOUND_SECS + 1);
    assert!(!h.allowed(&before).await, "a warm authorizer still accepts the revoked key past the bound");
    let cold = h.env.authorizer_deps().await;
    let decision = crate::helpers::authorize_me(&cold, &format!("Bearer {before}")).await;
    assert_eq!(decision, Decision::Unauthorized, "an authorizer started afterwards accepts the revoked key");

    // Tokens of the new key pass, on the warm instance and a new one.
    let fresh = h.env.login_deps().await;
    let (status, body, _) = parts(
        portcullis_login::handle(
            &fresh,
            request("POST", "/auth/login", Some(&creds("revoked@example.com")), None),
        )
        .await,
    );
    assert_eq!(status, 200, "{body}");
    let (after, _) = tokens(&body);
    assert_eq!(kid_of(&after), new);
    assert!(h.allowed(&after).await);
    assert!(matches!(
        crate::helpers::authorize_me(&cold, &format!("Bearer {after}")).await,
        Decision::Allow(_)
    ));
}

#[tokio::test]
async fn a_revoked_key_leaves_the_jwks_of_a_warm_login_function() {
    let h = Harness::new().await;
    h.register("jwks@example.com").await;
    let (token, _) = h.login("jwks@example.com").await;
    let old = kid_of(&token);
    assert_eq!(h.jwks_kids().await, std::slice::from_ref(&old));

    let new = h.revoke(&old, true).await.expect("rotated");
    h.advance(BOUND_SECS + 1);
    assert_eq!(h.jwks_kids().await, std::slice::from_ref(&new), "the warm JWKS still lists the revoked key");
    let fresh = h.env.login_deps().await;
    let (_, body, _) =
        parts(portcullis_login::handle(&fresh, request("GET", "/.well-known/jwks.json", None, None)).await);
    assert!(!body.contains(&old) && body.contains(&new), "{body}");
}

#[tokio::test]
async fn warm_signers_move_off_a_revoked_key_within_the_bound() {
    let h = Harness::new().await;
    h.register("signer@example.com").await;
    let (access, refresh) = h.login("signer@example.com").await;
    drop(access);
    // The refresh function is warm too.
    let (access, refresh) = h.refresh(&refresh).await;
    let old = kid_of(&access);
    assert!(h.allowed(&access).await, "login, refresh and authorizer are warm");

    let new = h.revoke(&old, true).await.expect("rotated");
    h.advance(BOUND_SECS + 1);
    let (from_login, _) = h.login("signer@example.com").await;
    assert_eq!(kid_of(&from_login), new, "the warm login function signs with the revoked key");
    let (from_refresh, _) = h.refresh(&refresh).await;
    assert_eq!(kid_of(&from_refresh), new, "the warm refresh function signs with the revoked key");
    assert!(h.allowed(&from_login).await && h.allowed(&from_refresh).await);
    assert!(!h.allowed(&access).await);
}

#[tokio::test]
async fn warm_signers_never_sign_with_a_retired_key() {
    let h = Harness::new().await;
    h.register("retired@example.com").await;
    let (access, refresh) = h.login("retired@example.com").await;
    let first = kid_of(&access);
    // Two rotations: the first key is no longer published.
    h.rotate().await;
    let current = h.rotate().await;
    h.advance(BOUND_SECS + 1);
    let (from_login, _) = h.login("retired@example.com").await;
    let (from_refresh, _) = h.refresh(&refresh).await;
    for token in [&from_login, &from_refresh] {
        assert_ne!(kid_of(token), first, "a warm signer still signs with a retired key");
        assert_eq!(kid_of(token), current);
        assert!(h.allowed(token).await, "the authorizer refuses what the warm signer issued");
    }
}

#[tokio::test]
async fn an_authorizer_that_cannot_reread_its_keys_refuses_our_tokens_past_the_hard_bound() {
    let h = Harness::new().await;
    h.register("outage@example.com").await;
    let (access, _) = h.login("outage@example.com").await;
    assert!(h.allowed(&access).await);
    // The key table becomes unreadable (as in a database outage; sessions live in DynamoDB).
    let mut owner = h.env.db.owner_conn().await;
    owner.query_drop("RENAME TABLE key_material TO key_material_away").await.expect("rename");
    h.advance(BOUND_SECS + 1);
    assert!(h.allowed(&access).await, "within the hard bound the loaded keys still serve");
    h.advance(TRUST_SECS - BOUND_SECS);
    assert!(
        !h.allowed(&access).await,
        "past the hard bound keys that could not be re-read are still trusted"
    );
    owner.query_drop("RENAME TABLE key_material_away TO key_material").await.expect("rename back");
    assert!(h.allowed(&access).await, "a successful read restores service");
}

/// Runs the CLI binary with the harness's configuration as the schema owner.
async fn cli(h: &Harness, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(binary("portcullis"))
        .args(args)
        .env_clear()
        .env("PORTCULLIS_STORE", "mysql")
        .env("PORTCULLIS_DATABASE_URL", h.env.db.owner_url())
        .env("PORTCULLIS_LOCAL_KEY_FILE", &h.env.key_file)
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .await
        .expect("run portcullis");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn the_cli_revokes_a_key_end_to_end_and_refuses_the_current_key_without_rotate() {
    let h = Harness::new().await;
    h.register("cli@example.com").await;
    let (access, _) = h.login("cli@example.com").await;
    let old = kid_of(&access);
    assert!(h.allowed(&access).await);

    let (ok, _, err) = cli(&h, &["keys", "revoke", &old]).await;
    assert!(!ok && err.contains("--rotate"), "the current key is revoked without --rotate: {err}");
    let (ok, _, err) = cli(&h, &["keys", "revoke", "0123456789abcdef0123456789abcdef"]).await;
    assert!(!ok && err.contains("no token-signing key"), "{err}");
    assert!(h.allowed(&access).await, "a refused revocation changed nothing");

    let (ok, out, err) = cli(&h, &["keys", "revoke", &old, "--rotate"]).await;
    assert!(ok, "{err}");
    let new = out
        .lines()
        .find_map(|l| l.strip_prefix("new signing key: "))
        .unwrap_or_else(|| panic!("no new key in {out}"))
        .to_owned();
    assert!(out.contains(&format!("revoked signing key: {old}")), "{out}");

    let (ok, out, err) = cli(&h, &["keys", "list"]).await;
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).expect("json list");
    assert_eq!(list[0]["kid"], new.as_str());
    assert_eq!(list[0]["state"], "current");
    assert_eq!(list[1]["kid"], old.as_str());
    assert_eq!(list[1]["state"], "revoked");
    assert!(list[1]["revoked_at"].is_i64(), "{list}");

    h.advance(BOUND_SECS + 1);
    assert!(!h.allowed(&access).await, "the warm authorizer accepts the key the CLI revoked");
    let (from_login, _) = h.login("cli@example.com").await;
    assert_eq!(kid_of(&from_login), new);

    let (ok, out, err) = cli(&h, &["keys", "revoke", &old]).await;
    assert!(ok && out.contains("already revoked"), "revoking twice: {out} {err}");
}

#[test]
fn the_bounds_these_tests_use_are_the_ones_the_code_applies_and_the_docs_state() {
    assert_eq!(BOUND_SECS, portcullis_shared::crypto::KEY_RECHECK_SECS);
    assert_eq!(TRUST_SECS, portcullis_shared::crypto::KEY_TRUST_SECS);
    let docs = include_str!("../../docs/security/keys.md");
    for secs in [BOUND_SECS, TRUST_SECS] {
        assert!(
            docs.contains(&format!("**{secs} seconds**")),
            "docs/security/keys.md does not state {secs} s"
        );
    }
}

/// The login function's database user may INSERT into `key_material` (it
/// creates the first key). A compromised login function that re-publishes a
/// revoked public key under a fresh kid as the newest generation does not bring
/// it back: a revoked point stays revoked under any kid.
#[tokio::test]
async fn a_revoked_key_published_again_under_another_kid_stays_revoked() {
    let h = Harness::new().await;
    h.register("leak@example.com").await;
    let (access, _) = h.login("leak@example.com").await;
    let leaked_kid = kid_of(&access);
    // The attacker holds the private key of the current kid.
    let owner_cfg = h.env.config("owner");
    let owner = Backends::open(&owner_cfg).await.expect("backends");
    let provider = key_provider(&owner_cfg).expect("keys");
    let leaked = portcullis_shared::crypto::load_signing_key(owner.keys.as_ref(), provider.as_ref(), 0)
        .await
        .expect("key");
    assert_eq!(leaked.kid, leaked_kid);

    // The operator revokes it; every warm authorizer drops it within the bound.
    h.revoke(&leaked_kid, true).await.expect("rotated");
    h.advance(BOUND_SECS + 1);
    assert!(!h.allowed(&access).await, "revoked");

    // The compromised login function, with its own database user, re-publishes the point.
    let mut login = h.env.db.user_conn("login").await;
    let point: Vec<u8> = login
        .exec_first("SELECT public_key FROM key_material WHERE kid = ?", (leaked_kid.as_str(),))
        .await
        .expect("select")
        .expect("row");
    let top: u32 = login
        .query_first("SELECT MAX(generation) FROM key_material WHERE purpose = 'token-signing'")
        .await
        .expect("select")
        .expect("max");
    login
        .exec_drop(
            "INSERT INTO key_material (purpose, generation, kid, public_key, wrapped_key, sealed, created_at) \
             VALUES ('token-signing', ?, 'evil', ?, x'00', x'00', NOW(6))",
            (top + 1, point.clone()),
        )
        .await
        .expect("the login user may insert a key");
    h.advance(BOUND_SECS + 1);

    let forger = portcullis_shared::tokens::TokenIssuer::new(
        &portcullis_shared::crypto::SigningKey {
            kid: "evil".into(),
            pkcs8: leaked.pkcs8.clone(),
            public: leaked.public.clone(),
        },
        owner_cfg.issuer.clone(),
        owner_cfg.audience.clone(),
        600,
        h.env.clock(),
    );
    let (sub, sid) = portcullis_shared::tokens::peek_session(&access).expect("claims");
    let grant = portcullis_shared::tokens::Grant {
        sub,
        sid,
        roles: vec!["user".into()],
        amr: vec!["pwd".into(), "otp".into()],
        auth_time: h.env.clock.now_secs(),
    };
    let (forged, _) = forger.issue(grant).expect("forged");
    assert!(
        !h.allowed(&forged).await,
        "a token signed by the revoked key verifies again once the login user re-published its point"
    );
}

/// A compromised login function inserts generation u32::MAX: rotation answers
/// with an error (it used to overflow: a panic, or a wrap to generation 0 that
/// left the attacker's row newest). Removing the row takes the schema owner.
#[tokio::test]
async fn a_top_generation_makes_rotation_fail_cleanly() {
    let h = Harness::new().await;
    h.register("top@example.com").await;
    let _ = h.login("top@example.com").await;
    let mut login = h.env.db.user_conn("login").await;
    login
        .query_drop(
            "INSERT INTO key_material (purpose, generation, kid, public_key, wrapped_key, sealed, created_at) \
             VALUES ('token-signing', 4294967295, 'top', x'04', x'00', x'00', NOW(6))",
        )
        .await
        .expect("the login user may insert a key");
    let cfg = h.env.config("owner");
    let rotation = tokio::spawn(async move {
        let backends = Backends::open(&cfg).await.expect("backends");
        let provider = key_provider(&cfg).expect("keys");
        portcullis_shared::crypto::rotate_signing_key(backends.keys.as_ref(), provider.as_ref(), 1)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert!(
        matches!(&rotation, Ok(Err(message)) if message.contains("generation")),
        "rotation after a top generation: {rotation:?}"
    );
}

/// A signer whose newest key is revoked (here by hand, without a successor)
/// answers 503 once it rechecks: a table read that says "revoked" is an answer,
/// not an outage, so the 300 s hard bound does not stretch it.
#[tokio::test]
async fn a_warm_signer_whose_newest_key_is_revoked_answers_503_after_the_recheck() {
    let h = Harness::new().await;
    h.register("hand@example.com").await;
    let (access, _) = h.login("hand@example.com").await;
    let kid = kid_of(&access);
    let mut owner = h.env.db.owner_conn().await;
    owner
        .exec_drop("UPDATE key_material SET revoked_at = NOW(6) WHERE kid = ?", (kid.as_str(),))
        .await
        .expect("revoke by hand");
    h.advance(BOUND_SECS + 1);
    let (status, body, _) = parts(
        portcullis_login::handle(
            &h.login,
            request("POST", "/auth/login", Some(&creds("hand@example.com")), None),
        )
        .await,
    );
    let jwks = h.jwks_kids().await;
    assert!(
        status == 503 && !jwks.contains(&kid),
        "61 s after revocation: login {status} {body}; JWKS {jwks:?} (revoked {kid})"
    );
}
