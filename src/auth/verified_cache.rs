//! Tokens whose signature was checked recently. A client presents the same access token
//! on every request for its whole lifetime, and the ECDSA verification is by far the
//! largest cost of serving it; remembering that exactly these bytes verified means the
//! signature is checked once per token and process instead of once per request.
//!
//! Entries are keyed by the SHA-256 of the complete token (header, claims and signature),
//! so only byte-identical tokens hit. What can change with time, `exp` and `nbf`, is
//! checked again on every hit; issuer, audience, algorithm and key cannot change for the
//! same bytes while the process runs (keys are loaded at start-up). The cache is bounded:
//! when full, expired entries go, and if that frees nothing, all of them.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::digest::{SHA256, digest};

use super::jwt::{TokenError, Verified};

/// At most this many tokens are remembered (a few hundred KiB).
const CAPACITY: usize = 1024;

type Digest = [u8; 32];

#[derive(Clone)]
struct Entry {
    verified: Verified,
    exp: i64,
    nbf: Option<i64>,
}

pub struct VerifiedCache {
    entries: Mutex<HashMap<Digest, Entry>>,
    leeway: i64,
}

fn key(token: &str) -> Digest {
    let mut key = [0; 32];
    key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    key
}

impl VerifiedCache {
    pub fn new(leeway_secs: u64) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            leeway: i64::try_from(leeway_secs).unwrap_or(i64::MAX),
        }
    }

    /// The earlier verification of `token`, if it is still within its lifetime at `now`
    /// (seconds since the epoch) under the same rules as the full check.
    pub fn get(&self, token: &str, now: i64) -> Option<Result<Verified, TokenError>> {
        let entry = self.lock().get(&key(token)).cloned()?;
        if entry.exp < now.saturating_sub(self.leeway) {
            return Some(Err(TokenError("token has expired")));
        }
        if entry
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Some(Err(TokenError("token is not valid yet")));
        }
        Some(Ok(entry.verified))
    }

    /// Remembers a token that passed the full verification.
    pub fn insert(&self, token: &str, verified: &Verified, now: i64) {
        let Some(exp) = verified
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
        else {
            return;
        };
        let nbf = verified
            .claims
            .get("nbf")
            .and_then(serde_json::Value::as_i64);
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| e.exp >= now.saturating_sub(self.leeway));
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        let entry = Entry {
            verified: verified.clone(),
            exp,
            nbf,
        };
        entries.insert(key(token), entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::jwt::TokenType;

    fn verified(exp: i64, nbf: i64) -> Verified {
        let serde_json::Value::Object(claims) = json!({"sub": "u", "exp": exp, "nbf": nbf}) else {
            unreachable!()
        };
        Verified {
            token_type: TokenType::Access,
            subject: "u".into(),
            claims,
        }
    }

    #[test]
    fn hits_only_identical_tokens_and_rechecks_lifetime() {
        let cache = VerifiedCache::new(30);
        cache.insert("a.b.c", &verified(1_000, 500), 600);
        assert!(cache.get("a.b.d", 600).is_none());
        assert!(matches!(cache.get("a.b.c", 600), Some(Ok(_))));
        // Leeway applies both ways, as in the full check.
        assert!(matches!(cache.get("a.b.c", 1_030), Some(Ok(_))));
        assert!(matches!(cache.get("a.b.c", 1_031), Some(Err(_))));
        assert!(matches!(cache.get("a.b.c", 469), Some(Err(_))));
    }

    #[test]
    fn stays_bounded() {
        let cache = VerifiedCache::new(0);
        for n in 0..(CAPACITY * 3) {
            cache.insert(&format!("token-{n}"), &verified(10_000, 0), 0);
        }
        assert!(cache.lock().len() <= CAPACITY);
    }
}
