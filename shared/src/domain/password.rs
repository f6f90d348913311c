//! Passwords as secrets: never logged, zeroized on drop, normalized once.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use unicode_normalization::UnicodeNormalization;

/// A password as received, normalized to NFKC (NIST SP 800-63B §5.1.1.2) so that
/// the same password typed on different keyboards hashes the same. Never truncated.
#[derive(Clone)]
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    pub fn new(raw: &str) -> Self {
        Self(SecretString::from(raw.nfkc().collect::<String>()))
    }

    /// The normalized password, for hashing and policy checks only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Length in Unicode code points (what users count), after normalization.
    pub fn char_count(&self) -> usize {
        self.expose().chars().count()
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The intermediate String is zeroized by SecretString's own deserializer path.
        let raw = SecretString::deserialize(d)?;
        Ok(Self::new(raw.expose_secret()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_unifies_composed_and_decomposed_forms() {
        let composed = Password::new("caf\u{e9} au lait every morning");
        let decomposed = Password::new("cafe\u{301} au lait every morning");
        assert_eq!(composed.expose(), decomposed.expose());
        assert_eq!(composed.char_count(), 26);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        assert_eq!(format!("{:?}", Password::new("hunter2hunter2")), "Password(<redacted>)");
    }
}
