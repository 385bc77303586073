//! Account activation through the emailed uid/token link, and sending that link again.
//!
//! A staff deactivation wins over activation (API.md v2): activating a disabled account
//! verifies its email but leaves it disabled (403 `account_inactive`), and no link is sent
//! to it again.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde_json::json;

use super::Route;
use crate::accounts;
use crate::auth::account_tokens::Purpose;
use crate::db::models::users::User;
use crate::domain::{Email, UserId};
use crate::http::body::{BodySpec, Kind, bounds, required};
use crate::http::browser::Transport;
use crate::http::client_ip::Client;
use crate::http::error::ApiError;
use crate::http::error::ProblemCode as Code;
use crate::http::fields::{Fields, JsonBody};
use crate::http::openapi::schemas::{Activated, Empty, TokenTransport};
use crate::http::state::AppState;
use crate::http::views::UserView;
use crate::http::{mailing, session};
use crate::webhooks::UserChange;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route!(Caller, activate, LINK),
        route!(Credentials, resend, EMAIL),
    ]
}

/// The two parts of an emailed link.
pub(super) const LINK: BodySpec = BodySpec {
    name: "ActivateRequest",
    description: "The emailed activation link's two parts.",
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

/// An address to send a link to.
pub(super) const EMAIL: BodySpec = BodySpec {
    name: "EmailRequest",
    description: "An email address to send a link to; the answer is the same whether or not it is known.",
    fields: &[required("email", Kind::Text(bounds::EMAIL_LOOKUP), "")],
    one_of: &[],
};

pub(super) fn bad_uid() -> ApiError {
    ApiError::field("uid", vec!["Invalid user id or user doesn't exist.".into()])
}

pub(super) fn bad_token() -> ApiError {
    ApiError::field("token", vec!["Invalid or expired token.".into()])
}

/// The account behind `uid` and whether `token` is a valid `purpose` token for its current
/// state: one check for activation and password reset alike.
pub(super) async fn user_for_token(
    state: &AppState,
    uid: &str,
    token: &str,
    purpose: Purpose,
) -> Result<User, ApiError> {
    let id = UserId::from_uid(uid).ok_or_else(bad_uid)?.to_string();
    let user = state
        .db
        .run(move |conn| User::find(conn, &id))
        .await?
        .ok_or_else(bad_uid)?;
    let binding = mailing::binding(&user);
    let ttl = match purpose {
        Purpose::Activation => state.settings.accounts.activation_ttl,
        Purpose::PasswordReset => state.settings.accounts.reset_ttl,
    };
    if state
        .account_tokens
        .check(purpose, &binding, token, Utc::now(), ttl)
    {
        Ok(user)
    } else {
        Err(bad_token())
    }
}

#[utoipa::path(
    post,
    path = "/auth/activate",
    operation_id = "activate",
    tag = "Registration and activation",
    summary = "Activate an account",
    description = "Takes the two parts of the emailed link; the account becomes active and \
                   its email verified. A token works once: a used, expired or forged one is \
                   400 `validation_failed` with `errors.token` (an unknown `uid`: `errors.uid`). \
                   An account disabled by staff stays disabled: its email is verified, and \
                   the answer is 403 `account_inactive`.",
    responses((
        status = 200,
        description = "Activated: a new session, or with `accounts.require_admin_approval` the \
                       user still waiting for approval.",
        body = Activated,
    )),
    params(TokenTransport),
    extensions(("x-problems" = json!([
        Code::AccountInactive,
        Code::ServiceUnavailable,
    ]))),
)]
async fn activate(
    state: web::Data<AppState>,
    client: Client,
    transport: Transport,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let uid = f.required_str("uid");
    let token = f.required_str("token");
    let (uid, token) = f.finish(|| Some((uid?, token?)))?;
    let user = user_for_token(&state, &uid, &token, Purpose::Activation).await?;
    let id = user.id.clone();
    // Lost a race with another use of the same link: the token is spent.
    let hooks = state.webhooks.clone();
    let user = state
        .db
        .write(move |conn| {
            accounts::change_user(conn, &hooks, UserChange::Activated, |conn| {
                User::activate(conn, &id)
            })
        })
        .await?
        .ok_or_else(bad_token)?;
    log::info!(target: "latchkey::accounts", "user {} verified their email", user.id);
    if user.approval_pending && !user.disabled_by_staff {
        return Ok(HttpResponse::Ok()
            .json(json!({"user": UserView::new(&user, vec![]), "approval_required": true})));
    }
    // Refused as `account_inactive` if staff disabled the account.
    let pair = session::open(&state, &user, true, &client).await?;
    Ok(transport.respond(HttpResponse::Ok(), pair, &state.settings.cookies))
}

/// 202 `{}` whatever the address: known, unknown, active or not (no enumeration); an
/// account still waiting for activation gets a fresh link, unless staff disabled it.
#[utoipa::path(
    post,
    path = "/auth/activate/resend",
    operation_id = "resend_activation",
    tag = "Registration and activation",
    summary = "Send the activation email again",
    description = "The answer is the same whether or not the address is known, so it reveals \
                   nothing; an account still waiting for activation gets a fresh link, \
                   unless staff disabled it.",
    responses((status = 202, description = "Accepted.", body = Empty)),
    extensions(("x-problems" = json!([Code::ServiceUnavailable]))),
)]
async fn resend(state: web::Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let key = Email::key_of(&Fields::only_str(body, "email")?);
    mailing::ask_for_link(&state, Purpose::Activation, key).await?;
    Ok(HttpResponse::Accepted().json(json!({})))
}
