//! Access and refresh JWTs: issuing and verifying them with the algorithm pinned to the
//! configured one, `kid` required and known, and `iss`, `aud`, `exp`, `nbf` and `token_type`
//! checked with the configured leeway.
//!
//! Access tokens are signed with the signing key (verifiable with the JWK Set); refresh
//! tokens with the refresh key, HS256, which only latchkey holds (see `keys`). A token's
//! `kid` names its key, and the key decides the type: a refresh token is only ever
//! accepted under the refresh key and an access token only under an access key.
//! HS256 is deterministic, so a refresh token can be rebuilt byte for byte from its
//! claims: the grace window hands out the family's current token again that way.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::keys::KeySet;
use super::verified_cache::VerifiedCache;
use crate::config::JwtSettings;
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
    /// The session (refresh family) the token belongs to.
    pub sid: &'a str,
    /// RFC 8176 method values of the session's login, space-separated (`pwd otp`).
    pub amr: &'a str,
}

/// A refresh token's identity: which user, which family, which token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub sub: String,
    pub jti: String,
    pub fam: String,
}

/// A signed refresh token with the instants it carries, in whole seconds like its claims,
/// so that [`TokenService::reissue_refresh`] can rebuild exactly this token from them.
pub struct RefreshToken {
    pub token: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A verified token: its type, the claims the service acts on, and all of its claims as
/// compact JSON. One is remembered per live access token (`verified_cache`), so the
/// claims are kept as one string rather than as a map of a few dozen allocations.
#[derive(Debug)]
pub struct Verified {
    pub token_type: TokenType,
    pub subject: String,
    /// `sid`: the session (refresh family) of an access token.
    pub session: Option<String>,
    /// Whether `amr` (RFC 8176) includes a one-time password.
    pub passed_otp: bool,
    /// `exp` and `nbf`, seconds since the epoch.
    pub expires_at: i64,
    pub not_before: Option<i64>,
    pub claims: Box<RawValue>,
}

impl Verified {
    /// The refresh-specific claims; `None` for access tokens.
    pub fn refresh(&self) -> Option<RefreshClaims> {
        match self.token_type {
            TokenType::Refresh => serde_json::from_str(self.claims.get()).ok(),
            TokenType::Access => None,
        }
    }
}

/// What [`Verified`] takes out of the claims, read without copying them.
#[derive(Deserialize)]
struct Known<'a> {
    token_type: Option<TokenType>,
    #[serde(borrow)]
    sub: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    amr: Vec<Cow<'a, str>>,
    exp: i64,
    nbf: Option<i64>,
}

pub struct TokenService {
    keys: KeySet,
    issuer: String,
    audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Access tokens: the configured algorithm.
    validation: Validation,
    /// Refresh tokens: HS256 under the refresh key.
    refresh_validation: Validation,
    verified: VerifiedCache,
}

/// Signature, issuer, audience and lifetime checks under `alg` alone.
fn validation(
    alg: jsonwebtoken::Algorithm,
    issuer: &str,
    audience: &str,
    leeway: Duration,
) -> Validation {
    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.leeway = leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation
}

/// `at` plus `ttl`, in whole seconds, saturating at the end of time.
fn expiry(at: i64, ttl: Duration) -> i64 {
    at.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
}

/// Whole seconds since the epoch as an instant (saturating: a huge TTL stays huge).
fn instant(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl TokenService {
    pub fn new(keys: KeySet, issuer: String, jwt: &JwtSettings) -> Self {
        let leeway = jwt.leeway;
        Self {
            validation: validation(keys.algorithm, &issuer, &jwt.audience, leeway),
            refresh_validation: validation(Algorithm::HS256, &issuer, &jwt.audience, leeway),
            keys,
            issuer,
            audience: jwt.audience.clone(),
            access_ttl: jwt.access_ttl,
            refresh_ttl: jwt.refresh_ttl,
            verified: VerifiedCache::new(jwt.verified_cache_entries, leeway.as_secs()),
        }
    }

    /// Counts the verified-token cache's hits and misses into these (registered) counters.
    pub fn count_cache_lookups(&mut self, hits: Counter, misses: Counter) {
        self.verified.count_lookups(hits, misses);
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs `claims` as a token of `token_type`, with that type's key and `kid`.
    fn sign(
        &self,
        token_type: TokenType,
        claims: &Map<String, Value>,
    ) -> Result<String, TokenError> {
        let (alg, kid, signer) = match token_type {
            TokenType::Access => (
                self.keys.algorithm,
                &self.keys.signing_kid,
                &self.keys.signer,
            ),
            TokenType::Refresh => (
                Algorithm::HS256,
                &self.keys.refresh.kid,
                &self.keys.refresh.signer,
            ),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.clone());
        header.typ = Some("JWT".into());
        signer.sign(&header, claims).map_err(|e| {
            log::error!(target: "latchkey::auth", "signing failed: {e}");
            TokenError("signing failed")
        })
    }

    fn base_claims(
        &self,
        token_type: TokenType,
        sub: &str,
        jti: &str,
        iat: i64,
        exp: i64,
    ) -> Map<String, Value> {
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
        let iat = now.timestamp();
        let exp = expiry(iat, self.access_ttl);
        claims.extend(self.base_claims(TokenType::Access, who.user_id, &jti, iat, exp));
        claims.insert("nbf".into(), json!(now.timestamp()));
        claims.insert("username".into(), json!(who.username));
        claims.insert("email".into(), json!(who.email));
        claims.insert("email_verified".into(), json!(who.email_verified));
        claims.insert("is_staff".into(), json!(who.is_staff));
        claims.insert("groups".into(), json!(who.groups));
        claims.insert("sid".into(), json!(who.sid));
        let amr: Vec<&str> = who.amr.split_whitespace().collect();
        claims.insert("amr".into(), json!(amr));
        self.sign(TokenType::Access, &claims)
    }

    /// A new refresh token `id`, issued `now` and living `refresh_ttl`.
    pub fn issue_refresh(
        &self,
        id: &RefreshClaims,
        now: DateTime<Utc>,
    ) -> Result<RefreshToken, TokenError> {
        let iat = now.timestamp();
        let (issued_at, expires_at) = (instant(iat), instant(expiry(iat, self.refresh_ttl)));
        Ok(RefreshToken {
            token: self.reissue_refresh(id, issued_at, expires_at)?,
            issued_at,
            expires_at,
        })
    }

    /// The refresh token `id` issued at `issued_at` and expiring at `expires_at`: the very
    /// string [`TokenService::issue_refresh`] returned for them (HS256 is deterministic).
    pub fn reissue_refresh(
        &self,
        id: &RefreshClaims,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let (iat, exp) = (issued_at.timestamp(), expires_at.timestamp());
        let mut claims = self.base_claims(TokenType::Refresh, &id.sub, &id.jti, iat, exp);
        claims.insert("fam".into(), json!(id.fam));
        self.sign(TokenType::Refresh, &claims)
    }

    /// Verifies signature, algorithm, key, issuer, audience and lifetime, and, when
    /// `expected` is given, the token type.
    pub fn verify(
        &self,
        token: &str,
        expected: Option<TokenType>,
    ) -> Result<Arc<Verified>, TokenError> {
        let now = Utc::now().timestamp();
        let verified = match self.verified.get(token, now) {
            Some(earlier) => earlier?,
            None => {
                let verified = Arc::new(self.verify_fully(token)?);
                self.verified.insert(token, &verified);
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

    /// Signature, algorithm, key, issuer, audience, lifetime and the claims every token has;
    /// the key named by `kid` decides the type the token must claim.
    fn verify_fully(&self, token: &str) -> Result<Verified, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| TokenError("token is malformed"))?;
        let kid = header.kid.ok_or(TokenError("token has no key id"))?;
        let (keyed_type, validation) = if kid == self.keys.refresh.kid {
            (TokenType::Refresh, &self.refresh_validation)
        } else {
            (TokenType::Access, &self.validation)
        };
        if keyed_type == TokenType::Access {
            self.verified.count_miss();
        }
        if !validation.algorithms.contains(&header.alg) {
            return Err(TokenError("token algorithm is not accepted"));
        }
        let key = match keyed_type {
            TokenType::Refresh => &self.keys.refresh.decoding,
            TokenType::Access => self
                .keys
                .decoding_key(&kid)
                .ok_or(TokenError("token key id is unknown"))?,
        };
        let claims = jsonwebtoken::decode::<Box<RawValue>>(token, key, validation)
            .map_err(|e| TokenError(reason(e.kind())))?
            .claims;
        let known: Known<'_> =
            serde_json::from_str(claims.get()).map_err(|_| TokenError("token is malformed"))?;
        let token_type = known
            .token_type
            .ok_or(TokenError("token has no valid token_type"))?;
        if token_type != keyed_type {
            return Err(TokenError("token type does not match its key"));
        }
        let subject = known
            .sub
            .ok_or(TokenError("token has no subject"))?
            .into_owned();
        Ok(Verified {
            token_type,
            subject,
            session: known.sid.map(Cow::into_owned),
            passed_otp: known.amr.iter().any(|m| m == "otp"),
            expires_at: known.exp,
            not_before: known.nbf,
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
    use crate::config::JwtAlgorithm;
    use crate::db::DatabaseUrl;

    fn service(dir: &std::path::Path, alg: JwtAlgorithm) -> TokenService {
        let s = JwtSettings {
            algorithm: alg,
            leeway: Duration::ZERO,
            ..JwtSettings::default()
        };
        let keys = KeySet::load(&s, &DatabaseUrl::Sqlite(dir.join("t.db"))).expect("keys");
        TokenService::new(keys, "https://id.example".into(), &s)
    }

    /// An access token of user `u1` with `custom` claims.
    fn access(svc: &TokenService, custom: &Map<String, Value>) -> String {
        let who = AccessSubject {
            user_id: "u1",
            username: "ada",
            email: "ada@example.com",
            email_verified: true,
            is_staff: false,
            groups: &[],
            custom,
            sid: "f1",
            amr: "pwd otp",
        };
        svc.issue_access(&who, Utc::now()).expect("issue")
    }

    #[test]
    fn custom_claims_cannot_override_reserved_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let svc = service(dir.path(), JwtAlgorithm::ES256);
        let custom = json!({"tenant": "acme", "is_staff": true, "sub": "someone-else"});
        let custom = custom.as_object().cloned().unwrap_or_default();
        let token = access(&svc, &custom);
        let v = svc.verify(&token, Some(TokenType::Access)).expect("verify");
        let claims = all_claims(&v);
        assert_eq!(claims["tenant"], "acme");
        assert_eq!(claims["is_staff"], false);
        assert_eq!(v.subject, "u1");
        assert_eq!(v.session.as_deref(), Some("f1"));
        assert!(v.passed_otp);
        assert!(svc.verify(&token, Some(TokenType::Refresh)).is_err());
    }

    fn all_claims(v: &Verified) -> Map<String, Value> {
        serde_json::from_str(v.claims.get()).expect("claims are an object")
    }

    fn refresh_id(jti: &str) -> RefreshClaims {
        RefreshClaims {
            sub: "u1".into(),
            jti: jti.into(),
            fam: "f1".into(),
        }
    }

    #[test]
    fn refresh_tokens_carry_their_family_and_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let svc = service(dir.path(), JwtAlgorithm::EdDSA);
        let issued = svc
            .issue_refresh(&refresh_id("j1"), Utc::now())
            .expect("issue");
        let claims = svc
            .verify(&issued.token, Some(TokenType::Refresh))
            .expect("verify")
            .refresh()
            .expect("refresh claims");
        assert_eq!((claims.fam.as_str(), claims.jti.as_str()), ("f1", "j1"));
        let long_ago = Utc::now() - chrono::Duration::days(30);
        let old = svc
            .issue_refresh(&refresh_id("j0"), long_ago)
            .expect("issue");
        assert_eq!(
            svc.verify(&old.token, None).err(),
            Some(TokenError("token has expired"))
        );
    }

    #[test]
    fn refresh_tokens_have_their_own_key_and_rebuild_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        for alg in [JwtAlgorithm::ES256, JwtAlgorithm::HS256] {
            let svc = service(dir.path(), alg);
            let issued = svc
                .issue_refresh(&refresh_id("j1"), Utc::now())
                .expect("issue");
            let header = jsonwebtoken::decode_header(&issued.token).expect("header");
            assert_eq!(header.alg, Algorithm::HS256);
            let kid = header.kid.expect("kid");
            assert_ne!(kid, svc.keys().signing_kid, "{alg}");
            assert!(
                svc.keys().decoding_key(&kid).is_none(),
                "{alg}: an access key"
            );
            assert_eq!(
                svc.verify(&issued.token, Some(TokenType::Access)).err(),
                Some(TokenError("a refresh token is not an access token"))
            );
            let again = svc
                .reissue_refresh(&refresh_id("j1"), issued.issued_at, issued.expires_at)
                .expect("reissue");
            assert_eq!(again, issued.token, "{alg}: the same token, byte for byte");
        }
    }

    #[test]
    fn a_token_of_the_other_type_under_a_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let svc = service(dir.path(), JwtAlgorithm::HS256);
        let access_claims = all_claims(
            &svc.verify(&access(&svc, &Map::new()), Some(TokenType::Access))
                .expect("verify"),
        );
        let refresh = svc
            .issue_refresh(&refresh_id("j1"), Utc::now())
            .expect("issue");
        let refresh_claims = all_claims(&svc.verify(&refresh.token, None).expect("verify"));
        // Each kind's claims signed with the other kind's key (and its kid).
        let swapped = [
            (TokenType::Refresh, &access_claims),
            (TokenType::Access, &refresh_claims),
        ];
        for (signed_as, claims) in swapped {
            let token = svc.sign(signed_as, claims).expect("sign");
            assert_eq!(
                svc.verify(&token, None).err(),
                Some(TokenError("token type does not match its key"))
            );
        }
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
        assert_eq!(
            es.verify(&access(&other_es, &Map::new()), None).err(),
            Some(TokenError("token key id is unknown"))
        );
        assert_eq!(
            es.verify(&access(&hs, &Map::new()), None).err(),
            Some(TokenError("token algorithm is not accepted"))
        );
        // Another instance's refresh key is unknown here: its kid names no key we have.
        let foreign = other_es
            .issue_refresh(&refresh_id("j"), Utc::now())
            .expect("issue");
        assert_eq!(
            es.verify(&foreign.token, None).err(),
            Some(TokenError("token algorithm is not accepted"))
        );
    }
}
