//! The session list (API.md v2, "Sessions"): `sid` and `amr` in access tokens, the live
//! sessions of a user with where they were last used, ending one or every other session,
//! and staff reading a user's sessions.

use futures::future::join;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, TestUser, assert_problem, json_ok, jwt_claims, spawn_app, str_field,
};

dual_backend_tests!(
    access_tokens_name_their_session_and_how_it_was_authenticated,
    the_list_shows_live_sessions_most_recently_used_first,
    one_session_ends_and_nobody_elses,
    signing_out_other_devices_keeps_the_current_session,
    signing_out_others_wins_over_a_refresh_in_flight,
    staff_read_a_users_sessions,
);

/// A login as `user` from a client calling itself `agent`: its pair.
async fn login_as(app: &TestApp, user: &TestUser, agent: &str) -> Value {
    let resp = app
        .client
        .post(app.url("/auth/login"))
        .header("user-agent", agent)
        .json(&json!({"username": user.username, "password": user.password}))
        .send()
        .await
        .expect("request failed");
    json_ok(resp, 200).await
}

async fn refresh_as(app: &TestApp, refresh: &str, agent: &str) -> Response {
    app.client
        .post(app.url("/auth/token/refresh"))
        .header("user-agent", agent)
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .expect("request failed")
}

async fn sessions(app: &TestApp, access: &str) -> Vec<Value> {
    let resp = app
        .bearer(Method::GET, "/users/me/sessions", access)
        .send()
        .await
        .expect("request failed");
    json_ok(resp, 200).await.as_array().expect("a list").clone()
}

async fn delete(app: &TestApp, path: &str, access: &str) -> Response {
    app.bearer(Method::DELETE, path, access)
        .send()
        .await
        .expect("request failed")
}

fn sid(pair: &Value) -> String {
    jwt_claims(&str_field(pair, "access_token"))["sid"]
        .as_str()
        .expect("sid")
        .to_owned()
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter().map(|s| str_field(s, "id")).collect()
}

async fn access_tokens_name_their_session_and_how_it_was_authenticated(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let claims = jwt_claims(&user.access_token);
    let fam = jwt_claims(&user.refresh_token)["fam"].clone();
    assert_eq!(claims["sid"], fam, "sid is the refresh family");
    assert_eq!(claims["amr"], json!(["pwd"]));

    // A refreshed token keeps its session's.
    let pair = json_ok(app.refresh(&user.refresh_token).await, 200).await;
    let refreshed = jwt_claims(&str_field(&pair, "access_token"));
    assert_eq!(
        (&refreshed["sid"], &refreshed["amr"]),
        (&fam, &json!(["pwd"]))
    );

    // Neither can be a custom claim.
    let staff = TestUser::create_staff(&app).await;
    for name in ["sid", "amr"] {
        let resp = app
            .patch_user(
                &staff.access_token,
                &user.id,
                &json!({"claims": {name: "x"}}),
            )
            .await;
        assert_problem(resp, 400, "validation_failed").await;
    }
}

async fn the_list_shows_live_sessions_most_recently_used_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let laptop = login_as(&app, &user, "Laptop/1.0").await;
    let phone = login_as(&app, &user, "Phone/2.0").await;
    let gone = login_as(&app, &user, "Gone/1.0").await;
    assert_eq!(
        app.logout(&str_field(&gone, "refresh_token"))
            .await
            .status(),
        204
    );
    // The laptop refreshes last, from a newer version.
    let resp = refresh_as(&app, &str_field(&laptop, "refresh_token"), "Laptop/1.1").await;
    json_ok(resp, 200).await;

    let list = sessions(&app, &str_field(&phone, "access_token")).await;
    // The laptop, then the phone, then the sessions `TestUser::create` started (by the
    // activation and by its login); not the one that logged out.
    let listed = ids(&list);
    assert_eq!(listed[..2], [sid(&laptop), sid(&phone)]);
    assert_eq!(listed.len(), 4, "{listed:?}");
    let created = jwt_claims(&user.access_token)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(listed.contains(&created) && !listed.contains(&sid(&gone)));
    let (first, second) = (&list[0], &list[1]);
    assert_eq!(first["user_agent"], "Laptop/1.1", "as of its last use");
    assert_eq!(second["user_agent"], "Phone/2.0");
    assert_eq!(first["ip"], "127.0.0.1");
    assert_eq!(first["amr"], json!(["pwd"]));
    assert_eq!(
        list.iter()
            .map(|s| s["current"].clone())
            .collect::<Vec<_>>(),
        [json!(false), json!(true), json!(false), json!(false)]
    );
    assert!(first["last_used_at"].as_str() >= first["created_at"].as_str());
    assert!(
        second["last_used_at"] == second["created_at"],
        "not used since it started"
    );

    // A user agent is kept to 256 characters (not bytes).
    let long = "é".repeat(300);
    let pair = login_as(&app, &user, &long).await;
    let list = sessions(&app, &str_field(&pair, "access_token")).await;
    let mine = list.iter().find(|s| s["current"] == true).expect("current");
    assert_eq!(mine["user_agent"].as_str().unwrap().chars().count(), 256);
}

async fn one_session_ends_and_nobody_elses(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let other = TestUser::create(&app).await;
    let doomed = user.login_again(&app).await;
    let path = format!("/users/me/sessions/{}", sid(&doomed));

    // Another user cannot end it, nor learn that it exists.
    assert_problem(
        delete(&app, &path, &other.access_token).await,
        404,
        "not_found",
    )
    .await;
    json_ok(app.refresh(&str_field(&doomed, "refresh_token")).await, 200).await;

    let before = ids(&sessions(&app, &user.access_token).await);
    assert_eq!(delete(&app, &path, &user.access_token).await.status(), 204);
    let after = ids(&sessions(&app, &user.access_token).await);
    assert!(!after.contains(&sid(&doomed)), "{after:?}");
    assert_eq!(after.len(), before.len() - 1, "only that one");
    // Ended already, unknown, malformed: 404.
    for path in [
        path.clone(),
        "/users/me/sessions/0193f5e2a7c47d8e9b1a2c3d4e5f6a7b".into(),
        "/users/me/sessions/..%2F..".into(),
    ] {
        assert_problem(
            delete(&app, &path, &user.access_token).await,
            404,
            "not_found",
        )
        .await;
    }
    assert_problem(
        delete(&app, "/users/me/sessions/x", "not-a-token").await,
        401,
        "token_invalid",
    )
    .await;
}

async fn signing_out_other_devices_keeps_the_current_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let keep = user.login_again(&app).await;
    let other = user.login_again(&app).await;
    let neighbour = TestUser::create(&app).await;

    let resp = delete(
        &app,
        "/users/me/sessions",
        &str_field(&keep, "access_token"),
    )
    .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        ids(&sessions(&app, &str_field(&keep, "access_token")).await),
        [sid(&keep)]
    );
    for ended in [&user.refresh_token, &str_field(&other, "refresh_token")] {
        assert_problem(app.refresh(ended).await, 401, "token_revoked").await;
    }
    json_ok(app.refresh(&str_field(&keep, "refresh_token")).await, 200).await;
    json_ok(app.refresh(&neighbour.refresh_token).await, 200).await;
}

async fn signing_out_others_wins_over_a_refresh_in_flight(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let current = str_field(&user.login_again(&app).await, "access_token");
    for round in 0..10 {
        let other = user.login_again(&app).await;
        let (refreshed, ended) = join(
            app.refresh(&str_field(&other, "refresh_token")),
            delete(&app, "/users/me/sessions", &current),
        )
        .await;
        assert_eq!(ended.status(), 204);
        // Whichever came first, no token of that session works after the call.
        if refreshed.status() == 200 {
            let pair = json_ok(refreshed, 200).await;
            let resp = app.refresh(&str_field(&pair, "refresh_token")).await;
            assert_problem(resp, 401, "token_revoked").await;
        } else {
            assert_problem(refreshed, 401, "token_revoked").await;
        }
        let listed = sessions(&app, &current).await;
        assert_eq!(listed.len(), 1, "round {round}: {listed:?}");
    }
}

async fn staff_read_a_users_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let staff = TestUser::create_staff(&app).await;
    let path = format!("/users/{}/sessions", user.id);
    let resp = app
        .bearer(Method::GET, &path, &staff.access_token)
        .send()
        .await;
    let list = json_ok(resp.expect("request failed"), 200).await;
    let list = list.as_array().expect("a list");
    let sid = jwt_claims(&user.access_token)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ids(list).contains(&sid), "{list:?}");
    assert!(list.iter().all(|s| s["current"] == false));

    let resp = app
        .bearer(Method::GET, &path, &user.access_token)
        .send()
        .await;
    assert_problem(resp.expect("request failed"), 403, "permission_denied").await;
    for unknown in [
        "/users/0190abcd-0000-7000-8000-000000000000/sessions",
        "/users/x/sessions",
    ] {
        let resp = app
            .bearer(Method::GET, unknown, &staff.access_token)
            .send()
            .await;
        assert_problem(resp.expect("request failed"), 404, "not_found").await;
    }
}
