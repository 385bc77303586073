use serde_json::{Map, Value};

use super::{NUL, Problems};

/// Claim names latchkey sets itself in access and refresh tokens; custom claims can never
/// use them (API.md, Tokens).
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "token_type",
    "username",
    "email",
    "email_verified",
    "is_staff",
    "groups",
    "fam",
    "sid",
    "amr",
];

/// Largest custom claims object, serialized: it rides in every access token.
pub const CLAIMS_MAX_BYTES: usize = 4096;

/// A user's custom claims: a JSON object of at most 4 KiB without reserved names, merged
/// into the top level of their access tokens. Claim names hold no control characters, and
/// no key or string anywhere in it holds NUL: the stored text escapes it, but the services
/// that read these tokens may cut strings at it (C) or refuse it (PostgreSQL `jsonb`).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomClaims(Map<String, Value>);

impl CustomClaims {
    pub fn parse(value: Value) -> Result<Self, Problems> {
        let Value::Object(map) = value else {
            return Err(vec!["Expected a JSON object.".into()]);
        };
        let mut problems: Problems = map
            .keys()
            .filter(|k| RESERVED_CLAIMS.contains(&k.as_str()))
            .map(|k| format!("\"{k}\" is a reserved claim name."))
            .collect();
        if map.keys().any(|k| k.chars().any(char::is_control)) {
            problems.push("Claim names may not contain control characters.".into());
        } else if holds_nul(&map) {
            problems.push(NUL.into());
        }
        let size = Value::Object(map.clone()).to_string().len();
        if size > CLAIMS_MAX_BYTES {
            problems.push(format!(
                "Ensure the claims object is at most {CLAIMS_MAX_BYTES} bytes as JSON (it is {size})."
            ));
        }
        if problems.is_empty() {
            Ok(Self(map))
        } else {
            Err(problems)
        }
    }

    /// The object as stored (a JSON text column).
    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }
}

/// Whether any key or string at any depth holds U+0000. Walks an explicit stack, so the
/// nesting depth of the value costs no call stack.
fn holds_nul(map: &Map<String, Value>) -> bool {
    let mut pending = vec![map];
    let mut values: Vec<&Value> = Vec::new();
    loop {
        if let Some(map) = pending.pop() {
            if map.keys().any(|k| k.contains('\0')) {
                return true;
            }
            values.extend(map.values());
        } else if let Some(value) = values.pop() {
            match value {
                Value::String(s) if s.contains('\0') => return true,
                Value::Array(items) => values.extend(items),
                Value::Object(map) => pending.push(map),
                _ => {}
            }
        } else {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn accepts_a_small_object() {
        let claims = CustomClaims::parse(json!({"tenant": "acme", "plan": {"seats": 5}}))
            .expect("valid claims");
        assert_eq!(claims.to_json(), r#"{"plan":{"seats":5},"tenant":"acme"}"#);
    }

    #[test]
    fn rejects_non_objects_reserved_names_and_oversize() {
        for bad in [json!([]), json!("x"), json!(null), json!(1)] {
            assert!(CustomClaims::parse(bad).is_err());
        }
        let problems = CustomClaims::parse(json!({"sub": 1, "fam": 2, "ok": 3})).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        let big = json!({"blob": "x".repeat(CLAIMS_MAX_BYTES)});
        assert!(CustomClaims::parse(big).is_err());
        let just_fits = json!({"b": "x".repeat(CLAIMS_MAX_BYTES - 10)});
        assert!(CustomClaims::parse(just_fits).is_ok());
    }

    #[test]
    fn refuses_nul_anywhere_and_control_characters_in_names() {
        let nul = || Err(vec!["Null characters are not allowed.".to_owned()]);
        assert_eq!(CustomClaims::parse(json!({"t": "a\0b"})), nul());
        assert_eq!(CustomClaims::parse(json!({"t": [1, {"x": ["\0"]}]})), nul());
        assert_eq!(CustomClaims::parse(json!({"t": {"k\0": 1}})), nul());
        for name in ["t\0", "tab\t", "esc\u{1b}"] {
            assert_eq!(
                CustomClaims::parse(json!({ name: 1 })),
                Err(vec![
                    "Claim names may not contain control characters.".to_owned()
                ])
            );
        }
        assert!(CustomClaims::parse(json!({"t": "line\nfeed", "n": {"tab\t": 1}})).is_ok());
    }
}
