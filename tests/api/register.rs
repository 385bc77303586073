//! `POST /auth/register` and `POST /auth/activate`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PUBLIC_URL, STRONG_PASSWORD, TestApp, TestUser, assert_problem, assert_token_pair,
    assert_user_object, assert_validation_error, assert_validation_error_on_one_of, json_ok,
    registration, spawn_app, spawn_app_with,
};

dual_backend_tests!(
    register_with_verification_sends_activation_email,
    activation_link_activates_account_once,
    resend_activation_does_not_enumerate,
    expired_or_malformed_activation_is_rejected,
    activation_with_admin_approval_keeps_account_inactive,
    register_without_verification_returns_token_pair,
    register_rejects_missing_fields,
    register_rejects_wrong_json_types,
    register_validates_username,
    register_rejects_invalid_emails,
    register_rejects_weak_passwords,
    register_accepts_boundary_lengths,
    register_rejects_password_confirm_mismatch,
    register_rejects_unknown_fields,
    register_rejects_duplicate_username_case_insensitively,
    register_rejects_duplicate_email_case_insensitively,
    register_normalizes_email_domain_only,
    concurrent_duplicate_registrations_create_one_user,
);

async fn register_with_verification_sends_activation_email(backend: Backend) {
    let app = spawn_app(backend).await;

    let body = json_ok(
        app.register(&registration("ada", "ada@example.com", STRONG_PASSWORD))
            .await,
        201,
    )
    .await;

    assert_eq!(body["activation_required"], json!(true), "{body}");
    assert!(
        body.get("access_token").is_none(),
        "no tokens before activation: {body}"
    );
    let user = &body["user"];
    assert_user_object(user);
    assert_eq!(user["username"], json!("ada"));
    assert_eq!(user["email"], json!("ada@example.com"));
    assert_eq!(user["is_active"], json!(false));
    assert_eq!(user["email_verified"], json!(false));
    assert_eq!(user["is_staff"], json!(false));

    let link = app.activation_link("ada@example.com").await;
    let emails = app.emails();
    assert_eq!(emails.len(), 1, "exactly one message expected: {emails:#?}");
    assert!(
        emails[0].subject.to_lowercase().contains("latchkey"),
        "the subject names the site: {:?}",
        emails[0].subject
    );
    assert!(
        link.url.starts_with(&format!("{PUBLIC_URL}/activate/")),
        "link built from the template and public_url: {}",
        link.url
    );
    // uid = URL-safe base64 without padding of the hyphenated id.
    assert!(
        !link.uid.contains('='),
        "uid must be unpadded: {}",
        link.uid
    );
    let uid = URL_SAFE_NO_PAD
        .decode(&link.uid)
        .unwrap_or_else(|e| panic!("uid `{}` is not base64url ({e})", link.uid));
    assert_eq!(
        String::from_utf8(uid).unwrap(),
        user["id"].as_str().unwrap()
    );
    assert!(
        !emails[0].raw.contains(STRONG_PASSWORD),
        "the password must not be emailed"
    );
}

async fn activation_link_activates_account_once(backend: Backend) {
    let app = spawn_app(backend).await;
    json_ok(
        app.register(&registration("grace", "grace@example.com", STRONG_PASSWORD))
            .await,
        201,
    )
    .await;
    let link = app.activation_link("grace@example.com").await;

    // A forged token for the right uid is refused and does not burn the real one.
    let forged = app.activate(&link.uid, "1-0123456789abcdef").await;
    assert_validation_error(forged, &["token"]).await;

    let pair = json_ok(app.activate(&link.uid, &link.token).await, 200).await;
    assert_token_pair(&pair);
    assert_eq!(pair["user"]["is_active"], json!(true));
    assert_eq!(pair["user"]["email_verified"], json!(true));
    json_ok(
        app.get_me(pair["access_token"].as_str().unwrap()).await,
        200,
    )
    .await;

    // Single use.
    let again = app.activate(&link.uid, &link.token).await;
    assert_validation_error(again, &["token"]).await;

    json_ok(app.login_username("grace", STRONG_PASSWORD).await, 200).await;
}

async fn resend_activation_does_not_enumerate(backend: Backend) {
    let app = spawn_app(backend).await;
    register_ok(&app, "ada", "ada@example.com").await;
    app.activation_link("ada@example.com").await;

    for email in ["ada@example.com", "nobody@example.com"] {
        let body = json_ok(app.resend_activation(email).await, 202).await;
        assert_eq!(
            body,
            json!({}),
            "same answer for known and unknown addresses"
        );
    }
    // The known, still inactive address got a second link, and it works.
    let link = app
        .emailed_link_after("ada@example.com", "/activate/", 1)
        .await;
    json_ok(app.activate(&link.uid, &link.token).await, 200).await;
}

async fn expired_or_malformed_activation_is_rejected(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.accounts.activation_ttl = Duration::from_secs(1)
    })
    .await;
    register_ok(&app, "ada", "ada@example.com").await;
    let link = app.activation_link("ada@example.com").await;

    for uid in ["", "not base64!", "Zm9v"] {
        let resp = app.activate(uid, &link.token).await;
        assert_validation_error_on_one_of(resp, &["uid", "token"]).await;
    }
    // Let the configured 1 s lifetime pass (token timestamps have 1 s resolution).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_validation_error(app.activate(&link.uid, &link.token).await, &["token"]).await;
    assert_problem(
        app.login_username("ada", STRONG_PASSWORD).await,
        403,
        "account_inactive",
    )
    .await;
}

async fn activation_with_admin_approval_keeps_account_inactive(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.accounts.require_admin_approval = true).await;
    register_ok(&app, "ada", "ada@example.com").await;
    let link = app.activation_link("ada@example.com").await;

    let body = json_ok(app.activate(&link.uid, &link.token).await, 200).await;
    assert_eq!(body["approval_required"], json!(true), "{body}");
    assert!(
        body.get("access_token").is_none(),
        "no tokens before approval: {body}"
    );
    assert_eq!(body["user"]["email_verified"], json!(true));
    assert_eq!(body["user"]["is_active"], json!(false));
    assert_problem(
        app.login_username("ada", STRONG_PASSWORD).await,
        403,
        "account_inactive",
    )
    .await;
}

async fn register_without_verification_returns_token_pair(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.accounts.require_email_verification = false).await;

    let pair = json_ok(
        app.register(&registration("ada", "ada@example.com", STRONG_PASSWORD))
            .await,
        201,
    )
    .await;

    assert_token_pair(&pair);
    assert_eq!(pair["user"]["username"], json!("ada"));
    assert_eq!(pair["user"]["is_active"], json!(true));
    json_ok(
        app.get_me(pair["access_token"].as_str().unwrap()).await,
        200,
    )
    .await;
}

async fn register_rejects_missing_fields(backend: Backend) {
    let app = spawn_app(backend).await;

    let body = assert_validation_error(
        app.register(&json!({})).await,
        &["username", "email", "password", "password_confirm"],
    )
    .await;
    assert_eq!(
        body["errors"]["username"],
        json!(["This field is required."]),
        "DRF-style message: {body}"
    );

    // One missing field at a time: only that field is reported.
    let full = registration("ada", "ada@example.com", STRONG_PASSWORD);
    for field in ["username", "email", "password"] {
        let mut body = full.clone();
        body.as_object_mut().unwrap().remove(field);
        assert_validation_error(app.register(&body).await, &[field]).await;
    }
}

async fn register_rejects_wrong_json_types(backend: Backend) {
    let app = spawn_app(backend).await;
    let full = registration("ada", "ada@example.com", STRONG_PASSWORD);

    for (field, value) in [
        ("username", json!(42)),
        ("email", json!(["ada@example.com"])),
        ("password", json!(12345678901_u64)),
        ("first_name", json!({"x": 1})),
    ] {
        let mut body = full.clone();
        body[field] = value;
        assert_validation_error(app.register(&body).await, &[field]).await;
    }
    // Nothing was created by the rejected attempts.
    json_ok(app.register(&full).await, 201).await;
}

async fn register_validates_username(backend: Backend) {
    let app = spawn_app(backend).await;
    let too_long = "a".repeat(151);
    for username in [
        "",
        "ada lovelace",
        "ada!",
        "a/b",
        "ada#1",
        too_long.as_str(),
    ] {
        let resp = app
            .register(&registration(username, "ada@example.com", STRONG_PASSWORD))
            .await;
        assert_validation_error(resp, &["username"]).await;
    }
    // Every allowed punctuation character.
    json_ok(
        app.register(&registration(
            "a.d+a-l_o@v",
            "ada@example.com",
            STRONG_PASSWORD,
        ))
        .await,
        201,
    )
    .await;
}

async fn register_rejects_invalid_emails(backend: Backend) {
    let app = spawn_app(backend).await;
    for email in [
        "",
        "not-an-email",
        "ada@",
        "@example.com",
        "ada lovelace@example.com",
    ] {
        let resp = app
            .register(&registration("ada", email, STRONG_PASSWORD))
            .await;
        assert_validation_error(resp, &["email"]).await;
    }
}

async fn register_rejects_weak_passwords(backend: Backend) {
    let app = spawn_app(backend).await;
    let too_long = "aB3$".repeat(64) + "x"; // 257 characters
    for password in [
        "Sh0rt!x",       // 7 characters
        "8264930571364", // entirely numeric
        "adalovelace1!", // too similar to the username
        "qwertyuiop",    // well-known common password
        too_long.as_str(),
    ] {
        let resp = app
            .register(&registration("adalovelace", "ada@example.com", password))
            .await;
        assert_validation_error(resp, &["password"]).await;
    }
}

async fn register_accepts_boundary_lengths(backend: Backend) {
    let app = spawn_app(backend).await;
    let username = "u".repeat(150);
    let password = "aB3$".repeat(64); // exactly 256 characters
    let body = json_ok(
        app.register(&registration(&username, "long@example.com", &password))
            .await,
        201,
    )
    .await;
    assert_eq!(body["user"]["username"], json!(username));
    json_ok(
        app.register(&registration("eight", "eight@example.com", "Zq7#mPx2"))
            .await,
        201,
    )
    .await;
}

async fn register_rejects_password_confirm_mismatch(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = registration("ada", "ada@example.com", STRONG_PASSWORD);
    body["password_confirm"] = json!("Violet-Harbor-Quill-43");
    assert_validation_error_on_one_of(
        app.register(&body).await,
        &["password_confirm", "non_field_errors"],
    )
    .await;
}

async fn register_rejects_unknown_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    for (field, value) in [
        ("is_staff", json!(true)),
        ("is_active", json!(true)),
        ("email_verified", json!(true)),
        ("groups", json!(["admins"])),
    ] {
        let mut body = registration("ada", "ada@example.com", STRONG_PASSWORD);
        body[field] = value;
        assert_validation_error(app.register(&body).await, &[field]).await;
    }
    // The rejected requests created nothing: the same identity is still free.
    let body = json_ok(
        app.register(&registration("ada", "ada@example.com", STRONG_PASSWORD))
            .await,
        201,
    )
    .await;
    assert_eq!(body["user"]["is_staff"], json!(false));
}

async fn register_ok(app: &TestApp, username: &str, email: &str) -> Value {
    json_ok(
        app.register(&registration(username, email, STRONG_PASSWORD))
            .await,
        201,
    )
    .await
}

async fn register_rejects_duplicate_username_case_insensitively(backend: Backend) {
    let app = spawn_app(backend).await;
    register_ok(&app, "Ada", "ada@example.com").await;
    for username in ["Ada", "ada", "ADA"] {
        let resp = app
            .register(&registration(
                username,
                "other@example.com",
                STRONG_PASSWORD,
            ))
            .await;
        assert_problem(resp, 409, "conflict").await;
    }
}

async fn register_rejects_duplicate_email_case_insensitively(backend: Backend) {
    let app = spawn_app(backend).await;
    // Activated: the email of an unclaimed account is free (pre-account hijacking).
    TestUser::create_with(&app, "ada", "ada@example.com", STRONG_PASSWORD).await;
    for email in ["ada@example.com", "ADA@Example.com", "Ada@EXAMPLE.COM"] {
        let resp = app
            .register(&registration("grace", email, STRONG_PASSWORD))
            .await;
        assert_problem(resp, 409, "conflict").await;
    }
}

async fn register_normalizes_email_domain_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = register_ok(&app, "ada", "Ada.Lovelace@Example.COM").await;
    assert_eq!(body["user"]["email"], json!("Ada.Lovelace@example.com"));
    // The email is addressed to the stored form.
    app.activation_link("Ada.Lovelace@example.com").await;
}

async fn concurrent_duplicate_registrations_create_one_user(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.accounts.require_email_verification = false).await;
    // Same username in different cases, and the same email in different cases: the
    // uniqueness checks must hold under a race, not only sequentially (no 500s).
    let bodies: Vec<Value> = (0..10)
        .map(|i| {
            let username = if i % 2 == 0 { "Racer" } else { "racer" };
            registration(username, &format!("racer{i}@example.com"), STRONG_PASSWORD)
        })
        .chain((0..10).map(|i| {
            let email = if i % 2 == 0 {
                "Twin@example.com"
            } else {
                "twin@EXAMPLE.com"
            };
            registration(&format!("twin{i}"), email, STRONG_PASSWORD)
        }))
        .collect();
    let responses = join_all(bodies.iter().map(|b| app.register(b))).await;

    let mut created = 0;
    for resp in responses {
        if resp.status().as_u16() == 201 {
            created += 1;
        } else {
            assert_problem(resp, 409, "conflict").await;
        }
    }
    assert_eq!(created, 2, "one racer and one twin");
}
