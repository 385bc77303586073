//! Helpers for the production-readiness tests (throttling, observability, limits, key
//! rotation, maintenance): a second instance over the same data, raw HTTP/1.1 exchanges
//! for what a well-behaved client library cannot send, a cuttable TCP proxy in front of
//! the database, a Prometheus text parser and row counts behind the service's back.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use latchkey::config::{Secret, Settings};
use reqwest::Response;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, header, spawn_app_with};

// ---------------------------------------------------------------------------------
// A second instance over the same database and signing key
// ---------------------------------------------------------------------------------

/// Starts another instance on `app`'s database with `app`'s signing key (on SQLite the
/// generated key lives next to the database file, so the same URL finds it), then applies
/// `customize`. Users made on an unthrottled instance can so meet a throttled one whose
/// buckets are still full.
pub async fn twin(
    backend: &Backend,
    app: &TestApp,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    let database_url = app.database_url.clone();
    let signing_key = app.settings.jwt.signing_key.clone();
    spawn_app_with(backend.clone(), move |s| {
        s.database.url = Secret(database_url);
        s.jwt.signing_key = signing_key;
        customize(s);
    })
    .await
}

/// Settings that turn throttling on with generous rates; tests then lower the scope they
/// exercise. Hourly rates: a bucket refills one request per minutes, never during a test.
pub fn throttle_on(s: &mut Settings) {
    s.throttle.enabled = true;
    s.throttle.anon = "1000/hour".parse().expect("rate");
    s.throttle.user = "1000/hour".parse().expect("rate");
    s.throttle.login = "1000/hour".parse().expect("rate");
}

/// actix-governor's marker for requests a scope let through unmetered must never reach
/// clients.
pub fn assert_no_whitelisted_header(resp: &Response) {
    assert!(
        header(resp, "x-ratelimit-whitelisted").is_none(),
        "x-ratelimit-whitelisted leaked on {} {}",
        resp.status(),
        resp.url()
    );
}

// ---------------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------------

/// What the server did with a raw request.
#[derive(Debug)]
pub enum RawReply {
    Response(RawResponse),
    /// The connection was closed (FIN or reset) before any response byte.
    Closed,
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a problem+json response with `status` and `code`.
    pub fn assert_problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        let content_type = self
            .headers
            .get("content-type")
            .cloned()
            .unwrap_or_default();
        assert!(
            content_type.starts_with("application/problem+json"),
            "content-type `{content_type}`: {self:?}"
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["status"], status, "{body}");
        body
    }
}

/// `host:port` of a `TestApp::address`.
pub fn socket_address(app: &TestApp) -> String {
    app.address
        .strip_prefix("http://")
        .unwrap_or(&app.address)
        .to_owned()
}

/// Sends `parts` (written one after the other; a failed write, e.g. because the server
/// already answered and closed, ends the sending) over a fresh connection, then reads
/// until the server closes it. Panics if the server neither answers nor closes within
/// `patience`. Returns the reply and how long the whole exchange took.
pub async fn raw_exchange(
    app: &TestApp,
    parts: Vec<Vec<u8>>,
    patience: Duration,
) -> (RawReply, Duration) {
    let address = socket_address(app);
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut stream = TcpStream::connect(&address).expect("cannot connect");
        stream
            .set_read_timeout(Some(patience))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(patience))
            .expect("set_write_timeout");
        for part in &parts {
            if stream.write_all(part).is_err() {
                break;
            }
        }
        let mut received = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "the server neither answered nor closed the connection within \
                         {patience:?}; received so far: {:?}",
                        String::from_utf8_lossy(&received)
                    )
                }
                // Reset after (or instead of) a response: keep what arrived.
                Err(_) => break,
            }
        }
        (parse_raw(&received), started.elapsed())
    })
    .await
    // Re-raise the exchange's own panic (its message says what the server did).
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn parse_raw(bytes: &[u8]) -> RawReply {
    if bytes.is_empty() {
        return RawReply::Closed;
    }
    let text = String::from_utf8_lossy(bytes);
    let head_end = text
        .find("\r\n\r\n")
        .unwrap_or_else(|| panic!("incomplete response head: {text:?}"));
    let head = &text[..head_end];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {status_line:?}"));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let raw_body = &bytes[head_end + 4..];
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    RawReply::Response(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            return out;
        };
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = data.get(end + 2..).unwrap_or_default();
    }
}

// ---------------------------------------------------------------------------------
// A TCP proxy in front of the database that the test can cut and restore
// ---------------------------------------------------------------------------------

struct ProxyState {
    up: bool,
    /// Both ends of every forwarded connection, to cut them.
    live: Vec<TcpStream>,
}

/// Forwards `127.0.0.1:<port>` to a target address. `cut` closes every forwarded
/// connection and makes new ones fail at once (accepted, then closed: to a database
/// client, the server is gone); `restore` forwards again. The database server itself and
/// every other test using it are untouched.
pub struct TcpProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
}

impl TcpProxy {
    pub fn start(target: String) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(ProxyState {
            up: true,
            live: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                // Decided under the lock, so `cut` cannot miss a connection being set up.
                let mut state = thread_state.lock().expect("proxy state");
                if !state.up {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                for stream in [&client, &server] {
                    if let Ok(clone) = stream.try_clone() {
                        state.live.push(clone);
                    }
                }
                drop(state);
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        TcpProxy { addr, state, stop }
    }

    pub fn cut(&self) {
        let mut state = self.state.lock().expect("proxy state");
        state.up = false;
        for stream in state.live.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.state.lock().expect("proxy state").up = true;
    }
}

fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// `url` (a `postgres://` URL) with its host and port replaced by `addr`, and the
/// `host:port` it pointed at (default port 5432).
pub fn redirect_postgres_url(url: &str, addr: SocketAddr) -> (String, String) {
    let mut parsed = reqwest::Url::parse(url).expect("PostgreSQL URL");
    let target = format!(
        "{}:{}",
        parsed.host_str().expect("PostgreSQL URL without host"),
        parsed.port().unwrap_or(5432)
    );
    parsed.set_host(Some("127.0.0.1")).expect("set host");
    parsed.set_port(Some(addr.port())).expect("set port");
    (parsed.to_string(), target)
}

// ---------------------------------------------------------------------------------
// Prometheus text format
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a text exposition (comments skipped).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line: {line}"));
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|e| panic!("bad value in {line}: {e}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            Sample {
                name: name.to_owned(),
                labels,
                value,
            }
        })
        .collect()
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    labels
}

/// The samples named `name` whose labels include all of `labels`.
pub fn samples<'a>(all: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    all.iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
        })
        .collect()
}

/// The value of the one sample `name{labels…}`; panics (showing the exposition) when
/// there is none or more than one.
pub fn metric(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = samples(all, name, labels);
    assert!(
        found.len() == 1,
        "expected one sample {name}{labels:?}, found {}: {:#?}",
        found.len(),
        all.iter()
            .filter(|s| s.name.starts_with(name))
            .collect::<Vec<_>>()
    );
    found[0].value
}

/// `GET /metrics`, asserting the content type; the exposition text.
pub async fn scrape(app: &TestApp) -> String {
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let content_type = header(&resp, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain") || content_type.contains("openmetrics-text"),
        "content-type `{content_type}`"
    );
    resp.text().await.expect("metrics body")
}

// ---------------------------------------------------------------------------------
// Reading the database behind the service's back
// ---------------------------------------------------------------------------------

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Runs `sql`, which must select one `BIGINT`-compatible column named `n` (e.g.
/// `SELECT COUNT(*) AS n FROM …`), against `app`'s database.
pub fn count(app: &TestApp, sql: &str) -> i64 {
    let rows: Vec<CountRow> = if let Some(path) = app.database_url.strip_prefix("sqlite://") {
        let mut conn = SqliteConnection::establish(path).expect("cannot open SQLite file");
        diesel::sql_query("PRAGMA busy_timeout = 5000")
            .execute(&mut conn)
            .expect("busy_timeout");
        diesel::sql_query(sql)
            .load(&mut conn)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    } else {
        let mut conn =
            PgConnection::establish(&app.database_url).expect("cannot connect to PostgreSQL");
        diesel::sql_query(sql)
            .load(&mut conn)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    rows.first().map_or(0, |r| r.n)
}

/// Whether `app` runs on SQLite.
pub fn is_sqlite(app: &TestApp) -> bool {
    app.database_url.starts_with("sqlite://")
}
