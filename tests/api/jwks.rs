//! `/.well-known/*`, token headers, offline verification and the other algorithms.

use jsonwebtoken::jwk::{JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey::app::Application;
use latchkey::config::{JwtAlgorithm, Secret};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{
    Backend, PUBLIC_URL, TestApp, TestUser, assert_problem, fixture, header, json_ok, jwt_header,
    p256_public_pem, spawn_app, spawn_app_with, spawn_app_with_known_key, sqlite_url, str_field,
    write_signing_key,
};

dual_backend_tests!(
    jwks_publishes_es256_public_key,
    access_token_verifies_offline_against_jwks,
    openid_configuration_describes_issuer,
    rs256_tokens_work,
    eddsa_tokens_work,
    hs256_tokens_work_and_jwks_is_empty,
    kid_is_stable_for_the_same_key_file,
    signing_key_defaults_depend_on_backend,
    custom_issuer_and_audience_are_used,
    previous_key_in_verification_keys_keeps_tokens_valid,
    refresh_tokens_are_not_access_tokens,
);

/// Verifies `token` with nothing but the published JWK Set, as another service would.
fn verify_offline(app: &TestApp, jwks: &Value, token: &str, alg: Algorithm) -> Value {
    let kid = str_field(&jwt_header(token), "kid");
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("not a JWK Set");
    let jwk = set
        .find(&kid)
        .unwrap_or_else(|| panic!("token kid `{kid}` not published: {jwks}"));
    let key = DecodingKey::from_jwk(jwk).expect("unusable JWK");
    let mut validation = Validation::new(alg);
    validation.set_audience(&[&app.audience]);
    validation.set_issuer(&[&app.issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("offline verification failed: {e}"))
        .claims
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .expect("`keys` array")
        .iter()
        .map(|k| str_field(k, "kid"))
        .collect();
    kids.sort();
    kids
}

/// Public-key checks shared by every asymmetric algorithm.
fn assert_public_jwks(jwks: &Value, alg: &str, kty: &str) {
    let keys = jwks["keys"].as_array().expect("`keys` array");
    assert!(!keys.is_empty(), "{jwks}");
    for key in keys {
        assert_eq!(key["alg"], json!(alg), "{key}");
        assert_eq!(key["kty"], json!(kty), "{key}");
        assert_eq!(key["use"], json!("sig"), "{key}");
        assert!(key["kid"].is_string(), "{key}");
        // Private parameters must never be published.
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none(), "JWKS leaks `{private}`: {key}");
        }
    }
    // kid is the RFC 7638 thumbprint.
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("not a JWK Set");
    for jwk in &set.keys {
        let thumbprint = jwk.thumbprint(ThumbprintHash::SHA256).expect("thumbprint");
        assert_eq!(jwk.common.key_id.as_deref(), Some(thumbprint.as_str()));
    }
}

async fn jwks_publishes_es256_public_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.jwks().await;
    let cache_control = header(&resp, "cache-control").unwrap_or_default();
    assert!(
        cache_control.contains("public") && cache_control.contains("max-age"),
        "Cache-Control: `{cache_control}`"
    );
    let jwks = json_ok(resp, 200).await;
    assert_public_jwks(&jwks, "ES256", "EC");
    for key in jwks["keys"].as_array().unwrap() {
        assert_eq!(key["crv"], json!("P-256"), "{key}");
    }
}

async fn access_token_verifies_offline_against_jwks(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = TestUser::create(&app).await;
    let jwks = app.jwks_json().await;

    let header = jwt_header(&user.access_token);
    assert_eq!(header["alg"], json!("ES256"));
    assert_eq!(header["typ"], json!("JWT"));
    assert!(
        kids(&jwks).contains(&str_field(&header, "kid")),
        "{header} vs {jwks}"
    );

    let claims = verify_offline(&app, &jwks, &user.access_token, Algorithm::ES256);
    assert_eq!(claims["sub"], json!(user.id));
    assert_eq!(claims["iss"], json!(PUBLIC_URL));
    assert_eq!(claims["token_type"], json!("access"));
    assert_refresh_token_unverifiable(&jwks, &user.refresh_token);
}

/// API.md v2: no key of the JWK Set verifies a refresh token (HS256 under a key only
/// latchkey holds, with a `kid` the set does not list), so a resource server cannot take
/// one for an access token even if it forgets to check `token_type`.
fn assert_refresh_token_unverifiable(jwks: &Value, refresh: &str) {
    let header = jwt_header(refresh);
    assert_eq!(header["alg"], json!("HS256"), "{header}");
    assert_eq!(header["typ"], json!("JWT"), "{header}");
    assert!(
        !kids(jwks).contains(&str_field(&header, "kid")),
        "{header} vs {jwks}"
    );
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("not a JWK Set");
    for jwk in &set.keys {
        let key = DecodingKey::from_jwk(jwk).expect("unusable JWK");
        let alg = Algorithm::try_from(jwk.common.key_algorithm.expect("alg")).expect("a JWS alg");
        let mut validation = Validation::new(alg);
        validation.validate_aud = false;
        assert!(
            jsonwebtoken::decode::<Value>(refresh, &key, &validation).is_err(),
            "{jwk:?} verifies a refresh token"
        );
    }
}

/// Refresh tokens are refused wherever an access token is taken, and under HS256 the
/// secret that resource servers share does not verify them either.
async fn refresh_tokens_are_not_access_tokens(backend: Backend) {
    let app = spawn_app_with_known_key(backend, |s| s.jwt.algorithm = JwtAlgorithm::HS256).await;
    let user = TestUser::create(&app).await;
    assert_refresh_token_unverifiable(&app.jwks_json().await, &user.refresh_token);
    let shared = app.signing_key_pem.clone().expect("harness-chosen secret");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    let key = DecodingKey::from_secret(shared.trim_end().as_bytes());
    assert!(jsonwebtoken::decode::<Value>(&user.access_token, &key, &validation).is_ok());
    assert!(
        jsonwebtoken::decode::<Value>(&user.refresh_token, &key, &validation).is_err(),
        "the signing secret verifies a refresh token"
    );
    assert_problem(app.get_me(&user.refresh_token).await, 401, "token_invalid").await;
    // latchkey itself still verifies both kinds.
    let verified = json_ok(app.verify(&user.refresh_token).await, 200).await;
    assert_eq!(verified["token_type"], json!("refresh"));
    json_ok(app.refresh(&user.refresh_token).await, 200).await;
}

async fn openid_configuration_describes_issuer(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = json_ok(app.openid_configuration().await, 200).await;
    assert_eq!(doc["issuer"], json!(PUBLIC_URL));
    assert_eq!(
        doc["jwks_uri"],
        json!(format!("{PUBLIC_URL}/.well-known/jwks.json"))
    );
    let algs = doc["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"));
    assert!(algs.contains(&json!("ES256")), "{doc}");
    let token_endpoint = doc["token_endpoint"]
        .as_str()
        .unwrap_or_else(|| panic!("{doc}"));
    assert!(token_endpoint.starts_with(PUBLIC_URL), "{doc}");
}

/// Login, refresh and verification all work under `alg`; `published` is the expected
/// JWKS shape (`None` for HMAC, whose key is secret).
async fn tokens_work_with(
    backend: Backend,
    alg: JwtAlgorithm,
    published: Option<(Algorithm, &str)>,
) {
    let app = spawn_app_with(backend, move |s| s.jwt.algorithm = alg).await;
    let user = TestUser::create(&app).await;

    json_ok(app.get_me(&user.access_token).await, 200).await;
    let verified = json_ok(app.verify(&user.access_token).await, 200).await;
    assert_eq!(verified["token_type"], json!("access"));
    let pair = json_ok(app.refresh(&user.refresh_token).await, 200).await;
    json_ok(app.get_me(&str_field(&pair, "access_token")).await, 200).await;

    let header = jwt_header(&user.access_token);
    let jwks = app.jwks_json().await;
    match published {
        Some((algorithm, kty)) => {
            let name = json!(algorithm).as_str().unwrap().to_owned();
            assert_eq!(header["alg"], json!(name));
            assert_public_jwks(&jwks, &name, kty);
            verify_offline(&app, &jwks, &user.access_token, algorithm);
        }
        None => {
            assert_eq!(header["alg"], json!("HS256"));
            assert_eq!(
                jwks["keys"],
                json!([]),
                "an HMAC secret must never be published"
            );
        }
    }
}

async fn rs256_tokens_work(backend: Backend) {
    tokens_work_with(
        backend,
        JwtAlgorithm::RS256,
        Some((Algorithm::RS256, "RSA")),
    )
    .await;
}

async fn eddsa_tokens_work(backend: Backend) {
    tokens_work_with(
        backend,
        JwtAlgorithm::EdDSA,
        Some((Algorithm::EdDSA, "OKP")),
    )
    .await;
}

async fn hs256_tokens_work_and_jwks_is_empty(backend: Backend) {
    tokens_work_with(backend, JwtAlgorithm::HS256, None).await;
}

async fn kid_is_stable_for_the_same_key_file(backend: Backend) {
    let keys = TempDir::new().unwrap();
    let path = write_signing_key(keys.path(), JwtAlgorithm::ES256);

    let mut seen = Vec::new();
    for _ in 0..2 {
        let path = path.clone();
        let app = spawn_app_with(backend.clone(), move |s| s.jwt.signing_key = Some(path)).await;
        let user = TestUser::create(&app).await;
        let jwks = app.jwks_json().await;
        assert_eq!(
            kids(&jwks),
            vec![str_field(&jwt_header(&user.access_token), "kid")]
        );
        seen.push(kids(&jwks));
    }
    assert_eq!(seen[0], seen[1], "same key, same kid");
}

async fn signing_key_defaults_depend_on_backend(backend: Backend) {
    match backend {
        // SQLite: a key is generated next to the database and reused by the next start.
        Backend::Sqlite => {
            let shared = TempDir::new().unwrap();
            let mut seen = Vec::new();
            for _ in 0..2 {
                let url = sqlite_url(shared.path());
                let app =
                    spawn_app_with(Backend::Sqlite, move |s| s.database.url = Secret(url)).await;
                seen.push(kids(&app.jwks_json().await));
            }
            assert_eq!(seen[0].len(), 1, "{seen:?}");
            assert_eq!(seen[0], seen[1], "the generated key must be reused");
        }
        // PostgreSQL: replicas must share a key, so starting without one fails loudly.
        Backend::Postgres { .. } => {
            let fixture = fixture(&backend);
            match Application::build(fixture.settings).await {
                Ok(_) => panic!("start-up without jwt.signing_key must fail on PostgreSQL"),
                Err(e) => {
                    let message = e.to_string();
                    assert!(
                        message.contains("signing_key"),
                        "message names the key: {message}"
                    );
                }
            }
        }
    }
}

async fn custom_issuer_and_audience_are_used(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.jwt.issuer = Some("https://id.example.org".into());
        s.jwt.audience = "orders-service".into();
    })
    .await;
    let user = TestUser::create(&app).await;
    let claims = verify_offline(
        &app,
        &app.jwks_json().await,
        &user.access_token,
        Algorithm::ES256,
    );
    assert_eq!(claims["iss"], json!("https://id.example.org"));
    let doc = json_ok(app.openid_configuration().await, 200).await;
    assert_eq!(doc["issuer"], json!("https://id.example.org"));
    // The service accepts what it issues under the custom names.
    json_ok(app.get_me(&user.access_token).await, 200).await;
}

/// Key rotation: a new signing key, with the previous public key still trusted.
async fn previous_key_in_verification_keys_keeps_tokens_valid(backend: Backend) {
    let keys = TempDir::new().unwrap();
    let old_key = write_signing_key(keys.path(), JwtAlgorithm::ES256);
    let new_key = write_signing_key(keys.path(), JwtAlgorithm::ES256);

    let before = spawn_app_with(backend.clone(), {
        let old_key = old_key.clone();
        move |s| s.jwt.signing_key = Some(old_key)
    })
    .await;
    let user = TestUser::create(&before).await;
    let old_jwks = before.jwks_json().await;
    let old_kid = kids(&old_jwks).remove(0);
    let old_public = keys.path().join("old-public.pem");
    std::fs::write(&old_public, p256_public_pem(&old_jwks["keys"][0])).unwrap();

    // Same database, new signing key; the old public key is still trusted.
    let database_url = before.database_url.clone();
    let rotated = spawn_app_with(backend.clone(), {
        let (database_url, new_key) = (database_url.clone(), new_key.clone());
        move |s| {
            s.database.url = Secret(database_url);
            s.jwt.signing_key = Some(new_key);
            s.jwt.verification_keys = vec![old_public];
        }
    })
    .await;
    let published = kids(&rotated.jwks_json().await);
    assert_eq!(published.len(), 2, "{published:?}");
    assert!(published.contains(&old_kid), "{published:?}");

    json_ok(rotated.get_me(&user.access_token).await, 200).await;
    // (The refresh key was derived from the old signing key: a new login, see
    // `key_rotation` for `jwt.refresh_secret`.)
    let pair = user.login_again(&rotated).await;
    let new_kid = str_field(&jwt_header(&str_field(&pair, "access_token")), "kid");
    assert_ne!(new_kid, old_kid, "new tokens are signed with the new key");
    assert!(published.contains(&new_kid), "{published:?}");

    // Once the old key is dropped from the configuration, its tokens stop working.
    let retired = spawn_app_with(backend, move |s| {
        s.database.url = Secret(database_url);
        s.jwt.signing_key = Some(new_key);
    })
    .await;
    assert_eq!(kids(&retired.jwks_json().await), vec![new_kid]);
    assert_problem(
        retired.get_me(&user.access_token).await,
        401,
        "token_invalid",
    )
    .await;
    json_ok(retired.get_me(&str_field(&pair, "access_token")).await, 200).await;
}
