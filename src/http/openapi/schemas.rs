//! What the query of `GET /users` and the ad-hoc JSON answers look like, for the document
//! only: handlers build small answers with `json!`, so these types are never built: they
//! describe, and the API tests hold the handlers to the description. (Request bodies are
//! described by the body specs they are parsed with: `http::body`.)
#![expect(
    dead_code,
    reason = "schema-only types: only the derives look at their fields"
)]

use serde_json::{Map, Value};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use crate::http::pagination::DEFAULT_PAGE_SIZE;
use crate::http::views::{TokenPair, UserView};

/// The query of `GET /users`. Empty values count as absent; unknown or bad parameters are
/// refused with 400 `validation_failed`, keyed by name.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// 1-based page number; past the last page is 404.
    #[param(schema_with = page_number)]
    page: Option<u64>,
    /// Users per page, capped at 100.
    #[param(schema_with = page_size)]
    page_size: Option<u64>,
    /// Matches username, email, first and last name, ignoring case.
    #[param(max_length = 254, pattern = r"^[^\x00]*$")]
    search: Option<String>,
    is_active: Option<bool>,
    is_staff: Option<bool>,
    /// Only members of this group (which must exist).
    #[param(max_length = 254, pattern = r"^[^\x00]*$")]
    group: Option<String>,
    /// `username`, `email`, `date_joined` or `last_login`, `-` first for descending.
    #[param(
        example = "-date_joined",
        pattern = "^-?(username|email|date_joined|last_login)$"
    )]
    ordering: Option<String>,
}

/// The header of browser sessions (API.md "Browser sessions").
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct TokenTransport {
    /// `cookie`: the refresh token is set as the `HttpOnly; Secure` refresh cookie
    /// (`cookies.*`) and left out of the body, and a refresh or logout without
    /// `refresh_token` in the body uses that cookie. Only from `server.public_url`'s origin
    /// or one of `cors.allowed_origins` (when `Origin` is sent), else 403 `csrf_failed`.
    /// `body` (the default): the refresh token is in the JSON body.
    #[param(rename = "X-Token-Transport", inline, nullable = false)]
    x_token_transport: Option<TransportValue>,
}

/// The values of `X-Token-Transport`.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransportValue {
    Cookie,
    Body,
}

/// Any integer of at least 1, without the `int64` format `u64` would get: the parser takes
/// integers of any size (`PageRequest::accept`).
fn positive_integer(default: u64) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .default(Some(default.into()))
        .build()
}

fn page_number() -> Object {
    positive_integer(1)
}

fn page_size() -> Object {
    positive_integer(DEFAULT_PAGE_SIZE)
}

/// 201/200 with email verification on: the account waits for its activation link.
#[derive(ToSchema)]
pub struct ActivationRequired {
    user: UserView,
    /// Always `true`.
    activation_required: bool,
}

/// The account waits for a staff member to set `is_active`.
#[derive(ToSchema)]
pub struct ApprovalRequired {
    user: UserView,
    /// Always `true`.
    approval_required: bool,
}

/// What registration answers, depending on `accounts.require_email_verification` and
/// `accounts.require_admin_approval`: with neither, the user is logged in at once.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum Registered {
    ActivationRequired(ActivationRequired),
    ApprovalRequired(ApprovalRequired),
    LoggedIn(TokenPair),
}

/// What activation answers: a token pair, or (with `accounts.require_admin_approval`) the
/// still inactive user.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum Activated {
    LoggedIn(TokenPair),
    ApprovalRequired(ApprovalRequired),
}

/// `{}`: the answer says nothing, so it reveals nothing.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Access,
    Refresh,
}

#[derive(ToSchema)]
pub struct Verified {
    /// Always `true` (an invalid token is a 401).
    valid: bool,
    token_type: TokenKind,
    /// The token's verified claims.
    claims: Map<String, Value>,
}

#[derive(ToSchema)]
pub struct Status {
    /// `ok` (liveness) or `ready` (readiness).
    #[schema(example = "ok")]
    status: String,
}

/// An RFC 7517 JWK Set. Empty under HS256, whose key is secret.
#[derive(ToSchema)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// A public verification key.
#[derive(ToSchema)]
pub struct Jwk {
    /// `EC`, `RSA` or `OKP`.
    kty: String,
    /// The RFC 7638 thumbprint: stable for the same key.
    kid: String,
    /// `ES256`, `RS256` or `EdDSA`.
    alg: String,
    /// Always `sig`.
    #[schema(rename = "use")]
    usage: String,
    /// Curve (`EC`, `OKP`).
    #[serde(default)]
    crv: String,
    /// Public key coordinate (`EC`, `OKP`).
    #[serde(default)]
    x: String,
    /// Public key coordinate (`EC`).
    #[serde(default)]
    y: String,
    /// Modulus (`RSA`).
    #[serde(default)]
    n: String,
    /// Exponent (`RSA`).
    #[serde(default)]
    e: String,
}

/// A minimal OpenID Connect discovery document.
#[derive(ToSchema)]
pub struct OpenIdConfiguration {
    issuer: String,
    jwks_uri: String,
    /// Where to log in (`/auth/login`).
    token_endpoint: String,
    id_token_signing_alg_values_supported: Vec<String>,
    subject_types_supported: Vec<String>,
    response_types_supported: Vec<String>,
}
