//! The per-account credential limit, on top of the per-IP `login` scope: password checks
//! against one account (logins naming it, and `current_password` checks by its owner) are
//! limited to the `throttle.login` rate whatever the number of addresses they come from,
//! so a botnet cannot guess one account's password at its size times the IP limit, and a
//! stolen access token cannot be used to guess `current_password` at the `user` rate.
//!
//! A login naming nobody is counted under the name it gave, so an unknown name is
//! throttled exactly like a known one (nothing to enumerate). Every attempt counts, right
//! or wrong: a person does not sign in ten times a minute, and counting before the check
//! keeps an over-limit attempt from costing a bcrypt.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_governor::governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use super::shared_throttle::{RedisLimits, Verdict, account_key};
use super::throttle::retry_after;
use crate::config::{Rate, ThrottleSettings};

/// Whose credentials an attempt checks.
pub enum Account<'a> {
    /// A known user, by id.
    User(&'a str),
    /// A login name that matched nobody (its lookup key).
    Unknown(&'a str),
}

pub struct AccountLimit {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    rate: Rate,
    /// With `throttle.redis_url`: the limit is shared by every replica, and `limiter` is
    /// the fallback.
    shared: Option<Arc<RedisLimits>>,
}

impl AccountLimit {
    pub fn new(settings: &ThrottleSettings, shared: Option<Arc<RedisLimits>>) -> Self {
        let rate = settings.login;
        let limiter = settings.enabled.then(|| {
            let burst = NonZeroU32::new(rate.count).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::with_period(rate.replenish_interval())
                .unwrap_or_else(|| Quota::per_second(burst))
                .allow_burst(burst);
            RateLimiter::keyed(quota)
        });
        Self {
            limiter,
            rate,
            shared,
        }
    }

    /// Counts one password check against `account`; 429 `throttled` when over the limit.
    pub async fn check(&self, account: Account<'_>) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let key = match account {
            Account::User(id) => format!("user:{id}"),
            Account::Unknown(name) => format!("name:{name}"),
        };
        if let Some(shared) = &self.shared {
            match shared.check(&[(account_key(&key), self.rate)]).await {
                Some(Verdict::Allowed { .. }) => return Ok(()),
                Some(Verdict::Denied { retry_after, .. }) => {
                    return Err(ApiError::Throttled { retry_after });
                }
                None => {}
            }
        }
        limiter
            .check_key(&key)
            .map_err(|not_until| ApiError::Throttled {
                retry_after: retry_after(&not_until),
            })
    }

    /// Forgets accounts whose allowance is whole again, so memory stays bounded.
    pub fn spawn_purge(self: &std::sync::Arc<Self>, every: Duration) {
        let this = std::sync::Arc::clone(self);
        drop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Some(limiter) = &this.limiter {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            }
        }));
    }
}
