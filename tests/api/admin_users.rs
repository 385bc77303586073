//! Staff-only user administration (`GET /users`, `GET|PATCH|DELETE /users/{id}`), what
//! its changes do to tokens and email, the staff safeguards, and `createsuperuser`.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey::config::Settings;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PUBLIC_URL, STRONG_PASSWORD, TestApp, TestUser, assert_problem, assert_problem_one_of,
    assert_status, assert_token_pair, assert_user_object, assert_validation_error, form_query,
    header, json_ok, jwt_claims, jwt_header, output_text, registration, spawn_app, spawn_app_with,
    str_field, unique_username,
};

dual_backend_tests!(
    // Permissions
    user_admin_routes_require_staff,
    staff_flag_is_read_from_the_database_on_every_request,
    // createsuperuser
    createsuperuser_makes_an_active_verified_staff_user,
    createsuperuser_exits_cleanly_every_time,
    // Listing and pagination
    list_users_returns_newest_first_in_a_page_envelope,
    list_users_empty_result_and_pages_past_the_end,
    list_users_pages_with_exact_links,
    list_users_caps_page_size_at_100,
    list_users_links_keep_filters_form_encoded,
    list_users_rejects_bad_paging_values,
    // Search, filters, ordering
    search_matches_each_name_field_case_insensitively,
    search_treats_wildcards_literally,
    filters_by_active_staff_and_group,
    ordering_by_each_field,
    list_users_rejects_bad_filters_orderings_and_unknown_parameters,
    list_users_rejects_empty_filter_values,
    // One user
    get_user_by_id_and_unknown_ids,
    patch_user_updates_only_the_given_fields,
    patch_user_rejects_invalid_input_and_changes_nothing,
    patch_user_rejects_null_for_non_nullable_fields,
    deactivation_revokes_every_refresh_token,
    activating_a_pending_account_approves_it_and_emails_the_user,
    next_access_token_carries_staff_groups_and_claims,
    delete_user_removes_the_account_and_its_tokens,
    // Staff safeguards
    staff_cannot_demote_or_deactivate_themselves,
    last_active_staff_user_cannot_be_deleted,
    staff_may_demote_and_delete_other_staff_and_themselves,
    inactive_staff_do_not_count_as_remaining_staff,
);

// ---------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------

fn no_verification(s: &mut Settings) {
    s.accounts.require_email_verification = false;
}

/// An instance where registration logs the user in at once (cheap users).
async fn quick_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, no_verification).await
}

/// Registers `username` with `extra` registration fields (first_name, …); returns its id.
async fn register_user(app: &TestApp, username: &str, email: &str, extra: Value) -> String {
    let mut body = registration(username, email, STRONG_PASSWORD);
    for (key, value) in extra.as_object().expect("extra fields object") {
        body[key] = value.clone();
    }
    let created = json_ok(app.register(&body).await, 201).await;
    str_field(&created["user"], "id")
}

/// Registers `n` users named `{prefix}{i}` and returns their ids in registration order.
async fn register_many(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let username = format!("{prefix}{i:03}");
        let email = format!("{username}@example.com");
        ids.push(register_user(app, &username, &email, json!({})).await);
    }
    ids
}

fn results(page: &Value) -> &Vec<Value> {
    page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no `results` array: {page}"))
}

fn ids(page: &Value) -> Vec<String> {
    results(page).iter().map(|u| str_field(u, "id")).collect()
}

fn usernames(page: &Value) -> Vec<String> {
    results(page)
        .iter()
        .map(|u| str_field(u, "username"))
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The absolute list URL the service must build for `query`.
fn list_link(query: &str) -> Value {
    json!(format!("{PUBLIC_URL}/users?{query}"))
}

/// A `next`/`previous` link's query pairs, sorted (for requests whose parameter order the
/// contract leaves open, e.g. when `page` has to be added).
fn link_pairs(link: &Value) -> Vec<(String, String)> {
    let text = link
        .as_str()
        .unwrap_or_else(|| panic!("link is not a string: {link}"));
    let prefix = format!("{PUBLIC_URL}/users?");
    assert!(
        text.starts_with(&prefix),
        "link `{text}` does not start with `{prefix}`"
    );
    let url = reqwest::Url::parse(text).expect("link is not a URL");
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    pairs
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = expected
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

/// The query part of a link the service returned, to follow it against the test instance.
fn query_of(link: &Value) -> String {
    let text = link
        .as_str()
        .unwrap_or_else(|| panic!("not a link: {link}"));
    text.split_once('?')
        .map(|(_, q)| q.to_owned())
        .unwrap_or_default()
}

/// Verifies `token` with nothing but the published JWK Set, as another service would.
async fn verify_offline(app: &TestApp, token: &str) -> Value {
    let jwks = app.jwks_json().await;
    let kid = str_field(&jwt_header(token), "kid");
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("not a JWK Set");
    let jwk = set
        .find(&kid)
        .unwrap_or_else(|| panic!("token kid `{kid}` not published: {jwks}"));
    let key = DecodingKey::from_jwk(jwk).expect("unusable JWK");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[&app.audience]);
    validation.set_issuer(&[&app.issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("offline verification failed: {e}"))
        .claims
}

/// `None` when `resp` is a 400 `validation_failed` problem whose `errors` name exactly
/// `field` (with non-empty messages); else what was wrong, so a table-driven test can
/// report every failing case at once.
async fn refusal_mismatch(resp: reqwest::Response, field: &str) -> Option<String> {
    let status = resp.status().as_u16();
    let content_type = header(&resp, "content-type").unwrap_or_default();
    let text = resp.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let keys: Vec<&String> = body["errors"]
        .as_object()
        .map(|errors| errors.keys().collect())
        .unwrap_or_default();
    let messages_ok = body["errors"][field].as_array().is_some_and(|m| {
        !m.is_empty() && m.iter().all(|m| m.as_str().is_some_and(|s| !s.is_empty()))
    });
    let ok = status == 400
        && content_type.starts_with("application/problem+json")
        && body["code"] == json!("validation_failed")
        && keys == [field]
        && messages_ok;
    (!ok).then(|| format!("{status} {text}"))
}

/// Runs every `(field, request)` case and fails once, listing each case that was not
/// refused with errors under exactly its field.
async fn assert_each_refused<F, Fut>(cases: &[(String, &str)], send: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let mut wrong = Vec::new();
    for (case, field) in cases {
        if let Some(got) = refusal_mismatch(send(case.clone()).await, field).await {
            wrong.push(format!("{case} (expected errors.{field}): {got}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases not refused as expected:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// Asserts the staff token still works on an admin route (the caller is still staff).
async fn assert_still_staff(app: &TestApp, staff: &TestUser) {
    json_ok(
        app.list_users(&staff.access_token, "page_size=1").await,
        200,
    )
    .await;
}

// ---------------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------------

async fn user_admin_routes_require_staff(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    let target = TestUser::create(&app).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let target_path = format!("/users/{}", target.id);
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/users".into(), None),
        (
            Method::GET,
            "/users?page=1&page_size=5&search=user".into(),
            None,
        ),
        (Method::GET, target_path.clone(), None),
        (Method::GET, format!("/users/{unknown}"), None),
        (
            Method::PATCH,
            target_path.clone(),
            Some(json!({ "is_staff": true })),
        ),
        // Self-promotion through the admin route.
        (
            Method::PATCH,
            format!("/users/{}", user.id),
            Some(json!({ "is_staff": true })),
        ),
        (Method::DELETE, target_path.clone(), None),
        (Method::DELETE, format!("/users/{unknown}"), None),
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

        // Not of the Bearer scheme: still anonymous.
        let mut req = app
            .client
            .request(method.clone(), app.url(path))
            .header(reqwest::header::AUTHORIZATION, "Basic YWRhOnNlY3JldA==");
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.expect("request failed");
        assert_problem(resp, 401, "not_authenticated").await;

        // Authenticated, not staff: 403 even for an unknown id (no enumeration).
        let resp = app
            .request_as(
                method.clone(),
                path,
                Some(&user.access_token),
                body.as_ref(),
            )
            .await;
        assert_problem(resp, 403, "permission_denied").await;

        // A refresh token is never an access token.
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

    // None of the refused requests changed anything.
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(me["is_staff"], json!(false), "{me}");
    let target_now = app.get_user_json(&staff.access_token, &target.id).await;
    assert_eq!(target_now["is_staff"], json!(false), "{target_now}");

    // Staff may use every route.
    let list = app.list_users_json(&staff.access_token, "").await;
    assert_eq!(list["count"], json!(3), "{list}");
    let got = app.get_user_json(&staff.access_token, &target.id).await;
    assert_eq!(got["id"], json!(target.id));
    let patched = json_ok(
        app.patch_user(
            &staff.access_token,
            &target.id,
            &json!({ "bio": "checked" }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(patched["bio"], json!("checked"));
    assert_status(app.delete_user(&staff.access_token, &target.id).await, 204).await;
    assert_problem(
        app.get_user(&staff.access_token, &target.id).await,
        404,
        "not_found",
    )
    .await;
}

async fn staff_flag_is_read_from_the_database_on_every_request(backend: Backend) {
    let app = quick_app(backend).await;
    let a = TestUser::create_staff(&app).await;
    let b = TestUser::create_staff(&app).await;
    let c = TestUser::create(&app).await;

    // B's token says it is staff, and it works.
    assert_eq!(jwt_claims(&b.access_token)["is_staff"], json!(true));
    assert_still_staff(&app, &b).await;

    let demoted = json_ok(
        app.patch_user(&a.access_token, &b.id, &json!({ "is_staff": false }))
            .await,
        200,
    )
    .await;
    assert_eq!(demoted["is_staff"], json!(false), "{demoted}");
    // The very next request with the same token (still claiming staff) is refused.
    assert_problem(
        app.list_users(&b.access_token, "").await,
        403,
        "permission_denied",
    )
    .await;
    assert_problem(
        app.get_user(&b.access_token, &a.id).await,
        403,
        "permission_denied",
    )
    .await;

    // Promotion takes effect at once, even with a token that says otherwise.
    assert_eq!(jwt_claims(&c.access_token)["is_staff"], json!(false));
    assert_problem(
        app.list_users(&c.access_token, "").await,
        403,
        "permission_denied",
    )
    .await;
    json_ok(
        app.patch_user(&a.access_token, &c.id, &json!({ "is_staff": true }))
            .await,
        200,
    )
    .await;
    let list = app.list_users_json(&c.access_token, "").await;
    assert_eq!(list["count"], json!(3), "{list}");
}

// ---------------------------------------------------------------------------------
// createsuperuser
// ---------------------------------------------------------------------------------

async fn createsuperuser_makes_an_active_verified_staff_user(backend: Backend) {
    // Email verification on (the default): the command's user needs no activation.
    let app = spawn_app(backend).await;
    let (username, email) = ("rootadmin", "Root.Admin@Example.COM");
    let out = app
        .createsuperuser(username, email, &format!("{STRONG_PASSWORD}\n"))
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "createsuperuser must exit 0 ({}): {}",
        out.status,
        output_text(&out)
    );
    let pair = json_ok(app.login_username(username, STRONG_PASSWORD).await, 200).await;
    assert_token_pair(&pair);
    let staff = TestUser {
        id: str_field(&pair["user"], "id"),
        username: username.to_owned(),
        email: "Root.Admin@example.com".to_owned(),
        password: STRONG_PASSWORD.to_owned(),
        access_token: str_field(&pair, "access_token"),
        refresh_token: str_field(&pair, "refresh_token"),
    };

    let me = json_ok(app.get_me(&staff.access_token).await, 200).await;
    assert_user_object(&me);
    assert_eq!(me["username"], json!(staff.username));
    assert_eq!(me["email"], json!(staff.email));
    assert_eq!(me["is_staff"], json!(true), "{me}");
    assert_eq!(me["is_active"], json!(true), "{me}");
    assert_eq!(me["email_verified"], json!(true), "{me}");
    let claims = jwt_claims(&staff.access_token);
    assert_eq!(claims["is_staff"], json!(true), "{claims}");
    assert_eq!(claims["email_verified"], json!(true), "{claims}");
    let list = app.list_users_json(&staff.access_token, "").await;
    assert_eq!(list["count"], json!(1), "{list}");

    // Duplicates are refused case-insensitively, weak passwords too; nothing is created.
    let refused = [
        (
            staff.username.to_uppercase(),
            "fresh@example.com".to_owned(),
            STRONG_PASSWORD,
        ),
        (
            "freshname".to_owned(),
            staff.email.to_uppercase(),
            STRONG_PASSWORD,
        ),
        (
            "weakling".to_owned(),
            "weakling@example.com".to_owned(),
            "password",
        ),
        (
            "numeric".to_owned(),
            "numeric@example.com".to_owned(),
            "123456789012",
        ),
    ];
    for (username, email, password) in &refused {
        let out = app
            .createsuperuser(username, email, &format!("{password}\n"))
            .await;
        let said = output_text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "createsuperuser {username} {email} must fail with exit code 1 ({}): {said}",
            out.status
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).trim().is_empty(),
            "a failure says why on stderr: {said}"
        );
        assert!(
            !said.contains(STRONG_PASSWORD) && !said.contains("123456789012"),
            "the password is not echoed: {said}"
        );
    }
    let list = app.list_users_json(&staff.access_token, "").await;
    assert_eq!(list["count"], json!(1), "nothing was created: {list}");
}

/// Operators script `createsuperuser`: every successful run must exit 0, never die on the
/// way out (repeated because a crash at exit may be timing-dependent).
async fn createsuperuser_exits_cleanly_every_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut crashes = Vec::new();
    for i in 0..8 {
        let username = format!("operator{i}");
        let out = app
            .createsuperuser(
                &username,
                &format!("{username}@example.com"),
                &format!("{STRONG_PASSWORD}\n"),
            )
            .await;
        if out.status.code() != Some(0) {
            crashes.push(format!(
                "run {i}: {} ({})",
                out.status,
                output_text(&out).trim()
            ));
        }
        json_ok(app.login_username(&username, STRONG_PASSWORD).await, 200).await;
    }
    assert!(
        crashes.is_empty(),
        "{} of 8 runs did not exit 0:\n{}",
        crashes.len(),
        crashes.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// Listing and pagination
// ---------------------------------------------------------------------------------

async fn list_users_returns_newest_first_in_a_page_envelope(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let mut created = vec![staff.id.clone()];
    let mut users = Vec::new();
    for _ in 0..3 {
        let user = TestUser::create(&app).await;
        created.push(user.id.clone());
        users.push(user);
    }

    let page = app.list_users_json(&staff.access_token, "").await;
    let keys: Vec<String> = page.as_object().expect("object").keys().cloned().collect();
    assert_eq!(
        sorted(keys),
        owned(&["count", "count_exact", "next", "previous", "results"]),
        "{page}"
    );
    assert_eq!(page["count"], json!(4), "{page}");
    assert_eq!(page["next"], Value::Null, "{page}");
    assert_eq!(page["previous"], Value::Null, "{page}");
    // Default ordering: -date_joined (newest first).
    created.reverse();
    assert_eq!(ids(&page), created, "{page}");
    for user in results(&page) {
        assert_user_object(user);
    }
    // Each entry is the same user object the user sees on /users/me.
    let me = json_ok(app.get_me(&users[0].access_token).await, 200).await;
    assert_eq!(results(&page)[2], me);
    // Explicit page 1 is the same page.
    assert_eq!(
        app.list_users_json(&staff.access_token, "page=1").await,
        page
    );
}

async fn list_users_empty_result_and_pages_past_the_end(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;

    let empty = app
        .list_users_json(&staff.access_token, "search=no-such-user")
        .await;
    assert_eq!(
        empty,
        json!({ "count": 0, "count_exact": true, "next": null, "previous": null, "results": [] })
    );
    let empty = app
        .list_users_json(&staff.access_token, "page=1&search=no-such-user")
        .await;
    assert_eq!(empty["count"], json!(0), "{empty}");
    assert_eq!(empty["results"], json!([]), "{empty}");

    // Beyond the last page (DRF: "Invalid page."), for an empty and a non-empty result.
    for query in [
        "page=2&search=no-such-user",
        "page=2",
        "page=3&page_size=1",
        "page=99999999",
        // Past u64: as far past the last page (the document sets no maximum).
        "page=18446744073709551616",
    ] {
        let problem = assert_problem(
            app.list_users(&staff.access_token, query).await,
            404,
            "not_found",
        )
        .await;
        assert!(problem.get("errors").is_none(), "{query}: {problem}");
    }
    let last = app
        .list_users_json(&staff.access_token, "page=1&page_size=1")
        .await;
    assert_eq!(ids(&last), [staff.id.as_str()]);
    assert_eq!(last["next"], Value::Null, "{last}");
}

async fn list_users_pages_with_exact_links(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    register_many(&app, "pager", 5).await;
    let token = &staff.access_token;
    let everyone = app.list_users_json(token, "").await;
    assert_eq!(everyone["count"], json!(6));

    // 6 users, 3 per page: an exact multiple.
    let p1 = app.list_users_json(token, "page=1&page_size=3").await;
    assert_eq!(p1["count"], json!(6), "{p1}");
    assert_eq!(p1["next"], list_link("page=2&page_size=3"), "{p1}");
    assert_eq!(p1["previous"], Value::Null, "{p1}");
    let p2 = app.list_users_json(token, "page=2&page_size=3").await;
    assert_eq!(p2["count"], json!(6), "{p2}");
    assert_eq!(p2["next"], Value::Null, "{p2}");
    // DRF drops `page` from the link to the first page.
    assert_eq!(p2["previous"], list_link("page_size=3"), "{p2}");
    assert_problem(
        app.list_users(token, "page=3&page_size=3").await,
        404,
        "not_found",
    )
    .await;
    // The pages partition the full, ordered list.
    assert_eq!([ids(&p1), ids(&p2)].concat(), ids(&everyone));

    // Without `page`, the first page links to page 2 (parameter order is not fixed).
    let first = app.list_users_json(token, "page_size=3").await;
    assert_eq!(ids(&first), ids(&p1));
    assert_eq!(
        link_pairs(&first["next"]),
        pairs(&[("page", "2"), ("page_size", "3")])
    );
    // Following the links walks the same pages.
    let followed = app.list_users_json(token, &query_of(&p1["next"])).await;
    assert_eq!(followed, p2);
    let back = app.list_users_json(token, &query_of(&p2["previous"])).await;
    assert_eq!(back, p1);

    // One more user: 3 + 3 + 1, the last page partial.
    register_many(&app, "extra", 1).await;
    let everyone = app.list_users_json(token, "").await;
    let p2 = app.list_users_json(token, "page=2&page_size=3").await;
    assert_eq!(p2["count"], json!(7), "{p2}");
    assert_eq!(p2["next"], list_link("page=3&page_size=3"), "{p2}");
    assert_eq!(p2["previous"], list_link("page_size=3"), "{p2}");
    let p3 = app.list_users_json(token, "page=3&page_size=3").await;
    assert_eq!(results(&p3).len(), 1, "{p3}");
    assert_eq!(p3["next"], Value::Null, "{p3}");
    assert_eq!(p3["previous"], list_link("page=2&page_size=3"), "{p3}");
    let p1 = app.list_users_json(token, "page=1&page_size=3").await;
    assert_eq!([ids(&p1), ids(&p2), ids(&p3)].concat(), ids(&everyone));
    assert_problem(
        app.list_users(token, "page=4&page_size=3").await,
        404,
        "not_found",
    )
    .await;
}

async fn list_users_caps_page_size_at_100(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    register_many(&app, "bulk", 101).await;
    let token = &staff.access_token;

    // Over the maximum: silently capped, and the links keep the requested value.
    let p1 = app.list_users_json(token, "page=1&page_size=1000").await;
    assert_eq!(p1["count"], json!(102), "{p1}");
    assert_eq!(results(&p1).len(), 100);
    assert_eq!(p1["next"], list_link("page=2&page_size=1000"));
    assert_eq!(p1["previous"], Value::Null);
    let p2 = app.list_users_json(token, "page=2&page_size=1000").await;
    assert_eq!(results(&p2).len(), 2, "{p2}");
    assert_eq!(p2["next"], Value::Null);
    assert_eq!(p2["previous"], list_link("page_size=1000"));
    let mut all = [ids(&p1), ids(&p2)].concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 102, "every user exactly once");

    for size in ["100", "101", "99999999999999999999999"] {
        let page = app
            .list_users_json(token, &format!("page=1&page_size={size}"))
            .await;
        assert_eq!(results(&page).len(), 100, "page_size={size}");
        assert_eq!(ids(&page), ids(&p1), "page_size={size}");
    }

    // Default: 20 per page; 102 = 5 × 20 + 2.
    let first = app.list_users_json(token, "").await;
    assert_eq!(results(&first).len(), 20);
    assert_eq!(first["next"], list_link("page=2"));
    let last = app.list_users_json(token, "page=6").await;
    assert_eq!(results(&last).len(), 2, "{last}");
    assert_eq!(last["next"], Value::Null);
    assert_eq!(last["previous"], list_link("page=5"));
    // Page 2's `previous` drops `page`, leaving no parameter at all (DRF gives the bare
    // path; an empty query string is tolerated).
    let second = app.list_users_json(token, "page=2").await;
    let previous = second["previous"].as_str().unwrap_or_default();
    assert!(
        [
            format!("{PUBLIC_URL}/users"),
            format!("{PUBLIC_URL}/users?")
        ]
        .contains(&previous.to_owned()),
        "previous of page 2: {second}"
    );
    assert_problem(app.list_users(token, "page=7").await, 404, "not_found").await;
}

async fn list_users_links_keep_filters_form_encoded(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    for name in ["maryann1", "maryann2", "maryann3"] {
        register_user(
            &app,
            name,
            &format!("{name}@example.com"),
            json!({ "first_name": "Mary Ann", "last_name": "50% off" }),
        )
        .await;
    }
    let token = &staff.access_token;

    // Parameters in sorted order with `page` present: in-place replacement and DRF's
    // sorted re-encoding agree, so the links are fixed strings.
    let page = app
        .list_users_json(token, "ordering=username&page=2&page_size=1&search=ry+An")
        .await;
    assert_eq!(page["count"], json!(3), "{page}");
    assert_eq!(usernames(&page), ["maryann2"]);
    assert_eq!(
        page["next"],
        list_link("ordering=username&page=3&page_size=1&search=ry+An")
    );
    assert_eq!(
        page["previous"],
        list_link("ordering=username&page_size=1&search=ry+An")
    );
    let next = app.list_users_json(token, &query_of(&page["next"])).await;
    assert_eq!(usernames(&next), ["maryann3"]);

    // A literal `%` is encoded as %25 in the links.
    let page = app
        .list_users_json(token, "ordering=-username&page=1&page_size=2&search=50%25")
        .await;
    assert_eq!(usernames(&page), ["maryann3", "maryann2"]);
    assert_eq!(
        page["next"],
        list_link("ordering=-username&page=2&page_size=2&search=50%25")
    );

    // Filters in any order, `page` absent: compare the decoded pairs.
    let query = form_query(&[
        ("search", "Mary Ann"),
        ("is_active", "true"),
        ("page_size", "2"),
        ("ordering", "username"),
    ]);
    let page = app.list_users_json(token, &query).await;
    assert_eq!(usernames(&page), ["maryann1", "maryann2"]);
    assert_eq!(
        link_pairs(&page["next"]),
        pairs(&[
            ("is_active", "true"),
            ("ordering", "username"),
            ("page", "2"),
            ("page_size", "2"),
            ("search", "Mary Ann"),
        ])
    );
    let raw = page["next"].as_str().unwrap_or_default();
    assert!(
        raw.contains("search=Mary+Ann"),
        "form-urlencoded (space as +): {raw}"
    );
    let next = app.list_users_json(token, &query_of(&page["next"])).await;
    assert_eq!(usernames(&next), ["maryann3"]);
    assert_eq!(
        link_pairs(&next["previous"]),
        pairs(&[
            ("is_active", "true"),
            ("ordering", "username"),
            ("page_size", "2"),
            ("search", "Mary Ann"),
        ])
    );
}

async fn list_users_rejects_bad_paging_values(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;

    for value in ["0", "-1", "abc", "2.5", "1e2", " 5"] {
        let query = form_query(&[("page_size", value)]);
        let body =
            assert_validation_error(app.list_users(token, &query).await, &["page_size"]).await;
        assert!(body["errors"].get("page").is_none(), "{query}: {body}");
    }
    for value in ["0", "-1", "abc", "1.0", "two"] {
        let query = form_query(&[("page", value)]);
        let body = assert_validation_error(app.list_users(token, &query).await, &["page"]).await;
        assert!(body["errors"].get("page_size").is_none(), "{query}: {body}");
    }
    // Several bad parameters: all of them are reported.
    let body = assert_validation_error(
        app.list_users(token, "page=0&page_size=x&color=red").await,
        &["page", "page_size", "color"],
    )
    .await;
    assert_eq!(body["status"], json!(400));
}

// ---------------------------------------------------------------------------------
// Search, filters, ordering
// ---------------------------------------------------------------------------------

async fn search_matches_each_name_field_case_insensitively(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;
    // Each field of each user carries a word no other field has.
    let kestrel = register_user(
        &app,
        "kestrel",
        "k1@orchard.example",
        json!({ "first_name": "Wren", "last_name": "Plover" }),
    )
    .await;
    let osprey = register_user(
        &app,
        "osprey",
        "o2@meadow.example",
        json!({ "first_name": "Heron", "last_name": "Bittern" }),
    )
    .await;
    let ibis = register_user(
        &app,
        "ibis",
        "i3@estuary.example",
        json!({ "first_name": "Crane", "last_name": "Avocet" }),
    )
    .await;

    for (search, expected) in [
        ("KESTREL", vec![&kestrel]), // username
        ("sPrE", vec![&osprey]),     // username, infix
        ("Meadow", vec![&osprey]),   // email
        ("I3@ESTUARY", vec![&ibis]), // email
        ("cRaNe", vec![&ibis]),      // first_name
        ("wren", vec![&kestrel]),    // first_name
        ("PLOVER", vec![&kestrel]),  // last_name
        ("itter", vec![&osprey]),    // last_name, infix
        (".EXAMPLE", vec![&ibis, &osprey, &kestrel]),
        ("nobody-here", vec![]),
    ] {
        let page = app
            .list_users_json(token, &form_query(&[("search", search)]))
            .await;
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(ids(&page), expected, "search={search}: {page}");
        assert_eq!(page["count"], json!(expected.len()), "search={search}");
    }
    // Combined with a filter; and the staff user (…@example.com) is found too.
    let page = app
        .list_users_json(token, "search=EXAMPLE&is_staff=false")
        .await;
    assert_eq!(page["count"], json!(3), "{page}");
    let page = app.list_users_json(token, "search=EXAMPLE").await;
    assert_eq!(page["count"], json!(4), "{page}");
}

async fn search_treats_wildcards_literally(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;
    let underscore = register_user(&app, "snake_case", "snake@example.org", json!({})).await;
    register_user(&app, "snakexcase", "snakex@example.org", json!({})).await;
    let percent = register_user(
        &app,
        "cotton",
        "cotton@example.org",
        json!({ "last_name": "100% cotton" }),
    )
    .await;
    register_user(
        &app,
        "linen",
        "linen@example.org",
        json!({ "last_name": "100 x cotton" }),
    )
    .await;
    let backslash = register_user(
        &app,
        "slashed",
        "slashed@example.org",
        json!({ "last_name": "back\\slash" }),
    )
    .await;
    register_user(
        &app,
        "unslashed",
        "unslashed@example.org",
        json!({ "last_name": "backslash" }),
    )
    .await;

    for (search, expected) in [
        ("_", vec![&underscore]),
        ("e_c", vec![&underscore]),
        ("%", vec![&percent]),
        ("0% c", vec![&percent]),
        ("k\\s", vec![&backslash]),
        ("\\", vec![&backslash]),
        ("%%", vec![]),
        ("s_a", vec![]),
    ] {
        let page = app
            .list_users_json(token, &form_query(&[("search", search)]))
            .await;
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(ids(&page), expected, "search={search:?}: {page}");
    }
}

async fn filters_by_active_staff_and_group(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;
    let plain = TestUser::create(&app).await;
    let promoted = TestUser::create(&app).await;
    let inactive = TestUser::create(&app).await;
    let editor = TestUser::create(&app).await;
    for group in ["editors", "viewers"] {
        json_ok(app.create_group(token, group).await, 201).await;
    }
    for (user, change) in [
        (
            &promoted,
            json!({ "is_staff": true, "groups": ["editors"] }),
        ),
        (&inactive, json!({ "is_active": false })),
        (&editor, json!({ "groups": ["editors"] })),
    ] {
        json_ok(app.patch_user(token, &user.id, &change).await, 200).await;
    }

    let set = |users: &[&TestUser]| sorted(users.iter().map(|u| u.id.clone()).collect());
    let cases: Vec<(String, Vec<String>)> = vec![
        ("is_staff=true".into(), set(&[&staff, &promoted])),
        ("is_staff=TRUE".into(), set(&[&staff, &promoted])),
        ("is_staff=1".into(), set(&[&staff, &promoted])),
        ("is_staff=false".into(), set(&[&plain, &inactive, &editor])),
        ("is_staff=0".into(), set(&[&plain, &inactive, &editor])),
        ("is_active=false".into(), set(&[&inactive])),
        ("is_active=False".into(), set(&[&inactive])),
        (
            "is_active=true".into(),
            set(&[&staff, &plain, &promoted, &editor]),
        ),
        ("is_active=1&is_staff=false".into(), set(&[&plain, &editor])),
        ("group=editors".into(), set(&[&promoted, &editor])),
        ("group=editors&is_staff=false".into(), set(&[&editor])),
        ("group=editors&is_staff=true".into(), set(&[&promoted])),
        ("group=viewers".into(), vec![]),
        (
            form_query(&[("group", "editors"), ("search", editor.username.as_str())]),
            set(&[&editor]),
        ),
        (
            form_query(&[("group", "editors"), ("search", plain.username.as_str())]),
            vec![],
        ),
    ];
    for (query, expected) in cases {
        let page = app.list_users_json(token, &query).await;
        assert_eq!(sorted(ids(&page)), expected, "{query}: {page}");
        assert_eq!(page["count"], json!(expected.len()), "{query}");
    }
}

async fn ordering_by_each_field(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;
    // Registration order (date_joined ascending), with usernames and emails each in a
    // different order.
    for (username, email) in [
        ("delta", "mike@ordering.example"),
        ("alpha", "oscar@ordering.example"),
        ("charlie", "kilo@ordering.example"),
        ("bravo", "lima@ordering.example"),
    ] {
        register_user(&app, username, email, json!({})).await;
    }
    app.set_last_login("delta", Some("2026-01-03 10:00:00.000001"));
    app.set_last_login("charlie", Some("2026-01-01 10:00:00.000001"));
    app.set_last_login("alpha", None);
    app.set_last_login("bravo", None);

    let order = |ordering: &str| {
        let query = form_query(&[("search", "ordering.example"), ("ordering", ordering)]);
        let app = &app;
        async move { usernames(&app.list_users_json(token, &query).await) }
    };
    for (ordering, expected) in [
        ("username", ["alpha", "bravo", "charlie", "delta"]),
        ("-username", ["delta", "charlie", "bravo", "alpha"]),
        ("email", ["charlie", "bravo", "delta", "alpha"]),
        ("-email", ["alpha", "delta", "bravo", "charlie"]),
        ("date_joined", ["delta", "alpha", "charlie", "bravo"]),
        ("-date_joined", ["bravo", "charlie", "alpha", "delta"]),
    ] {
        assert_eq!(order(ordering).await, expected, "ordering={ordering}");
    }
    // Default: -date_joined.
    let page = app.list_users_json(token, "search=ordering.example").await;
    assert_eq!(usernames(&page), ["bravo", "charlie", "alpha", "delta"]);

    // last_login: never-logged-in users come last in both directions.
    for (ordering, logged_in) in [
        ("last_login", ["charlie", "delta"]),
        ("-last_login", ["delta", "charlie"]),
    ] {
        let got = order(ordering).await;
        assert_eq!(got[..2], logged_in, "ordering={ordering}: {got:?}");
        assert_eq!(
            sorted(got[2..].to_vec()),
            owned(&["alpha", "bravo"]),
            "ordering={ordering}: {got:?}"
        );
    }

    // Ordering applies before paging.
    let page = app
        .list_users_json(
            token,
            "ordering=username&page=2&page_size=2&search=ordering.example",
        )
        .await;
    assert_eq!(usernames(&page), ["charlie", "delta"]);
    let page = app
        .list_users_json(
            token,
            "ordering=-last_login&page=1&page_size=1&search=ordering.example",
        )
        .await;
    assert_eq!(usernames(&page), ["delta"]);
}

async fn list_users_rejects_bad_filters_orderings_and_unknown_parameters(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;
    json_ok(app.create_group(token, "editors").await, 201).await;

    let mut cases: Vec<(String, &str)> = Vec::new();
    for value in ["yes", "no", "2", "truthy", "-1", "t"] {
        cases.push((form_query(&[("is_active", value)]), "is_active"));
        cases.push((form_query(&[("is_staff", value)]), "is_staff"));
    }
    for value in [
        "password",
        "password_hash",
        "first_name",
        "is_staff",
        "--username",
        "+username",
        "username desc",
        "-",
    ] {
        cases.push((form_query(&[("ordering", value)]), "ordering"));
    }
    cases.push(("group=ghosts".into(), "group"));
    // Group names are case-sensitive exact names, not patterns.
    cases.push(("group=edit%25".into(), "group"));
    for param in ["color", "Page", "limit", "offset", "username"] {
        cases.push((form_query(&[(param, "1")]), param));
    }
    let app_ref = &app;
    assert_each_refused(&cases, |query| async move {
        app_ref.list_users(token, &query).await
    })
    .await;

    // Every bad parameter is reported at once.
    let query = "is_active=maybe&is_staff=perhaps&group=ghosts&ordering=password\
                 &page=0&page_size=0&color=red";
    let body = assert_validation_error(
        app.list_users(token, query).await,
        &[
            "is_active",
            "is_staff",
            "group",
            "ordering",
            "page",
            "page_size",
            "color",
        ],
    )
    .await;
    assert_eq!(body["code"], json!("validation_failed"));
}

/// An empty value is not one of the accepted values ("anything else -> 400"): it is not
/// silently read as "no filter" / "default ordering".
async fn list_users_rejects_empty_filter_values(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;
    let cases: Vec<(String, &str)> = vec![
        ("is_active=".into(), "is_active"),
        ("is_staff=".into(), "is_staff"),
        ("ordering=".into(), "ordering"),
        ("page_size=".into(), "page_size"),
        ("page=".into(), "page"),
    ];
    let app_ref = &app;
    assert_each_refused(&cases, |query| async move {
        app_ref.list_users(token, &query).await
    })
    .await;
}

// ---------------------------------------------------------------------------------
// One user
// ---------------------------------------------------------------------------------

async fn get_user_by_id_and_unknown_ids(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;

    let got = app.get_user_json(&staff.access_token, &user.id).await;
    assert_user_object(&got);
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(got, me);
    let own = app.get_user_json(&staff.access_token, &staff.id).await;
    assert_eq!(own["is_staff"], json!(true), "{own}");

    for id in [
        uuid::Uuid::now_v7().to_string(),
        "not-a-uuid".to_owned(),
        "12345".to_owned(),
        format!("{}x", user.id),
        "%00".to_owned(),
    ] {
        let problem = assert_problem(
            app.get_user(&staff.access_token, &id).await,
            404,
            "not_found",
        )
        .await;
        assert!(problem.get("errors").is_none(), "{id}: {problem}");
        assert_problem(
            app.patch_user(&staff.access_token, &id, &json!({ "bio": "x" }))
                .await,
            404,
            "not_found",
        )
        .await;
    }
}

async fn patch_user_updates_only_the_given_fields(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    let token = &staff.access_token;
    for group in ["editors", "writers"] {
        json_ok(app.create_group(token, group).await, 201).await;
    }
    let before = app.get_user_json(token, &user.id).await;

    let changes = json!({
        "first_name": "Ada",
        "last_name": "Lovelace",
        "bio": "Analyst. ✓",
        "is_staff": true,
        "groups": ["writers", "editors"],
        "claims": { "tenant": "acme", "seats": 5, "plan": { "tier": "gold", "ids": [1, 2] } },
    });
    let patched = json_ok(app.patch_user(token, &user.id, &changes).await, 200).await;
    assert_user_object(&patched);
    for key in ["first_name", "last_name", "bio", "is_staff", "claims"] {
        assert_eq!(patched[key], changes[key], "{key}: {patched}");
    }
    let groups = |u: &Value| {
        sorted(
            u["groups"]
                .as_array()
                .unwrap_or_else(|| panic!("groups: {u}"))
                .iter()
                .map(|g| g.as_str().expect("group name").to_owned())
                .collect(),
        )
    };
    assert_eq!(groups(&patched), owned(&["editors", "writers"]));
    for key in [
        "id",
        "username",
        "email",
        "email_verified",
        "is_active",
        "date_joined",
    ] {
        assert_eq!(patched[key], before[key], "{key} must not change");
    }
    assert_eq!(app.get_user_json(token, &user.id).await, patched);

    // Partial update: only `bio` changes.
    let bio_only = json_ok(
        app.patch_user(token, &user.id, &json!({ "bio": "" })).await,
        200,
    )
    .await;
    let mut expected = patched.clone();
    expected["bio"] = json!("");
    assert_eq!(bio_only, expected);

    // `groups` replaces the membership set; `claims` replaces the whole object.
    let replaced = json_ok(
        app.patch_user(
            token,
            &user.id,
            &json!({ "groups": ["writers"], "claims": { "plan": "pro" } }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(replaced["groups"], json!(["writers"]));
    assert_eq!(replaced["claims"], json!({ "plan": "pro" }));
    let cleared = json_ok(
        app.patch_user(token, &user.id, &json!({ "groups": [], "claims": {} }))
            .await,
        200,
    )
    .await;
    assert_eq!(cleared["groups"], json!([]));
    assert_eq!(cleared["claims"], json!({}));
    assert_eq!(cleared["is_staff"], json!(true), "untouched: {cleared}");

    // Boundaries that are still valid: 150-character names, claims of exactly 4096
    // bytes as compact JSON (`{"blob":"…"}` is 11 bytes plus the value).
    let claims = json!({ "blob": "x".repeat(4096 - 11) });
    assert_eq!(claims.to_string().len(), 4096);
    let edge = json!({
        "first_name": "f".repeat(150),
        "last_name": "l".repeat(150),
        "claims": claims,
    });
    let patched = json_ok(app.patch_user(token, &user.id, &edge).await, 200).await;
    assert_eq!(patched["claims"], edge["claims"]);
    assert_eq!(patched["first_name"], edge["first_name"]);
    assert_eq!(app.get_user_json(token, &user.id).await, patched);
}

async fn patch_user_rejects_invalid_input_and_changes_nothing(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    let token = &staff.access_token;
    json_ok(app.create_group(token, "editors").await, 201).await;
    let before = app.get_user_json(token, &user.id).await;

    let mut cases: Vec<(&str, Value)> = vec![
        ("username", json!("renamed")),
        ("email", json!("new@example.com")),
        ("password", json!(STRONG_PASSWORD)),
        ("password_hash", json!("x")),
        ("id", json!(uuid::Uuid::now_v7().to_string())),
        ("date_joined", json!("2020-01-01T00:00:00Z")),
        ("last_login", json!(null)),
        ("email_verified", json!(false)),
        ("is_superuser", json!(true)),
        ("group", json!(["editors"])),
        ("is_active", json!("yes")),
        ("is_staff", json!(1)),
        ("is_staff", json!("true")),
        ("groups", json!(["editors", "ghosts"])),
        ("groups", json!("editors")),
        ("groups", json!([1])),
        ("groups", json!({ "editors": true })),
        // More than 32 names, even of one group.
        ("groups", json!(vec!["editors"; 33])),
        ("claims", json!(["tenant"])),
        ("claims", json!("acme")),
        ("claims", json!(42)),
        // 4097 bytes as compact JSON.
        ("claims", json!({ "blob": "x".repeat(4096 - 11 + 1) })),
        ("first_name", json!("x".repeat(151))),
        ("last_name", json!("y".repeat(151))),
        ("first_name", json!(7)),
        ("bio", json!(["not", "text"])),
    ];
    for reserved in [
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "token_type",
        "username",
        "email",
        "email_verified",
        "is_staff",
        "groups",
        "fam",
    ] {
        cases.push(("claims", json!({ "tenant": "acme", reserved: "forged" })));
    }

    // Each mixed with valid changes of every kind: the whole request must be refused.
    let cases: Vec<(String, &str)> = cases
        .into_iter()
        .map(|(field, value)| {
            let mut body = json!({
                "first_name": "Changed",
                "bio": "changed",
                "is_staff": true,
                "groups": ["editors"],
                "claims": { "ok": true },
            });
            body[field] = value;
            (body.to_string(), field)
        })
        .collect();
    let (app_ref, user_id) = (&app, user.id.as_str());
    assert_each_refused(&cases, |body| async move {
        let body: Value = serde_json::from_str(&body).expect("case body");
        app_ref.patch_user(token, user_id, &body).await
    })
    .await;
    // Two fields that may not be patched: both are named.
    assert_validation_error(
        app.patch_user(
            token,
            &user.id,
            &json!({ "username": "x", "email": "x@example.com", "bio": "b" }),
        )
        .await,
        &["username", "email"],
    )
    .await;
    // Not a JSON object at all.
    for body in [json!([]), json!("bio"), json!(null)] {
        let resp = app.patch_user(token, &user.id, &body).await;
        assert_problem_one_of(resp, 400, &["malformed_request", "validation_failed"]).await;
    }

    let after = app.get_user_json(token, &user.id).await;
    assert_eq!(after, before, "a refused PATCH changes nothing");
    assert_problem(
        app.list_users(&user.access_token, "").await,
        403,
        "permission_denied",
    )
    .await;
    let claims = jwt_claims(&str_field(&user.login_again(&app).await, "access_token"));
    assert_eq!(claims["is_staff"], json!(false), "{claims}");
    assert!(claims.get("ok").is_none(), "{claims}");
}

/// `null` is not a boolean, a list of names or an object: it must not be read as "field
/// absent" (DRF: "This field may not be null.").
async fn patch_user_rejects_null_for_non_nullable_fields(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    let token = &staff.access_token;
    let before = app.get_user_json(token, &user.id).await;

    let cases: Vec<(String, &str)> = [
        "is_active",
        "is_staff",
        "groups",
        "claims",
        "first_name",
        "last_name",
        "bio",
    ]
    .into_iter()
    .map(|field| {
        let mut body = json!({ "first_name": "Changed" });
        body[field] = Value::Null;
        (body.to_string(), field)
    })
    .collect();
    let (app_ref, user_id) = (&app, user.id.as_str());
    assert_each_refused(&cases, |body| async move {
        let body: Value = serde_json::from_str(&body).expect("case body");
        app_ref.patch_user(token, user_id, &body).await
    })
    .await;
    assert_eq!(app.get_user_json(token, &user.id).await, before);
}

async fn deactivation_revokes_every_refresh_token(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    let bystander = TestUser::create(&app).await;
    let second = user.login_again(&app).await;
    let token = &staff.access_token;

    let patched = json_ok(
        app.patch_user(token, &user.id, &json!({ "is_active": false }))
            .await,
        200,
    )
    .await;
    assert_eq!(patched["is_active"], json!(false), "{patched}");
    assert_eq!(
        app.get_user_json(token, &user.id).await["is_active"],
        json!(false)
    );

    // Every session ends at once.
    for refresh in [
        user.refresh_token.clone(),
        str_field(&second, "refresh_token"),
    ] {
        assert_problem_one_of(
            app.refresh(&refresh).await,
            401,
            &["token_revoked", "token_invalid"],
        )
        .await;
    }
    for access in [
        user.access_token.clone(),
        str_field(&second, "access_token"),
    ] {
        assert_problem_one_of(
            app.get_me(&access).await,
            401,
            &["token_invalid", "token_revoked", "not_authenticated"],
        )
        .await;
    }
    assert_problem(
        app.login_username(&user.username, &user.password).await,
        403,
        "account_inactive",
    )
    .await;
    let listed = app.list_users_json(token, "is_active=false").await;
    assert_eq!(ids(&listed), [user.id.as_str()]);
    // Other users are untouched.
    json_ok(app.refresh(&bystander.refresh_token).await, 200).await;

    // Reactivation allows logging in again, but the old sessions stay dead.
    let patched = json_ok(
        app.patch_user(token, &user.id, &json!({ "is_active": true }))
            .await,
        200,
    )
    .await;
    assert_eq!(patched["is_active"], json!(true));
    let pair = json_ok(
        app.login_username(&user.username, &user.password).await,
        200,
    )
    .await;
    assert_token_pair(&pair);
    assert_problem_one_of(
        app.refresh(&user.refresh_token).await,
        401,
        &["token_revoked", "token_invalid"],
    )
    .await;
    json_ok(app.refresh(&str_field(&pair, "refresh_token")).await, 200).await;
}

async fn activating_a_pending_account_approves_it_and_emails_the_user(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.accounts.require_admin_approval = true).await;
    let staff = TestUser::create_staff(&app).await;
    let token = &staff.access_token;
    let username = unique_username();
    let email = format!("{username}@example.com");

    let body = json_ok(
        app.register(&registration(&username, &email, STRONG_PASSWORD))
            .await,
        201,
    )
    .await;
    let id = str_field(&body["user"], "id");
    let link = app.activation_link(&email).await;
    let activated = json_ok(app.activate(&link.uid, &link.token).await, 200).await;
    assert_eq!(activated["approval_required"], json!(true), "{activated}");
    assert_problem(
        app.login_username(&username, STRONG_PASSWORD).await,
        403,
        "account_inactive",
    )
    .await;

    // Staff find it among the inactive users: verified, not yet active.
    let pending = app.list_users_json(token, "is_active=false").await;
    assert_eq!(ids(&pending), [id.as_str()], "{pending}");
    assert_eq!(results(&pending)[0]["email_verified"], json!(true));

    let approved = json_ok(
        app.patch_user(token, &id, &json!({ "is_active": true }))
            .await,
        200,
    )
    .await;
    assert_eq!(approved["is_active"], json!(true), "{approved}");
    assert_eq!(approved["email_verified"], json!(true), "{approved}");

    let message = app
        .wait_for_email(&format!("approval email to {email}"), |emails| {
            emails
                .iter()
                .find(|m| m.is_to(&email) && m.subject.to_lowercase().contains("approved"))
                .cloned()
        })
        .await;
    assert!(message.is_to(&email), "To: {}", message.to);
    assert!(
        !message.raw.contains(STRONG_PASSWORD),
        "the password is never emailed"
    );

    let pair = json_ok(app.login_username(&username, STRONG_PASSWORD).await, 200).await;
    assert_token_pair(&pair);
    assert_eq!(pair["user"]["is_active"], json!(true));
}

async fn next_access_token_carries_staff_groups_and_claims(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    let token = &staff.access_token;
    for group in ["zeta", "alpha", "mid"] {
        json_ok(app.create_group(token, group).await, 201).await;
    }
    let old = verify_offline(&app, &user.access_token).await;
    assert_eq!(old["is_staff"], json!(false));
    assert_eq!(old["groups"], json!([]));

    let custom = json!({
        "tenant": "acme",
        "tier": 3,
        "features": { "beta": true, "limits": [1, 2, 3] },
        "nickname": "Ada ✓",
    });
    json_ok(
        app.patch_user(
            token,
            &user.id,
            &json!({ "is_staff": true, "groups": ["zeta", "alpha"], "claims": custom }),
        )
        .await,
        200,
    )
    .await;

    // The token issued before the change is what it was.
    assert_eq!(verify_offline(&app, &user.access_token).await, old);

    let check = |claims: &Value| {
        assert_eq!(claims["sub"], json!(user.id), "{claims}");
        assert_eq!(claims["token_type"], json!("access"), "{claims}");
        assert_eq!(claims["username"], json!(user.username), "{claims}");
        assert_eq!(claims["email"], json!(user.email), "{claims}");
        assert_eq!(claims["is_staff"], json!(true), "{claims}");
        assert_eq!(
            claims["groups"],
            json!(["alpha", "zeta"]),
            "sorted: {claims}"
        );
        for (key, value) in custom.as_object().expect("object") {
            assert_eq!(&claims[key], value, "custom claim `{key}`: {claims}");
        }
        assert!(
            claims.get("claims").is_none(),
            "merged at top level: {claims}"
        );
    };
    // Next token from a refresh…
    let refreshed = json_ok(app.refresh(&user.refresh_token).await, 200).await;
    let refreshed_access = str_field(&refreshed, "access_token");
    check(&verify_offline(&app, &refreshed_access).await);
    // …and from a new login.
    let login = user.login_again(&app).await;
    check(&verify_offline(&app, &str_field(&login, "access_token")).await);
    // Refresh tokens are for latchkey alone (API.md v2): it verifies them, the JWKS cannot.
    let verified = json_ok(app.verify(&str_field(&login, "refresh_token")).await, 200).await;
    let refresh_claims = &verified["claims"];
    assert_eq!(refresh_claims["token_type"], json!("refresh"));
    assert!(
        refresh_claims.get("tenant").is_none(),
        "custom claims ride in access tokens: {refresh_claims}"
    );
    // The service's own verification agrees.
    let verified = json_ok(app.verify(&refreshed_access).await, 200).await;
    assert_eq!(verified["claims"]["tenant"], json!("acme"), "{verified}");

    // Taking everything away shows in the next token too.
    json_ok(
        app.patch_user(
            token,
            &user.id,
            &json!({ "is_staff": false, "groups": [], "claims": {} }),
        )
        .await,
        200,
    )
    .await;
    let again = user.login_again(&app).await;
    let claims = verify_offline(&app, &str_field(&again, "access_token")).await;
    assert_eq!(claims["is_staff"], json!(false), "{claims}");
    assert_eq!(claims["groups"], json!([]), "{claims}");
    for key in ["tenant", "tier", "features", "nickname"] {
        assert!(claims.get(key).is_none(), "`{key}` removed: {claims}");
    }
}

async fn delete_user_removes_the_account_and_its_tokens(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    let second = user.login_again(&app).await;
    let token = &staff.access_token;
    json_ok(app.create_group(token, "editors").await, 201).await;
    json_ok(
        app.patch_user(token, &user.id, &json!({ "groups": ["editors"] }))
            .await,
        200,
    )
    .await;

    assert_status(app.delete_user(token, &user.id).await, 204).await;

    assert_problem(app.get_user(token, &user.id).await, 404, "not_found").await;
    assert_problem(app.delete_user(token, &user.id).await, 404, "not_found").await;
    assert_problem(app.get_me(&user.access_token).await, 401, "token_invalid").await;
    for refresh in [
        user.refresh_token.clone(),
        str_field(&second, "refresh_token"),
    ] {
        assert_problem_one_of(
            app.refresh(&refresh).await,
            401,
            &["token_invalid", "token_revoked"],
        )
        .await;
    }
    assert_problem(
        app.login_username(&user.username, &user.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    let list = app.list_users_json(token, "").await;
    assert_eq!(ids(&list), [staff.id.as_str()]);
    let groups = json_ok(app.list_groups(token).await, 200).await;
    assert_eq!(groups, json!([{ "name": "editors", "member_count": 0 }]));
    for id in ["not-a-uuid".to_owned(), uuid::Uuid::now_v7().to_string()] {
        assert_problem(app.delete_user(token, &id).await, 404, "not_found").await;
    }
}

// ---------------------------------------------------------------------------------
// Staff safeguards
// ---------------------------------------------------------------------------------

async fn staff_cannot_demote_or_deactivate_themselves(backend: Backend) {
    let app = quick_app(backend).await;
    let a = TestUser::create_staff(&app).await;
    // A second staff user: the refusal is about "self", not about "last".
    let b = TestUser::create_staff(&app).await;
    let before = app.get_user_json(&a.access_token, &a.id).await;

    for (field, body) in [
        ("is_staff", json!({ "is_staff": false })),
        ("is_active", json!({ "is_active": false })),
        (
            "is_staff",
            json!({ "is_staff": false, "first_name": "Ada" }),
        ),
        ("is_active", json!({ "is_active": false, "bio": "leaving" })),
    ] {
        assert_validation_error(
            app.patch_user(&a.access_token, &a.id, &body).await,
            &[field],
        )
        .await;
    }
    assert_eq!(app.get_user_json(&a.access_token, &a.id).await, before);
    assert_still_staff(&app, &a).await;
    json_ok(app.refresh(&a.refresh_token).await, 200).await;

    // Other changes to oneself are fine, including a no-op on the protected flags.
    let patched = json_ok(
        app.patch_user(
            &a.access_token,
            &a.id,
            &json!({ "first_name": "Ada", "is_staff": true, "is_active": true }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(patched["first_name"], json!("Ada"));
    assert_eq!(patched["is_staff"], json!(true));

    // B may do to A what A may not do to itself.
    let demoted = json_ok(
        app.patch_user(&b.access_token, &a.id, &json!({ "is_staff": false }))
            .await,
        200,
    )
    .await;
    assert_eq!(demoted["is_staff"], json!(false));
}

async fn last_active_staff_user_cannot_be_deleted(backend: Backend) {
    let app = quick_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;

    assert_problem(
        app.delete_user(&staff.access_token, &staff.id).await,
        403,
        "permission_denied",
    )
    .await;
    assert_problem(
        app.delete_me(
            &staff.access_token,
            &json!({ "current_password": staff.password }),
        )
        .await,
        403,
        "permission_denied",
    )
    .await;
    assert_still_staff(&app, &staff).await;
    json_ok(app.refresh(&staff.refresh_token).await, 200).await;

    // Deleting a non-staff user is fine, and changes nothing about the last staff user.
    assert_status(app.delete_user(&staff.access_token, &user.id).await, 204).await;
    assert_problem(
        app.delete_user(&staff.access_token, &staff.id).await,
        403,
        "permission_denied",
    )
    .await;

    // A second staff user who is then demoted leaves the first one the last again.
    let other = TestUser::create_staff(&app).await;
    json_ok(
        app.patch_user(
            &staff.access_token,
            &other.id,
            &json!({ "is_staff": false }),
        )
        .await,
        200,
    )
    .await;
    assert_problem(
        app.delete_user(&staff.access_token, &staff.id).await,
        403,
        "permission_denied",
    )
    .await;
    // A non-staff user deleting their own account is unaffected by the rule.
    assert_status(
        app.delete_me(
            &other.access_token,
            &json!({ "current_password": other.password }),
        )
        .await,
        204,
    )
    .await;
    let list = app.list_users_json(&staff.access_token, "").await;
    assert_eq!(ids(&list), [staff.id.as_str()]);
}

async fn staff_may_demote_and_delete_other_staff_and_themselves(backend: Backend) {
    let app = quick_app(backend).await;
    let a = TestUser::create_staff(&app).await;
    let b = TestUser::create_staff(&app).await;
    let c = TestUser::create_staff(&app).await;

    // A deletes C (another staff user).
    assert_status(app.delete_user(&a.access_token, &c.id).await, 204).await;
    assert_problem(app.get_me(&c.access_token).await, 401, "token_invalid").await;

    // With B still staff, A may delete itself.
    assert_status(app.delete_user(&a.access_token, &a.id).await, 204).await;
    assert_problem(app.get_me(&a.access_token).await, 401, "token_invalid").await;
    assert_problem(app.get_user(&b.access_token, &a.id).await, 404, "not_found").await;

    // B is now the last staff user: neither route deletes it.
    assert_problem(
        app.delete_user(&b.access_token, &b.id).await,
        403,
        "permission_denied",
    )
    .await;
    assert_problem(
        app.delete_me(&b.access_token, &json!({ "current_password": b.password }))
            .await,
        403,
        "permission_denied",
    )
    .await;

    // With another staff user, deletion through /users/me works again.
    let d = TestUser::create_staff(&app).await;
    assert_status(
        app.delete_me(&b.access_token, &json!({ "current_password": b.password }))
            .await,
        204,
    )
    .await;
    let list = app.list_users_json(&d.access_token, "").await;
    assert_eq!(ids(&list), [d.id.as_str()]);
}

async fn inactive_staff_do_not_count_as_remaining_staff(backend: Backend) {
    let app = quick_app(backend).await;
    let a = TestUser::create_staff(&app).await;
    let b = TestUser::create_staff(&app).await;

    json_ok(
        app.patch_user(&a.access_token, &b.id, &json!({ "is_active": false }))
            .await,
        200,
    )
    .await;
    // B is still staff but inactive: A is the last *active* staff user.
    assert_eq!(
        app.get_user_json(&a.access_token, &b.id).await["is_staff"],
        json!(true)
    );
    assert_problem(
        app.delete_user(&a.access_token, &a.id).await,
        403,
        "permission_denied",
    )
    .await;
    assert_problem(
        app.delete_me(&a.access_token, &json!({ "current_password": a.password }))
            .await,
        403,
        "permission_denied",
    )
    .await;

    json_ok(
        app.patch_user(&a.access_token, &b.id, &json!({ "is_active": true }))
            .await,
        200,
    )
    .await;
    assert_status(app.delete_user(&a.access_token, &a.id).await, 204).await;
    let relogin = json_ok(app.login_username(&b.username, &b.password).await, 200).await;
    let list = app
        .list_users_json(&str_field(&relogin, "access_token"), "")
        .await;
    assert_eq!(ids(&list), [b.id.as_str()]);
}
