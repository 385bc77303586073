//! The `email_outbox` table: messages waiting for delivery.
//!
//! A worker claims due messages by setting a lease (`locked_until`) with a conditional
//! UPDATE, so with several replicas each message is handed to one worker at a time; a
//! worker that dies mid-delivery only delays the message until its lease runs out.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::db_time;
use crate::db::schema::email_outbox;
use crate::db::{DbConnection, DbError};

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
}

/// A message to queue.
pub struct NewEmail<'a> {
    pub recipient: &'a str,
    pub subject: &'a str,
    pub text_body: &'a str,
    pub html_body: &'a str,
}

pub fn enqueue(
    conn: &mut DbConnection,
    email: &NewEmail<'_>,
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
        ))
        .execute(conn)?;
    Ok(())
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Leases up to `limit` due messages for `lease` and counts the attempt.
pub fn claim_due(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    limit: i64,
    lease: Duration,
) -> Result<Vec<QueuedEmail>, DbError> {
    let at = db_time(now);
    let free = email_outbox::locked_until
        .is_null()
        .or(email_outbox::locked_until.lt(at));
    let due: Vec<String> = email_outbox::table
        .filter(email_outbox::next_attempt_at.le(at).and(free))
        .order(email_outbox::next_attempt_at.asc())
        .limit(limit)
        .select(email_outbox::id)
        .load(conn)?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    // The lease condition is repeated on the UPDATE: PostgreSQL re-checks it on the locked
    // row, and SQLite runs one writer at a time, so two workers racing for a message cannot
    // both win it.
    let free = email_outbox::locked_until
        .is_null()
        .or(email_outbox::locked_until.lt(at));
    Ok(diesel::update(
        email_outbox::table
            .filter(email_outbox::id.eq_any(&due))
            .filter(free),
    )
    .set((
        email_outbox::locked_until.eq(db_time(now + chrono_duration(lease))),
        email_outbox::attempts.eq(email_outbox::attempts + 1),
    ))
    .returning(email_outbox::all_columns)
    .get_results(conn)?)
}

/// Delivered: the message leaves the outbox.
pub fn delivered(conn: &mut DbConnection, id: &str) -> Result<(), DbError> {
    diesel::delete(email_outbox::table.find(id)).execute(conn)?;
    Ok(())
}

/// Not delivered: release the lease and try again at `retry_at`.
pub fn failed(
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
