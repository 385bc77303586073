//! Verify a latchkey access token in another service, offline, with the keys published at
//! `{public_url}/.well-known/jwks.json`.
//!
//! ```sh
//! cargo run --example verify_token -- JWKS_URL ISSUER AUDIENCE TOKEN
//! # or with no arguments, from the environment: JWKS_URL, ISSUER, AUDIENCE, TOKEN
//! ```
//!
//! Prints `{"sub": …, "username": …}` and exits 0 for a valid access token; prints why and
//! exits 1 otherwise (2 for bad usage). This crate's reqwest is built without TLS, so only
//! `http://` URLs work here: in your service enable a reqwest TLS feature (`rustls-tls`).

use std::process::ExitCode;
use std::sync::RwLock;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The claims this service uses. Access and refresh tokens are signed with the same key:
/// `token_type` tells them apart, and a resource server must refuse anything but "access".
#[derive(Deserialize)]
#[serde(tag = "token_type", rename_all = "snake_case")]
enum Claims {
    Access {
        sub: String,
        username: String,
    },
    #[serde(other)]
    NotAccess,
}

/// The issuer's JWK set, fetched once and kept; fetched again only when a token names a
/// `kid` it does not hold (the issuer rotated its key). A long-running service should also
/// rate-limit those refetches, since anyone can send a token with a made-up `kid`.
struct Jwks {
    url: String,
    http: reqwest::Client,
    cached: RwLock<JwkSet>,
}

impl Jwks {
    fn new(url: String) -> Self {
        Self {
            url,
            http: reqwest::Client::new(),
            cached: RwLock::default(),
        }
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, Error> {
        if let Some(jwk) = self.cached.read().unwrap().find(kid) {
            return Ok(DecodingKey::from_jwk(jwk)?);
        }
        let fresh: JwkSet = self
            .http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let jwk = fresh
            .find(kid)
            .ok_or_else(|| format!("no key with kid {kid:?} in the JWK set"))?;
        let key = DecodingKey::from_jwk(jwk)?;
        *self.cached.write().unwrap() = fresh;
        Ok(key)
    }
}

/// Returns `(sub, username)` of a valid access token.
async fn verify(
    jwks: &Jwks,
    issuer: &str,
    audience: &str,
    token: &str,
) -> Result<(String, String), Error> {
    let kid = decode_header(token)?.kid.ok_or("token header has no kid")?;
    let key = jwks.key(&kid).await?;

    // Pin the algorithm: never let the token's header choose it.
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 30; // seconds of clock skew tolerated on exp and nbf

    match decode::<Claims>(token, &key, &validation)?.claims {
        Claims::Access { sub, username } => Ok((sub, username)),
        Claims::NotAccess => Err("token_type is not \"access\"".into()),
    }
}

/// The four inputs, from the arguments or, when there are none, from the environment.
fn inputs() -> Option<[String; 4]> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        return args.try_into().ok();
    }
    let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
    Some([
        var("JWKS_URL")?,
        var("ISSUER")?,
        var("AUDIENCE")?,
        var("TOKEN")?,
    ])
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some([jwks_url, issuer, audience, token]) = inputs() else {
        eprintln!("usage: verify_token JWKS_URL ISSUER AUDIENCE TOKEN (or set those variables)");
        return ExitCode::from(2);
    };
    let jwks = Jwks::new(jwks_url); // one per process: it caches the keys
    match verify(&jwks, &issuer, &audience, &token).await {
        Ok((sub, username)) => {
            let out = serde_json::json!({ "sub": sub, "username": username });
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("token rejected: {err}");
            ExitCode::FAILURE
        }
    }
}
