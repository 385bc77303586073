//! SQLite's single writer, with group commit.
//!
//! SQLite admits one writing transaction at a time. Letting every request's thread compete
//! for that lock costs a thread hand-off per write, and each commit appends every page it
//! touched to the WAL, even when the next commit touches the same pages a moment later.
//! Instead one thread owns a connection and does all the writing: it takes every write
//! waiting in its queue (up to [`MAX_BATCH`]), runs them in one transaction and commits
//! once. Nothing is reported before that commit; if it fails, every write of the batch
//! reports the failure, and none took effect. A write that must be all-or-nothing on its
//! own opens its own transaction, a savepoint here, exactly as it must on PostgreSQL. (A
//! savepoint for every write, by default, measured at a sixth of the writer's time: SQLite
//! copies each page a savepoint first touches.)
//!
//! Under a trickle of writes a batch is a single write and nothing waits; under load the
//! queue fills while a commit runs, so batches grow exactly when it pays.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use super::pool::{DbConnection, DbError};

/// Writes per transaction at most, so that one batch cannot hold the others up for long.
const MAX_BATCH: usize = 64;

/// Runs one write in the batch's transaction and returns what reports its outcome, which
/// the writer calls once the batch has committed (`None`) or failed to (`Some`).
type Job = Box<dyn FnOnce(&mut DbConnection) -> Report + Send>;
type Report = Box<dyn FnOnce(Option<&DbError>) + Send>;

/// Opens the writer's connection (again, after a write panicked).
pub type Open = Box<dyn Fn() -> Result<DbConnection, DbError> + Send>;

/// The handle on the writer thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer's thread on `conn`; `reopen` replaces it should a write panic.
    pub fn start(conn: DbConnection, reopen: Open) -> Result<Self, DbError> {
        let (jobs, queue) = mpsc::channel();
        thread::Builder::new()
            .name("latchkey-sqlite-writer".into())
            .spawn(move || write_batches(&reopen, conn, &queue))
            .map_err(|e| DbError::Unavailable(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self { jobs })
    }

    /// Queues `work` and waits, without blocking the async runtime, for its committed result.
    pub async fn write<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        let (reply, outcome) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = work(conn);
            Box::new(move |batch_error: Option<&DbError>| {
                let outcome = match batch_error {
                    None => result,
                    Some(e) => Err(DbError::Unavailable(format!("not written: {e}"))),
                };
                // The request may have gone away meanwhile; its write stands either way.
                let _ = reply.send(outcome);
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| DbError::Unavailable("the SQLite writer has stopped".into()))?;
        outcome
            .await
            .map_err(|_| DbError::Unavailable("the write failed in the SQLite writer".into()))?
    }
}

fn write_batches(reopen: &Open, mut conn: DbConnection, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let batch: Vec<Job> = std::iter::once(first)
            .chain(queue.try_iter().take(MAX_BATCH - 1))
            .collect();
        let mut reports = Vec::with_capacity(batch.len());
        let run = panic::catch_unwind(AssertUnwindSafe(|| {
            immediate(&mut conn, |conn| {
                reports.extend(batch.into_iter().map(|job| job(conn)));
            })
        }));
        let batch_error = match run {
            Ok(committed) => committed.err(),
            Err(_) => {
                // A panic may have left diesel's savepoint bookkeeping out of step with the
                // database, so the connection goes; closing it rolls the batch back.
                match reopen() {
                    Ok(fresh) => conn = fresh,
                    Err(e) => {
                        log::error!(target: "latchkey::db", "SQLite writer stopped: cannot reopen its connection: {e}");
                        return;
                    }
                }
                Some(DbError::Unavailable(
                    "another write of its batch panicked".into(),
                ))
            }
        };
        if let Some(e) = &batch_error {
            log::error!(target: "latchkey::db", "SQLite write batch of {} rolled back: {e}", reports.len());
        }
        reports
            .into_iter()
            .for_each(|report| report(batch_error.as_ref()));
    }
}

/// Runs `work` in a transaction that takes SQLite's write lock as it begins (`BEGIN
/// IMMEDIATE`), so a batch whose first statement reads (a worker's claim) cannot be refused
/// at its first write because another process (the CLI) committed in between: a deferred
/// transaction's read snapshot cannot be upgraded then, and SQLite answers "database is
/// locked" at once, whatever `busy_timeout` says; `BEGIN IMMEDIATE` waits for it instead.
/// The writes of the batch nest as savepoints, as in any diesel transaction.
fn immediate(conn: &mut DbConnection, work: impl FnOnce(&mut DbConnection)) -> Result<(), DbError> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let DbConnection::Sqlite(sqlite) = conn else {
        return Err(DbError::Unavailable("the writer is SQLite's".into()));
    };
    AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
    work(conn);
    let DbConnection::Sqlite(sqlite) = conn else {
        return Err(DbError::Unavailable("the writer is SQLite's".into()));
    };
    if let Err(e) = AnsiTransactionManager::commit_transaction(sqlite) {
        let _ = AnsiTransactionManager::rollback_transaction(sqlite);
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::mpsc as std_mpsc;

    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    use diesel::{QueryableByName, RunQueryDsl, SqliteConnection, sql_query};

    use super::*;

    fn open(path: &Path) -> Open {
        let url = path.to_string_lossy().into_owned();
        Box::new(move || {
            SqliteConnection::establish(&url)
                .map(DbConnection::Sqlite)
                .map_err(|e| DbError::Unavailable(e.to_string()))
        })
    }

    fn writer_on_new_table() -> (tempfile::TempDir, Writer, Open) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut setup = open(&path)().unwrap();
        setup
            .batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY);")
            .unwrap();
        let writer = Writer::start(open(&path)().unwrap(), open(&path)).unwrap();
        (dir, writer, open(&path))
    }

    fn insert(k: &'static str) -> impl FnOnce(&mut DbConnection) -> Result<(), DbError> {
        move |conn| {
            sql_query(format!("INSERT INTO t (k) VALUES ('{k}')")).execute(conn)?;
            Ok(())
        }
    }

    fn keys(open: &Open) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            k: String,
        }
        let rows: Vec<Row> = sql_query("SELECT k FROM t ORDER BY k")
            .load(&mut open().unwrap())
            .unwrap();
        rows.into_iter().map(|r| r.k).collect()
    }

    /// Occupies the writer until the returned sender is used (or dropped), so that the
    /// writes queued meanwhile all land in the next batch.
    async fn hold(writer: &Writer) -> std_mpsc::Sender<()> {
        let (release, held) = std_mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        let w = writer.clone();
        tokio::spawn(async move {
            w.write(move |_| {
                started.send(()).unwrap();
                let _ = held.recv();
                Ok(())
            })
            .await
        });
        running.await.unwrap();
        release
    }

    #[tokio::test]
    async fn concurrent_writes_all_commit() {
        let (_dir, writer, open) = writer_on_new_table();
        const NAMES: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let release = hold(&writer).await;
        let writes: Vec<_> = NAMES
            .iter()
            .map(|k| {
                tokio::spawn({
                    let w = writer.clone();
                    async move { w.write(insert(k)).await }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        drop(release);
        for w in writes {
            w.await.unwrap().unwrap();
        }
        assert_eq!(keys(&open), NAMES);
    }

    #[tokio::test]
    async fn a_failing_write_fails_alone() {
        let (_dir, writer, open) = writer_on_new_table();
        writer.write(insert("taken")).await.unwrap();
        let release = hold(&writer).await;
        let (w1, w2, w3) = (writer.clone(), writer.clone(), writer.clone());
        let first = tokio::spawn(async move { w1.write(insert("first")).await });
        let clash = tokio::spawn(async move { w2.write(insert("taken")).await });
        let last = tokio::spawn(async move { w3.write(insert("last")).await });
        tokio::task::yield_now().await;
        drop(release);
        assert!(first.await.unwrap().is_ok());
        assert!(matches!(
            clash.await.unwrap(),
            Err(DbError::UniqueViolation(_))
        ));
        assert!(last.await.unwrap().is_ok());
        assert_eq!(keys(&open), ["first", "last", "taken"]);
    }

    #[tokio::test]
    async fn a_panicking_write_fails_its_batch_and_the_writer_carries_on() {
        let (_dir, writer, open) = writer_on_new_table();
        let release = hold(&writer).await;
        let (w1, w2) = (writer.clone(), writer.clone());
        let before = tokio::spawn(async move { w1.write(insert("before")).await });
        let panics = tokio::spawn(async move {
            w2.write(|_| -> Result<(), DbError> { panic!("a bug in a write") })
                .await
        });
        tokio::task::yield_now().await;
        drop(release);
        assert!(matches!(
            before.await.unwrap(),
            Err(DbError::Unavailable(_))
        ));
        assert!(matches!(
            panics.await.unwrap(),
            Err(DbError::Unavailable(_))
        ));
        writer.write(insert("after")).await.unwrap();
        assert_eq!(keys(&open), ["after"]);
    }
}
