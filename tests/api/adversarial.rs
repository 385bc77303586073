//! Regression tests for what an outside review found by attacking the service (issue
//! "Security hardening"): each one failed against the code before the fix.
//!
//! - the worst-shaped body for the password policy stalls nothing;
//! - a percent-encoded path stays in its route's throttle scope;
//! - one account's passwords cannot be guessed faster than the `login` rate from many
//!   addresses, nor `current_password` with a stolen access token;
//! - metric labels stay bounded whatever method or path a client sends;
//! - NUL bytes and duplicate group names are validation errors, not 500s;
//! - every 405 says `Allow`; every token response says `Cache-Control: no-store`.

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, TestUser, assert_problem, assert_validation_error, header, json_ok,
    registration, spawn_app, str_field, unique_username,
};
use crate::ops_helpers::{parse_metrics, scrape, throttle_on, twin};

dual_backend_tests!(
    worst_case_policy_bodies_do_not_stall_the_server,
    encoded_paths_stay_in_the_login_scope,
    one_account_is_limited_across_addresses,
    current_password_guesses_are_limited_per_account,
    metric_labels_stay_bounded,
    nul_bytes_are_validation_errors,
    duplicate_group_names_count_once,
    every_405_says_allow,
    token_responses_are_not_cached,
);

/// The review's request: a username and password far over their limits, of the shape
/// that made the old similarity matcher cubic (5.9 s for one request, `/healthz` 408).
fn worst_case_registration() -> Value {
    json!({
        "username": "azbz".repeat(800),
        "email": "x",
        "password": "ab".repeat(800),
        "password_confirm": "x",
    })
}

async fn worst_case_policy_bodies_do_not_stall_the_server(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    // Many at once on a one-worker server, and a probe among them: the probe must answer
    // (the server's own request timeout is 5 s, which the old code overran).
    let hostile = worst_case_registration();
    let register = (0..8).map(|_| app.register(&hostile));
    let hostile_change = json!({
        "current_password": user.password,
        "new_password": format!("{}{}", user.username, "azbz".repeat(60)),
        "new_password_confirm": "x",
    });
    let change = (0..4).map(|_| app.change_password(&user.access_token, &hostile_change));
    let (registered, changed, probe) =
        tokio::join!(join_all(register), join_all(change), app.get("/healthz"));
    assert_eq!(probe.status(), 200, "/healthz while policy checks run");
    for resp in registered {
        let body = assert_validation_error(resp, &["username", "email", "password"]).await;
        let password = body["errors"]["password"].to_string();
        assert!(password.contains("no more than 256"), "{password}");
    }
    for resp in changed {
        let body = assert_validation_error(resp, &["new_password"]).await;
        assert!(
            body["errors"]["new_password"]
                .to_string()
                .contains("no more than 256")
        );
    }
}

/// A user made on an unthrottled server, and a twin over the same data whose `login`
/// scope (and so the per-account limit) allows `limit` an hour: nothing refills while a
/// test runs, and set-up spends nothing.
/// The first app owns the data (on PostgreSQL, its schema): keep it alive.
async fn login_limited(backend: Backend, limit: u32) -> (TestApp, TestApp, TestUser) {
    let plain = spawn_app(backend.clone()).await;
    let user = TestUser::create(&plain).await;
    let app = twin(&backend, &plain, |s| {
        throttle_on(s);
        s.throttle.login = format!("{limit}/hour").parse().expect("rate");
        s.server.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await;
    (plain, app, user)
}

/// `POST path` with `body`, as if from `ip` (through the trusted proxy).
async fn post_from(app: &TestApp, ip: &str, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("x-forwarded-for", ip)
        .json(body)
        .send()
        .await
        .expect("request")
}

async fn encoded_paths_stay_in_the_login_scope(backend: Backend) {
    let (_plain, app, user) = login_limited(backend, 3).await;
    // Every spelling the router accepts for a credential endpoint shares the bucket,
    // with or without an access token (which would otherwise move it to `user`).
    let spellings = ["/auth/l%6Fgin", "/auth/%6C%6F%67%69%6E", "/auth/login"];
    for path in spellings {
        let resp = app
            .bearer(Method::POST, path, &user.access_token)
            .json(&json!({"username": unique_username(), "password": "x"}))
            .send()
            .await
            .expect("request");
        assert_problem(resp, 401, "invalid_credentials").await;
    }
    // Spellings the router does not take reach no handler at all: nothing to throttle.
    for path in [
        "/auth/login/",
        "//auth/login",
        "/auth//login",
        "/auth/login%2F",
    ] {
        let resp = app
            .post_json(path, &json!({"username": "x", "password": "x"}))
            .await;
        assert_problem(resp, 404, "not_found").await;
    }
    let encoded = [
        "/auth/l%6Fgin",
        "/auth/regist%65r",
        "/auth/password/r%65set",
        "/auth/activate/r%65send",
    ];
    for path in encoded {
        let resp = app
            .post_json(path, &json!({"email": "nobody@example.com"}))
            .await;
        assert_problem(resp, 429, "throttled").await;
    }
}

async fn one_account_is_limited_across_addresses(backend: Backend) {
    let (_plain, app, user) = login_limited(backend, 3).await;
    let from = |n: u32| format!("203.0.113.{n}");
    // Three guesses from three addresses: each address has its own `login` bucket, but
    // the account has one.
    let guess = json!({"username": user.username, "password": "Wrong-Guess-9"});
    for n in 1..=3 {
        let resp = post_from(&app, &from(n), "/auth/login", &guess).await;
        assert_problem(resp, 401, "invalid_credentials").await;
    }
    // A fourth address with the right password, naming the account by email: the
    // account's allowance is spent.
    let right = json!({"email": user.email, "password": user.password});
    let resp = post_from(&app, &from(4), "/auth/login", &right).await;
    assert!(
        header(&resp, "retry-after").is_some(),
        "429 without Retry-After"
    );
    assert_problem(resp, 429, "throttled").await;
    // An unknown name is limited the same way (nothing to enumerate).
    let ghost = json!({"username": unique_username(), "password": "x"});
    let mut statuses = Vec::new();
    for n in 10..14 {
        let resp = post_from(&app, &from(n), "/auth/login", &ghost).await;
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
}

async fn current_password_guesses_are_limited_per_account(backend: Backend) {
    let (_plain, app, user) = login_limited(backend, 3).await;
    let wrong = json!({
        "current_password": "Wrong-Guess-9",
        "new_password": "Brand-New-Lantern-42",
        "new_password_confirm": "Brand-New-Lantern-42",
    });
    // From a new address each time: only the account's allowance runs out.
    for n in 1..=3 {
        let resp = app
            .bearer(Method::POST, "/users/me/password", &user.access_token)
            .header("x-forwarded-for", format!("203.0.113.{n}"))
            .json(&wrong)
            .send()
            .await
            .expect("request");
        assert_validation_error(resp, &["current_password"]).await;
    }
    let resp = app
        .bearer(Method::DELETE, "/users/me", &user.access_token)
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"current_password": user.password}))
        .send()
        .await
        .expect("request");
    assert_problem(resp, 429, "throttled").await;
    json_ok(app.get_me(&user.access_token).await, 200).await;
}

async fn metric_labels_stay_bounded(backend: Backend) {
    let app = spawn_app(backend).await;
    for n in 0..5 {
        let method = Method::from_bytes(format!("FOO{n}").as_bytes()).expect("method");
        app.client
            .request(method, app.url("/healthz"))
            .send()
            .await
            .expect("request");
        app.get(&format!("/no/such/path/{n}")).await;
    }
    let text = scrape(&app).await;
    assert!(!text.contains("FOO"), "a made-up method became a label");
    assert!(!text.contains("/no/such"), "an unknown path became a label");
    let others = parse_metrics(&text)
        .into_iter()
        .filter(|s| s.name == "latchkey_http_requests_total")
        .filter(|s| s.labels.get("method").map(String::as_str) == Some("other"))
        .count();
    assert_eq!(others, 1, "one series for every made-up method on /healthz");
}

async fn nul_bytes_are_validation_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let staff = TestUser::create_staff(&app).await;
    let mut body = registration(&unique_username(), "nul@example.com", "Lantern-Harbor-42");
    body["bio"] = json!("a\u{0}b");
    let resp = assert_validation_error(app.register(&body).await, &["bio"]).await;
    assert!(
        resp.to_string()
            .contains("Null characters are not allowed.")
    );
    let resp = app
        .login(&json!({"username": "ad\u{0}min", "password": "x"}))
        .await;
    assert_validation_error(resp, &["username"]).await;
    let resp = app
        .login(&json!({"email": "a\u{0}@example.com", "password": "x"}))
        .await;
    assert_validation_error(resp, &["email"]).await;
    let resp = app
        .patch_me(&user.access_token, &json!({"first_name": "\u{0}"}))
        .await;
    assert_validation_error(resp, &["first_name"]).await;
    let resp = app
        .patch_user(
            &staff.access_token,
            &user.id,
            &json!({"claims": {"tenant": "ac\u{0}me"}}),
        )
        .await;
    assert_validation_error(resp, &["claims"]).await;
    let resp = app.list_users(&staff.access_token, "search=a%00b").await;
    assert_validation_error(resp, &["search"]).await;
    let resp = app
        .post_json("/auth/password/reset", &json!({"email": "\u{0}"}))
        .await;
    assert_validation_error(resp, &["email"]).await;
    // Nothing changed.
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(me["first_name"], "");
    assert_eq!(me["claims"], json!({}));
}

async fn duplicate_group_names_count_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    json_ok(app.create_group(&staff.access_token, "editors").await, 201).await;
    let body = json!({"groups": ["editors", "editors"]});
    let updated = json_ok(
        app.patch_user(&staff.access_token, &user.id, &body).await,
        200,
    )
    .await;
    assert_eq!(updated["groups"], json!(["editors"]));
}

async fn every_405_says_allow(backend: Backend) {
    let app = spawn_app(backend).await;
    for (method, path, allow) in [
        (Method::GET, "/auth/login", "POST"),
        (Method::PUT, "/users/me", "GET, PATCH, DELETE"),
        (Method::POST, "/healthz", "GET"),
        (Method::DELETE, "/groups", "GET, POST"),
        (Method::GET, "/auth/l%6Fgin", "POST"),
    ] {
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(
            header(&resp, "allow").as_deref(),
            Some(allow),
            "{method} {path}"
        );
        assert_problem(resp, 405, "method_not_allowed").await;
    }
}

async fn token_responses_are_not_cached(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let login = app.login_username(&user.username, &user.password).await;
    assert_eq!(header(&login, "cache-control").as_deref(), Some("no-store"));
    let pair = json_ok(login, 200).await;
    let refreshed = app.refresh(&str_field(&pair, "refresh_token")).await;
    assert_eq!(
        header(&refreshed, "cache-control").as_deref(),
        Some("no-store")
    );
    // What is meant to be cached still says so.
    let jwks = app.jwks().await;
    let cache = header(&jwks, "cache-control").unwrap_or_default();
    assert!(cache.starts_with("public"), "{cache}");
}
