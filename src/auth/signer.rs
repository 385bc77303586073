//! Signs JWTs with a key parsed once, when the keys are loaded. `jsonwebtoken::encode`
//! parses the PKCS#8 (or PKCS#1) key again for every token it signs: under ES256 that cost
//! about as much as the signature itself (6% of a refresh's CPU, against 8% for signing,
//! in a profile of the refresh benchmark). The token is the compact JWS that
//! `jsonwebtoken::encode` makes, `base64url(header).base64url(claims).base64url(signature)`
//! with the same serialisations; verifying tokens stays with `jsonwebtoken`.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

pub enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
    // Boxed: an HMAC key keeps its precomputed inner and outer states, hundreds of bytes.
    Hmac(Box<hmac::Key>),
}

impl Signer {
    /// The signer of `algorithm` over `key`, the DER (or secret) that `jsonwebtoken` holds.
    pub fn new(algorithm: Algorithm, key: &EncodingKey) -> Result<Self, String> {
        let der = key.as_bytes();
        let unusable =
            |e: aws_lc_rs::error::KeyRejected| format!("unusable {algorithm:?} key: {e}");
        Ok(match algorithm {
            Algorithm::ES256 => Self::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(unusable)?,
            ),
            Algorithm::EdDSA => Self::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(unusable)?),
            Algorithm::RS256 => Self::Rsa(RsaKeyPair::from_der(der).map_err(unusable)?),
            Algorithm::HS256 => Self::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, der))),
            other => return Err(format!("{other:?} is not supported")),
        })
    }

    /// The signed token of `header` and `claims`.
    pub fn sign(&self, header: &Header, claims: &impl Serialize) -> Result<String, String> {
        let json = |part: Result<Vec<u8>, serde_json::Error>| part.map_err(|e| e.to_string());
        let mut token = URL_SAFE_NO_PAD.encode(json(serde_json::to_vec(header))?);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(json(serde_json::to_vec(claims))?, &mut token);
        let fail = |_| "signing failed".to_owned();
        let rng = SystemRandom::new();
        let signature = match self {
            Self::Ecdsa(key) => key
                .sign(&rng, token.as_bytes())
                .map_err(fail)?
                .as_ref()
                .to_vec(),
            Self::Ed25519(key) => key.sign(token.as_bytes()).as_ref().to_vec(),
            Self::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, token.as_bytes(), &mut signature)
                    .map_err(fail)?;
                signature
            }
            Self::Hmac(key) => hmac::sign(key, token.as_bytes()).as_ref().to_vec(),
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};
    use serde_json::{Value, json};

    use super::*;
    use crate::auth::keys::{algorithm, generate_private_pem};
    use crate::config::JwtAlgorithm;

    fn keys(alg: JwtAlgorithm) -> (EncodingKey, DecodingKey) {
        if alg == JwtAlgorithm::HS256 {
            let secret = b"a secret of at least thirty-two bytes";
            return (
                EncodingKey::from_secret(secret),
                DecodingKey::from_secret(secret),
            );
        }
        let pem = generate_private_pem(alg).expect("key");
        let encoding = match alg {
            JwtAlgorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            JwtAlgorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            _ => EncodingKey::from_ed_pem(pem.as_bytes()),
        }
        .expect("encoding key");
        let jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, algorithm(alg)).expect("jwk");
        (encoding, DecodingKey::from_jwk(&jwk).expect("decoding key"))
    }

    #[test]
    fn tokens_are_what_jsonwebtoken_makes_and_verifies() {
        let claims = json!({"sub": "u1", "exp": 4_000_000_000_i64, "name": "Zoë \"quoted\""});
        for alg in [
            JwtAlgorithm::ES256,
            JwtAlgorithm::RS256,
            JwtAlgorithm::EdDSA,
            JwtAlgorithm::HS256,
        ] {
            let (encoding, decoding) = keys(alg);
            let mut header = Header::new(algorithm(alg));
            header.kid = Some("k1".into());
            let token = Signer::new(algorithm(alg), &encoding)
                .expect("signer")
                .sign(&header, &claims)
                .expect("sign");
            let mut validation = Validation::new(algorithm(alg));
            validation.required_spec_claims.clear();
            let decoded = jsonwebtoken::decode::<Value>(&token, &decoding, &validation)
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(decoded.claims, claims, "{alg}");
            assert_eq!(decoded.header.kid.as_deref(), Some("k1"), "{alg}");
            if matches!(
                alg,
                JwtAlgorithm::HS256 | JwtAlgorithm::EdDSA | JwtAlgorithm::RS256
            ) {
                // Deterministic signatures: byte for byte the token jsonwebtoken makes.
                let theirs = jsonwebtoken::encode(&header, &claims, &encoding).expect("encode");
                assert_eq!(token, theirs, "{alg}");
            }
        }
    }
}
