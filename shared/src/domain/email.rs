//! Email addresses, normalized so that lookups are case-insensitive.

use unicode_normalization::UnicodeNormalization;

/// A syntactically valid, normalized email address (NFKC, trimmed, lower-cased).
/// Normalization makes `Alice@Example.com` and `alice@example.com` one account.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl std::fmt::Debug for Email {
    // An email is personal data: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

impl Email {
    /// Parses and normalizes; the error says what is wrong without echoing the input.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let normalized: String = raw.trim().nfkc().collect::<String>().to_lowercase();
        if normalized.is_empty() {
            return Err("email is required");
        }
        if normalized.len() > 254 {
            return Err("email is longer than 254 bytes");
        }
        if normalized.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("email contains whitespace or control characters");
        }
        let Some((local, domain)) = normalized.rsplit_once('@') else {
            return Err("email has no @");
        };
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err("email has an invalid local part");
        }
        let labels_ok = domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
        if !domain.contains('.') || !labels_ok {
            return Err("email has an invalid domain");
        }
        Ok(Self(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_width_variants_are_one_address() {
        let a = Email::parse("  Alice@Example.COM ").expect("valid");
        let b = Email::parse("ａlice@example.com").expect("valid (fullwidth a normalizes)");
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "alice@example.com");
        assert_eq!(a.local_part(), "alice");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a b@example.com",
            "alice@localhost",
            "a@-x.com",
            "a@x..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn debug_output_hides_the_address() {
        let e = Email::parse("alice@example.com").expect("valid");
        assert!(!format!("{e:?}").contains("alice"));
    }
}
