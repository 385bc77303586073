//! What operators see: request ids, the Prometheus metrics and readiness that follows the
//! database.

use std::time::{Duration, Instant};

use latchkey::config::Secret;
use reqwest::Response;
use serde_json::json;

use crate::helpers::{
    Backend, TestUser, assert_problem, header, json_ok, spawn_app, spawn_app_with, str_field,
};
use crate::ops_helpers::{
    Sample, TcpProxy, metric, parse_metrics, redirect_postgres_url, samples, scrape,
};

dual_backend_tests!(
    request_ids_are_generated_or_echoed_when_sane,
    metrics_count_requests_logins_tokens_and_reuse,
    the_verified_token_cache_counts_hits_and_misses,
);

fn request_id(resp: &Response) -> String {
    let id = header(resp, "x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-Id on {} {}", resp.status(), resp.url()));
    assert!(
        (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()),
        "X-Request-Id is not a plain token: {id:?}"
    );
    id
}

async fn request_ids_are_generated_or_echoed_when_sane(backend: Backend) {
    let app = spawn_app(backend).await;
    let with_id = |value: String| {
        app.client
            .get(app.url("/healthz"))
            .header("x-request-id", value)
            .send()
    };

    // Generated, and different for every request.
    let first = request_id(&app.get("/healthz").await);
    let second = request_id(&app.get("/healthz").await);
    assert_ne!(first, second);

    // A sane incoming id is kept, so a proxy's id ties its logs to ours.
    for sane in [
        "req-123",
        "0190f3a2-7c1d-7000-8000-000000000001",
        "a.b:c/d+e=f_g",
    ] {
        let resp = with_id(sane.to_owned()).await.expect("request failed");
        assert_eq!(request_id(&resp), sane);
    }
    // Anything else is replaced, never echoed.
    let long = "x".repeat(200);
    for insane in ["has space", "quote\"d", "<script>", long.as_str()] {
        let resp = with_id(insane.to_owned()).await.expect("request failed");
        let id = request_id(&resp);
        assert_ne!(id, insane);
        assert!(!id.contains(' ') && !id.contains('<'), "{id:?}");
    }

    // Error responses carry one too.
    let resp = app.get("/no/such/route").await;
    request_id(&resp);
    assert_problem(resp, 404, "not_found").await;
    let resp = app.get_me_with_authorization(None).await;
    request_id(&resp);
    assert_problem(resp, 401, "not_authenticated").await;
}

async fn metrics_count_requests_logins_tokens_and_reuse(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        // Presenting a rotated refresh token again is reuse at once.
        s.jwt.rotation_grace = Duration::ZERO;
    })
    .await;
    // Register (activation email, file backend), activate, log in.
    let user = TestUser::create(&app).await;
    assert_problem(
        app.login_username(&user.username, "Wrong-Guess-Lantern-9")
            .await,
        401,
        "invalid_credentials",
    )
    .await;
    let pair = json_ok(app.refresh(&user.refresh_token).await, 200).await;
    assert_problem(app.refresh(&user.refresh_token).await, 401, "token_reused").await;
    assert!(pair["access_token"].is_string());
    // A templated route with a raw id in the path, and an unknown path.
    assert_problem(
        app.get_user(&user.access_token, &user.id).await,
        403,
        "permission_denied",
    )
    .await;
    assert_problem(app.get("/no/such/path-4242").await, 404, "not_found").await;

    // The activation email is delivered by a background worker: wait for its count.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (text, m) = loop {
        let text = scrape(&app).await;
        let m = parse_metrics(&text);
        if !samples(&m, "latchkey_emails_total", &[("outcome", "sent")]).is_empty() {
            break (text, m);
        }
        assert!(Instant::now() < deadline, "no sent email counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let requests = |method: &str, route: &str, status: &str| {
        metric(
            &m,
            "latchkey_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("POST", "/auth/register", "201"), 1.0);
    assert_eq!(requests("POST", "/auth/activate", "200"), 1.0);
    assert_eq!(requests("POST", "/auth/login", "200"), 1.0);
    assert_eq!(requests("POST", "/auth/login", "401"), 1.0);
    assert_eq!(requests("POST", "/auth/token/refresh", "200"), 1.0);
    assert_eq!(requests("POST", "/auth/token/refresh", "401"), 1.0);
    assert_eq!(requests("GET", "/users/{id}", "403"), 1.0);
    // Route templates only: no raw ids or unknown paths become label values.
    assert!(
        !text.contains(&user.id),
        "a raw user id is a label:\n{text}"
    );
    assert!(
        !text.contains("path-4242"),
        "a raw path is a label:\n{text}"
    );
    for s in samples(&m, "latchkey_http_requests_total", &[]) {
        let route = &s.labels["route"];
        assert!(
            route.starts_with('/') || route == "other",
            "unexpected route label {route:?}"
        );
    }

    // Latency histogram per route.
    let buckets = samples(
        &m,
        "latchkey_http_request_duration_seconds_bucket",
        &[
            ("method", "POST"),
            ("route", "/auth/login"),
            ("status", "200"),
        ],
    );
    assert!(buckets.len() > 3, "{buckets:#?}");
    assert!(
        buckets
            .iter()
            .any(|b| b.labels.get("le").map(String::as_str) == Some("+Inf") && b.value == 1.0),
        "{buckets:#?}"
    );
    assert_eq!(
        metric(
            &m,
            "latchkey_http_request_duration_seconds_count",
            &[
                ("method", "POST"),
                ("route", "/auth/login"),
                ("status", "401")
            ]
        ),
        1.0
    );

    assert_eq!(
        metric(&m, "latchkey_logins_total", &[("outcome", "success")]),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "latchkey_logins_total",
            &[("outcome", "invalid_credentials")]
        ),
        1.0
    );
    // Activation, login and refresh each issued a pair.
    for kind in ["access", "refresh"] {
        assert_eq!(
            metric(&m, "latchkey_tokens_issued_total", &[("kind", kind)]),
            3.0,
            "{kind}"
        );
    }
    assert_eq!(
        metric(&m, "latchkey_refresh_reuse_detected_total", &[]),
        1.0
    );
    assert_eq!(
        metric(&m, "latchkey_emails_total", &[("outcome", "sent")]),
        1.0
    );
    assert_eq!(metric(&m, "latchkey_password_hash_queue_depth", &[]), 0.0);
    // Registration hashed; two logins verified.
    assert!(metric(&m, "latchkey_password_hash_wait_seconds_count", &[]) >= 3.0);
    let idle = metric(&m, "latchkey_db_pool_connections", &[("state", "idle")]);
    let in_use = metric(&m, "latchkey_db_pool_connections", &[("state", "in_use")]);
    assert!(
        idle >= 0.0 && in_use >= 0.0 && idle + in_use >= 1.0,
        "{idle} {in_use}"
    );

    // Scrapes are requests too.
    let m = parse_metrics(&scrape(&app).await);
    assert!(
        metric(
            &m,
            "latchkey_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "200")]
        ) >= 1.0
    );
    // The reused family is gone: the successor from the refresh was revoked with it.
    assert_problem(
        app.refresh(&str_field(&pair, "refresh_token")).await,
        401,
        "token_revoked",
    )
    .await;
}

/// An access token is verified in full the first time it is presented (a miss) and found
/// in the verified-token cache after that (hits); an access token the cache never held is
/// a miss each time it fails; refresh tokens, never held, do not count.
async fn the_verified_token_cache_counts_hits_and_misses(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let pair = json_ok(
        app.login_username(&user.username, &user.password).await,
        200,
    )
    .await;
    let access = str_field(&pair, "access_token");
    let count = |m: &[Sample], outcome| {
        metric(
            m,
            "latchkey_verified_token_cache_total",
            &[("outcome", outcome)],
        )
    };
    let before = parse_metrics(&scrape(&app).await);
    for _ in 0..3 {
        json_ok(app.get_me(&access).await, 200).await;
    }
    // Another signature of the same length: never verified, so never cached.
    let signature_at = access.rfind('.').expect("a JWS") + 1;
    let other = if access[signature_at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let forged = format!(
        "{}{other}{}",
        &access[..signature_at],
        &access[signature_at + 1..]
    );
    assert_problem(app.get_me(&forged).await, 401, "token_invalid").await;
    // Refresh tokens are never held: they count neither way.
    json_ok(app.refresh(&str_field(&pair, "refresh_token")).await, 200).await;
    let after = parse_metrics(&scrape(&app).await);
    assert_eq!(count(&after, "miss") - count(&before, "miss"), 2.0);
    assert_eq!(count(&after, "hit") - count(&before, "hit"), 2.0);
}

/// Readiness follows the database: 503 `service_unavailable` with `Retry-After` while it
/// is unreachable, 200 again once it is back, without a restart.
///
/// PostgreSQL only. The service reaches the server through a TCP proxy owned by this
/// test, which cuts every connection and refuses new ones, then forwards again: the
/// database is unreachable for this instance alone, not for the tests running beside it.
/// SQLite has no equivalent: the pool's open connections keep working on the file (even
/// a deleted or `chmod 000` one; and tests run as root here), and the readiness ping
/// (`SELECT 1`) does not read the file at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_postgres() {
    let Some(Backend::Postgres { url }) = Backend::postgres() else {
        return;
    };
    let (_, target) = redirect_postgres_url(&url, "127.0.0.1:1".parse().unwrap());
    let proxy = TcpProxy::start(target);
    let addr = proxy.addr;
    let app = spawn_app_with(Backend::Postgres { url }, move |s| {
        let (through_proxy, _) = redirect_postgres_url(s.database.url.expose(), addr);
        s.database.url = Secret(through_proxy);
        // How long a request waits for a connection before 503.
        s.database.connect_timeout = Duration::from_secs(1);
    })
    .await;
    let user = TestUser::create(&app).await;
    assert_eq!(
        json_ok(app.get("/readyz").await, 200).await["status"],
        "ready"
    );

    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(30);
    let down = loop {
        let resp = app.get("/readyz").await;
        if resp.status() == 503 {
            break resp;
        }
        assert_eq!(resp.status(), 200, "readiness while the database goes away");
        assert!(
            Instant::now() < deadline,
            "/readyz still 200 with the database gone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let retry_after = header(&down, "retry-after").expect("503 without Retry-After");
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
        "Retry-After {retry_after:?}"
    );
    let body = assert_problem(down, 503, "service_unavailable").await;
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "the problem leaks connection details: {body}"
    );
    // Liveness does not depend on the database; requests that need it fail cleanly.
    json_ok(app.get("/healthz").await, 200).await;
    assert_problem(
        app.get_me(&user.access_token).await,
        503,
        "service_unavailable",
    )
    .await;

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = app.get("/readyz").await;
        if resp.status() == 200 {
            break;
        }
        assert_problem(resp, 503, "service_unavailable").await;
        assert!(
            Instant::now() < deadline,
            "/readyz did not recover after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        json_ok(app.get_me(&user.access_token).await, 200).await["id"],
        json!(user.id)
    );
    json_ok(
        app.login_username(&user.username, &user.password).await,
        200,
    )
    .await;
}
