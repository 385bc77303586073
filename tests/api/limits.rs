//! Limits at the HTTP edge: bodies over 64 KiB however they are framed, oversized
//! headers, and clients that connect and then send nothing (slowloris). Raw HTTP/1.1
//! over TCP where a client library would refuse or hide what is sent.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, TestApp, TestUser, assert_problem, json_ok, spawn_app};
use crate::ops_helpers::{RawReply, RawResponse, raw_exchange};

dual_backend_tests!(
    json_bodies_over_64_kib_are_refused_on_every_json_endpoint,
    chunked_body_over_the_limit_is_payload_too_large,
    overstated_content_length_is_refused_without_waiting_for_the_body,
    huge_header_is_refused_and_the_server_carries_on,
    silent_connection_is_closed_after_the_request_timeout,
    partial_request_head_is_timed_out,
    stalled_body_is_given_up_on,
);

/// How long a raw exchange may take before the test calls it a hang: well above the
/// service's 5 s request-head timeout, so a loaded machine cannot fail the test.
const PATIENCE: Duration = Duration::from_secs(15);

const KIB: usize = 1024;

fn expect_response(reply: RawReply) -> RawResponse {
    match reply {
        RawReply::Response(resp) => resp,
        RawReply::Closed => panic!("connection closed without a response"),
    }
}

/// The server still serves after whatever the test threw at it.
async fn assert_still_serving(app: &TestApp) {
    json_ok(app.get("/healthz").await, 200).await;
}

fn head(app: &TestApp, method: &str, path: &str, extra: &str) -> Vec<u8> {
    let host = app.address.trim_start_matches("http://");
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n")
        .into_bytes()
}

async fn json_bodies_over_64_kib_are_refused_on_every_json_endpoint(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let big = "a".repeat(65 * KIB);
    // Just under the limit is read (and then judged on its content).
    let near = json!({ "username": "a".repeat(63 * KIB), "password": "x" });
    // Under the body limit, but far over the field's: a validation error, not a lookup.
    assert_problem(app.login(&near).await, 400, "validation_failed").await;

    for path in ["/auth/login", "/auth/register", "/auth/token/refresh"] {
        let resp = app.post_json(path, &json!({ "padding": big })).await;
        assert_problem(resp, 413, "payload_too_large").await;
    }
    // Authenticated endpoints too, and the body is refused before anything changes.
    let resp = app
        .patch_me(&user.access_token, &json!({ "bio": big }))
        .await;
    assert_problem(resp, 413, "payload_too_large").await;
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(me["bio"], json!(""));
}

async fn chunked_body_over_the_limit_is_payload_too_large(backend: Backend) {
    let app = spawn_app(backend).await;
    // No Content-Length: the limit must be enforced while reading.
    let mut parts = vec![head(
        &app,
        "POST",
        "/auth/login",
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
    )];
    let mut body = format!("{{\"username\": \"{}", "a".repeat(70 * KIB)).into_bytes();
    body.extend_from_slice(b"\", \"password\": \"x\"}");
    for chunk in body.chunks(8 * KIB) {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        parts.push(framed);
    }
    parts.push(b"0\r\n\r\n".to_vec());
    let (reply, _) = raw_exchange(&app, parts, PATIENCE).await;
    expect_response(reply).assert_problem(413, "payload_too_large");
    assert_still_serving(&app).await;
}

async fn overstated_content_length_is_refused_without_waiting_for_the_body(backend: Backend) {
    let app = spawn_app(backend).await;
    // A 100 MB body is announced and never sent: the answer must not wait for it.
    let parts = vec![
        head(
            &app,
            "POST",
            "/auth/login",
            "Content-Type: application/json\r\nContent-Length: 104857600\r\n",
        ),
        b"{\"username\": \"a".to_vec(),
    ];
    let (reply, took) = raw_exchange(&app, parts, PATIENCE).await;
    expect_response(reply).assert_problem(413, "payload_too_large");
    assert!(took < PATIENCE, "took {took:?}");
    assert_still_serving(&app).await;
}

async fn huge_header_is_refused_and_the_server_carries_on(backend: Backend) {
    let app = spawn_app(backend).await;
    // A request head larger than the server buffers (actix-http: 128 KiB).
    let value = "b".repeat(256 * KIB);
    let parts = vec![head(
        &app,
        "GET",
        "/healthz",
        &format!("X-Padding: {value}\r\n"),
    )];
    let (reply, _) = raw_exchange(&app, parts, PATIENCE).await;
    let resp = expect_response(reply);
    assert!(
        matches!(resp.status, 400 | 413 | 431),
        "a 256 KiB header got {}",
        resp.status
    );
    // Many small headers (actix-http parses at most 96).
    let many: String = (0..200)
        .map(|i| format!("X-H{i}: {}\r\n", "c".repeat(40)))
        .collect();
    let (reply, _) = raw_exchange(&app, vec![head(&app, "GET", "/healthz", &many)], PATIENCE).await;
    let resp = expect_response(reply);
    assert!(
        matches!(resp.status, 400 | 413 | 431),
        "200 headers got {}",
        resp.status
    );
    assert_still_serving(&app).await;
}

async fn silent_connection_is_closed_after_the_request_timeout(backend: Backend) {
    let app = spawn_app(backend).await;
    // Connect and send nothing: the server must give up on us (within `PATIENCE`, or
    // `raw_exchange` fails the test), either silently or with a 408.
    let (reply, _) = raw_exchange(&app, Vec::new(), PATIENCE).await;
    if let RawReply::Response(resp) = reply {
        assert_eq!(resp.status, 408, "{resp:?}");
    }
    assert_still_serving(&app).await;
}

async fn partial_request_head_is_timed_out(backend: Backend) {
    let app = spawn_app(backend).await;
    // Half a request head, then silence (the blank line never comes).
    let host = app.address.trim_start_matches("http://");
    let partial = format!("POST /auth/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: appl");
    let (reply, _) = raw_exchange(&app, vec![partial.into_bytes()], PATIENCE).await;
    if let RawReply::Response(resp) = reply {
        assert_eq!(resp.status, 408, "{resp:?}");
    }
    assert_still_serving(&app).await;
}

/// A client that sends a complete head announcing a small body, then stalls half-way
/// through the body, ties up the connection (and the handler waiting for the body): the
/// request-head timeout does not cover bodies, so a slow-body (slowloris) client must be
/// cut off by a body timeout of its own.
async fn stalled_body_is_given_up_on(backend: Backend) {
    let app = spawn_app(backend).await;
    let parts = vec![
        head(
            &app,
            "POST",
            "/auth/login",
            "Content-Type: application/json\r\nContent-Length: 100\r\n",
        ),
        b"{\"username\": \"a".to_vec(),
    ];
    let (reply, took) = raw_exchange(&app, parts, PATIENCE).await;
    if let RawReply::Response(resp) = reply {
        assert!(
            matches!(resp.status, 400 | 408),
            "a stalled body got {}",
            resp.status
        );
    }
    assert!(took < PATIENCE, "took {took:?}");
    assert_still_serving(&app).await;
}
