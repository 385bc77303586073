//! Stateless activation, password-reset and email-change tokens (Django's
//! `default_token_generator` idea).
//!
//! A token is `<unix seconds>-<HMAC-SHA256>` over a label naming its purpose, the user
//! state it is bound to, and the timestamp. Nothing is stored: the token stops working
//! when it expires or when any of those values changes, which is exactly what using it
//! does. Activation and reset tokens are bound to the user id, the current password hash,
//! `last_login` and the email-verified flag (activation verifies the email; a reset
//! changes the password hash; logging in moves `last_login`). Email-change tokens are
//! bound to the user id, the password hash, the current address, the requested one and
//! when it was requested (confirming replaces the address and clears the request; a newer
//! request replaces the request; a password change ends it): not to `last_login`, since
//! whoever changes an address may well sign in again before the mail arrives.
//!
//! Every message starts with its purpose's label and separates its fields with NUL, which
//! no field can contain, so no token of one purpose or binding is a token of another.

use std::time::Duration;

use aws_lc_rs::{hkdf, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Activation,
    PasswordReset,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Activation => b"activation",
            Self::PasswordReset => b"password-reset",
        }
    }
}

/// The label of email-change tokens. Not a [`Purpose`]: those are the tokens bound by a
/// [`Binding`], and an email change is bound to other state ([`EmailChangeBinding`]).
const EMAIL_CHANGE_LABEL: &[u8] = b"email-change";

/// The user state an activation or reset token is bound to.
pub struct Binding<'a> {
    pub user_id: &'a str,
    pub password_hash: &'a str,
    pub last_login: Option<NaiveDateTime>,
    pub email_verified: bool,
    /// The address the link was mailed to: once the account moves to another one, a link
    /// still in the old mailbox must not reset the password (Django binds it too).
    pub email: &'a str,
}

/// The user state an email-change token is bound to: the request as the row records it.
pub struct EmailChangeBinding<'a> {
    pub user_id: &'a str,
    pub password_hash: &'a str,
    /// The current address, which confirming replaces.
    pub email: &'a str,
    /// The requested address.
    pub new_email: &'a str,
    /// When it was requested (as stored, in microseconds); a newer request replaces it.
    pub requested_at: NaiveDateTime,
}

pub struct AccountTokens {
    key: hmac::Key,
}

/// Tokens from more than this far in the future (clock skew between replicas) are refused.
const MAX_FUTURE_SECS: i64 = 60;

impl AccountTokens {
    /// Keys the tokens with HKDF-SHA256 of `secret` under a fixed label, so the HMAC key is
    /// independent of whatever else the secret is used for.
    pub fn new(secret: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"latchkey").extract(secret);
        let key = match prk.expand(&[b"latchkey account tokens v1"], hmac::HMAC_SHA256) {
            Ok(okm) => hmac::Key::from(okm),
            // Unreachable: HMAC_SHA256's key length is well within HKDF's output limit.
            Err(_) => hmac::Key::new(hmac::HMAC_SHA256, secret),
        };
        Self { key }
    }

    pub fn make(&self, purpose: Purpose, binding: &Binding<'_>, now: DateTime<Utc>) -> String {
        self.sign(now, |ts| message(purpose, binding, ts))
    }

    /// Whether `token` was made for this purpose and this exact user state, within `ttl`.
    pub fn check(
        &self,
        purpose: Purpose,
        binding: &Binding<'_>,
        token: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> bool {
        self.verify(token, now, ttl, |ts| message(purpose, binding, ts))
    }

    pub fn make_email_change(
        &self,
        binding: &EmailChangeBinding<'_>,
        now: DateTime<Utc>,
    ) -> String {
        self.sign(now, |ts| email_change_message(binding, ts))
    }

    /// Whether `token` was made for this exact email change, within `ttl`.
    pub fn check_email_change(
        &self,
        binding: &EmailChangeBinding<'_>,
        token: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> bool {
        self.verify(token, now, ttl, |ts| email_change_message(binding, ts))
    }

    fn sign(&self, now: DateTime<Utc>, message: impl Fn(i64) -> Vec<u8>) -> String {
        let ts = now.timestamp();
        let tag = hmac::sign(&self.key, &message(ts));
        format!("{ts}-{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    fn verify(
        &self,
        token: &str,
        now: DateTime<Utc>,
        ttl: Duration,
        message: impl Fn(i64) -> Vec<u8>,
    ) -> bool {
        let Some((ts, tag)) = token.trim().split_once('-') else {
            return false;
        };
        let (Ok(ts), Ok(tag)) = (ts.parse::<i64>(), URL_SAFE_NO_PAD.decode(tag)) else {
            return false;
        };
        let age = now.timestamp().saturating_sub(ts);
        let fresh =
            age >= -MAX_FUTURE_SECS && u64::try_from(age).map_or(true, |age| age <= ttl.as_secs());
        // Constant-time comparison of the tag.
        fresh && hmac::verify(&self.key, &message(ts), &tag).is_ok()
    }
}

/// A timestamp as the message spells it: microseconds since the epoch.
fn micros(t: NaiveDateTime) -> String {
    t.and_utc().timestamp_micros().to_string()
}

fn message(purpose: Purpose, b: &Binding<'_>, ts: i64) -> Vec<u8> {
    let last_login = b.last_login.map(micros).unwrap_or_default();
    let ts = ts.to_string();
    let verified: &[u8] = if b.email_verified { b"1" } else { b"0" };
    // NUL-separated: no field can contain a NUL, so no two bindings share a message.
    [
        purpose.label(),
        b.user_id.as_bytes(),
        b.password_hash.as_bytes(),
        last_login.as_bytes(),
        verified,
        b.email.as_bytes(),
        ts.as_bytes(),
    ]
    .join(&0u8)
}

fn email_change_message(b: &EmailChangeBinding<'_>, ts: i64) -> Vec<u8> {
    let requested_at = micros(b.requested_at);
    let ts = ts.to_string();
    [
        EMAIL_CHANGE_LABEL,
        b.user_id.as_bytes(),
        b.password_hash.as_bytes(),
        b.email.as_bytes(),
        b.new_email.as_bytes(),
        requested_at.as_bytes(),
        ts.as_bytes(),
    ]
    .join(&0u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3600);

    fn binding(verified: bool) -> Binding<'static> {
        Binding {
            user_id: "u1",
            password_hash: "h1",
            last_login: None,
            email_verified: verified,
            email: "ada@example.com",
        }
    }

    #[test]
    fn a_token_works_for_its_purpose_and_state_only() {
        let tokens = AccountTokens::new(b"0123456789abcdef0123456789abcdef");
        let now = Utc::now();
        let t = tokens.make(Purpose::Activation, &binding(false), now);
        assert!(tokens.check(Purpose::Activation, &binding(false), &t, now, TTL));
        assert!(
            !tokens.check(Purpose::PasswordReset, &binding(false), &t, now, TTL),
            "other purpose"
        );
        assert!(
            !tokens.check(Purpose::Activation, &binding(true), &t, now, TTL),
            "used: email now verified"
        );
        let changed = Binding {
            password_hash: "h2",
            ..binding(false)
        };
        assert!(
            !tokens.check(Purpose::Activation, &changed, &t, now, TTL),
            "password changed"
        );
        let moved = Binding {
            email: "ada@new.example",
            ..binding(false)
        };
        assert!(
            !tokens.check(Purpose::Activation, &moved, &t, now, TTL),
            "email changed"
        );
        let other_key = AccountTokens::new(b"another secret, also 32 bytes long");
        assert!(
            !other_key.check(Purpose::Activation, &binding(false), &t, now, TTL),
            "forged"
        );
    }

    #[test]
    fn tokens_expire_and_garbage_is_refused() {
        let tokens = AccountTokens::new(b"0123456789abcdef0123456789abcdef");
        let then = Utc::now() - chrono::Duration::seconds(3601);
        let t = tokens.make(Purpose::PasswordReset, &binding(true), then);
        assert!(!tokens.check(Purpose::PasswordReset, &binding(true), &t, Utc::now(), TTL));
        assert!(tokens.check(Purpose::PasswordReset, &binding(true), &t, then, TTL));
        for junk in ["", "-", "abc-def", "123-!!", "9999999999999999999999-AAAA"] {
            assert!(
                !tokens.check(
                    Purpose::PasswordReset,
                    &binding(true),
                    junk,
                    Utc::now(),
                    TTL
                ),
                "{junk}"
            );
        }
    }

    fn change(new_email: &'static str, requested_at: NaiveDateTime) -> EmailChangeBinding<'static> {
        EmailChangeBinding {
            user_id: "u1",
            password_hash: "h1",
            email: "old@example.com",
            new_email,
            requested_at,
        }
    }

    #[test]
    fn an_email_change_token_is_bound_to_its_request() {
        let tokens = AccountTokens::new(b"0123456789abcdef0123456789abcdef");
        let now = Utc::now();
        let at = now.naive_utc();
        let t = tokens.make_email_change(&change("new@example.com", at), now);
        assert!(tokens.check_email_change(&change("new@example.com", at), &t, now, TTL));
        assert!(
            !tokens.check_email_change(&change("other@example.com", at), &t, now, TTL),
            "another address"
        );
        let later = at + chrono::Duration::microseconds(1);
        assert!(
            !tokens.check_email_change(&change("new@example.com", later), &t, now, TTL),
            "superseded by a later request"
        );
        let moved = EmailChangeBinding {
            email: "new@example.com",
            ..change("new@example.com", at)
        };
        assert!(
            !tokens.check_email_change(&moved, &t, now, TTL),
            "used: the address is the new one now"
        );
        let changed = EmailChangeBinding {
            password_hash: "h2",
            ..change("new@example.com", at)
        };
        assert!(
            !tokens.check_email_change(&changed, &t, now, TTL),
            "password changed"
        );
        let later = now + chrono::Duration::seconds(3601);
        assert!(
            !tokens.check_email_change(&change("new@example.com", at), &t, later, TTL),
            "expired"
        );
        // Other purposes' tokens for the same user are not email-change tokens.
        for purpose in [Purpose::Activation, Purpose::PasswordReset] {
            let other = tokens.make(purpose, &binding(true), now);
            assert!(!tokens.check_email_change(&change("new@example.com", at), &other, now, TTL));
        }
    }
}
