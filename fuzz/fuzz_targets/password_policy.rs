//! The password policy on an arbitrary password and attributes: never a panic, and its
//! similarity work within the budget whatever the input (asserted on the work count, so a
//! slow input is a crash here, not a timing).
#![no_main]

use latchkey::domain::{PasswordPolicy, SIMILARITY_BUDGET};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, Vec<&str>)| {
    let (password, attributes) = input;
    let (verdict, work) = PasswordPolicy { min_length: 8 }.parse_measured(password, &attributes);
    assert!(work.cells <= SIMILARITY_BUDGET, "{work:?}");
    if password.chars().count() > 256 {
        assert_eq!(work.cells, 0, "nothing runs on an over-long password");
    }
    if work.exhausted {
        assert!(verdict.is_err(), "fail-closed");
    }
});
