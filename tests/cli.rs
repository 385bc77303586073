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
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out);
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
