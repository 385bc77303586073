//! Browser sessions (API.md v2, "Browser sessions"): the refresh token in an HttpOnly
//! cookie with `X-Token-Transport: cookie`, the CSRF rule for whatever uses that cookie,
//! clearing it when it is of no more use, and several tabs refreshing one cookie at once.

use actix_web::cookie::{Cookie, SameSite};
use futures::future::join_all;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, NEW_PASSWORD, PUBLIC_URL, STRONG_PASSWORD, TestApp, TestUser, assert_problem, header,
    json_ok, jwt_claims, registration, spawn_app, spawn_app_with, str_field, unique_username,
};

dual_backend_tests!(
    cookie_transport_sets_an_httponly_cookie_and_leaves_the_token_out_of_the_body,
    the_cookie_follows_the_cookie_settings,
    refresh_and_logout_use_the_cookie_when_the_body_has_none,
    a_token_in_the_body_wins_over_the_cookie,
    the_cookie_is_not_used_without_the_header,
    the_cookie_is_not_used_from_a_foreign_origin,
    a_failed_cookie_refresh_clears_the_cookie,
    concurrent_cookie_refreshes_all_get_the_same_cookie,
    every_token_pair_endpoint_takes_the_cookie_transport,
    preflights_from_allowed_origins_accept_the_header_with_credentials,
    the_browser_client_is_served,
);

const COOKIE: &str = "latchkey_refresh";
const TRANSPORT: &str = "x-token-transport";
const FOREIGN: &str = "https://evil.example";

/// A `POST path` as a browser page would send it: with the refresh cookie, the transport
/// header and an `Origin` when given, and no body unless one is given.
struct Post<'a> {
    path: &'a str,
    cookie: Option<&'a str>,
    transport: Option<&'a str>,
    origin: Option<&'a str>,
    body: Option<Value>,
}

impl<'a> Post<'a> {
    /// From the page itself: the header and the cookie, no `Origin`.
    fn cookie(path: &'a str, cookie: &'a str) -> Self {
        Self {
            path,
            cookie: Some(cookie),
            transport: Some("cookie"),
            origin: None,
            body: None,
        }
    }

    async fn send(self, app: &TestApp) -> Response {
        let mut req = app.client.post(app.url(self.path));
        if let Some(value) = self.cookie {
            req = req.header("cookie", format!("other=1; {COOKIE}={value}"));
        }
        if let Some(transport) = self.transport {
            req = req.header(TRANSPORT, transport);
        }
        if let Some(origin) = self.origin {
            req = req.header("origin", origin);
        }
        if let Some(body) = self.body {
            req = req.json(&body);
        }
        req.send().await.expect("request failed")
    }
}

async fn cookie_login(app: &TestApp, user: &TestUser) -> Response {
    app.client
        .post(app.url("/auth/login"))
        .header(TRANSPORT, "cookie")
        .json(&json!({"username": user.username, "password": user.password}))
        .send()
        .await
        .expect("request failed")
}

/// The one refresh cookie the response sets (by `name`).
fn set_cookie_named(resp: &Response, name: &str) -> Cookie<'static> {
    let cookies: Vec<Cookie<'static>> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| Cookie::parse(v.to_str().expect("ASCII").to_owned()).expect("a cookie"))
        .filter(|c| c.name() == name)
        .collect();
    assert_eq!(
        cookies.len(),
        1,
        "one {name} cookie in {:?}",
        resp.headers()
    );
    cookies.into_iter().next().expect("one")
}

fn set_cookie(resp: &Response) -> Cookie<'static> {
    set_cookie_named(resp, COOKIE)
}

fn assert_no_set_cookie(resp: &Response) {
    assert!(
        resp.headers().get("set-cookie").is_none(),
        "no Set-Cookie expected on {} {}: {:?}",
        resp.status(),
        resp.url(),
        resp.headers()
    );
}

/// The cookie of a token pair: `HttpOnly; Secure; SameSite=Strict; Path=/auth`, no
/// `Domain`, for the refresh token's lifetime.
fn assert_refresh_cookie(cookie: &Cookie<'_>) {
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(cookie.secure(), Some(true), "{cookie}");
    assert_eq!(cookie.same_site(), Some(SameSite::Strict), "{cookie}");
    assert_eq!(cookie.path(), Some("/auth"), "{cookie}");
    assert_eq!(cookie.domain(), None, "host-only: {cookie}");
    let max_age = cookie.max_age().expect("Max-Age").whole_seconds();
    assert_eq!(max_age, 14 * 24 * 3600, "{cookie}");
    assert_eq!(jwt_claims(cookie.value())["token_type"], "refresh");
}

/// A cleared refresh cookie: same name and path, empty, `Max-Age=0`.
fn assert_cleared(resp: &Response) {
    let cookie = set_cookie(resp);
    assert_eq!(cookie.value(), "", "{cookie}");
    assert_eq!(cookie.path(), Some("/auth"), "{cookie}");
    assert_eq!(
        cookie.max_age().map(|a| a.whole_seconds()),
        Some(0),
        "{cookie}"
    );
}

/// The body of a token pair delivered by cookie: no `refresh_token`, the rest as usual.
fn assert_pair_without_refresh_token(body: &Value) {
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh_token: {body}"
    );
    assert_eq!(
        jwt_claims(&str_field(body, "access_token"))["token_type"],
        "access"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["refresh_expires_in"], 14 * 24 * 3600);
    assert!(
        body["expires_in"].is_u64() && body["user"]["id"].is_string(),
        "{body}"
    );
}

/// Whether a refresh token is still the live one of its family.
async fn is_live(app: &TestApp, refresh: &str) -> bool {
    match app.verify(refresh).await.status().as_u16() {
        200 => true,
        401 => false,
        other => panic!("verify answered {other}"),
    }
}

async fn cookie_transport_sets_an_httponly_cookie_and_leaves_the_token_out_of_the_body(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    let resp = cookie_login(&app, &user).await;
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    let cookie = set_cookie(&resp);
    assert_refresh_cookie(&cookie);
    let body = json_ok(resp, 200).await;
    assert_pair_without_refresh_token(&body);
    assert!(
        is_live(&app, cookie.value()).await,
        "the cookie holds a live token"
    );

    // Without the header, or with `body`, the token is in the body and no cookie is set.
    for transport in [None, Some("body"), Some("BODY")] {
        let mut req = app.client.post(app.url("/auth/login"));
        if let Some(t) = transport {
            req = req.header(TRANSPORT, t);
        }
        let resp = req
            .json(&json!({"username": user.username, "password": user.password}))
            .send()
            .await
            .expect("request failed");
        assert_no_set_cookie(&resp);
        assert!(json_ok(resp, 200).await["refresh_token"].is_string());
    }

    // Any other value is an error, and logs nobody in.
    let resp = app
        .client
        .post(app.url("/auth/login"))
        .header(TRANSPORT, "cookies")
        .json(&json!({"username": user.username, "password": user.password}))
        .send()
        .await
        .expect("request failed");
    assert_no_set_cookie(&resp);
    assert_problem(resp, 400, "malformed_request").await;
}

async fn the_cookie_follows_the_cookie_settings(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.cookies.name = "__Secure-rt".into();
        s.cookies.path = "/".into();
        s.cookies.domain = Some("latchkey.test".into());
        s.cookies.same_site = latchkey::config::SameSite::None;
    })
    .await;
    let user = TestUser::create(&app).await;
    let resp = cookie_login(&app, &user).await;
    let cookie = set_cookie_named(&resp, "__Secure-rt");
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), Some("latchkey.test"));
    assert_eq!(cookie.same_site(), Some(SameSite::None));
    assert_eq!(cookie.secure(), Some(true), "SameSite=None needs Secure");
    assert_eq!(cookie.http_only(), Some(true));

    // The configured name is the one read back.
    let resp = app
        .client
        .post(app.url("/auth/token/refresh"))
        .header(TRANSPORT, "cookie")
        .header("cookie", format!("__Secure-rt={}", cookie.value()))
        .send()
        .await
        .expect("request failed");
    let rotated = set_cookie_named(&resp, "__Secure-rt");
    json_ok(resp, 200).await;
    assert_ne!(rotated.value(), cookie.value());
    let resp = Post::cookie("/auth/token/refresh", rotated.value())
        .send(&app)
        .await;
    assert_problem(resp, 401, "token_invalid").await;
}

async fn refresh_and_logout_use_the_cookie_when_the_body_has_none(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let first = set_cookie(&cookie_login(&app, &user).await);

    // No body at all.
    let resp = Post::cookie("/auth/token/refresh", first.value())
        .send(&app)
        .await;
    let second = set_cookie(&resp);
    assert_refresh_cookie(&second);
    assert_pair_without_refresh_token(&json_ok(resp, 200).await);
    assert_ne!(second.value(), first.value(), "rotated");
    assert!(
        !is_live(&app, first.value()).await,
        "the old token is spent"
    );

    // `{}`.
    let resp = Post {
        body: Some(json!({})),
        ..Post::cookie("/auth/token/refresh", second.value())
    }
    .send(&app)
    .await;
    let third = set_cookie(&resp);
    json_ok(resp, 200).await;
    let fam = jwt_claims(third.value())["fam"].clone();
    assert_eq!(fam, jwt_claims(first.value())["fam"], "one family");

    // Logout through the cookie: the family is revoked and the cookie cleared.
    let resp = Post::cookie("/auth/logout", third.value()).send(&app).await;
    assert_eq!(resp.status(), 204);
    assert_cleared(&resp);
    assert!(!is_live(&app, third.value()).await, "revoked");
    let resp = Post::cookie("/auth/token/refresh", third.value())
        .send(&app)
        .await;
    assert_cleared(&resp);
    assert_problem(resp, 401, "token_revoked").await;

    // Logging out again, or with no cookie left, is still 204 and clears the cookie.
    for cookie in [Some(third.value()), None] {
        let resp = Post {
            cookie,
            ..Post::cookie("/auth/logout", "")
        }
        .send(&app)
        .await;
        assert_eq!(resp.status(), 204);
        assert_cleared(&resp);
    }

    // Without the cookie transport and without a token, v1's validation error stands.
    let resp = Post {
        transport: None,
        cookie: None,
        ..Post::cookie("/auth/logout", "")
    }
    .send(&app)
    .await;
    assert_problem(resp, 400, "validation_failed").await;
}

async fn a_token_in_the_body_wins_over_the_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let in_cookie = set_cookie(&cookie_login(&app, &user).await);
    let in_body = user.refresh_token.clone();

    let resp = Post {
        body: Some(json!({"refresh_token": in_body})),
        ..Post::cookie("/auth/token/refresh", in_cookie.value())
    }
    .send(&app)
    .await;
    let rotated = set_cookie(&resp);
    json_ok(resp, 200).await;
    assert_eq!(
        jwt_claims(rotated.value())["fam"],
        jwt_claims(&in_body)["fam"],
        "the body's family was rotated"
    );
    assert!(!is_live(&app, &in_body).await);
    assert!(
        is_live(&app, in_cookie.value()).await,
        "the cookie's is untouched"
    );

    // Logout too: the body's family goes, the cookie's stays (and is not cleared).
    let second = str_field(&user.login_again(&app).await, "refresh_token");
    let resp = Post {
        body: Some(json!({"refresh_token": second})),
        ..Post::cookie("/auth/logout", in_cookie.value())
    }
    .send(&app)
    .await;
    assert_eq!(resp.status(), 204);
    assert_no_set_cookie(&resp);
    assert!(!is_live(&app, &second).await);
    assert!(is_live(&app, in_cookie.value()).await);
}

/// `csrf_failed` changed nothing: the token is still live, unrotated, and its next
/// legitimate refresh rotates it normally (it was not counted as used).
async fn assert_untouched(app: &TestApp, refresh: &str) {
    assert!(is_live(app, refresh).await, "still live");
    let resp = Post::cookie("/auth/token/refresh", refresh).send(app).await;
    assert_eq!(resp.status(), 200, "a legitimate refresh still works");
}

async fn the_cookie_is_not_used_without_the_header(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    for path in ["/auth/token/refresh", "/auth/logout"] {
        let cookie = set_cookie(&cookie_login(&app, &user).await);
        for transport in [None, Some("body")] {
            for body in [None, Some(json!({}))] {
                let resp = Post {
                    transport,
                    body,
                    ..Post::cookie(path, cookie.value())
                }
                .send(&app)
                .await;
                assert_no_set_cookie(&resp);
                assert_problem(resp, 403, "csrf_failed").await;
            }
        }
        assert_untouched(&app, cookie.value()).await;
    }
}

async fn the_cookie_is_not_used_from_a_foreign_origin(backend: Backend) {
    const ALLOWED: &str = "https://app.example";
    let app = spawn_app_with(backend, |s| {
        s.cors.allowed_origins = vec![ALLOWED.into()];
    })
    .await;
    let user = TestUser::create(&app).await;
    let cookie = set_cookie(&cookie_login(&app, &user).await);

    // A foreign page, a sandboxed frame (`null`), a look-alike of an allowed origin.
    for origin in [
        FOREIGN,
        "null",
        "https://app.example.evil",
        "http://app.example",
    ] {
        for path in ["/auth/token/refresh", "/auth/logout"] {
            let resp = Post {
                origin: Some(origin),
                ..Post::cookie(path, cookie.value())
            }
            .send(&app)
            .await;
            assert_no_set_cookie(&resp);
            assert_problem(resp, 403, "csrf_failed").await;
        }
        // Nor may a foreign page plant a session (login CSRF).
        let resp = app
            .client
            .post(app.url("/auth/login"))
            .header(TRANSPORT, "cookie")
            .header("origin", origin)
            .json(&json!({"username": user.username, "password": user.password}))
            .send()
            .await
            .expect("request failed");
        assert_no_set_cookie(&resp);
        assert_problem(resp, 403, "csrf_failed").await;
    }
    assert!(
        is_live(&app, cookie.value()).await,
        "nothing rotated or revoked"
    );

    // The service's own origin and the allowed one are served.
    let mut current = cookie.value().to_owned();
    for origin in [PUBLIC_URL, ALLOWED] {
        let resp = Post {
            origin: Some(origin),
            ..Post::cookie("/auth/token/refresh", &current)
        }
        .send(&app)
        .await;
        assert_eq!(resp.status(), 200, "from {origin}");
        current = set_cookie(&resp).value().to_owned();
        if origin == ALLOWED {
            assert_eq!(
                header(&resp, "access-control-allow-origin").as_deref(),
                Some(ALLOWED)
            );
            assert_eq!(
                header(&resp, "access-control-allow-credentials").as_deref(),
                Some("true")
            );
        }
    }
}

async fn a_failed_cookie_refresh_clears_the_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    // Forged.
    let resp = Post::cookie("/auth/token/refresh", "not.a.jwt")
        .send(&app)
        .await;
    assert_cleared(&resp);
    assert_problem(resp, 401, "token_invalid").await;
    // An access token where the refresh token belongs.
    let resp = Post::cookie("/auth/token/refresh", &user.access_token)
        .send(&app)
        .await;
    assert_cleared(&resp);
    assert_problem(resp, 401, "token_invalid").await;

    // Reused: an ancestor two rotations back revokes the family.
    let first = set_cookie(&cookie_login(&app, &user).await);
    let second = set_cookie(
        &Post::cookie("/auth/token/refresh", first.value())
            .send(&app)
            .await,
    );
    let third = set_cookie(
        &Post::cookie("/auth/token/refresh", second.value())
            .send(&app)
            .await,
    );
    let resp = Post::cookie("/auth/token/refresh", first.value())
        .send(&app)
        .await;
    assert_cleared(&resp);
    assert_problem(resp, 401, "token_reused").await;
    assert!(!is_live(&app, third.value()).await, "the family is revoked");

    // Revoked by logout everywhere.
    let live = set_cookie(&cookie_login(&app, &user).await);
    assert_eq!(app.logout_all(&user.access_token).await.status(), 204);
    let resp = Post::cookie("/auth/token/refresh", live.value())
        .send(&app)
        .await;
    assert_cleared(&resp);
    assert_problem(resp, 401, "token_revoked").await;

    // The header and no cookie: nothing to refresh (an SPA loading signed out).
    let resp = Post {
        cookie: None,
        ..Post::cookie("/auth/token/refresh", "")
    }
    .send(&app)
    .await;
    assert_problem(resp, 401, "token_invalid").await;

    // A failure of a token from the body leaves the cookie alone.
    let resp = Post {
        body: Some(json!({"refresh_token": "not.a.jwt"})),
        ..Post::cookie("/auth/token/refresh", live.value())
    }
    .send(&app)
    .await;
    assert_no_set_cookie(&resp);
    assert_problem(resp, 401, "token_invalid").await;
}

async fn concurrent_cookie_refreshes_all_get_the_same_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let shared = set_cookie(&cookie_login(&app, &user).await);

    // Eight tabs refresh the one cookie at once.
    let responses =
        join_all((0..8).map(|_| Post::cookie("/auth/token/refresh", shared.value()).send(&app)))
            .await;
    let mut values = Vec::new();
    for resp in responses {
        let cookie = set_cookie(&resp);
        json_ok(resp, 200).await;
        values.push(cookie.value().to_owned());
    }
    values.dedup();
    assert_eq!(values.len(), 1, "every tab got the same cookie: {values:?}");
    let current = &values[0];
    assert_ne!(current, shared.value());
    assert!(is_live(&app, current).await);
    assert!(
        !is_live(&app, shared.value()).await,
        "one live token in the family"
    );

    // Whichever response the jar kept, the next refresh works.
    let resp = Post::cookie("/auth/token/refresh", current)
        .send(&app)
        .await;
    assert_eq!(resp.status(), 200);
}

async fn every_token_pair_endpoint_takes_the_cookie_transport(backend: Backend) {
    // Registration logs in at once when verification is off.
    let app = spawn_app_with(backend.clone(), |s| {
        s.accounts.require_email_verification = false;
    })
    .await;
    let username = unique_username();
    let resp = app
        .client
        .post(app.url("/auth/register"))
        .header(TRANSPORT, "cookie")
        .json(&registration(
            &username,
            &format!("{username}@example.com"),
            STRONG_PASSWORD,
        ))
        .send()
        .await
        .expect("request failed");
    assert_refresh_cookie(&set_cookie(&resp));
    let pair = json_ok(resp, 201).await;
    assert_pair_without_refresh_token(&pair);

    // A password change.
    let access = str_field(&pair, "access_token");
    let resp = app
        .bearer(Method::POST, "/users/me/password", &access)
        .header(TRANSPORT, "cookie")
        .json(&json!({
            "current_password": STRONG_PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        }))
        .send()
        .await
        .expect("request failed");
    assert_refresh_cookie(&set_cookie(&resp));
    assert_pair_without_refresh_token(&json_ok(resp, 200).await);

    // Activation through the emailed link.
    let app = spawn_app(backend).await;
    let username = unique_username();
    let email = format!("{username}@example.com");
    json_ok(
        app.register(&registration(&username, &email, STRONG_PASSWORD))
            .await,
        201,
    )
    .await;
    let link = app.emailed_link(&email, "/activate/").await;
    let resp = app
        .client
        .post(app.url("/auth/activate"))
        .header(TRANSPORT, "cookie")
        .json(&json!({"uid": link.uid, "token": link.token}))
        .send()
        .await
        .expect("request failed");
    assert_refresh_cookie(&set_cookie(&resp));
    assert_pair_without_refresh_token(&json_ok(resp, 200).await);
}

async fn preflights_from_allowed_origins_accept_the_header_with_credentials(backend: Backend) {
    const ALLOWED: &str = "https://app.example";
    let app = spawn_app_with(backend, |s| {
        s.cors.allowed_origins = vec![ALLOWED.into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/auth/token/refresh"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-token-transport",
            )
            .send()
    };
    let resp = preflight(ALLOWED).await.expect("request failed");
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(ALLOWED)
    );
    assert_eq!(
        header(&resp, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let allowed = header(&resp, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains(TRANSPORT), "allowed headers: {allowed}");

    let resp = preflight(FOREIGN).await.expect("request failed");
    assert!(
        header(&resp, "access-control-allow-origin").is_none(),
        "no CORS for a foreign origin"
    );
}

async fn the_browser_client_is_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.get("/sdk/latchkey.js").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        header(&resp, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    let body = resp.text().await.expect("body");
    assert_eq!(
        body,
        latchkey::console::SDK,
        "the embedded module, as built"
    );
    assert!(body.contains("export "), "an ES module");
}
