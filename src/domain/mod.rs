//! Domain types: values that parse, not validate. Each has private fields and a fallible
//! constructor, so an invalid username, email or password cannot exist past the edge of the
//! HTTP layer. Nothing here knows about actix or diesel.
//!
//! Every text bound for the database refuses U+0000 (PostgreSQL cannot store it); names
//! (usernames, group names, email domains) are NFKC-normalised before they are checked, and
//! case-insensitive keys fold compatibility forms too, so a look-alike cannot sit beside
//! the name it imitates. Every parser's cost is bounded by the length of its input,
//! whatever the input (the password policy's by a fixed budget).

mod claims;
mod email;
mod group_name;
mod password;
mod user_id;
mod username;

use unicode_normalization::UnicodeNormalization;

pub use claims::{CLAIMS_MAX_BYTES, CustomClaims, RESERVED_CLAIMS};
pub use email::{Email, MAX_LEN as EMAIL_MAX_LEN};
pub use group_name::{GroupName, MAX_CHARS as GROUP_NAME_MAX_CHARS};
pub use password::{
    MAX_CHARS as PASSWORD_MAX_CHARS, Password, PasswordPolicy, SIMILARITY_BUDGET, SimilarityWork,
};
pub use user_id::UserId;
pub use username::{MAX_CHARS as USERNAME_MAX_CHARS, Username};

/// Field-level validation messages, DRF style: one or more per invalid value.
pub type Problems = Vec<String>;

/// Longest text accepted for first name, last name (Django's limit).
pub const NAME_MAX_CHARS: usize = 150;

/// DRF's message for U+0000, which PostgreSQL `text` cannot hold (it would answer with an
/// error, and the client with a 500): every value bound for the database refuses it first.
const NUL: &str = "Null characters are not allowed.";

/// Control characters (C0, DEL, C1) in a one-line value: invisible, and in a name or a
/// claim they only serve to confuse whoever reads it later.
const CONTROL: &str = "Control characters are not allowed.";

fn refuse_nul(raw: &str) -> Result<(), Problems> {
    if raw.contains('\0') {
        return Err(vec![NUL.into()]);
    }
    Ok(())
}

/// Refuses NUL, then any other control character that `allowed` does not let through.
fn refuse_controls(raw: &str, allowed: impl Fn(char) -> bool) -> Result<(), Problems> {
    refuse_nul(raw)?;
    if raw.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(vec![CONTROL.into()]);
    }
    Ok(())
}

/// An identifier (username, group name): NFKC-normalised first, as Django's
/// `normalize_username` does, so look-alikes such as `ａｄｍｉｎ` and `admin` are one name;
/// then 1 to `max` characters of the normalised form, each one `allowed`. Returns the
/// normalised form, the one to store.
fn parse_identifier(
    raw: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    invalid: &str,
) -> Result<String, Problems> {
    refuse_nul(raw)?;
    // One character past the limit is enough to refuse, so however long the input, only
    // that much of its normal form is ever produced.
    let normalized: String = raw.nfkc().take(max + 1).collect();
    let count = normalized.chars().count();
    if count == 0 {
        return Err(vec!["This field may not be blank.".into()]);
    }
    if count > max {
        return Err(vec![format!(
            "Ensure this field has no more than {max} characters."
        )]);
    }
    if !normalized.chars().all(allowed) {
        return Err(vec![invalid.to_owned()]);
    }
    Ok(normalized)
}

/// A case-insensitive uniqueness and lookup key: NFKC, lower case, and NFKC again, because
/// lower-casing can make a pair that composes (`J̌` becomes `ǰ`, which NFKC writes as one
/// character). A NUL becomes U+FFFD, which no username or email admits, so a lookup with
/// it finds nothing instead of carrying the NUL to PostgreSQL.
fn fold_key(raw: &str) -> String {
    let normalized: String = raw
        .nfkc()
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect();
    normalized.to_lowercase().nfkc().collect()
}

/// Checks a free-text profile field (first/last name): no control characters, at most
/// [`NAME_MAX_CHARS`] characters.
pub fn check_name(value: &str) -> Result<(), Problems> {
    refuse_controls(value, |_| false)?;
    if value.chars().count() > NAME_MAX_CHARS {
        return Err(vec![format!(
            "Ensure this field has no more than {NAME_MAX_CHARS} characters."
        )]);
    }
    Ok(())
}

/// Checks free text that may span lines (the bio): tab, line feed and carriage return are
/// text there; NUL and every other control character are refused. Its length is bounded
/// only by the request body limit, as API.md sets none.
pub fn check_bio(value: &str) -> Result<(), Problems> {
    refuse_controls(value, |c| matches!(c, '\t' | '\n' | '\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_refuses_nul_and_controls() {
        assert_eq!(check_name("Ada\0"), Err(vec![NUL.to_owned()]));
        assert_eq!(check_bio("a\0b"), Err(vec![NUL.to_owned()]));
        for control in ["\u{7}", "\n", "\u{1b}[31m", "\u{85}", "\u{7f}"] {
            assert_eq!(
                check_name(control),
                Err(vec![CONTROL.to_owned()]),
                "{control:?}"
            );
        }
        assert_eq!(check_bio("bell\u{7}"), Err(vec![CONTROL.to_owned()]));
        assert_eq!(check_bio("two\r\nlines\tand a tab"), Ok(()));
        assert_eq!(
            check_name("Zoë O'Brien-Ağa \u{200d}"),
            Ok(()),
            "format characters are text"
        );
    }

    #[test]
    fn keys_fold_case_and_compatibility_forms() {
        assert_eq!(fold_key("ＡＤＭＩＮ"), "admin");
        assert_eq!(fold_key("J\u{30C}"), fold_key("\u{1F0}"));
        assert_eq!(fold_key("a\0b"), "a\u{FFFD}b");
    }
}
