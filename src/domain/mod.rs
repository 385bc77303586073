//! Domain types: values that parse, not validate. Each has private fields and a fallible
//! constructor, so an invalid username, email or password cannot exist past the edge of the
//! HTTP layer. Nothing here knows about actix or diesel.

mod claims;
mod email;
mod group_name;
mod password;
mod user_id;
mod username;

pub use claims::{CLAIMS_MAX_BYTES, CustomClaims, RESERVED_CLAIMS};
pub use email::Email;
pub use group_name::GroupName;
pub use password::{Password, PasswordPolicy, SIMILARITY_BUDGET, SimilarityWork};
pub use user_id::UserId;
pub use username::Username;

/// Field-level validation messages, DRF style: one or more per invalid value.
pub type Problems = Vec<String>;

/// Longest text accepted for first name, last name (Django's limit).
pub const NAME_MAX_CHARS: usize = 150;

/// A name-like value: 1 to `max` characters, each one `allowed`; `invalid` says which.
fn check_identifier(
    raw: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    invalid: &str,
) -> Result<(), Problems> {
    let count = raw.chars().count();
    if count == 0 {
        return Err(vec!["This field may not be blank.".into()]);
    }
    if count > max {
        return Err(vec![format!(
            "Ensure this field has no more than {max} characters."
        )]);
    }
    if !raw.chars().all(allowed) {
        return Err(vec![invalid.to_owned()]);
    }
    Ok(())
}

/// Checks a free-text profile field (first/last name) for length.
pub fn check_name(value: &str) -> Result<(), Problems> {
    if value.chars().count() > NAME_MAX_CHARS {
        return Err(vec![format!(
            "Ensure this field has no more than {NAME_MAX_CHARS} characters."
        )]);
    }
    Ok(())
}
