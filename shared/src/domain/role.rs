//! Role names.

/// A role name: 1–32 characters of `a-z`, `0-9`, `_` or `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Role(String);

impl Role {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let ok = !raw.is_empty()
            && raw.len() <= 32
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err("role must be 1-32 characters of a-z, 0-9, _ or -, starting with a letter")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn user() -> Self {
        Self("user".into())
    }

    pub fn admin() -> Self {
        Self("admin".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_restricted() {
        assert!(Role::parse("support").is_ok());
        for bad in ["", "Admin", "1admin", "admin;drop", &"a".repeat(33)] {
            assert!(Role::parse(bad).is_err(), "{bad}");
        }
    }
}
