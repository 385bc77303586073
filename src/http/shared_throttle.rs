//! The cluster-wide throttle (`throttle.redis_url`): the `anon`, `user`, `login` and `mfa`
//! limits held in Redis, so that N replicas allow the configured rate and not N times it.
//!
//! Every bucket a request counts against is checked and updated by one Lua script, GCRA
//! on Redis' own clock (no read-modify-write race between replicas, no skew between their
//! clocks): one round trip per throttled request. A request let through is marked
//! ([`SharedVerdict`]) so the per-replica governors leave it alone, and carries the same
//! `x-ratelimit-*` headers they would give; a request over a limit gets the same 429.
//!
//! **Redis is an optimisation of the limits, never a dependency of the service.** An error
//! or an answer slower than [`ANSWER_WITHIN`] sends the request to the per-replica
//! governors (still in place, unmarked), and Redis is left alone for [`BACK_OFF`]: an
//! outage costs one slow request a second per replica at most. The first fallback of an
//! outage is logged, every fallen-back request counted
//! (`latchkey_throttle_fallback_total`), and the first answer after one logged too.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};
use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::throttle::{Bucket, SharedVerdict, Throttle, ThrottleKey, throttled};
use crate::config::Rate;

/// Longest wait for Redis before a request falls back to the per-replica limits.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(100);
/// How long Redis is not asked after it failed.
pub const BACK_OFF: Duration = Duration::from_secs(1);

/// GCRA over every key at once, on the server's clock, in microseconds. ARGV holds each
/// key's emission interval and burst. If any bucket is empty nothing is counted, and the
/// answer is `{0, index, 0, wait}`; otherwise every bucket is counted and the answer is
/// `{1, 1, remaining, 0}` for the first key (whose headers the response carries).
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local next_tat = tat + interval
  local allow_at = next_tat - interval * burst
  if allow_at > now then
    return {0, i, 0, allow_at - now}
  end
  tats[i] = next_tat
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], tats[i], 'PX', math.ceil((tats[i] - now) / 1000) + 1000)
end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
return {1, 1, math.floor((now + interval * burst - tats[1]) / interval), 0}
";

/// Limits kept in Redis: the connection, the script, and whether Redis is being left
/// alone. One per replica, shared by its workers, the throttle middleware and the
/// per-account limit.
pub struct RedisLimits {
    redis: ConnectionManager,
    script: redis::Script,
    /// Set while Redis is being left alone after a failure.
    down_until: Mutex<Option<Instant>>,
    fallbacks: Counter,
}

/// What Redis decided: `limit` is the burst of the bucket the headers describe (the
/// first, or the one that was empty).
pub enum Verdict {
    Allowed { limit: u32, remaining: u64 },
    Denied { limit: u32, retry_after: u64 },
}

impl RedisLimits {
    /// Connects lazily: the service starts, and throttles per replica, while Redis is
    /// unreachable. Must run inside an async runtime.
    pub fn new(url: &str, fallbacks: Counter) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(ANSWER_WITHIN))
            .set_response_timeout(Some(ANSWER_WITHIN));
        let redis =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())?;
        Ok(Self {
            redis,
            script: redis::Script::new(GCRA),
            down_until: Mutex::new(None),
            fallbacks,
        })
    }

    /// Counts one request against every bucket (Redis key and rate), all or none; `None`:
    /// no usable answer, the caller falls back to its per-replica limit (and that is
    /// counted).
    pub async fn check(&self, buckets: &[(String, Rate)]) -> Option<Verdict> {
        let verdict = if self.resting() {
            None
        } else {
            self.ask(buckets).await
        };
        if verdict.is_none() {
            self.fallbacks.inc();
        }
        verdict
    }

    async fn ask(&self, buckets: &[(String, Rate)]) -> Option<Verdict> {
        let mut call = self.script.prepare_invoke();
        for (key, rate) in buckets {
            let interval = u64::try_from(rate.replenish_interval().as_micros()).unwrap_or(u64::MAX);
            call.key(key).arg(interval).arg(rate.count);
        }
        let mut redis = self.redis.clone();
        let answer = tokio::time::timeout(ANSWER_WITHIN, call.invoke_async::<Vec<u64>>(&mut redis))
            .await
            .map_err(|_| format!("no answer within {ANSWER_WITHIN:?}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        let v = match answer {
            Ok(v) if v.len() == 4 => v,
            Ok(v) => return self.failed(&format!("unexpected answer {v:?}")),
            Err(why) => return self.failed(&why),
        };
        self.recovered();
        let index = usize::try_from(v[1]).unwrap_or(1).saturating_sub(1);
        let limit = buckets.get(index).map_or(0, |(_, rate)| rate.count);
        Some(if v[0] == 1 {
            Verdict::Allowed {
                limit,
                remaining: v[2],
            }
        } else {
            // Microseconds, rounded up to whole seconds (as the governors do).
            Verdict::Denied {
                limit,
                retry_after: v[3].div_ceil(1_000_000).max(1),
            }
        })
    }

    fn resting(&self) -> bool {
        let down = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        down.is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, why: &str) -> Option<Verdict> {
        let mut down = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if down.is_none() {
            log::warn!(target: "latchkey::throttle",
                "Redis throttle unavailable ({why}); limits are per replica until it answers");
        }
        *down = Some(Instant::now() + BACK_OFF);
        None
    }

    fn recovered(&self) {
        let mut down = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if down.take().is_some() {
            log::info!(target: "latchkey::throttle", "Redis throttle answering again; limits are shared");
        }
    }
}

/// What the middleware needs: Redis, and the scopes that say which buckets a request
/// counts against.
pub struct SharedThrottle {
    pub limits: Arc<RedisLimits>,
    pub throttle: Throttle,
}

/// The Redis key of a per-account bucket (see `account_limit`).
pub fn account_key(account: &str) -> String {
    format!("{PREFIX}account:{account}")
}

const PREFIX: &str = "latchkey:throttle:";

/// `latchkey:throttle:<scope>:<ip or user id>`.
fn redis_key(bucket: &Bucket) -> String {
    let who = match &bucket.key {
        ThrottleKey::Client(ip) => ip.to_string(),
        ThrottleKey::User(id) => format!("user:{id}"),
        ThrottleKey::Exempt => String::new(),
    };
    format!("{PREFIX}{}:{who}", bucket.scope)
}

/// The middleware: in front of the governors, when `throttle.redis_url` is set.
pub async fn shared_throttle(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(shared) = req.app_data::<web::Data<SharedThrottle>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let buckets: Vec<(String, Rate)> = shared
        .throttle
        .buckets(&req)
        .iter()
        .map(|b| (redis_key(b), b.rate))
        .collect();
    if buckets.is_empty() {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    match shared.limits.check(&buckets).await {
        Some(Verdict::Allowed { limit, remaining }) => {
            req.extensions_mut().insert(SharedVerdict);
            let mut res = next.call(req).await?;
            let headers = res.headers_mut();
            headers.insert(LIMIT.clone(), HeaderValue::from(limit));
            headers.insert(REMAINING.clone(), HeaderValue::from(remaining));
            Ok(res.map_into_left_body())
        }
        Some(Verdict::Denied { limit, retry_after }) => {
            let mut response = HttpResponse::build(StatusCode::TOO_MANY_REQUESTS);
            response.insert_header((LIMIT.clone(), limit));
            response.insert_header((REMAINING.clone(), 0));
            let (req, _) = req.into_parts();
            let answer = throttled(retry_after, response);
            Ok(ServiceResponse::new(req, answer).map_into_right_body())
        }
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

const LIMIT: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-ratelimit-limit");
const REMAINING: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-ratelimit-remaining");
