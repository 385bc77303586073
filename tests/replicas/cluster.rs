//! N real `latchkey serve` processes on loopback ports sharing one configuration (signing
//! key, issuer, database), as OPERATIONS.md says the replicas of one deployment do, over a
//! PostgreSQL database created for the test and dropped after it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::pg::PgDatabase;

/// The PostgreSQL server (e.g. `postgres://postgres@127.0.0.1:5432/test`); unset: the
/// tests of this file pass after saying they were skipped, as the API tests do.
const POSTGRES_URL_VAR: &str = "LATCHKEY_TEST_POSTGRES_URL";

/// Start-up includes waiting for the other replicas' migrations (they take turns), on a
/// 2-core machine that may be busy with other builds.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM to exit: the drain (`server.shutdown_timeout`, set below) plus a margin.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const SHUTDOWN_TIMEOUT: &str = "10s";
/// Every replica's `server.public_url`: one issuer for all, not the bind address.
pub const PUBLIC_URL: &str = "http://latchkey.test";

/// One `latchkey serve` process and the log it writes to stderr.
struct Replica {
    port: u16,
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    /// Starts `latchkey serve` bound to `bind` with `env` only (the test process's own
    /// `LATCHKEY_*` variables are not inherited); returns once it listens, or panics
    /// with its log.
    async fn start(dir: &Path, env: &[(String, String)], bind: &str) -> Self {
        let mut replica = Self::spawn(dir, env, bind);
        replica.port = replica.wait_listening().await;
        replica
    }

    /// Spawns the process without waiting for it (`port` is 0 until it listens). Not
    /// `tests/support/process.rs`' `serve_env`, which returns only once the server
    /// listens: replicas here are spawned together, so that they migrate together.
    fn spawn(dir: &Path, env: &[(String, String)], bind: &str) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        cmd.arg("serve")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars()
            .filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL" || k == "RUST_LOG")
        {
            cmd.env_remove(key);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .env("LATCHKEY_SERVER__BIND", bind);
        let mut child = cmd.spawn().expect("spawn latchkey serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let shared = Arc::clone(&log);
        // A thread drains the pipe, so a chatty replica never blocks on a full one.
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut all = shared.lock().expect("log lock");
                all.push_str(&line);
                all.push('\n');
            }
        });
        Self {
            port: 0,
            child,
            log,
            reader: Some(reader),
        }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// The port from the "listening on … (port N)" line, which comes after the migrations
    /// and the first database connection.
    async fn wait_listening(&mut self) -> u16 {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = self.log();
            if let Some(rest) = log.split("(port ").nth(1) {
                let port = rest
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>();
                return port.parse().expect("port number");
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("replica exited ({status}) before listening:\n{log}");
            }
            assert!(Instant::now() < deadline, "replica not listening:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the process to exit; returns its status and whole log.
    async fn stop(&mut self) -> (ExitStatus, String) {
        // SAFETY: signalling our own child process, by its id.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "replica on port {} still running {STOP_TIMEOUT:?} after SIGTERM:\n{}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Some(reader) = self.reader.take() {
            reader.join().expect("log reader");
        }
        (status, self.log())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // A test that failed half-way leaves no process behind (and none holding the
        // database the test is about to drop).
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Replicas of one deployment, and a client that spreads requests over them round-robin
/// as a load balancer would.
pub struct Cluster {
    // Field order is drop order: processes end before their database is dropped.
    replicas: Vec<Replica>,
    next: AtomicUsize,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
    pub db: PgDatabase,
    dir: TempDir,
}

impl Cluster {
    /// `n` replicas over a fresh database, started at the same moment (so they also race
    /// to migrate it), with `env` on top of the shared test configuration: ES256 key,
    /// bcrypt cost 4, no throttle, no email verification. `None` (the test is skipped)
    /// when no PostgreSQL server is configured.
    pub async fn start(n: usize, env: &[(&str, &str)]) -> Option<Self> {
        let Some(admin_url) = std::env::var(POSTGRES_URL_VAR)
            .ok()
            .filter(|u| !u.trim().is_empty())
        else {
            println!("skipped: {POSTGRES_URL_VAR} not set");
            return None;
        };
        let dir = TempDir::new().expect("tempdir");
        let db = PgDatabase::create(&admin_url, "replicas");
        let key = generate_key(dir.path());
        let mut shared: Vec<(String, String)> = [
            ("DATABASE_URL", db.url().as_str()),
            (
                "LATCHKEY_JWT__SIGNING_KEY",
                key.to_str().expect("UTF-8 path"),
            ),
            ("LATCHKEY_SERVER__PUBLIC_URL", PUBLIC_URL),
            ("LATCHKEY_SERVER__WORKERS", "2"),
            ("LATCHKEY_SERVER__SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT),
            // Three replicas per test and two tests at a time stay far below the
            // server's 100 connections, leaving room for other test runs.
            ("LATCHKEY_DATABASE__POOL_SIZE", "6"),
            ("LATCHKEY_PASSWORD__BCRYPT_COST", "4"),
            ("LATCHKEY_THROTTLE__ENABLED", "false"),
            ("LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION", "false"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        shared.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        // All spawned before any is waited for: their migrations start together.
        let mut replicas: Vec<Replica> = (0..n)
            .map(|_| Replica::spawn(dir.path(), &shared, "127.0.0.1:0"))
            .collect();
        for replica in &mut replicas {
            replica.port = replica.wait_listening().await;
        }
        let cluster = Self {
            replicas,
            next: AtomicUsize::new(0),
            env: shared,
            http: client(),
            db,
            dir,
        };
        for i in 0..n {
            cluster.wait_ready(i).await;
        }
        Some(cluster)
    }

    /// Base URLs of the replicas, by index; they stay the same across restarts.
    pub fn bases(&self) -> Vec<String> {
        (0..self.replicas.len()).map(|i| self.base(i)).collect()
    }

    pub fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.replicas[i].port)
    }

    /// The next replica in round-robin order.
    pub fn next(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
        self.base(i)
    }

    /// Replica `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        self.replicas[i].log()
    }

    /// Polls `/readyz` of replica `i` until it answers 200.
    pub async fn wait_ready(&self, i: usize) {
        let url = format!("{}/readyz", self.base(i));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.http.get(&url).send().await {
                Ok(resp) if resp.status() == 200 => return,
                seen => assert!(
                    Instant::now() < deadline,
                    "replica {i} not ready: {seen:?}\n{}",
                    self.log(i)
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM to replica `i`; asserts it drained and exited 0, then starts it again on
    /// the same port and waits until it is ready. Returns the stopped process's log.
    pub async fn restart(&mut self, i: usize) -> String {
        let (status, log) = self.replicas[i].stop().await;
        assert!(
            status.success(),
            "replica {i} exited with {status} after SIGTERM:\n{log}"
        );
        let bind = format!("127.0.0.1:{}", self.replicas[i].port);
        self.replicas[i] = Replica::start(self.dir.path(), &self.env, &bind).await;
        self.wait_ready(i).await;
        log
    }

    /// The sum over the replicas of the `/metrics` samples named `name` whose labels
    /// include every one of `labels` (`key="value"`).
    pub async fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        let mut sum = 0.0;
        for base in self.bases() {
            let text = crate::process::metrics_text(&self.http, &base).await;
            sum += text
                .lines()
                .filter_map(|line| {
                    let (series, value) = line.rsplit_once(' ')?;
                    let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                    (metric == name && labels.iter().all(|l| rest.contains(l)))
                        .then(|| value.parse::<f64>().ok())?
                })
                .sum::<f64>();
        }
        sum
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failed test shows how each replica fared: whether it is still running, and
        // the end of its log.
        if !std::thread::panicking() {
            return;
        }
        for (i, replica) in self.replicas.iter_mut().enumerate() {
            let state = match replica.child.try_wait() {
                Ok(Some(status)) => format!("exited: {status}"),
                _ => "running".to_owned(),
            };
            let log = replica.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "replica {i} (port {}, {state}), end of its log:\n{}",
                replica.port,
                tail.join("\n")
            );
        }
    }
}

/// A client with a bound on every request, so a hung replica fails the test instead of
/// the whole run.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// `latchkey keys generate --algorithm ES256`, the operators' way, into `dir`.
fn generate_key(dir: &Path) -> PathBuf {
    let path = dir.join("signing.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["keys", "generate", "--algorithm", "ES256", "--out"])
        .arg(&path)
        .current_dir(dir)
        .output()
        .expect("run latchkey keys generate");
    assert!(
        out.status.success(),
        "keys generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}
