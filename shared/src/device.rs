//! Device cookies (OWASP "Slow Down Online Guessing Attacks with Device
//! Cookies"): a browser or app that has completed a login for an account gets
//! a signed token bound to that account. Its later attempts for that account
//! are counted in a budget of their own, so failures from anywhere else (an
//! attacker keeping the account locked) do not lock its owner out, while every
//! attempt without a valid device token still counts, and locks, on the
//! account's shared budget: distributed guessing is still stopped. A device
//! token guessed at, stolen or replayed buys its holder one device budget for
//! one account, and nothing at all for another account.
//!
//! The token is `pcd_<nonce>.<expiry>.<tag>`: a 128-bit random nonce, its
//! expiry, and a keyed tag (the field key's HMAC, domain-separated) over the
//! account, the nonce and the expiry. It travels in a `__Host-` cookie
//! (HttpOnly, Secure, SameSite=Strict), issued anew at every completed login.

use crate::crypto::FieldCipher;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The cookie's name (`__Host-`: Secure, no Domain, Path=/, so no subdomain can set it).
pub const COOKIE: &str = "__Host-portcullis-device";
/// How long a device stays known without a new login.
pub const TTL_SECS: i64 = 90 * 86_400;
const PREFIX: &str = "pcd_";

fn tag(fields: &FieldCipher, account: &str, nonce: &str, expires_at: i64) -> crate::crypto::BlindIndex {
    fields.blind_index(&format!("device-cookie\u{0}{account}\u{0}{nonce}\u{0}{expires_at}"))
}

/// A new device token for `account` (an account's throttle key: its user id).
pub fn issue(fields: &FieldCipher, account: &str, now: i64) -> String {
    let nonce = URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<16>());
    let expires_at = now + TTL_SECS;
    let tag = URL_SAFE_NO_PAD.encode(tag(fields, account, &nonce, expires_at));
    format!("{PREFIX}{nonce}.{expires_at}.{tag}")
}

/// The nonce of a live device token issued for `account`; `None` for anything else.
pub fn verify(fields: &FieldCipher, account: &str, token: &str, now: i64) -> Option<String> {
    let mut parts = token.strip_prefix(PREFIX)?.split('.');
    let (nonce, expires_at, presented) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || nonce.len() != 22 || expires_at.len() > 12 {
        return None;
    }
    let expires_at: i64 = expires_at.parse().ok()?;
    let presented = URL_SAFE_NO_PAD.decode(presented).ok()?;
    let expected = tag(fields, account, nonce, expires_at);
    let genuine = aws_lc_rs::constant_time::verify_slices_are_equal(&presented, &expected).is_ok();
    (genuine && expires_at > now).then(|| nonce.to_owned())
}

/// The device token a request carries in its `Cookie` header, if any.
pub fn presented(req: &lambda_http::Request) -> Option<String> {
    req.headers().get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|header| {
        header.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.trim().to_owned())
        })
    })
}

/// The throttle key an attempt for `account` is counted under: the device's
/// own budget when the request carries a live device token for this account,
/// else the account's shared one.
pub fn throttle_key(fields: &FieldCipher, req: &lambda_http::Request, account: &str, now: i64) -> String {
    match presented(req).and_then(|token| verify(fields, account, &token, now)) {
        Some(nonce) => format!("device:{nonce}"),
        None => account.to_owned(),
    }
}

/// `resp` with a fresh device token for `account` set as the cookie.
pub fn remember(
    mut resp: lambda_http::Response<lambda_http::Body>,
    fields: &FieldCipher,
    account: &str,
    now: i64,
) -> lambda_http::Response<lambda_http::Body> {
    let cookie = format!(
        "{COOKIE}={}; Max-Age={TTL_SECS}; Path=/; Secure; HttpOnly; SameSite=Strict",
        issue(fields, account, now)
    );
    if let Ok(value) = http::HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(http::header::SET_COOKIE, value);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> FieldCipher {
        FieldCipher::new(&[7u8; 32])
    }

    #[test]
    fn a_device_token_opens_only_for_its_account_until_it_expires() {
        let f = fields();
        let token = issue(&f, "account-a", 1_000);
        assert!(verify(&f, "account-a", &token, 1_001).is_some());
        assert!(verify(&f, "account-b", &token, 1_001).is_none(), "another account");
        assert!(verify(&f, "account-a", &token, 1_000 + TTL_SECS).is_none(), "expired");
        let (head, _) = token.rsplit_once('.').expect("tag");
        let (nonce_part, _) = head.rsplit_once('.').expect("expiry");
        let extended =
            format!("{nonce_part}.{}.{}", 1_000 + 10 * TTL_SECS, token.rsplit('.').next().expect("tag"));
        assert!(verify(&f, "account-a", &extended, 1_001).is_none(), "an edited expiry");
        for bad in ["", "pcd_", "pcd_a.b.c", &token[1..], &format!("{token}.x")] {
            assert!(verify(&f, "account-a", bad, 1_001).is_none(), "{bad}");
        }
        assert_ne!(issue(&f, "account-a", 1_000), token, "a fresh nonce each time");
    }
}
