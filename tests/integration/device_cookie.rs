//! The lockout is not a denial of service (#16 item 6): a client that has
//! completed a login for an account keeps its own failure budget (a device
//! cookie), while guesses from anywhere else still lock the account.
//! Lambda handlers on MariaDB and moto's DynamoDB.

use crate::helpers::GOOD_PASSWORD;
use crate::helpers::{parts, request};
use crate::step_up::{json, oathtool, world, World};
use portcullis_shared::clock::Clock;

/// Status, body and the device cookie set (if any) of one login attempt.
async fn login(
    w: &World,
    email: &str,
    password: &str,
    device: Option<&str>,
) -> (u16, serde_json::Value, Option<String>) {
    let body = serde_json::json!({"email": email, "password": password}).to_string();
    let mut req = request("POST", "/auth/login", Some(&body), None);
    if let Some(token) = device {
        let cookie = format!("theme=dark; {}={token}", portcullis_shared::device::COOKIE);
        req.headers_mut().insert(http::header::COOKIE, cookie.parse().expect("header"));
    }
    let (status, text, headers) = parts(portcullis_login::handle(&w.login, req).await);
    (status, json(&text), device_cookie(&headers))
}

fn device_cookie(headers: &http::HeaderMap) -> Option<String> {
    let set = headers.get(http::header::SET_COOKIE)?.to_str().ok()?.to_owned();
    assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Strict"), "{set}");
    let (pair, _) = set.split_once(';')?;
    pair.strip_prefix(&format!("{}=", portcullis_shared::device::COOKIE)).map(str::to_owned)
}

async fn lock_out(w: &World, email: &str) {
    for i in 0..5 {
        let (status, body, _) = login(w, email, &format!("attacker-guess-{i}"), None).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, _, _) = login(w, email, GOOD_PASSWORD, None).await;
    assert_eq!(status, 429, "the guessing locked the account for every client without a device cookie");
}

#[tokio::test]
async fn an_attacker_locking_the_account_does_not_lock_out_its_known_device() {
    let w = world(&[]).await;
    w.register("owner@example.com").await;
    let (status, _, device) = login(&w, "owner@example.com", GOOD_PASSWORD, None).await;
    assert_eq!(status, 200);
    let device = device.expect("a completed login sets a device cookie");
    lock_out(&w, "owner@example.com").await;

    // The owner's own device still logs in, and gets a fresh cookie.
    let (status, body, renewed) = login(&w, "owner@example.com", GOOD_PASSWORD, Some(&device)).await;
    assert_eq!(status, 200, "{body}");
    let renewed = renewed.expect("renewed cookie");
    // Everyone else is still locked out: the owner's success did not lift the lock.
    let (status, _, _) = login(&w, "owner@example.com", GOOD_PASSWORD, None).await;
    assert_eq!(status, 429);

    // A device cookie of another account is no key to this one.
    w.register("attacker@example.com").await;
    let (_, _, theirs) = login(&w, "attacker@example.com", GOOD_PASSWORD, None).await;
    let (status, _, _) = login(&w, "owner@example.com", GOOD_PASSWORD, theirs.as_deref()).await;
    assert_eq!(status, 429, "a cookie for another account counts as no cookie");

    // The device's budget is a budget: five wrong passwords lock that device too.
    for i in 0..5 {
        let (status, body, _) = login(&w, "owner@example.com", &format!("typo-{i}"), Some(&renewed)).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, _, _) = login(&w, "owner@example.com", GOOD_PASSWORD, Some(&renewed)).await;
    assert_eq!(status, 429, "a stolen device cookie buys one budget, not unlimited guesses");
}

#[tokio::test]
async fn the_second_factor_step_of_a_known_device_counts_on_the_device() {
    let w = world(&[]).await;
    w.register("owner-otp@example.com").await;
    let tokens = w.login("owner-otp@example.com").await;
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    let (status, enrolment) = w.call("POST", "/auth/mfa/totp/enroll", serde_json::json!({}), &token).await;
    assert_eq!(status, 200, "{enrolment}");
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    let code = |w: &World| oathtool(&secret, w.clock.now_secs());
    let (status, _) =
        w.call("POST", "/auth/mfa/totp/confirm", serde_json::json!({"code": code(&w)}), &token).await;
    assert_eq!(status, 200);
    // A first complete login (password and code) from the owner's device.
    let (status, challenge, none) = login(&w, "owner-otp@example.com", GOOD_PASSWORD, None).await;
    assert_eq!((status, none), (200, None), "no device cookie before the last factor: {challenge}");
    w.clock.advance(30);
    let verify = |mfa_token: String, code: String, device: Option<String>| {
        let body = serde_json::json!({"mfa_token": mfa_token, "code": code}).to_string();
        let mut req = request("POST", "/auth/mfa/verify", Some(&body), None);
        if let Some(token) = device {
            let cookie = format!("{}={token}", portcullis_shared::device::COOKIE);
            req.headers_mut().insert(http::header::COOKIE, cookie.parse().expect("header"));
        }
        req
    };
    let req = verify(challenge["mfa_token"].as_str().expect("mfa_token").to_owned(), code(&w), None);
    let (status, text, headers) = parts(portcullis_mfa::handle(&w.mfa, req).await);
    assert_eq!(status, 200, "{text}");
    let device = device_cookie(&headers).expect("the completed login sets a device cookie");

    lock_out(&w, "owner-otp@example.com").await;
    let (status, challenge, _) = login(&w, "owner-otp@example.com", GOOD_PASSWORD, Some(&device)).await;
    assert_eq!(status, 200, "{challenge}");
    w.clock.advance(30);
    let req = verify(challenge["mfa_token"].as_str().expect("mfa_token").to_owned(), code(&w), Some(device));
    let (status, text, _) = parts(portcullis_mfa::handle(&w.mfa, req).await);
    assert_eq!(status, 200, "the second step of the known device is not locked out: {text}");
}

/// Device tokens are bound to the password hash: cookies collected by someone
/// who knew the old password count as no device once the owner changes it, so
/// they cannot multiply the guessing budget.
#[tokio::test]
async fn a_password_change_voids_the_device_cookies_collected_before_it() {
    let w = world(&[]).await;
    w.register("harvest@example.com").await;
    let mut cookies = Vec::new();
    for _ in 0..4 {
        let (status, _, cookie) = login(&w, "harvest@example.com", GOOD_PASSWORD, None).await;
        assert_eq!(status, 200);
        cookies.push(cookie.expect("cookie"));
    }
    let token = w.login("harvest@example.com").await["access_token"].as_str().expect("token").to_owned();
    let change =
        serde_json::json!({"current_password": GOOD_PASSWORD, "new_password": "quartz-lantern-meadow-9413"});
    let (status, body) = w.call("POST", "/auth/password", change, &token).await;
    assert_eq!(status, 204, "{body}");
    let mut statuses = Vec::new();
    for (i, cookie) in cookies.iter().enumerate() {
        for j in 0..2 {
            statuses.push(login(&w, "harvest@example.com", &format!("guess-{i}-{j}"), Some(cookie)).await.0);
        }
    }
    // The password change was itself the account's first attempt in the window (a
    // right current password gives back only the IP's slot): four guesses are
    // left, for all the old cookies together.
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 429, 429, 429, 429],
        "the old cookies share the account's budget"
    );
}
