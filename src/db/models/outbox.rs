//! The `email_outbox` table: messages waiting for delivery, delivered in the last hour, or
//! given up on.
//!
//! A message is *pending* (`sent_at` and `failed_at` unset), *sent* (`sent_at`) or *dead*
//! (`failed_at`: the worker gave up; kept with its `last_error` for the operator, never
//! attempted again). A worker claims one pending message at a time by setting a lease
//! (`locked_until`) with a conditional UPDATE, so with several replicas each message is
//! handed to one worker at a time; a worker that dies mid-delivery only delays the message
//! until its lease runs out. How long the lease must be is the worker's business
//! (`crate::email::worker`).
//!
//! Sent messages stay for [`SENT_RETENTION`] so that the per-recipient limit on emailed
//! account links ([`enqueue_link`]) is a query on this table, shared by every replica.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::db_time;
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

/// Settings and constants are validated far below chrono's range; saturate regardless.
fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Leases the most overdue pending message until `now + lease` and counts the attempt.
/// `None` when nothing is due, or when another worker took the message first.
pub fn claim_next(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<QueuedEmail>, DbError> {
    let at = db_time(now);
    let claimable = || {
        email_outbox::sent_at
            .is_null()
            .and(email_outbox::failed_at.is_null())
            .and(email_outbox::next_attempt_at.le(at))
            .and(
                email_outbox::locked_until
                    .is_null()
                    .or(email_outbox::locked_until.lt(at)),
            )
    };
    let due: Option<String> = email_outbox::table
        .filter(claimable())
        .order(email_outbox::next_attempt_at.asc())
        .select(email_outbox::id)
        .first(conn)
        .optional()?;
    let Some(id) = due else {
        return Ok(None);
    };
    // The condition is repeated on the UPDATE: PostgreSQL re-checks it on the locked row,
    // and SQLite runs one writer at a time, so two workers racing for a message cannot
    // both win it.
    Ok(
        diesel::update(email_outbox::table.find(&id).filter(claimable()))
            .set((
                email_outbox::locked_until.eq(db_time(now + chrono_duration(lease))),
                email_outbox::attempts.eq(email_outbox::attempts + 1),
            ))
            .returning(email_outbox::all_columns)
            .get_result(conn)
            .optional()?,
    )
}

/// Delivered: the message is kept as sent for [`SENT_RETENTION`]; messages sent before
/// that go now (deliveries are what fills the table, so they are what empties it).
pub fn delivered(conn: &mut DbConnection, id: &str, now: DateTime<Utc>) -> Result<(), DbError> {
    diesel::update(email_outbox::table.find(id))
        .set((
            email_outbox::sent_at.eq(db_time(now)),
            email_outbox::locked_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    let expired = db_time(now - chrono_duration(SENT_RETENTION));
    diesel::delete(email_outbox::table.filter(email_outbox::sent_at.lt(expired))).execute(conn)?;
    Ok(())
}

/// Not delivered: release the lease and try again at `retry_at`.
pub fn retry_later(
    conn: &mut DbConnection,
    id: &str,
    error: &str,
    retry_at: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(email_outbox::table.find(id))
        .set((
            email_outbox::locked_until.eq(None::<NaiveDateTime>),
            email_outbox::next_attempt_at.eq(db_time(retry_at)),
            email_outbox::last_error.eq(error),
        ))
        .execute(conn)?;
    Ok(())
}

/// Not delivered, for the last time: the message is dead, kept but never claimed again.
pub fn give_up(
    conn: &mut DbConnection,
    id: &str,
    error: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(email_outbox::table.find(id))
        .set((
            email_outbox::locked_until.eq(None::<NaiveDateTime>),
            email_outbox::failed_at.eq(db_time(now)),
            email_outbox::last_error.eq(error),
        ))
        .execute(conn)?;
    Ok(())
}
