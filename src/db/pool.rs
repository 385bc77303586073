//! The connection pool over both backends and the bridge from async handlers to blocking
//! diesel calls.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use diesel::connection::SimpleConnection;
use diesel::r2d2::R2D2Connection;
use diesel::{Connection, PgConnection, SqliteConnection};

use crate::config::DatabaseSettings;

/// One connection type for both backends: queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// `database.url`, with the backend decided by its scheme rather than by trying each driver
/// in turn (which would hide the real connection error).
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A file path as SQLite takes it.
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            // sqlite://relative/path.db and sqlite:///absolute/path.db
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://latchkey.db".into());
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else {
            Err("must start with sqlite:// or postgres://".into())
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(_) => f.write_str("postgres://[redacted]"),
        }
    }
}

/// Why a database call failed, already sorted into what the HTTP layer must tell apart.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("unique constraint violated: {0}")]
    UniqueViolation(String),
    #[error("database error: {0}")]
    Query(diesel::result::Error),
}

impl From<diesel::result::Error> for DbError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Self::UniqueViolation(info.constraint_name().unwrap_or(info.message()).to_owned())
            }
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => Self::Unavailable(info.message().to_owned()),
            other => Self::Query(other),
        }
    }
}

/// Opens connections for r2d2, applying SQLite's per-connection pragmas.
struct Manager {
    url: DatabaseUrl,
}

impl Manager {
    fn establish(url: &DatabaseUrl) -> Result<DbConnection, diesel::ConnectionError> {
        match url {
            DatabaseUrl::Postgres(url) => PgConnection::establish(url).map(DbConnection::Postgres),
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
                // busy_timeout makes writers queue instead of failing; foreign keys are off
                // by default in SQLite; NORMAL is durable enough in WAL mode and much faster.
                conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        Self::establish(&self.url).map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// The shared handle on the database: cheap to clone, safe to use from any thread.
#[derive(Clone)]
pub struct Database {
    pool: r2d2::Pool<Manager>,
    /// SQLite only: write work takes this first. SQLite admits one writer at a time and
    /// makes the others poll with growing sleeps (up to 100 ms each), which puts long
    /// tails on every write under contention; queueing writers in-process instead hands
    /// the lock over at once. Other processes (the CLI) still meet `busy_timeout`.
    writer: Option<Arc<Mutex<()>>>,
}

impl Database {
    /// Connects once directly (so a bad URL or an unreachable server reports its real error,
    /// promptly), prepares SQLite's WAL mode and runs migrations if asked, then opens the pool.
    pub fn connect(settings: &DatabaseSettings, migrate: bool) -> Result<Self, DbError> {
        let url = DatabaseUrl::parse(settings.url.expose()).map_err(DbError::Unavailable)?;
        Self::open_one(&url, migrate)?;
        let size = settings.pool_size.unwrap_or(match &url {
            DatabaseUrl::Postgres(_) => 16,
            // One writer at a time; more connections only add lock waits.
            DatabaseUrl::Sqlite(_) => 8,
        });
        let writer = matches!(url, DatabaseUrl::Sqlite(_)).then(Arc::default);
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(1))
            .connection_timeout(settings.connect_timeout)
            .error_handler(Box::new(LogErrors))
            .build_unchecked(Manager { url });
        Ok(Self { pool, writer })
    }

    /// One connection without a pool, for one-off commands: a pool's background threads
    /// could still be connecting when the process exits (which libpq's GSSAPI layer
    /// answers with an abort).
    pub fn connect_once(
        settings: &DatabaseSettings,
        migrate: bool,
    ) -> Result<DbConnection, DbError> {
        let url = DatabaseUrl::parse(settings.url.expose()).map_err(DbError::Unavailable)?;
        Self::open_one(&url, migrate)
    }

    /// A direct connection; sets SQLite's WAL mode (a property of the file, set once before
    /// the pool opens connections) and runs migrations if asked.
    fn open_one(url: &DatabaseUrl, migrate: bool) -> Result<DbConnection, DbError> {
        let mut conn = Manager::establish(url).map_err(|e| DbError::Unavailable(e.to_string()))?;
        if let DbConnection::Sqlite(sqlite) = &mut conn {
            sqlite.batch_execute("PRAGMA journal_mode = WAL;")?;
        }
        if migrate {
            super::migrations::run(&mut conn)?;
        }
        Ok(conn)
    }

    /// `(idle, in use)` connections of the pool, for the metrics.
    pub fn connections(&self) -> (u32, u32) {
        let state = self.pool.state();
        (
            state.idle_connections,
            state.connections - state.idle_connections,
        )
    }

    /// Runs blocking diesel work on the blocking thread pool, never on an async worker.
    pub async fn run<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        self.blocking(None, work).await
    }

    /// Like [`Database::run`], for work that writes: on SQLite it waits for the
    /// in-process writer lock before taking a connection.
    pub async fn write<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        self.blocking(self.writer.clone(), work).await
    }

    async fn blocking<T, F>(&self, turn: Option<Arc<Mutex<()>>>, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock only means another writer panicked; the database is intact.
            let _turn = turn
                .as_deref()
                .map(|lock| lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
            let mut conn = pool
                .get()
                .map_err(|e| DbError::Unavailable(e.to_string()))?;
            work(&mut conn)
        })
        .await
        .map_err(|e| DbError::Unavailable(format!("database task failed: {e}")))?
    }

    /// A database round trip, for readiness.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| conn.ping().map_err(DbError::from)).await
    }
}

#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<diesel::r2d2::Error> for LogErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        log::warn!(target: "latchkey::db", "connection pool: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_scheme_picks_the_backend() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/l.db"),
            Ok(DatabaseUrl::Sqlite("data/l.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/l.db"),
            Ok(DatabaseUrl::Sqlite("/var/l.db".into()))
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/d"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(!format!("{:?}", DatabaseUrl::parse("postgres://u:pw@h/d")).contains("pw"));
    }
}
