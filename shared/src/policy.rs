//! The password policy of NIST SP 800-63B §5.1.1.2 and ASVS V2.1: length 12–128
//! (minimum configurable), no composition rules, no truncation, NFKC-normalized;
//! common and guessable passwords refused through zxcvbn's dictionaries (score at
//! least 3), the email's local part refused inside the password, and an optional
//! Have I Been Pwned k-anonymity range check. Every broken rule is reported.

use crate::domain::{Email, Password};
use crate::error::{ApiError, Violation};
use std::time::Duration;
use zxcvbn::feedback::Warning;
use zxcvbn::matching::patterns::MatchPattern;

/// The longest password accepted (NIST: at least 64; we allow 128, never truncate).
pub const MAX_LENGTH: usize = 128;
/// zxcvbn score required (0–4); 3 is "safely unguessable" (< 10^10 guesses is below 3).
pub const MIN_SCORE: u8 = 3;

/// The configured policy.
#[derive(Clone)]
pub struct PasswordPolicy {
    min_length: usize,
    breach: Option<BreachCheck>,
}

impl PasswordPolicy {
    pub fn new(min_length: usize, hibp_url: Option<String>) -> Self {
        Self { min_length, breach: hibp_url.map(BreachCheck::new) }
    }

    /// Checks `password` for the account `email`; `Err` lists every broken rule,
    /// or is a 503 when the breach service is configured but unreachable (fail closed).
    pub async fn check(
        &self,
        password: &Password,
        email: &Email,
        field: &'static str,
    ) -> Result<(), ApiError> {
        let mut broken = self.check_offline(password, email, field);
        if let Some(breach) = &self.breach {
            if broken.is_empty() && breach.is_breached(password).await? {
                broken.push(Violation {
                    rule: "breached",
                    field,
                    message: "this password appears in a known data breach".into(),
                });
            }
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(ApiError::WeakPassword(broken))
        }
    }

    /// Every rule that needs no network.
    pub fn check_offline(&self, password: &Password, email: &Email, field: &'static str) -> Vec<Violation> {
        let mut broken = Vec::new();
        let length = password.char_count();
        let mut violate = |rule, message: String| broken.push(Violation { rule, field, message });
        if length < self.min_length {
            violate("too_short", format!("use at least {} characters", self.min_length));
        }
        if length > MAX_LENGTH {
            violate("too_long", format!("use at most {MAX_LENGTH} characters"));
            // zxcvbn's cost grows with length; a too-long password needs no further analysis.
            return broken;
        }
        let pw_lower = password.expose().to_lowercase();
        let local = email.local_part();
        if local.chars().count() >= 3 && pw_lower.contains(local) {
            violate("contains_email", "do not use your email address in your password".into());
        }
        if length == 0 {
            return broken;
        }
        let entropy = zxcvbn::zxcvbn(password.expose(), &[email.as_str(), local]);
        let warning = entropy.feedback().and_then(|f| f.warning());
        let whole_is_common = entropy.sequence().len() == 1
            && matches!(&entropy.sequence()[0].pattern, MatchPattern::Dictionary(d) if format!("{:?}", d.dictionary_name) == "Passwords");
        let common_warning = matches!(
            warning,
            Some(
                Warning::ThisIsATop10Password
                    | Warning::ThisIsATop100Password
                    | Warning::ThisIsACommonPassword
                    | Warning::ThisIsSimilarToACommonlyUsedPassword
            )
        );
        if whole_is_common || common_warning {
            violate("common", "this password is on a list of commonly used passwords".into());
        }
        let score = u8::from(entropy.score());
        if score < MIN_SCORE {
            let hint = warning.map(|w| format!(": {w}")).unwrap_or_default();
            violate("guessable", format!("this password is too easy to guess{hint}"));
        }
        broken
    }
}

/// Have I Been Pwned's range API with k-anonymity: only the first 5 hex digits of
/// the SHA-1 leave the process, and responses are padded.
#[derive(Clone)]
struct BreachCheck {
    base: String,
    client: reqwest::Client,
}

impl BreachCheck {
    fn new(base: String) -> Self {
        crate::crypto::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            // The range API answers directly; a redirect could lead to plain http or
            // another host, whose answer would decide whether a password is breached.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("portcullis-password-policy")
            .build()
            .unwrap_or_default();
        Self { base: base.trim_end_matches('/').to_owned(), client }
    }

    async fn is_breached(&self, password: &Password) -> Result<bool, ApiError> {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            password.expose().as_bytes(),
        );
        let hex = hex::encode_upper(digest.as_ref());
        let (prefix, suffix) = hex.split_at(5);
        let url = format!("{}/range/{prefix}", self.base);
        let resp = self
            .client
            .get(url)
            .header("Add-Padding", "true")
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(ApiError::unavailable)?;
        let body = resp.text().await.map_err(ApiError::unavailable)?;
        Ok(body.lines().any(|line| {
            let mut parts = line.trim().split(':');
            let candidate = parts.next().unwrap_or("");
            let count: u64 = parts.next().and_then(|c| c.trim().parse().ok()).unwrap_or(0);
            // Padding entries carry a count of 0.
            count > 0 && candidate.eq_ignore_ascii_case(suffix)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(pw: &str, email: &str) -> Vec<&'static str> {
        let policy = PasswordPolicy::new(12, None);
        let email = Email::parse(email).expect("valid email");
        policy.check_offline(&Password::new(pw), &email, "password").into_iter().map(|v| v.rule).collect()
    }

    #[test]
    fn a_long_random_passphrase_passes() {
        assert!(rules("velvet-otter-quantum-harbor-71", "alice@example.com").is_empty());
    }

    #[test]
    fn short_common_passwords_break_several_rules_at_once() {
        let broken = rules("password", "alice@example.com");
        assert!(broken.contains(&"too_short"), "{broken:?}");
        assert!(broken.contains(&"common"), "{broken:?}");
        assert!(broken.contains(&"guessable"), "{broken:?}");
    }

    #[test]
    fn long_but_common_passwords_are_refused() {
        let broken = rules("password1234", "alice@example.com");
        assert!(broken.contains(&"guessable"), "{broken:?}");
        let broken = rules("qwertyuiopasdfgh", "alice@example.com");
        assert!(!broken.is_empty(), "{broken:?}");
    }

    #[test]
    fn the_email_local_part_is_refused() {
        let broken = rules("Zq8-marguerite-Lp4!x", "marguerite@example.com");
        assert!(broken.contains(&"contains_email"), "{broken:?}");
    }

    #[test]
    fn over_long_passwords_are_refused_without_truncation() {
        let broken = rules(&"kX9#mP2$".repeat(17), "alice@example.com");
        assert_eq!(broken, vec!["too_long"]);
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // 12 characters, 24+ bytes: long enough.
        let broken = rules("ЖёлтыйКотБег", "alice@example.com");
        assert!(!broken.contains(&"too_short"), "{broken:?}");
    }
}
