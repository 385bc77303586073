//! The operator command line, run as the real binary in a scratch directory.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

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

/// Runs `latchkey serve` on a free port with debug logging and returns the child with its
/// base URL, read from the "listening" log line.
fn serve_with_logs(dir: &Path) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.arg("serve")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, _) in
        std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL")
    {
        cmd.env_remove(key);
    }
    cmd.envs([
        ("RUST_LOG", "debug"),
        ("LATCHKEY_SERVER__BIND", "127.0.0.1:0"),
        ("LATCHKEY_PASSWORD__BCRYPT_COST", "4"),
        ("LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION", "false"),
    ]);
    let mut child = cmd.spawn().expect("spawn latchkey serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let port = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .expect("read log");
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("(port ").nth(1) {
            break rest.trim_end_matches(')').to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    let rest = std::thread::spawn(move || {
        lines.map_while(Result::ok).fold(seen, |mut all, line| {
            all.push_str(&line);
            all.push('\n');
            all
        })
    });
    (child, format!("http://127.0.0.1:{port}"), rest)
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
