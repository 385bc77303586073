//! Crash safety: `kill -9` of the real binary under a write load (registrations, refreshes,
//! password changes, logouts, reset requests), then a restart on the same database. What
//! a 2xx acknowledged must be there: every registered account logs in with the password
//! it last acknowledged, every acknowledged refresh token works, no token a logout or a
//! password change revoked works, and every acknowledged reset request gets its email.
//! Run at several kill moments, on SQLite and (with `LATCHKEY_TEST_POSTGRES_URL`) on a
//! throw-away PostgreSQL database. (Killing latchkey loses no PostgreSQL commit, so the
//! asynchronous commit of plain rotations plays no part here: that is a PostgreSQL crash.)

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

#[allow(dead_code)]
#[path = "support/pg.rs"]
mod pg;
#[allow(dead_code)]
#[path = "support/process.rs"]
mod process;
use pg::PgDatabase;
use process::serve_env;

/// The kill moments: after this many acknowledged requests of the load, one run each.
const KILL_AFTER: [usize; 3] = [3, 12, 40];
/// Concurrent clients of the load.
const CLIENTS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_loses_nothing_acknowledged_when_killed() {
    for kill_after in KILL_AFTER {
        let dir = TempDir::new().expect("tempdir");
        let url = format!("sqlite://{}/crash.db", dir.path().display());
        crash_and_check(dir.path(), &url, None, kill_after).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_loses_nothing_acknowledged_when_killed() {
    let Ok(admin_url) = std::env::var("LATCHKEY_TEST_POSTGRES_URL") else {
        eprintln!("skipped: LATCHKEY_TEST_POSTGRES_URL is not set");
        return;
    };
    for kill_after in KILL_AFTER {
        let dir = TempDir::new().expect("tempdir");
        let db = PgDatabase::create(&admin_url, "crash");
        let key = dir.path().join("signing.pem");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["keys", "generate", "--out"])
            .arg(&key)
            .output()
            .expect("keys generate");
        assert!(out.status.success(), "{out:?}");
        crash_and_check(dir.path(), &db.url(), Some(key), kill_after).await;
    }
}

/// What the load was told, by 2xx answers only.
#[derive(Default)]
struct Acknowledged {
    /// Accounts no request was in flight for at the kill: (username, password, refresh
    /// token if the account still has a session).
    settled: Vec<(String, String, Option<String>)>,
    /// Accounts with a request in flight at the kill: registered, but their password or
    /// token may have moved on unacknowledged: (username, the passwords it may have).
    unsettled: Vec<(String, Vec<String>)>,
    /// Refresh tokens a logout or a password change ended.
    revoked: Vec<String>,
    /// Addresses a reset request was acknowledged for.
    resets: Vec<String>,
    /// Every 2xx so far.
    answers: usize,
}

fn env<'a>(database_url: &'a str, key: Option<&'a Path>) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("DATABASE_URL", database_url),
        ("LATCHKEY_THROTTLE__ENABLED", "false"),
        ("LATCHKEY_EMAIL__BACKEND", "file"),
        ("LATCHKEY_EMAIL__FILE_DIR", "mail"),
    ];
    if let Some(key) = key.and_then(Path::to_str) {
        env.push(("LATCHKEY_JWT__SIGNING_KEY", key));
    }
    env
}

async fn crash_and_check(dir: &Path, database_url: &str, key: Option<PathBuf>, kill_after: usize) {
    let env = env(database_url, key.as_deref());
    let (mut child, base, _log) = serve_env(dir, &env);
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(load(base.clone(), n, Arc::clone(&acked))))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("lock").answers < kill_after {
        assert!(Instant::now() < deadline, "the load made no progress");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    for client in clients {
        client.await.expect("load task");
    }

    let (mut child, base, _log) = serve_env(dir, &env);
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    let http = reqwest::Client::new();
    for (username, password, refresh) in &acked.settled {
        let login = login(&http, &base, username, password).await;
        let after = format!("{username} after a kill after {kill_after} answers");
        assert_eq!(login.0, 200, "{after}: {}", login.1);
        if let Some(refresh) = refresh {
            let next = refresh_with(&http, &base, refresh).await;
            assert_eq!(next.0, 200, "{after}, its acknowledged token: {}", next.1);
        }
    }
    for (username, passwords) in &acked.unsettled {
        // Registered for sure, with one of the passwords it was given.
        let mut statuses = Vec::new();
        for password in passwords {
            statuses.push(login(&http, &base, username, password).await.0);
        }
        assert!(statuses.contains(&200), "{username} lost: {statuses:?}");
    }
    for token in &acked.revoked {
        let refused = refresh_with(&http, &base, token).await;
        assert_eq!(refused.0, 401, "a revoked token works again: {}", refused.1);
    }
    wait_for_emails(&dir.join("mail"), &acked.resets).await;
    eprintln!(
        "kill after {kill_after} answers: {} settled accounts, {} in flight, {} revoked tokens, {} reset emails checked",
        acked.settled.len(),
        acked.unsettled.len(),
        acked.revoked.len(),
        acked.resets.len()
    );
    child.kill().expect("stop");
    child.wait().expect("reap");
}

/// One client: accounts one after another, each registered, refreshed twice, asked a reset
/// for, its password changed, and logged out every other time; every 2xx is noted, and
/// the first failed request (the kill) ends the client.
async fn load(base: String, client: usize, acked: Arc<Mutex<Acknowledged>>) {
    let http = reqwest::Client::new();
    for n in 0.. {
        let username = format!("c{client}u{n}x{}", uuid::Uuid::now_v7().simple());
        let email = format!("{username}@example.com");
        let mut password = "Violet-Harbor-Quill-42".to_owned();
        let body = json!({"username": username, "email": email, "password": password, "password_confirm": password});
        let Some(pair) = ok(&acked, post(&http, &base, "/auth/register", &body).await) else {
            return;
        };
        let mut refresh = str_of(&pair, "refresh_token");
        let mut access = str_of(&pair, "access_token");
        let in_flight = |acked: &Arc<Mutex<Acknowledged>>, passwords: &[&String]| {
            let passwords = passwords.iter().map(|p| (*p).clone()).collect();
            acked
                .lock()
                .expect("lock")
                .unsettled
                .push((username.clone(), passwords));
        };
        for _ in 0..2 {
            let Some(next) = ok(&acked, refresh_with(&http, &base, &refresh).await) else {
                return in_flight(&acked, &[&password]);
            };
            refresh = str_of(&next, "refresh_token");
            access = str_of(&next, "access_token");
        }
        if ok(
            &acked,
            post(
                &http,
                &base,
                "/auth/password/reset",
                &json!({"email": email}),
            )
            .await,
        )
        .is_none()
        {
            return in_flight(&acked, &[&password]);
        }
        acked.lock().expect("lock").resets.push(email.clone());
        let new_password = format!("{password}-{n}");
        let change = json!({"current_password": password, "new_password": new_password, "new_password_confirm": new_password});
        let changed = http
            .post(format!("{base}/users/me/password"))
            .bearer_auth(&access)
            .json(&change)
            .send()
            .await;
        let Some(pair) = ok(&acked, answer(changed).await) else {
            return in_flight(&acked, &[&password, &new_password]);
        };
        password = new_password;
        acked.lock().expect("lock").revoked.push(refresh);
        refresh = str_of(&pair, "refresh_token");
        let kept = if n % 2 == 0 {
            let logout = post(
                &http,
                &base,
                "/auth/logout",
                &json!({"refresh_token": refresh}),
            )
            .await;
            if ok(&acked, logout).is_none() {
                return in_flight(&acked, &[&password]);
            }
            acked.lock().expect("lock").revoked.push(refresh);
            None
        } else {
            Some(refresh)
        };
        acked
            .lock()
            .expect("lock")
            .settled
            .push((username, password, kept));
    }
}

async fn login(http: &reqwest::Client, base: &str, username: &str, password: &str) -> (u16, Value) {
    let body = json!({"username": username, "password": password});
    post(http, base, "/auth/login", &body).await
}

async fn refresh_with(http: &reqwest::Client, base: &str, token: &str) -> (u16, Value) {
    post(
        http,
        base,
        "/auth/token/refresh",
        &json!({"refresh_token": token}),
    )
    .await
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: &Value) -> (u16, Value) {
    answer(http.post(format!("{base}{path}")).json(body).send().await).await
}

/// The status and JSON body; status 0 when no answer came (the process was killed).
async fn answer(sent: reqwest::Result<reqwest::Response>) -> (u16, Value) {
    let Ok(resp) = sent else {
        return (0, Value::Null);
    };
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The body of a 2xx, counted as an answer; `None` otherwise.
fn ok(acked: &Mutex<Acknowledged>, (status, body): (u16, Value)) -> Option<Value> {
    let success = (200..300).contains(&status);
    if success {
        acked.lock().expect("lock").answers += 1;
    }
    success.then_some(body)
}

fn str_of(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_owned()
}

/// Every address in `to` gets a message in the file backend's directory: within the email
/// outbox's lease (a message claimed just before the kill waits for it to run out) and a
/// margin.
async fn wait_for_emails(dir: &Path, to: &[String]) {
    let lease = latchkey::email::worker::LEASE;
    let deadline = Instant::now() + lease + Duration::from_secs(15);
    loop {
        let mut missing: HashSet<&String> = to.iter().collect();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.filter_map(Result::ok) {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                missing.retain(|address| !text.contains(address.as_str()));
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged reset emails lost: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
