//! The operator command line, run as the real binary in a scratch directory.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

#[path = "support/process.rs"]
mod process;
use process::{Log, metrics_text, serve_env, sigterm};

/// `latchkey ARGS` in `dir` with a clean configuration environment and optional stdin.
fn latchkey(dir: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in
        std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL")
    {
        cmd.env_remove(key);
    }
    cmd.env("LATCHKEY_PASSWORD__BCRYPT_COST", "4")
        .envs(env.iter().copied());
    let mut child = cmd.spawn().expect("spawn latchkey");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait for latchkey")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn createsuperuser_creates_once_and_refuses_weak_or_duplicate() {
    let dir = TempDir::new().expect("tempdir");
    let args = [
        "createsuperuser",
        "--username",
        "root",
        "--email",
        "root@example.com",
        "--password-stdin",
    ];
    let ok = latchkey(dir.path(), &args, Some("a sturdy passphrase\n"), &[]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("created staff user root"));

    let again = latchkey(dir.path(), &args, Some("a sturdy passphrase\n"), &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("already exists"), "{}", text(&again));

    let weak = [
        "createsuperuser",
        "--username",
        "other",
        "--email",
        "o@example.com",
        "--password-stdin",
    ];
    let out = latchkey(dir.path(), &weak, Some("password\n"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("too common"), "{}", text(&out));
}

#[test]
fn keys_generate_writes_a_private_key_and_never_overwrites() {
    let dir = TempDir::new().expect("tempdir");
    for alg in ["ES256", "RS256", "EdDSA", "HS256"] {
        let name = format!("{alg}.pem");
        let out = latchkey(
            dir.path(),
            &["keys", "generate", "--algorithm", alg, "--out", &name],
            None,
            &[],
        );
        assert!(out.status.success(), "{alg}: {}", text(&out));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(&name))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{alg}");
        }
        let again = latchkey(
            dir.path(),
            &["keys", "generate", "--algorithm", alg, "--out", &name],
            None,
            &[],
        );
        assert_eq!(again.status.code(), Some(1), "{alg} must not overwrite");
    }
}

#[test]
fn check_config_redacts_secrets_and_names_bad_keys() {
    let dir = TempDir::new().expect("tempdir");
    let url = (
        "DATABASE_URL",
        "postgres://app:hunter2@db.internal:5432/latchkey",
    );
    let out = latchkey(dir.path(), &["check-config"], None, &[url]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("hunter2") && text(&out).contains("db.internal"),
        "{}",
        text(&out)
    );

    let out = latchkey(
        dir.path(),
        &["check-config"],
        None,
        &[("LATCHKEY_JWT__ACCESS_TTL", "soon")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).to_lowercase().contains("jwt.access_ttl"),
        "{}",
        text(&out)
    );
}

#[test]
fn serve_refuses_postgres_without_a_signing_key_and_names_the_key() {
    let dir = TempDir::new().expect("tempdir");
    let pg = std::env::var("LATCHKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://nobody@127.0.0.1:1/x".into());
    let out = latchkey(
        dir.path(),
        &["serve"],
        None,
        &[
            ("DATABASE_URL", &pg),
            ("LATCHKEY_DATABASE__MIGRATE_ON_START", "false"),
        ],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("jwt.signing_key") || said.contains("database.url"),
        "{said}"
    );
    assert!(!said.contains("hunter2"));
}

#[test]
fn migrate_then_flush_expired_on_a_fresh_database() {
    let dir = TempDir::new().expect("tempdir");
    let out = latchkey(dir.path(), &["migrate"], None, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.path().join("latchkey.db").exists());
    let out = latchkey(dir.path(), &["flush-expired"], None, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("deleted 0 expired"), "{}", text(&out));
}

/// Runs `latchkey serve` on a free port with debug logging (see [`serve_env`]).
fn serve_with_logs(dir: &Path) -> (std::process::Child, String, Log) {
    serve_env(dir, &[("RUST_LOG", "debug")])
}

#[tokio::test]
async fn logs_never_contain_passwords_tokens_or_hashes() {
    let dir = TempDir::new().expect("tempdir");
    let (mut child, base, log) = serve_with_logs(dir.path());
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value, bearer: Option<&str>| {
        let mut req = http.post(format!("{base}{path}")).json(&body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let (password, new_password) = ("Sekrit-Passphrase-1", "Sekrit-Passphrase-2");
    let reg: serde_json::Value = post(
        "/auth/register",
        serde_json::json!({"username": "ada", "email": "ada@example.com", "password": password, "password_confirm": password}),
        None,
    )
    .await
    .expect("register")
    .json()
    .await
    .expect("pair");
    let (access, refresh) = (
        reg["access_token"].as_str().unwrap_or_default(),
        reg["refresh_token"].as_str().unwrap_or_default(),
    );
    let rotated: serde_json::Value = post(
        "/auth/token/refresh",
        serde_json::json!({"refresh_token": refresh}),
        None,
    )
    .await
    .expect("refresh")
    .json()
    .await
    .expect("pair");
    let wrong = post(
        "/auth/login",
        serde_json::json!({"username": "ada", "password": "Wrong-Guess-42"}),
        None,
    )
    .await
    .expect("login");
    assert_eq!(wrong.status(), 401);
    let change = serde_json::json!({"current_password": password, "new_password": new_password, "new_password_confirm": new_password});
    assert_eq!(
        post("/users/me/password", change, Some(access))
            .await
            .expect("change")
            .status(),
        200
    );

    // SIGTERM: the server drains and exits 0, closing its log.
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success(), "SIGTERM must exit 0");
    let log = log.join().expect("log reader");
    assert!(
        log.contains("POST /auth/login"),
        "request lines are logged:\n{log}"
    );
    let rotated_refresh = rotated["refresh_token"].as_str().unwrap_or_default();
    for secret in [
        password,
        new_password,
        "Wrong-Guess-42",
        access,
        refresh,
        rotated_refresh,
        "bcrypt_sha256$",
        "$2b$",
    ] {
        assert!(
            !secret.is_empty() && !log.contains(secret),
            "log contains a secret ({secret:.12}…):\n{log}"
        );
    }
}

/// A field of a JSON log line: top level, or inside a nested object (e.g. `fields`).
fn log_field<'a>(line: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    line.get(key).or_else(|| {
        line.as_object()?
            .values()
            .filter(|v| v.is_object())
            .find_map(|v| v.get(key))
    })
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_access_fields_and_no_secrets() {
    let dir = TempDir::new().expect("tempdir");
    let (mut child, base, log) = serve_env(
        dir.path(),
        &[("LATCHKEY_LOG_FORMAT", "json"), ("RUST_LOG", "debug")],
    );
    let http = reqwest::Client::new();
    let password = "Sekrit-Passphrase-7";
    let reg: serde_json::Value = http
        .post(format!("{base}/auth/register"))
        .json(&serde_json::json!({"username": "ada", "email": "ada@example.com", "password": password, "password_confirm": password}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("pair");
    let access = reg["access_token"].as_str().expect("access").to_owned();
    let refresh = reg["refresh_token"].as_str().expect("refresh").to_owned();
    let wrong = http
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"username": "ada", "password": "Wrong-Guess-Lantern-9"}))
        .send()
        .await
        .expect("login");
    assert_eq!(wrong.status(), 401);
    let rotated: serde_json::Value = http
        .post(format!("{base}/auth/token/refresh"))
        .json(&serde_json::json!({"refresh_token": refresh}))
        .send()
        .await
        .expect("refresh")
        .json()
        .await
        .expect("pair");
    let me = http
        .get(format!("{base}/users/me"))
        .bearer_auth(&access)
        .header("x-request-id", "req-json-1")
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200);
    let id = reg["user"]["id"].as_str().expect("id").to_owned();
    let other = http
        .get(format!("{base}/users/{id}?secret=query-value"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("user");
    assert_eq!(other.status(), 403);

    sigterm(&child);
    assert!(child.wait().expect("wait").success(), "SIGTERM must exit 0");
    let log = log.join().expect("log reader");

    let mut access_lines = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(value.is_object(), "log line is not an object: {line}");
        for key in ["ts", "level", "target", "msg"] {
            assert!(value[key].is_string(), "`{key}` missing in: {line}");
        }
        chrono::DateTime::parse_from_rfc3339(value["ts"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("`ts` is not RFC 3339 ({e}): {line}"));
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
                .contains(&value["level"].as_str().unwrap_or_default()),
            "{line}"
        );
        if value["target"] == "latchkey::access" {
            access_lines.push(value);
        }
    }
    let rotated_refresh = rotated["refresh_token"].as_str().unwrap_or_default();
    for secret in [
        password,
        "Wrong-Guess-Lantern-9",
        access.as_str(),
        refresh.as_str(),
        rotated_refresh,
        "$2b$",
        "$2a$",
        "bcrypt_sha256$",
    ] {
        assert!(
            !secret.is_empty() && !log.contains(secret),
            "log contains a secret ({secret:.12}…):\n{log}"
        );
    }
    assert!(
        !log.contains("query-value"),
        "a query string was logged:\n{log}"
    );
    assert!(access_lines.len() >= 5, "access lines:\n{log}");
    assert!(
        log.contains("req-json-1"),
        "the request id is not logged:\n{log}"
    );
    // Structured fields last: everything above holds for the text of the lines too.
    for line in &access_lines {
        for key in ["method", "route", "status", "latency_ms", "request_id"] {
            assert!(
                log_field(line, key).is_some(),
                "access line without `{key}` field: {line}"
            );
        }
        assert!(
            log_field(line, "status").is_some_and(|s| s.is_u64()
                || s.as_str().is_some_and(|s| s.parse::<u16>().is_ok())),
            "{line}"
        );
    }
    let mine = access_lines
        .iter()
        .find(|l| log_field(l, "request_id").and_then(|v| v.as_str()) == Some("req-json-1"))
        .unwrap_or_else(|| panic!("no access line with the request id:\n{log}"));
    assert_eq!(
        log_field(mine, "route").and_then(|v| v.as_str()),
        Some("/users/me"),
        "{mine}"
    );
    // Routes are templates, never raw ids.
    assert!(
        access_lines
            .iter()
            .any(|l| log_field(l, "route").and_then(|v| v.as_str()) == Some("/users/{id}")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_logins_and_refuses_new_connections() {
    use std::time::{Duration, Instant};

    let dir = TempDir::new().expect("tempdir");
    // One hashing thread and a slow cost: a login takes seconds and a second one queues.
    let (mut child, base, log) = serve_env(
        dir.path(),
        &[
            ("LATCHKEY_PASSWORD__BCRYPT_COST", "12"),
            ("LATCHKEY_PASSWORD__HASH_CONCURRENCY", "1"),
            ("LATCHKEY_SERVER__SHUTDOWN_TIMEOUT", "120s"),
            ("LATCHKEY_THROTTLE__ENABLED", "false"),
        ],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let password = "Violet-Harbor-Quill-42";
    let reg = http
        .post(format!("{base}/auth/register"))
        .json(&serde_json::json!({"username": "ada", "email": "ada@example.com", "password": password, "password_confirm": password}))
        .send()
        .await
        .expect("register");
    assert_eq!(reg.status(), 201);

    let login = |http: reqwest::Client, base: String| {
        tokio::spawn(async move {
            let resp = http
                .post(format!("{base}/auth/login"))
                .json(&serde_json::json!({"username": "ada", "password": "Violet-Harbor-Quill-42"}))
                .send()
                .await
                .expect("in-flight login failed");
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.expect("login body");
            (status, body)
        })
    };
    let first = login(http.clone(), base.clone());
    let second = login(http.clone(), base.clone());

    // Both are in flight once one is hashing and the other waits for the thread.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = metrics_text(&http, &base).await;
        if metrics
            .lines()
            .any(|l| l.trim() == "latchkey_password_hash_queue_depth 1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second login never queued:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    sigterm(&child);
    // New connections are refused while the logins are still being served.
    let addr = base.trim_start_matches("http://").to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match std::net::TcpStream::connect(&addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => assert!(
                Instant::now() < deadline,
                "still accepting connections after SIGTERM"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !second.is_finished(),
        "the queued login finished before the listener closed: nothing was in flight"
    );

    for (name, task) in [("first", first), ("second", second)] {
        let (status, body) = task.await.expect("login task");
        assert_eq!(status, 200, "{name} in-flight login: {body}");
        assert!(body["access_token"].is_string(), "{name}: {body}");
    }
    let status = tokio::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .expect("wait task");
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    let log = log.join().expect("log reader");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn check_config_redacts_every_secret_part_of_urls() {
    let dir = TempDir::new().expect("tempdir");
    for url in [
        "postgres://app:hunter2@db.internal:5432/latchkey",
        "postgres://app@db.internal/latchkey?password=hunter2",
        "postgres://app@db.internal/latchkey?sslmode=require&password=hunter2",
        "postgresql://db.internal/latchkey?pass%77ord=hunter2",
        "postgres://db.internal/latchkey?sslpassword=hunter2",
        "postgres://app:hun%40ter2@db.internal/latchkey?password=hunter2",
        "postgres://app:hun?ter2@db.internal/latchkey",
        "postgres://app:hun/ter2@db.internal/latchkey",
    ] {
        let out = latchkey(
            dir.path(),
            &["check-config"],
            None,
            &[
                ("DATABASE_URL", url),
                ("LATCHKEY_EMAIL__SMTP__PASSWORD", "hunter2"),
                (
                    "LATCHKEY_SERVER__PUBLIC_URL",
                    "https://ops:hunter2@id.example.com",
                ),
            ],
        );
        let said = text(&out);
        assert!(out.status.success(), "{url}: {said}");
        assert!(
            !said.contains("hunter2") && !said.contains("ter2"),
            "{url}: {said}"
        );
        let printed: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {said}"));
        let shown = printed["database"]["url"].as_str().unwrap_or_default();
        assert!(shown.starts_with("postgres"), "{url}: {shown}");
        assert_eq!(printed["email"]["smtp"]["password"], "********");
        assert_eq!(
            printed["server"]["public_url"],
            "https://ops:********@id.example.com"
        );
    }
}

/// The settings under `path` (`section.key`, nested sections dotted) whose value in
/// `tree` is a duration.
fn duration_keys(path: &str, tree: &serde_json::Value) -> Vec<String> {
    match tree {
        serde_json::Value::Object(map) => map
            .iter()
            .flat_map(|(key, value)| {
                let below = [path, key.as_str()].join(".");
                duration_keys(below.trim_start_matches('.'), value)
            })
            .collect(),
        serde_json::Value::String(text) if humantime::parse_duration(text).is_ok() => {
            vec![path.to_owned()]
        }
        _ => Vec::new(),
    }
}

#[test]
fn huge_durations_are_refused_at_load_naming_the_key() {
    let dir = TempDir::new().expect("tempdir");
    let out = latchkey(dir.path(), &["check-config"], None, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let keys = duration_keys("", &printed);
    assert!(keys.len() >= 9, "{keys:?}");
    for key in &keys {
        let var = format!("LATCHKEY_{}", key.to_uppercase().replace('.', "__"));
        for command in ["check-config", "serve"] {
            let out = latchkey(dir.path(), &[command], None, &[(&var, "999999999999d")]);
            let said = text(&out);
            assert_eq!(out.status.code(), Some(1), "{command} {var}: {said}");
            assert!(
                said.contains(&format!("`{key}`")),
                "{command} {var}: {said}"
            );
            assert!(!said.contains("panicked"), "{command} {var}: {said}");
        }
    }
}

#[tokio::test]
async fn file_backend_keeps_messages_private() {
    use std::os::unix::fs::PermissionsExt;

    let dir = TempDir::new().expect("tempdir");
    let (mut child, base, log) = serve_env(
        dir.path(),
        &[
            ("LATCHKEY_EMAIL__BACKEND", "file"),
            ("LATCHKEY_EMAIL__FILE_DIR", "spool/mail"),
            ("LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION", "true"),
        ],
    );
    let mail = dir.path().join("spool/mail");
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&dir.path().join("spool")), 0o700);
    assert_eq!(mode(&mail), 0o700);
    let password = "Violet-Harbor-Quill-42";
    let reg = reqwest::Client::new()
        .post(format!("{base}/auth/register"))
        .json(&serde_json::json!({"username": "ada", "email": "ada@example.com", "password": password, "password_confirm": password}))
        .send()
        .await
        .expect("register");
    assert_eq!(reg.status(), 201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let message = loop {
        let found = std::fs::read_dir(&mail)
            .expect("read the mail directory")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|ext| ext == "eml"));
        if let Some(path) = found {
            break path;
        }
        assert!(std::time::Instant::now() < deadline, "no message written");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(mode(&message), 0o600, "{}", message.display());
    sigterm(&child);
    assert!(child.wait().expect("wait").success());
    drop(log.join());
}

/// The default (console) email backend shows each message as a person reads it: the
/// decoded text with every link whole on one line, so it can be copied and works.
#[tokio::test]
async fn console_backend_prints_links_whole() {
    let dir = TempDir::new().expect("tempdir");
    let verify = [("LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION", "true")];
    let (mut child, base, log) = serve_env(dir.path(), &verify);
    let password = "Violet-Harbor-Quill-42";
    // A long address makes a long link: the one quoted-printable used to cut in two.
    let email = format!("{}@example.com", "a".repeat(60));
    let body = serde_json::json!({"username": "ada", "email": email, "password": password, "password_confirm": password});
    let http = reqwest::Client::new();
    let reg = http
        .post(format!("{base}/auth/register"))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert_eq!(reg.status(), 201);
    let text = log.wait_for("/activate/", std::time::Duration::from_secs(15));
    assert!(text.contains(&format!("To: {email}")), "{text}");
    assert!(
        !text.contains("=\n") && !text.contains("quoted-printable"),
        "{text}"
    );
    let link = text
        .lines()
        .find_map(|line| line.split_whitespace().find(|w| w.contains("/activate/")))
        .expect("the activation link");
    let rest = link
        .strip_prefix("http://127.0.0.1:8000/activate/")
        .unwrap_or_else(|| panic!("link {link}"));
    let (uid, token) = rest.split_once('/').expect("uid/token");

    // The link as printed activates the account.
    let resp = http
        .post(format!("{base}/auth/activate"))
        .json(&serde_json::json!({"uid": uid, "token": token}))
        .send()
        .await
        .expect("activate");
    assert_eq!(
        resp.status(),
        200,
        "{link}: {}",
        resp.text().await.unwrap_or_default()
    );
    sigterm(&child);
    assert!(child.wait().expect("wait").success());
    drop(log.join());
}

/// The receiver of the API tests. This binary uses only part of it.
#[allow(dead_code)]
#[path = "api/webhook_receiver.rs"]
mod webhook_receiver;

/// `latchkey webhooks send-test --url URL` (OPERATIONS.md): a signed `ping` to a configured
/// endpoint, its answer printed, the exit status following it; an unconfigured URL is
/// refused, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_send_test_pings_a_configured_endpoint() {
    use webhook_receiver::{Receiver, SecretFile, verify};

    let dir = TempDir::new().expect("tempdir");
    let receiver = Receiver::start().await;
    let secret = SecretFile::new();
    let endpoints = serde_json::json!([{"url": receiver.url(), "secret": secret.path}]);
    let send_test = |url: String| {
        let (dir, endpoints) = (dir.path().to_owned(), endpoints.to_string());
        // Blocking (the command waits for the receiver, which runs on this runtime).
        tokio::task::spawn_blocking(move || {
            let env = [("LATCHKEY_WEBHOOKS__ENDPOINTS", endpoints.as_str())];
            latchkey(&dir, &["webhooks", "send-test", "--url", &url], None, &env)
        })
    };

    let out = send_test(receiver.url()).await.expect("send-test");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("HTTP 200"), "{}", text(&out));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let ping = verify(&secret.secret, &requests[0]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ping.kind, "ping");
    assert_eq!(ping.data, serde_json::json!({}));

    receiver.fail_next(1);
    let out = send_test(receiver.url()).await.expect("send-test");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("HTTP 500"), "{}", text(&out));
    assert_eq!(receiver.requests().len(), 2);

    let stranger = "http://127.0.0.1:9/not-configured";
    let out = send_test(stranger.to_owned()).await.expect("send-test");
    // An error like any other of a command's (WEBHOOKS.md: exit 1 naming it).
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(stranger), "{}", text(&out));
    assert_eq!(
        receiver.requests().len(),
        2,
        "nothing sent to the stranger's URL"
    );
}
