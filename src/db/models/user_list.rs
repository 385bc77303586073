//! The staff listing of users: filters, case-insensitive search, ordering and page-number
//! pagination over the `users` table, written once for both backends.
//!
//! The selective filters use indexes (`users_is_staff`, `user_groups_group`);
//! ordering columns are indexed (`username_key`, `email_key`, `date_joined`, `last_login`)
//! with the time-ordered id as tie-breaker, so pages are stable.
//!
//! A search of 3 or more characters is served by a trigram index (migration
//! `user_search`): pg_trgm GIN indexes on PostgreSQL, which the planner uses for the LIKEs
//! themselves, and the FTS5 table `users_search` on SQLite, added as a prefilter. Either
//! way the LIKEs decide, so the index changes how fast rows are found, never which.
//! The count is bounded ([`count_up_to`]): past the bound no page needs the exact figure.
//! A search with few matches is counted and paged in one pass ([`few_matches_page`]).

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, SingleValue, Text};

use super::users::User;
use crate::db::pool::MultiBackend;
use crate::db::schema::{user_groups, users};
use crate::db::{DbConnection, DbError};

diesel::define_sql_function! {
    /// SQL `lower()`: Unicode-aware on PostgreSQL, ASCII-only on SQLite.
    fn lower(x: Text) -> Text;
}

diesel::define_sql_function! {
    /// `COALESCE(x, x)`, which is `x` to the sort but matches no index: ordering by it makes
    /// the planner sort the (few) matching rows instead of walking the ordering index from
    /// one end, past every row that does not match, until a page is full.
    #[sql_name = "COALESCE"]
    fn unindexed<T: SingleValue>(x: T, same: T) -> T;
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

/// The FTS5 query for rows whose searched fields contain `term`: one phrase (a `"…"`
/// string, `"` doubled inside, so words such as AND, NEAR or `*` are plain text), which the
/// trigram tokenizer matches as a substring, folding case. `None` for a term of fewer than
/// 3 characters: it has no trigram, the index cannot find it, and the search scans.
fn trigram_query(term: &str) -> Option<String> {
    let term = term.to_lowercase();
    (term.chars().count() >= 3).then(|| format!("\"{}\"", term.replace('"', "\"\"")))
}

/// Whether `filter` has a search the trigram index can serve.
fn index_serves(filter: &UserFilter) -> bool {
    filter.search.as_deref().and_then(trigram_query).is_some()
}

/// How the rows of a page are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Walk the ordering index and test each row: quick when matches are common.
    Walk,
    /// Find the matches through the search index, then sort them: quick when they are few.
    SortMatches,
}

/// The users matching `filter`. `prefilter` adds SQLite's trigram table to a search it can
/// serve (PostgreSQL finds its indexes from the LIKEs alone).
fn filtered(filter: &UserFilter, prefilter: bool) -> Filtered<'_> {
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
        if prefilter && let Some(phrase) = trigram_query(term) {
            query = query.filter(
                sql::<Bool>(
                    "users.rowid IN (SELECT rowid FROM users_search WHERE users_search MATCH ",
                )
                .bind::<Text, _>(phrase)
                .sql(")"),
            );
        }
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

/// `SELECT COUNT(*) FROM (query) AS rows`: counts what a query with a LIMIT returns,
/// which diesel's `count()` (a `COUNT(*)` over the whole filter) cannot.
struct CountRows<Q>(Q);

impl<Q: QueryFragment<MultiBackend>> QueryFragment<MultiBackend> for CountRows<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        out.push_sql("SELECT COUNT(*) FROM (");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(") AS counted");
        Ok(())
    }
}

impl<Q> QueryId for CountRows<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for CountRows<Q> {
    type SqlType = BigInt;
}

impl<Q> RunQueryDsl<DbConnection> for CountRows<Q> {}

/// How many users match `filter`, counting no further than `limit` (no rows are loaded):
/// the work stays bounded however many match.
pub fn count_up_to(
    conn: &mut DbConnection,
    filter: &UserFilter,
    limit: i64,
) -> Result<i64, DbError> {
    let sqlite = matches!(conn, DbConnection::Sqlite(_));
    let matching = filtered(filter, sqlite).select(users::id).limit(limit);
    Ok(CountRows(matching).get_result(conn)?)
}

/// `SELECT id, COUNT(*) OVER () FROM (matches) ORDER BY … LIMIT … OFFSET …`: one page of
/// ids of a bounded set of matches, each row carrying how many the set holds.
struct SortedPage<Q> {
    /// Selects the id and every ordering key, under their column names.
    matches: Q,
    order: UserOrder,
    limit: i64,
    offset: i64,
}

impl<Q: QueryFragment<MultiBackend>> QueryFragment<MultiBackend> for SortedPage<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        out.push_sql("SELECT id, COUNT(*) OVER () FROM (");
        self.matches.walk_ast(out.reborrow())?;
        out.push_sql(") AS matches ORDER BY ");
        // The same orderings as `ordered`, on the subquery's columns.
        let direction = if self.order.descending { "DESC" } else { "ASC" };
        out.push_sql(match self.order.field {
            OrderField::Username => "username_key ",
            OrderField::Email => "email_key ",
            OrderField::DateJoined => "date_joined ",
            OrderField::LastLogin => "last_login IS NULL, last_login ",
        });
        out.push_sql(direction);
        out.push_sql(", id ");
        out.push_sql(direction);
        out.push_sql(" LIMIT ");
        out.push_bind_param::<BigInt, i64>(&self.limit)?;
        out.push_sql(" OFFSET ");
        out.push_bind_param::<BigInt, i64>(&self.offset)?;
        Ok(())
    }
}

impl<Q> QueryId for SortedPage<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for SortedPage<Q> {
    type SqlType = (Text, BigInt);
}

impl<Q> RunQueryDsl<DbConnection> for SortedPage<Q> {}

/// For a search the trigram index serves: how many users match `filter` and one page of
/// them, from one pass over the matches (counting and paging apart took two, each with its
/// own index lookup). `None` when that cannot tell: no such search, more than `bound`
/// matches (the page of an arbitrary `bound + 1` would be wrong), or a page past the
/// matches (no row carries the count). The caller then counts and pages apart.
pub fn few_matches_page(
    conn: &mut DbConnection,
    filter: &UserFilter,
    order: UserOrder,
    bound: i64,
    limit: i64,
    offset: i64,
) -> Result<Option<(i64, Vec<User>)>, DbError> {
    if !index_serves(filter) {
        return Ok(None);
    }
    let sqlite = matches!(conn, DbConnection::Sqlite(_));
    let matches = filtered(filter, sqlite)
        .select((
            users::id,
            users::username_key,
            users::email_key,
            users::date_joined,
            users::last_login,
        ))
        .limit(bound + 1);
    let page: Vec<(String, i64)> = SortedPage {
        matches,
        order,
        limit,
        offset,
    }
    .load(conn)?;
    let count = page.first().map_or(0, |(_, count)| *count);
    if count > bound || (page.is_empty() && offset > 0) {
        return Ok(None);
    }
    let ids: Vec<String> = page.into_iter().map(|(id, _)| id).collect();
    Ok(Some((count, rows_in_order(conn, &ids)?)))
}

/// One page of the users matching `filter`, in `order`, ties broken by id. `few` says that
/// the caller counted the matches and there are few of them (at most the count's bound):
/// then a search the index serves sorts its matches; with many matches the ordering index
/// finds a page sooner.
pub fn page(
    conn: &mut DbConnection,
    filter: &UserFilter,
    order: UserOrder,
    few: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<User>, DbError> {
    let plan = if few && index_serves(filter) {
        Plan::SortMatches
    } else {
        Plan::Walk
    };
    let sqlite = matches!(conn, DbConnection::Sqlite(_));
    let filtered = filtered(filter, sqlite && plan == Plan::SortMatches);
    Ok(ordered(filtered, order, plan)
        .limit(limit)
        .offset(offset)
        .select(User::as_select())
        .load(conn)?)
}

/// The users of `ids`, in that order (ids that no longer exist are left out).
fn rows_in_order(conn: &mut DbConnection, ids: &[String]) -> Result<Vec<User>, DbError> {
    let mut rows: Vec<User> = users::table
        .filter(users::id.eq_any(ids))
        .select(User::as_select())
        .load(conn)?;
    // At most 101 rows: a linear search each is cheap.
    rows.sort_by_key(|user| ids.iter().position(|id| *id == user.id));
    Ok(rows)
}

/// `query` in `order`, ties broken by the id in the same direction, the first key wrapped
/// so that no index serves it when `plan` sorts the matches.
fn ordered(query: Filtered<'_>, order: UserOrder, plan: Plan) -> Filtered<'_> {
    macro_rules! by {
        ($key:expr) => {
            match (plan, order.descending) {
                (Plan::Walk, false) => query.order(($key.asc(), users::id.asc())),
                (Plan::Walk, true) => query.order(($key.desc(), users::id.desc())),
                (Plan::SortMatches, false) => {
                    query.order((unindexed($key, $key).asc(), users::id.asc()))
                }
                (Plan::SortMatches, true) => {
                    query.order((unindexed($key, $key).desc(), users::id.desc()))
                }
            }
        };
    }
    match order.field {
        OrderField::Username => by!(users::username_key),
        OrderField::Email => by!(users::email_key),
        OrderField::DateJoined => by!(users::date_joined),
        // Never-logged-in users last in both directions (the backends disagree on where
        // NULL sorts, so say it explicitly). No index serves this order: it always sorts.
        OrderField::LastLogin if order.descending => query.order((
            users::last_login.is_null().asc(),
            users::last_login.desc(),
            users::id.desc(),
        )),
        OrderField::LastLogin => query.order((
            users::last_login.is_null().asc(),
            users::last_login.asc(),
            users::id.asc(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{contains_pattern, trigram_query};

    #[test]
    fn search_wildcards_are_literal() {
        assert_eq!(contains_pattern("Ada"), "%ada%");
        assert_eq!(contains_pattern("50%_x\\"), "%50\\%\\_x\\\\%");
    }

    #[test]
    fn trigram_queries_are_one_quoted_phrase_of_three_characters_or_more() {
        assert_eq!(trigram_query("Ada").as_deref(), Some("\"ada\""));
        assert_eq!(
            trigram_query("a\"b OR c*").as_deref(),
            Some("\"a\"\"b or c*\"")
        );
        assert_eq!(trigram_query("NEAR").as_deref(), Some("\"near\""));
        // Counted in characters, not bytes: "éß" is 4 bytes.
        assert_eq!(trigram_query("éß"), None);
        assert_eq!(trigram_query("ab"), None);
        assert_eq!(trigram_query("\"\"\"").as_deref(), Some("\"\"\"\"\"\"\"\""));
    }
}
