//! The `groups` and `user_groups` tables.

use std::collections::HashMap;

use diesel::dsl::count_star;
use diesel::prelude::*;

use super::users::User;
use crate::db::schema::{groups, user_groups, users};
use crate::db::{DbConnection, DbError};

/// A user with the names of their groups, or `None` if there is no such user.
pub fn user_with_groups(
    conn: &mut DbConnection,
    user_id: &str,
) -> Result<Option<(User, Vec<String>)>, DbError> {
    // One round trip: the user's row once per group (once, with no group, if none).
    let rows: Vec<(User, Option<String>)> = users::table
        .left_join(user_groups::table)
        .filter(users::id.eq(user_id))
        .select((users::all_columns, user_groups::group_name.nullable()))
        .order(user_groups::group_name.asc())
        .load(conn)?;
    let mut rows = rows.into_iter();
    Ok(rows.next().map(|(user, first)| {
        let groups = first
            .into_iter()
            .chain(rows.filter_map(|(_, g)| g))
            .collect();
        (user, groups)
    }))
}

/// The names of the groups a user belongs to, sorted.
pub fn names_of(conn: &mut DbConnection, user_id: &str) -> Result<Vec<String>, DbError> {
    Ok(user_groups::table
        .filter(user_groups::user_id.eq(user_id))
        .select(user_groups::group_name)
        .order(user_groups::group_name.asc())
        .load(conn)?)
}

/// The sorted group names of each of `user_ids` (one query for a whole page of users).
pub fn names_of_each(
    conn: &mut DbConnection,
    user_ids: &[&str],
) -> Result<HashMap<String, Vec<String>>, DbError> {
    let rows: Vec<(String, String)> = user_groups::table
        .filter(user_groups::user_id.eq_any(user_ids))
        .select((user_groups::user_id, user_groups::group_name))
        .order((user_groups::user_id.asc(), user_groups::group_name.asc()))
        .load(conn)?;
    let mut names: HashMap<String, Vec<String>> = HashMap::new();
    for (user, group) in rows {
        names.entry(user).or_default().push(group);
    }
    Ok(names)
}

/// Every group with its number of members, sorted by name.
pub fn all_with_member_counts(conn: &mut DbConnection) -> Result<Vec<(String, i64)>, DbError> {
    let counts: HashMap<String, i64> = user_groups::table
        .group_by(user_groups::group_name)
        .select((user_groups::group_name, count_star()))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect();
    let names: Vec<String> = groups::table
        .select(groups::name)
        .order(groups::name.asc())
        .load(conn)?;
    Ok(names
        .into_iter()
        .map(|name| {
            let members = counts.get(&name).copied().unwrap_or(0);
            (name, members)
        })
        .collect())
}

/// Creates a group; an existing name is a [`DbError::UniqueViolation`].
pub fn create(conn: &mut DbConnection, name: &str) -> Result<(), DbError> {
    diesel::insert_into(groups::table)
        .values(groups::name.eq(name))
        .execute(conn)?;
    Ok(())
}

/// Deletes a group; memberships go with it (ON DELETE CASCADE). `false` if there was none.
pub fn delete(conn: &mut DbConnection, name: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(groups::table.find(name)).execute(conn)? > 0)
}

pub fn exists(conn: &mut DbConnection, name: &str) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(groups::table.find(name))).get_result(conn)?)
}

/// Those of `names` that are not groups.
pub fn unknown(conn: &mut DbConnection, names: &[String]) -> Result<Vec<String>, DbError> {
    let known: Vec<String> = groups::table
        .filter(groups::name.eq_any(names))
        .select(groups::name)
        .load(conn)?;
    Ok(names
        .iter()
        .filter(|n| !known.contains(n))
        .cloned()
        .collect())
}

/// Makes `names` (all existing groups) the user's exact set of groups.
pub fn set_for_user(
    conn: &mut DbConnection,
    user_id: &str,
    names: &[String],
) -> Result<(), DbError> {
    diesel::delete(user_groups::table.filter(user_groups::user_id.eq(user_id))).execute(conn)?;
    let rows: Vec<_> = names
        .iter()
        .map(|name| {
            (
                user_groups::user_id.eq(user_id),
                user_groups::group_name.eq(name),
            )
        })
        .collect();
    // One statement per row: diesel's batch insert does not compile for the SQLite side of
    // the multi-backend connection, and a user has few groups.
    for row in rows {
        diesel::insert_into(user_groups::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(())
}
