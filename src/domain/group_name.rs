use std::fmt;

use super::{Problems, parse_identifier};

/// A group name: 1–150 letters, digits and `_ . - @ + :`. Names appear in URL paths
/// (`/groups/{name}`) and in every access token, so spaces, slashes and control characters
/// are kept out. Case-sensitive, like Django's `Group.name`, but NFKC-normalised like a
/// username (Django does not): services authorise on these names by plain comparison, so
/// a staff member must not be able to create `ａｄｍｉｎ` beside `admin` by mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupName(String);

pub const MAX_CHARS: usize = 150;

impl GroupName {
    pub fn parse(raw: &str) -> Result<Self, Problems> {
        parse_identifier(
            raw,
            MAX_CHARS,
            |c| c.is_alphanumeric() || "_.-@+:".contains(c),
            "Enter a valid group name. This value may contain only letters, numbers, and _/./-/@/+/: characters.",
        )
        .map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_role_like_names() {
        for ok in [
            "editors",
            "role:admin",
            "team-a.b_c@x+y",
            "Ärzte",
            &"g".repeat(150),
        ] {
            assert_eq!(GroupName::parse(ok).expect(ok).as_str(), ok);
        }
    }

    #[test]
    fn rejects_blank_long_and_path_characters() {
        for bad in ["", "a b", "a/b", "tab\t", "x?y", "%2F", &"g".repeat(151)] {
            assert!(GroupName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            GroupName::parse("role\0admin"),
            Err(vec!["Null characters are not allowed.".to_owned()])
        );
    }

    #[test]
    fn normalizes_compatibility_forms_but_keeps_case() {
        let name = GroupName::parse("ｒｏｌｅ：Ａｄｍｉｎ").expect("valid once normalized");
        assert_eq!(name.as_str(), "role:Admin");
        assert_ne!(GroupName::parse("admin"), GroupName::parse("Admin"));
    }
}
