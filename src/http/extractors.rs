//! Request extractors: the JSON body (with problem+json errors), field-by-field parsing
//! with DRF-style messages, and the authenticated user.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::error::JsonPayloadError;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use super::error::ApiError;
use super::state::AppState;
use super::throttle::Caller;
use crate::auth::jwt::{TokenType, Verified};
use crate::db::models::{groups, users::User};

/// Largest accepted request body (API.md: 64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// How long a client may take to send its whole body, once the head has arrived.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// JSON bodies: size-capped, `application/json` required, errors as problem+json.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(BODY_LIMIT)
        .content_type_required(true)
        .error_handler(|err, _req| {
            match err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => {
                    ApiError::PayloadTooLarge(BODY_LIMIT)
                }
                JsonPayloadError::ContentType => {
                    ApiError::Malformed("Content-Type must be application/json".into())
                }
                JsonPayloadError::Deserialize(e) => {
                    ApiError::Malformed(format!("body is not valid JSON: {e}"))
                }
                other => ApiError::Malformed(format!("cannot read body: {other}")),
            }
            .into()
        })
}

/// The caller of a protected endpoint: a valid access token of an existing, active user.
pub struct AuthenticatedUser {
    pub user: User,
    pub groups: Vec<String>,
    pub token: Arc<Verified>,
}

impl FromRequest for AuthenticatedUser {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let bearer = bearer_token(req);
        // The throttle already verified the token of this request, if it is on.
        let checked = req
            .extensions()
            .get::<Caller>()
            .and_then(|c| c.token.clone());
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let token = bearer.ok_or(ApiError::NotAuthenticated)?;
            let verified = match checked {
                Some(verified) => verified,
                None => state
                    .tokens
                    .verify(&token, Some(TokenType::Access))
                    .map_err(ApiError::from)?,
            };
            let id = verified.subject.clone();
            let found = state
                .db
                .run(move |conn| groups::user_with_groups(conn, &id))
                .await
                .map_err(ApiError::from)?;
            match found {
                Some((user, groups)) if user.is_active => Ok(AuthenticatedUser {
                    user,
                    groups,
                    token: verified,
                }),
                Some(_) => Err(ApiError::TokenInvalid("user is inactive".into()).into()),
                None => Err(ApiError::TokenInvalid("user no longer exists".into()).into()),
            }
        })
    }
}

/// A staff member: an authenticated user whose row (not token) says `is_staff`, so a
/// demotion takes effect on the very next request. Everyone else gets 403.
pub struct StaffUser(pub AuthenticatedUser);

impl FromRequest for StaffUser {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let required_for_staff = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|state| state.settings.mfa.required_for_staff);
        let who = AuthenticatedUser::from_request(req, payload);
        Box::pin(async move {
            let who = who.await?;
            if !who.user.is_staff {
                return Err(ApiError::PermissionDenied("staff only").into());
            }
            // Authorization first: only a staff member learns that a second factor is due.
            if required_for_staff && !who.token.passed_otp {
                return Err(ApiError::MfaRequired.into());
            }
            Ok(StaffUser(who))
        })
    }
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive).
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}
