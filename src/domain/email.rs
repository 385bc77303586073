use std::fmt;

use super::Problems;

/// A syntactically valid address, stored with its domain lower-cased and its local part as
/// given; uniqueness is case-insensitive over the whole address (see [`Email::key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

pub const MAX_LEN: usize = 254;
const INVALID: &str = "Enter a valid email address.";

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Problems> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(vec!["This field may not be blank.".into()]);
        }
        let invalid = || vec![INVALID.to_owned()];
        if raw.len() > MAX_LEN {
            return Err(invalid());
        }
        let (local, domain) = raw.rsplit_once('@').ok_or_else(invalid)?;
        if !valid_local(local) || !valid_domain(domain) {
            return Err(invalid());
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uniqueness and lookup key.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }

    /// The lookup key of text that may or may not be a valid address (password reset,
    /// resend): such requests must answer the same either way, so they never fail on it.
    pub fn key_of(raw: &str) -> String {
        raw.trim().to_lowercase()
    }
}

/// RFC 5322 dot-atom: no quoted strings, no leading, trailing or doubled dots.
fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c))
        })
}

/// Host names with at least two labels (or `localhost`), each label 1–63 characters of
/// letters, digits and inner hyphens; the last label is not numeric.
fn valid_domain(domain: &str) -> bool {
    if domain.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()))
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_domain_only() {
        let e = Email::parse("Ada.Lovelace@Example.COM").expect("valid");
        assert_eq!(e.as_str(), "Ada.Lovelace@example.com");
        assert_eq!(e.key(), "ada.lovelace@example.com");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a..b@example.com",
            ".a@example.com",
            "a b@example.com",
            "a@-x.com",
            "a@example.123",
            "a@exa_mple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        for ok in [
            "a@localhost",
            "o'neil+tag@mail.example.org",
            "x@xn--bcher-kva.example",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
    }
}
