//! Verification of tokens correctly signed with the service's own key over an arbitrary
//! header extension and payload: the claim checks after the signature (types of `exp`,
//! `nbf`, `iss`, `aud`, `sub`, `token_type`, huge numbers) must refuse or accept cleanly,
//! and an accepted token must carry what verification promises.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey::auth::jwt::TokenType;
use latchkey_fuzz::{AUDIENCE, ISSUER, TOKENS};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Raw payload bytes (usually not JSON), or, when `as_claims`, JSON merged over a
    /// plausible claim set so the fuzzer starts near a valid token.
    payload: &'a str,
    as_claims: bool,
    /// Replaces the header's `typ`, which jsonwebtoken parses but does not check.
    typ: Option<&'a str>,
}

fuzz_target!(|input: Input| {
    let keys = TOKENS.keys();
    let mut header = json!({"alg": "ES256", "kid": keys.signing_kid, "typ": "JWT"});
    if let Some(typ) = input.typ {
        header["typ"] = json!(typ);
    }
    let payload = if input.as_claims {
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "u1", "token_type": "access",
            "exp": 4_000_000_000u64, "iat": 0, "jti": "j",
        });
        if let (Some(base), Ok(Value::Object(extra))) = (
            claims.as_object_mut(),
            serde_json::from_str::<Value>(input.payload),
        ) {
            base.extend(extra);
        }
        claims.to_string()
    } else {
        input.payload.to_owned()
    };
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &keys.encoding, keys.algorithm)
        .expect("signing with the service's own key");
    let token = format!("{message}.{signature}");
    if let Ok(verified) = TOKENS.verify(&token, None) {
        let claims: Value = serde_json::from_str(verified.claims.get()).expect("claims are JSON");
        assert_eq!(claims.get("sub"), Some(&json!(verified.subject)));
        assert_eq!(claims.get("exp"), Some(&json!(verified.expires_at)));
        let refresh = verified.token_type == TokenType::Refresh;
        assert_eq!(
            TOKENS.verify(&token, Some(TokenType::Refresh)).is_ok(),
            refresh
        );
    }
});
