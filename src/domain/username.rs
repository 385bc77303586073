use std::fmt;

use super::{Problems, fold_key, parse_identifier};

/// 1–150 characters of letters, digits and `@.+-_` (Django's `UnicodeUsernameValidator`),
/// NFKC-normalised (Django's `normalize_username`) before it is checked and stored, so the
/// limit counts characters of the normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

pub const MAX_CHARS: usize = 150;

impl Username {
    pub fn parse(raw: &str) -> Result<Self, Problems> {
        parse_identifier(
            raw,
            MAX_CHARS,
            |c| c.is_alphanumeric() || "@.+-_".contains(c),
            "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
        )
        .map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uniqueness key: usernames are unique case-insensitively after NFKC, so
    /// `ａｄｍｉｎ`, `ADMIN` and `admin` are one name.
    pub fn key(&self) -> String {
        Self::key_of(&self.0)
    }

    /// The lookup key of text that may not be a valid username (a login attempt): equal to
    /// [`Username::key`] of the name it would parse to, so a login typed in compatibility
    /// forms finds the account.
    pub fn key_of(raw: &str) -> String {
        fold_key(raw)
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

    /// Django's `normalize_username`: `ａｄｍｉｎ` registered beside `admin` before.
    #[test]
    fn normalizes_with_nfkc_before_checking_and_storing() {
        let fullwidth = Username::parse("ａｄｍｉｎ").expect("valid once normalized");
        assert_eq!(fullwidth.as_str(), "admin");
        assert_eq!(
            fullwidth.key(),
            Username::parse("Admin").map(|u| u.key()).expect("valid")
        );
        assert_eq!(Username::key_of("ＡＤＭＩＮ"), "admin", "login lookup");
        assert_eq!(
            Username::parse("ﬁ²").map(|u| u.to_string()),
            Ok("fi2".into())
        );
        // U+FDFA is one character that NFKC writes as 18, with spaces: too long and invalid.
        assert!(Username::parse(&"\u{FDFA}".repeat(9)).is_err());
        assert!(
            Username::parse(&"\u{1D41A}".repeat(150)).is_ok(),
            "150 after normalizing"
        );
    }

    #[test]
    fn refuses_nul_with_drf_message() {
        assert_eq!(
            Username::parse("ada\0"),
            Err(vec!["Null characters are not allowed.".to_owned()])
        );
        assert!(!Username::key_of("ada\0").contains('\0'));
    }

    #[test]
    fn key_is_case_insensitive() {
        assert_eq!(
            Username::parse("Ada").map(|u| u.key()),
            Username::parse("aDA").map(|u| u.key())
        );
    }
}
