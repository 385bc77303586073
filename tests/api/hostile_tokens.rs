//! Forged, confused, expired and tampered tokens against `GET /users/me` (Bearer) and
//! `POST /auth/token/verify`: all must be `token_invalid`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use latchkey::config::JwtAlgorithm;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, P256_SPKI_PREFIX, TestApp, TestUser, assert_problem, assert_token_invalid_everywhere,
    b64url, header, json_ok, jwt_claims, jwt_header, p256_public_pem, p256_spki_der, spawn_app,
    spawn_app_with, spawn_app_with_known_key, str_field, write_signing_key,
};

dual_backend_tests!(
    alg_none_tokens_are_rejected,
    hmac_signed_with_public_key_is_rejected,
    foreign_key_with_same_kid_is_rejected,
    real_key_with_bad_claims_is_rejected,
    expired_access_token_is_rejected,
    refresh_token_is_not_a_bearer_token,
    tampered_tokens_are_rejected,
    missing_or_non_bearer_authorization_is_not_authenticated,
);

fn sign(alg: Algorithm, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    header.typ = Some("JWT".to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("signing failed")
}

fn kid_of(token: &str) -> String {
    str_field(&jwt_header(token), "kid")
}

async fn alg_none_tokens_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    for original in user.tokens() {
        let payload = b64url(serde_json::to_vec(&jwt_claims(original)).unwrap());
        let signature = original.rsplit('.').next().unwrap();
        for alg in ["none", "None", "NONE"] {
            let header = json!({ "alg": alg, "typ": "JWT", "kid": kid_of(original) });
            let header = b64url(serde_json::to_vec(&header).unwrap());
            for token in [
                format!("{header}.{payload}."),
                format!("{header}.{payload}.{signature}"),
            ] {
                assert_token_invalid_everywhere(&app, &token).await;
            }
        }
    }
}

/// Encodings of a P-256 public key an attacker might guess the verifier uses as bytes.
fn public_key_encodings(jwk: &Value) -> Vec<Vec<u8>> {
    let spki = p256_spki_der(jwk);
    let point = spki[P256_SPKI_PREFIX.len()..].to_vec();
    let x_y = point[1..].to_vec();
    let pem = p256_public_pem(jwk);
    vec![
        x_y,
        point,
        spki,
        pem.clone().into_bytes(),
        pem.trim_end().as_bytes().to_vec(),
        jwk.to_string().into_bytes(),
    ]
}

/// The classic algorithm confusion: an HS256 token whose HMAC secret is some encoding of
/// the service's public key, hoping the verifier feeds its key bytes to HMAC.
async fn hmac_signed_with_public_key_is_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let jwks = app.jwks_json().await;
    for secret in public_key_encodings(&jwks["keys"][0]) {
        let key = EncodingKey::from_secret(&secret);
        assert_resigned_tokens_invalid(&app, &user, Algorithm::HS256, &key).await;
    }
}

async fn foreign_key_with_same_kid_is_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let pem = latchkey::auth::keys::generate_private_pem(JwtAlgorithm::ES256).expect("keygen");
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("PKCS#8 EC key");
    assert_resigned_tokens_invalid(&app, &user, Algorithm::ES256, &key).await;
}

/// Signs with the service's own key, so only the claim or header under test is wrong.
async fn real_key_with_bad_claims_is_rejected(backend: Backend) {
    // Refresh tokens have a key of their own (API.md v2): the test chooses it too.
    let secrets = tempfile::TempDir::new().unwrap();
    let refresh_secret = write_signing_key(secrets.path(), JwtAlgorithm::HS256);
    let secret = std::fs::read_to_string(&refresh_secret).unwrap();
    let refresh_key = EncodingKey::from_secret(secret.trim_end().as_bytes());
    let app = spawn_app_with_known_key(backend, move |s| {
        s.jwt.refresh_secret = Some(refresh_secret);
    })
    .await;
    let user = TestUser::create(&app).await;
    let pem = app.signing_key_pem.clone().expect("harness-chosen key");
    let access_key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("PKCS#8 EC key");
    let now = chrono::Utc::now().timestamp();

    for original in user.tokens() {
        let kid = kid_of(original);
        let claims = jwt_claims(original);
        let (alg, key) = if claims["token_type"] == json!("access") {
            (Algorithm::ES256, &access_key)
        } else {
            (Algorithm::HS256, &refresh_key)
        };
        // Control: re-signing the genuine claims yields a token the service accepts, so
        // every rejection below is caused by the one thing changed.
        let control = sign(alg, &kid, &claims, key);
        json_ok(app.verify(&control).await, 200).await;

        let mut mutations: Vec<(&str, Value)> = vec![
            ("aud", json!("someone-else")),
            ("aud", json!(["someone-else"])),
            ("iss", json!("http://evil.test")),
            ("exp", json!(now - 3600)),
            ("token_type", json!("id")),
        ];
        if claims["token_type"] == json!("access") {
            mutations.push(("nbf", json!(now + 3600)));
            // A well-signed token for a user that does not exist.
            mutations.push(("sub", json!(uuid::Uuid::now_v7().to_string())));
        }
        for (claim, value) in mutations {
            let mut forged = claims.clone();
            forged[claim] = value;
            let token = sign(alg, &kid, &forged, key);
            assert_token_invalid_everywhere(&app, &token).await;
        }
        // A kid the service never published.
        let token = sign(alg, "not-a-published-kid", &claims, key);
        assert_token_invalid_everywhere(&app, &token).await;
    }
    // The controls were genuine tokens: the session still works.
    json_ok(app.get_me(&user.access_token).await, 200).await;
    json_ok(app.refresh(&user.refresh_token).await, 200).await;
}

async fn expired_access_token_is_rejected(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.jwt.access_ttl = Duration::from_secs(1);
        s.jwt.leeway = Duration::ZERO;
    })
    .await;
    let user = TestUser::create(&app).await;
    // Let the configured 1 s lifetime pass (JWT times have 1 s resolution).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_token_invalid_everywhere(&app, &user.access_token).await;
    // `detail` says which check failed.
    let body = assert_problem(app.get_me(&user.access_token).await, 401, "token_invalid").await;
    let detail = body["detail"].as_str().unwrap_or_default().to_lowercase();
    assert!(detail.contains("expired"), "detail: {body}");
    // The long-lived refresh token still gets a new, working access token.
    let pair = json_ok(app.refresh(&user.refresh_token).await, 200).await;
    json_ok(app.get_me(&str_field(&pair, "access_token")).await, 200).await;
}

async fn refresh_token_is_not_a_bearer_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    assert_problem(app.get_me(&user.refresh_token).await, 401, "token_invalid").await;
    assert_problem(
        app.logout_all(&user.refresh_token).await,
        401,
        "token_invalid",
    )
    .await;
}

fn replace_segment(token: &str, index: usize, segment: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[index] = segment.to_owned();
    parts.join(".")
}

async fn tampered_tokens_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let other = user.login_again(&app).await;
    let others = [
        str_field(&other, "access_token"),
        str_field(&other, "refresh_token"),
    ];

    for (token, other_token) in user.tokens().into_iter().zip(&others) {
        // Payload escalated (or pointed at another session), signature kept.
        let mut claims = jwt_claims(token);
        claims["is_staff"] = json!(true);
        claims["jti"] = jwt_claims(other_token)["jti"].clone();
        let payload = b64url(serde_json::to_vec(&claims).unwrap());
        assert_token_invalid_everywhere(&app, &replace_segment(token, 1, &payload)).await;

        // One signature character changed (mid-string: the last character may only
        // carry padding bits).
        let signature = token.rsplit('.').next().unwrap();
        let mid = signature.len() / 2;
        let flipped = if &signature[mid..=mid] == "A" {
            "B"
        } else {
            "A"
        };
        let signature = format!("{}{flipped}{}", &signature[..mid], &signature[mid + 1..]);
        assert_token_invalid_everywhere(&app, &replace_segment(token, 2, &signature)).await;

        // Signature of another valid token of the same kind: both halves genuine, not
        // together.
        let other_signature = other_token.rsplit('.').next().unwrap();
        assert_token_invalid_everywhere(&app, &replace_segment(token, 2, other_signature)).await;

        // Truncated token.
        assert_token_invalid_everywhere(&app, &token[..token.len() - 10]).await;
    }
    // None of the attempts disturbed the genuine session.
    json_ok(app.refresh(&user.refresh_token).await, 200).await;
}

/// Asserts 401 `not_authenticated` with a Bearer challenge.
async fn assert_not_authenticated(app: &TestApp, authorization: Option<&str>) {
    let resp = app.get_me_with_authorization(authorization).await;
    let challenge = header(&resp, "www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "{authorization:?}: WWW-Authenticate `{challenge}`"
    );
    assert_problem(resp, 401, "not_authenticated").await;
}

async fn missing_or_non_bearer_authorization_is_not_authenticated(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", user.username, user.password))
    );
    for authorization in [None, Some(basic.as_str()), Some("Digest username=\"ada\"")] {
        assert_not_authenticated(&app, authorization).await;
    }
    // The genuine token in the same request shape works.
    let bearer = format!("Bearer {}", user.access_token);
    json_ok(app.get_me_with_authorization(Some(&bearer)).await, 200).await;
}

/// Re-signs each of the user's tokens (same kid, same claims) with a forged `key` under
/// `alg`: every one must be refused wherever tokens are accepted.
async fn assert_resigned_tokens_invalid(
    app: &TestApp,
    user: &TestUser,
    alg: Algorithm,
    key: &EncodingKey,
) {
    for original in user.tokens() {
        let token = sign(alg, &kid_of(original), &jwt_claims(original), key);
        assert_token_invalid_everywhere(app, &token).await;
    }
}
