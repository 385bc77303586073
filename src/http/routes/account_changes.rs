//! Changing the caller's email address (requested with the password, confirmed through a
//! link mailed to the new address) and username (API.md, "Email and username change").
//! The transactional parts live in [`crate::account_changes`].

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde_json::json;

use super::Route;
use super::activation::{bad_token, bad_uid};
use super::users_me::{check_current_password, wrong_password};
use crate::account_changes::{self, EmailChangeRequest, NotConfirmed, NotRequested};
use crate::accounts;
use crate::db::models::users::{Taken, User};
use crate::domain::{Email, UserId, Username};
use crate::http::body::{BodySpec, Kind, bounds, required};
use crate::http::error::ApiError;
use crate::http::error::ProblemCode as Code;
use crate::http::extractors::AuthenticatedUser;
use crate::http::fields::{Fields, JsonBody};
use crate::http::mailing::LINK_LIMIT;
use crate::http::openapi::schemas::Empty;
use crate::http::state::AppState;
use crate::http::views::UserView;
use crate::webhooks::UserChange;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route!(Credentials, request_email_change, EMAIL_CHANGE),
        route!(Credentials, confirm_email_change, CONFIRM),
        route!(Credentials, change_username, USERNAME_CHANGE),
    ]
}

const EMAIL_CHANGE: BodySpec = BodySpec {
    name: "EmailChangeRequest",
    description: "The new address and the caller's current password.",
    fields: &[
        required(
            "new_email",
            Kind::Text(bounds::EMAIL),
            "Unique, ignoring case; not the current address (in any letter case).",
        ),
        required("current_password", Kind::Text(bounds::PASSWORD), ""),
    ],
    one_of: &[],
};

const CONFIRM: BodySpec = BodySpec {
    name: "EmailChangeConfirmRequest",
    description: "The two parts of the link mailed to the new address.",
    fields: &[
        required(
            "uid",
            Kind::Text(bounds::UID),
            "URL-safe base64 (no padding) of the user id.",
        ),
        required("token", Kind::Text(bounds::LINK_TOKEN), ""),
    ],
    one_of: &[],
};

const USERNAME_CHANGE: BodySpec = BodySpec {
    name: "UsernameChangeRequest",
    description: "The new username and the caller's current password.",
    fields: &[
        required(
            "new_username",
            Kind::Text(bounds::USERNAME),
            "Letters, digits and `@ . + - _`, NFKC-normalised; unique, ignoring case.",
        ),
        required("current_password", Kind::Text(bounds::PASSWORD), ""),
    ],
    one_of: &[],
};

fn email_taken() -> ApiError {
    ApiError::Conflict("A user with that email already exists.".into())
}

fn username_taken() -> ApiError {
    ApiError::Conflict("A user with that username already exists.".into())
}

/// How long to come back after a refused link: the per-address window of [`LINK_LIMIT`]
/// (it may take longer if the address's hourly allowance is spent too).
fn link_limited() -> ApiError {
    ApiError::Throttled {
        retry_after: LINK_LIMIT.purpose_window.as_secs(),
    }
}

#[utoipa::path(
    post,
    path = "/users/me/email",
    operation_id = "request_email_change",
    tag = "Current user",
    summary = "Ask to change the caller's email address",
    description = "Needs the current password (wrong: 400 `validation_failed` with \
                   `errors.current_password`). A confirmation link goes to the new address \
                   (valid for `accounts.email_change_ttl`, 1 day by default) and a notice \
                   without a link to the current one; nothing changes until the link is \
                   used. A later request supersedes the earlier one's link. The current \
                   address, in any letter case, is 400 `errors.new_email`; an address \
                   another account has is 409 `conflict`. An address that has been sent \
                   two such links in ten minutes (or five account links in an hour) is 429 \
                   `throttled`, and the earlier request stays as it was.",
    security(("bearer" = [])),
    responses((status = 202, description = "The confirmation link is on its way.", body = Empty)),
    extensions(("x-problems" = json!([Code::Conflict]))),
)]
async fn request_email_change(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let new_email = f
        .required_str("new_email")
        .and_then(|raw| f.check("new_email", Email::parse(&raw)));
    let current = f.required_str("current_password");
    if let Some(new) = &new_email
        && new.key() == Email::key_of(&who.user.email)
    {
        f.reject(
            "new_email",
            vec!["This is already your email address.".into()],
        );
    }
    let (new_email, current) = f.finish(|| Some((new_email?, current?)))?;
    check_current_password(&state, &who.user, &current).await?;

    // Checked after the password, so a stolen access token alone learns nothing about
    // which addresses have accounts; the unique index decides at confirmation.
    let (key, me) = (new_email.key(), who.user.id.clone());
    let replace_unclaimed = state.settings.accounts.require_email_verification;
    if state
        .db
        .run(move |conn| User::email_taken_by_other(conn, &key, &me, replace_unclaimed))
        .await?
    {
        return Err(email_taken());
    }

    let uid = who
        .user
        .id
        .parse::<UserId>()
        .map_err(|e| ApiError::Internal(format!("user id {} is not a UUID: {e}", who.user.id)))?
        .to_uid();
    let (user_id, hash) = (who.user.id.clone(), who.user.password_hash.clone());
    let shared = state.clone();
    let outcome = state
        .db
        .write(move |conn| {
            let request = EmailChangeRequest {
                user_id: &user_id,
                uid: &uid,
                verified_hash: &hash,
                new_email: &new_email,
            };
            account_changes::request_email_change(
                conn,
                &shared.settings,
                &shared.account_tokens,
                &LINK_LIMIT,
                &request,
                Utc::now(),
            )
        })
        .await?;
    match outcome {
        Ok(()) => {
            state.outbox.wake();
            log::info!(target: "latchkey::accounts", "user {} asked to change their email", who.user.id);
            Ok(HttpResponse::Accepted().json(json!({})))
        }
        // A concurrent password change won: the password checked above is no longer it.
        Err(NotRequested::Stale) => Err(wrong_password()),
        Err(NotRequested::Limited) => {
            log::info!(target: "latchkey::email",
                "email change link for user {} not queued: the address has had enough links lately",
                who.user.id);
            Err(link_limited())
        }
    }
}

#[utoipa::path(
    post,
    path = "/auth/email/confirm",
    operation_id = "confirm_email_change",
    tag = "Current user",
    summary = "Confirm an email change",
    description = "Takes the two parts of the link mailed to the new address; the address \
                   becomes the account's, verified. Sessions are not revoked; the old \
                   address can no longer log in or receive resets. A link works once: a \
                   used, expired, forged or superseded one (by a later request, or a \
                   password change) is 400 `validation_failed` with `errors.token` (an \
                   unknown `uid`: `errors.uid`). An address another account took meanwhile \
                   is 409 `conflict`.",
    responses((status = 200, description = "The user, with the new address.", body = UserView)),
    extensions(("x-problems" = json!([Code::Conflict, Code::ServiceUnavailable]))),
)]
async fn confirm_email_change(
    state: web::Data<AppState>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let uid = f.required_str("uid");
    let token = f.required_str("token");
    let (uid, token) = f.finish(|| Some((uid?, token?)))?;
    let id = UserId::from_uid(&uid).ok_or_else(bad_uid)?.to_string();
    let user = state
        .db
        .run(move |conn| User::find(conn, &id))
        .await?
        .ok_or_else(bad_uid)?;
    let change = account_changes::pending_change(&user).ok_or_else(bad_token)?;
    let ttl = state.settings.accounts.email_change_ttl;
    let binding = account_changes::binding(&change);
    if !state
        .account_tokens
        .check_email_change(&binding, &token, Utc::now(), ttl)
    {
        return Err(bad_token());
    }
    let replace_unclaimed = state.settings.accounts.require_email_verification;
    let checked = user.clone();
    let hooks = state.webhooks.clone();
    let outcome = state
        .db
        .write(move |conn| {
            // Some: checked above (this is the same row, moved in).
            let Some(change) = account_changes::pending_change(&checked) else {
                return Ok(Err(NotConfirmed::Stale));
            };
            account_changes::confirm_email_change(conn, &change, replace_unclaimed, &hooks)
        })
        .await?;
    match outcome {
        Ok((user, groups)) => {
            log::info!(target: "latchkey::accounts", "user {} confirmed their new email", user.id);
            Ok(HttpResponse::Ok().json(UserView::new(&user, groups)))
        }
        Err(NotConfirmed::Stale) => Err(bad_token()),
        Err(NotConfirmed::Taken) => Err(email_taken()),
    }
}

#[utoipa::path(
    post,
    path = "/users/me/username",
    operation_id = "change_username",
    tag = "Current user",
    summary = "Change the caller's username",
    description = "Needs the current password (wrong: 400 `validation_failed` with \
                   `errors.current_password`). The rules of registration apply: letters, \
                   digits and `@ . + - _`, NFKC-normalised, unique ignoring case (taken: 409 \
                   `conflict`). Access tokens already issued keep the old name; the next \
                   one (after a refresh or login) carries the new one.",
    security(("bearer" = [])),
    responses((status = 200, description = "The user, with the new username.", body = UserView)),
    extensions(("x-problems" = json!([Code::Conflict]))),
)]
async fn change_username(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let username = f
        .required_str("new_username")
        .and_then(|raw| f.check("new_username", Username::parse(&raw)));
    let current = f.required_str("current_password");
    let (username, current) = f.finish(|| Some((username?, current?)))?;
    check_current_password(&state, &who.user, &current).await?;

    let key = username.key();
    let (k, me) = (key.clone(), who.user.id.clone());
    if state
        .db
        .run(move |conn| User::username_taken_by_other(conn, &k, &me))
        .await?
    {
        return Err(username_taken());
    }
    let (id, hash) = (who.user.id.clone(), who.user.password_hash.clone());
    let hooks = state.webhooks.clone();
    let renamed = state
        .db
        .write(move |conn| {
            accounts::change_user(conn, &hooks, UserChange::Updated, |conn| {
                User::change_username(conn, &id, &hash, username.as_str(), &key)
            })
        })
        .await;
    let user = match renamed {
        Ok(Some(user)) => user,
        // A concurrent password change won: the password checked above is no longer it.
        Ok(None) => return Err(wrong_password()),
        Err(e) if User::taken(&e) == Some(Taken::Username) => return Err(username_taken()),
        Err(e) => return Err(e.into()),
    };
    log::info!(target: "latchkey::accounts", "user {} changed their username", user.id);
    Ok(HttpResponse::Ok().json(UserView::new(&user, who.groups)))
}
