//! The connection pool over both backends and the bridge from async handlers to blocking
//! diesel calls.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::r2d2::R2D2Connection;
use diesel::{Connection, PgConnection, SqliteConnection};
use tokio::sync::Semaphore;

use super::writer::Writer;
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

/// Process-wide SQLite settings, applied once before the library initialises (that is,
/// before the first connection opens; afterwards SQLite refuses them, harmlessly).
/// - Multi-thread rather than serialized mode: a connection is only ever used by the one
///   thread holding it from the pool, so SQLite's per-call connection mutex is pure cost.
/// - No memory statistics: they take a global mutex on every allocation, which all
///   connections contend for under load, and nothing reads them.
fn configure_sqlite_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use libsqlite3_sys::{SQLITE_CONFIG_MEMSTATUS, SQLITE_CONFIG_MULTITHREAD, sqlite3_config};
        // SAFETY: sqlite3_config is documented as callable before initialisation from one
        // thread at a time, which call_once guarantees; both options take these arguments.
        let codes = unsafe {
            [
                sqlite3_config(SQLITE_CONFIG_MULTITHREAD),
                sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0 as std::os::raw::c_int),
            ]
        };
        if codes.iter().any(|&code| code != libsqlite3_sys::SQLITE_OK) {
            log::debug!(target: "latchkey::db", "SQLite was initialised already; library settings unchanged ({codes:?})");
        }
    });
}

/// Opens connections for r2d2, applying SQLite's per-connection pragmas.
struct Manager {
    url: DatabaseUrl,
}

impl Manager {
    /// [`Manager::establish`] outside r2d2, with its error as the rest of the code reports it.
    fn open(url: &DatabaseUrl) -> Result<DbConnection, DbError> {
        Self::establish(url).map_err(|e| DbError::Unavailable(e.to_string()))
    }

    fn establish(url: &DatabaseUrl) -> Result<DbConnection, diesel::ConnectionError> {
        match url {
            DatabaseUrl::Postgres(url) => PgConnection::establish(url).map(DbConnection::Postgres),
            DatabaseUrl::Sqlite(path) => {
                configure_sqlite_library();
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
                // busy_timeout makes writers queue instead of failing; foreign keys are off
                // by default in SQLite; NORMAL is durable enough in WAL mode and much faster.
                // A 512 KiB page cache per connection instead of 2 MiB holds the hot pages
                // just as well, and pages beyond it come from the kernel's cache: measured,
                // the same throughput, and peak RSS under the 100k-user list 62 -> 43 MiB.
                conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -512;")
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// A pooled connection and when it last went back to the pool.
struct Pooled {
    conn: DbConnection,
    returned: Instant,
}

/// A connection back from a request less than this long ago is handed out again without a
/// round trip to check it (HikariCP's rule): a connection in steady use has just proven
/// itself, and the check would cost a round trip per request; one idle for longer (a
/// server restart, a proxy's idle timeout) is checked before use.
const TRUSTED_FOR: Duration = Duration::from_millis(500);

impl r2d2::ManageConnection for Manager {
    type Connection = Pooled;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Pooled, Self::Error> {
        let conn = Self::establish(&self.url).map_err(diesel::r2d2::Error::ConnectionError)?;
        Ok(Pooled {
            conn,
            returned: Instant::now(),
        })
    }

    fn is_valid(&self, pooled: &mut Pooled) -> Result<(), Self::Error> {
        if pooled.returned.elapsed() < TRUSTED_FOR {
            return Ok(());
        }
        pooled.conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    /// Called as each connection goes back to the pool.
    fn has_broken(&self, pooled: &mut Pooled) -> bool {
        pooled.returned = Instant::now();
        pooled.conn.is_broken()
    }
}

/// The shared handle on the database: cheap to clone, safe to use from any thread.
#[derive(Clone)]
pub struct Database {
    pool: r2d2::Pool<Manager>,
    /// SQLite only: the thread that does all the writing (see [`Writer`]); reads use the
    /// pool, which in WAL mode they can do while a write is under way.
    writer: Option<Writer>,
    /// One permit per pooled connection, taken before a blocking thread is: requests wait
    /// their turn here, first come first served, rather than as blocking threads racing
    /// for r2d2's connections (where a waiter can lose to newcomers again and again:
    /// measured, a p99 of 150-450 ms on PostgreSQL under load, against 10-30 ms).
    slots: Arc<Semaphore>,
    /// How long a request may wait for a connection.
    wait: Duration,
}

impl Database {
    /// Connects once directly (so a bad URL or an unreachable server reports its real error,
    /// promptly), prepares SQLite's WAL mode and runs migrations if asked, then opens the pool.
    /// On SQLite that first connection becomes the writer's.
    pub fn connect(settings: &DatabaseSettings, migrate: bool) -> Result<Self, DbError> {
        let url = DatabaseUrl::parse(settings.url.expose()).map_err(DbError::Unavailable)?;
        let first = Self::open_one(&url, migrate)?;
        let size = settings.pool_size.unwrap_or(match &url {
            DatabaseUrl::Postgres(_) => 16,
            // Readers only (the writer has a connection of its own), and reads are short.
            DatabaseUrl::Sqlite(_) => 8,
        });
        let writer = match &url {
            DatabaseUrl::Sqlite(_) => {
                let url = url.clone();
                Some(Writer::start(first, Box::new(move || Manager::open(&url)))?)
            }
            DatabaseUrl::Postgres(_) => None,
        };
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(1))
            .connection_timeout(settings.connect_timeout)
            .error_handler(Box::new(LogErrors))
            .build_unchecked(Manager { url });
        Ok(Self {
            pool,
            writer,
            slots: Arc::new(Semaphore::new(size as usize)),
            wait: settings.connect_timeout,
        })
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
        let mut conn = Manager::open(url)?;
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

    /// Like [`Database::run`], for work that writes. Work that must be all-or-nothing opens
    /// its own transaction, on both backends; on SQLite the writer thread runs it within
    /// its batch's transaction and reports it only once that has committed.
    pub async fn write<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        match &self.writer {
            Some(writer) => writer.write(work).await,
            None => self.run(work).await,
        }
    }

    /// Runs blocking diesel work on the blocking thread pool, never on an async worker.
    pub async fn run<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        let slot = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                DbError::Unavailable("timed out waiting for a database connection".into())
            })?
            .map_err(|_| DbError::Unavailable("the database is closed".into()))?;
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let mut pooled = pool
                .get()
                .map_err(|e| DbError::Unavailable(e.to_string()))?;
            work(&mut pooled.conn)
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
