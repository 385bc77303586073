//! `POST /auth/login`.

use serde_json::json;

use crate::helpers::{
    Backend, STRONG_PASSWORD, TestUser, assert_problem, assert_token_pair, assert_validation_error,
    header, json_ok, registration, spawn_app, spawn_app_with,
};

dual_backend_tests!(
    long_password_is_not_truncated,
    login_by_username_and_by_email,
    wrong_password_and_unknown_user_are_indistinguishable,
    unverified_account_cannot_log_in,
    login_requires_password_and_identifier,
);

async fn long_password_is_not_truncated(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.accounts.require_email_verification = false).await;
    let prefix = "a".repeat(72);
    let password = format!("{prefix}B"); // 73 bytes: bcrypt alone would ignore the last one
    json_ok(
        app.register(&registration("longpw", "longpw@example.com", &password))
            .await,
        201,
    )
    .await;

    json_ok(app.login_username("longpw", &password).await, 200).await;
    for wrong in [format!("{prefix}C"), prefix.clone()] {
        assert_problem(
            app.login_username("longpw", &wrong).await,
            401,
            "invalid_credentials",
        )
        .await;
    }
}

async fn login_by_username_and_by_email(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    for body in [
        json!({ "username": user.username, "password": user.password }),
        json!({ "email": user.email, "password": user.password }),
    ] {
        let pair = json_ok(app.login(&body).await, 200).await;
        assert_token_pair(&pair);
        // Defaults: access_ttl 15m, refresh_ttl 14d.
        assert_eq!(pair["expires_in"], json!(900));
        assert_eq!(pair["refresh_expires_in"], json!(1_209_600));
        assert_eq!(pair["user"]["id"], json!(user.id));
        let last_login = pair["user"]["last_login"]
            .as_str()
            .unwrap_or_else(|| panic!("last_login must be set after login: {pair}"));
        chrono::DateTime::parse_from_rfc3339(last_login).expect("last_login is RFC 3339");
    }
}

async fn wrong_password_and_unknown_user_are_indistinguishable(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    let mut bodies = Vec::new();
    for body in [
        json!({ "username": user.username, "password": "Wrong-Password-123" }),
        json!({ "username": "nobody-here", "password": "Wrong-Password-123" }),
        json!({ "email": user.email, "password": "Wrong-Password-123" }),
        json!({ "email": "nobody@example.com", "password": "Wrong-Password-123" }),
    ] {
        let resp = app.login(&body).await;
        assert_eq!(resp.status().as_u16(), 401);
        let content_type = header(&resp, "content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/problem+json"),
            "{content_type}"
        );
        bodies.push(resp.text().await.unwrap());
    }
    let problem: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(problem["code"], json!("invalid_credentials"), "{problem}");
    for body in &bodies[1..] {
        assert_eq!(
            body, &bodies[0],
            "no user enumeration through login responses"
        );
    }
}

async fn unverified_account_cannot_log_in(backend: Backend) {
    let app = spawn_app(backend).await;
    json_ok(
        app.register(&registration("ada", "ada@example.com", STRONG_PASSWORD))
            .await,
        201,
    )
    .await;

    assert_problem(
        app.login_username("ada", STRONG_PASSWORD).await,
        403,
        "account_inactive",
    )
    .await;
    // Without the right password the account's state is not revealed.
    assert_problem(
        app.login_username("ada", "Wrong-Password-123").await,
        401,
        "invalid_credentials",
    )
    .await;
}

async fn login_requires_password_and_identifier(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    assert_validation_error(
        app.login(&json!({ "username": user.username })).await,
        &["password"],
    )
    .await;
    assert_validation_error(
        app.login(&json!({ "username": user.username, "password": 12345678 }))
            .await,
        &["password"],
    )
    .await;
    assert_problem(
        app.login(&json!({ "password": user.password })).await,
        400,
        "validation_failed",
    )
    .await;
}
