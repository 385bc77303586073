//! Two-factor login (API.md v2, "Two-factor login: TOTP and recovery codes"): enrolment,
//! the two login steps, replay and wrong-code rules, recovery codes, turning it off, the
//! staff and CLI resets, `mfa.required_for_staff`, and what the database keeps.
//!
//! Codes are computed here from the secret the enrolment answers, with a TOTP of the
//! test's own (RFC 6238 on aws-lc-rs's HMAC-SHA-1), not with the service's code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use diesel::sql_types::{Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, TestUser, assert_problem, assert_token_pair, assert_validation_error,
    json_ok, jwt_claims, output_text, spawn_app, spawn_app_with, str_field,
};

dual_backend_tests!(
    enrolment_then_login_in_two_steps,
    a_code_is_never_accepted_twice,
    five_wrong_codes_end_the_mfa_token,
    the_mfa_token_works_once_and_nowhere_else,
    a_recovery_code_works_once,
    new_recovery_codes_replace_the_old_ones,
    turning_it_off_ends_every_other_session,
    staff_remove_a_lost_device,
    the_cli_removes_a_lost_device,
    staff_endpoints_can_require_a_second_factor,
    enrolment_refusals,
    the_database_holds_no_secret_and_no_code,
    the_second_step_has_its_own_throttle,
    the_second_step_can_answer_with_the_refresh_cookie,
    a_password_change_ends_a_pending_second_step,
);

// ---------------------------------------------------------------------------------
// A TOTP of the test's own
// ---------------------------------------------------------------------------------

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.chars().filter(|c| *c != '=') {
        let value = ALPHABET.find(c).expect("base32 character") as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

fn hotp(secret: &[u8], counter: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &counter.to_be_bytes());
    let mac = mac.as_ref();
    let offset = (mac[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!("{:06}", binary % 1_000_000)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// An enrolled authenticator: codes for steps around the one the test started in. The
/// service accepts one step either way, so a test has three fresh codes (offsets -1, 0,
/// 1, to be used in that order: an older step after a newer one is a replay).
struct Authenticator {
    secret: Vec<u8>,
    base: u64,
}

impl Authenticator {
    /// Waits, if needed, so that at least 12 s of the current step remain: the service
    /// then sees the same step as `base` for the rest of the test.
    async fn new(secret: Vec<u8>) -> Self {
        let into_step = unix_now() % 30;
        if into_step >= 18 {
            tokio::time::sleep(Duration::from_secs(30 - into_step) + Duration::from_millis(200))
                .await;
        }
        Self {
            secret,
            base: unix_now() / 30,
        }
    }

    fn code(&self, offset: i64) -> String {
        hotp(
            &self.secret,
            self.base.checked_add_signed(offset).expect("step"),
        )
    }

    /// A six-digit code that is none of the three the service would accept.
    fn wrong_code(&self) -> String {
        let valid = [self.code(-1), self.code(0), self.code(1)];
        (0..)
            .map(|n| format!("{:06}", 123_456 + n))
            .find(|c| !valid.contains(c))
            .expect("a wrong code")
    }
}

// ---------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------

async fn call(app: &TestApp, method: Method, path: &str, token: &str, body: &Value) -> Response {
    app.bearer(method, path, token)
        .json(body)
        .send()
        .await
        .expect("request failed")
}

async fn start_enrolment(app: &TestApp, user: &TestUser) -> Response {
    call(
        app,
        Method::POST,
        "/users/me/mfa/totp",
        &user.access_token,
        &json!({"current_password": user.password}),
    )
    .await
}

async fn confirm(app: &TestApp, token: &str, code: &str) -> Response {
    call(
        app,
        Method::POST,
        "/users/me/mfa/totp/confirm",
        token,
        &json!({"code": code}),
    )
    .await
}

async fn status(app: &TestApp, token: &str) -> Value {
    let resp = app
        .bearer(Method::GET, "/users/me/mfa", token)
        .send()
        .await
        .expect("request failed");
    json_ok(resp, 200).await
}

/// Turns TOTP on for `user` (confirming with the code of step -1): the authenticator and
/// the recovery codes.
async fn enable(app: &TestApp, user: &TestUser) -> (Authenticator, Vec<String>) {
    let enrolment = json_ok(start_enrolment(app, user).await, 200).await;
    let auth = Authenticator::new(base32_decode(&str_field(&enrolment, "secret"))).await;
    let body = json_ok(confirm(app, &user.access_token, &auth.code(-1)).await, 200).await;
    let codes = body["recovery_codes"]
        .as_array()
        .expect("recovery_codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    (auth, codes)
}

/// The first step of a login with TOTP on: the `mfa_token`.
async fn password_step(app: &TestApp, user: &TestUser) -> String {
    let body = json_ok(
        app.login_username(&user.username, &user.password).await,
        200,
    )
    .await;
    assert_eq!(body["mfa_required"], json!(true), "{body}");
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]), "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    str_field(&body, "mfa_token")
}

async fn code_step(app: &TestApp, mfa_token: &str, code: &str) -> Response {
    app.post_json(
        "/auth/login/mfa",
        &json!({"mfa_token": mfa_token, "code": code}),
    )
    .await
}

/// Both steps: the token pair.
async fn login_with(app: &TestApp, user: &TestUser, code: &str) -> Value {
    let mfa_token = password_step(app, user).await;
    let pair = json_ok(code_step(app, &mfa_token, code).await, 200).await;
    assert_token_pair(&pair);
    pair
}

fn assert_amr(pair: &Value, amr: Value) {
    assert_eq!(jwt_claims(&str_field(pair, "access_token"))["amr"], amr);
}

// ---------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------

async fn enrolment_then_login_in_two_steps(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let before = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(before["mfa_enabled"], json!(false));

    let enrolment = json_ok(start_enrolment(&app, &user).await, 200).await;
    let secret = str_field(&enrolment, "secret");
    let uri = str_field(&enrolment, "otpauth_uri");
    assert!(
        uri.starts_with(&format!("otpauth://totp/latchkey:{}?", user.username)),
        "{uri}"
    );
    for part in [
        format!("secret={secret}"),
        "issuer=latchkey".into(),
        "algorithm=SHA1".into(),
        "digits=6".into(),
        "period=30".into(),
    ] {
        assert!(uri.contains(&part), "{uri} lacks {part}");
    }
    assert!(
        str_field(&enrolment, "qr_svg").contains("<svg"),
        "{enrolment}"
    );
    // Pending only: login is unchanged until the confirmation.
    assert_eq!(
        status(&app, &user.access_token).await,
        json!({"totp": false, "recovery_codes_left": 0})
    );
    assert_token_pair(&user.login_again(&app).await);

    let auth = Authenticator::new(base32_decode(&secret)).await;
    let body = json_ok(confirm(&app, &user.access_token, &auth.code(-1)).await, 200).await;
    let codes = body["recovery_codes"].as_array().expect("codes");
    assert_eq!(codes.len(), 10, "{body}");
    assert_eq!(
        status(&app, &user.access_token).await,
        json!({"totp": true, "recovery_codes_left": 10})
    );
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(me["mfa_enabled"], json!(true));
    let last_login = me["last_login"].clone();

    // The password alone: no tokens, and `last_login` stays.
    let mfa_token = password_step(&app, &user).await;
    let me = json_ok(app.get_me(&user.access_token).await, 200).await;
    assert_eq!(me["last_login"], last_login);

    let pair = json_ok(code_step(&app, &mfa_token, &auth.code(0)).await, 200).await;
    assert_token_pair(&pair);
    assert_eq!(pair["user"]["mfa_enabled"], json!(true));
    assert_amr(&pair, json!(["pwd", "otp"]));
    assert_ne!(pair["user"]["last_login"], last_login);
    // The session keeps its `amr` across refreshes.
    let refreshed = json_ok(app.refresh(&str_field(&pair, "refresh_token")).await, 200).await;
    assert_amr(&refreshed, json!(["pwd", "otp"]));
}

async fn a_code_is_never_accepted_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let (auth, _) = enable(&app, &user).await;
    login_with(&app, &user, &auth.code(0)).await;

    // The same step again, and an older one, are refused...
    let mfa_token = password_step(&app, &user).await;
    let body =
        assert_validation_error(code_step(&app, &mfa_token, &auth.code(0)).await, &["code"]).await;
    assert!(body["errors"].get("mfa_token").is_none(), "{body}");
    assert_validation_error(code_step(&app, &mfa_token, &auth.code(-1)).await, &["code"]).await;
    // ... and a newer one, within the skew allowed, is fine.
    let pair = json_ok(code_step(&app, &mfa_token, &auth.code(1)).await, 200).await;
    assert_amr(&pair, json!(["pwd", "otp"]));
}

async fn five_wrong_codes_end_the_mfa_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let (auth, _) = enable(&app, &user).await;
    let mfa_token = password_step(&app, &user).await;
    for _ in 0..5 {
        assert_validation_error(
            code_step(&app, &mfa_token, &auth.wrong_code()).await,
            &["code"],
        )
        .await;
    }
    assert_problem(
        code_step(&app, &mfa_token, &auth.code(0)).await,
        401,
        "token_invalid",
    )
    .await;
    // A new password step starts over.
    login_with(&app, &user, &auth.code(0)).await;
}

async fn the_mfa_token_works_once_and_nowhere_else(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let (auth, _) = enable(&app, &user).await;
    let mfa_token = password_step(&app, &user).await;

    // Not an access token, nor a refresh token, nor anything `verify` accepts.
    assert_problem(app.get_me(&mfa_token).await, 401, "token_invalid").await;
    assert_problem(app.verify(&mfa_token).await, 401, "token_invalid").await;
    assert_problem(app.refresh(&mfa_token).await, 401, "token_invalid").await;
    let resp = app
        .bearer(Method::GET, "/users/me/mfa", &mfa_token)
        .send()
        .await
        .expect("request failed");
    assert_problem(resp, 401, "token_invalid").await;

    json_ok(code_step(&app, &mfa_token, &auth.code(0)).await, 200).await;
    assert_problem(
        code_step(&app, &mfa_token, &auth.code(1)).await,
        401,
        "token_invalid",
    )
    .await;
    assert_problem(
        code_step(&app, "not-a-token", &auth.code(1)).await,
        401,
        "token_invalid",
    )
    .await;
    // A missing field is a validation error, not a token problem.
    let resp = app
        .post_json("/auth/login/mfa", &json!({"code": auth.code(1)}))
        .await;
    assert_validation_error(resp, &["mfa_token"]).await;
}

/// An `mfa.token_ttl` of one second: the token is dead after it.
async fn expired_mfa_token(app: &TestApp, user: &TestUser, auth: &Authenticator) {
    let mfa_token = password_step(app, user).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_problem(
        code_step(app, &mfa_token, &auth.code(0)).await,
        401,
        "token_invalid",
    )
    .await;
}

async fn a_recovery_code_works_once(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.mfa.token_ttl = Duration::from_secs(1)).await;
    let user = TestUser::create(&app).await;
    let (auth, codes) = enable(&app, &user).await;
    expired_mfa_token(&app, &user, &auth).await;

    let pair = login_with(&app, &user, &codes[0]).await;
    assert_amr(&pair, json!(["pwd", "otp"]));
    let token = str_field(&pair, "access_token");
    assert_eq!(status(&app, &token).await["recovery_codes_left"], json!(9));

    let mfa_token = password_step(&app, &user).await;
    assert_validation_error(code_step(&app, &mfa_token, &codes[0]).await, &["code"]).await;
    // Typed in capitals without the dash, it is still the code.
    let typed = codes[1].replace('-', "").to_uppercase();
    json_ok(code_step(&app, &mfa_token, &typed).await, 200).await;
    assert_eq!(status(&app, &token).await["recovery_codes_left"], json!(8));
}

async fn new_recovery_codes_replace_the_old_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let (auth, old) = enable(&app, &user).await;
    let path = "/users/me/mfa/recovery-codes";
    let wrong = call(
        &app,
        Method::POST,
        path,
        &user.access_token,
        &json!({"current_password": user.password, "code": auth.wrong_code()}),
    )
    .await;
    assert_validation_error(wrong, &["code"]).await;
    let resp = call(
        &app,
        Method::POST,
        path,
        &user.access_token,
        &json!({"current_password": user.password, "code": auth.code(0)}),
    )
    .await;
    let new = json_ok(resp, 200).await;
    let new: Vec<String> = new["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| !old.contains(c)));

    let mfa_token = password_step(&app, &user).await;
    assert_validation_error(code_step(&app, &mfa_token, &old[0]).await, &["code"]).await;
    json_ok(code_step(&app, &mfa_token, &new[0]).await, 200).await;
}

async fn turning_it_off_ends_every_other_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let (auth, codes) = enable(&app, &user).await;
    let current = login_with(&app, &user, &auth.code(0)).await;
    let token = str_field(&current, "access_token");

    let path = "/users/me/mfa/totp";
    let wrong_password = call(
        &app,
        Method::DELETE,
        path,
        &token,
        &json!({"current_password": "not the password", "code": codes[0]}),
    )
    .await;
    assert_validation_error(wrong_password, &["current_password"]).await;
    let resp = call(
        &app,
        Method::DELETE,
        path,
        &token,
        &json!({"current_password": user.password, "code": auth.code(1)}),
    )
    .await;
    assert_eq!(resp.status(), 204);

    assert_problem(app.refresh(&user.refresh_token).await, 401, "token_revoked").await;
    json_ok(
        app.refresh(&str_field(&current, "refresh_token")).await,
        200,
    )
    .await;
    assert_eq!(
        status(&app, &token).await,
        json!({"totp": false, "recovery_codes_left": 0})
    );
    let pair = user.login_again(&app).await;
    assert_token_pair(&pair);
    assert_eq!(pair["user"]["mfa_enabled"], json!(false));
    assert_amr(&pair, json!(["pwd"]));
    // Off already: nothing to turn off.
    let again = call(
        &app,
        Method::DELETE,
        path,
        &token,
        &json!({"current_password": user.password, "code": codes[1]}),
    )
    .await;
    assert_validation_error(again, &["non_field_errors"]).await;
}

async fn staff_remove_a_lost_device(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;
    let other = TestUser::create(&app).await;
    enable(&app, &user).await;
    let path = format!("/users/{}/mfa", user.id);

    let denied = app
        .request_as(Method::DELETE, &path, Some(&other.access_token), None)
        .await;
    assert_problem(denied, 403, "permission_denied").await;
    let missing = app
        .request_as(
            Method::DELETE,
            "/users/0190b3c4-6f1e-7a52-9d2c-3f4e5a6b7c8d/mfa",
            Some(&staff.access_token),
            None,
        )
        .await;
    assert_problem(missing, 404, "not_found").await;

    let resp = app
        .request_as(Method::DELETE, &path, Some(&staff.access_token), None)
        .await;
    assert_eq!(resp.status(), 204);
    assert_problem(app.refresh(&user.refresh_token).await, 401, "token_revoked").await;
    let pair = user.login_again(&app).await;
    assert_token_pair(&pair);
    assert_eq!(pair["user"]["mfa_enabled"], json!(false));
}

async fn the_cli_removes_a_lost_device(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    enable(&app, &user).await;
    password_step(&app, &user).await;

    let out = app
        .run_cli(&["users", "mfa-reset", &user.username], None)
        .await;
    assert!(out.status.success(), "{}", output_text(&out));
    assert_problem(app.refresh(&user.refresh_token).await, 401, "token_revoked").await;
    let pair = user.login_again(&app).await;
    assert_token_pair(&pair);
    assert_eq!(pair["user"]["mfa_enabled"], json!(false));

    let out = app
        .run_cli(&["users", "mfa-reset", "nobody-here"], None)
        .await;
    assert!(!out.status.success(), "{}", output_text(&out));
}

async fn staff_endpoints_can_require_a_second_factor(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.mfa.required_for_staff = true).await;
    let staff = TestUser::create_staff(&app).await;
    let user = TestUser::create(&app).await;

    // Authorization first: a non-staff caller is just not staff.
    let resp = app
        .request_as(Method::GET, "/users", Some(&user.access_token), None)
        .await;
    assert_problem(resp, 403, "permission_denied").await;
    // A staff member's password-only session is refused on every staff endpoint...
    for (method, path) in [
        (Method::GET, "/users".to_owned()),
        (Method::GET, format!("/users/{}", user.id)),
        (Method::GET, "/groups".to_owned()),
        (Method::GET, format!("/users/{}/sessions", user.id)),
        (Method::DELETE, format!("/users/{}/mfa", user.id)),
    ] {
        let resp = app
            .request_as(method, &path, Some(&staff.access_token), None)
            .await;
        assert_problem(resp, 403, "mfa_required").await;
    }
    // ... but may enrol, and a session that passed TOTP is let in.
    let (auth, _) = enable(&app, &staff).await;
    let pair = login_with(&app, &staff, &auth.code(0)).await;
    let token = str_field(&pair, "access_token");
    let resp = app
        .request_as(Method::GET, "/users", Some(&token), None)
        .await;
    json_ok(resp, 200).await;
    // Also after a refresh: the session keeps its `amr`.
    let refreshed = json_ok(app.refresh(&str_field(&pair, "refresh_token")).await, 200).await;
    let token = str_field(&refreshed, "access_token");
    let resp = app
        .request_as(Method::GET, "/groups", Some(&token), None)
        .await;
    json_ok(resp, 200).await;
}

async fn enrolment_refusals(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;

    // No pending enrolment.
    let body = assert_validation_error(
        confirm(&app, &user.access_token, "123456").await,
        &["non_field_errors"],
    )
    .await;
    assert!(body["errors"].get("code").is_none(), "{body}");
    // A wrong password.
    let resp = call(
        &app,
        Method::POST,
        "/users/me/mfa/totp",
        &user.access_token,
        &json!({"current_password": "not the password"}),
    )
    .await;
    assert_validation_error(resp, &["current_password"]).await;
    // A wrong code.
    let enrolment = json_ok(start_enrolment(&app, &user).await, 200).await;
    let auth = Authenticator::new(base32_decode(&str_field(&enrolment, "secret"))).await;
    assert_validation_error(
        confirm(&app, &user.access_token, &auth.wrong_code()).await,
        &["code"],
    )
    .await;
    // A restart replaces the secret: the first one's codes no longer confirm.
    let restarted = json_ok(start_enrolment(&app, &user).await, 200).await;
    assert_ne!(restarted["secret"], enrolment["secret"]);
    let fresh = Authenticator::new(base32_decode(&str_field(&restarted, "secret"))).await;
    if auth.code(0) != fresh.code(0) {
        assert_validation_error(
            confirm(&app, &user.access_token, &auth.code(0)).await,
            &["code"],
        )
        .await;
    }
    json_ok(confirm(&app, &user.access_token, &fresh.code(0)).await, 200).await;
    // Already on.
    assert_problem(start_enrolment(&app, &user).await, 409, "conflict").await;
    // No access token, no enrolment.
    let resp = app
        .post_json(
            "/users/me/mfa/totp",
            &json!({"current_password": user.password}),
        )
        .await;
    assert_problem(resp, 401, "not_authenticated").await;
}

#[derive(QueryableByName)]
struct Cell {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

/// Every value of one text column, read behind the service's back.
fn column(app: &TestApp, sql: &str) -> Vec<String> {
    let rows: Vec<Cell> = if let Some(path) = app.database_url.strip_prefix("sqlite://") {
        let mut conn = SqliteConnection::establish(path).expect("cannot open SQLite file");
        diesel::sql_query(sql).load(&mut conn).expect(sql)
    } else {
        let mut conn = PgConnection::establish(&app.database_url).expect("cannot connect");
        diesel::sql_query(sql).load(&mut conn).expect(sql)
    };
    rows.into_iter().filter_map(|c| c.v).collect()
}

async fn the_database_holds_no_secret_and_no_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let enrolment = json_ok(start_enrolment(&app, &user).await, 200).await;
    let secret = str_field(&enrolment, "secret");
    let pending = column(&app, "SELECT pending_secret AS v FROM user_totp");
    assert_eq!(pending.len(), 1);

    let auth = Authenticator::new(base32_decode(&secret)).await;
    let body = json_ok(confirm(&app, &user.access_token, &auth.code(-1)).await, 200).await;
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    let mfa_token = password_step(&app, &user).await;

    let mut stored = pending;
    for sql in [
        "SELECT secret AS v FROM user_totp",
        "SELECT pending_secret AS v FROM user_totp",
        "SELECT code_hash AS v FROM recovery_codes",
        "SELECT token_hash AS v FROM mfa_tokens",
    ] {
        stored.extend(column(&app, sql));
    }
    assert_eq!(stored.len(), 1 + 1 + 10 + 1, "{stored:?}");
    let raw = base32_decode(&secret);
    let plain: Vec<String> = codes
        .iter()
        .flat_map(|c| [c.clone(), c.replace('-', "")])
        .chain([secret.clone(), secret.to_lowercase(), mfa_token.clone()])
        .chain([String::from_utf8_lossy(&raw).into_owned()])
        .collect();
    for value in &stored {
        for p in &plain {
            assert!(!value.contains(p.as_str()), "{value} holds {p}");
        }
        // Nor the secret in hex or base64.
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!value.to_lowercase().contains(&hex), "{value}");
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert!(!value.contains(b64.trim_end_matches('=')), "{value}");
    }
}

async fn the_second_step_has_its_own_throttle(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.throttle.enabled = true;
        s.throttle.mfa = "2/hour".parse().expect("rate");
        s.throttle.login = "100/hour".parse().expect("rate");
        s.throttle.anon = "100/hour".parse().expect("rate");
    })
    .await;
    for _ in 0..2 {
        assert_problem(
            code_step(&app, "unknown", "123456").await,
            401,
            "token_invalid",
        )
        .await;
    }
    let resp = code_step(&app, "unknown", "123456").await;
    assert!(resp.headers().get("retry-after").is_some());
    assert_problem(resp, 429, "throttled").await;
    // Its own bucket: the password step is not throttled by it.
    let resp = app.login_username("nobody", "wrong password").await;
    assert_problem(resp, 401, "invalid_credentials").await;
}

async fn the_second_step_can_answer_with_the_refresh_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let (auth, _) = enable(&app, &user).await;
    let mfa_token = password_step(&app, &user).await;
    let resp = app
        .client
        .post(app.url("/auth/login/mfa"))
        .header("X-Token-Transport", "cookie")
        .header("Origin", crate::helpers::PUBLIC_URL)
        .json(&json!({"mfa_token": mfa_token, "code": auth.code(0)}))
        .send()
        .await
        .expect("request failed");
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("a refresh cookie");
    assert!(cookie.starts_with("latchkey_refresh="), "{cookie}");
    let body = json_ok(resp, 200).await;
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_amr(&body, json!(["pwd", "otp"]));
}

async fn a_password_change_ends_a_pending_second_step(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let (auth, _) = enable(&app, &user).await;
    let mfa_token = password_step(&app, &user).await;
    let body = json!({
        "current_password": user.password,
        "new_password": crate::helpers::NEW_PASSWORD,
        "new_password_confirm": crate::helpers::NEW_PASSWORD,
    });
    json_ok(app.change_password(&user.access_token, &body).await, 200).await;
    assert_problem(
        code_step(&app, &mfa_token, &auth.code(0)).await,
        401,
        "token_invalid",
    )
    .await;
}
