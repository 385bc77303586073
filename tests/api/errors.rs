//! Framework-level errors (routing, body parsing) are problem+json too.

use serde_json::json;

use crate::helpers::{Backend, TestApp, assert_problem, spawn_app};

dual_backend_tests!(
    unknown_route_is_not_found,
    wrong_method_is_method_not_allowed,
    malformed_json_is_malformed_request,
    non_object_json_is_malformed_request,
    unsupported_content_type_is_malformed_request,
    oversized_body_is_payload_too_large,
);

/// POSTs raw bytes with the given content type to the login endpoint.
async fn post_raw(
    app: &TestApp,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(app.url("/auth/login"))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("request failed")
}

async fn unknown_route_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_problem(app.get("/no/such/route").await, 404, "not_found").await;
    assert_problem(
        app.post_json("/auth/nope", &json!({})).await,
        404,
        "not_found",
    )
    .await;
}

async fn wrong_method_is_method_not_allowed(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_problem(app.get("/auth/login").await, 405, "method_not_allowed").await;
    let resp = app
        .client
        .put(app.url("/auth/token/refresh"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 405, "method_not_allowed").await;
}

async fn malformed_json_is_malformed_request(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [
        r#"{"username": "ada", "password":"#,
        "not json",
        "{'a': 1}",
        "",
    ] {
        assert_problem(
            post_raw(&app, "application/json", body).await,
            400,
            "malformed_request",
        )
        .await;
    }
}

async fn non_object_json_is_malformed_request(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [r#"["ada", "secret"]"#, r#""ada""#, "42", "null"] {
        assert_problem(
            post_raw(&app, "application/json", body).await,
            400,
            "malformed_request",
        )
        .await;
    }
}

async fn unsupported_content_type_is_malformed_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = r#"{"username": "ada", "password": "Violet-Harbor-Quill-42"}"#;
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        assert_problem(
            post_raw(&app, content_type, body).await,
            400,
            "malformed_request",
        )
        .await;
    }
}

async fn oversized_body_is_payload_too_large(backend: Backend) {
    let app = spawn_app(backend).await;
    // Valid JSON just over the default 64 KiB limit (small enough to sit in socket
    // buffers, so an early 413 cannot turn into a connection reset on the client).
    let body = json!({ "username": "a".repeat(65 * 1024), "password": "x" }).to_string();
    assert_problem(
        post_raw(&app, "application/json", body).await,
        413,
        "payload_too_large",
    )
    .await;
}
