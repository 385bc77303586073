//! `/users/me` (GET, PATCH, DELETE) and `POST /users/me/password`.

use serde_json::{Value, json};

use crate::helpers::{
    Backend, NEW_PASSWORD, TestUser, assert_password_replaced, assert_problem,
    assert_problem_one_of, assert_status, assert_token_pair, assert_user_object,
    assert_validation_error, assert_validation_error_on_one_of, json_ok, spawn_app, str_field,
};

dual_backend_tests!(
    get_me_returns_user_object,
    patch_me_updates_profile,
    patch_me_rejects_protected_fields,
    patch_me_validates_lengths_and_types,
    delete_me_requires_current_password,
    delete_me_removes_user_and_tokens,
    change_password_validates_input,
    change_password_rotates_credentials,
);

async fn get_me_returns_user_object(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_user_object(&me);
    assert_eq!(me["id"], json!(user.id));
    assert_eq!(me["username"], json!(user.username));
    assert_eq!(me["email"], json!(user.email));
    assert_eq!(me["email_verified"], json!(true));
    assert_eq!(me["is_active"], json!(true));
    assert_eq!(me["is_staff"], json!(false));
    assert_eq!(me["groups"], json!([]));
    assert_eq!(me["claims"], json!({}));
    assert_eq!(me["bio"], json!(""));
    assert!(me["last_login"].is_string(), "logged in: {me}");
}

async fn patch_me_updates_profile(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    let changes = json!({ "first_name": "Ada", "last_name": "Lovelace", "bio": "Analyst. ✓" });
    let patched = json_ok(app.patch_me(&user.access_token, &changes).await, 200).await;
    assert_user_object(&patched);
    for key in ["first_name", "last_name", "bio"] {
        assert_eq!(patched[key], changes[key], "{patched}");
    }
    // Partial update: untouched fields keep their values.
    let patched = json_ok(
        app.patch_me(&user.access_token, &json!({ "bio": "" }))
            .await,
        200,
    )
    .await;
    assert_eq!(patched["first_name"], json!("Ada"));
    assert_eq!(patched["bio"], json!(""));

    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(me["last_name"], json!("Lovelace"));
    assert_eq!(me["bio"], json!(""));
}

async fn patch_me_rejects_protected_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let before = json_ok(app.get_me(&user.access_token).await, 200).await;

    for (field, value) in [
        ("is_staff", json!(true)),
        ("is_active", json!(false)),
        ("email", json!("mallory@example.com")),
        ("claims", json!({ "tenant": "acme" })),
        ("groups", json!(["admins"])),
        ("username", json!("root")),
        ("id", json!("00000000-0000-0000-0000-000000000000")),
    ] {
        // Mixed with an allowed field: the whole request must be refused.
        let body = json!({ "first_name": "Mallory", field: value });
        assert_validation_error(app.patch_me(&user.access_token, &body).await, &[field]).await;
    }

    let after = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(after, before, "a rejected PATCH must change nothing");
}

async fn patch_me_validates_lengths_and_types(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let before = json_ok(app.get_me(&user.access_token).await, 200).await;

    let body = json!({ "first_name": "x".repeat(151) });
    assert_validation_error(
        app.patch_me(&user.access_token, &body).await,
        &["first_name"],
    )
    .await;
    let body = json!({ "last_name": 42 });
    assert_validation_error(
        app.patch_me(&user.access_token, &body).await,
        &["last_name"],
    )
    .await;

    // Control characters: none in a name, only tab and line breaks in the bio (the
    // document states both as patterns).
    for (field, value) in [
        ("first_name", "Ada\u{1b}[31m"),
        ("last_name", "Love\nlace"),
        ("bio", "bell\u{7}"),
        ("bio", "next line\u{85}"),
    ] {
        let problem = assert_validation_error(
            app.patch_me(&user.access_token, &json!({ field: value }))
                .await,
            &[field],
        )
        .await;
        assert_eq!(
            problem["errors"][field],
            json!(["Control characters are not allowed."])
        );
    }
    let body = json!({ "bio": "line\r\nbreak\tand tab" });
    json_ok(app.patch_me(&user.access_token, &body).await, 200).await;

    let body = json!({ "first_name": "x".repeat(150) });
    json_ok(app.patch_me(&user.access_token, &body).await, 200).await;
    let after = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(after["last_name"], before["last_name"]);
    assert_eq!(after["bio"], json!("line\r\nbreak\tand tab"));
}

fn current_password(password: &str) -> Value {
    json!({ "current_password": password })
}

async fn delete_me_requires_current_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    let wrong = app
        .delete_me(&user.access_token, &current_password("Wrong-Password-123"))
        .await;
    assert_validation_error(wrong, &["current_password"]).await;
    let missing = app.delete_me(&user.access_token, &json!({})).await;
    assert_validation_error(missing, &["current_password"]).await;

    json_ok(app.get_me(&user.access_token).await, 200).await;
    json_ok(app.refresh(&user.refresh_token).await, 200).await;
}

async fn delete_me_removes_user_and_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    assert_status(
        app.delete_me(&user.access_token, &current_password(&user.password))
            .await,
        204,
    )
    .await;

    // The user no longer exists, so its still-unexpired access token is invalid.
    assert_problem(app.get_me(&user.access_token).await, 401, "token_invalid").await;
    assert_problem_one_of(
        app.refresh(&user.refresh_token).await,
        401,
        &["token_invalid", "token_revoked"],
    )
    .await;
    assert_problem(
        app.login_username(&user.username, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    // The username is free again.
    TestUser::create_with(&app, &user.username, &user.email, &user.password).await;
}

fn password_change(current: &str, new: &str, confirm: &str) -> Value {
    json!({ "current_password": current, "new_password": new, "new_password_confirm": confirm })
}

async fn change_password_validates_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let token = &user.access_token;

    let wrong_current = password_change("Wrong-Password-123", NEW_PASSWORD, NEW_PASSWORD);
    assert_validation_error(
        app.change_password(token, &wrong_current).await,
        &["current_password"],
    )
    .await;

    let mismatch = password_change(&user.password, NEW_PASSWORD, "Amber-Lantern-Moss-78");
    assert_validation_error_on_one_of(
        app.change_password(token, &mismatch).await,
        &["new_password_confirm", "non_field_errors"],
    )
    .await;

    for weak in ["short1!", "12345678901", "qwertyuiop"] {
        let body = password_change(&user.password, weak, weak);
        assert_validation_error(app.change_password(token, &body).await, &["new_password"]).await;
    }

    // Nothing changed: the original password and session still work.
    json_ok(
        app.login_username(&user.username, &user.password).await,
        200,
    )
    .await;
    json_ok(app.refresh(&user.refresh_token).await, 200).await;
}

async fn change_password_rotates_credentials(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let other_session = user.login_again(&app).await;

    let body = password_change(&user.password, NEW_PASSWORD, NEW_PASSWORD);
    let pair = json_ok(app.change_password(&user.access_token, &body).await, 200).await;
    assert_token_pair(&pair);

    // Every refresh token issued before the change is revoked...
    assert_password_replaced(&app, &user, NEW_PASSWORD, &other_session).await;
    // ...but the pair returned by the change works.
    json_ok(app.refresh(&str_field(&pair, "refresh_token")).await, 200).await;
    json_ok(app.get_me(&str_field(&pair, "access_token")).await, 200).await;
}
