//! The one error type of the API and the one place that maps it to a status, a stable
//! `code` and an RFC 9457 problem+json body. Internal causes are logged, never sent.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::accounts::AccountError;
use crate::auth::hash_pool::Saturated;
use crate::auth::jwt::TokenError;
use crate::db::DbError;

/// Field -> messages, DRF style; object-level problems go under `non_field_errors`.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// The stable, machine-readable `code` of a problem (API.md, "Errors"): the one table of
/// codes, statuses and titles, used by the responses and the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    MalformedRequest,
    ValidationFailed,
    InvalidCredentials,
    NotAuthenticated,
    TokenInvalid,
    TokenRevoked,
    TokenReused,
    AccountInactive,
    PermissionDenied,
    MfaRequired,
    CsrfFailed,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    PayloadTooLarge,
    Throttled,
    InternalError,
    ServiceUnavailable,
}

impl ProblemCode {
    fn about(self) -> (&'static str, StatusCode, &'static str) {
        use ProblemCode::*;
        match self {
            MalformedRequest => (
                "malformed_request",
                StatusCode::BAD_REQUEST,
                "Malformed request",
            ),
            ValidationFailed => (
                "validation_failed",
                StatusCode::BAD_REQUEST,
                "Validation failed",
            ),
            InvalidCredentials => (
                "invalid_credentials",
                StatusCode::UNAUTHORIZED,
                "Invalid credentials",
            ),
            NotAuthenticated => (
                "not_authenticated",
                StatusCode::UNAUTHORIZED,
                "Not authenticated",
            ),
            TokenInvalid => ("token_invalid", StatusCode::UNAUTHORIZED, "Token invalid"),
            TokenRevoked => ("token_revoked", StatusCode::UNAUTHORIZED, "Token revoked"),
            TokenReused => ("token_reused", StatusCode::UNAUTHORIZED, "Token reused"),
            AccountInactive => (
                "account_inactive",
                StatusCode::FORBIDDEN,
                "Account inactive",
            ),
            PermissionDenied => (
                "permission_denied",
                StatusCode::FORBIDDEN,
                "Permission denied",
            ),
            MfaRequired => (
                "mfa_required",
                StatusCode::FORBIDDEN,
                "Two-factor login required",
            ),
            CsrfFailed => ("csrf_failed", StatusCode::FORBIDDEN, "CSRF check failed"),
            NotFound => ("not_found", StatusCode::NOT_FOUND, "Not found"),
            MethodNotAllowed => (
                "method_not_allowed",
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
            ),
            RequestTimeout => (
                "request_timeout",
                StatusCode::REQUEST_TIMEOUT,
                "Request timeout",
            ),
            Conflict => ("conflict", StatusCode::CONFLICT, "Conflict"),
            PayloadTooLarge => (
                "payload_too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload too large",
            ),
            Throttled => (
                "throttled",
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
            ),
            InternalError => (
                "internal_error",
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
            ),
            ServiceUnavailable => (
                "service_unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.about().0
    }

    pub fn status(self) -> StatusCode {
        self.about().1
    }

    pub fn title(self) -> &'static str {
        self.about().2
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("no active account found with the given credentials")]
    InvalidCredentials,
    #[error("{0}")]
    AccountInactive(&'static str),
    #[error("authentication credentials were not provided")]
    NotAuthenticated,
    #[error("{0}")]
    TokenInvalid(String),
    #[error("token has been revoked")]
    TokenRevoked,
    #[error("refresh token was reused; all tokens of this session are revoked")]
    TokenReused,
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// A staff endpoint, with `mfa.required_for_staff`, called by a session without `otp`.
    #[error("staff endpoints need a session that passed two-factor login")]
    MfaRequired,
    /// A request that uses (or asks for) the refresh cookie failed the CSRF rule.
    #[error("{0}")]
    CsrfFailed(&'static str),
    #[error("not found")]
    NotFound,
    /// `allow`: the path's methods, for the `Allow` header (RFC 9110 §15.5.6).
    #[error("method not allowed; this path takes {allow}")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    Conflict(String),
    #[error("request was throttled; retry in {retry_after} seconds")]
    Throttled { retry_after: u64 },
    #[error("{detail}")]
    Unavailable { detail: String, retry_after: u64 },
    /// The cause is logged; the client sees a generic message.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// One field's problems as a validation error.
    pub fn field(field: &str, messages: Vec<String>) -> Self {
        Self::Validation(BTreeMap::from([(field.to_owned(), messages)]))
    }

    /// The problem's stable code (and with it status and title).
    pub fn problem(&self) -> ProblemCode {
        use ProblemCode as P;
        match self {
            Self::Malformed(_) => P::MalformedRequest,
            Self::PayloadTooLarge(_) => P::PayloadTooLarge,
            Self::RequestTimeout => P::RequestTimeout,
            Self::Validation(_) => P::ValidationFailed,
            Self::InvalidCredentials => P::InvalidCredentials,
            Self::AccountInactive(_) => P::AccountInactive,
            Self::NotAuthenticated => P::NotAuthenticated,
            Self::TokenInvalid(_) => P::TokenInvalid,
            Self::TokenRevoked => P::TokenRevoked,
            Self::TokenReused => P::TokenReused,
            Self::PermissionDenied(_) => P::PermissionDenied,
            Self::MfaRequired => P::MfaRequired,
            Self::CsrfFailed(_) => P::CsrfFailed,
            Self::NotFound => P::NotFound,
            Self::MethodNotAllowed { .. } => P::MethodNotAllowed,
            Self::Conflict(_) => P::Conflict,
            Self::Throttled { .. } => P::Throttled,
            Self::Unavailable { .. } => P::ServiceUnavailable,
            Self::Internal(_) => P::InternalError,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Validation(errors) => errors
                .iter()
                .map(|(field, messages)| format!("{field}: {}", messages.join(" ")))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.problem().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.render(HttpResponse::build(self.status_code()))
    }
}

impl ApiError {
    /// The problem+json response, on a builder that may already carry headers (the
    /// throttle's rate-limit headers).
    pub fn render(&self, mut response: HttpResponseBuilder) -> HttpResponse {
        if let Self::Internal(cause) = self {
            log::error!(target: "latchkey::http", "internal error: {cause}");
        }
        let status = self.status_code();
        let problem = self.problem();
        let (code, title) = (problem.as_str(), problem.title());
        let mut body = json!({
            "type": "about:blank",
            "title": title,
            "status": status.as_u16(),
            "detail": self.detail(),
            "code": code,
        });
        if let Self::Validation(errors) = self {
            body["errors"] = json!(errors);
        }
        response.status(status);
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        match self {
            Self::NotAuthenticated => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::TokenInvalid(_) | Self::TokenRevoked | Self::TokenReused => {
                // RFC 6750 §3: tell the client its token is what failed.
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                ));
            }
            Self::Unavailable { retry_after, .. } | Self::Throttled { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            Self::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, allow.as_str()));
            }
            _ => {}
        }
        response.body(body.to_string())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(cause) => {
                log::warn!(target: "latchkey::db", "database unavailable: {cause}");
                Self::Unavailable {
                    detail: "database is unavailable".into(),
                    retry_after: 5,
                }
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NotFound => Self::NotFound,
            AccountError::UnknownGroups(names) => Self::field(
                "groups",
                names
                    .iter()
                    .map(|n| format!("Object with name={n} does not exist."))
                    .collect(),
            ),
            AccountError::LastStaff => Self::PermissionDenied(
                "the last active staff user cannot be deactivated, demoted or deleted",
            ),
            AccountError::Db(e) => e.into(),
        }
    }
}

impl From<Saturated> for ApiError {
    fn from(_: Saturated) -> Self {
        Self::Unavailable {
            detail: "too many password checks in progress; retry shortly".into(),
            retry_after: 1,
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        Self::TokenInvalid(e.0.to_owned())
    }
}

/// Middleware hook: any error response that did not come from [`ApiError`] (actix's own
/// request-parsing errors, a handler that panicked) is rewritten as problem+json, so every
/// 4xx/5xx of the API has the same shape.
pub fn problem_for_foreign_errors<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::middleware::ErrorHandlerResponse;
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let error = match res.status() {
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed {
            allow: res
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        },
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(crate::http::extractors::BODY_LIMIT)
        }
        s if s.is_client_error() => {
            ApiError::Malformed(s.canonical_reason().unwrap_or("bad request").to_owned())
        }
        s => ApiError::Internal(format!("unhandled {s} response")),
    };
    let (req, _) = res.into_parts();
    let response = error.error_response().map_into_boxed_body();
    Ok(ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, response).map_into_right_body(),
    ))
}
