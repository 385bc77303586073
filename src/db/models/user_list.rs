//! The staff listing of users: filters, case-insensitive search, ordering and page-number
//! pagination over the `users` table, written once for both backends.
//!
//! The selective filters use indexes (`users_is_staff`, `user_groups_group`);
//! ordering columns are indexed (`username_key`, `email_key`, `date_joined`, `last_login`)
//! with the time-ordered id as tie-breaker, so pages are stable. The count runs the same
//! filters without loading rows.

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::users::User;
use crate::db::pool::MultiBackend;
use crate::db::schema::{user_groups, users};
use crate::db::{DbConnection, DbError};

diesel::define_sql_function! {
    /// SQL `lower()`: Unicode-aware on PostgreSQL, ASCII-only on SQLite.
    fn lower(x: Text) -> Text;
}

/// Which users to list. `search` is matched case-insensitively as a substring.
#[derive(Debug, Default, Clone)]
pub struct UserFilter {
    pub search: Option<String>,
    pub is_active: Option<bool>,
    pub is_staff: Option<bool>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderField {
    Username,
    Email,
    DateJoined,
    LastLogin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserOrder {
    pub field: OrderField,
    pub descending: bool,
}

impl Default for UserOrder {
    /// Newest accounts first.
    fn default() -> Self {
        Self {
            field: OrderField::DateJoined,
            descending: true,
        }
    }
}

type Filtered<'a> = users::BoxedQuery<'a, MultiBackend>;

/// `%` and `_` in a search are literal characters, not wildcards.
fn contains_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn filtered(filter: &UserFilter) -> Filtered<'_> {
    let mut query = users::table.into_boxed::<MultiBackend>();
    if let Some(active) = filter.is_active {
        query = query.filter(users::is_active.eq(active));
    }
    if let Some(staff) = filter.is_staff {
        query = query.filter(users::is_staff.eq(staff));
    }
    if let Some(group) = &filter.group {
        let members = user_groups::table
            .filter(user_groups::group_name.eq(group))
            .select(user_groups::user_id);
        query = query.filter(users::id.eq_any(members));
    }
    if let Some(term) = &filter.search {
        // The keys are lower-cased by the domain types (Unicode); the names are lowered in
        // SQL. LIKE is case-sensitive on PostgreSQL, so both sides are lower case.
        let pattern = contains_pattern(term);
        query = query.filter(
            users::username_key
                .like(pattern.clone())
                .escape('\\')
                .or(users::email_key.like(pattern.clone()).escape('\\'))
                .or(lower(users::first_name).like(pattern.clone()).escape('\\'))
                .or(lower(users::last_name).like(pattern).escape('\\')),
        );
    }
    query
}

/// How many users match `filter` (no rows are loaded).
pub fn count(conn: &mut DbConnection, filter: &UserFilter) -> Result<i64, DbError> {
    Ok(filtered(filter).count().get_result(conn)?)
}

/// One page of the users matching `filter`, in `order`, ties broken by id.
pub fn page(
    conn: &mut DbConnection,
    filter: &UserFilter,
    order: UserOrder,
    limit: i64,
    offset: i64,
) -> Result<Vec<User>, DbError> {
    let query = filtered(filter);
    let query = match (order.field, order.descending) {
        (OrderField::Username, false) => query.order((users::username_key.asc(), users::id.asc())),
        (OrderField::Username, true) => query.order((users::username_key.desc(), users::id.desc())),
        (OrderField::Email, false) => query.order((users::email_key.asc(), users::id.asc())),
        (OrderField::Email, true) => query.order((users::email_key.desc(), users::id.desc())),
        (OrderField::DateJoined, false) => query.order((users::date_joined.asc(), users::id.asc())),
        (OrderField::DateJoined, true) => {
            query.order((users::date_joined.desc(), users::id.desc()))
        }
        // Never-logged-in users last in both directions (the backends disagree on where
        // NULL sorts, so say it explicitly).
        (OrderField::LastLogin, false) => query.order((
            users::last_login.is_null().asc(),
            users::last_login.asc(),
            users::id.asc(),
        )),
        (OrderField::LastLogin, true) => query.order((
            users::last_login.is_null().asc(),
            users::last_login.desc(),
            users::id.desc(),
        )),
    };
    Ok(query
        .limit(limit)
        .offset(offset)
        .select(User::as_select())
        .load(conn)?)
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn search_wildcards_are_literal() {
        assert_eq!(contains_pattern("Ada"), "%ada%");
        assert_eq!(contains_pattern("50%_x\\"), "%50\\%\\_x\\\\%");
    }
}
