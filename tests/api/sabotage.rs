//! Sabotage: the database changed behind the service's back. The service must fail
//! closed, answer problem+json, and leak no internals. (These are the only tests that
//! know table names.)

use serde_json::json;

use crate::helpers::{
    Backend, TestUser, assert_problem, assert_problem_one_of, assert_status, json_ok, spawn_app,
};

dual_backend_tests!(
    corrupt_password_hash_fails_closed,
    missing_table_is_an_opaque_server_error,
    a_password_change_that_cannot_end_sessions_changes_nothing,
);

async fn corrupt_password_hash_fails_closed(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    app.execute_sql(&format!(
        "UPDATE users SET password_hash = 'not-a-bcrypt-hash' WHERE id = '{}'",
        user.id
    ));

    let resp = app.login_username(&user.username, &user.password).await;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert!(
        status == 401 || status == 500,
        "a corrupt hash must never log anyone in: {status} {body}"
    );
    let problem: serde_json::Value = serde_json::from_str(&body).expect("problem+json");
    let expected = if status == 401 {
        "invalid_credentials"
    } else {
        "internal_error"
    };
    assert_eq!(problem["code"], json!(expected), "{body}");
    assert!(
        !body.contains("not-a-bcrypt-hash"),
        "stored hash leaked: {body}"
    );
}

async fn missing_table_is_an_opaque_server_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    // Renaming works the same on both backends (PostgreSQL's DROP would need CASCADE,
    // which SQLite lacks).
    app.execute_sql("ALTER TABLE outstanding_tokens RENAME TO sabotaged");

    let resp = app.refresh(&user.refresh_token).await;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(status == 500 || status == 503, "{status} {text}");
    for internal in [
        "outstanding_tokens",
        "relation",
        "no such table",
        "diesel",
        "SQL",
    ] {
        assert!(!text.contains(internal), "`{internal}` leaked: {text}");
    }
    let problem: serde_json::Value = serde_json::from_str(&text).expect("problem+json");
    assert!(
        problem["code"] == json!("internal_error")
            || problem["code"] == json!("service_unavailable"),
        "{text}"
    );
    // Same answer through the shared assertion (content type, fields).
    assert_problem_one_of(
        app.refresh(&user.refresh_token).await,
        status,
        &["internal_error", "service_unavailable"],
    )
    .await;

    // The process is alive, and endpoints not touching that table still work.
    assert_status(app.get("/healthz").await, 200).await;
    json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_problem(app.verify("garbage").await, 401, "token_invalid").await;
}

/// Replacing the password and ending the sessions are one transaction: when ending the
/// sessions fails half-way (the blacklist cannot be written), the password is not changed
/// either, and the old sessions work as before. (Before, the hash was replaced in a
/// transaction of its own: the old password stopped working while the sessions of
/// whoever knew it lived on.)
async fn a_password_change_that_cannot_end_sessions_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    app.execute_sql("ALTER TABLE blacklisted_tokens RENAME TO sabotaged");
    let change = json!({
        "current_password": user.password,
        "new_password": "Another-Quiet-Harbor-93",
        "new_password_confirm": "Another-Quiet-Harbor-93",
    });
    let resp = app.change_password(&user.access_token, &change).await;
    assert!(
        matches!(resp.status().as_u16(), 500 | 503),
        "{}",
        resp.text().await.unwrap()
    );
    app.execute_sql("ALTER TABLE sabotaged RENAME TO blacklisted_tokens");

    json_ok(
        app.login_username(&user.username, &user.password).await,
        200,
    )
    .await;
    assert_problem(
        app.login_username(&user.username, "Another-Quiet-Harbor-93")
            .await,
        401,
        "invalid_credentials",
    )
    .await;
    json_ok(app.refresh(&user.refresh_token).await, 200).await;
}
