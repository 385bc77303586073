//! Signing-key rotation as an operator does it, one instance after the other on the same
//! database: sign with A; then sign with B while still trusting A
//! (`jwt.verification_keys`: the previous key file); then B alone.

use std::path::{Path, PathBuf};

use latchkey::config::{JwtAlgorithm, Secret, Settings};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{
    Backend, TestApp, TestUser, assert_problem, json_ok, jwt_header, spawn_app_with, str_field,
    write_signing_key,
};

dual_backend_tests!(
    es256_rotation_keeps_sessions_until_the_old_key_is_retired,
    hs256_rotation_keeps_sessions_until_the_old_secret_is_retired,
    listing_the_signing_key_as_a_verification_key_publishes_it_once,
);

/// An instance over `database_url` signing with `signing`, also trusting `trusted`.
async fn instance(
    backend: &Backend,
    database_url: Option<String>,
    alg: JwtAlgorithm,
    signing: &Path,
    trusted: &[&PathBuf],
) -> TestApp {
    let signing = signing.to_path_buf();
    let trusted: Vec<PathBuf> = trusted.iter().map(|p| (*p).clone()).collect();
    spawn_app_with(backend.clone(), move |s: &mut Settings| {
        if let Some(url) = database_url {
            s.database.url = Secret(url);
        }
        s.jwt.algorithm = alg;
        s.jwt.signing_key = Some(signing);
        s.jwt.verification_keys = trusted;
    })
    .await
}

fn kid(token: &str) -> String {
    str_field(&jwt_header(token), "kid")
}

fn published_kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .expect("`keys` array")
        .iter()
        .map(|k| str_field(k, "kid"))
        .collect();
    kids.sort();
    kids
}

/// The old session's tokens are accepted everywhere a token is taken.
async fn assert_session_accepted(app: &TestApp, user: &TestUser, access: &str, refresh: &str) {
    let me = json_ok(app.get_me(access).await, 200).await;
    assert_eq!(me["id"], json!(user.id));
    let verified = json_ok(app.verify(access).await, 200).await;
    assert_eq!(verified["valid"], json!(true), "{verified}");
    assert_eq!(verified["token_type"], json!("access"), "{verified}");
    assert_eq!(verified["claims"]["sub"], json!(user.id), "{verified}");
    let verified = json_ok(app.verify(refresh).await, 200).await;
    assert_eq!(verified["token_type"], json!("refresh"), "{verified}");
}

/// Everything a previous key signed is `token_invalid`, whatever endpoint it meets.
async fn assert_session_rejected(app: &TestApp, access: &str, refresh: &str) {
    assert_problem(app.get_me(access).await, 401, "token_invalid").await;
    assert_problem(app.verify(access).await, 401, "token_invalid").await;
    assert_problem(app.verify(refresh).await, 401, "token_invalid").await;
    assert_problem(app.refresh(refresh).await, 401, "token_invalid").await;
}

async fn rotate(backend: Backend, alg: JwtAlgorithm) {
    let keys = TempDir::new().unwrap();
    let key_a = write_signing_key(keys.path(), alg);
    let key_b = write_signing_key(keys.path(), alg);
    let asymmetric = alg != JwtAlgorithm::HS256;

    // 1. Key A only.
    let first = instance(&backend, None, alg, &key_a, &[]).await;
    let user = TestUser::create(&first).await;
    let kid_a = kid(&user.access_token);
    assert_eq!(kid(&user.refresh_token), kid_a);
    if asymmetric {
        assert_eq!(
            published_kids(&first.jwks_json().await),
            vec![kid_a.clone()]
        );
    }
    // A second session, left untouched until key A is retired.
    let idle = user.login_again(&first).await;
    let (idle_access, idle_refresh) = (
        str_field(&idle, "access_token"),
        str_field(&idle, "refresh_token"),
    );
    let database_url = first.database_url.clone();

    // 2. Key B signs; A (its key file, as it was) is still trusted.
    let rotated = instance(&backend, Some(database_url.clone()), alg, &key_b, &[&key_a]).await;
    let fresh = json_ok(
        rotated.login_username(&user.username, &user.password).await,
        200,
    )
    .await;
    let kid_b = kid(&str_field(&fresh, "access_token"));
    assert_ne!(kid_b, kid_a, "new tokens must be signed with the new key");
    assert_eq!(kid(&str_field(&fresh, "refresh_token")), kid_b);
    let jwks = rotated.jwks_json().await;
    if asymmetric {
        let mut both = vec![kid_a.clone(), kid_b.clone()];
        both.sort();
        assert_eq!(published_kids(&jwks), both);
    } else {
        assert_eq!(jwks["keys"], json!([]), "HS256 secrets are never published");
    }
    assert_session_accepted(&rotated, &user, &user.access_token, &user.refresh_token).await;
    assert_session_accepted(&rotated, &user, &idle_access, &idle_refresh).await;
    // The old refresh token rotates into a pair signed with B, in the same family.
    let renewed = json_ok(rotated.refresh(&user.refresh_token).await, 200).await;
    let (renewed_access, renewed_refresh) = (
        str_field(&renewed, "access_token"),
        str_field(&renewed, "refresh_token"),
    );
    assert_eq!(kid(&renewed_access), kid_b);
    assert_eq!(kid(&renewed_refresh), kid_b);
    assert_eq!(
        jwt_claimed_family(&renewed_refresh),
        jwt_claimed_family(&user.refresh_token)
    );

    // 3. Key A retired.
    let retired = instance(&backend, Some(database_url), alg, &key_b, &[]).await;
    if asymmetric {
        assert_eq!(
            published_kids(&retired.jwks_json().await),
            vec![kid_b.clone()]
        );
    }
    assert_session_rejected(&retired, &user.access_token, &user.refresh_token).await;
    assert_session_rejected(&retired, &idle_access, &idle_refresh).await;
    // What B signed lives on.
    assert_session_accepted(&retired, &user, &renewed_access, &renewed_refresh).await;
    json_ok(retired.refresh(&renewed_refresh).await, 200).await;
    json_ok(
        retired.refresh(&str_field(&fresh, "refresh_token")).await,
        200,
    )
    .await;
}

fn jwt_claimed_family(token: &str) -> String {
    str_field(&crate::helpers::jwt_claims(token), "fam")
}

async fn es256_rotation_keeps_sessions_until_the_old_key_is_retired(backend: Backend) {
    rotate(backend, JwtAlgorithm::ES256).await;
}

async fn hs256_rotation_keeps_sessions_until_the_old_secret_is_retired(backend: Backend) {
    rotate(backend, JwtAlgorithm::HS256).await;
}

async fn listing_the_signing_key_as_a_verification_key_publishes_it_once(backend: Backend) {
    let keys = TempDir::new().unwrap();
    let key = write_signing_key(keys.path(), JwtAlgorithm::ES256);
    let app = instance(&backend, None, JwtAlgorithm::ES256, &key, &[&key, &key]).await;
    let user = TestUser::create(&app).await;
    assert_eq!(
        published_kids(&app.jwks_json().await),
        vec![kid(&user.access_token)]
    );
}
