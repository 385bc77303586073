//! Statements of fixed SQL text that diesel's statement cache keeps prepared.
//!
//! diesel prepares every `UPDATE` anew (a changeset can render to many SQL texts, so its
//! builder marks them all unsafe to cache) and every `sql_query` too. On the refresh path
//! that was the largest single cost after the signature: SQLite parsed and planned the
//! rotation's `UPDATE` on every refresh, and PostgreSQL its one-statement rotation. A
//! [`Fixed`] statement renders to the same text every time, so each connection prepares
//! it once. Each `?` of the text is a bind parameter, filled in order (diesel writes `$n`
//! on PostgreSQL); the text must not hold a `?` anywhere else.

use std::marker::PhantomData;

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{Text, Timestamp};
use diesel::{QueryResult, RunQueryDsl};

/// A bind parameter of a [`Fixed`] statement.
pub enum Bind<'a> {
    Text(&'a str),
    Time(NaiveDateTime),
}

/// `sql` with `binds`, returning rows of SQL type `Row`.
pub struct Fixed<'a, Row> {
    sql: &'static str,
    binds: Vec<Bind<'a>>,
    row: PhantomData<Row>,
}

impl<'a, Row> Fixed<'a, Row> {
    pub fn new(sql: &'static str, binds: Vec<Bind<'a>>) -> Self {
        debug_assert_eq!(sql.matches('?').count(), binds.len(), "{sql}");
        Self {
            sql,
            binds,
            row: PhantomData,
        }
    }
}

impl<DB, Row> QueryFragment<DB> for Fixed<'_, Row>
where
    DB: Backend,
    DB: diesel::sql_types::HasSqlType<Text> + diesel::sql_types::HasSqlType<Timestamp>,
    str: ToSql<Text, DB>,
    NaiveDateTime: ToSql<Timestamp, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let mut pieces = self.sql.split('?');
        out.push_sql(pieces.next().unwrap_or_default());
        for (bind, piece) in self.binds.iter().zip(pieces) {
            match bind {
                Bind::Text(text) => out.push_bind_param::<Text, str>(text)?,
                Bind::Time(at) => out.push_bind_param::<Timestamp, NaiveDateTime>(at)?,
            }
            out.push_sql(piece);
        }
        Ok(())
    }
}

/// Keyed by its SQL text in the statement cache (no static query id: one type serves
/// every fixed statement).
impl<Row> QueryId for Fixed<'_, Row> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Row> Query for Fixed<'_, Row> {
    type SqlType = Row;
}

impl<Row, Conn> RunQueryDsl<Conn> for Fixed<'_, Row> {}

#[cfg(test)]
mod tests {
    use diesel::debug_query;
    use diesel::pg::Pg;
    use diesel::sqlite::Sqlite;

    use super::*;

    #[test]
    fn binds_go_where_the_question_marks_are() {
        let at = NaiveDateTime::default();
        let statement = || {
            Fixed::<Text>::new(
                "SELECT ? || x FROM t WHERE y = ? AND z = ?",
                vec![Bind::Text("a"), Bind::Time(at), Bind::Text("b")],
            )
        };
        let pg = debug_query::<Pg, _>(&statement()).to_string();
        assert!(
            pg.starts_with("SELECT $1 || x FROM t WHERE y = $2 AND z = $3 -- binds: [\"a\", "),
            "{pg}"
        );
        let sqlite = debug_query::<Sqlite, _>(&statement()).to_string();
        assert!(
            sqlite.starts_with("SELECT ? || x FROM t WHERE y = ? AND z = ? -- binds: [\"a\", "),
            "{sqlite}"
        );
        assert!(
            statement().is_safe_to_cache_prepared(&Pg).expect("walk"),
            "cacheable"
        );
    }
}
