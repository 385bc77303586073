//! `POST /auth/token/refresh`: rotation, the grace window, reuse detection and races.

use std::time::Duration;

use futures::future::join_all;

use crate::helpers::{
    Backend, TestApp, TestUser, assert_problem, assert_problem_one_of, assert_token_pair,
    assert_validation_error, json_ok, jwt_claims, spawn_app, spawn_app_with, str_field,
};

dual_backend_tests!(
    refresh_rotates_tokens,
    replay_within_grace_window_gets_the_live_token,
    reuse_outside_grace_window_revokes_family,
    ancestor_reuse_is_detected_within_grace_window,
    access_token_is_not_a_refresh_token,
    garbage_refresh_tokens_are_invalid,
    expired_refresh_token_is_invalid,
    concurrent_refreshes_leave_one_live_token,
    concurrent_refreshes_without_grace_leave_at_most_one_live_token,
);

const RACERS: usize = 50;

/// Refreshes and returns the new refresh token, asserting success.
async fn rotate(app: &TestApp, refresh_token: &str) -> String {
    let pair = json_ok(app.refresh(refresh_token).await, 200).await;
    assert_token_pair(&pair);
    str_field(&pair, "refresh_token")
}

async fn refresh_rotates_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    let pair = json_ok(app.refresh(&user.refresh_token).await, 200).await;
    assert_token_pair(&pair);
    let new_refresh = str_field(&pair, "refresh_token");
    assert_ne!(new_refresh, user.refresh_token);
    assert_eq!(pair["user"]["id"], serde_json::json!(user.id));
    // Same rotation family, different token.
    let (old, new) = (jwt_claims(&user.refresh_token), jwt_claims(&new_refresh));
    assert_eq!(old["fam"], new["fam"]);
    assert_ne!(old["jti"], new["jti"]);
    json_ok(app.get_me(&str_field(&pair, "access_token")).await, 200).await;
    json_ok(app.verify(&new_refresh).await, 200).await;
}

/// API.md v2: the token the live one replaced, presented again within the grace window,
/// gets the live token itself (the very same string), and nothing is displaced.
async fn replay_within_grace_window_gets_the_live_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let t0 = user.refresh_token.clone();

    let t1 = rotate(&app, &t0).await;
    // A second tab (or a retry after a lost response) presents t0 within the default
    // 10 s grace: it gets t1 again, with a working access token of its own.
    let replay = json_ok(app.refresh(&t0).await, 200).await;
    assert_token_pair(&replay);
    assert_eq!(
        str_field(&replay, "refresh_token"),
        t1,
        "the live token, byte for byte"
    );
    json_ok(app.get_me(&str_field(&replay, "access_token")).await, 200).await;
    // t0 is not live (verify calls it revoked); t1 still is, and rotates as usual.
    assert_problem(app.verify(&t0).await, 401, "token_revoked").await;
    json_ok(app.verify(&t1).await, 200).await;
    let t2 = rotate(&app, &t1).await;
    // t1 is now the replaced token: a replay converges on t2 ...
    assert_eq!(rotate(&app, &t1).await, t2);
    // ... while t0, an older ancestor, is reuse even within the window.
    assert_problem(app.refresh(&t0).await, 401, "token_reused").await;
    assert_problem(app.refresh(&t2).await, 401, "token_revoked").await;
}

async fn reuse_outside_grace_window_revokes_family(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.jwt.rotation_grace = Duration::ZERO).await;
    let user = TestUser::create(&app).await;
    let t0 = user.refresh_token.clone();

    let t1 = rotate(&app, &t0).await;
    assert_problem(app.refresh(&t0).await, 401, "token_reused").await;
    // The whole family is revoked, including its current member.
    assert_problem(app.refresh(&t1).await, 401, "token_revoked").await;
    assert_problem(app.verify(&t1).await, 401, "token_revoked").await;
    // Other sessions of the same user are a different family and keep working.
    let other = user.login_again(&app).await;
    rotate(&app, &str_field(&other, "refresh_token")).await;
}

async fn ancestor_reuse_is_detected_within_grace_window(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let t0 = user.refresh_token.clone();

    let t1 = rotate(&app, &t0).await;
    let t2 = rotate(&app, &t1).await;
    // t0 is two rotations back: reuse even though it was rotated seconds ago.
    assert_problem(app.refresh(&t0).await, 401, "token_reused").await;
    assert_problem(app.refresh(&t2).await, 401, "token_revoked").await;
}

async fn access_token_is_not_a_refresh_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    assert_problem(app.refresh(&user.access_token).await, 401, "token_invalid").await;
    // The refused attempt did not disturb the real refresh token.
    rotate(&app, &user.refresh_token).await;
}

async fn garbage_refresh_tokens_are_invalid(backend: Backend) {
    let app = spawn_app(backend).await;
    for token in ["garbage", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"] {
        assert_problem(app.refresh(token).await, 401, "token_invalid").await;
    }
    assert_validation_error(
        app.post_json("/auth/token/refresh", &serde_json::json!({}))
            .await,
        &["refresh_token"],
    )
    .await;
}

async fn expired_refresh_token_is_invalid(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.jwt.refresh_ttl = Duration::from_secs(1);
        s.jwt.leeway = Duration::ZERO;
    })
    .await;
    let user = TestUser::create(&app).await;
    // Let the configured 1 s lifetime pass (JWT times have 1 s resolution).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_problem(app.refresh(&user.refresh_token).await, 401, "token_invalid").await;
}

/// Fires `RACERS` simultaneous refreshes of one token; returns (status, body) pairs.
async fn race_refreshes(app: &TestApp, token: &str) -> Vec<(u16, serde_json::Value)> {
    let responses = join_all((0..RACERS).map(|_| app.refresh(token))).await;
    let mut results = Vec::new();
    for resp in responses {
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.expect("JSON body");
        assert!(
            status == 200 || status == 401,
            "a race must not surface as {status} (e.g. a locked database): {body}"
        );
        if status == 401 {
            let code = body["code"].as_str().unwrap_or_default();
            assert!(
                code == "token_revoked" || code == "token_reused",
                "unexpected loser code: {body}"
            );
        }
        results.push((status, body));
    }
    results
}

/// How many of `tokens` the verify endpoint still accepts.
async fn live_count(app: &TestApp, tokens: &[String]) -> usize {
    let mut live = 0;
    for token in tokens {
        let resp = app.verify(token).await;
        if resp.status().as_u16() == 200 {
            live += 1;
        } else {
            assert_problem_one_of(resp, 401, &["token_revoked", "token_invalid"]).await;
        }
    }
    live
}

/// One word per racer, for failure messages.
fn summary(results: &[(u16, serde_json::Value)]) -> String {
    let outcomes: Vec<String> = results
        .iter()
        .map(|(status, body)| match status {
            200 => "ok".to_owned(),
            _ => body["code"].as_str().unwrap_or("?").to_owned(),
        })
        .collect();
    format!("race outcomes: {outcomes:?}")
}

fn issued_refresh_tokens(results: &[(u16, serde_json::Value)]) -> Vec<String> {
    results
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| str_field(body, "refresh_token"))
        .collect()
}

/// `RACERS` concurrent refreshes of one token, answered in whatever order: every racer gets
/// the same refresh token (one rotation happened, the others converged on it), and the
/// family has exactly one live member.
async fn concurrent_refreshes_leave_one_live_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    let results = race_refreshes(&app, &user.refresh_token).await;
    let mut tokens = issued_refresh_tokens(&results);
    assert_eq!(
        tokens.len(),
        RACERS,
        "within the grace window every racer succeeds; {}",
        summary(&results)
    );
    tokens.sort();
    tokens.dedup();
    assert_eq!(
        tokens.len(),
        1,
        "every racer holds the one live token; {}",
        summary(&results)
    );
    tokens.push(user.refresh_token.clone());
    let live = live_count(&app, &tokens).await;
    assert_eq!(
        live,
        1,
        "family members alive after the race; {}",
        summary(&results)
    );
    rotate(&app, &tokens[0]).await;
}

async fn concurrent_refreshes_without_grace_leave_at_most_one_live_token(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.jwt.rotation_grace = Duration::ZERO).await;
    let user = TestUser::create(&app).await;

    let results = race_refreshes(&app, &user.refresh_token).await;
    let winners = results.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(
        winners,
        1,
        "exactly one refresh may win without grace; {}",
        summary(&results)
    );
    let mut tokens = issued_refresh_tokens(&results);
    tokens.push(user.refresh_token.clone());
    // The losers' reuse detection may revoke the winner's token too.
    let live = live_count(&app, &tokens).await;
    assert!(
        live <= 1,
        "{live} family members alive; {}",
        summary(&results)
    );
}
