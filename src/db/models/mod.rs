//! Row types and the queries on each table. Rows are not API types: `User` carries the
//! password hash and is never serialized; the HTTP layer has its own views.
//!
//! Lookups by a unique key use `get_result`, not `first`: `first` adds `LIMIT ?`, and
//! SQLite's planner reads that bound value, so it re-prepares the cached statement on every
//! execution (a full parse per query, measured at about a tenth of a verify request's CPU).

pub mod groups;
pub mod lease;
pub mod link_requests;
pub mod mfa;
pub mod outbox;
pub mod tokens;
pub mod user_list;
pub mod users;
pub mod webhook_outbox;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

/// Timestamps are stored as UTC without zone, truncated to microseconds so that both
/// backends round-trip them exactly.
pub fn db_time(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc().trunc_subsecs(6)
}
