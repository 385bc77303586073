//! The session list (API.md "Sessions"): a user sees where they are signed in and ends
//! one session or every other one; staff see a user's sessions. A session is a refresh
//! family; access tokens name theirs in `sid`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Route;
use super::users_admin::user_id;
use crate::db::models::tokens::{self, Revoke, SessionRow};
use crate::db::models::users::User;
use crate::http::error::ApiError;
use crate::http::error::ProblemCode as Code;
use crate::http::extractors::{AuthenticatedUser, StaffUser};
use crate::http::state::AppState;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route!(Caller, my_sessions),
        route!(Caller, end_my_session),
        route!(Caller, end_my_other_sessions),
        route!(Caller, user_sessions),
    ]
}

/// One live session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session id: `sid` in its access tokens.
    #[schema(example = "0193f5e2a7c47d8e9b1a2c3d4e5f6a7b")]
    id: String,
    created_at: DateTime<Utc>,
    /// The last refresh (its start if it has not been refreshed since).
    last_used_at: DateTime<Utc>,
    /// The client address as the throttle saw it at the last use; empty if unknown.
    #[schema(example = "203.0.113.7")]
    ip: String,
    /// At most 256 characters.
    user_agent: String,
    /// RFC 8176 methods of the session's login.
    #[schema(example = json!(["pwd"]))]
    amr: Vec<String>,
    /// Whether it is the session of the access token that asked.
    current: bool,
}

impl SessionView {
    fn new(row: SessionRow, current: Option<&str>) -> Self {
        Self {
            current: current == Some(row.id.as_str()),
            created_at: row.created_at.and_utc(),
            last_used_at: row.last_used().and_utc(),
            amr: row.amr.split_whitespace().map(str::to_owned).collect(),
            id: row.id,
            ip: row.ip,
            user_agent: row.user_agent,
        }
    }
}

async fn sessions_of(
    state: &AppState,
    user_id: String,
    current: Option<String>,
) -> Result<Vec<SessionView>, ApiError> {
    let rows = state
        .db
        .run(move |conn| tokens::live_sessions(conn, &user_id, Utc::now()))
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| SessionView::new(row, current.as_deref()))
        .collect())
}

#[utoipa::path(
    get,
    path = "/users/me/sessions",
    operation_id = "list_my_sessions",
    tag = "Current user",
    summary = "The caller's sessions",
    description = "Every live session (not revoked, not expired), most recently used first.",
    security(("bearer" = [])),
    responses((status = 200, description = "The sessions.", body = Vec<SessionView>)),
)]
async fn my_sessions(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let current = who.token.session.clone();
    let sessions = sessions_of(&state, who.user.id, current).await?;
    Ok(HttpResponse::Ok().json(sessions))
}

#[utoipa::path(
    delete,
    path = "/users/me/sessions/{id}",
    operation_id = "end_my_session",
    tag = "Current user",
    summary = "Sign out one session",
    description = "Revokes the session: its refresh token then gets `token_revoked`. Another \
                   user's session, or one that is unknown or already ended, is 404.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session id.")),
    responses((status = 204, description = "The session is revoked.")),
    extensions(("x-problems" = json!([Code::NotFound]))),
)]
async fn end_my_session(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let family = path.into_inner();
    let user_id = who.user.id;
    let hooks = state.webhooks.clone();
    let ended = state
        .db
        .write(move |conn| {
            let revoke = Revoke::now("session_ended", &hooks);
            tokens::revoke_session(conn, &user_id, &family, &revoke)
        })
        .await?;
    if !ended {
        return Err(ApiError::NotFound);
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    delete,
    path = "/users/me/sessions",
    operation_id = "end_my_other_sessions",
    tag = "Current user",
    summary = "Sign out other devices",
    description = "Revokes every session of the caller except the one of the presented access \
                   token (every session, for a token that names none).",
    security(("bearer" = [])),
    responses((status = 204, description = "Every other session is revoked.")),
)]
async fn end_my_other_sessions(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let current = who.token.session.clone();
    let user_id = who.user.id;
    let hooks = state.webhooks.clone();
    let ended = state
        .db
        .write(move |conn| {
            let revoke = Revoke::now("sign_out_others", &hooks);
            tokens::revoke_user_families(conn, &user_id, current.as_deref(), &revoke)
        })
        .await?;
    log::info!(target: "latchkey::accounts", "signed out {ended} other session(s)");
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/users/{id}/sessions",
    operation_id = "list_user_sessions",
    tag = "Administration",
    summary = "A user's sessions",
    description = "The user's live sessions, as the user sees them (`current` is always false).",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "The user's id.")),
    responses((status = 200, description = "The sessions.", body = Vec<SessionView>)),
    extensions(("x-problems" = json!([Code::PermissionDenied,
        Code::MfaRequired, Code::NotFound]))),
)]
async fn user_sessions(
    state: web::Data<AppState>,
    _staff: StaffUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&path)?;
    let lookup = id.clone();
    state
        .db
        .run(move |conn| User::find(conn, &lookup))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(sessions_of(&state, id, None).await?))
}
