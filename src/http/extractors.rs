//! Request extractors: the JSON body (with problem+json errors), field-by-field parsing
//! with DRF-style messages, and the authenticated user.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::JsonPayloadError;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use serde_json::{Map, Value};

use super::error::{ApiError, FieldErrors};
use super::state::AppState;
use super::throttle::Caller;
use crate::auth::jwt::{TokenType, Verified};
use crate::db::models::{groups, users::User};
use crate::domain::check_name;

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

/// A request body that is a JSON object.
pub struct JsonBody(pub Map<String, Value>);

impl FromRequest for JsonBody {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            // The server's own timeout covers only the request head; a client that stalls
            // mid-body would otherwise hold its connection and a worker's attention forever.
            let json = tokio::time::timeout(BODY_TIMEOUT, json)
                .await
                .map_err(|_| ApiError::RequestTimeout)?;
            match json?.into_inner() {
                Value::Object(map) => Ok(JsonBody(map)),
                _ => Err(ApiError::Malformed("body must be a JSON object".into()).into()),
            }
        })
    }
}

const REQUIRED: &str = "This field is required.";

/// Takes fields out of a JSON object one by one, collecting every problem, then reports
/// them all at once (and any field the endpoint does not take) as `validation_failed`.
pub struct Fields {
    body: Map<String, Value>,
    errors: FieldErrors,
}

impl Fields {
    pub fn new(JsonBody(body): JsonBody) -> Self {
        Self {
            body,
            errors: FieldErrors::new(),
        }
    }

    /// Records problems for a field (from a domain type's parser, say).
    pub fn reject(&mut self, field: &str, messages: Vec<String>) {
        self.errors
            .entry(field.to_owned())
            .or_default()
            .extend(messages);
    }

    /// Keeps the value of a domain parse, or records its problems under `field`.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, Vec<String>>) -> Option<T> {
        parsed.map_err(|messages| self.reject(field, messages)).ok()
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Like DRF without `allow_null`: `null` is refused even for an optional field (in a
    /// PATCH, "set it to null" must not silently mean "leave it alone").
    fn take(&mut self, field: &str, required: bool) -> Option<Value> {
        match self.body.remove(field) {
            None if required => {
                self.reject(field, vec![REQUIRED.into()]);
                None
            }
            Some(Value::Null) => {
                self.reject(field, vec!["This field may not be null.".into()]);
                None
            }
            None => None,
            Some(value) => Some(value),
        }
    }

    fn string(&mut self, field: &str, required: bool) -> Option<String> {
        match self.take(field, required)? {
            Value::String(s) => Some(s),
            _ => {
                self.reject(field, vec!["Not a valid string.".into()]);
                None
            }
        }
    }

    pub fn required_str(&mut self, field: &str) -> Option<String> {
        self.string(field, true)
    }

    pub fn optional_str(&mut self, field: &str) -> Option<String> {
        self.string(field, false)
    }

    /// An optional value of any JSON type, for a domain parser.
    pub fn optional_value(&mut self, field: &str) -> Option<Value> {
        self.take(field, false)
    }

    pub fn optional_bool(&mut self, field: &str) -> Option<bool> {
        match self.take(field, false)? {
            Value::Bool(b) => Some(b),
            _ => {
                self.reject(field, vec!["Must be a valid boolean.".into()]);
                None
            }
        }
    }

    /// An optional list of strings, each parsed by `parse`; every bad item is recorded.
    pub fn optional_list<T>(
        &mut self,
        field: &str,
        parse: impl Fn(&str) -> Result<T, Vec<String>>,
    ) -> Option<Vec<T>> {
        let Value::Array(items) = self.take(field, false)? else {
            self.reject(field, vec!["Expected a list of items.".into()]);
            return None;
        };
        let mut parsed = Vec::with_capacity(items.len());
        let mut problems = Vec::new();
        for item in &items {
            match item.as_str().map(&parse) {
                Some(Ok(value)) => parsed.push(value),
                Some(Err(p)) => problems.extend(p),
                None => problems.push("Not a valid string.".into()),
            }
        }
        if problems.is_empty() {
            Some(parsed)
        } else {
            self.reject(field, problems);
            None
        }
    }

    /// A required password and its required confirmation; a mismatch is recorded on the
    /// confirmation field. Returns the password as typed, for the policy to parse.
    pub fn password_pair(&mut self, field: &str, confirm_field: &str) -> Option<String> {
        let password = self.required_str(field);
        let confirm = self.required_str(confirm_field);
        if let (Some(p), Some(c)) = (&password, &confirm)
            && p != c
        {
            self.reject(
                confirm_field,
                vec!["The two password fields didn't match.".into()],
            );
        }
        password
    }

    /// The one string field of a single-field body.
    pub fn only_str(body: JsonBody, field: &str) -> Result<String, ApiError> {
        let mut f = Self::new(body);
        let value = f.required_str(field);
        f.finish(|| value)
    }

    /// An optional first/last name: absent is `None`, too long is recorded.
    pub fn optional_name(&mut self, field: &str) -> Option<String> {
        let value = self.optional_str(field)?;
        self.check(field, check_name(&value).map(|()| value))
    }

    /// Ends parsing: unknown fields and collected problems become one validation error;
    /// otherwise `build` assembles the request (every field it needs is present).
    pub fn finish<T>(mut self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        let unknown: Vec<String> = self.body.keys().cloned().collect();
        for field in unknown {
            self.reject(&field, vec!["This field is not allowed here.".into()]);
        }
        if !self.errors.is_empty() {
            return Err(ApiError::Validation(self.errors));
        }
        build().ok_or_else(|| ApiError::Internal("validated request lacks a field".into()))
    }
}

/// The caller of a protected endpoint: a valid access token of an existing, active user.
pub struct AuthenticatedUser {
    pub user: User,
    pub groups: Vec<String>,
    pub token: Verified,
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
        let who = AuthenticatedUser::from_request(req, payload);
        Box::pin(async move {
            let who = who.await?;
            if who.user.is_staff {
                Ok(StaffUser(who))
            } else {
                Err(ApiError::PermissionDenied("staff only").into())
            }
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
