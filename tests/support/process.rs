//! Running the real binary: `latchkey serve` in a scratch directory with a clean
//! configuration, its log collected as it runs, and signals.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};

/// Runs `latchkey serve` on a free port with `env` on top of a clean configuration;
/// returns the child, its base URL (from the "listening … (port N)" line, whatever the
/// log format) and the log as it is collected.
pub fn serve_env(dir: &Path, env: &[(&str, &str)]) -> (std::process::Child, String, Log) {
    use std::io::{BufRead, BufReader};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.arg("serve")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars()
        .filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL" || k == "RUST_LOG")
    {
        cmd.env_remove(key);
    }
    cmd.envs([
        ("LATCHKEY_SERVER__BIND", "127.0.0.1:0"),
        ("LATCHKEY_PASSWORD__BCRYPT_COST", "4"),
        ("LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION", "false"),
    ])
    .envs(env.iter().copied());
    let mut child = cmd.spawn().expect("spawn latchkey serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let port = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("server exited before listening:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("(port ").nth(1) {
            break rest
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>();
        }
    };
    let text = Arc::new((Mutex::new(seen), Condvar::new()));
    let shared = Arc::clone(&text);
    let reader = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let (all, grew) = &*shared;
            let mut all = all.lock().expect("log lock");
            all.push_str(&line);
            all.push('\n');
            grew.notify_all();
        }
    });
    let log = Log { text, reader };
    (child, format!("http://127.0.0.1:{port}"), log)
}

/// A server's log, read by a thread while it runs (so it never blocks on a full pipe).
pub struct Log {
    text: Arc<(Mutex<String>, Condvar)>,
    reader: std::thread::JoinHandle<()>,
}

impl Log {
    /// The whole log, once the server has exited.
    pub fn join(self) -> std::thread::Result<String> {
        self.reader.join()?;
        let (all, _) = &*self.text;
        Ok(std::mem::take(&mut *all.lock().expect("log lock")))
    }

    /// The log so far, once a line contains `needle` (woken by each new line, not by
    /// polling); panics after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: std::time::Duration) -> String {
        let (all, grew) = &*self.text;
        let all = all.lock().expect("log lock");
        let (all, waited) = grew
            .wait_timeout_while(all, timeout, |all| !all.contains(needle))
            .expect("log lock");
        assert!(!waited.timed_out(), "no `{needle}` in the log:\n{all}");
        all.clone()
    }
}

/// The `/metrics` text of the server at `base`.
pub async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

pub fn sigterm(child: &std::process::Child) {
    // SAFETY: signalling our own child process.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill(SIGTERM) failed");
}
