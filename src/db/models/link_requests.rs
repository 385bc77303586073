//! The `link_requests` table: asked-for account links not yet resolved (see the
//! migration); leased to the resolver as `super::lease` describes.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::db_time;
use crate::db::schema::link_requests;
use crate::db::{DbConnection, DbError};

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = link_requests)]
pub struct LinkRequest {
    pub id: String,
    /// `activation` or `password_reset`.
    pub purpose: String,
    pub email_key: String,
    pub created_at: NaiveDateTime,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub locked_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub resolved_at: Option<NaiveDateTime>,
    pub failed_at: Option<NaiveDateTime>,
}

/// Records a request for a `purpose` link to the account whose email key is `email_key`
/// (which may match no account), due now.
pub fn insert(
    conn: &mut DbConnection,
    purpose: &str,
    email_key: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::insert_into(link_requests::table)
        .values((
            link_requests::id.eq(uuid::Uuid::now_v7().simple().to_string()),
            link_requests::purpose.eq(purpose),
            link_requests::email_key.eq(email_key),
            link_requests::created_at.eq(db_time(now)),
            link_requests::next_attempt_at.eq(db_time(now)),
        ))
        .execute(conn)?;
    Ok(())
}

super::lease::leased_outbox!(link_requests, LinkRequest, resolved_at, email_key);
