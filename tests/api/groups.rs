//! Staff-only group administration: `GET|POST /groups`, `DELETE /groups/{name}`, and
//! what deleting a group does to its members.

use latchkey::config::Settings;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, TestUser, assert_problem, assert_status, assert_validation_error, header,
    json_ok, jwt_claims, path_segment, spawn_app_with, str_field,
};

dual_backend_tests!(
    group_routes_require_staff,
    group_lifecycle,
    groups_are_listed_by_name_with_member_counts,
    group_names_are_validated,
    unusual_valid_group_names_round_trip_through_the_path,
    deleting_a_group_removes_it_from_its_members,
);

fn no_verification(s: &mut Settings) {
    s.accounts.require_email_verification = false;
}

async fn quick_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, no_verification).await
}

async fn groups_of(app: &TestApp, token: &str) -> Value {
    json_ok(app.list_groups(token).await, 200).await
}

fn group_names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|g| str_field(g, "name"))
        .collect()
}

async fn set_groups(app: &TestApp, token: &str, user: &TestUser, groups: &[&str]) -> Value {
    json_ok(
        app.patch_user(token, &user.id, &json!({ "groups": groups }))
            .await,
        200,
    )
    .await
}

async fn group_routes_require_staff(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    json_ok(app.create_group(&staff.access_token, "editors").await, 201).await;

    let routes: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/groups", None),
        (Method::POST, "/groups", Some(json!({ "name": "sneaky" }))),
        (Method::POST, "/groups", Some(json!({ "name": "editors" }))),
        (Method::POST, "/groups", Some(json!({}))),
        (Method::DELETE, "/groups/editors", None),
        (Method::DELETE, "/groups/ghosts", None),
    ];
    for (method, path, body) in &routes {
        let what = format!("{method} {path}");
        let resp = app
            .request_as(method.clone(), path, None, body.as_ref())
            .await;
        let challenge = header(&resp, "www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer"),
            "{what}: WWW-Authenticate `{challenge}`"
        );
        assert_problem(resp, 401, "not_authenticated").await;

        let resp = app
            .request_as(
                method.clone(),
                path,
                Some(&user.access_token),
                body.as_ref(),
            )
            .await;
        assert_problem(resp, 403, "permission_denied").await;

        let resp = app
            .request_as(
                method.clone(),
                path,
                Some(&staff.refresh_token),
                body.as_ref(),
            )
            .await;
        assert_problem(resp, 401, "token_invalid").await;
    }

    // Nothing was created or deleted by the refused requests.
    assert_eq!(
        groups_of(&app, &staff.access_token).await,
        json!([{ "name": "editors", "member_count": 0 }])
    );

    // Staff may use every route.
    let created = json_ok(app.create_group(&staff.access_token, "sneaky").await, 201).await;
    assert_eq!(created, json!({ "name": "sneaky", "member_count": 0 }));
    assert_status(app.delete_group(&staff.access_token, "editors").await, 204).await;
    assert_eq!(
        groups_of(&app, &staff.access_token).await,
        json!([{ "name": "sneaky", "member_count": 0 }])
    );
}

async fn group_lifecycle(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;

    assert_eq!(groups_of(&app, token).await, json!([]));

    let created = json_ok(app.create_group(token, "editors").await, 201).await;
    assert_eq!(created, json!({ "name": "editors", "member_count": 0 }));
    assert_problem(app.create_group(token, "editors").await, 409, "conflict").await;
    assert_eq!(
        groups_of(&app, token).await,
        json!([{ "name": "editors", "member_count": 0 }]),
        "a refused duplicate adds nothing"
    );

    assert_status(app.delete_group(token, "editors").await, 204).await;
    assert_eq!(groups_of(&app, token).await, json!([]));
    assert_problem(app.delete_group(token, "editors").await, 404, "not_found").await;
    assert_problem(app.delete_group(token, "ghosts").await, 404, "not_found").await;

    // The name is free again.
    let again = json_ok(app.create_group(token, "editors").await, 201).await;
    assert_eq!(again, json!({ "name": "editors", "member_count": 0 }));
}

async fn groups_are_listed_by_name_with_member_counts(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;
    let u1 = TestUser::create(&app).await;
    let u2 = TestUser::create(&app).await;
    let u3 = TestUser::create(&app).await;
    for name in ["gamma", "alpha", "beta", "delta"] {
        json_ok(app.create_group(token, name).await, 201).await;
    }
    set_groups(&app, token, &u1, &["beta", "gamma"]).await;
    set_groups(&app, token, &u2, &["beta"]).await;
    set_groups(&app, token, &u3, &["beta", "alpha", "gamma"]).await;
    set_groups(&app, token, &staff, &["gamma"]).await;

    assert_eq!(
        groups_of(&app, token).await,
        json!([
            { "name": "alpha", "member_count": 1 },
            { "name": "beta", "member_count": 3 },
            { "name": "delta", "member_count": 0 },
            { "name": "gamma", "member_count": 3 },
        ])
    );

    // Membership changes and deleted users are reflected.
    set_groups(&app, token, &u3, &[]).await;
    assert_status(app.delete_user(token, &u1.id).await, 204).await;
    assert_eq!(
        groups_of(&app, token).await,
        json!([
            { "name": "alpha", "member_count": 0 },
            { "name": "beta", "member_count": 1 },
            { "name": "delta", "member_count": 0 },
            { "name": "gamma", "member_count": 1 },
        ])
    );
}

async fn group_names_are_validated(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;

    let too_long = "g".repeat(151);
    for bad in [
        "",
        "has space",
        " leading",
        "trailing ",
        "slash/name",
        "back\\slash",
        "tab\tname",
        "new\nline",
        "semi;colon",
        "comma,name",
        "percent%",
        "hash#tag",
        "question?",
        "quote'name",
        "emoji😀",
        "nul\0byte",
        too_long.as_str(),
    ] {
        let body = assert_validation_error(app.create_group(token, bad).await, &["name"]).await;
        assert_eq!(body["status"], json!(400), "{bad:?}");
    }
    for body in [
        json!({}),
        json!({ "name": null }),
        json!({ "name": 42 }),
        json!({ "name": ["editors"] }),
        json!({ "title": "editors" }),
    ] {
        assert_validation_error(app.create_group_with(token, &body).await, &["name"]).await;
    }
    assert_eq!(groups_of(&app, token).await, json!([]), "nothing created");

    // 150 characters (not bytes) is the limit.
    for ok in ["g".repeat(150), "é".repeat(150)] {
        let created = json_ok(app.create_group(token, &ok).await, 201).await;
        assert_eq!(created["name"], json!(ok));
    }
}

async fn unusual_valid_group_names_round_trip_through_the_path(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    let token = &staff.access_token;
    let names = [
        "role:admin",
        "team-a.b_c@x+y",
        "Ärzte",
        "编辑",
        "v1.2",
        "a",
        "ops+oncall",
    ];
    for name in names {
        let created = json_ok(app.create_group(token, name).await, 201).await;
        assert_eq!(created, json!({ "name": name, "member_count": 0 }));
    }
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    let mut listed = group_names(&groups_of(&app, token).await);
    listed.sort();
    assert_eq!(listed, expected);

    // Names work as filters and as memberships, and land in the token verbatim.
    let patched = set_groups(&app, token, &user, &names).await;
    let mut member_of: Vec<String> = patched["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g.as_str().expect("name").to_owned())
        .collect();
    member_of.sort();
    assert_eq!(member_of, expected);
    let claims = jwt_claims(&str_field(&user.login_again(&app).await, "access_token"));
    let mut in_token: Vec<String> = claims["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("groups claim: {claims}"))
        .iter()
        .map(|g| g.as_str().expect("name").to_owned())
        .collect();
    in_token.sort();
    assert_eq!(in_token, expected);
    for name in names {
        let query = crate::helpers::form_query(&[("group", name)]);
        let page = app.list_users_json(token, &query).await;
        assert_eq!(page["count"], json!(1), "group={name}: {page}");
    }

    // Each one can be deleted by its percent-encoded path segment.
    for name in names {
        assert!(
            !path_segment(name).contains('/'),
            "segment of {name:?}: {}",
            path_segment(name)
        );
        assert_status(app.delete_group(token, name).await, 204).await;
    }
    assert_eq!(groups_of(&app, token).await, json!([]));
    let user_now = app.get_user_json(token, &user.id).await;
    assert_eq!(user_now["groups"], json!([]), "{user_now}");
}

async fn deleting_a_group_removes_it_from_its_members(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;
    let user = TestUser::create(&app).await;
    let other = TestUser::create(&app).await;
    for name in ["editors", "writers"] {
        json_ok(app.create_group(token, name).await, 201).await;
    }
    set_groups(&app, token, &user, &["editors", "writers"]).await;
    set_groups(&app, token, &other, &["editors"]).await;
    let pair = json_ok(app.refresh(&user.refresh_token).await, 200).await;
    assert_eq!(
        jwt_claims(&str_field(&pair, "access_token"))["groups"],
        json!(["editors", "writers"])
    );

    assert_status(app.delete_group(token, "editors").await, 204).await;

    assert_eq!(
        app.get_user_json(token, &user.id).await["groups"],
        json!(["writers"])
    );
    assert_eq!(
        app.get_user_json(token, &other.id).await["groups"],
        json!([])
    );
    assert_eq!(
        groups_of(&app, token).await,
        json!([{ "name": "writers", "member_count": 1 }])
    );
    // The next token no longer names it.
    let pair = json_ok(app.refresh(&str_field(&pair, "refresh_token")).await, 200).await;
    assert_eq!(
        jwt_claims(&str_field(&pair, "access_token"))["groups"],
        json!(["writers"])
    );
    // It is an unknown group now, for filters and for memberships.
    assert_validation_error(app.list_users(token, "group=editors").await, &["group"]).await;
    assert_validation_error(
        app.patch_user(token, &other.id, &json!({ "groups": ["editors"] }))
            .await,
        &["groups"],
    )
    .await;
    // Re-creating the name does not bring members back.
    json_ok(app.create_group(token, "editors").await, 201).await;
    assert_eq!(
        groups_of(&app, token).await,
        json!([
            { "name": "editors", "member_count": 0 },
            { "name": "writers", "member_count": 1 },
        ])
    );
}
