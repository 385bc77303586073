//! What may start a session while an account changes (API.md v2, "Login, refresh, verify,
//! logout"): a login racing a password change, a reset or a deactivation counts as before
//! it (its session is revoked with the others) or after it (it fails), never as a session
//! that outlives the change; a staff deactivation wins over activation; and a pending
//! registration of your address by someone else does not become your account.
//!
//! The races need no sleeps: logins keep running, a fixed number in flight at any time,
//! while the change is under way, and for one more round after it answered.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use reqwest::Response;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::{
    Backend, NEW_PASSWORD, STRONG_PASSWORD, TestApp, TestUser, assert_problem, assert_status,
    json_ok, registration, spawn_app, spawn_app_with, str_field,
};

dual_backend_tests!(
    logins_racing_a_password_change_leave_no_session,
    logins_racing_a_password_reset_leave_no_session,
    logins_racing_a_deactivation_leave_no_session,
    staff_can_block_a_pending_sign_up_and_activation_does_not_lift_it,
    a_disabled_account_gets_no_activation_or_reset_link,
    a_registration_replaces_an_unclaimed_account_of_its_email,
    claimed_or_blocked_accounts_keep_their_email,
);

/// Logins in flight at any time during a race.
const IN_FLIGHT: usize = 16;
/// A bound on the logins of one race, should the change never answer.
const MAX_LOGINS: usize = 2000;

/// When the change starts relative to the stream of logins.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// At once: a reset link is bound to `last_login`, which every login moves.
    Together,
    /// Once a login has succeeded, so that there are sessions to revoke.
    AfterFirstSession,
}

/// Logs in as `user` with their (old) password, `IN_FLIGHT` at a time, while `change`
/// runs and for one more round after it answered. Returns the change's response and the
/// status and body of every login.
async fn logins_during(
    app: &TestApp,
    user: &TestUser,
    start: Start,
    change: impl Future<Output = Response>,
) -> (Response, Vec<(u16, Value)>) {
    // Connections first, so that the logins go out at once, side by side with the change.
    join_all((0..IN_FLIGHT).map(|_| app.get("/healthz"))).await;
    let (first_session, done) = (Notify::new(), AtomicBool::new(false));
    let change = async {
        if start == Start::AfterFirstSession {
            first_session.notified().await;
        }
        let response = change.await;
        done.store(true, Ordering::SeqCst);
        response
    };
    let logins = async {
        let login = || async {
            let resp = app.login_username(&user.username, &user.password).await;
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("JSON body"))
        };
        let mut in_flight: FuturesUnordered<_> = (0..IN_FLIGHT).map(|_| login()).collect();
        let (mut results, mut after) = (Vec::new(), 0);
        while let Some((status, body)) = in_flight.next().await {
            if status == 200 {
                first_session.notify_one();
            }
            results.push((status, body));
            let more = if done.load(Ordering::SeqCst) {
                after += 1;
                after <= IN_FLIGHT
            } else {
                results.len() + in_flight.len() < MAX_LOGINS
            };
            if more {
                in_flight.push(login());
            }
        }
        results
    };
    let (logins, response) = tokio::join!(logins, change);
    (response, logins)
}

/// Every login either failed with `failure` or got a session that is now revoked; some of
/// each happened, so the race really straddled the change.
async fn assert_no_session_survived(app: &TestApp, logins: &[(u16, Value)], failure: (u16, &str)) {
    let mut sessions = 0;
    for (status, body) in logins {
        if *status == 200 {
            sessions += 1;
            let refresh = str_field(body, "refresh_token");
            assert_problem(app.refresh(&refresh).await, 401, "token_revoked").await;
        } else {
            assert_eq!(
                (*status, body["code"].as_str().unwrap_or_default()),
                failure,
                "{body}"
            );
        }
    }
    assert!(sessions > 0, "no login got in before the change");
    assert!(sessions < logins.len(), "no login came after the change");
}

async fn logins_racing_a_password_change_leave_no_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let body = json!({
        "current_password": user.password,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
    });
    let change = app.change_password(&user.access_token, &body);
    let (changed, logins) = logins_during(&app, &user, Start::AfterFirstSession, change).await;
    let changed = json_ok(changed, 200).await;

    assert_no_session_survived(&app, &logins, (401, "invalid_credentials")).await;
    assert_problem(app.refresh(&user.refresh_token).await, 401, "token_revoked").await;
    // The session the change started lives on, and so does the new password.
    json_ok(
        app.refresh(&str_field(&changed, "refresh_token")).await,
        200,
    )
    .await;
    json_ok(app.login_username(&user.username, NEW_PASSWORD).await, 200).await;
}

async fn logins_racing_a_password_reset_leave_no_session(backend: Backend) {
    // A reset link is bound to `last_login`, which every login moves: the reset must read
    // the user before the first login commits. Logins then spend their time in bcrypt
    // (cost 8 rather than the suite's 4) between reading the user and committing.
    let app = spawn_app_with(backend, |s| s.password.bcrypt_cost = 8).await;
    let user = TestUser::create(&app).await;
    json_ok(app.request_password_reset(&user.email).await, 202).await;
    let link = app.reset_link(&user.email).await;
    let body = json!({
        "uid": link.uid,
        "token": link.token,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
    });
    let reset = app.confirm_password_reset(&body);
    let (reset, logins) = logins_during(&app, &user, Start::Together, reset).await;
    assert_status(reset, 204).await;

    assert_no_session_survived(&app, &logins, (401, "invalid_credentials")).await;
    json_ok(app.login_username(&user.username, NEW_PASSWORD).await, 200).await;
}

async fn logins_racing_a_deactivation_leave_no_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    let deactivate = json!({ "is_active": false });
    let patch = app.patch_user(&staff.access_token, &user.id, &deactivate);
    let (patched, logins) = logins_during(&app, &user, Start::AfterFirstSession, patch).await;
    assert_eq!(json_ok(patched, 200).await["is_active"], json!(false));

    // Lifting the block lets the user log in again, but brings no earlier session back.
    let lift = json!({ "is_active": true });
    json_ok(
        app.patch_user(&staff.access_token, &user.id, &lift).await,
        200,
    )
    .await;
    assert_no_session_survived(&app, &logins, (403, "account_inactive")).await;
    assert_problem(app.refresh(&user.refresh_token).await, 401, "token_revoked").await;
    json_ok(
        app.login_username(&user.username, &user.password).await,
        200,
    )
    .await;
}

/// Registers `username` with `email` and `password`, expecting an activation email.
async fn register_pending(app: &TestApp, username: &str, email: &str, password: &str) -> Value {
    let body = json_ok(
        app.register(&registration(username, email, password)).await,
        201,
    )
    .await;
    assert_eq!(body["activation_required"], json!(true), "{body}");
    body["user"].clone()
}

/// Asserts that `send` mails nothing to `to`: a control message to `control`, queued after
/// it, arrives, and `to` got nothing meanwhile (the outbox delivers oldest first).
async fn assert_nothing_mailed<F: Future<Output = ()>>(
    app: &TestApp,
    to: &str,
    send: F,
    control: &str,
) {
    let (before, seen) = (app.email_count(to), app.email_count(control));
    send.await;
    json_ok(app.request_password_reset(control).await, 202).await;
    app.wait_for_email(&format!("control email to {control}"), |_| {
        (app.email_count(control) > seen).then_some(())
    })
    .await;
    assert_eq!(app.email_count(to), before, "a message went to {to}");
}

/// API.md v2: staff can block a sign-up that is not activated yet; following the link
/// then verifies the email but does not activate, and login says the account is disabled.
async fn staff_can_block_a_pending_sign_up_and_activation_does_not_lift_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let pending = register_pending(&app, "mallory", "mallory@example.com", STRONG_PASSWORD).await;
    let id = str_field(&pending, "id");
    let link = app.activation_link("mallory@example.com").await;
    let blocked = json!({ "is_active": false });
    json_ok(
        app.patch_user(&staff.access_token, &id, &blocked).await,
        200,
    )
    .await;

    let refused = assert_problem(
        app.activate(&link.uid, &link.token).await,
        403,
        "account_inactive",
    )
    .await;
    assert_eq!(refused["detail"], json!("account is disabled"), "{refused}");
    let user = app.get_user_json(&staff.access_token, &id).await;
    assert_eq!(
        (&user["email_verified"], &user["is_active"]),
        (&json!(true), &json!(false)),
        "{user}"
    );
    let login = app.login_username("mallory", STRONG_PASSWORD).await;
    let login = assert_problem(login, 403, "account_inactive").await;
    assert_eq!(login["detail"], json!("account is disabled"), "{login}");

    // Staff lift the block: the (now verified) account is active.
    let lifted = json!({ "is_active": true });
    json_ok(app.patch_user(&staff.access_token, &id, &lifted).await, 200).await;
    json_ok(app.login_username("mallory", STRONG_PASSWORD).await, 200).await;
}

/// A user disabled by staff cannot get back in by asking for an activation link (with
/// verification off, their email was never verified) or a reset link.
async fn a_disabled_account_gets_no_activation_or_reset_link(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.accounts.require_email_verification = false).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    let disabled = json!({ "is_active": false });
    json_ok(
        app.patch_user(&staff.access_token, &user.id, &disabled)
            .await,
        200,
    )
    .await;

    let resend = async {
        json_ok(app.resend_activation(&user.email).await, 202).await;
    };
    assert_nothing_mailed(&app, &user.email, resend, &staff.email).await;
    let reset = async {
        json_ok(app.request_password_reset(&user.email).await, 202).await;
    };
    assert_nothing_mailed(&app, &user.email, reset, &staff.email).await;
    let login = app.login_username(&user.username, &user.password).await;
    assert_problem(login, 403, "account_inactive").await;
}

/// Pre-account hijacking: an attacker registers the victim's address with their own
/// password first. The victim's registration replaces that unclaimed account, the
/// attacker's link and password stop working, and the victim activates their own.
async fn a_registration_replaces_an_unclaimed_account_of_its_email(backend: Backend) {
    let app = spawn_app(backend).await;
    let victim = "ada@example.com";
    let attacker_password = "Crimson-Falcon-Ledger-58";
    let squatter = register_pending(&app, "mallory", victim, attacker_password).await;
    let attackers_link = app.activation_link(victim).await;

    let seen = app.email_count(victim);
    let ada = register_pending(&app, "ada", "ADA@example.com", STRONG_PASSWORD).await;
    assert_ne!(ada["id"], squatter["id"]);
    let link = app.emailed_link_after(victim, "/activate/", seen).await;
    let problem = app
        .activate(&attackers_link.uid, &attackers_link.token)
        .await;
    assert_problem(problem, 400, "validation_failed").await;
    json_ok(app.activate(&link.uid, &link.token).await, 200).await;

    json_ok(app.login_username("ada", STRONG_PASSWORD).await, 200).await;
    for (name, password) in [("mallory", attacker_password), ("ada", attacker_password)] {
        let login = app.login_username(name, password).await;
        assert_problem(login, 401, "invalid_credentials").await;
    }
    // The same person registering again, with the same username, replaces their own
    // unclaimed account too.
    register_pending(&app, "grace", "grace@example.com", STRONG_PASSWORD).await;
    register_pending(&app, "grace", "grace@example.com", NEW_PASSWORD).await;
}

/// The 409 stays for a verified address, for one whose account staff disabled, and
/// without email verification (where no link proves who owns an address).
async fn claimed_or_blocked_accounts_keep_their_email(backend: Backend) {
    let app = spawn_app(backend.clone()).await;
    let verified = TestUser::create(&app).await;
    let staff = TestUser::create_staff(&app).await;
    let blocked = register_pending(&app, "blocked", "blocked@example.com", STRONG_PASSWORD).await;
    let disable = json!({ "is_active": false });
    let id = str_field(&blocked, "id");
    json_ok(
        app.patch_user(&staff.access_token, &id, &disable).await,
        200,
    )
    .await;
    for email in [verified.email.as_str(), "blocked@example.com"] {
        let body = registration("newcomer", email, NEW_PASSWORD);
        assert_problem(app.register(&body).await, 409, "conflict").await;
    }

    let app = spawn_app_with(backend, |s| {
        s.accounts.require_email_verification = false;
        s.accounts.require_admin_approval = true;
    })
    .await;
    let first = registration("first", "first@example.com", STRONG_PASSWORD);
    json_ok(app.register(&first).await, 201).await;
    let second = registration("second", "first@example.com", NEW_PASSWORD);
    assert_problem(app.register(&second).await, 409, "conflict").await;
}
