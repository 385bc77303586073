//! The `groups` and `user_groups` tables.

use diesel::prelude::*;

use crate::db::schema::user_groups;
use crate::db::{DbConnection, DbError};

/// The names of the groups a user belongs to, sorted.
pub fn names_of(conn: &mut DbConnection, user_id: &str) -> Result<Vec<String>, DbError> {
    Ok(user_groups::table
        .filter(user_groups::user_id.eq(user_id))
        .select(user_groups::group_name)
        .order(user_groups::group_name.asc())
        .load(conn)?)
}
