//! Email over SMTP (to the in-process `SmtpSink`): message format, delivery through the
//! outbox with retries while the server is down, and the account-approval email; the
//! outbox's failure handling (`outbox`) and the per-recipient link limit (`link_limit`).

mod link_limit;
mod outbox;

use std::time::{Duration, Instant};

use latchkey::config::{EmailBackend, Settings, SmtpTls};
use latchkey::db::Database;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, NEW_PASSWORD, STRONG_PASSWORD, TestApp, assert_problem, assert_status,
    assert_token_pair, header, json_ok, poll_until, registration, spawn_app_with, str_field,
    unique_username,
};
use crate::smtp_sink::{SmtpSink, unused_port};

dual_backend_tests!(
    smtp_delivers_activation_email,
    smtp_outage_delays_but_does_not_lose_mail,
    smtp_delivers_password_reset,
    smtp_approval_activates_account_and_notifies_user,
    smtp_password_reset_does_not_enumerate,
);

/// An instance delivering over plain SMTP to 127.0.0.1:`port`, retrying quickly.
async fn spawn_smtp_app(
    backend: Backend,
    port: u16,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_app_with(backend, |s| {
        s.email.backend = EmailBackend::Smtp;
        s.email.smtp.host = "127.0.0.1".into();
        s.email.smtp.port = port;
        s.email.smtp.tls = SmtpTls::None;
        s.email.retry_base = Duration::from_millis(200);
        customize(s);
    })
    .await
}

/// A running sink and an instance delivering to it.
async fn sink_and_app(
    backend: Backend,
    customize: impl FnOnce(&mut Settings),
) -> (SmtpSink, TestApp) {
    let sink = SmtpSink::start().await;
    let app = spawn_smtp_app(backend, sink.port, customize).await;
    (sink, app)
}

struct Registered {
    id: String,
    username: String,
    email: String,
}

/// Registers a fresh user (email verification on: no tokens yet).
async fn register(app: &TestApp) -> Registered {
    let username = unique_username();
    let email = format!("{username}@example.com");
    let body = json_ok(
        app.register(&registration(&username, &email, STRONG_PASSWORD))
            .await,
        201,
    )
    .await;
    assert_eq!(body["activation_required"], json!(true), "{body}");
    Registered {
        id: str_field(&body["user"], "id"),
        username,
        email,
    }
}

/// Posts the activation link mailed to `user`; returns the 200 body.
async fn activate(app: &TestApp, sink: &SmtpSink, user: &Registered) -> Value {
    let link = sink.link(&user.email, "/activate/").await;
    json_ok(app.activate(&link.uid, &link.token).await, 200).await
}

/// A registered user activated through the emailed link.
async fn activated_user(app: &TestApp, sink: &SmtpSink) -> Registered {
    let user = register(app).await;
    assert_token_pair(&activate(app, sink, &user).await);
    user
}

/// `accounts::approve` on the instance's database, as an operator would run it.
async fn approve(app: &TestApp, user_id: &str) -> bool {
    let settings = app.settings.clone();
    let user_id = user_id.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn =
            Database::connect_once(&settings.database, false).expect("cannot open the database");
        latchkey::accounts::approve(&mut conn, &settings, &Default::default(), &user_id)
            .expect("approve failed")
    })
    .await
    .expect("approve task panicked")
}

async fn smtp_delivers_activation_email(backend: Backend) {
    let (sink, app) = sink_and_app(backend, |_| {}).await;
    let user = activated_user(&app, &sink).await;

    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "exactly one message: {messages:#?}");
    let message = &messages[0];
    assert_eq!(message.rcpt_to, [user.email.as_str()], "envelope recipient");
    assert!(message.email.is_to(&user.email), "To: {}", message.email.to);
    let from = message.email.header("from").unwrap_or_default();
    assert_eq!(
        from.replace('"', ""),
        app.settings.email.from,
        "From is the configured `email.from`"
    );
    assert!(
        app.settings
            .email
            .from
            .contains(&format!("<{}>", message.mail_from)),
        "envelope sender {:?} is the address of `email.from`",
        message.mail_from
    );
    let site = app.settings.accounts.site_name.to_lowercase();
    assert!(
        message.email.subject.to_lowercase().contains(&site),
        "the subject names the site `{site}`: {:?}",
        message.email.subject
    );
    let content_type = message.email.header("content-type").unwrap_or_default();
    assert!(
        content_type
            .to_ascii_lowercase()
            .starts_with("multipart/alternative"),
        "Content-Type: {content_type}"
    );
    let parts = message.email.part_types();
    for wanted in ["text/plain", "text/html"] {
        assert!(
            parts.iter().any(|p| p == wanted),
            "no {wanted} part: {parts:?}"
        );
    }
    assert!(
        !message.email.raw.contains(STRONG_PASSWORD),
        "the password must not be emailed"
    );
    assert!(app.emails().is_empty(), "nothing went to the file backend");
}

async fn smtp_outage_delays_but_does_not_lose_mail(backend: Backend) {
    let port = unused_port();
    let app = spawn_smtp_app(backend, port, |_| {}).await;

    // Nothing listens: the request must neither fail nor wait for the mail server.
    let started = Instant::now();
    let user = register(&app).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "registration waited {elapsed:?} for an unreachable mail server"
    );

    // Still no delivery possible (the server now answers 421): the queued message is
    // attempted again, more than once.
    let unavailable = SmtpSink::start_unavailable_on(port).await;
    poll_until("two more delivery attempts", || {
        match unavailable.connections() {
            n if n >= 2 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    unavailable.stop().await;

    let sink = SmtpSink::start_on(port).await;
    assert_token_pair(&activate(&app, &sink, &user).await);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "delivered once: {messages:#?}");
}

async fn smtp_delivers_password_reset(backend: Backend) {
    let (sink, app) = sink_and_app(backend, |_| {}).await;
    let user = activated_user(&app, &sink).await;

    let body = json_ok(app.request_password_reset(&user.email).await, 202).await;
    assert_eq!(body, json!({}));
    let link = sink.link(&user.email, "/password/reset/").await;
    let confirm = json!({
        "uid": link.uid,
        "token": link.token,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
    });
    assert_status(app.confirm_password_reset(&confirm).await, 204).await;
    json_ok(app.login_username(&user.username, NEW_PASSWORD).await, 200).await;
}

async fn smtp_approval_activates_account_and_notifies_user(backend: Backend) {
    let (sink, app) = sink_and_app(backend, |s| s.accounts.require_admin_approval = true).await;
    let user = register(&app).await;

    let body = activate(&app, &sink, &user).await;
    assert_eq!(body["approval_required"], json!(true), "{body}");
    assert!(
        body.get("access_token").is_none(),
        "no tokens before approval: {body}"
    );
    let problem = assert_problem(
        app.login_username(&user.username, STRONG_PASSWORD).await,
        403,
        "account_inactive",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("pending approval")),
        "detail says why: {problem}"
    );

    assert!(approve(&app, &user.id).await, "a pending user is approved");
    assert!(!approve(&app, &user.id).await, "approving twice is a no-op");
    let message = sink.message_with_subject(&user.email, "approved").await;
    assert!(message.email.is_to(&user.email), "To: {}", message.email.to);

    let pair = json_ok(
        app.login_username(&user.username, STRONG_PASSWORD).await,
        200,
    )
    .await;
    assert_token_pair(&pair);
    assert_eq!(pair["user"]["is_active"], json!(true), "{pair}");
}

async fn smtp_password_reset_does_not_enumerate(backend: Backend) {
    let (sink, app) = sink_and_app(backend, |_| {}).await;
    let user = activated_user(&app, &sink).await;
    let unknown = "nobody@example.com";

    // The unknown address first: a message for it would be queued before the known one's.
    let mut answers = Vec::new();
    for email in [unknown, user.email.as_str()] {
        let resp = app.request_password_reset(email).await;
        let status = resp.status().as_u16();
        let content_type = header(&resp, "content-type");
        let body = resp.bytes().await.expect("cannot read response body");
        answers.push((status, content_type, body));
    }
    assert_eq!(answers[0].0, 202, "{answers:?}");
    assert_eq!(
        answers[0], answers[1],
        "known and unknown addresses look alike"
    );

    sink.link(&user.email, "/password/reset/").await;
    let messages = sink.messages();
    assert!(
        messages
            .iter()
            .all(|m| !m.is_for(unknown) && !m.email.is_to(unknown)),
        "nothing is sent to an unknown address: {messages:#?}"
    );
    assert_eq!(
        sink.messages_for(&user.email).len(),
        2,
        "activation and reset: {messages:#?}"
    );
}
