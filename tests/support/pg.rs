//! Throw-away PostgreSQL databases for the tests that run the real binary against a
//! database of their own (replicas, crashes), and the age test that sweeps leftovers of
//! killed runs (databases here, schemas in the API tests).

use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

/// A database of its own for one test: `CREATE DATABASE` on creation, `DROP DATABASE` on
/// drop. Named `<prefix>_<uuid v7>` so that leftovers of killed runs can be told by age.
pub struct PgDatabase {
    admin_url: String,
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

static SWEEP: Once = Once::new();

impl PgDatabase {
    /// `prefix` names the test file's databases (letters and `_` only).
    pub fn create(admin_url: &str, prefix: &str) -> Self {
        SWEEP.call_once(|| sweep_stale_databases(admin_url, prefix));
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut conn = admin(admin_url);
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        Self {
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// The server URL with this database in place of the admin one (query kept).
    pub fn url(&self) -> String {
        with_database(&self.admin_url, &self.name)
    }

    /// The value of `sql`, a query of one row with a `BIGINT` column `n`.
    pub fn count(&self, sql: &str) -> i64 {
        let mut conn = PgConnection::establish(&self.url())
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.name));
        diesel::sql_query(sql)
            .get_result::<Count>(&mut conn)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .n
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Best effort (a leftover goes with the next sweep); FORCE ends the connections of
        // replicas that a failed test left running.
        if let Ok(mut conn) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}

fn admin(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// `postgres://user@host:port/db?query` with `db` replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Drops `<prefix>_*` databases created more than an hour ago (by killed runs); younger
/// ones may belong to a test process running now.
fn sweep_stale_databases(admin_url: &str, prefix: &str) {
    let Ok(mut conn) = PgConnection::establish(admin_url) else {
        return;
    };
    let Ok(rows) = diesel::sql_query(format!(
        "SELECT datname::text AS name FROM pg_database WHERE datname LIKE '{prefix}\\_%'"
    ))
    .load::<Name>(&mut conn) else {
        return;
    };
    for row in rows {
        if older_than_an_hour(&row.name, prefix) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", row.name))
                .execute(&mut conn);
        }
    }
}

/// Whether `name`, `<prefix>_<uuid v7>`, was made more than an hour ago.
pub fn older_than_an_hour(name: &str, prefix: &str) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs();
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .and_then(|id| id.get_timestamp())
        .is_some_and(|ts| ts.to_unix().0 + 3600 < now)
}

#[test]
fn database_names_replace_the_path_only() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
