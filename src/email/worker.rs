//! The outbox worker: claims due messages, delivers them, and reschedules failures with
//! exponential backoff. Woken at once when a request queues a message, and polling
//! otherwise (messages queued by another replica or by the command line).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Notify;

use super::{Email, Mailer};
use crate::db::Database;
use crate::db::models::outbox::{self, QueuedEmail};
use crate::metrics::OutcomeLabels;

const POLL: Duration = Duration::from_secs(1);
const BATCH: i64 = 20;
/// Longer than one SMTP attempt can take, so a lease never expires mid-delivery.
const LEASE: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

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
            let claimed = db
                .write(|conn| outbox::claim_due(conn, Utc::now(), BATCH, LEASE))
                .await;
            let full_batch = match claimed {
                Ok(batch) => {
                    let full = batch.len() as i64 == BATCH;
                    for queued in batch {
                        let outcome = attempt(&db, &mailer, queued, retry_base).await;
                        deliveries.get_or_create(&OutcomeLabels { outcome }).inc();
                    }
                    full
                }
                Err(e) => {
                    log::warn!(target: "latchkey::email", "cannot read the outbox: {e}");
                    false
                }
            };
            if !full_batch {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        }
    }));
    outbox
}

/// Delivers one message and records the result; returns `sent` or `failed`.
async fn attempt(
    db: &Database,
    mailer: &Mailer,
    queued: QueuedEmail,
    retry_base: Duration,
) -> &'static str {
    let email = Email {
        to: queued.recipient.clone(),
        subject: queued.subject.clone(),
        text: queued.text_body.clone(),
        html: queued.html_body.clone(),
    };
    let id = queued.id.clone();
    let (outcome, result) = match mailer.deliver(&email).await {
        Ok(()) => {
            log::info!(target: "latchkey::email", "email {id} delivered (attempt {})", queued.attempts);
            (
                "sent",
                db.write(move |conn| outbox::delivered(conn, &id)).await,
            )
        }
        Err(why) => {
            let delay = backoff(retry_base, queued.attempts);
            log::warn!(
                target: "latchkey::email",
                "email {id} not delivered (attempt {}): {why}; retrying in {delay:?}",
                queued.attempts
            );
            let retry_at =
                Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
            let failed = db
                .write(move |conn| outbox::failed(conn, &id, &why, retry_at))
                .await;
            ("failed", failed)
        }
    };
    if let Err(e) = result {
        log::warn!(target: "latchkey::email", "cannot update the outbox: {e}");
    }
    outcome
}

/// `base`, doubled for each further attempt, at most [`MAX_BACKOFF`].
fn backoff(base: Duration, attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    base.saturating_mul(1 << doublings).min(MAX_BACKOFF)
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
}
