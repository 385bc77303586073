//! An in-process webhook receiver for the tests: a real HTTP/1.1 server on 127.0.0.1 (one
//! request per connection, just enough of RFC 9112 for an HTTP client to POST to it) that
//! keeps every request it gets, headers and raw body bytes, and can be scripted to fail or
//! to hold requests. Also the receiving side of Standard Webhooks: signature verification
//! written from the specification, with its test vector, so that the service's own signing
//! code is never what checks the service.
//!
//! Self-contained (no `crate::` imports), because `tests/cli.rs` includes it too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The path every test endpoint is configured with.
pub const HOOK_PATH: &str = "/hook";

/// Where the receiver's redirects point.
pub const ELSEWHERE: &str = "/elsewhere";

/// Larger requests are refused: no event comes near it, and a runaway client must not
/// exhaust the test process.
const MAX_REQUEST: usize = 1024 * 1024;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lower-cased; a repeated header keeps its last value.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The status the receiver answered (or, for a held request, will answer).
    pub status: u16,
    /// Whether the receiver held it (`hold_next`): the client may have given up on it.
    pub held: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// `webhook-id`, or "" when it is missing (then verification fails, saying so).
    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id").unwrap_or_default()
    }

    /// Whether this attempt delivered: answered 2xx at once (a held request's client may
    /// have timed out before the answer).
    pub fn answered_ok(&self) -> bool {
        !self.held && (200..300).contains(&self.status)
    }
}

/// What the next requests get. Counters are consumed in arrival order.
struct Script {
    /// Answer `fail_status` to this many requests.
    fail: usize,
    fail_status: u16,
    /// Keep this many requests unanswered until `release`.
    hold: usize,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            fail: 0,
            fail_status: 500,
            hold: 0,
        }
    }
}

struct Shared {
    port: u16,
    requests: Mutex<Vec<Request>>,
    script: Mutex<Script>,
    release: watch::Sender<bool>,
    /// Requests waiting for `release` right now.
    held: AtomicUsize,
}

pub struct Receiver {
    pub port: u16,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Receiver {
    /// A receiver on a free port.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// A receiver on `port` (e.g. one the service was configured with while nothing
    /// listened there, to turn refused connections into deliveries).
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("cannot bind the webhook receiver to port {port}: {e}"));
        let port = listener.local_addr().expect("receiver address").port();
        let shared = Arc::new(Shared {
            port,
            requests: Mutex::default(),
            script: Mutex::default(),
            release: watch::Sender::new(false),
            held: AtomicUsize::new(0),
        });
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Receiver {
            port,
            shared,
            server,
        }
    }

    /// The endpoint URL to configure.
    pub fn url(&self) -> String {
        endpoint_url(self.port)
    }

    /// Answer `500` to the next `n` requests (`usize::MAX`: to every one).
    pub fn fail_next(&self, n: usize) {
        self.fail_next_with(n, 500);
    }

    /// Answer `status` to the next `n` requests; a 3xx redirects to [`ELSEWHERE`] on this
    /// receiver, so a client that follows it shows up there.
    pub fn fail_next_with(&self, n: usize, status: u16) {
        let mut script = self.script();
        script.fail = n;
        script.fail_status = status;
    }

    /// Leave the next `n` requests unanswered, their connection open, until `release`.
    pub fn hold_next(&self, n: usize) {
        self.script().hold = n;
    }

    /// Answers every held request (and lets later ones through).
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// How many requests are being held right now.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Every request received so far, oldest first (held ones included).
    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .requests
            .lock()
            .expect("receiver log poisoned")
            .clone()
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.shared.script.lock().expect("receiver script poisoned")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The endpoint URL of a receiver on `port` (which may not be listening yet).
pub fn endpoint_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}{HOOK_PATH}")
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owned here, so aborting the server task also closes its connections.
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("webhook receiver: accept failed: {e}");
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            if let Err(e) = exchange(stream, &shared).await {
                // A client that gave up (timeout) while its request was held ends here.
                eprintln!("webhook receiver: connection ended: {e}");
            }
        });
    }
}

/// One request, one answer, then the connection is closed (`connection: close`), so a
/// client never reuses a connection the receiver is about to drop.
async fn exchange(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let Some(mut request) = read_request(&mut reader).await? else {
        return Ok(());
    };
    let (fail, hold) = {
        let mut script = shared.script.lock().expect("receiver script poisoned");
        let fail = take_one(&mut script.fail).then_some(script.fail_status);
        (fail, take_one(&mut script.hold))
    };
    request.status = fail.unwrap_or(200);
    request.held = hold;
    let status = request.status;
    // Recorded on arrival: a test sees a held request while it is held.
    shared
        .requests
        .lock()
        .expect("receiver log poisoned")
        .push(request);
    if hold {
        shared.held.fetch_add(1, Ordering::SeqCst);
        let mut released = shared.release.subscribe();
        let _ = released.wait_for(|r| *r).await;
        shared.held.fetch_sub(1, Ordering::SeqCst);
    }
    let body: &[u8] = if fail.is_some() { b"boom" } else { b"ok" };
    let location = if (300..400).contains(&status) {
        format!("location: http://127.0.0.1:{}{ELSEWHERE}\r\n", shared.port)
    } else {
        String::new()
    };
    let reason = match status {
        200 => "OK",
        307 => "Temporary Redirect",
        _ => "Scripted Failure", // any phrase will do (RFC 9112: clients ignore it)
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         {location}connection: close\r\n\r\n",
        body.len()
    );
    write.write_all(head.as_bytes()).await?;
    write.write_all(body).await?;
    write.shutdown().await
}

/// Decrements a script counter; whether it was non-zero.
fn take_one(counter: &mut usize) -> bool {
    let had = *counter > 0;
    *counter = counter.saturating_sub(1);
    had
}

fn invalid(why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.into())
}

/// Reads one request: head, then a `content-length` or chunked body. `None` when the
/// client closed the connection without sending anything.
async fn read_request(
    reader: &mut (impl AsyncBufRead + Unpin),
) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let n = reader.read_until(b'\n', &mut head).await?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(invalid("end of stream in the request head"))
            };
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
        if head.len() > MAX_REQUEST {
            return Err(invalid("request head too large"));
        }
    }
    let head = String::from_utf8(head).map_err(|_| invalid("request head is not UTF-8"))?;
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader).await?
    } else {
        let length: usize = headers
            .get("content-length")
            .map_or(Ok(0), |v| v.parse())
            .map_err(|_| invalid("bad content-length"))?;
        if length > MAX_REQUEST {
            return Err(invalid("body too large"));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        body
    };
    Ok(Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body,
        status: 0,
        held: false,
    }))
}

async fn read_chunked(reader: &mut (impl AsyncBufRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size line"))?;
        if body.len() + size > MAX_REQUEST {
            return Err(invalid("body too large"));
        }
        if size == 0 {
            // Trailer section: lines up to an empty one.
            loop {
                line.clear();
                reader.read_line(&mut line).await?;
                if line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        line.clear();
        reader.read_line(&mut line).await?; // the CRLF after the chunk
    }
}

// ---------------------------------------------------------------------------------
// Standard Webhooks, the receiving side
// ---------------------------------------------------------------------------------

/// A fresh endpoint secret (`whsec_` and 32 random bytes in standard base64) in a file
/// the service reads, with a trailing newline as an editor leaves it.
pub struct SecretFile {
    pub secret: String,
    pub path: PathBuf,
    _dir: TempDir,
}

impl SecretFile {
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).expect("random secret");
        let secret = format!("whsec_{}", STANDARD.encode(key));
        let dir = TempDir::new().expect("temp dir for the secret");
        let path = dir.path().join("webhook.secret");
        std::fs::write(&path, format!("{secret}\n")).expect("write the secret file");
        SecretFile {
            secret,
            path,
            _dir: dir,
        }
    }
}

/// `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, the key being the
/// base64-decoded part of `secret` after `whsec_`.
pub fn sign(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key_bytes = STANDARD.decode(encoded).expect("secret is whsec_<base64>");
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes);
    let mut context = hmac::Context::with_key(&key);
    context.update(format!("{id}.{timestamp}.").as_bytes());
    context.update(body);
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

/// One verified delivery: what a Standard Webhooks library hands its caller.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub timestamp: chrono::DateTime<chrono::FixedOffset>,
    pub data: Value,
    /// The raw body, to compare attempts byte for byte and to search for secrets.
    pub body: Vec<u8>,
}

/// Checks `request` as a receiver following the specification would, with the tolerance
/// of its libraries (five minutes either way of the attempt's timestamp), plus the shape
/// API.md gives the body; returns the event or what is wrong.
pub fn verify(secret: &str, request: &Request) -> Result<Event, String> {
    let fail = |why: String| Err(format!("{why}; request: {}", describe(request)));
    if request.method != "POST" || request.path != HOOK_PATH {
        return fail(format!("{} {}", request.method, request.path));
    }
    if !request
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json"))
    {
        return fail("content-type is not application/json".into());
    }
    let id = request.webhook_id();
    let well_formed = id
        .strip_prefix("msg_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return fail(format!("webhook-id {id:?} is not msg_<32 hex>"));
    }
    let timestamp = request.header("webhook-timestamp").unwrap_or_default();
    let Ok(seconds) = timestamp.parse::<i64>() else {
        return fail(format!(
            "webhook-timestamp {timestamp:?} is not Unix seconds"
        ));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    if (now - seconds).abs() > 300 {
        return fail(format!(
            "webhook-timestamp {seconds} is {now} ± more than 5 min"
        ));
    }
    let expected = sign(secret, id, timestamp, &request.body);
    // The header may list several space-separated signatures (key rotation): one must match.
    let signatures = request.header("webhook-signature").unwrap_or_default();
    if !signatures.split(' ').any(|s| s == expected) {
        return fail(format!(
            "webhook-signature {signatures:?}, expected {expected}"
        ));
    }
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => return fail(format!("body is not JSON: {e}")),
    };
    let keys: Vec<&str> = body
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    if sorted != ["data", "timestamp", "type"] {
        return fail(format!(
            "body keys {keys:?}, expected type, timestamp, data"
        ));
    }
    let Some(kind) = body["type"].as_str() else {
        return fail("`type` is not a string".into());
    };
    let Ok(event_time) =
        chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap_or_default())
    else {
        return fail("`timestamp` is not RFC 3339".into());
    };
    if !body["data"].is_object() {
        return fail("`data` is not an object".into());
    }
    Ok(Event {
        id: id.to_owned(),
        kind: kind.to_owned(),
        timestamp: event_time,
        data: body["data"].clone(),
        body: request.body.clone(),
    })
}

/// A request for failure messages: headers and the body as text.
pub fn describe(request: &Request) -> String {
    format!(
        "{} {} {:?} {}",
        request.method,
        request.path,
        request.headers,
        String::from_utf8_lossy(&request.body)
    )
}

/// Checks of the receiver itself, so that a failing test is never its artefact.
mod self_tests {
    use super::{ELSEWHERE, HOOK_PATH, Receiver, Request, SecretFile, sign, verify};

    #[test]
    fn signs_the_specification_test_vector() {
        // From the Standard Webhooks specification's reference libraries.
        assert_eq!(
            sign(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                br#"{"test": 2432232314}"#,
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_requests_and_follows_its_script() {
        let receiver = Receiver::start().await;
        let secret = SecretFile::new();
        let body = br#"{"type":"ping","timestamp":"2026-11-30T07:00:00Z","data":{}}"#;
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let id = "msg_0123456789abcdef0123456789abcdef";
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let post = || {
            client
                .post(receiver.url())
                .header("content-type", "application/json")
                .header("webhook-id", id)
                .header("webhook-timestamp", &timestamp)
                .header(
                    "webhook-signature",
                    format!("v1,bm90IGl0 {}", sign(&secret.secret, id, &timestamp, body)),
                )
                .body(body.to_vec())
                .send()
        };
        receiver.fail_next(1);
        assert_eq!(post().await.expect("first").status(), 500);
        assert_eq!(post().await.expect("second").status(), 200);
        let requests: Vec<Request> = receiver.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].status, 500);
        assert_eq!(requests[1].path, HOOK_PATH);
        let event = verify(&secret.secret, &requests[1]).expect("verifies");
        assert_eq!((event.id.as_str(), event.kind.as_str()), (id, "ping"));
        assert_eq!(event.body, body);
        assert!(verify(&SecretFile::new().secret, &requests[1]).is_err());
        assert_eq!(
            std::fs::read_to_string(&secret.path).expect("secret file"),
            format!("{}\n", secret.secret)
        );

        receiver.fail_next_with(1, 307);
        let redirected = post().await.expect("redirected");
        assert_eq!(redirected.status(), 307);
        let location = redirected.headers()["location"].to_str().expect("location");
        assert_eq!(
            location,
            format!("http://127.0.0.1:{}{ELSEWHERE}", receiver.port)
        );

        receiver.hold_next(1);
        let held = tokio::spawn(post());
        while receiver.held() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            !receiver.requests()[2].answered_ok(),
            "held: not a delivery"
        );
        receiver.release();
        assert_eq!(held.await.expect("task").expect("held").status(), 200);
    }
}
