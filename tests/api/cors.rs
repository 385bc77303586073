//! Browser access (`cors.allowed_origins`): off by default, exact origins only, with
//! credentials, and on every kind of response a browser must be able to read.

use reqwest::{Method, Response};

use crate::helpers::{
    Backend, TestApp, TestUser, assert_problem, header, json_ok, spawn_app, spawn_app_with,
};
use crate::ops_helpers::throttle_on;

dual_backend_tests!(
    cors_is_off_by_default,
    preflight_and_requests_from_an_allowed_origin_are_answered,
    other_origins_get_no_cors_headers,
    error_and_throttled_responses_are_readable_cross_origin,
);

const ORIGIN: &str = "https://app.example";

/// A preflight for `POST path` with a JSON body and a Bearer token, from `origin`.
async fn preflight(app: &TestApp, path: &str, origin: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .expect("request failed")
}

async fn get_from(app: &TestApp, path: &str, origin: &str, bearer: Option<&str>) -> Response {
    let mut req = app.client.get(app.url(path)).header("origin", origin);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("request failed")
}

fn header_list(resp: &Response, name: &str) -> Vec<String> {
    header(resp, name)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn assert_no_cors(resp: &Response) {
    assert_no_allow_origin(resp);
    assert!(
        header(resp, "access-control-allow-credentials").is_none(),
        "Access-Control-Allow-Credentials with CORS off"
    );
}

/// Without `Access-Control-Allow-Origin` a browser lets no script read the response
/// (whatever else is set).
fn assert_no_allow_origin(resp: &Response) {
    let allow = header(resp, "access-control-allow-origin");
    assert!(
        allow.is_none(),
        "Access-Control-Allow-Origin on {} {}: {allow:?}",
        resp.status(),
        resp.url()
    );
}

fn assert_allowed(resp: &Response, origin: &str) {
    assert_eq!(
        header(resp, "access-control-allow-origin").as_deref(),
        Some(origin),
        "Access-Control-Allow-Origin on {} {}",
        resp.status(),
        resp.url()
    );
    assert_eq!(
        header(resp, "access-control-allow-credentials").as_deref(),
        Some("true"),
        "Access-Control-Allow-Credentials"
    );
}

async fn cors_is_off_by_default(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(app.settings.cors.allowed_origins.is_empty());
    let resp = preflight(&app, "/auth/login", ORIGIN).await;
    assert_no_cors(&resp);
    let resp = get_from(&app, "/healthz", ORIGIN, None).await;
    assert_no_cors(&resp);
    json_ok(resp, 200).await;
}

async fn preflight_and_requests_from_an_allowed_origin_are_answered(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.cors.allowed_origins = vec![ORIGIN.into(), "https://admin.example".into()];
    })
    .await;
    let resp = preflight(&app, "/auth/login", ORIGIN).await;
    assert!(resp.status().is_success(), "preflight: {}", resp.status());
    assert_allowed(&resp, ORIGIN);
    let methods = header_list(&resp, "access-control-allow-methods");
    assert!(methods.contains(&"post".to_owned()), "{methods:?}");
    let headers = header_list(&resp, "access-control-allow-headers");
    for needed in ["content-type", "authorization"] {
        assert!(headers.contains(&needed.to_owned()), "{headers:?}");
    }

    // Each configured origin is echoed exactly (never `*`, which forbids credentials).
    let resp = preflight(&app, "/users/me", "https://admin.example").await;
    assert_allowed(&resp, "https://admin.example");

    let user = TestUser::create(&app).await;
    let resp = get_from(&app, "/users/me", ORIGIN, Some(&user.access_token)).await;
    assert_allowed(&resp, ORIGIN);
    let exposed = header_list(&resp, "access-control-expose-headers");
    for needed in ["retry-after", "x-request-id"] {
        assert!(exposed.contains(&needed.to_owned()), "{exposed:?}");
    }
    json_ok(resp, 200).await;
}

async fn other_origins_get_no_cors_headers(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.cors.allowed_origins = vec![ORIGIN.into()];
    })
    .await;
    for origin in [
        "https://evil.example",
        "https://app.example.evil.example",
        "http://app.example",
        "null",
    ] {
        let resp = preflight(&app, "/auth/login", origin).await;
        assert_no_allow_origin(&resp);
        let resp = get_from(&app, "/healthz", origin, None).await;
        assert_no_allow_origin(&resp);
        // A refused origin is the browser's business: the response itself, if it is
        // an error, is still a problem document.
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let content_type = header(&resp, "content-type").unwrap_or_default();
            assert!(
                content_type.starts_with("application/problem+json"),
                "{origin}: {status} with content-type `{content_type}`"
            );
        }
    }
}

async fn error_and_throttled_responses_are_readable_cross_origin(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.cors.allowed_origins = vec![ORIGIN.into()];
        throttle_on(s);
        s.throttle.anon = "1/hour".parse().unwrap();
    })
    .await;
    let resp = get_from(&app, "/users/me", ORIGIN, None).await;
    assert_allowed(&resp, ORIGIN);
    assert_problem(resp, 401, "not_authenticated").await;
    let resp = get_from(&app, "/users/me", ORIGIN, None).await;
    assert_allowed(&resp, ORIGIN);
    assert_problem(resp, 429, "throttled").await;
    // Preflights are answered by the CORS layer and never count against a bucket.
    for _ in 0..3 {
        assert_allowed(&preflight(&app, "/users/me", ORIGIN).await, ORIGIN);
    }
}
