//! The outbox under failure and contention: a message that keeps failing ends as failed
//! and stays so; a lease covers the attempt it protects; two instances never deliver one
//! message twice.

use std::time::Duration;

use chrono::Utc;
use latchkey::db::models::outbox::{self, NewEmail};
use latchkey::db::{Database, DbConnection};
use latchkey::email::worker::{ATTEMPT_TIMEOUT, LEASE, MAX_ATTEMPTS};

use super::{activated_user, register, sink_and_app, spawn_smtp_app};
use crate::helpers::{Backend, Fixture, fixture, poll_until};
use crate::ops_helpers::{count, metric, parse_metrics, scrape, twin};
use crate::smtp_sink::{SmtpSink, unused_port};

dual_backend_tests!(
    failing_message_ends_as_failed_and_is_never_retried,
    lease_outlasts_the_attempt_it_protects,
    two_instances_deliver_each_message_once,
);

async fn failing_message_ends_as_failed_and_is_never_retried(backend: Backend) {
    let port = unused_port();
    let refusing = SmtpSink::start_unavailable_on(port).await;
    // No delay between attempts: the attempt limit is reached at once.
    let app = spawn_smtp_app(backend, port, |s| s.email.retry_base = Duration::ZERO).await;
    let user = register(&app).await;

    let dead = "SELECT COUNT(*) AS n FROM email_outbox WHERE failed_at IS NOT NULL";
    poll_until("a message given up", || match count(&app, dead) {
        1 => Ok(()),
        n => Err(n),
    })
    .await;
    let attempts =
        format!("SELECT COUNT(*) AS n FROM email_outbox WHERE attempts = {MAX_ATTEMPTS}");
    assert_eq!(
        count(&app, &attempts),
        1,
        "given up after exactly MAX_ATTEMPTS"
    );
    let status = "SELECT COUNT(*) AS n FROM email_outbox \
                  WHERE failed_at IS NOT NULL AND sent_at IS NULL AND last_error IS NOT NULL";
    assert_eq!(count(&app, status), 1, "failed, kept, with its last error");
    let metrics = parse_metrics(&scrape(&app).await);
    let outcome = |o: &str| metric(&metrics, "latchkey_emails_total", &[("outcome", o)]);
    assert_eq!(outcome("dead"), 1.0);
    assert_eq!(outcome("failed"), f64::from(MAX_ATTEMPTS - 1));
    refusing.stop().await;

    // The mail server is back and a new message is queued. The dead one is older, so a
    // worker that still considered it would take it first: only the new one arrives.
    let sink = SmtpSink::start_on(port).await;
    let resend = app.resend_activation(&user.email).await;
    assert_eq!(resend.status(), 202);
    sink.link(&user.email, "/activate/").await;
    let sent = "SELECT COUNT(*) AS n FROM email_outbox WHERE sent_at IS NOT NULL";
    poll_until("the new message recorded as sent", || {
        match count(&app, sent) {
            1 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    assert_eq!(sink.messages().len(), 1, "{:#?}", sink.messages());
    assert_eq!(count(&app, dead), 1);
    assert_eq!(count(&app, &attempts), 1);
}

/// Two workers' connections to one database, which has `n` messages queued at `now`.
fn queued_outbox(backend: &Backend, n: usize) -> (Fixture, DbConnection, DbConnection) {
    let fixture = fixture(backend);
    let open = |migrate| {
        Database::connect_once(&fixture.settings.database, migrate).expect("open the database")
    };
    let mut first = open(true);
    for i in 0..n {
        let to = format!("user{i}@example.com");
        let email = NewEmail {
            recipient: &to,
            subject: "s",
            text_body: "t",
            html_body: "h",
        };
        outbox::enqueue(&mut first, &email, Utc::now()).expect("enqueue");
    }
    let second = open(false);
    (fixture, first, second)
}

async fn lease_outlasts_the_attempt_it_protects(backend: Backend) {
    let (_fixture, mut first, mut second) = queued_outbox(&backend, 2);
    let t0 = Utc::now();
    let claim = |conn: &mut DbConnection, at| {
        outbox::claim_next(conn, at, LEASE, &[])
            .expect("claim")
            .map(|m| m.recipient)
    };
    let mine = claim(&mut first, t0).expect("the first worker gets a message");

    // A claim is one message: the other worker is not held up behind it...
    let theirs = claim(&mut second, t0).expect("the second worker gets the other one");
    assert_ne!(mine, theirs);
    // ...and, as long as the first worker may still be in its one attempt (cut off after
    // ATTEMPT_TIMEOUT), nobody else can take its message.
    let latest = t0 + chrono::Duration::from_std(ATTEMPT_TIMEOUT).expect("timeout");
    assert_eq!(claim(&mut second, latest), None);
    // A worker that died only delays its message until the lease runs out.
    let expired =
        t0 + chrono::Duration::from_std(LEASE).expect("lease") + chrono::Duration::seconds(1);
    let retaken = claim(&mut second, expired);
    assert!(
        retaken.as_ref() == Some(&mine) || retaken.as_ref() == Some(&theirs),
        "{retaken:?}"
    );
}

async fn two_instances_deliver_each_message_once(backend: Backend) {
    let (sink, app) = sink_and_app(backend.clone(), |_| {}).await;
    let other = twin(&backend, &app, |s| s.email = app.settings.email.clone()).await;
    let mut users = Vec::new();
    for i in 0..6 {
        let instance = if i % 2 == 0 { &app } else { &other };
        users.push(activated_user(instance, &sink).await);
    }
    let unsent = "SELECT COUNT(*) AS n FROM email_outbox WHERE sent_at IS NULL";
    poll_until("every message recorded as sent", || {
        match count(&app, unsent) {
            0 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    for user in &users {
        assert_eq!(sink.messages_for(&user.email).len(), 1, "{}", user.email);
    }
    let retried = "SELECT COUNT(*) AS n FROM email_outbox WHERE attempts <> 1";
    assert_eq!(count(&app, retried), 0);
}
