//! MFA end to end on MariaDB (as the mfa user) and moto's DynamoDB, with codes
//! computed by `oathtool`, an independent TOTP implementation.

use crate::app::{spawn_app_with, Backend};
use crate::helpers::{parts, request, request_as, TestDb, GOOD_PASSWORD};
use base64::Engine;
use mysql_async::prelude::Queryable;
use portcullis_shared::clock::{Clock, ManualClock};
use std::sync::Arc;

struct Mfa {
    db: TestDb,
    login: portcullis_login::Deps,
    mfa: portcullis_mfa::Deps,
    /// What the mfa function's database user reads.
    mfa_store: Arc<dyn portcullis_shared::store::MfaStore>,
    clock: ManualClock,
}

async fn setup() -> Mfa {
    setup_with(&[]).await
}

async fn setup_with(extra: &[(&str, String)]) -> Mfa {
    let app = spawn_app_with(Backend::Mysql, extra).await;
    let mfa_store = app.backends_of("mfa").mfa.clone();
    let crate::app::TestApp { db, login, mfa, clock, .. } = app;
    Mfa { db: db.expect("a database"), login, mfa, mfa_store, clock }
}

fn oathtool(secret: &str, at: i64) -> String {
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", "--now", &format!("@{at}"), secret])
        .output()
        .expect("oathtool is installed by scripts/test.sh");
    assert!(out.status.success(), "oathtool failed");
    String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON body")
}

impl Mfa {
    async fn register(&self, email: &str) -> String {
        let body = serde_json::json!({"email": email, "password": GOOD_PASSWORD}).to_string();
        let (status, text, _) = parts(
            portcullis_login::handle(&self.login, request("POST", "/auth/register", Some(&body), None)).await,
        );
        assert_eq!(status, 201, "{text}");
        json(&text)["user_id"].as_str().expect("id").to_owned()
    }

    async fn login(&self, email: &str) -> serde_json::Value {
        let body = serde_json::json!({"email": email, "password": GOOD_PASSWORD}).to_string();
        let (status, text, _) = parts(
            portcullis_login::handle(&self.login, request("POST", "/auth/login", Some(&body), None)).await,
        );
        assert_eq!(status, 200, "{text}");
        json(&text)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
        caller: Option<(&str, &str)>,
    ) -> (u16, serde_json::Value) {
        let text = body.to_string();
        let (status, out, _) =
            parts(portcullis_mfa::handle(&self.mfa, request_as(method, path, Some(&text), caller)).await);
        (status, if out.is_empty() { serde_json::Value::Null } else { json(&out) })
    }

    /// Enrols and confirms TOTP; returns (base32 secret, recovery codes).
    async fn enrol(&self, user: &str) -> (String, Vec<String>) {
        let me = Some((user, "enrolment-session"));
        let (status, enrolment) = self.call("POST", "/auth/mfa/totp/enroll", serde_json::json!({}), me).await;
        assert_eq!(status, 200, "{enrolment}");
        let secret = enrolment["secret"].as_str().expect("secret").to_owned();
        assert!(enrolment["otpauth_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("otpauth://totp/Portcullis:")));
        assert!(enrolment["qr_svg"].as_str().is_some_and(|s| s.contains("<svg")));
        let code = oathtool(&secret, self.clock.now_secs());
        let (status, confirmed) =
            self.call("POST", "/auth/mfa/totp/confirm", serde_json::json!({"code": code}), me).await;
        assert_eq!(status, 200, "{confirmed}");
        let codes: Vec<String> = confirmed["recovery_codes"]
            .as_array()
            .expect("codes")
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        assert_eq!(codes.len(), 10);
        (secret, codes)
    }

    async fn mfa_token(&self, email: &str) -> String {
        let answer = self.login(email).await;
        assert_eq!(answer["mfa_required"], true, "{answer}");
        assert_eq!(answer["methods"], serde_json::json!(["totp", "recovery_code"]));
        assert!(answer.get("access_token").is_none(), "tokens before the second factor: {answer}");
        answer["mfa_token"].as_str().expect("mfa_token").to_owned()
    }

    async fn verify(&self, token: &str, code: &str) -> (u16, serde_json::Value) {
        self.call("POST", "/auth/mfa/verify", serde_json::json!({"mfa_token": token, "code": code}), None)
            .await
    }
}

fn amr(tokens: &serde_json::Value) -> Vec<String> {
    let access = tokens["access_token"].as_str().expect("access token");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(access.split('.').nth(1).expect("payload"))
        .expect("b64");
    let claims: serde_json::Value = serde_json::from_slice(&payload).expect("claims");
    claims["amr"].as_array().expect("amr").iter().filter_map(|a| a.as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn enrol_confirm_then_login_needs_an_oathtool_code_and_yields_otp_tokens() {
    let m = setup().await;
    let user = m.register("totp@example.com").await;
    let (secret, _) = m.enrol(&user).await;
    let token = m.mfa_token("totp@example.com").await;
    // The confirmation used this step; the next code comes 30 s later.
    m.clock.advance(30);
    let (status, tokens) = m.verify(&token, &oathtool(&secret, m.clock.now_secs())).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(amr(&tokens), ["pwd", "otp"]);
    assert!(tokens["refresh_token"].as_str().is_some_and(|t| t.starts_with("pcr_")));
    // The mfa_token is single use.
    m.clock.advance(30);
    let (status, _) = m.verify(&token, &oathtool(&secret, m.clock.now_secs())).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_same_code_twice_is_refused_even_inside_its_window() {
    let m = setup().await;
    let user = m.register("replay@example.com").await;
    let (secret, _) = m.enrol(&user).await;
    m.clock.advance(30);
    let code = oathtool(&secret, m.clock.now_secs());
    let first = m.mfa_token("replay@example.com").await;
    assert_eq!(m.verify(&first, &code).await.0, 200);
    let second = m.mfa_token("replay@example.com").await;
    m.clock.advance(5);
    assert_eq!(m.verify(&second, &code).await.0, 401, "a replayed code was accepted");
    // So is the previous step's code, still inside the ±1 window.
    let previous = oathtool(&secret, m.clock.now_secs() - 35);
    assert_eq!(m.verify(&second, &previous).await.0, 401);
    let mut owner = m.db.owner_conn().await;
    let replays: Vec<u64> =
        owner.query("SELECT COUNT(*) FROM audit_log WHERE event_type = 'mfa_replay'").await.expect("count");
    assert!(replays[0] >= 1);
}

/// The password step and the second factor count on one account counter, reset
/// only when the last factor succeeds: after the (correct) password, four wrong
/// codes and the next attempt is refused, the password step with it.
#[tokio::test]
async fn wrong_codes_after_the_password_lock_the_account() {
    let m = setup().await;
    let user = m.register("burn@example.com").await;
    let (secret, _) = m.enrol(&user).await;
    m.clock.advance(30);
    let token = m.mfa_token("burn@example.com").await;
    let right = oathtool(&secret, m.clock.now_secs());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        assert_eq!(m.verify(&token, wrong).await.0, 401);
    }
    let (status, _) = m.verify(&token, &right).await;
    assert_eq!(status, 429, "the sixth attempt on the account, the right code, was not throttled");
    let body = serde_json::json!({"email": "burn@example.com", "password": GOOD_PASSWORD}).to_string();
    let (status, _, headers) =
        parts(portcullis_login::handle(&m.login, request("POST", "/auth/login", Some(&body), None)).await);
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
    // Once the lock lifts, a fresh login gets a fresh token and a current code works.
    m.clock.advance(61);
    let fresh = m.mfa_token("burn@example.com").await;
    assert_eq!(m.verify(&fresh, &oathtool(&secret, m.clock.now_secs())).await.0, 200);
}

/// The `mfa_token` burns at its fifth wrong code (docs/security/README.md), whatever the account's
/// limit: here the account locks only after 20 attempts, so every refusal
/// below is the token's. Four wrong codes leave a token alive (the right code
/// then works); after the fifth, the right code is refused for that token, and
/// a fresh token from a new login still works.
#[tokio::test]
async fn the_fifth_wrong_code_burns_the_mfa_token_and_only_that_token() {
    let m = setup_with(&[("PORTCULLIS_LOCKOUT_MAX_FAILURES", "20".into())]).await;
    let user = m.register("burn-only@example.com").await;
    let (secret, _) = m.enrol(&user).await;
    m.clock.advance(30);
    let right = oathtool(&secret, m.clock.now_secs());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let survivor = m.mfa_token("burn-only@example.com").await;
    for attempt in 1..=4 {
        assert_eq!(m.verify(&survivor, wrong).await.0, 401, "wrong code {attempt}");
    }
    let (status, body) = m.verify(&survivor, &right).await;
    assert_eq!(status, 200, "four wrong codes burned the mfa_token: {body}");

    m.clock.advance(30);
    let right = oathtool(&secret, m.clock.now_secs());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let burned = m.mfa_token("burn-only@example.com").await;
    for attempt in 1..=5 {
        assert_eq!(m.verify(&burned, wrong).await.0, 401, "wrong code {attempt}");
    }
    let (status, body) = m.verify(&burned, &right).await;
    assert_eq!(status, 401, "the right code worked on an mfa_token after five wrong ones: {body}");
    assert_eq!(body["type"], "urn:portcullis:problem:invalid-mfa", "{body}");
    let mut owner = m.db.owner_conn().await;
    let reasons: Vec<Option<String>> = owner
        .query("SELECT reason FROM audit_log WHERE event_type = 'mfa_verify_failure' ORDER BY id")
        .await
        .expect("audit");
    let burns = reasons.iter().filter(|r| r.as_deref() == Some("mfa_token_burned")).count();
    assert_eq!(burns, 1, "{reasons:?}");
    assert_eq!(reasons.last().cloned().flatten().as_deref(), Some("dead_mfa_token"), "{reasons:?}");
    // The burn is the token's, not the account's: a new login's token takes the same code.
    let fresh = m.mfa_token("burn-only@example.com").await;
    let (status, body) = m.verify(&fresh, &right).await;
    assert_eq!(status, 200, "a fresh mfa_token was refused after another one burned: {body}");
}

/// The account lock, set here to 8 attempts (apart from the token's 5): the
/// password step and every code count, the eighth attempt is still answered
/// (401), and the ninth is refused with 429 and `Retry-After` (the base lock),
/// even with the right code on a live token; once the lock lifts that token works.
#[tokio::test]
async fn the_account_locks_at_its_own_limit_apart_from_the_token_burn() {
    let m = setup_with(&[("PORTCULLIS_LOCKOUT_MAX_FAILURES", "8".into())]).await;
    let user = m.register("lock-apart@example.com").await;
    let (secret, _) = m.enrol(&user).await;
    m.clock.advance(30);
    let right = oathtool(&secret, m.clock.now_secs());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let first = m.mfa_token("lock-apart@example.com").await; // attempt 1
    for attempt in 2..=6 {
        assert_eq!(m.verify(&first, wrong).await.0, 401, "attempt {attempt}");
    }
    let second = m.mfa_token("lock-apart@example.com").await; // attempt 7
    let (status, body) = m.verify(&second, wrong).await; // attempt 8
    assert_eq!(status, 401, "the eighth attempt was refused before the limit: {body}");
    let text = serde_json::json!({"mfa_token": second, "code": right}).to_string();
    let (status, body, headers) =
        parts(portcullis_mfa::handle(&m.mfa, request("POST", "/auth/mfa/verify", Some(&text), None)).await);
    assert_eq!(status, 429, "the ninth attempt, the right code, was not throttled: {body}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("60"));
    let creds = serde_json::json!({"email": "lock-apart@example.com", "password": GOOD_PASSWORD}).to_string();
    let (status, _, _) =
        parts(portcullis_login::handle(&m.login, request("POST", "/auth/login", Some(&creds), None)).await);
    assert_eq!(status, 429, "the lock is the account's");
    // The refused attempt spent neither the token nor the code's step.
    m.clock.advance(61);
    let (status, body) = m.verify(&second, &oathtool(&secret, m.clock.now_secs())).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_recovery_code_works_once() {
    let m = setup().await;
    let user = m.register("recover@example.com").await;
    let (_, codes) = m.enrol(&user).await;
    let token = m.mfa_token("recover@example.com").await;
    let (status, tokens) = m
        .call(
            "POST",
            "/auth/mfa/recovery",
            serde_json::json!({"mfa_token": token, "recovery_code": codes[0]}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(amr(&tokens), ["pwd", "mfa"]);
    let token = m.mfa_token("recover@example.com").await;
    let sloppy = codes[0].to_uppercase();
    let (status, _) = m
        .call(
            "POST",
            "/auth/mfa/recovery",
            serde_json::json!({"mfa_token": token, "recovery_code": sloppy}),
            None,
        )
        .await;
    assert_eq!(status, 401, "a recovery code worked twice");
    let (status, _) = m
        .call(
            "POST",
            "/auth/mfa/recovery",
            serde_json::json!({"mfa_token": token, "recovery_code": codes[1]}),
            None,
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_expired_mfa_token_is_refused() {
    let m = setup().await;
    let user = m.register("late@example.com").await;
    let (secret, _) = m.enrol(&user).await;
    let token = m.mfa_token("late@example.com").await;
    m.clock.advance(portcullis_shared::mfa::CHALLENGE_TTL_SECS + 1);
    assert_eq!(m.verify(&token, &oathtool(&secret, m.clock.now_secs())).await.0, 401);
}

#[tokio::test]
async fn a_secret_copied_onto_another_user_does_not_decrypt() {
    let m = setup().await;
    let alice = m.register("alice.mfa@example.com").await;
    let bob = m.register("bob.mfa@example.com").await;
    let (alice_secret, _) = m.enrol(&alice).await;
    m.enrol(&bob).await;
    let mut owner = m.db.owner_conn().await;
    owner
        .exec_drop(
            "UPDATE users u JOIN users a ON a.id = ? SET u.totp_secret_ciphertext = a.totp_secret_ciphertext, u.totp_last_step = NULL WHERE u.id = ?",
            (uuid::Uuid::parse_str(&alice).expect("id").as_bytes().to_vec(), uuid::Uuid::parse_str(&bob).expect("id").as_bytes().to_vec()),
        )
        .await
        .expect("copy ciphertext");
    m.clock.advance(30);
    let token = m.mfa_token("bob.mfa@example.com").await;
    let (status, body) = m.verify(&token, &oathtool(&alice_secret, m.clock.now_secs())).await;
    assert_eq!(status, 401, "alice's secret worked for bob: {body}");
}

#[tokio::test]
async fn disabling_totp_needs_a_current_code_and_ends_other_sessions() {
    let m = setup().await;
    let user = m.register("off@example.com").await;
    let (secret, _) = m.enrol(&user).await;
    m.clock.advance(30);
    let token = m.mfa_token("off@example.com").await;
    let (_, other) = m.verify(&token, &oathtool(&secret, m.clock.now_secs())).await;
    m.clock.advance(30);
    let me = Some((user.as_str(), "this-session"));
    let (status, _) = m.call("DELETE", "/auth/mfa/totp", serde_json::json!({"code": "000000"}), me).await;
    assert_eq!(status, 401);
    let (status, _) = m
        .call(
            "DELETE",
            "/auth/mfa/totp",
            serde_json::json!({"code": oathtool(&secret, m.clock.now_secs())}),
            me,
        )
        .await;
    assert_eq!(status, 204);
    let answer = m.login("off@example.com").await;
    assert!(answer.get("access_token").is_some(), "MFA still required after disabling: {answer}");
    // The session the second factor created is revoked.
    let sessions = m.login.sessions.list(&user).await.expect("sessions");
    let sid = {
        let access = other["access_token"].as_str().expect("token");
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(access.split('.').nth(1).expect("p"))
            .expect("b64");
        serde_json::from_slice::<serde_json::Value>(&payload).expect("claims")["sid"]
            .as_str()
            .expect("sid")
            .to_owned()
    };
    assert!(sessions.iter().any(|s| s.sid == sid && s.revoked_at.is_some()));
}

/// A stolen access token alone cannot guess the code that turns TOTP off: each
/// wrong code counts once with the account's second-factor attempts (limit set
/// to 3 here, apart from the default and the token burn), so the fourth attempt
/// is refused with 429 and `Retry-After`, even for the right code; the password
/// step is locked too.
#[tokio::test]
async fn wrong_codes_to_disable_totp_lock_the_account() {
    let m = setup_with(&[("PORTCULLIS_LOCKOUT_MAX_FAILURES", "3".into())]).await;
    let user = m.register("guess-off@example.com").await;
    let (secret, _) = m.enrol(&user).await;
    m.clock.advance(30);
    let me = Some((user.as_str(), "stolen-token-session"));
    let right = oathtool(&secret, m.clock.now_secs());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    for attempt in 1..=3 {
        let (status, body) = m.call("DELETE", "/auth/mfa/totp", serde_json::json!({"code": wrong}), me).await;
        assert_eq!(status, 401, "attempt {attempt}: {body}");
    }
    let text = serde_json::json!({"code": right}).to_string();
    let (status, _, headers) =
        parts(portcullis_mfa::handle(&m.mfa, request_as("DELETE", "/auth/mfa/totp", Some(&text), me)).await);
    assert_eq!(status, 429, "the fourth attempt was not throttled: the wrong codes were not counted");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("60"));
    let body = serde_json::json!({"email": "guess-off@example.com", "password": GOOD_PASSWORD}).to_string();
    let (status, _, _) =
        parts(portcullis_login::handle(&m.login, request("POST", "/auth/login", Some(&body), None)).await);
    assert_eq!(status, 429, "the lock is the account's, not the route's");
    let mut owner = m.db.owner_conn().await;
    let throttled: Vec<Option<String>> = owner
        .query("SELECT reason FROM audit_log WHERE event_type = 'login_throttled' ORDER BY id")
        .await
        .expect("audit");
    assert!(throttled.first().is_some_and(|d| d.as_deref() == Some("second_factor")), "{throttled:?}");
    // TOTP is still on: the right code came too late.
    let state = m.mfa_store.mfa_state(portcullis_shared::domain::UserId::parse(&user).expect("id")).await;
    assert!(state.expect("state").expect("user").mfa_enabled);
}

/// A correct password does not reset the second-factor lockout: logging in
/// again between wrong codes leaves them counted, so the account locks.
#[tokio::test]
async fn a_correct_password_does_not_reset_the_second_factor_lockout() {
    let m = setup().await;
    let user = m.register("relogin@example.com").await;
    let (secret, _) = m.enrol(&user).await;
    m.clock.advance(30);
    let right = oathtool(&secret, m.clock.now_secs());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let body = serde_json::json!({"email": "relogin@example.com", "password": GOOD_PASSWORD}).to_string();
    let mut statuses = Vec::new();
    'rounds: for _ in 0..4 {
        let (status, text, _) = parts(
            portcullis_login::handle(&m.login, request("POST", "/auth/login", Some(&body), None)).await,
        );
        statuses.push(status);
        if status != 200 {
            break;
        }
        let token = json(&text)["mfa_token"].as_str().expect("mfa_token").to_owned();
        for _ in 0..4 {
            let (status, _) = m.verify(&token, wrong).await;
            statuses.push(status);
            if status != 401 {
                break 'rounds;
            }
        }
    }
    // One login, four wrong codes, then the second login is the sixth attempt.
    assert_eq!(statuses, [200, 401, 401, 401, 401, 429], "the correct password reset the count");
    let _ = user;
}

/// A right current password at `POST /auth/password` (here with a new password
/// the policy refuses, so nothing changes) does not wipe the count the second
/// factor shares: guessing the disable code stays limited.
#[tokio::test]
async fn a_right_current_password_does_not_reset_the_second_factor_count() {
    let m = setup().await;
    let user = m.register("reset-loop@example.com").await;
    let (secret, _) = m.enrol(&user).await;
    m.clock.advance(30);
    let me = Some((user.as_str(), "stolen-token-session"));
    let right = oathtool(&secret, m.clock.now_secs());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        let (status, _) = m.call("DELETE", "/auth/mfa/totp", serde_json::json!({"code": wrong}), me).await;
        assert_eq!(status, 401);
    }
    let change = serde_json::json!({"current_password": GOOD_PASSWORD, "new_password": "short"}).to_string();
    let (status, _, _) = parts(
        portcullis_login::handle(&m.login, request("POST", "/auth/password", Some(&change), Some(&user)))
            .await,
    );
    assert_eq!(status, 422);
    let (status, _) = m.call("DELETE", "/auth/mfa/totp", serde_json::json!({"code": wrong}), me).await;
    assert_eq!(status, 429, "the right current password reset the count");
}

/// Every successful login with a second factor gives its source IP's slots
/// back: a busy office behind one address is not throttled by its own logins.
#[tokio::test]
async fn successful_mfa_logins_give_their_source_ip_slots_back() {
    let m = setup_with(&[("PORTCULLIS_IP_MAX_FAILURES", "3".into())]).await;
    let user = m.register("office@example.com").await;
    let (secret, _) = m.enrol(&user).await;
    for round in 1..=5 {
        m.clock.advance(30);
        let token = m.mfa_token("office@example.com").await;
        let (status, body) = m.verify(&token, &oathtool(&secret, m.clock.now_secs())).await;
        assert_eq!(status, 200, "round {round}: {body}");
    }
}

/// A right code for a new authenticator is not a login's last factor: it does
/// not wipe the password guesses counted on the account. A thief with a
/// recent access token who locked the account by guessing cannot unlock it by
/// enrolling an authenticator of their own.
#[tokio::test]
async fn confirming_an_enrolment_does_not_reset_the_account_count() {
    let m = setup().await;
    let email = "confirm-reset@example.com";
    let user = m.register(email).await;
    let wrong = serde_json::json!({"email": email, "password": "not-the-password-at-all"}).to_string();
    let attempt = || async {
        let req = request("POST", "/auth/login", Some(&wrong), None);
        parts(portcullis_login::handle(&m.login, req).await).0
    };
    for _ in 0..4 {
        assert_eq!(attempt().await, 401);
    }
    // Counted apart from the logins, and right.
    m.enrol(&user).await;
    assert_eq!(attempt().await, 401, "the fifth failure");
    assert_eq!(attempt().await, 429, "the enrolment reset the account's count");
}
