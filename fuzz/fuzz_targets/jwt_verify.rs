//! Token verification on arbitrary text: every header, encoding and signature shape an
//! attacker can send must be refused cleanly, never panic and never verify.
#![no_main]

use latchkey::auth::jwt::TokenType;
use latchkey_fuzz::TOKENS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    for expected in [None, Some(TokenType::Access), Some(TokenType::Refresh)] {
        assert!(
            TOKENS.verify(&token, expected).is_err(),
            "a token this run never signed verified: {token:?}"
        );
    }
});
