//! The mfa function's handlers on the memory backends, with codes computed
//! from the enrolled secret: enrolment behind step-up, confirmation, the
//! login's second step, replay, the burned challenge, recovery codes, removal.

use crate::{handle, Deps};
use portcullis_authorizer::Decision;
use portcullis_shared::audit::EventType;
use portcullis_shared::runtime::Boot;
use portcullis_test_support::{event, post, register, reply, request, sign_in, totp, Reply, World};

struct App {
    world: World,
    login: portcullis_login::Deps,
    deps: Deps,
}

/// A person with a confirmed TOTP factor.
struct Enrolled {
    email: String,
    secret: String,
    recovery_codes: Vec<String>,
}

async fn app() -> App {
    app_with(&[]).await
}

async fn app_with(extra: &[(&str, String)]) -> App {
    let world = World::with(extra).await;
    let login = world.login().await;
    let deps = Deps::build(&Boot::new(&world.config, &world.backends, world.provider.clone(), world.clock()))
        .await
        .expect("mfa deps");
    App { world, login, deps }
}

impl App {
    async fn call(&self, req: lambda_http::Request) -> Reply {
        reply(handle(&self.deps, req).await)
    }

    async fn as_bearer(&self, method: &str, path: &str, body: Option<&str>, token: &str) -> Reply {
        self.call(self.world.bearer(request(method, path, body), token).await).await
    }

    fn now(&self) -> i64 {
        portcullis_shared::clock::Clock::now_secs(&self.world.clock)
    }

    /// A registered person's fresh access token.
    async fn person(&self, email: &str) -> String {
        register(&self.login, email).await;
        sign_in(&self.login, email).await.text("access_token")
    }

    async fn enroll(&self, token: &str) -> Reply {
        self.as_bearer("POST", "/auth/mfa/totp/enroll", None, token).await
    }

    async fn confirm(&self, token: &str, code: &str) -> Reply {
        let body = serde_json::json!({ "code": code }).to_string();
        self.as_bearer("POST", "/auth/mfa/totp/confirm", Some(&body), token).await
    }

    /// Registers, enrols and confirms `email`; the clock then moves to the next
    /// TOTP step, so the confirmation's code is not the next one asked.
    async fn enrolled(&self, email: &str) -> Enrolled {
        let token = self.person(email).await;
        let secret = self.enroll(&token).await.text("secret");
        let confirmed = self.confirm(&token, &totp(&secret, self.now())).await;
        assert_eq!(confirmed.status, 200, "{}", confirmed.body);
        let recovery_codes = confirmed.json()["recovery_codes"]
            .as_array()
            .expect("recovery codes")
            .iter()
            .map(|c| c.as_str().expect("code").to_owned())
            .collect();
        self.world.clock.advance(30);
        Enrolled { email: email.to_owned(), secret, recovery_codes }
    }

    /// The password step of a login that needs the second factor: its `mfa_token`.
    async fn mfa_token(&self, email: &str) -> String {
        let step = sign_in(&self.login, email).await;
        assert_eq!(step.json()["mfa_required"], true, "{}", step.body);
        assert!(step.json().get("access_token").is_none(), "tokens before the second factor");
        step.text("mfa_token")
    }

    async fn verify(&self, mfa_token: &str, code: &str) -> Reply {
        self.call(post("/auth/mfa/verify", &serde_json::json!({ "mfa_token": mfa_token, "code": code })))
            .await
    }

    async fn recover(&self, mfa_token: &str, code: &str) -> Reply {
        let body = serde_json::json!({ "mfa_token": mfa_token, "recovery_code": code });
        self.call(post("/auth/mfa/recovery", &body)).await
    }

    /// The `amr` the authorizer reads from this access token.
    async fn amr(&self, access_token: &str) -> Vec<String> {
        match self.world.decide("GET", "/me", access_token).await {
            Decision::Allow(identity) => identity.amr,
            other => panic!("the authorizer refused the token: {other:?}"),
        }
    }
}

/// Any code but the right one at `at`.
fn wrong_code(secret: &str, at: i64) -> String {
    let right: u32 = totp(secret, at).parse().expect("digits");
    format!("{:06}", (right + 1) % 1_000_000)
}

/// Step-up: a stolen access token alone must not bind the account to the
/// thief's authenticator. One older than the window (300 s) enrols nothing.
#[tokio::test]
async fn enrolment_needs_a_recent_authentication() {
    let app = app().await;
    let token = app.person("stale@example.com").await;
    app.call(event(include_str!("../../../events/mfa/enroll-without-authorizer.json"))).await.problem(401);
    app.world.clock.advance(301);
    assert_eq!(app.enroll(&token).await.problem(401), "urn:portcullis:problem:reauthentication-required");
    assert!(app.world.reasons(EventType::MfaEnrol).is_empty());
    let fresh = sign_in(&app.login, "stale@example.com").await.text("access_token");
    let enrolment = app.enroll(&fresh).await;
    assert_eq!(enrolment.status, 200, "{}", enrolment.body);
    assert!(enrolment.text("otpauth_uri").starts_with("otpauth://totp/"));
    assert!(enrolment.text("qr_svg").contains("<svg"));
    // Not confirmed yet: the login still needs only the password.
    assert!(sign_in(&app.login, "stale@example.com").await.json().get("access_token").is_some());
}

#[tokio::test]
async fn a_wrong_first_code_confirms_nothing_and_a_right_one_returns_ten_recovery_codes() {
    let app = app().await;
    let token = app.person("confirm@example.com").await;
    let secret = app.enroll(&token).await.text("secret");
    let wrong = app.confirm(&token, &wrong_code(&secret, app.now())).await;
    assert_eq!(wrong.problem(401), "urn:portcullis:problem:invalid-mfa");
    assert_eq!(app.world.reasons(EventType::MfaVerifyFailure), [Some("enrolment_code")]);
    assert!(sign_in(&app.login, "confirm@example.com").await.json().get("access_token").is_some());
    let right = app.confirm(&token, &totp(&secret, app.now())).await;
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(right.json()["recovery_codes"].as_array().map(Vec::len), Some(10));
    assert_eq!(app.enroll(&token).await.problem(409), "urn:portcullis:problem:conflict");
}

#[tokio::test]
async fn a_login_with_the_factor_needs_the_current_code_and_accepts_it_once() {
    let app = app().await;
    let person = app.enrolled("totp@example.com").await;
    let mfa_token = app.mfa_token(&person.email).await;
    let code = totp(&person.secret, app.now());
    let signed_in = app.verify(&mfa_token, &code).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert_eq!(app.amr(&signed_in.text("access_token")).await, ["pwd", "otp"]);
    assert_eq!(app.verify(&mfa_token, &code).await.status, 401, "an mfa_token is spent by its success");
    // RFC 6238 §5.2: the same code is refused for another login in its step.
    let again = app.mfa_token(&person.email).await;
    assert_eq!(app.verify(&again, &code).await.problem(401), "urn:portcullis:problem:invalid-mfa");
    assert_eq!(app.world.reasons(EventType::MfaReplay), [Some("replayed_code")]);
    app.world.clock.advance(30);
    assert_eq!(app.verify(&again, &totp(&person.secret, app.now())).await.status, 200);
}

/// Five wrong codes (under the account's own limit, raised here) burn the
/// `mfa_token`: the right code cannot be guessed with it afterwards.
#[tokio::test]
async fn five_wrong_codes_burn_the_mfa_token() {
    let app = app_with(&[("PORTCULLIS_LOCKOUT_MAX_FAILURES", "20".into())]).await;
    let person = app.enrolled("burn@example.com").await;
    let mfa_token = app.mfa_token(&person.email).await;
    for attempt in 1..=5 {
        let answer = app.verify(&mfa_token, &wrong_code(&person.secret, app.now())).await;
        assert_eq!(answer.status, 401, "attempt {attempt}: {}", answer.body);
    }
    let late = app.verify(&mfa_token, &totp(&person.secret, app.now())).await;
    assert_eq!(late.problem(401), "urn:portcullis:problem:invalid-mfa");
    let reasons = app.world.reasons(EventType::MfaVerifyFailure);
    assert_eq!(reasons[reasons.len() - 2..], [Some("mfa_token_burned"), Some("dead_mfa_token")]);
    let next = app.mfa_token(&person.email).await;
    assert_eq!(app.verify(&next, &totp(&person.secret, app.now())).await.status, 200);
}

#[tokio::test]
async fn a_recovery_code_signs_in_once() {
    let app = app().await;
    let person = app.enrolled("recover@example.com").await;
    let (first, second) = (&person.recovery_codes[0], &person.recovery_codes[1]);
    let signed_in = app.recover(&app.mfa_token(&person.email).await, first).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert!(app.amr(&signed_in.text("access_token")).await.contains(&"mfa".to_owned()));
    let reused = app.recover(&app.mfa_token(&person.email).await, first).await;
    assert_eq!(reused.problem(401), "urn:portcullis:problem:invalid-mfa");
    assert_eq!(app.world.reasons(EventType::MfaVerifyFailure).last(), Some(&Some("wrong_recovery_code")));
    assert_eq!(app.recover(&app.mfa_token(&person.email).await, second).await.status, 200);
    assert_eq!(app.world.reasons(EventType::MfaRecoveryUsed).len(), 2);
}

#[tokio::test]
async fn hostile_and_dead_second_steps_are_problems_and_never_a_500() {
    let app = app().await;
    let samples = [
        (include_str!("../../../events/mfa/verify-unknown-field.json"), 400),
        (include_str!("../../../events/mfa/recovery-malformed.json"), 400),
        (include_str!("../../../events/mfa/verify-dead-token.json"), 401),
        (include_str!("../../../events/mfa/disable-without-authorizer.json"), 401),
    ];
    for (sample, status) in samples {
        app.call(event(sample)).await.problem(status);
    }
    for body in ["{", "[]", "null", r#"{"mfa_token":1,"code":2}"#, r#"{"mfa_token":"pcm_x"}"#] {
        app.call(request("POST", "/auth/mfa/verify", Some(body))).await.problem(400);
    }
    let huge = serde_json::json!({ "mfa_token": "x".repeat(20_000), "code": "123456" });
    app.call(post("/auth/mfa/verify", &huge)).await.problem(413);
    assert_eq!(app.world.reasons(EventType::MfaVerifyFailure), [Some("dead_mfa_token")]);
}

/// Removal needs step-up with the factor and a current code; it ends the
/// account's other sessions and the login needs the password only again.
#[tokio::test]
async fn removing_the_factor_needs_a_code_and_ends_the_other_sessions() {
    let app = app().await;
    let person = app.enrolled("remove@example.com").await;
    let sign_in_fully = || async {
        let mfa_token = app.mfa_token(&person.email).await;
        app.world.clock.advance(30);
        app.verify(&mfa_token, &totp(&person.secret, app.now())).await.text("access_token")
    };
    let (here, elsewhere) = (sign_in_fully().await, sign_in_fully().await);
    let body = |code: String| serde_json::json!({ "code": code }).to_string();
    let wrong = body(wrong_code(&person.secret, app.now()));
    let refused = app.as_bearer("DELETE", "/auth/mfa/totp", Some(&wrong), &here).await;
    assert_eq!(refused.problem(401), "urn:portcullis:problem:invalid-mfa");
    let right = body(totp(&person.secret, app.now() + 30));
    app.world.clock.advance(30);
    let removed = app.as_bearer("DELETE", "/auth/mfa/totp", Some(&right), &here).await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    assert_eq!(app.world.decide("GET", "/me", &elsewhere).await, Decision::Unauthorized);
    assert!(matches!(app.world.decide("GET", "/me", &here).await, Decision::Allow(_)));
    assert!(sign_in(&app.login, &person.email).await.json().get("access_token").is_some());
}
