use std::fmt;
use std::sync::LazyLock;

use super::Problems;

/// A password that passed the policy. Its `Debug` prints nothing, so it cannot leak into logs.
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Django's four default validators: minimum length, similarity to the user's attributes,
/// the common-password list and not-entirely-numeric; plus a maximum length so hashing cost
/// stays bounded.
#[derive(Debug, Clone, Copy)]
pub struct PasswordPolicy {
    pub min_length: usize,
}

pub const MAX_CHARS: usize = 256;

/// Django's `UserAttributeSimilarityValidator` threshold.
const MAX_SIMILARITY: f64 = 0.7;

/// Django's list of 20,000 common passwords (lower-cased, sorted for binary search).
static COMMON: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().collect());

impl PasswordPolicy {
    /// Every problem at once, as DRF reports them; `attributes` are the username and email.
    pub fn parse(&self, raw: &str, attributes: &[&str]) -> Result<Password, Problems> {
        let mut problems = Problems::new();
        let count = raw.chars().count();
        if count < self.min_length {
            problems.push(format!(
                "This password is too short. It must contain at least {} characters.",
                self.min_length
            ));
        }
        if count > MAX_CHARS {
            problems.push(format!(
                "Ensure this field has no more than {MAX_CHARS} characters."
            ));
        }
        if is_too_similar(raw, attributes) {
            problems.push("The password is too similar to the username or email.".into());
        }
        if COMMON.binary_search(&raw.to_lowercase().trim()).is_ok() {
            problems.push("This password is too common.".into());
        }
        if !raw.is_empty() && raw.chars().all(|c| c.is_ascii_digit()) {
            problems.push("This password is entirely numeric.".into());
        }
        if problems.is_empty() {
            Ok(Password(raw.to_owned()))
        } else {
            Err(problems)
        }
    }
}

/// Compares the password with each attribute and with each of its word parts, as Django does.
fn is_too_similar(password: &str, attributes: &[&str]) -> bool {
    let password = password.to_lowercase();
    attributes.iter().any(|attr| {
        let attr = attr.to_lowercase();
        std::iter::once(attr.as_str())
            .chain(attr.split(|c: char| !c.is_alphanumeric()))
            .filter(|part| !part.is_empty())
            .any(|part| similarity(&password, part) >= MAX_SIMILARITY)
    })
}

/// Ratcliff/Obershelp similarity (Python's `SequenceMatcher.ratio`): 2·matches / total length.
fn similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    2.0 * matching_chars(&a, &b) as f64 / (a.len() + b.len()) as f64
}

fn matching_chars(a: &[char], b: &[char]) -> usize {
    let (mut best, mut at_a, mut at_b) = (0, 0, 0);
    // Longest common substring by dynamic programming over one rolling row.
    let mut row = vec![0usize; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = 0;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == cb { diagonal + 1 } else { 0 };
            if row[j + 1] > best {
                best = row[j + 1];
                at_a = i + 1 - best;
                at_b = j + 1 - best;
            }
            diagonal = above;
        }
    }
    if best == 0 {
        return 0;
    }
    best + matching_chars(&a[..at_a], &b[..at_b])
        + matching_chars(&a[at_a + best..], &b[at_b + best..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: PasswordPolicy = PasswordPolicy { min_length: 8 };

    fn problems(raw: &str) -> Problems {
        POLICY
            .parse(raw, &["ada", "ada@example.com"])
            .err()
            .unwrap_or_default()
    }

    #[test]
    fn accepts_a_reasonable_password() {
        assert!(problems("correct horse battery").is_empty());
    }

    #[test]
    fn reports_each_rule() {
        assert!(problems("short1!")[0].contains("too short"));
        assert!(
            problems("12345678901")
                .iter()
                .any(|p| p.contains("entirely numeric"))
        );
        assert!(
            problems("Password1")
                .iter()
                .any(|p| p.contains("too common"))
        );
        assert!(
            problems("qwertyuiop")
                .iter()
                .any(|p| p.contains("too common"))
        );
        assert!(
            problems(&"x".repeat(257))
                .iter()
                .any(|p| p.contains("no more than 256"))
        );
        assert!(
            POLICY.parse("lovelace1", &["lovelace"]).is_err(),
            "similar to username"
        );
        assert!(
            POLICY
                .parse("ada.lovelace", &["x", "ada.lovelace@example.com"])
                .is_err(),
            "similar to email"
        );
    }

    #[test]
    fn similarity_matches_python_sequence_matcher() {
        // difflib.SequenceMatcher(None, "abcd", "bcde").ratio() == 0.75
        assert!((similarity("abcd", "bcde") - 0.75).abs() < 1e-9);
        assert!((similarity("lovelace1", "lovelace") - 16.0 / 17.0).abs() < 1e-9);
        assert_eq!(similarity("abc", "xyz"), 0.0);
    }

    #[test]
    fn debug_hides_the_password() {
        let p = POLICY.parse("correct horse battery", &[]).expect("valid");
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[test]
    fn common_list_is_sorted() {
        assert!(COMMON.windows(2).all(|w| w[0] <= w[1]));
        assert!(COMMON.len() > 19_000);
    }
}
