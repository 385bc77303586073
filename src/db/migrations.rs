//! Embedded migrations, one folder per backend (their SQL dialects differ over time).

use diesel::RunQueryDsl;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{DbConnection, DbError};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Arbitrary, fixed: replicas starting together take turns migrating.
const PG_MIGRATION_LOCK: i64 = 0x6c61_7463_686b_6579; // "latchkey"

/// Applies pending migrations; returns how many ran.
pub fn run(conn: &mut DbConnection) -> Result<usize, DbError> {
    let ran = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE).map(|v| v.len()),
        DbConnection::Postgres(c) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))
                .execute(c)?;
            let ran = c.run_pending_migrations(POSTGRES).map(|v| v.len());
            diesel::sql_query(format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))
                .execute(c)?;
            ran
        }
    };
    let ran = ran.map_err(|e| DbError::Unavailable(format!("migration failed: {e}")))?;
    if ran > 0 {
        log::info!(target: "latchkey::db", "applied {ran} migration(s)");
    }
    Ok(ran)
}
