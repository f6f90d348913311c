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
//! expiry, and an HMAC tag under a subkey of its own (HKDF from the field key)
//! over the account, the account's *binding*, the nonce and the expiry, each
//! length-framed. The binding is a digest of the account's password hash, so a
//! password change voids every device token issued before it: cookies collected
//! by someone who once knew the old password stop counting as devices. It
//! travels in a `__Host-` cookie (HttpOnly, Secure, SameSite=Strict), issued
//! anew at every completed login.

use crate::crypto::FieldCipher;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The cookie's name (`__Host-`: Secure, no Domain, Path=/, so no subdomain can set it).
pub const COOKIE: &str = "__Host-portcullis-device";
/// How long a device stays known without a new login.
pub const TTL_SECS: i64 = 90 * 86_400;
const PREFIX: &str = "pcd_";

fn tag(fields: &FieldCipher, account: &str, binding: &[u8], nonce: &str, expires_at: i64) -> [u8; 32] {
    let expires_at = expires_at.to_be_bytes();
    fields.device_tag(&[b"device-token v1", account.as_bytes(), binding, nonce.as_bytes(), &expires_at])
}

/// The binding of an account with a password hash: a digest of that hash
/// (its salt makes every password change a new binding).
pub fn password_binding(phc: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, phc.as_bytes()).as_ref().to_vec()
}

/// A new device token for `account` (an account's throttle key: its user id)
/// under its current `binding`.
pub fn issue(fields: &FieldCipher, account: &str, binding: &[u8], now: i64) -> String {
    let nonce = URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<16>());
    let expires_at = now + TTL_SECS;
    let tag = URL_SAFE_NO_PAD.encode(tag(fields, account, binding, &nonce, expires_at));
    format!("{PREFIX}{nonce}.{expires_at}.{tag}")
}

/// The nonce of a live device token issued for `account` under `binding`;
/// `None` for anything else.
pub fn verify(fields: &FieldCipher, account: &str, binding: &[u8], token: &str, now: i64) -> Option<String> {
    let mut parts = token.strip_prefix(PREFIX)?.split('.');
    let (nonce, expires_at, presented) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || nonce.len() != 22 || expires_at.len() > 12 {
        return None;
    }
    let expires_at: i64 = expires_at.parse().ok()?;
    let presented = URL_SAFE_NO_PAD.decode(presented).ok()?;
    let expected = tag(fields, account, binding, nonce, expires_at);
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
/// own budget when the request carries a live device token for this account
/// and its current `binding`, else the account's shared one.
pub fn throttle_key(
    fields: &FieldCipher,
    req: &lambda_http::Request,
    account: &str,
    binding: &[u8],
    now: i64,
) -> String {
    match presented(req).and_then(|token| verify(fields, account, binding, &token, now)) {
        Some(nonce) => format!("device:{nonce}"),
        None => account.to_owned(),
    }
}

/// Associated data of a device token kept in an MFA challenge.
const IN_CHALLENGE: &[u8] = b"portcullis-device-token-in-challenge";

/// A device token sealed (AEAD, field key) for the MFA challenge that hands it
/// out once the second factor succeeds: the challenge table never holds it in
/// the clear.
pub fn seal_for_challenge(fields: &FieldCipher, token: &str) -> String {
    URL_SAFE_NO_PAD.encode(fields.encrypt(token.as_bytes(), IN_CHALLENGE))
}

/// The device token [`seal_for_challenge`] sealed; `None` for anything else.
pub fn open_from_challenge(fields: &FieldCipher, sealed: &str) -> Option<String> {
    let bytes = fields.decrypt(&URL_SAFE_NO_PAD.decode(sealed).ok()?, IN_CHALLENGE).ok()?;
    String::from_utf8(bytes).ok()
}

/// `resp` with `token` (from [`issue`]) set as the device cookie.
pub fn remember(
    mut resp: lambda_http::Response<lambda_http::Body>,
    token: &str,
) -> lambda_http::Response<lambda_http::Body> {
    let cookie = format!("{COOKIE}={token}; Max-Age={TTL_SECS}; Path=/; Secure; HttpOnly; SameSite=Strict");
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
        let token = issue(&f, "account-a", b"binding", 1_000);
        assert!(verify(&f, "account-a", b"binding", &token, 1_001).is_some());
        assert!(verify(&f, "account-b", b"binding", &token, 1_001).is_none(), "another account");
        assert!(verify(&f, "account-a", b"changed", &token, 1_001).is_none(), "after a password change");
        assert!(verify(&f, "account-a", b"binding", &token, 1_000 + TTL_SECS).is_none(), "expired");
        let (head, _) = token.rsplit_once('.').expect("tag");
        let (nonce_part, _) = head.rsplit_once('.').expect("expiry");
        let extended =
            format!("{nonce_part}.{}.{}", 1_000 + 10 * TTL_SECS, token.rsplit('.').next().expect("tag"));
        assert!(verify(&f, "account-a", b"binding", &extended, 1_001).is_none(), "an edited expiry");
        for bad in ["", "pcd_", "pcd_a.b.c", &token[1..], &format!("{token}.x")] {
            assert!(verify(&f, "account-a", b"binding", bad, 1_001).is_none(), "{bad}");
        }
        assert_ne!(issue(&f, "account-a", b"binding", 1_000), token, "a fresh nonce each time");
    }

    /// The throttle stores blind indexes of whatever a client types as counter
    /// keys; none of them may be a device tag (the tag has its own subkey and
    /// framed input), so a reader of the counters cannot forge a device.
    #[test]
    fn no_blind_index_is_a_device_tag() {
        let f = fields();
        let (victim, nonce, expires_at) =
            ("0b9c5a4e-2f6d-4c1a-9e3b-7d8f6a5b4c3d", "aaaaaaaaaaaaaaaaaaaaaa", 1_000 + TTL_SECS);
        for typed in [
            format!("device-cookie\u{0}{victim}\u{0}{nonce}\u{0}{expires_at}"),
            format!("device-token v1{victim}{nonce}{expires_at}"),
        ] {
            let forged =
                format!("{PREFIX}{nonce}.{expires_at}.{}", URL_SAFE_NO_PAD.encode(f.blind_index(&typed)));
            assert!(
                verify(&f, victim, b"", &forged, 1_001).is_none(),
                "a blind index passed as a device tag"
            );
        }
    }
}
