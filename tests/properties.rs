//! Property tests of the domain parsers and the password policy on hostile input:
//! arbitrary Unicode biased towards what breaks parsers (control characters, NUL,
//! compatibility forms, combining marks, characters NFKC expands), and inputs up to the
//! 64 KiB body limit. Each must never panic, must bound its work (the password policy's
//! matcher is asserted on its cell count, not on time), and must give the same answer for
//! a text and its NFKC form where names are NFKC-insensitive (usernames, as API.md says;
//! group names and email keys, as `src/domain` decides).
//!
//! Case counts are modest so a debug `cargo test` stays quick; raise them for a deeper run
//! with `PROPTEST_CASES=10000 cargo test --release --test properties`.

use latchkey::domain::{
    CLAIMS_MAX_BYTES, CustomClaims, Email, GroupName, PasswordPolicy, RESERVED_CLAIMS,
    SIMILARITY_BUDGET, UserId, Username, check_bio, check_name,
};
use proptest::prelude::*;
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

/// `cases` cases, unless `PROPTEST_CASES` asks for another number.
fn cases(cases: u32) -> ProptestConfig {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(cases)
    }
}

/// The request body limit: no field can be longer.
const BODY_LIMIT: usize = 64 * 1024;

fn nfkc(s: &str) -> String {
    s.nfkc().collect()
}

/// One character, drawn mostly from the classes that trouble parsers.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::char::range('a', 'z'),
        1 => prop::char::range('A', 'Z'),
        1 => prop::char::range('0', '9'),
        1 => prop::sample::select(vec!['@', '.', '+', '-', '_', ':', ' ', '/', '%']),
        1 => prop::char::range('\0', '\u{1f}'),
        1 => prop::char::range('\u{7f}', '\u{9f}'),
        1 => prop::char::range('\u{ff01}', '\u{ff5e}'), // fullwidth ASCII
        1 => prop::char::range('\u{300}', '\u{36f}'),   // combining marks
        1 => prop::sample::select(vec![
            '\u{fdfa}', '\u{fb01}', '\u{2126}', '\u{212a}', '\u{130}', '\u{1d41a}', '\u{1100}',
            '\u{1161}', '\u{11a8}', '\u{345}', '\u{3a3}', '\u{200d}', '\u{202e}', '\u{fffd}',
        ]),
        2 => any::<char>(),
    ]
}

/// Short hostile text, the size of real fields.
fn short_text() -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_char(), 0..40).prop_map(|cs| cs.into_iter().collect())
}

/// Text from empty up to the body limit: short, or a short piece repeated (cheap to make
/// and to shrink, and the shape of most algorithmic attacks).
fn text() -> impl Strategy<Value = String> {
    let huge = (
        prop::collection::vec(hostile_char(), 1..8),
        1usize..BODY_LIMIT,
    )
        .prop_map(|(piece, len)| {
            let piece: String = piece.into_iter().collect();
            let mut s = piece.repeat(len / piece.len() + 1);
            let mut end = len.min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s
        });
    prop_oneof![4 => short_text(), 1 => huge]
}

/// Arbitrary JSON, hostile strings in keys and values, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        short_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((short_text(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn username_is_nfkc_insensitive_and_bounded(raw in text()) {
        let parsed = Username::parse(&raw);
        prop_assert_eq!(&parsed, &Username::parse(&nfkc(&raw)));
        prop_assert_eq!(Username::key_of(&raw), Username::key_of(&nfkc(&raw)));
        prop_assert!(!Username::key_of(&raw).contains('\0'));
        if let Ok(name) = parsed {
            let stored = name.as_str();
            prop_assert_eq!(stored, nfkc(stored));
            prop_assert!((1..=150).contains(&stored.chars().count()));
            prop_assert_eq!(name.key(), Username::key_of(&raw), "login finds the account");
            prop_assert_eq!(Username::parse(stored), Ok(name.clone()));
        }
    }

    #[test]
    fn email_is_bounded_and_its_key_is_the_lookup_key(raw in text()) {
        prop_assert!(!Email::key_of(&raw).contains('\0'));
        prop_assert_eq!(Email::key_of(&raw), Email::key_of(&nfkc(&raw)));
        if let Ok(email) = Email::parse(&raw) {
            prop_assert!(email.as_str().len() <= 254 && !email.as_str().contains('\0'));
            prop_assert_eq!(email.key(), Email::key_of(&raw));
            prop_assert_eq!(Email::parse(email.as_str()), Ok(email.clone()), "stable once stored");
        }
    }

    #[test]
    fn group_name_is_nfkc_insensitive_and_bounded(raw in text()) {
        let parsed = GroupName::parse(&raw);
        prop_assert_eq!(&parsed, &GroupName::parse(&nfkc(&raw)));
        if let Ok(name) = parsed {
            prop_assert_eq!(name.as_str(), nfkc(name.as_str()));
            prop_assert!((1..=150).contains(&name.as_str().chars().count()));
        }
    }

    #[test]
    fn uid_parsing_never_panics_and_round_trips(raw in text(), bytes in any::<u128>()) {
        if let Some(id) = UserId::from_uid(&raw) {
            prop_assert_eq!(UserId::from_uid(&id.to_uid()), Some(id));
        }
        let id: UserId = uuid::Uuid::from_u128(bytes).to_string().parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(UserId::from_uid(&id.to_uid()), Some(id));
    }

    #[test]
    fn free_text_never_holds_nul_or_runs_long(raw in text()) {
        if check_name(&raw).is_ok() {
            prop_assert!(raw.chars().count() <= 150 && !raw.chars().any(char::is_control));
        }
        if check_bio(&raw).is_ok() {
            prop_assert!(!raw.contains('\0'));
        }
    }

    #[test]
    fn claims_never_hold_nul_reserved_names_or_more_than_4_kib(value in json()) {
        if let Ok(claims) = CustomClaims::parse(value) {
            let stored = claims.to_json();
            prop_assert!(stored.len() <= CLAIMS_MAX_BYTES);
            prop_assert!(!stored.contains("\\u0000"), "{}", stored);
            let object: Map<String, Value> = serde_json::from_str(&stored).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert!(object.keys().all(|k| !RESERVED_CLAIMS.contains(&k.as_str())));
        }
    }
}

/// A password and attributes shaped to reach the matcher: an attribute that is the
/// password shuffled has the same characters, so it passes the `quick_ratio` filter, and a
/// small alphabet at lengths near the caps makes every match short and the tables large.
fn matcher_food() -> impl Strategy<Value = (String, Vec<String>)> {
    let small_alphabet = |max: usize| {
        prop::collection::vec(prop::char::range('a', 'e'), 0..max)
            .prop_map(|cs| cs.into_iter().collect::<String>())
    };
    let password = prop_oneof![2 => small_alphabet(260), 1 => text()];
    password.prop_flat_map(move |password| {
        let chars: Vec<char> = password.chars().take(254).collect();
        let shuffled = Just(chars)
            .prop_shuffle()
            .prop_map(|cs| cs.into_iter().collect::<String>());
        let attribute = prop_oneof![3 => shuffled, 1 => small_alphabet(300), 1 => text()];
        (Just(password), prop::collection::vec(attribute, 0..3))
    })
}

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn password_policy_work_is_bounded((password, attributes) in matcher_food()) {
        let attributes: Vec<&str> = attributes.iter().map(String::as_str).collect();
        let policy = PasswordPolicy { min_length: 8 };
        let (verdict, work) = policy.parse_measured(&password, &attributes);
        prop_assert!(work.cells <= SIMILARITY_BUDGET, "{:?}", work);
        if password.chars().count() > 256 {
            prop_assert_eq!(work.cells, 0, "nothing runs on an over-long password");
            prop_assert_eq!(verdict.err().map(|p| p.len()), Some(1));
        } else if work.exhausted {
            prop_assert!(verdict.is_err(), "fail-closed");
        } else if let Ok(accepted) = verdict {
            prop_assert_eq!(accepted.expose(), password.as_str());
        }
    }
}
