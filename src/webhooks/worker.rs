//! The delivery worker: [`LOOPS`] tasks, each claiming one due delivery at a time
//! (`super::lease`), sending it, and recording the outcome. Woken when an event is
//! recorded, polling otherwise (events recorded by another replica, retries coming due).
//!
//! **The lease outlasts the attempt.** An attempt is cut off at `webhooks.timeout`; a
//! delivery is leased for twice that plus [`LEASE_MARGIN`] (recording the outcome, clocks
//! of replicas disagreeing), so no other replica can claim it while this one still might
//! deliver it. One delivery per claim, for the reason the email worker gives.
//!
//! **Retries** come after `webhooks.retry_base`, doubling, at most [`MAX_BACKOFF`] apart,
//! each delay jittered down to between half and all of itself so that deliveries failed
//! together do not all come back together. A delivery that fails when its event is
//! [`MAX_AGE`] old is given up: kept in `webhook_outbox` as failed, logged, counted as
//! `dead`.
//!
//! **One receiver cannot hold the others up.** Several loops deliver at once, but at most
//! [`PER_ENDPOINT`] of them to one endpoint, and an endpoint that gave no answer (refused,
//! reset, timed out) is left alone for as long as its delivery's retry delay: its other
//! deliveries wait in the outbox meanwhile, and the loops serve the other endpoints. (In
//! memory, per replica: a replica that restarts tries the endpoint again at once.)

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use chrono::{NaiveDateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::delivery::Sender;
use super::{MAX_BACKOFF, Webhooks};
use crate::db::Database;
use crate::db::models::lease::{self, chrono_duration};
use crate::db::models::webhook_outbox::{self, DELIVERED_RETENTION, QueuedDelivery};
use crate::metrics::WebhookLabels;

/// Concurrent deliveries per replica.
pub const LOOPS: usize = 4;
/// Concurrent deliveries per replica to one endpoint.
pub const PER_ENDPOINT: usize = 2;
const POLL: Duration = Duration::from_millis(250);
/// Looking again after a wake-up found nothing: after 1 ms, doubling up to 64 ms.
const SETTLE_FIRST: Duration = Duration::from_millis(1);
const SETTLE_LAST: Duration = Duration::from_millis(64);
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// A delivery failing this long after its event is given up.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What the worker needs besides the database and the endpoints.
pub struct Worker {
    sender: Sender,
    timeout: Duration,
    retry_base: Duration,
    counts: Family<WebhookLabels, Counter>,
    /// Per endpoint URL: deliveries under way, and when a silent one may be tried again.
    traffic: Mutex<HashMap<String, Traffic>>,
}

#[derive(Default)]
struct Traffic {
    in_flight: usize,
    quiet_until: Option<Instant>,
}

/// Starts the loops on the current runtime, if any endpoint is configured; they run as
/// long as the runtime does.
pub fn spawn(db: &Database, hooks: &Webhooks, worker: Worker) {
    if hooks.endpoints().is_empty() {
        return;
    }
    let worker = std::sync::Arc::new(worker);
    for _ in 0..LOOPS {
        let (db, hooks, worker) = (db.clone(), hooks.clone(), worker.clone());
        drop(tokio::spawn(async move { worker.run(&db, &hooks).await }));
    }
}

impl Worker {
    pub fn new(
        sender: Sender,
        settings: &crate::config::WebhookSettings,
        counts: Family<WebhookLabels, Counter>,
    ) -> Self {
        Self {
            sender,
            timeout: settings.timeout,
            retry_base: settings.retry_base,
            counts,
            traffic: Mutex::default(),
        }
    }

    fn lease(&self) -> Duration {
        self.timeout.saturating_mul(2) + LEASE_MARGIN
    }

    async fn run(&self, db: &Database, hooks: &Webhooks) {
        // After a wake-up, how long to wait before looking again when nothing was found:
        // the wake-up comes from inside the event's transaction, which on PostgreSQL may
        // not have committed yet (measured: every delivery at rest waited for the poll).
        let mut settle = Duration::ZERO;
        loop {
            let lease = self.lease();
            let skip = self.unavailable();
            match db
                .write(move |conn| webhook_outbox::claim_next(conn, Utc::now(), lease, &skip))
                .await
            {
                Ok(Some(due)) => {
                    // There may be more: let another loop look while this one sends.
                    hooks.wake.notify_one();
                    let event = due.event_type.clone();
                    let endpoint = due.endpoint.clone();
                    self.traffic(&endpoint, |t| t.in_flight += 1);
                    let (outcome, silent_for) = self.attempt(db, hooks, due).await;
                    self.traffic(&endpoint, |t| {
                        t.in_flight -= 1;
                        t.quiet_until = silent_for.map(|delay| Instant::now() + delay);
                    });
                    self.counts
                        .get_or_create(&WebhookLabels { event, outcome })
                        .inc();
                    settle = Duration::ZERO;
                    continue;
                }
                Ok(None) => {}
                Err(e) => log::warn!(target: "latchkey::webhooks", "cannot read the outbox: {e}"),
            }
            let (pause, then) = if settle.is_zero() || settle > SETTLE_LAST {
                (POLL, Duration::ZERO)
            } else {
                (settle, settle * 2)
            };
            settle = tokio::select! {
                () = hooks.wake.notified() => SETTLE_FIRST,
                () = tokio::time::sleep(pause) => then,
            };
        }
    }

    /// Endpoints no loop may claim for now: at [`PER_ENDPOINT`], or quiet after no answer.
    fn unavailable(&self) -> Vec<String> {
        let now = Instant::now();
        let traffic = self.traffic.lock().unwrap_or_else(PoisonError::into_inner);
        traffic
            .iter()
            .filter(|(_, t)| t.in_flight >= PER_ENDPOINT || t.quiet_until.is_some_and(|u| u > now))
            .map(|(url, _)| url.clone())
            .collect()
    }

    fn traffic(&self, endpoint: &str, change: impl FnOnce(&mut Traffic)) {
        let mut traffic = self.traffic.lock().unwrap_or_else(PoisonError::into_inner);
        change(traffic.entry(endpoint.to_owned()).or_default());
    }

    /// Makes one attempt and records it; returns `delivered`, `failed` (retried later) or
    /// `dead` (given up), and, when the receiver gave no answer, how long to leave it alone.
    async fn attempt(
        &self,
        db: &Database,
        hooks: &Webhooks,
        due: QueuedDelivery,
    ) -> (&'static str, Option<Duration>) {
        let (id, attempts) = (due.id, due.attempts);
        let what = format!(
            "webhook {} ({}) to {}",
            due.event_id, due.event_type, due.endpoint
        );
        let mut silent = false;
        let result = match hooks.endpoint(&due.endpoint) {
            Some(endpoint) => match self.sender.send(endpoint, &due.event_id, &due.body).await {
                Ok(answer) if answer.accepted() => Ok(()),
                Ok(answer) => Err(format!("HTTP {}: {}", answer.status, answer.body.trim())),
                Err(why) => {
                    silent = true;
                    Err(why)
                }
            },
            // Its secret is gone with it: nothing could sign the delivery.
            None => Err("the endpoint is no longer configured".to_owned()),
        };
        let now = Utc::now();
        let gone = hooks.endpoint(&due.endpoint).is_none();
        let (outcome, recorded, delay) = match result {
            Ok(()) => {
                log::debug!(target: "latchkey::webhooks", "{what} delivered (attempt {attempts})");
                let done = db
                    .write(move |conn| webhook_outbox::done(conn, &id, now, DELIVERED_RETENTION))
                    .await;
                ("delivered", done, None)
            }
            Err(why) if gone || gives_up(due.created_at, now.naive_utc()) => {
                log::warn!(
                    target: "latchkey::webhooks",
                    "{what} given up after {attempts} attempts: {why}; kept in webhook_outbox as failed"
                );
                let dead = db
                    .write(move |conn| webhook_outbox::give_up(conn, &id, &why, now))
                    .await;
                ("dead", dead, None)
            }
            Err(why) => {
                let delay = jitter(lease::backoff(self.retry_base, attempts, MAX_BACKOFF));
                log::warn!(
                    target: "latchkey::webhooks",
                    "{what} not delivered (attempt {attempts}): {why}; retrying in {delay:?}"
                );
                let retry_at = now + chrono_duration(delay);
                let failed = db
                    .write(move |conn| webhook_outbox::retry_later(conn, &id, &why, retry_at))
                    .await;
                ("failed", failed, Some(delay))
            }
        };
        if let Err(e) = recorded {
            log::warn!(target: "latchkey::webhooks", "cannot update the outbox: {e}");
        }
        (outcome, delay.filter(|_| silent))
    }
}

/// Whether a delivery of an event queued at `created_at` that just failed is given up.
fn gives_up(created_at: NaiveDateTime, now: NaiveDateTime) -> bool {
    (now - created_at).to_std().unwrap_or_default() >= MAX_AGE
}

/// `delay` scaled by a random factor between one half and one.
fn jitter(delay: Duration) -> Duration {
    let mut bytes = [0u8; 2];
    let r = SystemRandom::new()
        .fill(&mut bytes)
        .map_or(u16::MAX, |()| u16::from_le_bytes(bytes));
    delay.mul_f64(0.5 + 0.5 * f64::from(r) / f64::from(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_span_a_day_before_giving_up() {
        let base = crate::config::Settings::default().webhooks.retry_base;
        let now = Utc::now().naive_utc();
        assert!(!gives_up(now - chrono::Duration::hours(23), now));
        assert!(gives_up(now - chrono::Duration::hours(24), now));
        // A clock that went backwards is no reason to give up.
        assert!(!gives_up(now + chrono::Duration::hours(1), now));
        // Even with every delay jittered to its half, attempts continue all day.
        assert_eq!(lease::backoff(base, 40, MAX_BACKOFF), MAX_BACKOFF);
    }

    #[test]
    fn jitter_keeps_between_half_and_all() {
        let delay = Duration::from_secs(100);
        for _ in 0..100 {
            let d = jitter(delay);
            assert!(d >= delay / 2 && d <= delay, "{d:?}");
        }
    }
}
