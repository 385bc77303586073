//! TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps), the encryption of TOTP secrets
//! at rest, recovery codes and the opaque `mfa_token` of the second login step.
//!
//! RFC 6238 is implemented here on aws-lc-rs's HMAC-SHA-1 (about forty lines, tested
//! against the RFC's SHA-1 vectors) rather than with a TOTP crate: aws-lc-rs is already
//! the project's one cryptography library, and the pieces a crate would add (parsing
//! `otpauth://` URIs, other algorithms, QR rendering) are either not needed or done by
//! `qrcode` alone.
//!
//! Secrets are sealed with AES-256-GCM under a key derived by HKDF-SHA256 from the account
//! token secret with a label of its own (the key does nothing else), and the user id as
//! associated data, so a sealed secret copied to another user's row does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, RandomizedNonceKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{digest, hkdf, hmac};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Seconds per step.
pub const PERIOD: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
const SECRET_LEN: usize = 20;
/// Recovery codes handed out at a time.
pub const RECOVERY_CODES: usize = 10;

/// The HOTP value (RFC 4226 §5.3) of `secret` at `counter`, as `DIGITS` digits.
pub fn hotp(secret: &[u8], counter: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!(
        "{:0width$}",
        binary % 10u32.pow(DIGITS),
        width = DIGITS as usize
    )
}

/// The step a Unix time falls in.
pub fn step_at(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(PERIOD)
}

/// The step among `now`'s and its two neighbours (clock skew) whose code is `code`, if any.
/// Every candidate is compared, in constant time, so timing does not tell which matched.
pub fn matching_step(secret: &[u8], code: &str, unix_seconds: i64) -> Option<i64> {
    let now = step_at(unix_seconds);
    let mut found = None;
    for step in [now - 1, now, now + 1] {
        let Ok(counter) = u64::try_from(step) else {
            continue;
        };
        let expected = hotp(secret, counter);
        if verify_slices_are_equal(expected.as_bytes(), code.as_bytes()).is_ok() {
            found = Some(step);
        }
    }
    found
}

/// A fresh random secret.
pub fn new_secret() -> Result<Vec<u8>, TotpError> {
    let mut secret = vec![0u8; SECRET_LEN];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| TotpError)?;
    Ok(secret)
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding, as authenticator apps take it.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Whether `code` looks like a TOTP code (six ASCII digits) rather than a recovery code.
pub fn is_totp_code(code: &str) -> bool {
    code.len() == DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit())
}

/// A normalised recovery code: lower case, without spaces or dashes (`xxxx-xxxx` as shown).
pub fn normalise_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// SHA-256 (hex) of a normalised recovery code, or of an `mfa_token`: both are random and
/// high-entropy, so a fast hash is enough for what the database keeps.
pub fn sha256_hex(text: &str) -> String {
    digest::digest(&digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Ten new recovery codes as shown (`xxxx-xxxx`, 40 bits each from a 32-letter alphabet
/// without look-alikes) and their hashes.
pub fn new_recovery_codes() -> Result<Vec<(String, String)>, TotpError> {
    const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz123456789";
    let rng = SystemRandom::new();
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 8];
            rng.fill(&mut bytes).map_err(|_| TotpError)?;
            let chars: String = bytes
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
                .collect();
            let shown = format!("{}-{}", &chars[..4], &chars[4..]);
            let hash = sha256_hex(&normalise_recovery_code(&shown));
            Ok((shown, hash))
        })
        .collect()
}

/// A new opaque `mfa_token` (32 random bytes, base64url) and its hash.
pub fn new_mfa_token() -> Result<(String, String), TotpError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TotpError)?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = sha256_hex(&token);
    Ok((token, hash))
}

#[derive(Debug, thiserror::Error)]
#[error("TOTP secret cryptography failed")]
pub struct TotpError;

/// Seals and opens TOTP secrets (AES-256-GCM, random nonces).
pub struct SecretBox {
    key: RandomizedNonceKey,
}

impl SecretBox {
    /// The key is HKDF-SHA256 of `material` (the account token secret or the signing key)
    /// under a label used for nothing else.
    pub fn new(material: &[u8]) -> Result<Self, TotpError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"latchkey").extract(material);
        let mut key = [0u8; 32];
        prk.expand(&[b"latchkey totp secrets v1"], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| TotpError)?;
        let key = RandomizedNonceKey::new(&AES_256_GCM, &key).map_err(|_| TotpError)?;
        Ok(Self { key })
    }

    /// base64 of nonce, ciphertext and tag; `user_id` is bound as associated data.
    pub fn seal(&self, user_id: &str, secret: &[u8]) -> Result<String, TotpError> {
        let mut data = secret.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(user_id.as_bytes()), &mut data)
            .map_err(|_| TotpError)?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&data);
        Ok(STANDARD.encode(out))
    }

    pub fn open(&self, user_id: &str, sealed: &str) -> Result<Vec<u8>, TotpError> {
        let raw = STANDARD.decode(sealed).map_err(|_| TotpError)?;
        if raw.len() < NONCE_LEN {
            return Err(TotpError);
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let nonce =
            aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| TotpError)?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(user_id.as_bytes()), &mut data)
            .map_err(|_| TotpError)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (8 digits there; the last 6 are ours).
    #[test]
    fn rfc_6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        let vectors = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, code) in vectors {
            let counter = u64::try_from(step_at(time)).unwrap();
            assert_eq!(hotp(secret, counter), &code[2..], "t = {time}");
            assert_eq!(matching_step(secret, &code[2..], time), Some(step_at(time)));
        }
    }

    #[test]
    fn skew_of_one_step_either_way_and_no_more() {
        let secret = b"12345678901234567890";
        let code = hotp(secret, 1000);
        assert_eq!(matching_step(secret, &code, 999 * 30), Some(1000));
        assert_eq!(matching_step(secret, &code, 1001 * 30 + 29), Some(1000));
        assert_eq!(matching_step(secret, &code, 1002 * 30), None);
    }

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }

    #[test]
    fn sealed_secrets_open_only_for_their_user() {
        let sealer = SecretBox::new(b"some key material of thirty-two bytes").unwrap();
        let sealed = sealer.seal("alice", b"secret").unwrap();
        assert_eq!(sealer.open("alice", &sealed).unwrap(), b"secret");
        assert!(sealer.open("bob", &sealed).is_err());
        assert!(!sealed.contains(&base32(b"secret")));
    }

    #[test]
    fn recovery_codes_look_like_their_format() {
        let codes = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        for (shown, hash) in codes {
            assert_eq!(shown.len(), 9);
            assert_eq!(&shown[4..5], "-");
            assert_eq!(
                sha256_hex(&normalise_recovery_code(&shown.to_uppercase())),
                hash
            );
        }
    }
}
