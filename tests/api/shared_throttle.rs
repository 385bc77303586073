//! The shared throttle (`throttle.redis_url`, issue "Scale-out"): two instances over one
//! database and one Redis hold one limit together; Redis going away costs no request (each
//! instance falls back to its own limits, and counts it); Redis coming back is used again.
//! Each test runs its own `redis-server` on a free port, so it can stop it and so that no
//! other test shares its buckets.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, TestApp, TestUser, assert_problem, header, spawn_app_with};
use crate::ops_helpers::{metric, parse_metrics, scrape, twin};

dual_backend_tests!(
    two_instances_share_one_login_limit,
    one_account_is_limited_across_instances,
    redis_going_away_fails_no_request_and_coming_back_is_used,
);

/// A `redis-server` of the test's own, on a free loopback port, without persistence.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// `None` (and the test skipped, saying so) where `redis-server` is not installed;
    /// `.ci/run` requires it, so CI never skips.
    fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("skipped: redis-server is not installed (Debian: redis-server)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut redis = Self { port, child: None };
        redis.run();
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill redis-server");
            child.wait().expect("wait for redis-server");
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An instance with the given login rate, its limits in `redis`, clients behind a
/// trusted proxy (so a test can speak from several addresses).
async fn instance(backend: Backend, redis: &PrivateRedis, login: &str) -> TestApp {
    let (url, login) = (redis.url(), login.to_owned());
    spawn_app_with(backend, move |s| configure(s, &url, &login)).await
}

fn configure(s: &mut latchkey::config::Settings, redis_url: &str, login: &str) {
    s.throttle.enabled = true;
    s.throttle.anon = "1000/hour".parse().expect("rate");
    s.throttle.user = "1000/hour".parse().expect("rate");
    s.throttle.login = login.parse().expect("rate");
    s.throttle.redis_url = Some(latchkey::config::Secret(redis_url.to_owned()));
    s.server.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
}

/// The second instance: same database, same Redis, same settings.
async fn second(backend: &Backend, first: &TestApp, redis: &PrivateRedis, login: &str) -> TestApp {
    let (url, login) = (redis.url(), login.to_owned());
    twin(backend, first, move |s| configure(s, &url, &login)).await
}

async fn login_from(app: &TestApp, ip: &str, username: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"username": username, "password": "not the password"}))
        .send()
        .await
        .expect("request")
}

fn remaining(resp: &reqwest::Response) -> Option<String> {
    header(resp, "x-ratelimit-remaining")
}

async fn fallbacks(app: &TestApp) -> f64 {
    metric(
        &parse_metrics(&scrape(app).await),
        "latchkey_throttle_fallback_total",
        &[],
    )
}

async fn two_instances_share_one_login_limit(backend: Backend) {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let a = instance(backend.clone(), &redis, "3/hour").await;
    let b = second(&backend, &a, &redis, "3/hour").await;
    // One client address, its requests spread over both instances: 3 in all, not 3 each.
    for (n, app) in [&a, &b, &a].into_iter().enumerate() {
        let resp = login_from(app, "198.51.100.7", "nobody").await;
        assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(remaining(&resp), Some((2 - n).to_string()), "request {n}");
        assert_problem(resp, 401, "invalid_credentials").await;
    }
    let resp = login_from(&b, "198.51.100.7", "nobody").await;
    let retry_after: u64 = header(&resp, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=1200).contains(&retry_after), "{retry_after}");
    assert_eq!(remaining(&resp).as_deref(), Some("0"));
    assert_problem(resp, 429, "throttled").await;
    // Another address has its own bucket, on either instance.
    let resp = login_from(&a, "198.51.100.8", "nobody").await;
    assert_eq!(remaining(&resp).as_deref(), Some("2"));
    assert_eq!(fallbacks(&a).await + fallbacks(&b).await, 0.0);
}

async fn one_account_is_limited_across_instances(backend: Backend) {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let a = instance(backend.clone(), &redis, "3/hour").await;
    let b = second(&backend, &a, &redis, "3/hour").await;
    let user = TestUser::create(&a).await;
    // The sign-up's login on `a` was the first of the account's 3. Each further attempt
    // from a fresh address (a botnet), alternating instances: the account's own limit
    // still stops the fourth.
    for n in 0..2 {
        let app = if n % 2 == 0 { &b } else { &a };
        let resp = login_from(app, &format!("203.0.113.{n}"), &user.username).await;
        assert_problem(resp, 401, "invalid_credentials").await;
    }
    let resp = login_from(&b, "203.0.113.99", &user.username).await;
    assert_problem(resp, 429, "throttled").await;
}

async fn redis_going_away_fails_no_request_and_coming_back_is_used(backend: Backend) {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let a = instance(backend.clone(), &redis, "1000/hour").await;
    let resp = login_from(&a, "198.51.100.20", "nobody").await;
    assert_eq!(remaining(&resp).as_deref(), Some("999"));
    assert_eq!(fallbacks(&a).await, 0.0);

    redis.stop();
    // Every request is still served, and counted per instance meanwhile.
    for _ in 0..5 {
        let resp = login_from(&a, "198.51.100.20", "nobody").await;
        assert_problem(resp, 401, "invalid_credentials").await;
    }
    let during = fallbacks(&a).await;
    assert!(during >= 5.0, "fallbacks counted: {during}");

    redis.run();
    // Picked up again, after the instance's back-off: a request that no longer falls back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let before = fallbacks(&a).await;
        let resp = login_from(&a, "198.51.100.21", "nobody").await;
        assert_problem(resp, 401, "invalid_credentials").await;
        if fallbacks(&a).await == before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "Redis not used again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
