//! What the request bodies and the ad-hoc JSON answers look like, for the document only.
//! Handlers read bodies field by field (`extractors::Fields`) and build small answers with
//! `json!`, so these types are never built or parsed: they describe, and the API tests
//! hold the handlers to the description.
//!
//! Every request body refuses unknown fields (`deny_unknown_fields`) and `null`; optional
//! fields are `#[serde(default)]`, which the schema shows as not required.
#![expect(
    dead_code,
    reason = "schema-only types: only the derives look at their fields"
)]

use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::http::views::{TokenPair, UserView};

/// A new account.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Letters, digits and `@ . + - _`; unique, ignoring case.
    #[schema(min_length = 1, max_length = 150, example = "ada")]
    username: String,
    /// Unique, ignoring case; stored with the domain lower-cased.
    #[schema(format = "email", example = "ada@example.com")]
    email: String,
    /// At least `password.min_length` characters (8 by default), not entirely numeric, not
    /// too similar to the username or email, not a common password.
    #[schema(max_length = 256)]
    password: String,
    /// Must equal `password`.
    password_confirm: String,
    #[serde(default)]
    #[schema(max_length = 150)]
    first_name: String,
    #[serde(default)]
    #[schema(max_length = 150)]
    last_name: String,
    #[serde(default)]
    bio: String,
}

/// The emailed activation or reset link's two parts.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// URL-safe base64 (no padding) of the user id.
    uid: String,
    token: String,
}

/// An email address to send a link to.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    #[schema(example = "ada@example.com")]
    email: String,
}

/// Credentials: `password` and one of `username` or `email` (`username` wins if both are
/// given).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[serde(default)]
    #[schema(example = "ada")]
    username: String,
    #[serde(default)]
    email: String,
    password: String,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenRequest {
    refresh_token: String,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// An access or a refresh token.
    token: String,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmRequest {
    /// From the emailed link.
    uid: String,
    /// From the emailed link.
    token: String,
    /// The same rules as at registration.
    #[schema(max_length = 256)]
    new_password: String,
    /// Must equal `new_password`.
    new_password_confirm: String,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    current_password: String,
    /// The same rules as at registration.
    #[schema(max_length = 256)]
    new_password: String,
    /// Must equal `new_password`.
    new_password_confirm: String,
}

/// The profile fields a user may change; any other field is refused and nothing changes.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    #[serde(default)]
    #[schema(max_length = 150)]
    first_name: String,
    #[serde(default)]
    #[schema(max_length = 150)]
    last_name: String,
    #[serde(default)]
    bio: String,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CurrentPassword {
    current_password: String,
}

/// What staff may change about a user; absent fields stay as they are.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffUserUpdate {
    /// `false` revokes the user's refresh tokens; `true` on a user awaiting approval approves
    /// it (and emails them). Staff cannot deactivate themselves.
    #[serde(default)]
    is_active: bool,
    /// Staff cannot remove their own staff status.
    #[serde(default)]
    is_staff: bool,
    /// Replaces the user's groups; every name must exist.
    #[serde(default)]
    groups: Vec<String>,
    /// Replaces the custom claims merged into access tokens: at most 4 KiB, no reserved
    /// claim names.
    #[serde(default)]
    claims: Map<String, Value>,
    #[serde(default)]
    #[schema(max_length = 150)]
    first_name: String,
    #[serde(default)]
    #[schema(max_length = 150)]
    last_name: String,
    #[serde(default)]
    bio: String,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// 1–150 letters, digits and `_ . - @ + :`; case-sensitive.
    #[schema(min_length = 1, max_length = 150, example = "editors")]
    name: String,
}

/// The query of `GET /users`. Empty values count as absent; unknown or bad parameters are
/// refused with 400 `validation_failed`, keyed by name.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// 1-based page number; past the last page is 404.
    #[param(minimum = 1, default = 1)]
    page: Option<u64>,
    /// Users per page, capped at 100.
    #[param(minimum = 1, default = 20)]
    page_size: Option<u64>,
    /// Matches username, email, first and last name, ignoring case.
    search: Option<String>,
    is_active: Option<bool>,
    is_staff: Option<bool>,
    /// Only members of this group (which must exist).
    group: Option<String>,
    /// `username`, `email`, `date_joined` or `last_login`, `-` first for descending.
    #[param(example = "-date_joined")]
    ordering: Option<String>,
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
