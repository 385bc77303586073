//! The bound on this machine for the HTTP benchmark (`benches/bench.py`): how many bcrypt
//! hashes per second all cores manage at the configured cost, and how many ES256 signatures
//! and verifications per second, with the same crates and settings the service uses
//! (bcrypt over a 64-hex-digit SHA-256 pre-hash; jsonwebtoken with aws-lc-rs, an access
//! token's claims, the service's validation rules). Each HTTP figure is reported as a
//! fraction of the bound of the crypto it cannot avoid.
//!
//! Configured by environment variables, so that it runs the same whether Cargo builds it
//! with `harness = false` (its `main`) or with the default test harness (the `bound` test):
//! `BOUND_COST` (bcrypt cost, default 10), `BOUND_SECONDS` (per measurement, default 3),
//! `BOUND_THREADS` (default: every core), `BOUND_OUT` (write the JSON result there instead of
//! printing it).

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value, json};

const ISSUER: &str = "http://127.0.0.1:8000";
const AUDIENCE: &str = "latchkey";
/// What the service feeds bcrypt: the hex SHA-256 of the password.
const PREHASHED: &str = "8c6976e5b5410415bde908bd4dee15dfb167a9c873fc4bb8a81f6f2ab448a918";

struct Settings {
    cost: u32,
    seconds: f64,
    threads: usize,
    out: Option<String>,
}

impl Settings {
    fn from_env() -> Self {
        fn var<T: std::str::FromStr>(name: &str) -> Option<T> {
            std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
        }
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            cost: var("BOUND_COST").unwrap_or(10),
            seconds: var::<f64>("BOUND_SECONDS").unwrap_or(3.0).max(0.05),
            threads: var::<usize>("BOUND_THREADS").unwrap_or(cores).max(1),
            out: std::env::var("BOUND_OUT").ok().filter(|p| !p.is_empty()),
        }
    }
}

/// Runs `op` on `threads` threads until `seconds` have passed; operations per second.
fn rate<F>(threads: usize, seconds: f64, op: F) -> f64
where
    F: Fn() + Sync,
{
    let limit = Duration::from_secs_f64(seconds);
    let barrier = Barrier::new(threads + 1);
    let (count, elapsed) = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    let mut n: u64 = 0;
                    while start.elapsed() < limit {
                        op();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let count: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
        (count, start.elapsed())
    });
    count as f64 / elapsed.as_secs_f64()
}

fn access_claims() -> Map<String, Value> {
    let now = chrono::Utc::now().timestamp();
    let Value::Object(claims) = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "019a9c1e-7c2b-7d10-9a51-3f1f4f6f0b7e",
        "iat": now, "nbf": now, "exp": now + 900, "jti": "019a9c1e7c2b7d109a513f1f4f6f0b7f",
        "token_type": "access", "username": "user_12345", "email": "user_12345@example.com",
        "email_verified": true, "is_staff": false, "groups": [],
    }) else {
        unreachable!("json! of an object literal is an object")
    };
    claims
}

fn measure(settings: &Settings) -> Result<Value, String> {
    let (threads, seconds) = (settings.threads, settings.seconds);

    let bcrypt_op = || {
        let hash = bcrypt::hash(PREHASHED, settings.cost).unwrap_or_default();
        std::hint::black_box(hash);
    };
    bcrypt::hash(PREHASHED, settings.cost).map_err(|e| format!("bcrypt: {e}"))?;
    let bcrypt_all = rate(threads, seconds, bcrypt_op);
    let bcrypt_one = rate(1, seconds, bcrypt_op);

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| format!("key generation: {e}"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|e| format!("key parsing: {e}"))?;
    let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
    let decoding = DecodingKey::from_ec_der(pair.public_key().as_ref());
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("bench".into());
    header.typ = Some("JWT".into());
    let mut validation = Validation::new(Algorithm::ES256);
    validation.leeway = 30;
    validation.validate_nbf = true;
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);

    let claims = access_claims();
    let token = jsonwebtoken::encode(&header, &claims, &encoding).map_err(|e| e.to_string())?;
    jsonwebtoken::decode::<Map<String, Value>>(&token, &decoding, &validation)
        .map_err(|e| format!("verifying our own token: {e}"))?;

    let sign_op = || {
        let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap_or_default();
        std::hint::black_box(token);
    };
    let verify_op = || {
        let claims = jsonwebtoken::decode::<Map<String, Value>>(&token, &decoding, &validation);
        std::hint::black_box(claims.is_ok());
    };
    let es_seconds = (seconds / 2.0).max(0.05);
    let sign_all = rate(threads, es_seconds, sign_op);
    let sign_one = rate(1, es_seconds, sign_op);
    let verify_all = rate(threads, es_seconds, verify_op);
    let verify_one = rate(1, es_seconds, verify_op);

    Ok(json!({
        "threads": threads,
        "bcrypt_cost": settings.cost,
        "bcrypt_per_s": bcrypt_all,
        "bcrypt_per_s_one_thread": bcrypt_one,
        "bcrypt_ms": 1000.0 / bcrypt_one,
        "es256_sign_per_s": sign_all,
        "es256_sign_per_s_one_thread": sign_one,
        "es256_sign_us": 1e6 / sign_one,
        "es256_verify_per_s": verify_all,
        "es256_verify_per_s_one_thread": verify_one,
        "es256_verify_us": 1e6 / verify_one,
        "token_bytes": token.len(),
    }))
}

fn run() -> Result<(), String> {
    let settings = Settings::from_env();
    let result = measure(&settings)?.to_string();
    match &settings.out {
        Some(path) => std::fs::write(path, result + "\n").map_err(|e| format!("{path}: {e}")),
        None => {
            println!("{result}");
            Ok(())
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bound: {e}");
        std::process::exit(1);
    }
}

/// The same measurement under the default test harness (before `harness = false` is set).
#[cfg(test)]
#[test]
fn bound() {
    if let Err(e) = run() {
        panic!("bound: {e}");
    }
}
