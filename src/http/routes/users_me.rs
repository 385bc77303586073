//! The current user: profile, password change, self-deletion.

use actix_web::{HttpResponse, web};

use super::Route;
use crate::accounts;
use crate::db::models::users::{User, UserChanges};
use crate::domain::{check_bio, check_name};
use crate::http::account_limit::Account;
use crate::http::body::{BodySpec, Kind, bounds, optional, required};
use crate::http::browser::Transport;
use crate::http::client_ip::Client;
use crate::http::error::ApiError;
use crate::http::extractors::AuthenticatedUser;
use crate::http::fields::{Fields, JsonBody};
use crate::http::openapi::schemas::TokenTransport;
use crate::http::session;
use crate::http::state::AppState;
use crate::http::views::{TokenPair, UserView};
use crate::webhooks::UserChange;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route!(Caller, me),
        route!(Caller, update_me, PROFILE),
        route!(Credentials, delete_me, CURRENT_PASSWORD),
        route!(Credentials, change_password, CHANGE_PASSWORD),
    ]
}

const PROFILE: BodySpec = BodySpec {
    name: "ProfileUpdate",
    description: "The profile fields a user may change; any other field is refused and nothing changes.",
    fields: &[
        optional("first_name", Kind::Text(bounds::NAME), ""),
        optional("last_name", Kind::Text(bounds::NAME), ""),
        optional("bio", Kind::Text(bounds::BIO), ""),
    ],
    one_of: &[],
};

const CURRENT_PASSWORD: BodySpec = BodySpec {
    name: "CurrentPassword",
    description: "The caller's current password, to confirm a destructive change.",
    fields: &[required(
        "current_password",
        Kind::Text(bounds::PASSWORD),
        "",
    )],
    one_of: &[],
};

const CHANGE_PASSWORD: BodySpec = BodySpec {
    name: "ChangePasswordRequest",
    description: "The current password and the new one, twice.",
    fields: &[
        required("current_password", Kind::Text(bounds::PASSWORD), ""),
        bounds::NEW_PASSWORD_FIELD,
        bounds::NEW_PASSWORD_CONFIRM_FIELD,
    ],
    one_of: &[],
};

#[utoipa::path(
    get,
    path = "/users/me",
    operation_id = "get_me",
    tag = "Current user",
    summary = "The caller's account",
    description = "The user the access token speaks for.",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller.", body = UserView)),
)]
async fn me(who: AuthenticatedUser) -> HttpResponse {
    HttpResponse::Ok().json(UserView::new(&who.user, who.groups))
}

/// Only the profile fields; anything else (is_staff, email, claims, groups...) is refused
/// by name and nothing changes.
#[utoipa::path(
    patch,
    path = "/users/me",
    operation_id = "update_me",
    tag = "Current user",
    summary = "Change the caller's profile",
    description = "Only `first_name`, `last_name` and `bio`; any other field (`is_staff`, \
                   `email`, `claims`, `groups`...) is refused by name and nothing changes.",
    security(("bearer" = [])),
    responses((status = 200, description = "The updated caller.", body = UserView)),
)]
async fn update_me(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let first_name = f.optional_checked("first_name", check_name);
    let last_name = f.optional_checked("last_name", check_name);
    let bio = f.optional_checked("bio", check_bio);
    let changes = f.finish(|| {
        Some(UserChanges {
            first_name,
            last_name,
            bio,
            ..UserChanges::default()
        })
    })?;
    let id = who.user.id.clone();
    let hooks = state.webhooks.clone();
    let user = state
        .db
        .write(move |conn| {
            accounts::change_user(conn, &hooks, UserChange::Updated, |conn| {
                User::update(conn, &id, &changes)
            })
        })
        .await?
        .ok_or_else(|| ApiError::TokenInvalid("user no longer exists".into()))?;
    Ok(HttpResponse::Ok().json(UserView::new(&user, who.groups)))
}

/// A wrong current password, as every body with `current_password` reports it.
pub(super) fn wrong_password() -> ApiError {
    ApiError::field("current_password", vec!["Password is incorrect.".into()])
}

/// Checks `candidate` against the caller's password; every check counts against the
/// account's own limit.
pub(super) async fn check_current_password(
    state: &AppState,
    user: &User,
    candidate: &str,
) -> Result<(), ApiError> {
    state.account_limit.check(Account::User(&user.id)).await?;
    if state
        .hasher
        .verify(candidate, Some(user.password_hash.clone()))
        .await?
    {
        Ok(())
    } else {
        Err(wrong_password())
    }
}

#[utoipa::path(
    delete,
    path = "/users/me",
    operation_id = "delete_me",
    tag = "Current user",
    summary = "Delete the caller's account",
    description = "Needs the current password (wrong: 400 `validation_failed` with \
                   `errors.current_password`). The user and all its tokens are gone.",
    security(("bearer" = [])),
    responses((status = 204, description = "The account is deleted.")),
)]
async fn delete_me(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let current = f.required_str("current_password");
    let current = f.finish(|| current)?;
    check_current_password(&state, &who.user, &current).await?;
    let id = who.user.id.clone();
    let hooks = state.webhooks.clone();
    // Tokens and group memberships go with the row (ON DELETE CASCADE).
    state
        .db
        .write(move |conn| Ok(accounts::delete(conn, &hooks, &id)))
        .await??;
    log::info!(target: "latchkey::accounts", "user {} deleted their account", who.user.id);
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/users/me/password",
    operation_id = "change_password",
    tag = "Password",
    summary = "Change the caller's password",
    description = "Needs the current password (wrong: 400 `validation_failed` with \
                   `errors.current_password`). Every other refresh token of the user is \
                   revoked; the caller gets a fresh pair.",
    security(("bearer" = [])),
    params(TokenTransport),
    responses((status = 200, description = "A fresh session.", body = TokenPair)),
)]
async fn change_password(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
    client: Client,
    transport: Transport,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let current = f.required_str("current_password");
    let new = f.password_pair("new_password", "new_password_confirm");
    let attributes = [who.user.username.as_str(), who.user.email.as_str()];
    let password = match new {
        Some(p) => f.check("new_password", state.check_password(&p, &attributes).await?),
        None => None,
    };
    let (current, password) = f.finish(|| Some((current?, password?)))?;
    check_current_password(&state, &who.user, &current).await?;

    // A fresh session for the caller; every older one is revoked.
    let Some(pair) = session::change_password(&state, &who.user, &password, &client).await? else {
        // A concurrent change won: the current password checked above is no longer current.
        return Err(wrong_password());
    };
    Ok(transport.respond(HttpResponse::Ok(), pair, &state.settings.cookies))
}
