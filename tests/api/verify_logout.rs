//! `POST /auth/token/verify`, `POST /auth/logout` and `POST /auth/logout/all`.

use serde_json::json;

use crate::helpers::{
    Backend, PUBLIC_URL, TestUser, assert_problem, assert_status, header, json_ok, spawn_app,
    str_field,
};

dual_backend_tests!(
    verify_access_token_returns_claims,
    verify_live_refresh_token,
    verify_rotated_refresh_token_is_revoked,
    verify_garbage_is_invalid,
    logout_revokes_refresh_token_idempotently,
    logout_all_revokes_every_session,
    logout_all_requires_bearer,
);

async fn verify_access_token_returns_claims(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    let body = json_ok(app.verify(&user.access_token).await, 200).await;
    assert_eq!(body["valid"], json!(true));
    assert_eq!(body["token_type"], json!("access"));
    let claims = &body["claims"];
    for key in [
        "iss",
        "aud",
        "sub",
        "iat",
        "nbf",
        "exp",
        "jti",
        "token_type",
        "username",
        "email",
        "email_verified",
        "is_staff",
        "groups",
    ] {
        assert!(claims.get(key).is_some(), "claim `{key}` missing: {claims}");
    }
    assert_eq!(claims["iss"], json!(PUBLIC_URL));
    assert!(
        claims["aud"] == json!("latchkey") || claims["aud"] == json!(["latchkey"]),
        "{claims}"
    );
    assert_eq!(claims["sub"], json!(user.id));
    assert_eq!(claims["token_type"], json!("access"));
    assert_eq!(claims["username"], json!(user.username));
    assert_eq!(claims["email"], json!(user.email));
    assert_eq!(claims["email_verified"], json!(true));
    assert_eq!(claims["is_staff"], json!(false));
    assert_eq!(claims["groups"], json!([]));
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 15 * 60, "default access_ttl is 15m");
}

async fn verify_live_refresh_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    let body = json_ok(app.verify(&user.refresh_token).await, 200).await;
    assert_eq!(body["valid"], json!(true));
    assert_eq!(body["token_type"], json!("refresh"));
    let claims = &body["claims"];
    assert_eq!(claims["token_type"], json!("refresh"));
    assert_eq!(claims["sub"], json!(user.id));
    assert!(
        claims["fam"].is_string(),
        "refresh token carries its family: {claims}"
    );
    assert!(claims["jti"].is_string(), "{claims}");
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 14 * 24 * 3600, "default refresh_ttl is 14d");
}

async fn verify_rotated_refresh_token_is_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    json_ok(app.refresh(&user.refresh_token).await, 200).await;
    assert_problem(app.verify(&user.refresh_token).await, 401, "token_revoked").await;
}

async fn verify_garbage_is_invalid(backend: Backend) {
    let app = spawn_app(backend).await;
    for token in ["garbage", "a.b.c", "e30.e30.e30"] {
        assert_problem(app.verify(token).await, 401, "token_invalid").await;
    }
}

async fn logout_revokes_refresh_token_idempotently(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let other_session = user.login_again(&app).await;

    assert_status(app.logout(&user.refresh_token).await, 204).await;
    assert_problem(app.refresh(&user.refresh_token).await, 401, "token_revoked").await;
    assert_problem(app.verify(&user.refresh_token).await, 401, "token_revoked").await;
    assert_status(app.logout(&user.refresh_token).await, 204).await;

    // Only that session's family is revoked.
    json_ok(
        app.refresh(&str_field(&other_session, "refresh_token"))
            .await,
        200,
    )
    .await;
}

async fn logout_all_revokes_every_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let second = user.login_again(&app).await;
    let rotated = json_ok(app.refresh(&str_field(&second, "refresh_token")).await, 200).await;

    assert_status(app.logout_all(&user.access_token).await, 204).await;

    for token in [
        user.refresh_token.clone(),
        str_field(&rotated, "refresh_token"),
    ] {
        assert_problem(app.refresh(&token).await, 401, "token_revoked").await;
        assert_problem(app.verify(&token).await, 401, "token_revoked").await;
    }
    // Logging in again starts a fresh, working session.
    let fresh = user.login_again(&app).await;
    json_ok(app.refresh(&str_field(&fresh, "refresh_token")).await, 200).await;
}

async fn logout_all_requires_bearer(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    let resp = app
        .client
        .post(app.url("/auth/logout/all"))
        .send()
        .await
        .unwrap();
    let challenge = header(&resp, "www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "WWW-Authenticate: `{challenge}`"
    );
    assert_problem(resp, 401, "not_authenticated").await;

    // A refresh token is not an access token.
    assert_problem(
        app.logout_all(&user.refresh_token).await,
        401,
        "token_invalid",
    )
    .await;
    json_ok(app.refresh(&user.refresh_token).await, 200).await;
}
