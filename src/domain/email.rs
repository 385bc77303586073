use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::{Problems, fold_key, refuse_nul};

/// A syntactically valid address, stored with its local part as given and its domain
/// NFKC-normalised and lower-cased: IDNA maps a domain that way before it is resolved, so
/// `ada@ＥＸＡＭＰＬＥ.com` is delivered to `ada@example.com` and must be that address here.
/// Uniqueness is case-insensitive and NFKC-insensitive over the whole address (see
/// [`Email::key`]): two local parts that differ only in compatibility forms are one
/// account, a harmless restriction that keeps look-alike duplicates out.
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
        refuse_nul(raw)?;
        let invalid = || vec![INVALID.to_owned()];
        // Checked before normalising too, so no more than that is ever normalised.
        if raw.len() > MAX_LEN {
            return Err(invalid());
        }
        let address = normalize(raw);
        if address.len() > MAX_LEN {
            return Err(invalid());
        }
        let (local, domain) = address.rsplit_once('@').ok_or_else(invalid)?;
        if !valid_local(local) || !valid_domain(domain) {
            return Err(invalid());
        }
        Ok(Self(address))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uniqueness and lookup key.
    pub fn key(&self) -> String {
        Self::key_of(&self.0)
    }

    /// The lookup key of text that may or may not be a valid address (password reset,
    /// resend): such requests must answer the same either way, so they never fail on it.
    /// Equal to [`Email::key`] of the address it would parse to. Trimmed after folding:
    /// NFKC turns some characters into a space and a mark (U+00AF is " \u{304}"), so
    /// trimming only before would give a text and its NFKC form different keys. Folding
    /// subsumes [`normalize`], so the raw text is folded as it is.
    pub fn key_of(raw: &str) -> String {
        fold_key(raw).trim().to_owned()
    }
}

/// The address as stored: the local part as given, the domain (after the last `@`)
/// NFKC-normalised and lower-cased.
fn normalize(raw: &str) -> String {
    match raw.rsplit_once('@') {
        Some((local, domain)) => {
            let domain: String = domain.nfkc().collect();
            format!("{local}@{}", domain.to_lowercase())
        }
        None => raw.to_owned(),
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
    fn normalizes_compatibility_forms_of_the_domain() {
        let e = Email::parse("Ada@ＥＸＡＭＰＬＥ．ｃｏｍ").expect("valid once normalized");
        assert_eq!(e.as_str(), "Ada@example.com");
        assert_eq!(Email::key_of(" ａｄａ@Example.COM "), e.key());
        let local = Email::parse("ａｄａ@example.com").expect("valid");
        assert_eq!(local.as_str(), "ａｄａ@example.com", "local part as given");
        assert_eq!(local.key(), e.key(), "one account");
        assert!(
            Email::parse("a@b＠example.com").is_err(),
            "no second @ by normalizing"
        );
    }

    #[test]
    fn key_ignores_spaces_that_nfkc_makes_at_the_edges() {
        // U+00AF MACRON is " \u{304}" in NFKC: the space must not survive in one key only.
        assert_eq!(Email::key_of("\u{af}"), Email::key_of(" \u{304}"));
        assert_eq!(Email::key_of("\u{af}"), "\u{304}");
    }

    #[test]
    fn refuses_nul_and_never_looks_it_up() {
        assert_eq!(
            Email::parse("a\0@example.com"),
            Err(vec!["Null characters are not allowed.".to_owned()])
        );
        assert!(!Email::key_of("a\0@example.com").contains('\0'));
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
