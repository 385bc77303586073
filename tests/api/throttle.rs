//! Throttling (API.md "Throttling"): the `login`, `anon` and `user` scopes, the paths
//! that are never throttled, and how the client address is found behind proxies.
//!
//! Rates are per hour so that no bucket refills while a test runs (one request per
//! several minutes at most): every count below is exact.

use reqwest::Response;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, TestUser, assert_problem, header, json_ok, registration, spawn_app,
    spawn_app_with, str_field, unique_username,
};
use crate::ops_helpers::{
    assert_no_whitelisted_header, count, metric, parse_metrics, scrape, throttle_on, twin,
};

dual_backend_tests!(
    fourth_login_in_the_window_is_throttled_before_the_handler,
    credential_endpoints_share_one_login_bucket,
    anon_scope_counts_requests_without_a_valid_access_token,
    user_scope_gives_each_user_a_bucket,
    probes_metrics_and_well_known_are_never_throttled,
    trusted_proxy_forwarded_for_decides_the_client,
    forwarded_for_from_an_untrusted_peer_is_ignored,
    forged_forwarded_for_prefix_does_not_escape_the_bucket,
);

/// Asserts a 429 `throttled` problem with the rate-limit headers of a scope whose burst
/// is `limit` and that refills one request every `interval_secs`.
async fn assert_throttled(resp: Response, limit: u32, interval_secs: u64) -> Value {
    assert_no_whitelisted_header(&resp);
    let retry_after = header(&resp, "retry-after").expect("429 without Retry-After");
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not integer seconds: {retry_after:?}"));
    assert!(
        (1..=interval_secs).contains(&seconds),
        "Retry-After {seconds} outside 1..={interval_secs}"
    );
    assert_eq!(
        header(&resp, "x-ratelimit-limit").as_deref(),
        Some(limit.to_string().as_str()),
        "X-RateLimit-Limit"
    );
    assert_eq!(
        header(&resp, "x-ratelimit-remaining").as_deref(),
        Some("0"),
        "X-RateLimit-Remaining"
    );
    assert!(
        header(&resp, "x-request-id").is_some(),
        "429 without X-Request-Id"
    );
    assert_problem(resp, 429, "throttled").await
}

/// Asserts the scope's headers on a request it let through.
fn assert_counted(resp: &Response, limit: u32, remaining: u32) {
    assert_no_whitelisted_header(resp);
    assert_eq!(
        header(resp, "x-ratelimit-limit").as_deref(),
        Some(limit.to_string().as_str()),
        "X-RateLimit-Limit on {}",
        resp.url()
    );
    assert_eq!(
        header(resp, "x-ratelimit-remaining").as_deref(),
        Some(remaining.to_string().as_str()),
        "X-RateLimit-Remaining on {}",
        resp.url()
    );
}

async fn fourth_login_in_the_window_is_throttled_before_the_handler(backend: Backend) {
    // The user is made on an unthrottled instance; the throttled one shares its data.
    let plain = spawn_app(backend.clone()).await;
    let user = TestUser::create(&plain).await;
    let last_login =
        json_ok(plain.get_me(&user.access_token).await, 200).await["last_login"].clone();
    assert!(last_login.is_string(), "{last_login}");

    let app = twin(&backend, &plain, |s| {
        throttle_on(s);
        s.throttle.login = "3/hour".parse().unwrap();
    })
    .await;
    for remaining in [2, 1, 0] {
        let resp = app
            .login_username(&user.username, "Wrong-Guess-Lantern-9")
            .await;
        assert_counted(&resp, 3, remaining);
        assert_problem(resp, 401, "invalid_credentials").await;
    }
    // The right password no longer helps: the handler is not even reached.
    let resp = app.login_username(&user.username, &user.password).await;
    assert_throttled(resp, 3, 1200).await;
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(
        me["last_login"], last_login,
        "a throttled login updated last_login"
    );

    // Only the credential endpoints are in the login scope.
    json_ok(app.verify(&user.access_token).await, 200).await;
    let pair = json_ok(app.refresh(&user.refresh_token).await, 200).await;
    assert!(pair["access_token"].is_string());
    // GET is not a login attempt: the route answers 405, not 429.
    assert_problem(app.get("/auth/login").await, 405, "method_not_allowed").await;

    let metrics = parse_metrics(&scrape(&app).await);
    assert_eq!(
        metric(
            &metrics,
            "latchkey_logins_total",
            &[("outcome", "throttled")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "latchkey_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/auth/login"),
                ("status", "429")
            ]
        ),
        1.0
    );
}

async fn credential_endpoints_share_one_login_bucket(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        throttle_on(s);
        s.throttle.login = "4/hour".parse().unwrap();
    })
    .await;
    let username = unique_username();
    let email = format!("{username}@example.com");
    let password = "Violet-Harbor-Quill-42";

    // One request on each credential endpoint: the four of them drain one bucket.
    let resp = app
        .register(&registration(&username, &email, password))
        .await;
    assert_counted(&resp, 4, 3);
    json_ok(resp, 201).await;
    let resp = app.resend_activation(&email).await;
    assert_counted(&resp, 4, 2);
    json_ok(resp, 202).await;
    let resp = app.request_password_reset(&email).await;
    assert_counted(&resp, 4, 1);
    json_ok(resp, 202).await;
    let resp = app.login_username(&username, password).await;
    assert_counted(&resp, 4, 0);
    // Not activated yet.
    assert_problem(resp, 403, "account_inactive").await;

    let other = unique_username();
    for resp in [
        app.login_username(&username, password).await,
        app.register(&registration(
            &other,
            &format!("{other}@example.com"),
            password,
        ))
        .await,
        app.request_password_reset(&email).await,
        app.resend_activation(&email).await,
    ] {
        assert_throttled(resp, 4, 900).await;
    }
    // The throttled registration did not happen.
    let sql = format!("SELECT COUNT(*) AS n FROM users WHERE username = '{other}'");
    assert_eq!(count(&app, &sql), 0);

    // Endpoints outside the scope still answer on their merits: activation with the
    // emailed link works, and so does a (bogus) reset confirmation, with its own error.
    let link = app.activation_link(&email).await;
    let pair = json_ok(app.activate(&link.uid, &link.token).await, 200).await;
    assert_eq!(pair["user"]["username"], json!(username));
    let confirm = json!({"uid": link.uid, "token": "nope", "new_password": password, "new_password_confirm": password});
    let body = assert_problem(
        app.confirm_password_reset(&confirm).await,
        400,
        "validation_failed",
    )
    .await;
    assert!(body["errors"].is_object(), "{body}");
}

async fn anon_scope_counts_requests_without_a_valid_access_token(backend: Backend) {
    let plain = spawn_app(backend.clone()).await;
    let user = TestUser::create(&plain).await;
    let app = twin(&backend, &plain, |s| {
        throttle_on(s);
        s.throttle.anon = "3/hour".parse().unwrap();
    })
    .await;

    // No token, a forged token, a refresh token in place of an access token: anonymous.
    let forged = format!("{}x", user.access_token);
    let resp = app.get_me_with_authorization(None).await;
    assert_counted(&resp, 3, 2);
    assert_problem(resp, 401, "not_authenticated").await;
    let resp = app.get_me(&forged).await;
    assert_counted(&resp, 3, 1);
    assert_problem(resp, 401, "token_invalid").await;
    let resp = app.get_me(&user.refresh_token).await;
    assert_counted(&resp, 3, 0);
    assert_problem(resp, 401, "token_invalid").await;

    for resp in [
        app.get_me_with_authorization(None).await,
        app.get_me(&forged).await,
        app.get_me_with_authorization(Some("Bearer not.a.jwt"))
            .await,
        app.get_me(&user.refresh_token).await,
        app.refresh(&user.refresh_token).await,
        app.verify(&user.access_token).await,
    ] {
        assert_throttled(resp, 3, 1200).await;
    }
    // A valid access token is counted per user, not per address.
    let resp = app.get_me(&user.access_token).await;
    assert_no_whitelisted_header(&resp);
    assert_eq!(json_ok(resp, 200).await["id"], json!(user.id));

    // The anonymous refresh was throttled, so the refresh token was not rotated.
    json_ok(plain.refresh(&user.refresh_token).await, 200).await;
}

async fn user_scope_gives_each_user_a_bucket(backend: Backend) {
    let plain = spawn_app(backend.clone()).await;
    let ada = TestUser::create(&plain).await;
    let bob = TestUser::create(&plain).await;
    let app = twin(&backend, &plain, |s| {
        throttle_on(s);
        s.throttle.user = "3/hour".parse().unwrap();
    })
    .await;

    for remaining in [2, 1, 0] {
        let resp = app.get_me(&ada.access_token).await;
        assert_counted(&resp, 3, remaining);
        json_ok(resp, 200).await;
    }
    assert_throttled(app.get_me(&ada.access_token).await, 3, 1200).await;
    assert_throttled(app.logout_all(&ada.access_token).await, 3, 1200).await;

    // Bob has his own bucket.
    for remaining in [2, 1, 0] {
        let resp = app.get_me(&bob.access_token).await;
        assert_counted(&resp, 3, remaining);
        assert_eq!(json_ok(resp, 200).await["id"], json!(bob.id));
    }
    assert_throttled(app.get_me(&bob.access_token).await, 3, 1200).await;

    // Anonymous requests from the same address are in another scope: Ada can refresh...
    let pair = json_ok(app.refresh(&ada.refresh_token).await, 200).await;
    // ...but a new access token does not give her a new bucket: it is per user id.
    let fresh = str_field(&pair, "access_token");
    assert_throttled(app.get_me(&fresh).await, 3, 1200).await;
    // The throttled logout-all did not run: Ada's new refresh token still works.
    json_ok(app.refresh(&str_field(&pair, "refresh_token")).await, 200).await;
}

async fn probes_metrics_and_well_known_are_never_throttled(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        throttle_on(s);
        s.throttle.anon = "2/hour".parse().unwrap();
        s.throttle.login = "1/hour".parse().unwrap();
    })
    .await;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        for _ in 0..10 {
            let resp = app.get(path).await;
            assert_eq!(resp.status(), 200, "{path}");
            assert_no_whitelisted_header(&resp);
            assert!(
                header(&resp, "x-ratelimit-remaining").is_none(),
                "{path} is metered"
            );
        }
    }
    // None of that touched the anonymous bucket.
    let resp = app.get_me_with_authorization(None).await;
    assert_counted(&resp, 2, 1);
    assert_problem(resp, 401, "not_authenticated").await;
}

/// `POST /auth/password/reset` (a login-scope endpoint that does no hashing) with the
/// given `X-Forwarded-For` headers.
async fn reset_from(app: &TestApp, forwarded_for: &[&str]) -> Response {
    let mut req = app
        .client
        .post(app.url("/auth/password/reset"))
        .json(&json!({"email": "nobody@example.com"}));
    for value in forwarded_for {
        req = req.header("x-forwarded-for", *value);
    }
    req.send().await.expect("request failed")
}

async fn assert_accepted(resp: Response) {
    assert_no_whitelisted_header(&resp);
    json_ok(resp, 202).await;
}

fn behind_local_proxy(s: &mut latchkey::config::Settings) {
    throttle_on(s);
    s.throttle.login = "2/hour".parse().unwrap();
    s.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
}

async fn trusted_proxy_forwarded_for_decides_the_client(backend: Backend) {
    let app = spawn_app_with(backend, behind_local_proxy).await;
    assert_accepted(reset_from(&app, &["198.51.100.1"]).await).await;
    assert_accepted(reset_from(&app, &["198.51.100.1"]).await).await;
    assert_throttled(reset_from(&app, &["198.51.100.1"]).await, 2, 1800).await;
    // Another client behind the same proxy has its own bucket...
    assert_accepted(reset_from(&app, &["198.51.100.2"]).await).await;
    // ...and so does the proxy itself (no header: the peer is the client).
    assert_accepted(reset_from(&app, &[]).await).await;
    // A trusted hop at the right end is skipped: the client is the address before it.
    assert_throttled(
        reset_from(&app, &["198.51.100.1, 127.0.0.1"]).await,
        2,
        1800,
    )
    .await;
    // IPv6 clients are counted per /64.
    assert_accepted(reset_from(&app, &["2001:db8::1"]).await).await;
    assert_accepted(reset_from(&app, &["[2001:db8::2]:443"]).await).await;
    assert_throttled(reset_from(&app, &["2001:db8::3"]).await, 2, 1800).await;
    assert_accepted(reset_from(&app, &["2001:db8:0:1::1"]).await).await;
}

async fn forwarded_for_from_an_untrusted_peer_is_ignored(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        throttle_on(s);
        s.throttle.login = "2/hour".parse().unwrap();
    })
    .await;
    assert!(app.settings.server.trusted_proxies.is_empty());
    assert_accepted(reset_from(&app, &["198.51.100.1"]).await).await;
    assert_accepted(reset_from(&app, &["198.51.100.2"]).await).await;
    // Spoofing yet another address does not buy a new bucket.
    assert_throttled(reset_from(&app, &["198.51.100.3"]).await, 2, 1800).await;
    assert_throttled(reset_from(&app, &[]).await, 2, 1800).await;
}

async fn forged_forwarded_for_prefix_does_not_escape_the_bucket(backend: Backend) {
    let app = spawn_app_with(backend, behind_local_proxy).await;
    assert_accepted(reset_from(&app, &["6.6.6.6, 198.51.100.7"]).await).await;
    assert_accepted(reset_from(&app, &["6.6.6.6, 198.51.100.7"]).await).await;
    // The client forged the left part; the right-most untrusted entry is what counts.
    for chain in [
        &["7.7.7.7, 198.51.100.7"][..],
        &["198.51.100.7"],
        &["5.5.5.5", "198.51.100.7"],
        &["garbage, 198.51.100.7, 127.0.0.1"],
    ] {
        assert_throttled(reset_from(&app, chain).await, 2, 1800).await;
    }
    assert_accepted(reset_from(&app, &["6.6.6.6, 198.51.100.8"]).await).await;
}
