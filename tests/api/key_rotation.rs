//! Signing-key rotation as an operator does it, one instance after the other on the same
//! database: sign with A; then sign with B while still trusting A
//! (`jwt.verification_keys`: the previous key file); then B alone.
//!
//! Refresh tokens have their own key (API.md v2): with `jwt.refresh_secret` set they live
//! through the rotation; without it their key is derived from the signing key, so they end
//! with it (OPERATIONS.md: set the secret before rotating).

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
    without_a_refresh_secret_rotation_ends_refresh_tokens,
    listing_the_signing_key_as_a_verification_key_publishes_it_once,
);

/// An instance's keys: the signing key, the trusted previous ones, the refresh secret.
struct Keys<'a> {
    alg: JwtAlgorithm,
    signing: &'a Path,
    trusted: &'a [&'a PathBuf],
    refresh_secret: Option<&'a Path>,
}

/// An instance over `database_url` (a new database if `None`) with `keys`.
async fn instance(backend: &Backend, database_url: Option<String>, keys: &Keys<'_>) -> TestApp {
    let (alg, signing) = (keys.alg, keys.signing.to_path_buf());
    let trusted: Vec<PathBuf> = keys.trusted.iter().map(|p| (*p).clone()).collect();
    let refresh_secret = keys.refresh_secret.map(Path::to_path_buf);
    spawn_app_with(backend.clone(), move |s: &mut Settings| {
        if let Some(url) = database_url {
            s.database.url = Secret(url);
        }
        s.jwt.algorithm = alg;
        s.jwt.signing_key = Some(signing);
        s.jwt.verification_keys = trusted;
        s.jwt.refresh_secret = refresh_secret;
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

/// A refresh token whose key is gone is `token_invalid` wherever it is presented.
async fn assert_refresh_rejected(app: &TestApp, refresh: &str) {
    assert_problem(app.verify(refresh).await, 401, "token_invalid").await;
    assert_problem(app.refresh(refresh).await, 401, "token_invalid").await;
}

/// A refresh token's key is none of the access keys, and it is never published.
fn assert_refresh_key_apart(app_jwks: &Value, access: &str, refresh: &str) {
    assert_eq!(str_field(&jwt_header(refresh), "alg"), "HS256");
    assert_ne!(kid(refresh), kid(access));
    assert!(!published_kids(app_jwks).contains(&kid(refresh)));
}

/// Rotates A -> A+B -> B with `jwt.refresh_secret` set throughout: access tokens live as
/// long as their key is trusted, refresh tokens through the whole rotation.
async fn rotate(backend: Backend, alg: JwtAlgorithm) {
    let dir = TempDir::new().unwrap();
    let key_a = write_signing_key(dir.path(), alg);
    let key_b = write_signing_key(dir.path(), alg);
    let secret = write_signing_key(dir.path(), JwtAlgorithm::HS256);
    let asymmetric = alg != JwtAlgorithm::HS256;
    let a_trusted = [&key_a];
    let keys = |signing, trusted| Keys {
        alg,
        signing,
        trusted,
        refresh_secret: Some(&secret),
    };

    // 1. Key A only.
    let first = instance(&backend, None, &keys(&key_a, &[])).await;
    let user = TestUser::create(&first).await;
    let kid_a = kid(&user.access_token);
    let refresh_kid = kid(&user.refresh_token);
    assert_refresh_key_apart(
        &first.jwks_json().await,
        &user.access_token,
        &user.refresh_token,
    );
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
    let rotated = instance(
        &backend,
        Some(database_url.clone()),
        &keys(&key_b, &a_trusted),
    )
    .await;
    let fresh = json_ok(
        rotated.login_username(&user.username, &user.password).await,
        200,
    )
    .await;
    let kid_b = kid(&str_field(&fresh, "access_token"));
    assert_ne!(kid_b, kid_a, "new tokens must be signed with the new key");
    assert_eq!(kid(&str_field(&fresh, "refresh_token")), refresh_kid);
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
    // The old refresh token rotates into a pair whose access token B signed.
    let renewed = json_ok(rotated.refresh(&user.refresh_token).await, 200).await;
    let (renewed_access, renewed_refresh) = (
        str_field(&renewed, "access_token"),
        str_field(&renewed, "refresh_token"),
    );
    assert_eq!(kid(&renewed_access), kid_b);
    assert_eq!(kid(&renewed_refresh), refresh_kid);
    assert_eq!(
        jwt_claimed_family(&renewed_refresh),
        jwt_claimed_family(&user.refresh_token)
    );

    // 3. Key A retired: what A signed is refused; refresh tokens, under their own key, live.
    let retired = instance(&backend, Some(database_url), &keys(&key_b, &[])).await;
    if asymmetric {
        assert_eq!(
            published_kids(&retired.jwks_json().await),
            vec![kid_b.clone()]
        );
    }
    for access in [&user.access_token, &idle_access] {
        assert_problem(retired.get_me(access).await, 401, "token_invalid").await;
        assert_problem(retired.verify(access).await, 401, "token_invalid").await;
    }
    assert_session_accepted(&retired, &user, &renewed_access, &renewed_refresh).await;
    json_ok(retired.refresh(&renewed_refresh).await, 200).await;
    json_ok(
        retired.refresh(&str_field(&fresh, "refresh_token")).await,
        200,
    )
    .await;
    // The idle session, whose access token A signed, gets a new one.
    let revived = json_ok(retired.refresh(&idle_refresh).await, 200).await;
    assert_eq!(kid(&str_field(&revived, "access_token")), kid_b);
}

/// Without `jwt.refresh_secret` the refresh key is derived from the signing key: once B
/// signs, refresh tokens issued under A are refused (a new login is needed), while A's
/// access tokens keep working as long as A is trusted.
async fn without_a_refresh_secret_rotation_ends_refresh_tokens(backend: Backend) {
    let dir = TempDir::new().unwrap();
    let key_a = write_signing_key(dir.path(), JwtAlgorithm::ES256);
    let key_b = write_signing_key(dir.path(), JwtAlgorithm::ES256);
    let a_trusted = [&key_a];
    let keys = |signing, trusted| Keys {
        alg: JwtAlgorithm::ES256,
        signing,
        trusted,
        refresh_secret: None,
    };
    let first = instance(&backend, None, &keys(&key_a, &[])).await;
    let user = TestUser::create(&first).await;
    assert_refresh_key_apart(
        &first.jwks_json().await,
        &user.access_token,
        &user.refresh_token,
    );
    // The derived key is the same for every instance with the same signing key.
    let replica = instance(
        &backend,
        Some(first.database_url.clone()),
        &keys(&key_a, &[]),
    )
    .await;
    let renewed = json_ok(replica.refresh(&user.refresh_token).await, 200).await;
    let refresh = str_field(&renewed, "refresh_token");
    assert_eq!(kid(&refresh), kid(&user.refresh_token));

    let rotated = instance(
        &backend,
        Some(first.database_url.clone()),
        &keys(&key_b, &a_trusted),
    )
    .await;
    json_ok(rotated.get_me(&user.access_token).await, 200).await;
    assert_refresh_rejected(&rotated, &refresh).await;
    let fresh = user.login_again(&rotated).await;
    assert_ne!(kid(&str_field(&fresh, "refresh_token")), kid(&refresh));
    json_ok(
        rotated.refresh(&str_field(&fresh, "refresh_token")).await,
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
    let dir = TempDir::new().unwrap();
    let key = write_signing_key(dir.path(), JwtAlgorithm::ES256);
    let keys = Keys {
        alg: JwtAlgorithm::ES256,
        signing: &key,
        trusted: &[&key, &key],
        refresh_secret: None,
    };
    let app = instance(&backend, None, &keys).await;
    let user = TestUser::create(&app).await;
    assert_eq!(
        published_kids(&app.jwks_json().await),
        vec![kid(&user.access_token)]
    );
}
