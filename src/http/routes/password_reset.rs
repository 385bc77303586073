//! Password reset by email: request a link, then confirm with it and a new password.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::Route;
use super::activation::{EMAIL, bad_token, user_for_token};
use crate::auth::account_tokens::Purpose;
use crate::domain::Email;
use crate::http::body::{BodySpec, Kind, bounds, required};
use crate::http::error::ApiError;
use crate::http::error::ProblemCode as Code;
use crate::http::fields::{Fields, JsonBody};
use crate::http::openapi::schemas::Empty;
use crate::http::state::AppState;
use crate::http::{mailing, session};

pub(super) fn routes() -> Vec<Route> {
    vec![
        route!(Credentials, request_reset, EMAIL),
        route!(Caller, confirm_reset, CONFIRM),
    ]
}

const CONFIRM: BodySpec = BodySpec {
    name: "ResetConfirmRequest",
    description: "The emailed reset link's two parts and the new password, twice.",
    fields: &[
        required("uid", Kind::Text(bounds::UID), "From the emailed link."),
        required(
            "token",
            Kind::Text(bounds::LINK_TOKEN),
            "From the emailed link.",
        ),
        bounds::NEW_PASSWORD_FIELD,
        bounds::NEW_PASSWORD_CONFIRM_FIELD,
    ],
    one_of: &[],
};

/// 202 `{}` always (no enumeration); an active account gets a reset link.
#[utoipa::path(
    post,
    path = "/auth/password/reset",
    operation_id = "request_password_reset",
    tag = "Password",
    summary = "Request a password reset email",
    description = "The answer is the same whatever the address, so it reveals nothing; an \
                   active account gets a reset link (valid for 1 hour by default).",
    responses((status = 202, description = "Accepted.", body = Empty)),
    extensions(("x-problems" = json!([Code::ServiceUnavailable]))),
)]
async fn request_reset(
    state: web::Data<AppState>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let key = Email::key_of(&Fields::only_str(body, "email")?);
    mailing::ask_for_link(&state, Purpose::PasswordReset, key).await?;
    Ok(HttpResponse::Accepted().json(json!({})))
}

#[utoipa::path(
    post,
    path = "/auth/password/reset/confirm",
    operation_id = "confirm_password_reset",
    tag = "Password",
    summary = "Set a new password with a reset link",
    description = "Every refresh token of the user is revoked. A used, expired or forged \
                   link is 400 `validation_failed` with `errors.token`.",
    responses((status = 204, description = "The password is replaced.")),
    extensions(("x-problems" = json!([Code::ServiceUnavailable]))),
)]
async fn confirm_reset(
    state: web::Data<AppState>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let uid = f.required_str("uid");
    let token = f.required_str("token");
    let new = f.password_pair("new_password", "new_password_confirm");
    let (uid, token, new) = f.finish(|| Some((uid?, token?, new?)))?;
    let user = user_for_token(&state, &uid, &token, Purpose::PasswordReset).await?;
    let password = state
        .check_password(&new, &[&user.username, &user.email])
        .await?
        .map_err(|problems| ApiError::field("new_password", problems))?;
    let changed = session::replace_password(&state, &user, &password, "password_reset").await?;
    if !changed {
        return Err(bad_token()); // the same link was used a moment ago
    }
    log::info!(target: "latchkey::accounts", "user {} reset their password", user.id);
    Ok(HttpResponse::NoContent().finish())
}
