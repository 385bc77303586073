//! What the API shows: built from rows, never the rows themselves, so a password hash
//! cannot be serialized by accident.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::db::models::users::User;

/// A user account as the API shows it (never with a password or its hash).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserView {
    #[schema(format = "uuid", example = "0190b3c4-6f1e-7a52-9d2c-3f4e5a6b7c8d")]
    pub id: String,
    #[schema(example = "ada")]
    pub username: String,
    #[schema(format = "email", example = "ada@example.com")]
    pub email: String,
    pub email_verified: bool,
    pub first_name: String,
    pub last_name: String,
    pub bio: String,
    pub is_active: bool,
    pub is_staff: bool,
    /// Names of the user's groups.
    pub groups: Vec<String>,
    /// Custom claims, merged into the user's access tokens.
    pub claims: Map<String, Value>,
    pub date_joined: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
    /// Whether login asks for a second factor (TOTP).
    pub mfa_enabled: bool,
}

impl UserView {
    pub fn new(user: &User, groups: Vec<String>) -> Self {
        Self {
            id: user.id.clone(),
            username: user.username.clone(),
            email: user.email.clone(),
            email_verified: user.email_verified,
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            bio: user.bio.clone(),
            is_active: user.is_active,
            is_staff: user.is_staff,
            groups,
            claims: custom_claims(user),
            date_joined: utc(user.date_joined),
            last_login: user.last_login.map(utc),
            mfa_enabled: user.mfa_enabled,
        }
    }
}

/// The user's custom claims object (a corrupt column reads as no claims, and is logged).
pub fn custom_claims(user: &User) -> Map<String, Value> {
    serde_json::from_str(&user.claims).unwrap_or_else(|e| {
        log::error!(target: "latchkey::db", "user {}: unreadable claims column: {e}", user.id);
        Map::new()
    })
}

fn utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

/// A fresh access token and the refresh token that renews it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    /// Absent when the request asked for `X-Token-Transport: cookie`: the refresh token
    /// is then in the `Set-Cookie` header only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Seconds until the refresh token expires.
    #[schema(example = 1209600)]
    pub refresh_expires_in: u64,
    pub user: UserView,
}
