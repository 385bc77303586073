//! The password policy: Django's four default validators plus a maximum length, built so
//! that no input can make it expensive. The similarity check is the only costly part (a
//! Ratcliff/Obershelp matcher is cubic in the worst case), so, as Django does since its
//! DoS fixes, it runs only on a password of acceptable length, against attributes of sane
//! length, after cheap upper bounds have failed to rule similarity out, and here also under
//! a hard budget of matcher work, so the worst case is bounded by construction.

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

/// Longest attribute the similarity check looks at: 254 characters, the longest valid email
/// address (a valid username is at most 150). A longer attribute is skipped, not truncated:
/// it is not a valid username or email, so the request fails on that field anyway, and a
/// truncated copy would be a value the user never had.
pub const ATTRIBUTE_MAX_CHARS: usize = 254;

/// Most dynamic-programming cells the matcher may update in one [`PasswordPolicy::parse`],
/// over all attributes: about a millisecond of a release build. A realistic password uses
/// a few thousand; the worst the length caps allow (256 × 254 characters, every match one
/// character long) would need several million.
pub const SIMILARITY_BUDGET: u64 = 1_000_000;

/// Django's `UserAttributeSimilarityValidator` threshold.
const MAX_SIMILARITY: f64 = 0.7;

/// Django's list of 20,000 common passwords (lower-cased, sorted for binary search).
static COMMON: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().collect());

/// The similarity work one [`PasswordPolicy::parse`] did, for tests and fuzz targets to
/// assert the bound on (a count is deterministic where a timing is not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimilarityWork {
    /// Matcher cells updated; never more than [`SIMILARITY_BUDGET`].
    pub cells: u64,
    /// The budget ran out before a comparison finished, and the password was reported too
    /// similar (see [`PasswordPolicy::parse`]).
    pub exhausted: bool,
}

impl PasswordPolicy {
    /// Every problem at once, as DRF reports them; `attributes` are the username and email.
    ///
    /// A password over [`MAX_CHARS`] gets only the length message: nothing else runs on it.
    /// When the similarity budget runs out the password counts as too similar (fail-closed):
    /// the matcher only runs after `quick_ratio`, an upper bound of the similarity, already
    /// said it may reach 0.7, and accepting what could not be checked would let a crafted
    /// password through the very rule it is shaped to defeat.
    pub fn parse(&self, raw: &str, attributes: &[&str]) -> Result<Password, Problems> {
        self.parse_measured(raw, attributes).0
    }

    /// [`PasswordPolicy::parse`], also returning how much similarity work it did.
    pub fn parse_measured(
        &self,
        raw: &str,
        attributes: &[&str],
    ) -> (Result<Password, Problems>, SimilarityWork) {
        let mut budget = Budget::default();
        let count = raw.chars().count();
        if count > MAX_CHARS {
            let too_long = format!("Ensure this field has no more than {MAX_CHARS} characters.");
            return (Err(vec![too_long]), budget.work);
        }
        let mut problems = Problems::new();
        if count < self.min_length {
            problems.push(format!(
                "This password is too short. It must contain at least {} characters.",
                self.min_length
            ));
        }
        if is_too_similar(raw, attributes, &mut budget) {
            problems.push("The password is too similar to the username or email.".into());
        }
        if COMMON.binary_search(&raw.to_lowercase().trim()).is_ok() {
            problems.push("This password is too common.".into());
        }
        if !raw.is_empty() && raw.chars().all(|c| c.is_ascii_digit()) {
            problems.push("This password is entirely numeric.".into());
        }
        let verdict = if problems.is_empty() {
            Ok(Password(raw.to_owned()))
        } else {
            Err(problems)
        };
        (verdict, budget.work)
    }
}

/// The similarity work one parse has spent so far, against [`SIMILARITY_BUDGET`].
#[derive(Default)]
struct Budget {
    work: SimilarityWork,
}

impl Budget {
    /// Takes `cells` from the budget, or marks it exhausted (spending nothing) if too few are
    /// left: the count never passes the budget.
    fn spend(&mut self, cells: u64) -> bool {
        if self.work.cells + cells > SIMILARITY_BUDGET {
            self.work.exhausted = true;
            return false;
        }
        self.work.cells += cells;
        true
    }
}

/// Compares the password with each attribute and with each of its word parts, as Django's
/// `UserAttributeSimilarityValidator` does, cheapest test first.
fn is_too_similar(password: &str, attributes: &[&str], budget: &mut Budget) -> bool {
    let password: Vec<char> = password.to_lowercase().chars().collect();
    attributes
        .iter()
        .filter(|attr| attr.chars().count() <= ATTRIBUTE_MAX_CHARS)
        .any(|attr| {
            let attr = attr.to_lowercase();
            std::iter::once(attr.as_str())
                .chain(attr.split(|c: char| !c.is_alphanumeric()))
                .filter(|part| !part.is_empty())
                .any(|part| {
                    let part: Vec<char> = part.chars().collect();
                    may_be_similar(&password, &part)
                        && similarity(&password, &part, budget).is_none_or(|r| r >= MAX_SIMILARITY)
                })
        })
}

/// The cheap filters before the matcher: Django's `exceeds_maximum_length_ratio` (a value
/// under a tenth of the password's length cannot reach the threshold), then Python's
/// `real_quick_ratio` and `quick_ratio`, upper bounds of the similarity in O(n) and
/// O(n log n).
fn may_be_similar(password: &[char], value: &[char]) -> bool {
    let (pwd_len, value_len) = (password.len(), value.len());
    let exceeds_length_ratio =
        pwd_len >= 10 * value_len && (value_len as f64) < MAX_SIMILARITY / 2.0 * pwd_len as f64;
    let total = pwd_len + value_len;
    !exceeds_length_ratio
        && ratio(pwd_len.min(value_len), total) >= MAX_SIMILARITY
        && ratio(common_chars(password, value), total) >= MAX_SIMILARITY
}

/// How many characters the two have in common as multisets (`quick_ratio`'s numerator).
fn common_chars(a: &[char], b: &[char]) -> usize {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    let (mut i, mut j, mut common) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    common
}

/// `2·matches / total`, with Python's 1.0 for two empty sequences.
fn ratio(matches: usize, total: usize) -> f64 {
    if total == 0 {
        1.0
    } else {
        2.0 * matches as f64 / total as f64
    }
}

/// Ratcliff/Obershelp similarity, equal to Python's `SequenceMatcher(None, a, b,
/// autojunk=False).ratio()`; `None` when `budget` ran out first.
fn similarity(a: &[char], b: &[char], budget: &mut Budget) -> Option<f64> {
    matching_chars(a, b, budget).map(|matches| ratio(matches, a.len() + b.len()))
}

/// The number of characters in Ratcliff/Obershelp's matching blocks: the longest common
/// substring (leftmost in `a`, then in `b`, as Python picks it), then the same on each side
/// of it. Iterative over an explicit stack of ranges, so the input length never becomes
/// recursion depth; each range's table is paid for from `budget` before it is filled.
fn matching_chars(a: &[char], b: &[char], budget: &mut Budget) -> Option<usize> {
    let mut matches = 0;
    let mut pending = vec![(0..a.len(), 0..b.len())];
    let mut row = vec![0usize; b.len() + 1];
    while let Some((ra, rb)) = pending.pop() {
        if ra.is_empty() || rb.is_empty() {
            continue;
        }
        if !budget.spend((ra.len() * rb.len()) as u64) {
            return None;
        }
        let (a_part, b_part) = (&a[ra.clone()], &b[rb.clone()]);
        let (size, at_a, at_b) = longest_match(a_part, b_part, &mut row);
        if size == 0 {
            continue;
        }
        matches += size;
        let (at_a, at_b) = (ra.start + at_a, rb.start + at_b);
        pending.push((ra.start..at_a, rb.start..at_b));
        pending.push((at_a + size..ra.end, at_b + size..rb.end));
    }
    Some(matches)
}

/// Longest common substring of `a` and `b` by dynamic programming over one rolling row
/// (`row` is scratch space at least `b.len() + 1` long): `(size, start in a, start in b)`.
/// Strictly-greater updates in row-major order keep the first-found maximum, which is
/// Python's tie-break (smallest start in `a`, then in `b`).
fn longest_match(a: &[char], b: &[char], row: &mut [usize]) -> (usize, usize, usize) {
    let (mut best, mut at_a, mut at_b) = (0, 0, 0);
    let row = &mut row[..=b.len()];
    row.fill(0);
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = 0;
        for (j, (cb, cell)) in b.iter().zip(&mut row[1..]).enumerate() {
            let above = *cell;
            *cell = if ca == cb { diagonal + 1 } else { 0 };
            if *cell > best {
                best = *cell;
                at_a = i + 1 - best;
                at_b = j + 1 - best;
            }
            diagonal = above;
        }
    }
    (best, at_a, at_b)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const POLICY: PasswordPolicy = PasswordPolicy { min_length: 8 };

    fn problems(raw: &str) -> Problems {
        POLICY
            .parse(raw, &["ada", "ada@example.com"])
            .err()
            .unwrap_or_default()
    }

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    fn ratio_of(a: &str, b: &str) -> Option<f64> {
        similarity(&chars(a), &chars(b), &mut Budget::default())
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
        // difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() for each pair.
        for (a, b, python) in [
            ("abcd", "bcde", 0.75),
            ("lovelace1", "lovelace", 16.0 / 17.0),
            ("abc", "xyz", 0.0),
            ("aabbaabb", "abababab", 0.75),
            ("hello world", "world hello", 5.0 / 11.0),
            ("ab.cd", "xabycdz", 2.0 / 3.0),
            ("qwertyuiop", "poiuytrewq", 0.1),
            ("mississippi", "misp", 8.0 / 15.0),
            ("", "", 1.0),
        ] {
            let ours = ratio_of(a, b).expect("within budget");
            assert!(
                (ours - python).abs() < 1e-9,
                "{a:?} {b:?}: {ours} != {python}"
            );
        }
    }

    /// The request: a 1,600-character password against a 3,200-character username
    /// took 5.9 s and reported the length problem beside the others.
    #[test]
    fn an_overlong_password_gets_only_the_length_message_and_no_matching() {
        let username = "azbz".repeat(800);
        let (verdict, work) = POLICY.parse_measured(&"ab".repeat(800), &[&username, "x"]);
        assert_eq!(
            verdict.err(),
            Some(vec![
                "Ensure this field has no more than 256 characters.".to_owned()
            ])
        );
        assert_eq!(work, SimilarityWork::default());
        let numeric_and_similar = "1".repeat(300);
        assert_eq!(
            POLICY
                .parse(&numeric_and_similar, &[&numeric_and_similar])
                .err()
                .map(|p| p.len()),
            Some(1)
        );
    }

    /// An attribute longer than any valid username or email is not compared at all, even
    /// with a password equal to it: the request fails on that field anyway.
    #[test]
    fn an_overlong_attribute_is_skipped() {
        let same = "lovelace".repeat(32);
        assert!(same.len() > ATTRIBUTE_MAX_CHARS && same.len() <= MAX_CHARS);
        let (verdict, work) = POLICY.parse_measured(&same, &[&same]);
        assert!(verdict.is_ok(), "{verdict:?}");
        assert_eq!(work.cells, 0);
        let (verdict, _) = POLICY.parse_measured(
            &same[..ATTRIBUTE_MAX_CHARS],
            &[&same[..ATTRIBUTE_MAX_CHARS]],
        );
        assert!(verdict.is_err(), "at the cap it is still compared");
    }

    #[test]
    fn django_length_ratio_and_quick_ratios_skip_the_matcher() {
        let password = chars(&"a".repeat(100));
        assert!(!may_be_similar(&password, &chars("aaa")), "length ratio");
        assert!(
            !may_be_similar(&chars("abcdefgh"), &chars("ab")),
            "real_quick_ratio"
        );
        assert!(
            !may_be_similar(&chars("abcdefgh"), &chars("ijklmnop")),
            "quick_ratio"
        );
        assert!(may_be_similar(&chars("qwertyuiop"), &chars("poiuytrewq")));
    }

    /// The worst shape the caps allow: every match one character long, so the matcher
    /// would fill about 7 million cells (9 ms of a release build, cubic in the caps). The
    /// budget stops it, and the verdict is fail-closed.
    #[test]
    fn the_budget_bounds_the_worst_case_and_fails_closed() {
        let attribute: Vec<char> = ('\u{4E00}'..).take(ATTRIBUTE_MAX_CHARS).collect();
        let evens_then_odds: String = attribute
            .iter()
            .step_by(2)
            .chain(attribute.iter().skip(1).step_by(2))
            .collect();
        let attribute: String = attribute.into_iter().collect();
        let (verdict, work) = POLICY.parse_measured(&evens_then_odds, &[&attribute]);
        assert!(
            work.exhausted && work.cells <= SIMILARITY_BUDGET,
            "{work:?}"
        );
        assert_eq!(
            verdict.err(),
            Some(vec![
                "The password is too similar to the username or email.".to_owned()
            ])
        );
    }

    #[test]
    fn an_exhausted_budget_spends_nothing_more() {
        let mut budget = Budget::default();
        budget.work.cells = SIMILARITY_BUDGET - 10;
        let (a, b) = (chars(&"ab".repeat(128)), chars(&"ba".repeat(127)));
        assert_eq!(similarity(&a, &b, &mut budget), None);
        assert_eq!(budget.work.cells, SIMILARITY_BUDGET - 10);
        assert!(budget.work.exhausted);
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

    /// Ratcliff/Obershelp written down as directly as possible (recursive, brute-force
    /// longest match), as the reference the iterative matcher must agree with.
    fn reference_matches(a: &[char], b: &[char]) -> usize {
        let mut best = (0, 0, 0);
        for i in 0..a.len() {
            for j in 0..b.len() {
                let k = (0..)
                    .take_while(|&k| i + k < a.len() && j + k < b.len() && a[i + k] == b[j + k])
                    .count();
                if k > best.0 {
                    best = (k, i, j);
                }
            }
        }
        let (k, i, j) = best;
        if k == 0 {
            return 0;
        }
        k + reference_matches(&a[..i], &b[..j]) + reference_matches(&a[i + k..], &b[j + k..])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn matcher_agrees_with_the_reference(a in "[abc]{0,24}", b in "[abc]{0,24}") {
            let (a, b) = (chars(&a), chars(&b));
            let mut budget = Budget::default();
            prop_assert_eq!(matching_chars(&a, &b, &mut budget), Some(reference_matches(&a, &b)));
        }
    }
}
