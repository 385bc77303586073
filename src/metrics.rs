//! The service's Prometheus metrics. One [`Metrics`] per application (no process-wide
//! registry, so several instances can run in one process); the parts that record hand
//! clones of their metric handles around, and `/metrics` renders the registry.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// A method HTTP defines, or `other`.
    pub method: &'static str,
    /// The route template (`/users/{id}`), never the raw path: bounded cardinality.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct WebhookLabels {
    /// An event type (a fixed list).
    pub event: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

/// Request latency buckets: 0.5 ms .. ~4 s.
#[derive(Clone)]
pub struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.0005, 2.0, 14))
    }
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RequestLabels, Histogram, LatencyBuckets>,
    pub logins: Family<OutcomeLabels, Counter>,
    pub tokens_issued: Family<KindLabels, Counter>,
    pub refresh_reuse: Counter,
    pub emails: Family<OutcomeLabels, Counter>,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub webhooks_oldest_pending: Gauge,
    pub throttle_fallback: Counter,
    pub hash_queue_depth: Gauge,
    pub hash_wait: Histogram,
    pub db_connections: Family<StateLabels, Gauge>,
    pub verified_cache: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let requests = Family::default();
        let request_duration = Family::new_with_constructor(LatencyBuckets);
        let logins = Family::default();
        let tokens_issued = Family::default();
        let refresh_reuse = Counter::default();
        let emails = Family::default();
        let webhooks = Family::default();
        let webhooks_oldest_pending = Gauge::default();
        let throttle_fallback = Counter::default();
        let hash_queue_depth = Gauge::default();
        // From 1 ms (an idle pool) to ~16 s (a full queue at a high cost).
        let hash_wait = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let db_connections = Family::default();
        let verified_cache = Family::default();

        let mut r = Registry::with_prefix("latchkey");
        r.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template, method and status",
            request_duration.clone(),
        );
        r.register("logins", "Login attempts by outcome", logins.clone());
        r.register(
            "tokens_issued",
            "Tokens issued by kind (access, refresh)",
            tokens_issued.clone(),
        );
        r.register(
            "refresh_reuse_detected",
            "Rotated refresh tokens presented again (their family was revoked)",
            refresh_reuse.clone(),
        );
        r.register(
            "emails",
            "Emails by outcome: sent, failed (to be retried), dead (given up), limited (not queued: per-recipient limit)",
            emails.clone(),
        );
        r.register(
            "webhooks",
            "Webhook delivery attempts by event type and outcome: delivered, failed (to be retried), dead (given up)",
            webhooks.clone(),
        );
        r.register(
            "webhooks_oldest_pending_seconds",
            "Age of the oldest webhook delivery not yet made (0: none pending)",
            webhooks_oldest_pending.clone(),
        );
        r.register(
            "throttle_fallback",
            "Requests throttled per replica because the shared (Redis) throttle did not answer",
            throttle_fallback.clone(),
        );
        r.register(
            "password_hash_queue_depth",
            "Password hash jobs waiting for a hashing thread",
            hash_queue_depth.clone(),
        );
        r.register(
            "password_hash_wait_seconds",
            "Time password hash jobs waited for a hashing thread",
            hash_wait.clone(),
        );
        r.register(
            "db_pool_connections",
            "Database pool connections by state (idle, in_use)",
            db_connections.clone(),
        );
        r.register(
            "verified_token_cache",
            "Token verifications by verified-token cache outcome: hit (its signature was checked before), miss (checked now)",
            verified_cache.clone(),
        );
        Self {
            registry: Arc::new(r),
            requests,
            request_duration,
            logins,
            tokens_issued,
            refresh_reuse,
            emails,
            webhooks,
            webhooks_oldest_pending,
            throttle_fallback,
            hash_queue_depth,
            hash_wait,
            db_connections,
            verified_cache,
        }
    }

    /// The registry in Prometheus' text exposition format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    pub fn count_tokens(&self, kind: &'static str) {
        self.tokens_issued.get_or_create(&KindLabels { kind }).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
