//! The outbox worker: claims due messages, delivers them, reschedules failures with
//! exponential backoff and gives up on a message that keeps failing. Woken at once when a
//! request queues a message, and polling otherwise (messages queued by another replica or
//! by the command line).
//!
//! **One message per claim.** A lease must outlast the work it protects, or another
//! replica claims the message while this one is still sending it, and the recipient gets
//! it twice. The worker therefore claims one message at a time, cuts every delivery
//! attempt off after [`ATTEMPT_TIMEOUT`] (lettre's own timeout is per socket operation, so
//! a slow SMTP conversation could otherwise run on for minutes), and leases the message
//! for [`LEASE`]: the attempt plus a margin for recording its outcome and for clock skew
//! between replicas. (Claiming a batch would need a lease of the whole batch's worst case,
//! holding every message of it back when the first one hangs; renewing leases would need
//! a write per message per renewal. Mail volumes make one claim per message cheap.)
//!
//! **Dead letters.** A message still failing after [`MAX_ATTEMPTS`] attempts, or older
//! than [`MAX_AGE`], is marked failed: kept in `email_outbox` with its last error, logged
//! once at warn, counted as `dead`, and never attempted again. The limits are constants
//! because OPERATIONS.md has no keys for them (only `email.retry_base`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Notify;

use super::{Email, Mailer};
use crate::db::Database;
use crate::db::models::lease;
use crate::db::models::outbox::{self, QueuedEmail};
use crate::metrics::OutcomeLabels;

const POLL: Duration = Duration::from_secs(1);
/// Longest a delivery attempt may take, SMTP conversation included: a hung mail server
/// costs one failed attempt, not the lease.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a claimed message is held: one attempt, plus as much again for writing its
/// outcome and for the clocks of two replicas disagreeing.
pub const LEASE: Duration = Duration::from_secs(2 * ATTEMPT_TIMEOUT.as_secs());
const _: () = assert!(LEASE.as_secs() > ATTEMPT_TIMEOUT.as_secs());
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Attempts before a message is given up. With the default `email.retry_base` (2 s,
/// doubling to 15 min apart) the 100th attempt comes about 23 hours after the first, so
/// an outage of most of a day delays mail without losing it; the count also bounds the
/// attempts when `retry_base` is short.
pub const MAX_ATTEMPTS: i32 = 100;
/// A message this old is not attempted again after a failure: its links have long
/// expired (reset links after an hour by default), and its recipient has asked again.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Wakes the worker after a message was queued.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Starts the worker on the current runtime; it runs as long as the runtime does.
pub fn spawn(
    db: Database,
    mailer: Mailer,
    retry_base: Duration,
    deliveries: Family<OutcomeLabels, Counter>,
) -> Outbox {
    let outbox = Outbox::default();
    let wake = Arc::clone(&outbox.wake);
    drop(tokio::spawn(async move {
        loop {
            match db
                .write(|conn| outbox::claim_next(conn, Utc::now(), LEASE, &[]))
                .await
            {
                Ok(Some(queued)) => {
                    let outcome = attempt(&db, &mailer, queued, retry_base).await;
                    deliveries.get_or_create(&OutcomeLabels { outcome }).inc();
                    continue;
                }
                Ok(None) => {}
                Err(e) => log::warn!(target: "latchkey::email", "cannot read the outbox: {e}"),
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }));
    outbox
}

/// Delivers one message and records the result; returns `sent`, `failed` (retried later)
/// or `dead` (given up).
async fn attempt(
    db: &Database,
    mailer: &Mailer,
    queued: QueuedEmail,
    retry_base: Duration,
) -> &'static str {
    let email = Email {
        to: queued.recipient,
        subject: queued.subject,
        text: queued.text_body,
        html: queued.html_body,
    };
    let (id, attempts) = (queued.id, queued.attempts);
    let delivery = tokio::time::timeout(ATTEMPT_TIMEOUT, mailer.deliver(&email))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {ATTEMPT_TIMEOUT:?}")));
    let now = Utc::now();
    let (outcome, result) = match delivery {
        Ok(()) => {
            log::info!(target: "latchkey::email", "email {id} delivered (attempt {attempts})");
            let sent = db
                .write(move |conn| outbox::done(conn, &id, now, outbox::SENT_RETENTION))
                .await;
            ("sent", sent)
        }
        Err(why) if gives_up(attempts, queued.created_at, now) => {
            log::warn!(
                target: "latchkey::email",
                "email {id} given up after {attempts} attempts: {why}; kept in email_outbox as failed"
            );
            let dead = db
                .write(move |conn| outbox::give_up(conn, &id, &why, now))
                .await;
            ("dead", dead)
        }
        Err(why) => {
            let delay = backoff(retry_base, attempts);
            log::warn!(
                target: "latchkey::email",
                "email {id} not delivered (attempt {attempts}): {why}; retrying in {delay:?}"
            );
            let retry_at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
            let failed = db
                .write(move |conn| outbox::retry_later(conn, &id, &why, retry_at))
                .await;
            ("failed", failed)
        }
    };
    if let Err(e) = result {
        log::warn!(target: "latchkey::email", "cannot update the outbox: {e}");
    }
    outcome
}

/// Whether a message that just failed its `attempts`-th attempt is given up.
fn gives_up(attempts: i32, created_at: NaiveDateTime, now: DateTime<Utc>) -> bool {
    let age = (now.naive_utc() - created_at).to_std().unwrap_or_default();
    attempts >= MAX_ATTEMPTS || age >= MAX_AGE
}

/// `base`, doubled for each further attempt, at most [`MAX_BACKOFF`].
fn backoff(base: Duration, attempts: i32) -> Duration {
    lease::backoff(base, attempts, MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(2);
        assert_eq!(backoff(base, 1), Duration::from_secs(2));
        assert_eq!(backoff(base, 2), Duration::from_secs(4));
        assert_eq!(backoff(base, 4), Duration::from_secs(16));
        assert_eq!(backoff(base, 50), MAX_BACKOFF);
    }

    #[test]
    fn gives_up_after_max_attempts_or_max_age() {
        let now = Utc::now();
        let fresh = now.naive_utc();
        assert!(!gives_up(1, fresh, now));
        assert!(!gives_up(MAX_ATTEMPTS - 1, fresh, now));
        assert!(gives_up(MAX_ATTEMPTS, fresh, now));
        let old = fresh - chrono::Duration::hours(25);
        assert!(gives_up(1, old, now), "too old to retry");
        // A clock that went backwards is no reason to give up.
        assert!(!gives_up(1, fresh + chrono::Duration::hours(1), now));
    }

    #[test]
    fn the_default_schedule_retries_for_most_of_a_day() {
        let base = crate::config::Settings::default().email.retry_base;
        let span: Duration = (1..MAX_ATTEMPTS).map(|n| backoff(base, n)).sum();
        assert!(
            span > Duration::from_secs(20 * 3600) && span < MAX_AGE,
            "{span:?}"
        );
    }
}
