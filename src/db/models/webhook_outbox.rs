//! The `webhook_outbox` table: one row per event and endpoint, pending, delivered (kept for
//! [`DELIVERED_RETENTION`]) or failed; leased to workers as `super::lease` describes.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::min;
use diesel::prelude::*;

use super::db_time;
use crate::db::schema::webhook_outbox;
use crate::db::{DbConnection, DbError};

/// How long a delivered row is kept (for an operator looking into a complaint).
pub const DELIVERED_RETENTION: Duration = Duration::from_secs(3600);

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = webhook_outbox)]
pub struct QueuedDelivery {
    pub id: String,
    pub event_id: String,
    pub endpoint: String,
    pub event_type: String,
    pub body: String,
    pub created_at: NaiveDateTime,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub locked_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub delivered_at: Option<NaiveDateTime>,
    pub failed_at: Option<NaiveDateTime>,
}

/// Queues event `event_id` of type `event_type` (its `body` already serialized) for each
/// endpoint URL, due now.
pub fn enqueue(
    conn: &mut DbConnection,
    event_id: &str,
    event_type: &str,
    body: &str,
    endpoints: &[&str],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let at = db_time(now);
    // One INSERT per endpoint: diesel's batch insert is not available across both backends,
    // and an event has a handful of endpoints at most.
    for endpoint in endpoints {
        diesel::insert_into(webhook_outbox::table)
            .values((
                webhook_outbox::id.eq(uuid::Uuid::now_v7().simple().to_string()),
                webhook_outbox::event_id.eq(event_id),
                webhook_outbox::endpoint.eq(*endpoint),
                webhook_outbox::event_type.eq(event_type),
                webhook_outbox::body.eq(body),
                webhook_outbox::created_at.eq(at),
                webhook_outbox::next_attempt_at.eq(at),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// When the oldest pending delivery was queued, if any is pending.
pub fn oldest_pending(conn: &mut DbConnection) -> Result<Option<NaiveDateTime>, DbError> {
    Ok(webhook_outbox::table
        .filter(webhook_outbox::delivered_at.is_null())
        .filter(webhook_outbox::failed_at.is_null())
        .select(min(webhook_outbox::created_at))
        .get_result(conn)?)
}

super::lease::leased_outbox!(webhook_outbox, QueuedDelivery, delivered_at, endpoint);
