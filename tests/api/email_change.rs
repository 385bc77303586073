//! `POST /users/me/email` and `POST /auth/email/confirm` (API.md, "Email and username
//! change"): the link to the new address and the notice to the old one, nothing changing
//! before confirmation, the address after it, and every way a link stops working.

use std::time::Duration;

use chrono::Utc;
use latchkey::auth::account_tokens::{AccountTokens, EmailChangeBinding};
use latchkey::config::{EmailBackend, SmtpTls};
use latchkey::db::Database;
use latchkey::db::models::users::User;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{
    Backend, EmailLink, NEW_PASSWORD, STRONG_PASSWORD, TestApp, TestUser, assert_problem,
    assert_user_object, assert_validation_error, header, json_ok, jwt_claims, registration,
    spawn_app, spawn_app_with, str_field, unique_username,
};
use crate::ops_helpers::{throttle_on, twin};
use crate::smtp_sink::SmtpSink;

dual_backend_tests!(
    a_reset_link_to_the_old_address_dies_with_the_change,
    email_change_mails_the_new_address_a_link_and_the_old_one_a_notice,
    confirmation_link_works_once,
    expired_confirmation_link_is_refused,
    forged_confirmation_links_are_refused,
    a_later_request_supersedes_the_earlier_link,
    a_password_change_cancels_a_pending_email_change,
    the_current_address_in_any_case_is_refused,
    wrong_current_password_is_refused_and_nothing_is_sent,
    an_address_another_account_has_is_a_conflict,
    an_address_taken_meanwhile_is_a_conflict_at_confirmation,
    an_unclaimed_account_does_not_keep_an_address_from_its_owner,
    email_change_racing_a_registration_has_one_winner,
    sessions_survive_an_email_change,
    email_change_requires_an_access_token,
    hostile_email_change_bodies_are_validation_errors,
    email_change_counts_against_the_login_throttle,
    links_to_one_address_are_limited,
);

const CONFIRM_MARKER: &str = "/email/confirm/";

async fn request_change(app: &TestApp, access: &str, new_email: &str, password: &str) -> Response {
    request_change_with(
        app,
        access,
        &json!({ "new_email": new_email, "current_password": password }),
    )
    .await
}

async fn request_change_with(app: &TestApp, access: &str, body: &Value) -> Response {
    app.bearer(Method::POST, "/users/me/email", access)
        .json(body)
        .send()
        .await
        .expect("request failed")
}

async fn confirm(app: &TestApp, uid: &str, token: &str) -> Response {
    app.post_json(
        "/auth/email/confirm",
        &json!({ "uid": uid, "token": token }),
    )
    .await
}

/// Asks to change `user`'s address to `new_email` (202 `{}`) and returns the link mailed
/// to it (the file backend), skipping the `seen` messages that address already had.
async fn requested(app: &TestApp, user: &TestUser, new_email: &str) -> EmailLink {
    let seen = app.email_count(new_email);
    let body = json_ok(
        request_change(app, &user.access_token, new_email, &user.password).await,
        202,
    )
    .await;
    assert_eq!(body, json!({}));
    app.emailed_link_after(new_email, CONFIRM_MARKER, seen)
        .await
}

/// The 200 body of a confirmation.
async fn confirmed(app: &TestApp, link: &EmailLink) -> Value {
    let user = json_ok(confirm(app, &link.uid, &link.token).await, 200).await;
    assert_user_object(&user);
    user
}

async fn me(app: &TestApp, user: &TestUser) -> Value {
    json_ok(app.get_me(&user.access_token).await, 200).await
}

async fn login_by_email(app: &TestApp, email: &str, password: &str) -> Response {
    app.login(&json!({ "email": email, "password": password }))
        .await
}

fn new_address() -> String {
    format!("{}@new.example.com", unique_username())
}

/// A user of an instance that mails over SMTP to `sink`. Email verification is off, so
/// setting the user up sends nothing (and their address starts unverified).
async fn smtp_app_and_user(backend: Backend, sink: &SmtpSink) -> (TestApp, TestUser) {
    let port = sink.port;
    let app = spawn_app_with(backend, |s| {
        s.email.backend = EmailBackend::Smtp;
        s.email.smtp.host = "127.0.0.1".into();
        s.email.smtp.port = port;
        s.email.smtp.tls = SmtpTls::None;
        s.email.retry_base = Duration::from_millis(200);
        s.accounts.require_email_verification = false;
    })
    .await;
    let user = TestUser::create(&app).await;
    (app, user)
}

async fn email_change_mails_the_new_address_a_link_and_the_old_one_a_notice(backend: Backend) {
    let sink = SmtpSink::start().await;
    let (app, user) = smtp_app_and_user(backend, &sink).await;
    assert_eq!(me(&app, &user).await["email_verified"], json!(false));
    let new = format!("Nadia.{}@New.Example.com", unique_username());
    let stored = new.replace("New.Example.com", "new.example.com");

    let resp = request_change(&app, &user.access_token, &new, &user.password).await;
    assert_eq!(json_ok(resp, 202).await, json!({}));

    // The new address gets the link, as two parts like every account email.
    let link = sink.link(&stored, CONFIRM_MARKER).await;
    assert!(
        link.url
            .starts_with(&format!("{}{CONFIRM_MARKER}", app.settings.public_url())),
        "built from accounts.email_change_url: {}",
        link.url
    );
    let to_new = sink.messages_for(&stored);
    assert_eq!(to_new.len(), 1, "{to_new:#?}");
    let confirmation = &to_new[0].email;
    assert!(
        confirmation.subject.to_lowercase().contains("confirm"),
        "{}",
        confirmation.subject
    );
    assert!(confirmation.text.contains(&user.username));
    for part in ["text/plain", "text/html"] {
        assert!(confirmation.part_types().iter().any(|p| p == part));
    }

    // The old address gets a notice without any link or token, naming the new address
    // only masked.
    let notice = sink
        .message_with_subject(&user.email, "email address is being changed")
        .await;
    assert_eq!(sink.messages_for(&user.email).len(), 1);
    let text = &notice.email.text;
    for part in ["text/plain", "text/html"] {
        assert!(notice.email.part_types().iter().any(|p| p == part));
    }
    assert!(text.contains("N***@new.example.com"), "{text}");
    for secret in [
        "http",
        "href",
        CONFIRM_MARKER,
        link.token.as_str(),
        link.uid.as_str(),
        stored.as_str(),
    ] {
        assert!(
            !notice.email.raw.contains(secret) && !text.contains(secret),
            "the notice contains `{secret}`: {text}"
        );
    }
    assert!(text.contains("change it"), "says what to do: {text}");

    // Nothing has changed yet.
    let before = me(&app, &user).await;
    assert_eq!(before["email"], json!(user.email));
    json_ok(login_by_email(&app, &user.email, &user.password).await, 200).await;
    assert_problem(
        login_by_email(&app, &stored, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;

    // Confirmed: the new address, verified.
    let changed = confirmed(&app, &link).await;
    assert_eq!(changed["id"], json!(user.id));
    assert_eq!(changed["email"], json!(stored));
    assert_eq!(changed["email_verified"], json!(true));
    assert_eq!(me(&app, &user).await["email"], json!(stored));

    // The new address logs in (in any case), the old one no longer does.
    json_ok(login_by_email(&app, &new, &user.password).await, 200).await;
    assert_problem(
        login_by_email(&app, &user.email, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;

    // A reset asked for the old address sends nothing; one for the new address arrives.
    json_ok(app.request_password_reset(&user.email).await, 202).await;
    json_ok(app.request_password_reset(&stored).await, 202).await;
    sink.link(&stored, "/password/reset/").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let to_old = sink.messages_for(&user.email);
    assert_eq!(to_old.len(), 1, "only the notice: {to_old:#?}");
}

async fn confirmation_link_works_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let new = new_address();
    let link = requested(&app, &user, &new).await;
    assert_eq!(confirmed(&app, &link).await["email"], json!(new));
    assert_validation_error(confirm(&app, &link.uid, &link.token).await, &["token"]).await;
    // Concurrent uses of one link: exactly one succeeds.
    let newer = new_address();
    let link = requested(&app, &user, &newer).await;
    let uses =
        futures::future::join_all((0..4).map(|_| confirm(&app, &link.uid, &link.token))).await;
    let mut ok = 0;
    for resp in uses {
        if resp.status() == 200 {
            ok += 1;
            json_ok(resp, 200).await;
        } else {
            assert_validation_error(resp, &["token"]).await;
        }
    }
    assert_eq!(ok, 1, "one use of the link wins");
    assert_eq!(me(&app, &user).await["email"], json!(newer));
}

/// The user row as stored (for building tokens with the known secret).
async fn user_row(app: &TestApp, id: &str) -> User {
    let settings = app.settings.clone();
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn =
            Database::connect_once(&settings.database, false).expect("cannot open the database");
        User::find(&mut conn, &id)
            .expect("query failed")
            .expect("no such user")
    })
    .await
    .expect("task panicked")
}

async fn expired_confirmation_link_is_refused(backend: Backend) {
    // A known `accounts.token_secret`, so the test can make tokens dated in the past.
    let dir = TempDir::new().expect("temp dir");
    let secret_path = dir.path().join("account-tokens.secret");
    let secret = b"a test secret of well over thirty-two bytes".to_vec();
    std::fs::write(&secret_path, &secret).expect("write secret");
    let app = spawn_app_with(backend, |s| {
        s.accounts.token_secret = Some(secret_path.clone());
    })
    .await;
    let user = TestUser::create(&app).await;
    let new = new_address();
    let link = requested(&app, &user, &new).await;

    let row = user_row(&app, &user.id).await;
    let binding = EmailChangeBinding {
        user_id: &row.id,
        password_hash: &row.password_hash,
        email: &row.email,
        new_email: row.pending_email.as_deref().expect("a pending change"),
        requested_at: row.email_change_requested_at.expect("a request time"),
    };
    let tokens = AccountTokens::new(&secret);
    let ttl = chrono::Duration::from_std(app.settings.accounts.email_change_ttl).expect("ttl");
    assert_eq!(ttl, chrono::Duration::days(1), "the default");
    let expired =
        tokens.make_email_change(&binding, Utc::now() - ttl - chrono::Duration::seconds(5));
    assert_validation_error(confirm(&app, &link.uid, &expired).await, &["token"]).await;
    assert_eq!(me(&app, &user).await["email"], json!(user.email));
    // The same binding a little younger than the lifetime is accepted: the refusal above
    // was the age alone.
    let old_but_valid =
        tokens.make_email_change(&binding, Utc::now() - ttl + chrono::Duration::seconds(60));
    assert_eq!(
        confirmed(
            &app,
            &EmailLink {
                token: old_but_valid,
                ..link.clone()
            }
        )
        .await["email"],
        json!(new)
    );
    // And the emailed token of that request is spent with it.
    assert_validation_error(confirm(&app, &link.uid, &link.token).await, &["token"]).await;
}

async fn forged_confirmation_links_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let other = TestUser::create(&app).await;
    let link = requested(&app, &user, &new_address()).await;
    let (ts, tag) = link.token.split_once('-').expect("<ts>-<tag>");
    let flipped = format!(
        "{ts}-{}{}",
        if tag.starts_with('A') { 'B' } else { 'A' },
        &tag[1..]
    );
    let later = format!("{}-{tag}", ts.parse::<i64>().expect("timestamp") + 1);
    // Another key's token for the very same state.
    let foreign = AccountTokens::new(b"somebody else's secret, 32 bytes or more");
    let row = user_row(&app, &user.id).await;
    let binding = EmailChangeBinding {
        user_id: &row.id,
        password_hash: &row.password_hash,
        email: &row.email,
        new_email: row.pending_email.as_deref().expect("pending"),
        requested_at: row.email_change_requested_at.expect("requested"),
    };
    let foreign = foreign.make_email_change(&binding, Utc::now());
    for token in [
        flipped.as_str(),
        later.as_str(),
        foreign.as_str(),
        "",
        "-",
        "123-abc",
        "99999999999999999999-AAAA",
        "not a token at all",
    ] {
        assert_validation_error(confirm(&app, &link.uid, token).await, &["token"]).await;
    }
    // The token is the user's: another user's uid with it is refused too.
    let other_uid = crate::helpers::b64url(&other.id);
    assert_validation_error(confirm(&app, &other_uid, &link.token).await, &["token"]).await;
    // An activation link is not an email-change link.
    let activation = app.activation_link(&user.email).await;
    assert_validation_error(
        confirm(&app, &activation.uid, &activation.token).await,
        &["token"],
    )
    .await;
    // An unknown or malformed uid.
    let ghost = crate::helpers::b64url("0190b3c4-6f1e-7a52-9d2c-3f4e5a6b7c8d");
    for uid in [ghost.as_str(), "", "not base64!", "Zm9v"] {
        let body = assert_problem(
            confirm(&app, uid, &link.token).await,
            400,
            "validation_failed",
        )
        .await;
        assert!(
            body["errors"].get("uid").is_some() || body["errors"].get("token").is_some(),
            "{body}"
        );
    }
    // None of that used the real link up.
    confirmed(&app, &link).await;
}

async fn a_later_request_supersedes_the_earlier_link(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let (first, second) = (new_address(), new_address());
    let first_link = requested(&app, &user, &first).await;
    let second_link = requested(&app, &user, &second).await;
    assert_validation_error(
        confirm(&app, &first_link.uid, &first_link.token).await,
        &["token"],
    )
    .await;
    assert_eq!(confirmed(&app, &second_link).await["email"], json!(second));
    // The same address asked for twice: only the newer link works.
    let third = new_address();
    let older = requested(&app, &user, &third).await;
    let newer = requested(&app, &user, &third).await;
    assert_ne!(older.token, newer.token);
    assert_validation_error(confirm(&app, &older.uid, &older.token).await, &["token"]).await;
    assert_eq!(confirmed(&app, &newer).await["email"], json!(third));
}

async fn a_password_change_cancels_a_pending_email_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let link = requested(&app, &user, &new_address()).await;
    let body = json!({
        "current_password": user.password,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
    });
    json_ok(app.change_password(&user.access_token, &body).await, 200).await;
    assert_validation_error(confirm(&app, &link.uid, &link.token).await, &["token"]).await;
    let login = json_ok(app.login_username(&user.username, NEW_PASSWORD).await, 200).await;
    assert_eq!(login["user"]["email"], json!(user.email));
}

async fn the_current_address_in_any_case_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    for same in [
        user.email.clone(),
        user.email.to_uppercase(),
        format!("  {}  ", user.email),
    ] {
        let resp = request_change(&app, &user.access_token, &same, &user.password).await;
        assert_validation_error(resp, &["new_email"]).await;
    }
    // Not an address at all.
    for bad in ["", "no-at-sign", "a@b", "two@@example.com"] {
        let resp = request_change(&app, &user.access_token, bad, &user.password).await;
        assert_validation_error(resp, &["new_email"]).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Only the activation email, from setting the user up.
    assert_eq!(app.email_count(&user.email), 1);
}

async fn wrong_current_password_is_refused_and_nothing_is_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let new = new_address();
    let resp = request_change(&app, &user.access_token, &new, "Wrong-Guess-9").await;
    let body = assert_validation_error(resp, &["current_password"]).await;
    assert!(body["errors"].get("new_email").is_none(), "{body}");
    // Both fields missing, or of the wrong type.
    let resp = request_change_with(&app, &user.access_token, &json!({})).await;
    assert_validation_error(resp, &["new_email", "current_password"]).await;
    let resp = request_change_with(
        &app,
        &user.access_token,
        &json!({"new_email": 7, "current_password": null, "email": new}),
    )
    .await;
    assert_validation_error(resp, &["new_email", "current_password", "email"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.email_count(&new), 0);
    assert_eq!(app.email_count(&user.email), 1, "only the activation email");
    assert_eq!(me(&app, &user).await["email"], json!(user.email));
}

async fn an_address_another_account_has_is_a_conflict(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let other = TestUser::create(&app).await;
    for taken in [other.email.clone(), other.email.to_uppercase()] {
        let resp = request_change(&app, &user.access_token, &taken, &user.password).await;
        assert_problem(resp, 409, "conflict").await;
    }
    // The password is checked first: a stolen access token alone learns nothing.
    let resp = request_change(&app, &user.access_token, &other.email, "Wrong-Guess-9").await;
    assert_validation_error(resp, &["current_password"]).await;
}

async fn an_address_taken_meanwhile_is_a_conflict_at_confirmation(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let new = new_address();
    let link = requested(&app, &user, &new).await;
    // Someone registers the address (and activates it) before the link is followed.
    TestUser::create_with(
        &app,
        &unique_username(),
        &new.to_uppercase(),
        STRONG_PASSWORD,
    )
    .await;
    assert_problem(confirm(&app, &link.uid, &link.token).await, 409, "conflict").await;
    assert_eq!(me(&app, &user).await["email"], json!(user.email));
    json_ok(login_by_email(&app, &user.email, &user.password).await, 200).await;

    // Another user changing to the address first wins the same way.
    let rival = TestUser::create(&app).await;
    let contested = new_address();
    let mine = requested(&app, &user, &contested).await;
    let theirs = requested(&app, &rival, &contested).await;
    assert_eq!(confirmed(&app, &theirs).await["id"], json!(rival.id));
    assert_problem(confirm(&app, &mine.uid, &mine.token).await, 409, "conflict").await;
}

async fn an_unclaimed_account_does_not_keep_an_address_from_its_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let new = new_address();
    // Someone registers the address and never activates it (email verification is on).
    let squatter = json_ok(
        app.register(&registration(&unique_username(), &new, STRONG_PASSWORD))
            .await,
        201,
    )
    .await;
    assert_eq!(squatter["activation_required"], json!(true));
    let squatter_link = app.activation_link(&new).await;
    // Asking for it is no conflict, and confirming takes it over.
    let link = requested(&app, &user, &new).await;
    assert_eq!(confirmed(&app, &link).await["email"], json!(new));
    // The unclaimed account is gone with its link.
    assert_problem(
        app.activate(&squatter_link.uid, &squatter_link.token).await,
        400,
        "validation_failed",
    )
    .await;
    json_ok(login_by_email(&app, &new, &user.password).await, 200).await;
}

async fn email_change_racing_a_registration_has_one_winner(backend: Backend) {
    // Verification off: a registration holds its address at once, so exactly one of the
    // two can have it.
    let app = spawn_app_with(backend, |s| s.accounts.require_email_verification = false).await;
    let user = TestUser::create(&app).await;
    for round in 0..6 {
        let target = format!("race{round}.{}@example.com", unique_username());
        let link = requested(&app, &user, &target).await;
        let body = registration(&unique_username(), &target, STRONG_PASSWORD);
        let (confirmation, registration) =
            tokio::join!(confirm(&app, &link.uid, &link.token), app.register(&body),);
        let statuses = (
            confirmation.status().as_u16(),
            registration.status().as_u16(),
        );
        match statuses {
            (200, 409) => {
                assert_problem(registration, 409, "conflict").await;
                assert_eq!(
                    confirmation.json::<Value>().await.expect("json")["email"],
                    json!(target)
                );
            }
            (409, 201) => {
                assert_problem(confirmation, 409, "conflict").await;
            }
            other => panic!("round {round}: one must win and the other get 409: {other:?}"),
        }
        let mine = me(&app, &user).await["email"] == json!(target);
        assert_eq!(mine, statuses.0 == 200, "round {round}");
        // Whoever won logs in with the address.
        let owner = login_by_email(&app, &target, STRONG_PASSWORD).await;
        let owner = json_ok(owner, 200).await;
        assert_eq!(owner["user"]["id"] == json!(user.id), mine, "round {round}");
    }
}

/// A reset link still sitting in the old mailbox must not take the account back after it
/// moved to another address (the link is bound to the address it was mailed to).
async fn a_reset_link_to_the_old_address_dies_with_the_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    assert_eq!(app.request_password_reset(&user.email).await.status(), 202);
    let reset = app.emailed_link(&user.email, "/password/reset/").await;
    let link = requested(&app, &user, &new_address()).await;
    confirmed(&app, &link).await;
    let resp = app
        .confirm_password_reset(&json!({
            "uid": reset.uid,
            "token": reset.token,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        }))
        .await;
    let body = assert_problem(resp, 400, "validation_failed").await;
    assert!(body["errors"]["token"].is_array(), "{body}");
}

async fn sessions_survive_an_email_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let new = new_address();
    let link = requested(&app, &user, &new).await;
    confirmed(&app, &link).await;
    // The access token still works, and a refresh gives one with the new address.
    assert_eq!(me(&app, &user).await["email"], json!(new));
    assert_eq!(jwt_claims(&user.access_token)["email"], json!(user.email));
    let pair = json_ok(app.refresh(&user.refresh_token).await, 200).await;
    let claims = jwt_claims(&str_field(&pair, "access_token"));
    assert_eq!(claims["email"], json!(new));
    assert_eq!(claims["email_verified"], json!(true));
}

async fn email_change_requires_an_access_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let body = json!({ "new_email": new_address(), "current_password": user.password });
    let resp = app.post_json("/users/me/email", &body).await;
    let resp_header = header(&resp, "www-authenticate");
    assert_problem(resp, 401, "not_authenticated").await;
    assert!(
        resp_header.is_some_and(|h| h.starts_with("Bearer")),
        "WWW-Authenticate"
    );
    // A refresh token is not an access token.
    let resp = request_change_with(&app, &user.refresh_token, &body).await;
    assert_problem(resp, 401, "token_invalid").await;
}

async fn hostile_email_change_bodies_are_validation_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let big = "a".repeat(63 * 1024);
    let cases = [
        (
            json!({"new_email": format!("{big}@example.com"), "current_password": user.password}),
            "new_email",
            "no more than 254",
        ),
        (
            json!({"new_email": new_address(), "current_password": big}),
            "current_password",
            "no more than 256",
        ),
        (
            json!({"new_email": "a\u{0}@example.com", "current_password": user.password}),
            "new_email",
            "Null characters",
        ),
        (
            json!({"new_email": new_address(), "current_password": "a\u{0}b"}),
            "current_password",
            "Null characters",
        ),
    ];
    for (body, field, message) in cases {
        let resp = request_change_with(&app, &user.access_token, &body).await;
        let problem = assert_validation_error(resp, &[field]).await;
        assert!(
            problem["errors"][field].to_string().contains(message),
            "{problem}"
        );
    }
    // Over the body limit: refused before anything is parsed.
    let resp = request_change_with(
        &app,
        &user.access_token,
        &json!({"new_email": "a".repeat(65 * 1024), "current_password": "x"}),
    )
    .await;
    assert_problem(resp, 413, "payload_too_large").await;
    // The confirmation's fields are bounded and NUL-free too.
    for (uid, token, field) in [
        (big.as_str(), "1-a", "uid"),
        ("dWlk", big.as_str(), "token"),
        ("dW\u{0}lk", "1-a", "uid"),
        ("dWlk", "1-\u{0}", "token"),
    ] {
        assert_validation_error(confirm(&app, uid, token).await, &[field]).await;
    }
    let resp = app
        .post_json(
            "/auth/email/confirm",
            &json!({"uid": "dWlk", "token": "1-a", "email": "x"}),
        )
        .await;
    assert_validation_error(resp, &["email"]).await;
    assert_eq!(me(&app, &user).await["email"], json!(user.email));
}

async fn email_change_counts_against_the_login_throttle(backend: Backend) {
    let plain = spawn_app(backend.clone()).await;
    let user = TestUser::create(&plain).await;
    let app = twin(&backend, &plain, |s| {
        throttle_on(s);
        s.throttle.login = "3/hour".parse().expect("rate");
    })
    .await;
    let wrong = request_change(&app, &user.access_token, &new_address(), "Wrong-Guess-9").await;
    assert_validation_error(wrong, &["current_password"]).await;
    assert_validation_error(confirm(&app, "dWlk", "1-a").await, &["uid"]).await;
    let resp = app
        .bearer(Method::POST, "/users/me/username", &user.access_token)
        .json(&json!({"new_username": unique_username(), "current_password": "Wrong-Guess-9"}))
        .send()
        .await
        .expect("request");
    assert_validation_error(resp, &["current_password"]).await;
    // The shared `login` bucket of this client is spent: by these, and for login too.
    let resp = request_change(&app, &user.access_token, &new_address(), &user.password).await;
    assert!(header(&resp, "retry-after").is_some());
    assert_problem(resp, 429, "throttled").await;
    assert_problem(confirm(&app, "dWlk", "1-a").await, 429, "throttled").await;
    assert_problem(
        app.login_username(&user.username, &user.password).await,
        429,
        "throttled",
    )
    .await;
}

async fn links_to_one_address_are_limited(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let new = new_address();
    requested(&app, &user, &new).await;
    let second = requested(&app, &user, &new).await;
    // A third link to the address within minutes is refused, and says so (the caller is
    // the account's owner: there is nothing to hide from them); the second still works.
    let resp = request_change(&app, &user.access_token, &new, &user.password).await;
    assert!(header(&resp, "retry-after").is_some());
    assert_problem(resp, 429, "throttled").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.email_count(&new), 2);
    assert_eq!(confirmed(&app, &second).await["email"], json!(new));
}
