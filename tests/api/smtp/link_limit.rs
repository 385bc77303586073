//! The per-recipient limit on emailed account links: nobody can have latchkey mail an
//! address without end, and the answer never tells that the limit was hit.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use latchkey::db::Database;
use latchkey::db::schema::email_outbox;
use serde_json::json;

use super::{activated_user, sink_and_app};
use crate::helpers::{Backend, TestApp};
use crate::ops_helpers::{parse_metrics, samples, scrape};
use crate::smtp_sink::SmtpSink;

dual_backend_tests!(account_links_are_limited_per_recipient);

/// `latchkey_emails_total{outcome="limited"}`: links not queued because of the limit.
async fn limited(app: &TestApp) -> usize {
    let metrics = parse_metrics(&scrape(app).await);
    let found = samples(&metrics, "latchkey_emails_total", &[("outcome", "limited")]);
    found.iter().map(|s| s.value as usize).sum()
}

/// Requests `n` reset links for `email`; every answer is 202 `{}`, whatever happened.
async fn request_resets(app: &TestApp, email: &str, n: usize) {
    for _ in 0..n {
        let resp = app.request_password_reset(email).await;
        assert_eq!(resp.status(), 202);
        let body: serde_json::Value = resp.json().await.expect("JSON body");
        assert_eq!(body, json!({}));
    }
}

/// Waits until each of the `requested` reset links so far to `email` was either mailed
/// or refused by the limit (`limited_before`: the refusals counted before); returns how
/// many were mailed.
async fn mailed_resets(
    app: &TestApp,
    sink: &SmtpSink,
    email: &str,
    requested: usize,
    limited_before: usize,
) -> usize {
    let resets = || {
        sink.messages_for(email)
            .iter()
            .filter(|m| m.email.link("/password/reset/").is_some())
            .count()
    };
    let mut accounted = (0, 0);
    for _ in 0..300 {
        accounted = (resets(), limited(app).await - limited_before);
        if accounted.0 + accounted.1 >= requested {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        accounted.0 + accounted.1,
        requested,
        "(mailed, limited) = {accounted:?}"
    );
    accounted.0
}

/// Moves every queued or sent message of `recipient` `minutes` into the past, as if
/// that much time had gone by.
async fn age_messages(app: &TestApp, recipient: &str, minutes: i64) {
    let settings = app.settings.database.clone();
    let recipient = recipient.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = Database::connect_once(&settings, false).expect("open the database");
        let mine = email_outbox::table.filter(email_outbox::recipient.eq(&recipient));
        let rows: Vec<(String, NaiveDateTime)> = mine
            .select((email_outbox::id, email_outbox::created_at))
            .load(&mut conn)
            .expect("read the outbox");
        for (id, created_at) in rows {
            diesel::update(email_outbox::table.find(id))
                .set(email_outbox::created_at.eq(created_at - chrono::Duration::minutes(minutes)))
                .execute(&mut conn)
                .expect("age a message");
        }
    })
    .await
    .expect("aging task");
}

async fn account_links_are_limited_per_recipient(backend: Backend) {
    let (sink, app) = sink_and_app(backend, |_| {}).await;
    let victim = activated_user(&app, &sink).await; // one activation link so far
    let bystander = activated_user(&app, &sink).await;

    // A burst: two reset links of the six requested, the rest refused silently.
    request_resets(&app, &victim.email, 6).await;
    assert_eq!(mailed_resets(&app, &sink, &victim.email, 6, 0).await, 2);
    // The limit is per address: someone else still gets their link.
    request_resets(&app, &bystander.email, 1).await;
    assert_eq!(mailed_resets(&app, &sink, &bystander.email, 1, 4).await, 1);

    // Eleven minutes later two more reset links may go: five links within the hour.
    age_messages(&app, &victim.email, 11).await;
    request_resets(&app, &victim.email, 6).await;
    assert_eq!(mailed_resets(&app, &sink, &victim.email, 12, 0).await, 4);

    // Eleven minutes later still: the hourly cap holds, although the ten-minute window
    // has room again.
    age_messages(&app, &victim.email, 11).await;
    request_resets(&app, &victim.email, 3).await;
    assert_eq!(mailed_resets(&app, &sink, &victim.email, 15, 0).await, 4);

    // An hour after the first links, the address may be sent one again.
    age_messages(&app, &victim.email, 60).await;
    request_resets(&app, &victim.email, 1).await;
    assert_eq!(mailed_resets(&app, &sink, &victim.email, 16, 0).await, 5);
}
