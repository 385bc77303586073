//! Every domain parser on arbitrary text: none may panic, and what one accepts must hold
//! its promises (normal form stored, lookup key equal to the stored key, stable when
//! parsed again). `tests/properties.rs` checks the same on generated input; this explores.
#![no_main]

use latchkey::domain::{CustomClaims, Email, GroupName, UserId, Username, check_bio, check_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(name) = Username::parse(text) {
        assert_eq!(name.key(), Username::key_of(text));
        assert_eq!(Username::parse(name.as_str()).as_ref(), Ok(&name));
    }
    assert!(!Username::key_of(text).contains('\0'));
    if let Ok(email) = Email::parse(text) {
        assert_eq!(email.key(), Email::key_of(text));
        assert_eq!(Email::parse(email.as_str()).as_ref(), Ok(&email));
    }
    assert!(!Email::key_of(text).contains('\0'));
    if let Ok(group) = GroupName::parse(text) {
        assert_eq!(GroupName::parse(group.as_str()).as_ref(), Ok(&group));
    }
    if let Some(id) = UserId::from_uid(text) {
        assert_eq!(UserId::from_uid(&id.to_uid()), Some(id));
    }
    let _ = (check_name(text), check_bio(text));
    if let Ok(value) = serde_json::from_str(text)
        && let Ok(claims) = CustomClaims::parse(value)
    {
        assert!(!claims.to_json().contains("\\u0000"));
    }
});
