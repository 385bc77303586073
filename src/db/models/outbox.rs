//! The `email_outbox` table: messages waiting for delivery, delivered in the last hour, or
//! given up on.
//!
//! A message is *pending* (`sent_at` and `failed_at` unset), *sent* (`sent_at`) or *dead*
//! (`failed_at`: the worker gave up; kept with its `last_error` for the operator, never
//! attempted again); workers lease it as `super::lease` describes. How long the lease must
//! be is the worker's business (`crate::email::worker`).
//!
//! Sent messages stay for [`SENT_RETENTION`] so that the per-recipient limit on emailed
//! account links ([`enqueue_link`]) is a query on this table, shared by every replica.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::db_time;
use super::lease::chrono_duration;
use crate::db::schema::{email_outbox, users};
use crate::db::{DbConnection, DbError};

/// How long a sent message is kept: the longest window a recipient limit looks back over.
pub const SENT_RETENTION: Duration = Duration::from_secs(3600);

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = email_outbox)]
pub struct QueuedEmail {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub created_at: NaiveDateTime,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub locked_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub purpose: Option<String>,
    pub sent_at: Option<NaiveDateTime>,
    pub failed_at: Option<NaiveDateTime>,
}

/// A message to queue.
pub struct NewEmail<'a> {
    pub recipient: &'a str,
    pub subject: &'a str,
    pub text_body: &'a str,
    pub html_body: &'a str,
}

/// How many account links one address may be sent: at most `per_purpose` links of one
/// purpose within `purpose_window`, and at most `total` links of any purpose within
/// `total_window` (at most [`SENT_RETENTION`]).
pub struct RecipientLimit {
    pub per_purpose: usize,
    pub purpose_window: Duration,
    pub total: usize,
    pub total_window: Duration,
}

pub fn enqueue(
    conn: &mut DbConnection,
    email: &NewEmail<'_>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    insert(conn, email, None, now)
}

/// Queues an account link (`purpose`) for the address of user `user_id`, unless `limit`
/// says that address has had enough links lately; `false` when nothing was queued (the
/// limit, or the user is gone).
///
/// The user's row is locked first (a no-op UPDATE: a row lock on PostgreSQL, the write
/// lock on SQLite), so concurrent requests for one address, on any replica, take turns
/// between counting and inserting and cannot all pass the limit together.
pub fn enqueue_link(
    conn: &mut DbConnection,
    email: &NewEmail<'_>,
    purpose: &str,
    user_id: &str,
    limit: &RecipientLimit,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    conn.transaction(|conn| {
        let locked = diesel::update(users::table.find(user_id))
            .set(users::email.eq(users::email))
            .execute(conn)?;
        if locked == 0 {
            return Ok(false);
        }
        let since = db_time(now - chrono_duration(limit.total_window));
        let recent: Vec<(Option<String>, NaiveDateTime)> = email_outbox::table
            .filter(email_outbox::recipient.eq(email.recipient))
            .filter(email_outbox::created_at.gt(since))
            .filter(email_outbox::purpose.is_not_null())
            .select((email_outbox::purpose, email_outbox::created_at))
            .load(conn)?;
        let purpose_since = db_time(now - chrono_duration(limit.purpose_window));
        let same_purpose = recent
            .iter()
            .filter(|(p, at)| p.as_deref() == Some(purpose) && *at > purpose_since)
            .count();
        if recent.len() >= limit.total || same_purpose >= limit.per_purpose {
            return Ok(false);
        }
        insert(conn, email, Some(purpose), now)?;
        Ok(true)
    })
}

fn insert(
    conn: &mut DbConnection,
    email: &NewEmail<'_>,
    purpose: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::insert_into(email_outbox::table)
        .values((
            email_outbox::id.eq(uuid::Uuid::now_v7().simple().to_string()),
            email_outbox::recipient.eq(email.recipient),
            email_outbox::subject.eq(email.subject),
            email_outbox::text_body.eq(email.text_body),
            email_outbox::html_body.eq(email.html_body),
            email_outbox::created_at.eq(db_time(now)),
            email_outbox::next_attempt_at.eq(db_time(now)),
            email_outbox::purpose.eq(purpose),
        ))
        .execute(conn)?;
    Ok(())
}

super::lease::leased_outbox!(email_outbox, QueuedEmail, sent_at, recipient);
