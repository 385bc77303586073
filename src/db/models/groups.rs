//! The `groups` and `user_groups` tables.

use diesel::prelude::*;

use super::users::User;
use crate::db::schema::user_groups;
use crate::db::{DbConnection, DbError};

/// A user with the names of their groups, or `None` if there is no such user.
pub fn user_with_groups(
    conn: &mut DbConnection,
    user_id: &str,
) -> Result<Option<(User, Vec<String>)>, DbError> {
    let Some(user) = User::find(conn, user_id)? else {
        return Ok(None);
    };
    Ok(Some((user, names_of(conn, user_id)?)))
}

/// The names of the groups a user belongs to, sorted.
pub fn names_of(conn: &mut DbConnection, user_id: &str) -> Result<Vec<String>, DbError> {
    Ok(user_groups::table
        .filter(user_groups::user_id.eq(user_id))
        .select(user_groups::group_name)
        .order(user_groups::group_name.asc())
        .load(conn)?)
}
