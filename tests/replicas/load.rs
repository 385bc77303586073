//! A steady mixed load over the replicas, retrying like a load balancer: logins of one
//! existing user, refreshes that chain each session's own tokens, and `GET /users/me`.
//!
//! A request that a replica refuses (connection refused or reset, an answer cut off, or
//! 503) is retried on the next replica and counted, but only if that replica was being
//! restarted at some moment of the request's life; anything else is a failure. The test
//! marks a replica as restarting from before its SIGTERM until its new process is ready.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

/// Concurrent clients.
const CLIENTS: usize = 4;
/// Refreshes (each followed by a `GET /users/me`) per login.
const CHAIN: usize = 5;
/// One request per client this often: steady, and light enough for 2 cores.
const PACE: Duration = Duration::from_millis(15);
/// Attempts of one logical request; with one replica down at a time, two suffice.
const ATTEMPTS: usize = 10;
/// How long the load may take to make the progress a test waits for.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Shared {
    bases: Vec<String>,
    /// Per replica: odd while it is being restarted; bumped at both edges, so a request
    /// that saw the same even value before and after never overlapped a restart.
    epochs: Vec<AtomicU64>,
    next: AtomicUsize,
    stop: AtomicBool,
    logins: AtomicU64,
    refreshes: AtomicU64,
    me: AtomicU64,
    /// Retried requests by what the replica did: refused the connection, cut an
    /// exchange off (reset, closed), or answered 503.
    refused: AtomicU64,
    cut_off: AtomicU64,
    unavailable: AtomicU64,
    /// The `x-request-id` of each exchange cut off, and the replica it went to.
    cut_off_ids: Mutex<Vec<(usize, String)>>,
    failures: Mutex<Vec<String>>,
}

pub struct Load {
    shared: Arc<Shared>,
    clients: JoinSet<()>,
}

/// What the load did.
pub struct Report {
    pub logins: u64,
    pub refreshes: u64,
    pub me: u64,
    pub refused: u64,
    pub cut_off: u64,
    pub unavailable: u64,
    /// (replica, `x-request-id`) of the exchanges cut off: the test looks them up in the
    /// stopped replica's log to tell a request it never read from an answer it lost.
    pub cut_off_ids: Vec<(usize, String)>,
    pub failures: Vec<String>,
}

impl Report {
    pub fn retries(&self) -> u64 {
        self.refused + self.cut_off + self.unavailable
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} logins, {} refreshes, {} /users/me served; {} requests retried on another \
             replica ({} connections refused, {} cut off, {} answered 503); {} failures",
            self.logins,
            self.refreshes,
            self.me,
            self.retries(),
            self.refused,
            self.cut_off,
            self.unavailable,
            self.failures.len()
        )
    }
}

impl Load {
    /// Starts the clients against `bases`, logging in as `username`.
    pub fn start(bases: Vec<String>, username: &str, password: &str) -> Self {
        let shared = Arc::new(Shared {
            epochs: bases.iter().map(|_| AtomicU64::new(0)).collect(),
            bases,
            ..Shared::default()
        });
        let mut clients = JoinSet::new();
        let login = json!({ "username": username, "password": password });
        for _ in 0..CLIENTS {
            let (shared, login) = (Arc::clone(&shared), login.clone());
            clients.spawn(async move { client(&shared, &login).await });
        }
        Self { shared, clients }
    }

    /// Marks replica `i` as being restarted (`true`, before SIGTERM) or back (`false`,
    /// once ready).
    pub fn restarting(&self, i: usize, down: bool) {
        let before = self.shared.epochs[i].fetch_add(1, Ordering::SeqCst);
        assert_eq!(before % 2 == 1, !down, "replica {i} marked twice");
    }

    /// Waits until `n` more requests have been served.
    pub async fn wait_for_progress(&self, n: u64) {
        let served = || {
            let s = &self.shared;
            [&s.logins, &s.refreshes, &s.me]
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let target = served() + n;
        let deadline = Instant::now() + PROGRESS_TIMEOUT;
        while served() < target {
            assert!(
                Instant::now() < deadline,
                "the load made no progress: {:?}",
                self.shared.failures.lock().expect("failures lock")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients (each finishes its current request) and reports.
    pub async fn stop(mut self) -> Report {
        self.shared.stop.store(true, Ordering::SeqCst);
        while let Some(done) = self.clients.join_next().await {
            done.expect("load client panicked");
        }
        let s = &self.shared;
        Report {
            logins: s.logins.load(Ordering::SeqCst),
            refreshes: s.refreshes.load(Ordering::SeqCst),
            me: s.me.load(Ordering::SeqCst),
            refused: s.refused.load(Ordering::SeqCst),
            cut_off: s.cut_off.load(Ordering::SeqCst),
            unavailable: s.unavailable.load(Ordering::SeqCst),
            cut_off_ids: std::mem::take(&mut *s.cut_off_ids.lock().expect("ids lock")),
            failures: std::mem::take(&mut *s.failures.lock().expect("failures lock")),
        }
    }
}

/// One client: log in, then refresh (chaining the tokens) and read `/users/me` with each
/// new access token; again and again until stopped. After a failure it starts over with
/// a login, so one failure is reported once.
async fn client(shared: &Shared, login: &Value) {
    let http = super::cluster::client();
    let mut pace = tokio::time::interval(PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shared.stop.load(Ordering::SeqCst) {
        pace.tick().await;
        let Some(pair) = call(shared, "login", |base| {
            http.post(format!("{base}/auth/login")).json(login)
        })
        .await
        else {
            continue;
        };
        shared.logins.fetch_add(1, Ordering::Relaxed);
        let mut pair = pair;
        for _ in 0..CHAIN {
            pace.tick().await;
            let token = json!({ "refresh_token": pair["refresh_token"] });
            let Some(next) = call(shared, "refresh", |base| {
                http.post(format!("{base}/auth/token/refresh")).json(&token)
            })
            .await
            else {
                break;
            };
            shared.refreshes.fetch_add(1, Ordering::Relaxed);
            pair = next;
            pace.tick().await;
            let access = pair["access_token"].as_str().unwrap_or_default().to_owned();
            let Some(me) = call(shared, "me", |base| {
                http.get(format!("{base}/users/me")).bearer_auth(&access)
            })
            .await
            else {
                break;
            };
            if me["username"] != login["username"] {
                fail(shared, format!("/users/me answered {me}"));
                break;
            }
            shared.me.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends `request` to the replicas round-robin until one answers 200; the JSON body.
/// `None` after a failure, which is recorded.
async fn call(
    shared: &Shared,
    what: &str,
    request: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Option<Value> {
    for _ in 0..ATTEMPTS {
        let i = shared.next.fetch_add(1, Ordering::Relaxed) % shared.bases.len();
        let epoch = shared.epochs[i].load(Ordering::SeqCst);
        let id = uuid::Uuid::now_v7().simple().to_string();
        let sent = request(&shared.bases[i])
            .header("x-request-id", &id)
            .send()
            .await;
        let (counter, refused) = match sent {
            Ok(resp) if resp.status() == 200 => match resp.json::<Value>().await {
                Ok(body) => return Some(body),
                Err(e) => (&shared.cut_off, format!("answer cut off: {e:?}")),
            },
            Ok(resp) if resp.status() == 503 => {
                let body = resp.text().await.unwrap_or_default();
                (&shared.unavailable, format!("503 {body}"))
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                fail(shared, format!("{what} on replica {i}: {status} {body}"));
                return None;
            }
            Err(e) if e.is_connect() => (&shared.refused, format!("{e:?}")),
            Err(e) => (&shared.cut_off, format!("{e:?}")),
        };
        let overlapped = epoch % 2 == 1 || shared.epochs[i].load(Ordering::SeqCst) != epoch;
        if !overlapped {
            fail(
                shared,
                format!("{what} refused by replica {i}, which was not restarting: {refused}"),
            );
            return None;
        }
        if std::ptr::eq(counter, &shared.cut_off) {
            eprintln!("cut off: {what} {id} on replica {i}: {refused}");
            let mut ids = shared.cut_off_ids.lock().expect("ids lock");
            ids.push((i, id));
        }
        counter.fetch_add(1, Ordering::Relaxed);
    }
    fail(
        shared,
        format!("{what}: no replica answered in {ATTEMPTS} attempts"),
    );
    None
}

fn fail(shared: &Shared, failure: String) {
    shared.failures.lock().expect("failures lock").push(failure);
}
