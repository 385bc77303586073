//! Signing and verification keys: loading PEM files, generating new keys, the development
//! key kept next to the SQLite database, `kid`s and the public JWK Set.
//!
//! Refresh tokens have a key of their own (API.md v2, RFC 8725 §2.8): an HS256 secret that
//! only latchkey holds, so no key of the JWK Set (nor, under HS256, the secret resource
//! servers share) verifies them, and a resource server that forgets to check
//! `token_type` still cannot take a refresh token for an access token. It is
//! `jwt.refresh_secret`, or, unset, derived by HKDF-SHA256 from the signing key under a
//! fixed label, so every replica derives the same key and a signing-key rotation ends the
//! refresh tokens signed before it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use aws_lc_rs::{digest, hkdf, hmac, rsa};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use super::signer::Signer;
use crate::config::{JwtAlgorithm, JwtSettings};
use crate::db::DatabaseUrl;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("`{key}` ({path}): {why}")]
    File {
        key: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error(
        "`jwt.signing_key` is required with PostgreSQL: replicas must share one key (generate one with `latchkey keys generate`)"
    )]
    SigningKeyRequired,
    #[error("key generation failed")]
    Generation,
}

/// The key that signs access tokens, every key that verifies them (the signing key's public
/// half first, then the still-trusted previous keys of `jwt.verification_keys`), and the
/// refresh tokens' own key.
pub struct KeySet {
    pub algorithm: Algorithm,
    pub signing_kid: String,
    pub encoding: EncodingKey,
    pub signer: Signer,
    verifying: Vec<(String, DecodingKey)>,
    /// Public keys only; empty under HS256, whose secret must never be published.
    pub jwks: JwkSet,
    pub refresh: RefreshKey,
}

/// The HS256 key of refresh tokens: never published, never one of the access keys.
pub struct RefreshKey {
    pub kid: String,
    pub signer: Signer,
    pub decoding: DecodingKey,
}

/// HKDF `info` of the derived refresh key: fixed, so every replica derives the same key,
/// and unlike any other label derived from the signing key (account tokens have theirs).
const REFRESH_KEY_INFO: &[u8] = b"latchkey refresh tokens v1";

impl KeySet {
    /// Loads the configured keys, or on SQLite without `jwt.signing_key` the development key
    /// kept next to the database file (created on first start, mode 0600).
    pub fn load(settings: &JwtSettings, database: &DatabaseUrl) -> Result<Self, KeyError> {
        let (path, key_name) = match (&settings.signing_key, database) {
            (Some(path), _) => (path.clone(), "jwt.signing_key"),
            (None, DatabaseUrl::Sqlite(db)) => {
                (ensure_dev_key(db, settings.algorithm)?, "jwt.signing_key")
            }
            (None, DatabaseUrl::Postgres(_)) => return Err(KeyError::SigningKeyRequired),
        };
        let file_err = |key: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |why: String| KeyError::File { key, path, why }
        };
        let material = fs::read(&path).map_err(|e| file_err(key_name, &path)(e.to_string()))?;
        let signing =
            SigningKey::parse(settings.algorithm, &material).map_err(file_err(key_name, &path))?;

        let mut verifying = vec![(signing.kid.clone(), signing.decoding)];
        let mut jwks = JwkSet {
            keys: signing.jwk.into_iter().collect(),
        };
        for path in &settings.verification_keys {
            let material = fs::read(path)
                .map_err(|e| file_err("jwt.verification_keys", path)(e.to_string()))?;
            let key = VerificationKey::parse(settings.algorithm, &material)
                .map_err(file_err("jwt.verification_keys", path))?;
            if verifying.iter().any(|(kid, _)| *kid == key.kid) {
                continue; // the same key listed twice, or the signing key itself
            }
            jwks.keys.extend(key.jwk);
            verifying.push((key.kid, key.decoding));
        }
        let refresh = RefreshKey::load(settings, &signing.encoding)?;
        let signer = Signer::new(algorithm(settings.algorithm), &signing.encoding)
            .map_err(file_err(key_name, &path))?;
        Ok(Self {
            algorithm: algorithm(settings.algorithm),
            signing_kid: signing.kid,
            encoding: signing.encoding,
            signer,
            verifying,
            jwks,
            refresh,
        })
    }

    /// The verification key for a token's `kid`, if it is one we trust.
    pub fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, key)| key)
    }
}

impl RefreshKey {
    /// `jwt.refresh_secret`, or the key derived from the signing key's material.
    fn load(settings: &JwtSettings, signing: &EncodingKey) -> Result<Self, KeyError> {
        let secret = match &settings.refresh_secret {
            Some(path) => {
                let fail = |why: String| KeyError::File {
                    key: "jwt.refresh_secret",
                    path: path.clone(),
                    why,
                };
                let material = fs::read(path).map_err(|e| fail(e.to_string()))?;
                let secret = hmac_secret(&material).map_err(fail)?.to_vec();
                if settings.algorithm == JwtAlgorithm::HS256 && signing.as_bytes() == secret {
                    return Err(fail("must differ from the signing secret".into()));
                }
                secret
            }
            None => derive_refresh_secret(signing.as_bytes())?,
        };
        Ok(Self {
            kid: hmac_kid(b"latchkey refresh kid", &secret),
            signer: Signer::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, &secret))),
            decoding: DecodingKey::from_secret(&secret),
        })
    }
}

/// HKDF-SHA256 of the signing key's material under [`REFRESH_KEY_INFO`]: 32 bytes.
fn derive_refresh_secret(material: &[u8]) -> Result<Vec<u8>, KeyError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"latchkey").extract(material);
    let mut secret = vec![0u8; 32];
    prk.expand(&[REFRESH_KEY_INFO], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut secret))
        .map_err(|_| KeyError::Generation)?;
    Ok(secret)
}

pub fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        JwtAlgorithm::HS256 => Algorithm::HS256,
    }
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Option<Jwk>,
}

impl SigningKey {
    fn parse(alg: JwtAlgorithm, material: &[u8]) -> Result<Self, String> {
        if alg == JwtAlgorithm::HS256 {
            let secret = hmac_secret(material)?;
            return Ok(Self {
                kid: hmac_kid(b"latchkey hs256 kid", secret),
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                jwk: None,
            });
        }
        let encoding = match alg {
            JwtAlgorithm::ES256 => EncodingKey::from_ec_pem(material),
            JwtAlgorithm::RS256 => EncodingKey::from_rsa_pem(material),
            _ => EncodingKey::from_ed_pem(material),
        }
        .map_err(|e| format!("not a PKCS#8 PEM {alg} private key ({e}); convert with `openssl pkcs8 -topk8 -nocrypt`"))?;
        let jwk = Jwk::from_encoding_key(&encoding, algorithm(alg))
            .map_err(|e| format!("not a usable {alg} key ({e})"))?;
        let decoding =
            DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable public key ({e})"))?;
        let (kid, jwk) = publishable(jwk, alg)?;
        Ok(Self {
            kid,
            encoding,
            decoding,
            jwk: Some(jwk),
        })
    }
}

struct VerificationKey {
    kid: String,
    decoding: DecodingKey,
    jwk: Option<Jwk>,
}

impl VerificationKey {
    /// A public PEM, or a previous signing key's private PEM (only its public half is used).
    fn parse(alg: JwtAlgorithm, material: &[u8]) -> Result<Self, String> {
        let is_private = String::from_utf8_lossy(material).contains("PRIVATE KEY");
        if alg == JwtAlgorithm::HS256 || is_private {
            let key = SigningKey::parse(alg, material)?;
            return Ok(Self {
                kid: key.kid,
                decoding: key.decoding,
                jwk: key.jwk,
            });
        }
        let decoding = match alg {
            JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(material),
            JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(material),
            _ => DecodingKey::from_ed_pem(material),
        }
        .map_err(|e| format!("not a PEM {alg} public key ({e})"))?;
        let jwk = Jwk::from_decoding_key(&decoding, Some(algorithm(alg)))
            .map_err(|e| format!("unusable public key ({e})"))?;
        let (kid, jwk) = publishable(jwk, alg)?;
        Ok(Self {
            kid,
            decoding,
            jwk: Some(jwk),
        })
    }
}

/// Completes a public JWK for the JWKS: `kid` is its RFC 7638 thumbprint (stable for a key).
fn publishable(mut jwk: Jwk, alg: JwtAlgorithm) -> Result<(String, Jwk), String> {
    if alg == JwtAlgorithm::ES256 {
        let on_p256 = matches!(&jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(p)
            if p.curve == jsonwebtoken::jwk::EllipticCurve::P256);
        if !on_p256 {
            return Err("ES256 needs a P-256 key".into());
        }
    }
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| format!("cannot compute kid ({e})"))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok((kid, jwk))
}

/// An HS256 secret file: at least 32 bytes, a trailing newline is not part of it.
fn hmac_secret(material: &[u8]) -> Result<&[u8], String> {
    let secret = material.trim_ascii_end();
    if secret.len() < 32 {
        return Err("an HS256 secret must be at least 32 bytes".into());
    }
    Ok(secret)
}

/// HS256 `kid`: a hash of the secret under a fixed label, which names the key without
/// revealing anything usable about it (access and refresh keys have different labels).
fn hmac_kid(label: &[u8], secret: &[u8]) -> String {
    let mut input = label.to_vec();
    input.push(0);
    input.extend_from_slice(secret);
    let hash = digest::digest(&digest::SHA256, &input);
    URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16])
}

/// A new private key as PKCS#8 PEM (HS256: a random 48-byte secret, base64).
pub fn generate_private_pem(alg: JwtAlgorithm) -> Result<String, KeyError> {
    let der = match alg {
        JwtAlgorithm::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map(|d| d.as_ref().to_vec()),
        // PKCS#8 v1: jsonwebtoken expects the 48-byte v1 form for Ed25519.
        JwtAlgorithm::EdDSA => Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map(|d| d.as_ref().to_vec()),
        JwtAlgorithm::RS256 => rsa::KeyPair::generate(rsa::KeySize::Rsa2048)
            .and_then(|k| AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&k))
            .map(|d| d.as_ref().to_vec()),
        JwtAlgorithm::HS256 => {
            let mut secret = [0u8; 48];
            SystemRandom::new()
                .fill(&mut secret)
                .map_err(|_| KeyError::Generation)?;
            return Ok(format!("{}\n", STANDARD.encode(secret)));
        }
    }
    .map_err(|_| KeyError::Generation)?;
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
}

/// Writes a new private key file readable by its owner only; never overwrites.
pub fn write_new_key(path: &Path, alg: JwtAlgorithm) -> Result<(), KeyError> {
    let pem = generate_private_pem(alg)?;
    let fail = |e: std::io::Error| KeyError::File {
        key: "--out",
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(pem.as_bytes()).map_err(fail)
}

/// The development key beside the SQLite file: `<db>.<alg>.key.pem`.
fn ensure_dev_key(db: &Path, alg: JwtAlgorithm) -> Result<PathBuf, KeyError> {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.key.pem", alg.to_string().to_lowercase()));
    let path = db.with_file_name(name);
    if !path.exists() {
        write_new_key(&path, alg)?;
        log::warn!(
            target: "latchkey::auth",
            "generated a development signing key at {}; set jwt.signing_key for production",
            path.display()
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(
        alg: JwtAlgorithm,
        dir: &Path,
        verification: Vec<PathBuf>,
    ) -> (JwtSettings, DatabaseUrl) {
        let s = JwtSettings {
            algorithm: alg,
            verification_keys: verification,
            ..JwtSettings::default()
        };
        (s, DatabaseUrl::Sqlite(dir.join("t.db")))
    }

    #[test]
    fn every_algorithm_generates_loads_and_publishes() {
        for alg in [
            JwtAlgorithm::ES256,
            JwtAlgorithm::RS256,
            JwtAlgorithm::EdDSA,
            JwtAlgorithm::HS256,
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (s, db) = settings(alg, dir.path(), vec![]);
            let keys = KeySet::load(&s, &db).expect("load");
            assert_eq!(
                keys.jwks.keys.len(),
                usize::from(alg != JwtAlgorithm::HS256),
                "{alg}"
            );
            assert!(keys.decoding_key(&keys.signing_kid).is_some());
            // Same file, same kid: kids are derived from the key, not made up per start.
            assert_eq!(
                KeySet::load(&s, &db).expect("reload").signing_kid,
                keys.signing_kid
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn dev_key_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, db) = settings(JwtAlgorithm::ES256, dir.path(), vec![]);
        KeySet::load(&s, &db).expect("load");
        let mode = fs::metadata(dir.path().join("t.db.es256.key.pem"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn previous_keys_verify_and_are_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("old.pem");
        write_new_key(&old, JwtAlgorithm::ES256).expect("old key");
        let (s, db) = settings(JwtAlgorithm::ES256, dir.path(), vec![old.clone(), old]);
        let keys = KeySet::load(&s, &db).expect("load");
        assert_eq!(keys.jwks.keys.len(), 2, "duplicates are listed once");
    }

    #[test]
    fn wrong_key_type_names_the_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rsa = dir.path().join("rsa.pem");
        write_new_key(&rsa, JwtAlgorithm::RS256).expect("rsa key");
        let s = JwtSettings {
            signing_key: Some(rsa),
            ..JwtSettings::default()
        };
        let err = KeySet::load(&s, &DatabaseUrl::Sqlite(dir.path().join("x.db")))
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("jwt.signing_key") && e.contains("ES256")));
        let pg = DatabaseUrl::Postgres("postgres://x".into());
        assert!(matches!(
            KeySet::load(&JwtSettings::default(), &pg),
            Err(KeyError::SigningKeyRequired)
        ));
    }

    #[test]
    fn refresh_key_is_derived_per_signing_key_unless_configured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        write_new_key(&a, JwtAlgorithm::ES256).expect("key a");
        write_new_key(&b, JwtAlgorithm::ES256).expect("key b");
        let db = DatabaseUrl::Sqlite(dir.path().join("t.db"));
        let load = |signing: &PathBuf, refresh_secret: Option<PathBuf>| {
            let s = JwtSettings {
                signing_key: Some(signing.clone()),
                refresh_secret,
                ..JwtSettings::default()
            };
            KeySet::load(&s, &db).expect("load").refresh.kid
        };
        // Derived: the same on every replica (every load), another with another key.
        assert_eq!(load(&a, None), load(&a, None));
        assert_ne!(load(&a, None), load(&b, None));
        // Configured: independent of the signing key, so it survives a rotation.
        let secret = dir.path().join("refresh.secret");
        fs::write(
            &secret,
            generate_private_pem(JwtAlgorithm::HS256).expect("secret"),
        )
        .expect("write");
        assert_eq!(load(&a, Some(secret.clone())), load(&b, Some(secret)));
    }

    #[test]
    fn a_refresh_secret_must_be_long_and_not_the_hs256_signing_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = DatabaseUrl::Sqlite(dir.path().join("t.db"));
        let (signing, copy, short) = (
            dir.path().join("signing"),
            dir.path().join("copy"),
            dir.path().join("short"),
        );
        write_new_key(&signing, JwtAlgorithm::HS256).expect("secret");
        fs::copy(&signing, &copy).expect("copy");
        fs::write(&short, "too short\n").expect("write");
        for (refresh, why) in [(copy, "must differ"), (short, "at least 32 bytes")] {
            let s = JwtSettings {
                algorithm: JwtAlgorithm::HS256,
                signing_key: Some(signing.clone()),
                refresh_secret: Some(refresh),
                ..JwtSettings::default()
            };
            let err = KeySet::load(&s, &db).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("jwt.refresh_secret") && e.contains(why)),
                "{err:?}"
            );
        }
    }
}
