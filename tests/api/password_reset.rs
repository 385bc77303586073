//! `POST /auth/password/reset` and `POST /auth/password/reset/confirm`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, EmailLink, NEW_PASSWORD, PUBLIC_URL, TestUser, assert_password_replaced,
    assert_status, assert_validation_error, assert_validation_error_on_one_of, json_ok, spawn_app,
};

dual_backend_tests!(
    password_reset_replaces_password_and_revokes_sessions,
    password_reset_request_does_not_enumerate,
    password_reset_confirm_validates_input,
);

fn confirmation(link: &EmailLink, new: &str, confirm: &str) -> Value {
    json!({
        "uid": link.uid,
        "token": link.token,
        "new_password": new,
        "new_password_confirm": confirm,
    })
}

async fn password_reset_replaces_password_and_revokes_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let other_session = user.login_again(&app).await;

    let body = json_ok(app.request_password_reset(&user.email).await, 202).await;
    assert_eq!(body, json!({}));
    let link = app.reset_link(&user.email).await;
    assert!(
        link.url
            .starts_with(&format!("{PUBLIC_URL}/password/reset/")),
        "{}",
        link.url
    );
    let uid = URL_SAFE_NO_PAD.decode(&link.uid).expect("uid is base64url");
    assert_eq!(String::from_utf8(uid).unwrap(), user.id);

    let confirm = confirmation(&link, NEW_PASSWORD, NEW_PASSWORD);
    assert_status(app.confirm_password_reset(&confirm).await, 204).await;

    assert_password_replaced(&app, &user, NEW_PASSWORD, &other_session).await;
    // The token is bound to the old password hash: it works once.
    let again = confirmation(&link, "Quartz-Meadow-Fig-31", "Quartz-Meadow-Fig-31");
    assert_validation_error(app.confirm_password_reset(&again).await, &["token"]).await;
}

async fn password_reset_request_does_not_enumerate(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    for email in [user.email.as_str(), "nobody@example.com"] {
        let body = json_ok(app.request_password_reset(email).await, 202).await;
        assert_eq!(
            body,
            json!({}),
            "same answer for known and unknown addresses"
        );
    }
    app.reset_link(&user.email).await;
}

async fn password_reset_confirm_validates_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    json_ok(app.request_password_reset(&user.email).await, 202).await;
    let link = app.reset_link(&user.email).await;

    let forged = EmailLink {
        token: "1-0123456789abcdef".into(),
        ..link.clone()
    };
    let body = confirmation(&forged, NEW_PASSWORD, NEW_PASSWORD);
    assert_validation_error(app.confirm_password_reset(&body).await, &["token"]).await;

    let body = confirmation(&link, NEW_PASSWORD, "Amber-Lantern-Moss-78");
    assert_validation_error_on_one_of(
        app.confirm_password_reset(&body).await,
        &["new_password_confirm", "non_field_errors"],
    )
    .await;
    for weak in ["short1!", "12345678901", "qwertyuiop"] {
        let body = confirmation(&link, weak, weak);
        assert_validation_error(app.confirm_password_reset(&body).await, &["new_password"]).await;
    }

    // Rejected attempts did not burn the token. (No login in between: the token covers
    // `last_login`, so a login would rightly invalidate it.)
    let body = confirmation(&link, NEW_PASSWORD, NEW_PASSWORD);
    assert_status(app.confirm_password_reset(&body).await, 204).await;
    json_ok(app.login_username(&user.username, NEW_PASSWORD).await, 200).await;
}
