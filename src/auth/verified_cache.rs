//! Tokens whose signature was checked recently. A client presents the same access token
//! on every request for its whole lifetime, and the ECDSA verification is by far the
//! largest cost of serving it; remembering that exactly these bytes verified means the
//! signature is checked once per token and process instead of once per request.
//!
//! Entries are keyed by the SHA-256 of the complete token (header, claims and signature),
//! so only byte-identical tokens hit. What can change with time, `exp` and `nbf`, is
//! checked again on every hit; issuer, audience, algorithm and key cannot change for the
//! same bytes while the process runs (keys are loaded at start-up).
//!
//! The cache holds `jwt.verified_cache_entries` tokens: a deployment's working set of live
//! access tokens (one per signed-in client and access lifetime). `quick_cache` evicts by
//! S3-FIFO, one entry at a time, on sharded locks: a working set larger than the capacity
//! costs extra verifications for the tokens that miss, never a cleared cache for all, and
//! a one-off scan of many tokens (a client replaying old ones) does not push out the
//! tokens in steady use.

use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use prometheus_client::metrics::counter::Counter;
use quick_cache::sync::Cache;

use super::jwt::{TokenError, TokenType, Verified};

type Digest = [u8; 32];

pub struct VerifiedCache {
    /// `None` when configured to hold nothing.
    entries: Option<Cache<Digest, Arc<Verified>>>,
    leeway: i64,
    /// Lookups that found the token, and access tokens that were not found (then verified
    /// in full): the ratio tells whether `jwt.verified_cache_entries` holds the working set.
    hits: Counter,
    misses: Counter,
}

fn key(token: &str) -> Digest {
    let mut key = [0; 32];
    key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    key
}

impl VerifiedCache {
    /// A cache of at most about `capacity` tokens; 0 turns it off.
    pub fn new(capacity: usize, leeway_secs: u64) -> Self {
        Self {
            entries: (capacity > 0).then(|| Cache::new(capacity)),
            leeway: i64::try_from(leeway_secs).unwrap_or(i64::MAX),
            hits: Counter::default(),
            misses: Counter::default(),
        }
    }

    /// Counts lookups into these (registered) counters from now on.
    pub fn count_lookups(&mut self, hits: Counter, misses: Counter) {
        self.hits = hits;
        self.misses = misses;
    }

    /// The earlier verification of `token`, if it is still within its lifetime at `now`
    /// (seconds since the epoch) under the same rules as the full check.
    pub fn get(&self, token: &str, now: i64) -> Option<Result<Arc<Verified>, TokenError>> {
        let verified = self.entries.as_ref()?.get(&key(token))?;
        self.hits.inc();
        if verified.expires_at < now.saturating_sub(self.leeway) {
            return Some(Err(TokenError("token has expired")));
        }
        if verified
            .not_before
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Some(Err(TokenError("token is not valid yet")));
        }
        Some(Ok(verified))
    }

    /// Counts an access token that was not found and is being verified in full. Refresh
    /// tokens are never held, so counting them would only hide the access tokens' ratio.
    pub fn count_miss(&self) {
        if self.entries.is_some() {
            self.misses.inc();
        }
    }

    /// Remembers an access token that passed the full verification. Refresh tokens are
    /// not remembered: each is presented once, and checking one is an HMAC.
    pub fn insert(&self, token: &str, verified: &Arc<Verified>) {
        if let Some(entries) = &self.entries
            && verified.token_type == TokenType::Access
        {
            entries.insert(key(token), Arc::clone(verified));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::to_raw_value;

    use super::*;

    fn verified(exp: i64, nbf: i64) -> Arc<Verified> {
        Arc::new(Verified {
            token_type: TokenType::Access,
            subject: "u".into(),
            session: None,
            passed_otp: false,
            expires_at: exp,
            not_before: Some(nbf),
            claims: to_raw_value(&serde_json::json!({"sub": "u", "exp": exp, "nbf": nbf}))
                .expect("json"),
        })
    }

    #[test]
    fn hits_only_identical_tokens_and_rechecks_lifetime() {
        let cache = VerifiedCache::new(16, 30);
        cache.insert("a.b.c", &verified(1_000, 500));
        assert!(cache.get("a.b.d", 600).is_none());
        assert!(matches!(cache.get("a.b.c", 600), Some(Ok(_))));
        // Leeway applies both ways, as in the full check.
        assert!(matches!(cache.get("a.b.c", 1_030), Some(Ok(_))));
        assert!(matches!(cache.get("a.b.c", 1_031), Some(Err(_))));
        assert!(matches!(cache.get("a.b.c", 469), Some(Err(_))));
    }

    #[test]
    fn stays_bounded_and_keeps_the_tokens_in_use() {
        let cache = VerifiedCache::new(1_000, 0);
        let hot: Vec<String> = (0..100).map(|n| format!("hot-{n}")).collect();
        for (n, token) in hot.iter().enumerate() {
            cache.insert(token, &verified(10_000, 0));
            assert!(cache.get(&hot[n], 0).is_some());
        }
        // Ten times the capacity of one-off tokens, the hot ones still presented throughout.
        for n in 0..10_000 {
            cache.insert(&format!("cold-{n}"), &verified(10_000, 0));
            let _ = cache.get(&hot[n % hot.len()], 0);
        }
        let entries = cache.entries.as_ref().expect("on");
        assert!(entries.len() <= 1_100, "{} entries", entries.len());
        let kept = hot.iter().filter(|t| cache.get(t, 0).is_some()).count();
        assert!(kept >= 90, "only {kept} of 100 hot tokens kept");
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let cache = VerifiedCache::new(0, 0);
        cache.insert("a.b.c", &verified(10_000, 0));
        assert!(cache.get("a.b.c", 0).is_none());
    }
}
