//! Access and refresh JWTs: issuing and verifying them with the algorithm pinned to the
//! configured one, `kid` required and known, and `iss`, `aud`, `exp`, `nbf` and `token_type`
//! checked with the configured leeway.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::keys::KeySet;
use super::verified_cache::VerifiedCache;
use crate::domain::RESERVED_CLAIMS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

impl TokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }
}

/// Why a token was refused; the message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub &'static str);

/// Who an access token speaks for.
pub struct AccessSubject<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub is_staff: bool,
    pub groups: &'a [String],
    pub custom: &'a Map<String, Value>,
}

/// A refresh token's identity: which user, which family, which token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub sub: String,
    pub jti: String,
    pub fam: String,
}

/// A verified token: its type and all of its claims.
#[derive(Debug, Clone)]
pub struct Verified {
    pub token_type: TokenType,
    pub subject: String,
    pub claims: Map<String, Value>,
}

impl Verified {
    /// The refresh-specific claims; `None` for access tokens.
    pub fn refresh(&self) -> Option<RefreshClaims> {
        match self.token_type {
            TokenType::Refresh => serde_json::from_value(Value::Object(self.claims.clone())).ok(),
            TokenType::Access => None,
        }
    }
}

pub struct TokenService {
    keys: KeySet,
    issuer: String,
    audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    validation: Validation,
    verified: VerifiedCache,
}

impl TokenService {
    pub fn new(
        keys: KeySet,
        issuer: String,
        audience: String,
        access_ttl: Duration,
        refresh_ttl: Duration,
        leeway: Duration,
    ) -> Self {
        let mut validation = Validation::new(keys.algorithm);
        validation.algorithms = vec![keys.algorithm];
        validation.leeway = leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&[&audience]);
        validation.set_issuer(&[&issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            keys,
            issuer,
            audience,
            access_ttl,
            refresh_ttl,
            validation,
            verified: VerifiedCache::new(leeway.as_secs()),
        }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn header(&self) -> Header {
        let mut header = Header::new(self.keys.algorithm);
        header.kid = Some(self.keys.signing_kid.clone());
        header.typ = Some("JWT".into());
        header
    }

    fn sign(&self, claims: &Map<String, Value>) -> Result<String, TokenError> {
        jsonwebtoken::encode(&self.header(), claims, &self.keys.encoding).map_err(|e| {
            log::error!(target: "latchkey::auth", "signing failed: {e}");
            TokenError("signing failed")
        })
    }

    fn base_claims(
        &self,
        token_type: TokenType,
        sub: &str,
        jti: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Map<String, Value> {
        let iat = now.timestamp();
        let exp = iat.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let Value::Object(claims) = json!({
            "iss": self.issuer, "aud": self.audience, "sub": sub, "iat": iat, "exp": exp, "jti": jti,
            "token_type": token_type.as_str(),
        }) else {
            unreachable!("json! of an object literal is an object")
        };
        claims
    }

    /// A signed access token carrying the user's claims; custom claims go in first, so the
    /// reserved ones always win.
    pub fn issue_access(
        &self,
        who: &AccessSubject<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let mut claims: Map<String, Value> = who
            .custom
            .iter()
            .filter(|(k, _)| !RESERVED_CLAIMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let jti = uuid::Uuid::now_v7().simple().to_string();
        claims.extend(self.base_claims(TokenType::Access, who.user_id, &jti, now, self.access_ttl));
        claims.insert("nbf".into(), json!(now.timestamp()));
        claims.insert("username".into(), json!(who.username));
        claims.insert("email".into(), json!(who.email));
        claims.insert("email_verified".into(), json!(who.email_verified));
        claims.insert("is_staff".into(), json!(who.is_staff));
        claims.insert("groups".into(), json!(who.groups));
        self.sign(&claims)
    }

    /// A signed refresh token of `family` with id `jti`; returns it and its expiry.
    pub fn issue_refresh(
        &self,
        user_id: &str,
        family: &str,
        jti: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), TokenError> {
        let mut claims = self.base_claims(TokenType::Refresh, user_id, jti, now, self.refresh_ttl);
        claims.insert("fam".into(), json!(family));
        let expires =
            now + chrono::Duration::from_std(self.refresh_ttl).unwrap_or(chrono::Duration::MAX);
        Ok((self.sign(&claims)?, expires))
    }

    /// Verifies signature, algorithm, key, issuer, audience and lifetime, and, when
    /// `expected` is given, the token type.
    pub fn verify(&self, token: &str, expected: Option<TokenType>) -> Result<Verified, TokenError> {
        let now = Utc::now().timestamp();
        let verified = match self.verified.get(token, now) {
            Some(earlier) => earlier?,
            None => {
                let verified = self.verify_fully(token)?;
                self.verified.insert(token, &verified, now);
                verified
            }
        };
        if expected.is_some_and(|want| want != verified.token_type) {
            return Err(TokenError(match verified.token_type {
                TokenType::Access => "an access token is not a refresh token",
                TokenType::Refresh => "a refresh token is not an access token",
            }));
        }
        Ok(verified)
    }

    /// Signature, algorithm, key, issuer, audience, lifetime and the claims every token has.
    fn verify_fully(&self, token: &str) -> Result<Verified, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| TokenError("token is malformed"))?;
        if header.alg != self.keys.algorithm {
            return Err(TokenError("token algorithm is not accepted"));
        }
        let kid = header.kid.ok_or(TokenError("token has no key id"))?;
        let key = self
            .keys
            .decoding_key(&kid)
            .ok_or(TokenError("token key id is unknown"))?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            .map_err(|e| TokenError(reason(e.kind())))?;
        let claims = data.claims;
        let token_type = claims
            .get("token_type")
            .cloned()
            .and_then(|t| serde_json::from_value::<TokenType>(t).ok())
            .ok_or(TokenError("token has no valid token_type"))?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(TokenError("token has no subject"))?
            .to_owned();
        Ok(Verified {
            token_type,
            subject,
            claims,
        })
    }
}

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token has expired",
        ErrorKind::ImmatureSignature => "token is not valid yet",
        ErrorKind::InvalidSignature => "token signature is invalid",
        ErrorKind::InvalidAudience => "token audience is not accepted",
        ErrorKind::InvalidIssuer => "token issuer is not accepted",
        ErrorKind::InvalidAlgorithm => "token algorithm is not accepted",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        _ => "token is malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JwtAlgorithm, JwtSettings};
    use crate::db::DatabaseUrl;

    fn service(dir: &std::path::Path, alg: JwtAlgorithm) -> TokenService {
        let s = JwtSettings {
            algorithm: alg,
            ..JwtSettings::default()
        };
        let keys = KeySet::load(&s, &DatabaseUrl::Sqlite(dir.join("t.db"))).expect("keys");
        TokenService::new(
            keys,
            "https://id.example".into(),
            "latchkey".into(),
            s.access_ttl,
            s.refresh_ttl,
            Duration::ZERO,
        )
    }

    #[test]
    fn custom_claims_cannot_override_reserved_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let svc = service(dir.path(), JwtAlgorithm::ES256);
        let custom = json!({"tenant": "acme", "is_staff": true, "sub": "someone-else"});
        let custom = custom.as_object().cloned().unwrap_or_default();
        let who = AccessSubject {
            user_id: "u1",
            username: "ada",
            email: "ada@example.com",
            email_verified: true,
            is_staff: false,
            groups: &[],
            custom: &custom,
        };
        let token = svc.issue_access(&who, Utc::now()).expect("issue");
        let v = svc.verify(&token, Some(TokenType::Access)).expect("verify");
        assert_eq!(v.claims["tenant"], "acme");
        assert_eq!(v.claims["is_staff"], false);
        assert_eq!(v.subject, "u1");
        assert!(svc.verify(&token, Some(TokenType::Refresh)).is_err());
    }

    #[test]
    fn refresh_tokens_carry_their_family_and_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let svc = service(dir.path(), JwtAlgorithm::EdDSA);
        let (token, _) = svc
            .issue_refresh("u1", "f1", "j1", Utc::now())
            .expect("issue");
        let claims = svc
            .verify(&token, Some(TokenType::Refresh))
            .expect("verify")
            .refresh()
            .expect("refresh claims");
        assert_eq!((claims.fam.as_str(), claims.jti.as_str()), ("f1", "j1"));
        let long_ago = Utc::now() - chrono::Duration::days(30);
        let (old, _) = svc
            .issue_refresh("u1", "f1", "j0", long_ago)
            .expect("issue");
        assert_eq!(
            svc.verify(&old, None).err(),
            Some(TokenError("token has expired"))
        );
    }

    #[test]
    fn tokens_of_another_key_or_algorithm_are_refused() {
        let (a, b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let (es, other_es, hs) = (
            service(a.path(), JwtAlgorithm::ES256),
            service(b.path(), JwtAlgorithm::ES256),
            service(b.path(), JwtAlgorithm::HS256),
        );
        let (token, _) = other_es
            .issue_refresh("u", "f", "j", Utc::now())
            .expect("issue");
        assert_eq!(
            es.verify(&token, None).err(),
            Some(TokenError("token key id is unknown"))
        );
        let (token, _) = hs.issue_refresh("u", "f", "j", Utc::now()).expect("issue");
        assert_eq!(
            es.verify(&token, None).err(),
            Some(TokenError("token algorithm is not accepted"))
        );
    }
}
