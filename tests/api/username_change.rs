//! `POST /users/me/username` (API.md, "Email and username change"): registration's rules,
//! uniqueness after NFKC and case folding, and the new name in the next access token.

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, STRONG_PASSWORD, TestApp, TestUser, assert_problem, assert_user_object,
    assert_validation_error, header, json_ok, jwt_claims, spawn_app, str_field, unique_username,
};

dual_backend_tests!(
    username_change_renames_the_account,
    the_next_access_token_carries_the_new_username,
    a_name_taken_after_nfkc_and_case_folding_is_a_conflict,
    a_name_is_normalised_as_at_registration,
    invalid_usernames_are_refused,
    wrong_current_password_keeps_the_username,
    username_change_requires_an_access_token,
    two_users_racing_for_one_name_have_one_winner,
);

async fn change_username(app: &TestApp, access: &str, new: &str, password: &str) -> Response {
    change_username_with(
        app,
        access,
        &json!({ "new_username": new, "current_password": password }),
    )
    .await
}

async fn change_username_with(app: &TestApp, access: &str, body: &Value) -> Response {
    app.bearer(Method::POST, "/users/me/username", access)
        .json(body)
        .send()
        .await
        .expect("request failed")
}

/// The 200 body of a rename of `user` to `new`.
async fn renamed(app: &TestApp, user: &TestUser, new: &str) -> Value {
    let body = json_ok(
        change_username(app, &user.access_token, new, &user.password).await,
        200,
    )
    .await;
    assert_user_object(&body);
    body
}

async fn username_change_renames_the_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let new = unique_username();
    let body = renamed(&app, &user, &new).await;
    assert_eq!(body["username"], json!(new));
    assert_eq!(body["id"], json!(user.id));
    assert_eq!(body["email"], json!(user.email));
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(me["username"], json!(new));
    // The new name logs in, in any case; the old one no longer does.
    json_ok(
        app.login_username(&new.to_uppercase(), &user.password)
            .await,
        200,
    )
    .await;
    assert_problem(
        app.login_username(&user.username, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    // The old name is free for someone else now.
    TestUser::create_with(&app, &user.username, "other@example.com", STRONG_PASSWORD).await;
    // Renaming to one's own name, or to it in another case, is no conflict.
    assert_eq!(renamed(&app, &user, &new).await["username"], json!(new));
    let shouted = new.to_uppercase();
    assert_eq!(
        renamed(&app, &user, &shouted).await["username"],
        json!(shouted)
    );
}

async fn the_next_access_token_carries_the_new_username(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let new = unique_username();
    renamed(&app, &user, &new).await;
    // Tokens already issued keep the old name; the next one has the new.
    assert_eq!(
        jwt_claims(&user.access_token)["username"],
        json!(user.username)
    );
    let pair = json_ok(app.refresh(&user.refresh_token).await, 200).await;
    assert_eq!(
        jwt_claims(&str_field(&pair, "access_token"))["username"],
        json!(new)
    );
    assert_eq!(pair["user"]["username"], json!(new));
    let login = json_ok(app.login_username(&new, &user.password).await, 200).await;
    assert_eq!(
        jwt_claims(&str_field(&login, "access_token"))["username"],
        json!(new)
    );
    // The session was not revoked by the rename.
    json_ok(app.get_me(&user.access_token).await, 200).await;
}

async fn a_name_taken_after_nfkc_and_case_folding_is_a_conflict(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = format!("admin{}", &unique_username()[5..]);
    TestUser::create_with(&app, &admin, "admin@example.com", STRONG_PASSWORD).await;
    let user = TestUser::create(&app).await;
    let fullwidth: String = admin
        .chars()
        .map(|c| match c {
            'a'..='z' => char::from_u32(c as u32 - 'a' as u32 + 0xFF41).expect("fullwidth"),
            '0'..='9' => char::from_u32(c as u32 - '0' as u32 + 0xFF10).expect("fullwidth"),
            other => other,
        })
        .collect();
    assert_ne!(fullwidth, admin);
    for taken in [admin.clone(), admin.to_uppercase(), fullwidth] {
        let resp = change_username(&app, &user.access_token, &taken, &user.password).await;
        assert_problem(resp, 409, "conflict").await;
    }
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(me["username"], json!(user.username));
    // The password is checked first: a stolen access token alone learns nothing.
    let resp = change_username(&app, &user.access_token, &admin, "Wrong-Guess-9").await;
    assert_validation_error(resp, &["current_password"]).await;
}

async fn a_name_is_normalised_as_at_registration(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let suffix = &unique_username()[5..];
    // NFKC: fullwidth letters and the "ﬁ" ligature are stored as their plain forms.
    let body = renamed(&app, &user, &format!("ｂｏｂ\u{FB01}{suffix}")).await;
    let stored = format!("bobfi{suffix}");
    assert_eq!(body["username"], json!(stored));
    // And that plain form is now taken for everyone else, as typed either way.
    let other = TestUser::create(&app).await;
    for taken in [stored.clone(), format!("ｂｏｂ\u{FB01}{suffix}")] {
        let resp = change_username(&app, &other.access_token, &taken, &other.password).await;
        assert_problem(resp, 409, "conflict").await;
    }
}

async fn invalid_usernames_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    for bad in [
        String::new(),
        "has space".to_owned(),
        "semi;colon".to_owned(),
        "slash/".to_owned(),
        "ad\u{0}min".to_owned(),
        "a".repeat(151),
        "a".repeat(63 * 1024),
    ] {
        let resp = change_username(&app, &user.access_token, &bad, &user.password).await;
        assert_validation_error(resp, &["new_username"]).await;
    }
    for body in [
        json!({}),
        json!({"new_username": 5, "current_password": ["x"]}),
        json!({"new_username": null, "current_password": null}),
    ] {
        let resp = change_username_with(&app, &user.access_token, &body).await;
        assert_validation_error(resp, &["new_username", "current_password"]).await;
    }
    let resp = change_username_with(
        &app,
        &user.access_token,
        &json!({"new_username": unique_username(), "current_password": user.password, "username": "x"}),
    )
    .await;
    assert_validation_error(resp, &["username"]).await;
    let resp = change_username(
        &app,
        &user.access_token,
        &unique_username(),
        &"p".repeat(63 * 1024),
    )
    .await;
    let body = assert_validation_error(resp, &["current_password"]).await;
    assert!(body.to_string().contains("no more than 256"), "{body}");
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(me["username"], json!(user.username));
}

async fn wrong_current_password_keeps_the_username(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let resp = change_username(
        &app,
        &user.access_token,
        &unique_username(),
        "Wrong-Guess-9",
    )
    .await;
    let body = assert_validation_error(resp, &["current_password"]).await;
    assert!(body["errors"].get("new_username").is_none(), "{body}");
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(me["username"], json!(user.username));
}

async fn username_change_requires_an_access_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let body = json!({"new_username": unique_username(), "current_password": user.password});
    let resp = app.post_json("/users/me/username", &body).await;
    let challenge = header(&resp, "www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_problem(resp, 401, "not_authenticated").await;
    let resp = change_username_with(&app, &user.refresh_token, &body).await;
    assert_problem(resp, 401, "token_invalid").await;
}

async fn two_users_racing_for_one_name_have_one_winner(backend: Backend) {
    let app = spawn_app(backend).await;
    let (a, b) = (TestUser::create(&app).await, TestUser::create(&app).await);
    for round in 0..5 {
        let name = unique_username();
        let shouted = name.to_uppercase();
        let (ra, rb) = tokio::join!(
            change_username(&app, &a.access_token, &name, &a.password),
            change_username(&app, &b.access_token, &shouted, &b.password),
        );
        let statuses = (ra.status().as_u16(), rb.status().as_u16());
        match statuses {
            (200, 409) => assert_problem(rb, 409, "conflict").await,
            (409, 200) => assert_problem(ra, 409, "conflict").await,
            other => panic!("round {round}: one must win and the other get 409: {other:?}"),
        };
    }
}
