use std::fmt;

use super::{Problems, check_identifier};

/// 1–150 characters of letters, digits and `@.+-_` (Django's `UnicodeUsernameValidator`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

pub const MAX_CHARS: usize = 150;

impl Username {
    pub fn parse(raw: &str) -> Result<Self, Problems> {
        check_identifier(
            raw,
            MAX_CHARS,
            |c| c.is_alphanumeric() || "@.+-_".contains(c),
            "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
        )?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uniqueness key: usernames are unique case-insensitively.
    pub fn key(&self) -> String {
        Self::key_of(&self.0)
    }

    /// The lookup key of text that may not be a valid username (a login attempt).
    pub fn key_of(raw: &str) -> String {
        raw.to_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_django_charset_and_rejects_others() {
        for ok in ["ada", "Ada.Lovelace+1@x_y-z", "élodie", "a"] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "semi;colon", "slash/", &"a".repeat(151)] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Username::parse(&"é".repeat(150)).is_ok(),
            "the limit counts characters, not bytes"
        );
    }

    #[test]
    fn key_is_case_insensitive() {
        assert_eq!(
            Username::parse("Ada").map(|u| u.key()),
            Username::parse("aDA").map(|u| u.key())
        );
    }
}
