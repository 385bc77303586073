//! A small dedicated thread pool for bcrypt with a bounded queue.
//!
//! bcrypt at cost 12 takes ~360 ms of one core. Running it on actix's or tokio's blocking
//! threads would let a burst of logins occupy every core while token verification waits.
//! Here at most `threads` hashes run at once, on threads with a lower scheduling priority,
//! and at most `queue_limit` wait: beyond that the caller is told at once to come back later.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// The queue is full (or the pool is shutting down): answer 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
#[error("password hashing queue is full")]
pub struct Saturated;

/// Cheap to clone: clones share the threads and the queue.
#[derive(Clone)]
pub struct HashPool {
    sender: SyncSender<Job>,
    waiting: Arc<AtomicUsize>,
    /// How long jobs wait for a thread (the queueing delay a login sees on top of bcrypt).
    wait: Histogram,
}

/// Hash threads run at this `nice` level, so request handling wins the CPU under load.
const NICENESS: i32 = 10;

impl HashPool {
    pub fn new(threads: usize, queue_limit: usize, wait: Histogram) -> std::io::Result<Self> {
        let (sender, receiver) = sync_channel::<Job>(queue_limit);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads {
            let receiver = Arc::clone(&receiver);
            thread::Builder::new()
                .name(format!("latchkey-hash-{n}"))
                .spawn(move || work(&receiver))?;
        }
        Ok(Self {
            sender,
            waiting: Arc::new(AtomicUsize::new(0)),
            wait,
        })
    }

    /// Runs `job` on the pool and waits for its result without blocking the caller's thread.
    pub async fn run<T, F>(&self, job: F) -> Result<T, Saturated>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let waiting = Arc::clone(&self.waiting);
        let wait = self.wait.clone();
        let queued_at = Instant::now();
        waiting.fetch_add(1, Ordering::Relaxed);
        let wrapped: Job = Box::new(move || {
            waiting.fetch_sub(1, Ordering::Relaxed);
            wait.observe(queued_at.elapsed().as_secs_f64());
            // The requester may have gone away; its result is simply dropped.
            let _ = tx.send(job());
        });
        match self.sender.try_send(wrapped) {
            Ok(()) => rx.await.map_err(|_| Saturated),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(Saturated)
            }
        }
    }

    /// Jobs accepted but not yet started (the queue depth metric).
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

fn work(receiver: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        // Hold the lock only to take a job, never while running one.
        let job = match receiver.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return, // the pool was dropped
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread; on Linux `setpriority(PRIO_PROCESS, tid)`
    // changes only that thread. Failure is harmless (the thread keeps normal priority).
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICENESS);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[tokio::test]
    async fn runs_jobs_and_refuses_beyond_the_queue() {
        let pool = Arc::new(HashPool::new(1, 1, Histogram::new([1.0])).expect("threads"));
        assert_eq!(pool.run(|| 2 + 2).await.ok(), Some(4));

        // Occupy the only thread until released.
        let (release, gate) = channel::<()>();
        let (started_tx, started) = channel::<()>();
        let p = Arc::clone(&pool);
        let blocker = tokio::spawn(async move {
            p.run(move || {
                let _ = started_tx.send(());
                let _ = gate.recv();
            })
            .await
        });
        let _ = tokio::task::spawn_blocking(move || started.recv()).await;

        // Fill the single queue slot, then the next job is refused at once.
        let p = Arc::clone(&pool);
        let queued = tokio::spawn(async move { p.run(|| 1).await });
        while pool.queue_depth() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(
            pool.run(|| 2).await.is_err(),
            "refused while one job runs and one waits"
        );

        let _ = release.send(());
        assert!(matches!(blocker.await, Ok(Ok(()))));
        assert!(matches!(queued.await, Ok(Ok(1))));
    }
}
