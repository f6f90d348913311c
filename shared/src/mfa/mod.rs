//! Multi-factor authentication (ASVS V2.8/V6.5): RFC 6238 TOTP through `totp-rs`
//! (HMAC-SHA1, 6 digits, 30 s, previous/current/next step), single-use recovery
//! codes stored hashed, and short-lived MFA challenges between the password step
//! and the second factor.

mod challenges;

pub use challenges::{Challenge, ChallengeStore, MAX_ATTEMPTS};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use totp_rs::{Algorithm, TOTP};

/// TOTP period and digits (RFC 6238 defaults, what every authenticator app uses).
pub const STEP_SECS: u64 = 30;
pub const DIGITS: usize = 6;
/// Issuer shown in authenticator apps.
pub const ISSUER: &str = "Portcullis";
/// How long an MFA challenge (`mfa_token`) lives.
pub const CHALLENGE_TTL_SECS: i64 = 300;
pub const RECOVERY_CODES: usize = 10;

/// Associated data binding a TOTP secret to its user: a ciphertext copied onto
/// another user's row does not decrypt.
pub fn secret_aad(id: crate::domain::UserId) -> Vec<u8> {
    [b"totp-secret:".as_slice(), &id.as_bytes()].concat()
}

/// A user's sealed TOTP secret, opened. A ciphertext that does not open for
/// this user (moved from another row, tampered) is logged and is `None`: the
/// caller fails closed, as for a wrong code.
pub fn open_secret(
    fields: &crate::crypto::FieldCipher,
    id: crate::domain::UserId,
    sealed: &[u8],
) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    match fields.decrypt(sealed, &secret_aad(id)) {
        Ok(secret) => Some(zeroize::Zeroizing::new(secret)),
        Err(_) => {
            tracing::error!(user_id = %id, "TOTP secret does not decrypt for this user: refusing");
            None
        }
    }
}

/// The outcome of a TOTP code presented for an account's active secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// Right, and not used before: its step is now the last accepted one.
    Accepted,
    /// Matches no step around now (or the secret does not open).
    Wrong,
    /// Matches a step at or before the last accepted one (RFC 6238 §5.2).
    Replayed,
}

/// Checks `code` against the account's active TOTP secret and, when it is
/// right, records its step so that it is accepted once. Every route that takes a
/// code (the MFA step, turning TOTP off, re-authentication) checks it here; the
/// attempt itself is counted by the caller's throttle before.
pub async fn check_totp(
    store: &dyn crate::store::MfaStore,
    fields: &crate::crypto::FieldCipher,
    id: crate::domain::UserId,
    sealed: &[u8],
    code: &str,
    now: i64,
) -> Result<TotpCheck, crate::store::StoreError> {
    let Some(secret) = open_secret(fields, id, sealed) else {
        return Ok(TotpCheck::Wrong);
    };
    let Some(step) = matching_step(&secret, code, now) else {
        return Ok(TotpCheck::Wrong);
    };
    Ok(if store.accept_step(id, step as i64).await? { TotpCheck::Accepted } else { TotpCheck::Replayed })
}

/// A fresh 160-bit TOTP secret from the OS CSPRNG.
pub fn new_totp_secret() -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(crate::crypto::random_bytes::<20>().to_vec())
}

fn totp(secret: &[u8], account: &str) -> Option<TOTP> {
    TOTP::new(Algorithm::SHA1, DIGITS, 1, STEP_SECS, secret.to_vec(), Some(ISSUER.into()), account.into())
        .ok()
}

/// Base32 secret, `otpauth://` URI and an SVG QR code of the URI, for enrolment.
pub fn enrolment(secret: &[u8], account: &str) -> Option<(String, String, String)> {
    let t = totp(secret, account)?;
    let (uri, svg) = uri_and_qr(&t)?;
    Some((t.get_secret_base32(), uri, svg))
}

fn uri_and_qr(t: &TOTP) -> Option<(String, String)> {
    let uri = t.get_url();
    let svg = qrcode::QrCode::new(uri.as_bytes())
        .ok()?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Some((uri, svg))
}

/// [`enrolment`] for a secret another provider generated (base32, as Cognito's
/// `AssociateSoftwareToken` returns it). The provider owns the secret and checks
/// the codes, so its length is the provider's to choose: no minimum is applied.
pub fn enrolment_from_base32(secret: &str, account: &str) -> Option<(String, String, String)> {
    let normalized: String = secret.trim().trim_end_matches('=').to_ascii_uppercase();
    let bytes = zeroize::Zeroizing::new(totp_rs::Secret::Encoded(normalized.clone()).to_bytes().ok()?);
    let t = TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECS,
        bytes.to_vec(),
        Some(ISSUER.into()),
        account.into(),
    );
    let (uri, svg) = uri_and_qr(&t)?;
    Some((normalized, uri, svg))
}

/// The time step a 6-digit `code` matches (previous, current or next step around
/// `now`), compared in constant time; `None` when it matches none. The caller
/// must still refuse a step already accepted (replay).
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) || now < 0 {
        return None;
    }
    let t = totp(secret, "-")?;
    let current = now as u64 / STEP_SECS;
    let mut found = None;
    for step in [current.saturating_sub(1), current, current + 1] {
        let expected = t.generate(step * STEP_SECS);
        // Check all three steps whatever matches, so timing says nothing.
        if aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), code.as_bytes()).is_ok() {
            found.get_or_insert(step);
        }
    }
    found
}

/// Ten recovery codes (`xxxxx-xxxxx-xxxxx-xxxxx`, 100 bits each from the OS CSPRNG)
/// and their SHA-256 hashes, which alone are stored (ASVS 2.6.2).
pub fn new_recovery_codes() -> Vec<(SecretString, [u8; 32])> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789"; // 32 symbols, no 0/o/1/l
    (0..RECOVERY_CODES)
        .map(|_| {
            let bytes = crate::crypto::random_bytes::<20>();
            let symbols: String = bytes.iter().map(|b| ALPHABET[(*b & 31) as usize] as char).collect();
            let code =
                format!("{}-{}-{}-{}", &symbols[0..5], &symbols[5..10], &symbols[10..15], &symbols[15..20]);
            let hash = hash_recovery_code(&code).unwrap_or([0; 32]);
            (SecretString::from(code), hash)
        })
        .collect()
}

/// The hash of a presented recovery code (case, spaces and dashes ignored), or
/// `None` when it cannot be one.
pub fn hash_recovery_code(code: &str) -> Option<[u8; 32]> {
    let normalized: String =
        code.chars().filter(|c| !matches!(c, '-' | ' ')).collect::<String>().to_lowercase();
    if normalized.len() != 20 || !normalized.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, normalized.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Some(out)
}

/// A new `mfa_token` (shown once) and its hash (stored).
pub fn new_mfa_token() -> (SecretString, [u8; 32]) {
    let token = format!("pcm_{}", URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>()));
    let hash = hash_mfa_token(&token).unwrap_or([0; 32]);
    (SecretString::from(token), hash)
}

pub fn hash_mfa_token(token: &str) -> Option<[u8; 32]> {
    let body = token.strip_prefix("pcm_")?;
    if URL_SAFE_NO_PAD.decode(body).ok()?.len() != 32 {
        return None;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Some(out)
}

/// Exposes a secret for a response body that shows it once.
pub fn reveal(secret: &SecretString) -> String {
    secret.expose_secret().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_appendix_b_sha1_vectors_pass() {
        // RFC 6238 Appendix B: ASCII "12345678901234567890", SHA-1, 8 digits.
        let t = TOTP::new(Algorithm::SHA1, 8, 1, 30, b"12345678901234567890".to_vec(), None, "rfc".into())
            .expect("valid secret");
        for (time, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(t.generate(time), code, "T = {time}");
        }
    }

    #[test]
    fn codes_match_the_previous_current_and_next_step_only() {
        let secret = new_totp_secret();
        let t = totp(&secret, "a").expect("totp");
        let now = 1_800_000_015_i64;
        let step = now as u64 / STEP_SECS;
        for offset in [-1_i64, 0, 1] {
            let s = (step as i64 + offset) as u64;
            assert_eq!(matching_step(&secret, &t.generate(s * STEP_SECS), now), Some(s));
        }
        for offset in [-3_i64, -2, 2, 3] {
            let s = (step as i64 + offset) as u64;
            assert_eq!(matching_step(&secret, &t.generate(s * STEP_SECS), now), None, "offset {offset}");
        }
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "12a456", now), None);
    }

    #[test]
    fn enrolment_gives_a_uri_authenticators_understand() {
        let secret = new_totp_secret();
        assert_eq!(secret.len(), 20, "160-bit secret");
        let (base32, uri, svg) = enrolment(&secret, "alice@example.com").expect("enrolment");
        assert_eq!(base32.len(), 32);
        assert!(uri.starts_with("otpauth://totp/Portcullis:alice%40example.com?"), "{uri}");
        assert!(uri.contains("issuer=Portcullis") && uri.contains(&format!("secret={base32}")), "{uri}");
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "not an SVG");
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_leniently() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let mut hashes: Vec<_> = codes.iter().map(|(_, h)| *h).collect();
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), 10);
        let (code, hash) = &codes[0];
        let sloppy = code.expose_secret().to_uppercase().replace('-', " ");
        assert_eq!(hash_recovery_code(&sloppy), Some(*hash));
        assert_eq!(hash_recovery_code("short"), None);
    }
}
