use std::fmt;

use super::{Problems, check_identifier};

/// A group name: 1–150 letters, digits and `_ . - @ + :`. Names appear in URL paths
/// (`/groups/{name}`) and in every access token, so spaces, slashes and control characters
/// are kept out. Case-sensitive, like Django's `Group.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupName(String);

pub const MAX_CHARS: usize = 150;

impl GroupName {
    pub fn parse(raw: &str) -> Result<Self, Problems> {
        check_identifier(
            raw,
            MAX_CHARS,
            |c| c.is_alphanumeric() || "_.-@+:".contains(c),
            "Enter a valid group name. This value may contain only letters, numbers, and _/./-/@/+/: characters.",
        )?;
        Ok(Self(raw.to_owned()))
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
    }
}
