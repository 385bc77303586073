//! Webhooks (API.md v2, "Webhooks"; issue 16), black box: the service delivers to a real
//! HTTP receiver in this process (`webhook_receiver`), and every delivery is verified with
//! the Standard Webhooks algorithm written in the test. Covered: every event type with
//! its data, no secret in any body, retries that keep the id and the bytes, redirects not
//! followed, a restart between an event and its delivery, a rolled-back change sending nothing, several
//! servers delivering each event once, the per-endpoint event filter, the terminal failed
//! state and its metric, a slow receiver that never holds up the API, and (SQLite) the
//! delivery worker beside another process writing to the same file.
//!
//! Absence ("nothing else was sent") is only asserted once the outbox has nothing pending:
//! from then on, what the receiver has is all the service will ever send for the past.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use latchkey::config::{Settings, WebhookEndpoint};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, NEW_PASSWORD, STRONG_PASSWORD, TestApp, TestUser, assert_problem, assert_status,
    json_ok, jwt_claims, output_text, poll_until, registration, spawn_app_with, str_field,
    unique_username,
};
use crate::ops_helpers::{count, is_sqlite, metric, parse_metrics, samples, scrape, twin};
use crate::smtp_sink::unused_port;
use crate::webhook_receiver::{
    Event, HOOK_PATH, Receiver, Request, SecretFile, endpoint_url, verify,
};

dual_backend_tests!(
    every_event_of_a_self_service_account_is_delivered,
    staff_actions_and_createsuperuser_are_delivered,
    a_registration_that_logs_in_starts_a_session,
    retries_keep_the_id_and_the_bytes,
    a_redirect_is_a_failure_and_is_not_followed,
    a_restart_between_event_and_delivery_loses_nothing,
    a_rolled_back_change_sends_nothing,
    each_endpoint_gets_the_events_it_asked_for,
    a_delivery_that_keeps_failing_ends_as_failed,
    a_slow_receiver_never_holds_up_the_api,
);

/// A third strong password, for the reset after a change.
const THIRD_PASSWORD: &str = "Cobalt-Meadow-Finch-19";

/// Short, so that retries happen within a test.
const RETRY_BASE: Duration = Duration::from_millis(30);

// ---------------------------------------------------------------------------------
// Instances delivering to a receiver
// ---------------------------------------------------------------------------------

/// Adds an endpoint for `url` wanting `events`, signing with the secret in the file
/// `secret`, with quick retries.
fn deliver_to(s: &mut Settings, url: String, secret: &Path, events: &[&str]) {
    s.webhooks.endpoints.push(WebhookEndpoint {
        url,
        secret: secret.to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
    });
    s.webhooks.retry_base = RETRY_BASE;
    // A lease is twice this plus 10 s: one left by a stopped instance runs out within the
    // 15 s a test waits.
    s.webhooks.timeout = Duration::from_secs(1);
}

/// An instance delivering every event to a running receiver.
struct Hooked {
    app: TestApp,
    receiver: Receiver,
    secret: SecretFile,
}

async fn hooked_app(backend: Backend, customize: impl FnOnce(&mut Settings)) -> Hooked {
    let receiver = Receiver::start().await;
    let secret = SecretFile::new();
    let app = spawn_app_with(backend, |s| {
        deliver_to(s, receiver.url(), &secret.path, &["*"]);
        customize(s);
    })
    .await;
    Hooked {
        app,
        receiver,
        secret,
    }
}

/// One event per `webhook-id` among `requests` (its first attempt: that later ones are the
/// same is checked by `retries_keep_the_id_and_the_bytes`), each verified: any request
/// that fails verification fails the test.
fn events_of(secret: &SecretFile, requests: &[Request]) -> Vec<Event> {
    let mut seen = std::collections::HashSet::new();
    requests
        .iter()
        .map(|r| verify(&secret.secret, r).unwrap_or_else(|e| panic!("{e}")))
        .filter(|e| seen.insert(e.id.clone()))
        .collect()
}

/// Events about `user_id` (`data.id` or `data.user_id`).
fn about<'a>(events: &'a [Event], user_id: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.data["id"] == user_id || e.data["user_id"] == user_id)
        .collect()
}

/// `type` of each event, `session.revoked` with its reason: how many of each.
fn tally(events: &[&Event]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in events {
        let key = match e.data["reason"].as_str() {
            Some(reason) => format!("{}:{reason}", e.kind),
            None => e.kind.clone(),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

fn expected_tally(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

impl Hooked {
    fn events(&self) -> Vec<Event> {
        events_of(&self.secret, &self.receiver.requests())
    }

    /// Waits for a `kind` event whose data is exactly `data`; on timeout, shows the data
    /// of the `kind` events received.
    async fn expect(&self, kind: &str, data: &Value) -> Event {
        poll_until(&format!("{kind} event with the data {data}"), || {
            let events = self.events();
            let of_kind = || events.iter().filter(|e| e.kind == kind);
            of_kind()
                .find(|e| e.data == *data)
                .cloned()
                .ok_or_else(|| of_kind().map(|e| e.data.clone()).collect::<Vec<_>>())
        })
        .await
    }

    /// Waits for the `session.created` of the session `pair` starts, checks its data.
    async fn expect_session_created(&self, pair: &Value) {
        let claims = jwt_claims(&str_field(pair, "access_token"));
        let data = json!({
            "user_id": pair["user"]["id"],
            "session_id": claims["sid"],
            "amr": claims["amr"],
        });
        assert!(data["session_id"].is_string(), "no sid in {claims}");
        self.expect("session.created", &data).await;
    }

    /// Waits for one `session.revoked` with `reason` per session of `sessions`.
    async fn expect_revoked(&self, user_id: &str, sessions: &[String], reason: &str) {
        assert!(!sessions.is_empty(), "no session to see revoked ({reason})");
        for session in sessions {
            let data = json!({ "user_id": user_id, "session_id": session, "reason": reason });
            self.expect("session.revoked", &data).await;
        }
    }

    /// Waits until the outbox has nothing pending (see the module comment).
    async fn settled(&self) {
        settled(&self.app).await;
    }

    /// Every body sent so far is free of each of `secrets` and of key names that would
    /// carry one.
    fn assert_no_secret_in_bodies(&self, secrets: &[String]) {
        let mut secrets = secrets.to_vec();
        secrets.push(self.secret.secret.clone());
        secrets.push(self.secret.secret["whsec_".len()..].to_owned());
        for request in self.receiver.requests() {
            let body = String::from_utf8_lossy(&request.body);
            for secret in &secrets {
                assert!(
                    !body.contains(secret.as_str()),
                    "a webhook body carries the secret {secret:?}: {body}"
                );
            }
            for marker in ["$2a$", "$2b$", "$2y$"] {
                assert!(!body.contains(marker), "a bcrypt hash in {body}");
            }
            let value: Value = serde_json::from_slice(&request.body).expect("JSON body");
            assert_no_secret_keys(&value, &body);
        }
    }
}

fn assert_no_secret_keys(value: &Value, body: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let key = key.to_ascii_lowercase();
                assert!(
                    !["password", "hash", "token", "secret", "code"]
                        .iter()
                        .any(|word| key.contains(word)),
                    "a webhook body has the key {key:?}: {body}"
                );
                assert_no_secret_keys(v, body);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_no_secret_keys(v, body)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------
// The outbox, read behind the service's back
// ---------------------------------------------------------------------------------

const PENDING: &str =
    "SELECT COUNT(*) AS n FROM webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL";

/// The most attempts any outbox row has had.
fn most_attempts(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT CAST(COALESCE(MAX(attempts), 0) AS BIGINT) AS n FROM webhook_outbox",
    )
}

async fn settled(app: &TestApp) {
    poll_until("an outbox with nothing pending", || {
        match count(app, PENDING) {
            0 => Ok(()),
            n => Err(n),
        }
    })
    .await;
}

async fn wait_for_attempts(app: &TestApp, at_least: i64) {
    poll_until(
        &format!("{at_least} failed attempts"),
        || match most_attempts(app) {
            n if n >= at_least => Ok(()),
            n => Err(n),
        },
    )
    .await;
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    value: String,
}

/// The `value` column (text) of each row `sql` selects.
fn text_rows(app: &TestApp, sql: &str) -> Vec<String> {
    let rows: Vec<TextRow> = if let Some(path) = app.database_url.strip_prefix("sqlite://") {
        let mut conn = SqliteConnection::establish(path).expect("cannot open SQLite file");
        diesel::sql_query(sql).load(&mut conn)
    } else {
        let mut conn = PgConnection::establish(&app.database_url).expect("cannot connect");
        diesel::sql_query(sql).load(&mut conn)
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(|r| r.value).collect()
}

/// The stored password hash of the user `id`.
fn password_hash(app: &TestApp, id: &str) -> String {
    let sql = format!("SELECT password_hash AS value FROM users WHERE id = '{id}'");
    text_rows(app, &sql).pop().expect("the user's row")
}

// ---------------------------------------------------------------------------------
// Account steps
// ---------------------------------------------------------------------------------

/// Registers `username` with `email` (verification on); the 201 body.
async fn register_pending(app: &TestApp, username: &str, email: &str) -> Value {
    let body = json_ok(
        app.register(&registration(username, email, STRONG_PASSWORD))
            .await,
        201,
    )
    .await;
    assert_eq!(body["activation_required"], json!(true), "{body}");
    body
}

/// A registration with fresh names; its user object.
async fn someone_registers(app: &TestApp) -> Value {
    let username = unique_username();
    let body = register_pending(app, &username, &format!("{username}@example.com")).await;
    body["user"].clone()
}

async fn login(app: &TestApp, username: &str, password: &str) -> Value {
    json_ok(app.login_username(username, password).await, 200).await
}

async fn bearer_json(
    app: &TestApp,
    method: Method,
    path: &str,
    access: &str,
    body: &Value,
) -> Value {
    let resp = app.bearer(method, path, access).json(body).send().await;
    json_ok(resp.expect("request failed"), 200).await
}

/// Ids of the live sessions of the holder of `access`.
async fn live_sessions(app: &TestApp, access: &str) -> Vec<String> {
    let resp = app
        .bearer(Method::GET, "/users/me/sessions", access)
        .send()
        .await;
    let list = json_ok(resp.expect("request failed"), 200).await;
    list.as_array()
        .expect("a list")
        .iter()
        .map(|s| str_field(s, "id"))
        .collect()
}

fn sid(pair: &Value) -> String {
    str_field(&jwt_claims(&str_field(pair, "access_token")), "sid")
}

/// What must never appear in a webhook body: passwords, hashes, tokens, link tokens.
#[derive(Default)]
struct Secrets(Vec<String>);

impl Secrets {
    fn pair(&mut self, pair: &Value) {
        for key in ["access_token", "refresh_token"] {
            self.0.push(str_field(pair, key));
        }
    }

    fn add(&mut self, secret: impl Into<String>) {
        self.0.push(secret.into());
    }
}

// ---------------------------------------------------------------------------------
// 1, 2: every event type, with its data; no secret in any body
// ---------------------------------------------------------------------------------

async fn every_event_of_a_self_service_account_is_delivered(backend: Backend) {
    let started = Utc::now();
    let hook = hooked_app(backend, |_| {}).await;
    let app = &hook.app;
    let mut secrets = Secrets::default();
    for password in [STRONG_PASSWORD, NEW_PASSWORD, THIRD_PASSWORD] {
        secrets.add(password);
    }

    // An account never activated is replaced by a new registration of its address.
    let username = unique_username();
    let email = format!("{username}@example.com");
    let unclaimed = register_pending(app, &unique_username(), &email).await["user"].clone();
    // Its activation email is out before the next one, which the test must tell apart.
    app.activation_link(&email).await;
    let seen = app.email_count(&email);
    let registered = register_pending(app, &username, &email).await;
    let user = registered["user"].clone();
    let id = str_field(&user, "id");
    secrets.add(password_hash(app, &id));
    let gone = json!({"id": unclaimed["id"], "username": unclaimed["username"], "email": email});
    hook.expect("user.deleted", &gone).await;
    hook.expect("user.created", &unclaimed).await;
    hook.expect("user.created", &user).await;

    // Activation answers with tokens: activated, and a session starts.
    let link = app.emailed_link_after(&email, "/activate/", seen).await;
    secrets.add(&link.token);
    let activated = json_ok(app.activate(&link.uid, &link.token).await, 200).await;
    secrets.pair(&activated);
    let user_activated = never_logged_in(&activated["user"]);
    hook.expect("user.activated", &user_activated).await;
    hook.expect_session_created(&activated).await;

    let pair = login(app, &username, STRONG_PASSWORD).await;
    secrets.pair(&pair);
    assert_eq!(
        jwt_claims(&str_field(&pair, "access_token"))["amr"],
        json!(["pwd"])
    );
    hook.expect_session_created(&pair).await;
    let access = str_field(&pair, "access_token");

    // Profile, username and email changes: the user as GET /users/me shows it after each.
    let profile = json!({"first_name": "Ada", "last_name": "Lovelace", "bio": "Notes"});
    let patched = json_ok(app.patch_me(&access, &profile).await, 200).await;
    assert_eq!(patched, json_ok(app.get_me(&access).await, 200).await);
    hook.expect("user.updated", &patched).await;
    let new_username = unique_username();
    let renamed = bearer_json(
        app,
        Method::POST,
        "/users/me/username",
        &access,
        &json!({"new_username": new_username, "current_password": STRONG_PASSWORD}),
    )
    .await;
    hook.expect("user.updated", &renamed).await;
    let new_email = format!("{new_username}@example.org");
    let resp = app
        .bearer(Method::POST, "/users/me/email", &access)
        .json(&json!({"new_email": new_email, "current_password": STRONG_PASSWORD}))
        .send()
        .await
        .expect("request failed");
    json_ok(resp, 202).await;
    let link = app.emailed_link(&new_email, "/email/confirm/").await;
    secrets.add(&link.token);
    let confirm = json!({"uid": link.uid, "token": link.token});
    let moved = json_ok(app.post_json("/auth/email/confirm", &confirm).await, 200).await;
    assert_eq!(moved, json_ok(app.get_me(&access).await, 200).await);
    hook.expect("user.updated", &moved).await;

    // A password change ends every session before it and starts one.
    let before = live_sessions(app, &access).await;
    let changed = bearer_json(
        app,
        Method::POST,
        "/users/me/password",
        &access,
        &json!({
            "current_password": STRONG_PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        }),
    )
    .await;
    secrets.pair(&changed);
    secrets.add(password_hash(app, &id));
    let access = str_field(&changed, "access_token");
    assert_eq!(live_sessions(app, &access).await, [sid(&changed)]);
    hook.expect("user.password_changed", &json!({"id": id}))
        .await;
    hook.expect_session_created(&changed).await;
    hook.expect_revoked(&id, &before, "password_change").await;

    // Every way a session ends, each with its reason.
    assert_status(app.logout(&str_field(&changed, "refresh_token")).await, 204).await;
    hook.expect_revoked(&id, &[sid(&changed)], "logout").await;

    let sessions = start_sessions(&hook, &new_username, NEW_PASSWORD, 2, &mut secrets).await;
    assert_status(
        app.logout_all(&str_field(&sessions[1], "access_token"))
            .await,
        204,
    )
    .await;
    hook.expect_revoked(
        &id,
        &sessions.iter().map(sid).collect::<Vec<_>>(),
        "logout_all",
    )
    .await;

    let sessions = start_sessions(&hook, &new_username, NEW_PASSWORD, 3, &mut secrets).await;
    let access = str_field(&sessions[2], "access_token");
    let ended = format!("/users/me/sessions/{}", sid(&sessions[0]));
    assert_status(send(app, Method::DELETE, &ended, &access).await, 204).await;
    hook.expect_revoked(&id, &[sid(&sessions[0])], "session_ended")
        .await;
    assert_status(
        send(app, Method::DELETE, "/users/me/sessions", &access).await,
        204,
    )
    .await;
    hook.expect_revoked(&id, &[sid(&sessions[1])], "sign_out_others")
        .await;

    // A refresh token presented again after two rotations is reuse.
    let first = str_field(&sessions[2], "refresh_token");
    let once = json_ok(app.refresh(&first).await, 200).await;
    let twice = json_ok(app.refresh(&str_field(&once, "refresh_token")).await, 200).await;
    secrets.pair(&once);
    secrets.pair(&twice);
    assert_problem(app.refresh(&first).await, 401, "token_reused").await;
    hook.expect_revoked(&id, &[sid(&sessions[2])], "reuse")
        .await;

    // A password reset ends the sessions too.
    let reset_session = one_session(&hook, &new_username, NEW_PASSWORD, &mut secrets).await;
    assert_eq!(app.request_password_reset(&new_email).await.status(), 202);
    let link = app.emailed_link(&new_email, "/password/reset/").await;
    secrets.add(&link.token);
    let reset = json!({
        "uid": link.uid, "token": link.token,
        "new_password": THIRD_PASSWORD, "new_password_confirm": THIRD_PASSWORD,
    });
    assert_status(app.confirm_password_reset(&reset).await, 204).await;
    secrets.add(password_hash(app, &id));
    hook.expect_revoked(&id, &[sid(&reset_session)], "password_reset")
        .await;

    // Deleting the account ends its live session and names what was deleted.
    let last = one_session(&hook, &new_username, THIRD_PASSWORD, &mut secrets).await;
    let last_access = str_field(&last, "access_token");
    let body = json!({"current_password": THIRD_PASSWORD});
    assert_status(app.delete_me(&last_access, &body).await, 204).await;
    let deleted = json!({"id": id, "username": new_username, "email": new_email});
    hook.expect("user.deleted", &deleted).await;
    hook.expect_revoked(&id, &[sid(&last)], "deleted").await;

    hook.settled().await;
    let events = hook.events();
    assert_event_times(&events, started);
    let expected = expected_tally(&[
        ("user.created", 1),
        ("user.activated", 1),
        ("user.updated", 3),
        ("user.password_changed", 2),
        ("user.deleted", 1),
        // Activation, login, password change, 2 + 3 + 1 + 1 logins.
        ("session.created", 10),
        ("session.revoked:password_change", 2),
        ("session.revoked:logout", 1),
        ("session.revoked:logout_all", 2),
        ("session.revoked:session_ended", 1),
        ("session.revoked:sign_out_others", 1),
        ("session.revoked:reuse", 1),
        ("session.revoked:password_reset", 1),
        ("session.revoked:deleted", 1),
    ]);
    assert_eq!(tally(&about(&events, &id)), expected);
    let unclaimed_id = str_field(&unclaimed, "id");
    let replaced = expected_tally(&[("user.created", 1), ("user.deleted", 1)]);
    assert_eq!(tally(&about(&events, &unclaimed_id)), replaced);
    hook.assert_no_secret_in_bodies(&secrets.0);
}

/// `user` before its first session: an event that starts a session (registration with
/// verification off, activation with tokens) describes the account as its change left it,
/// and the session that follows, with its `last_login`, is an event of its own.
fn never_logged_in(user: &Value) -> Value {
    let mut user = user.clone();
    user["last_login"] = Value::Null;
    user
}

/// `n` logins, each waited for as `session.created`; their pairs.
async fn start_sessions(
    hook: &Hooked,
    username: &str,
    password: &str,
    n: usize,
    secrets: &mut Secrets,
) -> Vec<Value> {
    let mut pairs = Vec::new();
    for _ in 0..n {
        let pair = login(&hook.app, username, password).await;
        secrets.pair(&pair);
        hook.expect_session_created(&pair).await;
        pairs.push(pair);
    }
    pairs
}

async fn one_session(
    hook: &Hooked,
    username: &str,
    password: &str,
    secrets: &mut Secrets,
) -> Value {
    let mut pairs = start_sessions(hook, username, password, 1, secrets).await;
    pairs.remove(0)
}

async fn send(app: &TestApp, method: Method, path: &str, access: &str) -> reqwest::Response {
    app.bearer(method, path, access)
        .send()
        .await
        .expect("request failed")
}

/// Each event's `timestamp` is when it happened: during the test.
fn assert_event_times(events: &[Event], started: DateTime<Utc>) {
    let slack = chrono::Duration::seconds(2);
    let now = Utc::now();
    for e in events {
        let at: DateTime<FixedOffset> = e.timestamp;
        assert!(
            at >= started - slack && at <= now + slack,
            "{} at {at}, the test ran from {started} to {now}",
            e.kind
        );
    }
}

async fn staff_actions_and_createsuperuser_are_delivered(backend: Backend) {
    let started = Utc::now();
    let hook = hooked_app(backend, |s| s.accounts.require_admin_approval = true).await;
    let app = &hook.app;
    let mut secrets = Secrets::default();
    secrets.add(STRONG_PASSWORD);

    // The harness runs `latchkey` in the instance's scratch directory, where it reads
    // `config/default.toml`: `createsuperuser` and `users mfa-reset` record their events,
    // and the server delivers them.
    let endpoints = serde_json::to_string(&app.settings.webhooks.endpoints[0].url).expect("url");
    let secret_path = app.settings.webhooks.endpoints[0]
        .secret
        .display()
        .to_string();
    let secret_path = serde_json::to_string(&secret_path).expect("path");
    let scratch = app.email_dir.parent().expect("scratch directory");
    std::fs::create_dir_all(scratch.join("config")).expect("config directory");
    std::fs::write(
        scratch.join("config/default.toml"),
        format!("[webhooks]\nendpoints = [{{ url = {endpoints}, secret = {secret_path} }}]\n"),
    )
    .expect("write config/default.toml");
    let staff = TestUser::create_staff(app).await;
    secrets.add(&staff.access_token);
    secrets.add(&staff.refresh_token);
    let token = &staff.access_token;
    let created = never_logged_in(&json_ok(app.get_me(token).await, 200).await);
    hook.expect("user.created", &created).await;

    // Registration, activation (no session: approval pending), approval.
    let username = unique_username();
    let email = format!("{username}@example.com");
    let user = register_pending(app, &username, &email).await["user"].clone();
    let id = str_field(&user, "id");
    secrets.add(password_hash(app, &id));
    hook.expect("user.created", &user).await;
    let link = app.activation_link(&email).await;
    secrets.add(&link.token);
    let activated = json_ok(app.activate(&link.uid, &link.token).await, 200).await;
    assert_eq!(activated["approval_required"], json!(true), "{activated}");
    hook.expect("user.activated", &activated["user"]).await;
    let approve = json!({"is_active": true});
    let approved = json_ok(app.patch_user(token, &id, &approve).await, 200).await;
    hook.expect("user.approved", &approved).await;

    let pair = one_session(&hook, &username, STRONG_PASSWORD, &mut secrets).await;

    // A lost device, reset by staff and by the operator's command: the user's sessions
    // end either way (whether two-factor login was on or not).
    let reset = app
        .request_as(
            Method::DELETE,
            &format!("/users/{id}/mfa"),
            Some(token),
            None,
        )
        .await;
    assert_status(reset, 204).await;
    hook.expect_revoked(&id, &[sid(&pair)], "mfa_reset").await;
    let pair = one_session(&hook, &username, STRONG_PASSWORD, &mut secrets).await;
    let out = app.run_cli(&["users", "mfa-reset", &username], None).await;
    assert!(out.status.success(), "{}", output_text(&out));
    hook.expect_revoked(&id, &[sid(&pair)], "mfa_reset").await;
    let pair = one_session(&hook, &username, STRONG_PASSWORD, &mut secrets).await;

    // Groups and claims, then deactivation, which ends the user's sessions.
    json_ok(app.create_group(token, "editors").await, 201).await;
    let grant = json!({"groups": ["editors"], "claims": {"tenant": "acme"}});
    let granted = json_ok(app.patch_user(token, &id, &grant).await, 200).await;
    hook.expect("user.updated", &granted).await;
    let deactivate = json!({"is_active": false});
    let deactivated = json_ok(app.patch_user(token, &id, &deactivate).await, 200).await;
    hook.expect("user.updated", &deactivated).await;
    hook.expect_revoked(&id, &[sid(&pair)], "deactivated").await;

    assert_status(app.delete_user(token, &id).await, 204).await;
    let deleted = json!({"id": id, "username": username, "email": email});
    hook.expect("user.deleted", &deleted).await;

    hook.settled().await;
    let events = hook.events();
    assert_event_times(&events, started);
    let mut seen = tally(&about(&events, &id));
    // Reading of the contract: approval is `user.approved`; that it is also reported as
    // `user.updated` (the active flag changed, API.md) is allowed, with the same data.
    if seen.get("user.updated") == Some(&3) {
        hook.expect("user.updated", &approved).await;
        seen.insert("user.updated".into(), 2);
    }
    let expected = expected_tally(&[
        ("user.created", 1),
        ("user.activated", 1),
        ("user.approved", 1),
        ("user.updated", 2),
        ("session.created", 3),
        ("session.revoked:mfa_reset", 2),
        ("session.revoked:deactivated", 1),
        ("user.deleted", 1),
    ]);
    assert_eq!(seen, expected);
    let staff_events = expected_tally(&[("user.created", 1), ("session.created", 1)]);
    assert_eq!(tally(&about(&events, &staff.id)), staff_events);
    hook.assert_no_secret_in_bodies(&secrets.0);
}

async fn a_registration_that_logs_in_starts_a_session(backend: Backend) {
    let hook = hooked_app(backend, |s| s.accounts.require_email_verification = false).await;
    let app = &hook.app;
    let username = unique_username();
    let email = format!("{username}@example.com");
    let body = registration(&username, &email, STRONG_PASSWORD);
    let pair = json_ok(app.register(&body).await, 201).await;
    hook.expect("user.created", &never_logged_in(&pair["user"]))
        .await;
    hook.expect_session_created(&pair).await;
    hook.settled().await;
    let id = str_field(&pair["user"], "id");
    let events = hook.events();
    let expected = expected_tally(&[("user.created", 1), ("session.created", 1)]);
    assert_eq!(tally(&about(&events, &id)), expected);
    let mut secrets = Secrets::default();
    secrets.pair(&pair);
    secrets.add(STRONG_PASSWORD);
    secrets.add(password_hash(app, &id));
    hook.assert_no_secret_in_bodies(&secrets.0);
}

// ---------------------------------------------------------------------------------
// 3, 4: retries and restarts
// ---------------------------------------------------------------------------------

/// An instance delivering `user.created` to `127.0.0.1:port` (listening or not).
async fn app_for_port(backend: Backend, port: u16, secret: &SecretFile) -> TestApp {
    spawn_app_with(backend, |s| {
        deliver_to(s, endpoint_url(port), &secret.path, &["user.created"]);
    })
    .await
}

async fn retries_keep_the_id_and_the_bytes(backend: Backend) {
    let port = unused_port();
    let secret = SecretFile::new();
    let app = app_for_port(backend, port, &secret).await;
    let user = someone_registers(&app).await;

    // Refused connections first, then two 500s, then a 2xx.
    wait_for_attempts(&app, 2).await;
    // An hour later (of the 24 it is retried for), the gauge tells how late it is.
    age_outbox(&app, "created_at", 1);
    let late = |age: f64| (3600.0..3700.0).contains(&age);
    wait_for_metric_that(&app, OLDEST_PENDING, &[], "an hour", late).await;
    let receiver = Receiver::start_on(port).await;
    receiver.fail_next(2);
    let attempts = poll_until("a successful attempt after two 500s", || {
        let requests = receiver.requests();
        if requests.iter().any(Request::answered_ok) {
            Ok(requests)
        } else {
            Err(requests.len())
        }
    })
    .await;
    settled(&app).await;
    let statuses: Vec<u16> = attempts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    let events: Vec<Event> = attempts
        .iter()
        .map(|r| verify(&secret.secret, r).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    for e in &events {
        assert_eq!(e.id, events[0].id, "webhook-id changed between attempts");
        assert_eq!(
            e.body,
            events[0].body,
            "the body changed between attempts: {:?} vs {:?}",
            String::from_utf8_lossy(&e.body),
            String::from_utf8_lossy(&events[0].body)
        );
    }
    assert_eq!(events[0].kind, "user.created");
    assert_eq!(events[0].data, user);
    // Each attempt is stamped (and signed) when it is made.
    let stamps: Vec<i64> = attempts
        .iter()
        .map(|r| {
            r.header("webhook-timestamp")
                .unwrap_or_default()
                .parse()
                .unwrap_or_default()
        })
        .collect();
    assert!(stamps.is_sorted(), "attempt timestamps go back: {stamps:?}");
    let event_id = &events[0].id;
    let sql = format!(
        "SELECT COUNT(*) AS n FROM webhook_outbox \
         WHERE event_id = '{event_id}' AND delivered_at IS NOT NULL AND attempts >= 5"
    );
    assert_eq!(
        count(&app, &sql),
        1,
        "the row of {event_id}, delivered at attempt ≥ 5"
    );
    wait_for_metric(&app, OLDEST_PENDING, &[], 0.0).await;
}

async fn a_redirect_is_a_failure_and_is_not_followed(backend: Backend) {
    let hook = hooked_app(backend, |_| {}).await;
    hook.receiver.fail_next_with(1, 307);
    let user = someone_registers(&hook.app).await;
    hook.settled().await;
    let requests = hook.receiver.requests();
    let paths: Vec<(&str, u16)> = requests
        .iter()
        .map(|r| (r.path.as_str(), r.status))
        .collect();
    assert_eq!(paths, [(HOOK_PATH, 307), (HOOK_PATH, 200)], "{requests:#?}");
    let events = hook.events();
    assert_eq!(events.len(), 1, "one event, retried: {requests:#?}");
    assert_eq!(events[0].data, user);
}

/// An instance in a runtime of its own, so that stopping it ends its background workers
/// as a process exit would (dropping a `TestApp` only stops its HTTP server; a worker left
/// running would deliver in place of the next instance and hide a lost event).
struct Process {
    runtime: Option<tokio::runtime::Runtime>,
    app: TestApp,
}

impl Process {
    async fn spawn(
        backend: Backend,
        customize: impl FnOnce(&mut Settings) + Send + 'static,
    ) -> Self {
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the instance");
            let app = runtime.block_on(spawn_app_with(backend, customize));
            Process {
                runtime: Some(runtime),
                app,
            }
        })
        .await
        .expect("starting the instance")
    }

    /// Ends the instance and every task it started; its database stays.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn a_restart_between_event_and_delivery_loses_nothing(backend: Backend) {
    let port = unused_port();
    let secret = SecretFile::new();
    let path = secret.path.clone();
    let mut first = Process::spawn(backend.clone(), move |s| {
        deliver_to(s, endpoint_url(port), &path, &["user.created"]);
    })
    .await;
    let user = someone_registers(&first.app).await;
    // The receiver is down: the event is recorded and its delivery has failed. After a
    // few attempts the retries are far apart, so the instance is most likely stopped
    // between two of them; stopped during one, it leaves a lease that the next instance
    // waits out (12 s here, within the test's patience, only slower).
    wait_for_attempts(&first.app, 5).await;
    first.kill();

    let receiver = Receiver::start_on(port).await;
    let second = twin(&backend, &first.app, |s| {
        s.webhooks = first.app.settings.webhooks.clone();
    })
    .await;
    settled(&second).await;
    let requests = receiver.requests();
    let events = events_of(&secret, &requests);
    assert_eq!(events.len(), 1, "{requests:#?}");
    assert_eq!(events[0].data, user);
    assert_eq!(requests.len(), 1, "delivered once: {requests:#?}");
}

// ---------------------------------------------------------------------------------
// 5: a change that rolls back sends nothing
// ---------------------------------------------------------------------------------

/// A trigger that makes recording a `user.updated` event fail.
fn break_recording(app: &TestApp) {
    if is_sqlite(app) {
        app.execute_sql(
            "CREATE TRIGGER test_boom BEFORE INSERT ON webhook_outbox \
             WHEN NEW.event_type = 'user.updated' BEGIN SELECT RAISE(ABORT, 'boom'); END",
        );
    } else {
        app.execute_sql(
            "CREATE FUNCTION test_boom() RETURNS trigger LANGUAGE plpgsql \
             AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$",
        );
        app.execute_sql(
            "CREATE TRIGGER test_boom BEFORE INSERT ON webhook_outbox FOR EACH ROW \
             WHEN (NEW.event_type = 'user.updated') EXECUTE FUNCTION test_boom()",
        );
    }
}

fn repair_recording(app: &TestApp) {
    if is_sqlite(app) {
        app.execute_sql("DROP TRIGGER test_boom");
    } else {
        app.execute_sql("DROP TRIGGER test_boom ON webhook_outbox");
    }
}

/// Renames `user` to `first_name`, which the database refuses: a 5xx, and the name is
/// still `unchanged`.
async fn failed_rename(app: &TestApp, user: &TestUser, first_name: &str, unchanged: &str) {
    let resp = app
        .patch_me(&user.access_token, &json!({"first_name": first_name}))
        .await;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_server_error(), "{status}: {text}");
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(me["first_name"], unchanged, "{me}");
}

async fn rename(hook: &Hooked, user: &TestUser, first_name: &str) {
    let body = json!({"first_name": first_name});
    let renamed = json_ok(hook.app.patch_me(&user.access_token, &body).await, 200).await;
    hook.expect("user.updated", &renamed).await;
}

async fn a_rolled_back_change_sends_nothing(backend: Backend) {
    let hook = hooked_app(backend, |_| {}).await;
    let app = &hook.app;
    let user = TestUser::create(app).await;

    break_recording(app);
    failed_rename(app, &user, "RolledBack", "").await;
    repair_recording(app);
    rename(&hook, &user, "Committed").await;

    if !is_sqlite(app) {
        // The change and its event are written, and the commit fails (as a serialization
        // failure or a lost connection at COMMIT would): neither may stay, nor be sent.
        app.execute_sql(
            "CREATE FUNCTION test_fail_at_commit() RETURNS trigger LANGUAGE plpgsql \
             AS $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$",
        );
        app.execute_sql(
            "CREATE CONSTRAINT TRIGGER test_fail_at_commit AFTER UPDATE ON users \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW \
             WHEN (NEW.first_name = 'Deferred') EXECUTE FUNCTION test_fail_at_commit()",
        );
        failed_rename(app, &user, "Deferred", "Committed").await;
        rename(&hook, &user, "Final").await;
    }

    hook.settled().await;
    for request in hook.receiver.requests() {
        let body = String::from_utf8_lossy(&request.body);
        assert!(
            !body.contains("RolledBack") && !body.contains("Deferred"),
            "a rolled-back change was sent: {body}"
        );
    }
}

// ---------------------------------------------------------------------------------
// 6: several servers, each event once
// ---------------------------------------------------------------------------------

/// PostgreSQL only: SQLite deployments are one instance.
mod postgres_only {
    use crate::helpers::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_servers_deliver_each_event_once() {
        if let Some(backend) = Backend::postgres() {
            super::two_servers_deliver_each_event_once(backend).await;
        }
    }
}

async fn two_servers_deliver_each_event_once(backend: Backend) {
    const USERS: usize = 40;
    let hook = hooked_app(backend.clone(), |_| {}).await;
    let other = twin(&backend, &hook.app, |s| {
        s.webhooks = hook.app.settings.webhooks.clone();
    })
    .await;
    let registrations = (0..USERS).map(|i| {
        let instance = if i % 2 == 0 { &hook.app } else { &other };
        someone_registers(instance)
    });
    let users = futures::future::join_all(registrations).await;
    settled(&hook.app).await;

    let requests = hook.receiver.requests();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for request in &requests {
        *per_id.entry(request.webhook_id().to_owned()).or_default() += 1;
    }
    let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let events = hook.events();
    for user in &users {
        let id = str_field(user, "id");
        assert_eq!(
            tally(&about(&events, &id)),
            expected_tally(&[("user.created", 1)])
        );
    }
    assert_eq!(events.len(), USERS);
}

// ---------------------------------------------------------------------------------
// 7: the event filter
// ---------------------------------------------------------------------------------

async fn each_endpoint_gets_the_events_it_asked_for(backend: Backend) {
    let (narrow, wide) = (Receiver::start().await, Receiver::start().await);
    // Each endpoint signs with its own secret (`events_of` verifies with the right one).
    let (narrow_secret, wide_secret) = (SecretFile::new(), SecretFile::new());
    let app = spawn_app_with(backend, |s| {
        deliver_to(s, narrow.url(), &narrow_secret.path, &["user.created"]);
        deliver_to(s, wide.url(), &wide_secret.path, &["*"]);
    })
    .await;
    let user = TestUser::create(&app).await;
    settled(&app).await;

    let narrow_events = events_of(&narrow_secret, &narrow.requests());
    let wide_events = events_of(&wide_secret, &wide.requests());
    let only_created = expected_tally(&[("user.created", 1)]);
    assert_eq!(tally(&about(&narrow_events, &user.id)), only_created);
    assert_eq!(narrow_events.len(), 1);
    let everything = expected_tally(&[
        ("user.created", 1),
        ("user.activated", 1),
        // Activation and login.
        ("session.created", 2),
    ]);
    assert_eq!(tally(&about(&wide_events, &user.id)), everything);
    // One event, one id, whichever endpoint it goes to.
    let created = wide_events.iter().find(|e| e.kind == "user.created");
    assert_eq!(created.map(|e| &e.id), Some(&narrow_events[0].id));
    assert_eq!(created.map(|e| &e.body), Some(&narrow_events[0].body));
}

// ---------------------------------------------------------------------------------
// 8: given up after 24 hours, kept, counted
// ---------------------------------------------------------------------------------

/// Moves the time `column` of every outbox row `hours` into the past, as if that much
/// time had gone by (NULL stays NULL).
fn age_outbox(app: &TestApp, column: &str, hours: u32) {
    if is_sqlite(app) {
        // The text form diesel reads back; fractional seconds kept.
        app.execute_sql(&format!(
            "UPDATE webhook_outbox \
             SET {column} = strftime('%Y-%m-%d %H:%M:%f', {column}, '-{hours} hours')"
        ));
    } else {
        app.execute_sql(&format!(
            "UPDATE webhook_outbox SET {column} = {column} - INTERVAL '{hours} hours'"
        ));
    }
}

/// Waits until the sum of the samples `name{labels…}` (0 while there is none) is
/// `expected`: counters move just after the row they count is written.
async fn wait_for_metric(app: &TestApp, name: &str, labels: &[(&str, &str)], expected: f64) {
    wait_for_metric_that(app, name, labels, &format!("= {expected}"), |v| {
        v == expected
    })
    .await;
}

/// Waits until the sum of the samples `name{labels…}` (0 while there is none) is `ok`
/// (`what` says how, for the failure message).
async fn wait_for_metric_that(
    app: &TestApp,
    name: &str,
    labels: &[(&str, &str)],
    what: &str,
    ok: impl Fn(f64) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = parse_metrics(&scrape(app).await);
        let value: f64 = samples(&metrics, name, labels)
            .iter()
            .map(|s| s.value)
            .sum();
        if ok(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} is {value}, expected {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_total(app: &TestApp, outcome: &str, expected: f64) {
    let labels = [("event", "user.created"), ("outcome", outcome)];
    wait_for_metric(app, "latchkey_webhooks_total", &labels, expected).await;
}

/// The age of the oldest pending delivery, in seconds.
const OLDEST_PENDING: &str = "latchkey_webhooks_oldest_pending_seconds";

async fn a_delivery_that_keeps_failing_ends_as_failed(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.fail_next(usize::MAX);
    let secret = SecretFile::new();
    let app = app_for_port(backend, receiver.port, &secret).await;
    someone_registers(&app).await;
    wait_for_attempts(&app, 1).await;

    // A day later, the next failure is the last.
    age_outbox(&app, "created_at", 25);
    let dead = "SELECT COUNT(*) AS n FROM webhook_outbox \
                WHERE failed_at IS NOT NULL AND delivered_at IS NULL AND last_error IS NOT NULL";
    poll_until("a delivery given up", || match count(&app, dead) {
        1 => Ok(()),
        n => Err(n),
    })
    .await;
    let dead_id = receiver.requests()[0].webhook_id().to_owned();
    let tried = receiver.requests().len();
    let attempts = most_attempts(&app);
    wait_for_total(&app, "dead", 1.0).await;
    let metrics = parse_metrics(&scrape(&app).await);
    let labels = [("event", "user.created"), ("outcome", "failed")];
    assert!(metric(&metrics, "latchkey_webhooks_total", &labels) >= 1.0);

    // The receiver recovers and a new event goes through. The dead one is older, so a
    // worker that still considered it would try it first: it is never tried again.
    receiver.fail_next(0);
    let next = someone_registers(&app).await;
    settled(&app).await;
    let requests = receiver.requests();
    let events = events_of(&secret, &requests);
    let delivered = events
        .iter()
        .find(|e| e.id != dead_id)
        .expect("the new event");
    assert_eq!(delivered.data, next);
    let retried = requests
        .iter()
        .filter(|r| r.webhook_id() == dead_id)
        .count();
    assert_eq!(retried, tried, "the dead delivery was attempted again");
    assert_eq!(count(&app, dead), 1, "the failed row is kept");
    let still = format!(
        "SELECT COUNT(*) AS n FROM webhook_outbox WHERE event_id = '{dead_id}' AND attempts = {attempts}"
    );
    assert_eq!(count(&app, &still), 1);
    wait_for_total(&app, "delivered", 1.0).await;
    wait_for_total(&app, "dead", 1.0).await;
    // Nothing pending any more: the gauge of the oldest pending delivery says so.
    wait_for_metric(&app, OLDEST_PENDING, &[], 0.0).await;
    metric(&parse_metrics(&scrape(&app).await), OLDEST_PENDING, &[]); // present, not absent

    // Two hours on, delivered rows are cleaned up (the contract: an hour after delivery),
    // and the failed one, older than all of them, stays for an operator to look into.
    for column in ["created_at", "delivered_at", "failed_at"] {
        age_outbox(&app, column, 2);
    }
    let last = someone_registers(&app).await;
    settled(&app).await;
    let delivered = "SELECT COUNT(*) AS n FROM webhook_outbox WHERE delivered_at IS NOT NULL";
    poll_until("the row delivered two hours ago deleted", || {
        match count(&app, delivered) {
            1 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    assert_eq!(count(&app, dead), 1, "the failed row is kept");
    let events = events_of(&secret, &receiver.requests());
    assert!(events.iter().any(|e| e.data == last), "{events:#?}");
}

// ---------------------------------------------------------------------------------
// 9: a slow receiver
// ---------------------------------------------------------------------------------

async fn a_slow_receiver_never_holds_up_the_api(backend: Backend) {
    let hook = hooked_app(backend, |s| s.webhooks.timeout = Duration::from_millis(200)).await;
    let (app, receiver) = (&hook.app, &hook.receiver);
    receiver.hold_next(1);
    let first = someone_registers(app).await;
    poll_until(
        "the first delivery held by the receiver",
        || match receiver.held() {
            1 => Ok(()),
            n => Err(n),
        },
    )
    .await;

    // While the receiver sits on it, requests that cause events are answered.
    let user = TestUser::create(app).await;
    let renamed = json!({"first_name": "Prompt"});
    json_ok(app.patch_me(&user.access_token, &renamed).await, 200).await;
    assert_eq!(
        receiver.held(),
        1,
        "the API answered only after the receiver did"
    );

    // The held attempt timed out and a retry delivered the event, while the first attempt
    // is still held.
    let held_id = receiver.requests()[0].webhook_id().to_owned();
    let attempts = poll_until("the held event delivered by a retry", || {
        let attempts: Vec<Request> = receiver
            .requests()
            .into_iter()
            .filter(|r| r.webhook_id() == held_id)
            .collect();
        if attempts.iter().any(Request::answered_ok) {
            Ok(attempts)
        } else {
            Err(attempts)
        }
    })
    .await;
    let delivered = attempts
        .iter()
        .find(|r| r.answered_ok())
        .expect("a delivery");
    let event = verify(&hook.secret.secret, delivered).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((event.kind.as_str(), &event.data), ("user.created", &first));
    assert_eq!(receiver.held(), 1, "the first attempt is no longer held");
    receiver.release();
}

// ---------------------------------------------------------------------------------
// Deliveries beside other writers of an SQLite file
// ---------------------------------------------------------------------------------

/// SQLite only: on PostgreSQL other clients' writes are row-level and never in the way.
mod sqlite_only {
    use crate::helpers::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_process_writing_never_fails_a_request() {
        super::another_process_writing_never_fails_a_request(Backend::Sqlite).await;
    }
}

/// Another process writing to the database file, as the operator's `latchkey` commands
/// do, until dropped; how many writes it made.
struct OtherWriter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl OtherWriter {
    fn start(app: &TestApp) -> Self {
        use std::sync::atomic::Ordering;
        let path = app.database_url["sqlite://".len()..].to_owned();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut conn = SqliteConnection::establish(&path).expect("open the SQLite file");
            let mut run = |sql: &str| {
                diesel::sql_query(sql)
                    .execute(&mut conn)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            };
            // It waits its turn, as the service's own connections do.
            run("PRAGMA busy_timeout = 5000");
            run("CREATE TABLE IF NOT EXISTS test_other_writer (n INTEGER)");
            let mut writes = 0;
            while !stopped.load(Ordering::SeqCst) {
                run("INSERT INTO test_other_writer VALUES (1)");
                writes += 1;
                // Paced like a busy operator script, leaving the service room to write.
                std::thread::sleep(Duration::from_millis(2));
            }
            writes
        });
        OtherWriter { stop, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().expect("the other writer panicked")
    }
}

async fn another_process_writing_never_fails_a_request(backend: Backend) {
    // A receiver that is down: every edit's event joins the retries, and the worker keeps
    // claiming (with one that answers, fewer edits fail, but some still do).
    let hook = hooked_app(backend, |_| {}).await;
    hook.receiver.fail_next(usize::MAX);
    let app = &hook.app;
    let user = TestUser::create(app).await;

    let other = OtherWriter::start(app);
    let mut failed = Vec::new();
    for i in 0..200 {
        let body = json!({"bio": format!("edit {i}")});
        let resp = app.patch_me(&user.access_token, &body).await;
        if !resp.status().is_success() {
            failed.push(format!(
                "{}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            ));
        }
    }
    let writes = other.stop();
    assert!(writes > 0, "the other process never wrote");
    assert!(
        failed.is_empty(),
        "{} of 200 profile edits failed while another process wrote {writes} times: {failed:#?}",
        failed.len()
    );
}
