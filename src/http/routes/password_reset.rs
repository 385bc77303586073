//! Password reset by email: request a link, then confirm with it and a new password.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde_json::json;

use super::activation::{bad_token, user_for_token};
use super::resource;
use crate::auth::account_tokens::Purpose;
use crate::db::models::tokens;
use crate::db::models::users::User;
use crate::domain::Email;
use crate::http::error::ApiError;
use crate::http::extractors::{Fields, JsonBody};
use crate::http::mailing;
use crate::http::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/auth/password/reset").route(web::post().to(request_reset)))
        .service(resource("/auth/password/reset/confirm").route(web::post().to(confirm_reset)));
}

/// 202 `{}` always (no enumeration); an active account gets a reset link.
async fn request_reset(
    state: web::Data<AppState>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let key = Email::key_of(&Fields::only_str(body, "email")?);
    if let Some(user) = state
        .db
        .run(move |conn| User::find_by_email_key(conn, &key))
        .await?
        && user.is_active
    {
        mailing::send_account_link(&state, &user, Purpose::PasswordReset);
    }
    Ok(HttpResponse::Accepted().json(json!({})))
}

async fn confirm_reset(
    state: web::Data<AppState>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let uid = f.required_str("uid");
    let token = f.required_str("token");
    let new = f.required_str("new_password");
    let confirm = f.required_str("new_password_confirm");
    if new.is_some() && confirm.is_some() && new != confirm {
        f.reject(
            "new_password_confirm",
            vec!["The two password fields didn't match.".into()],
        );
    }
    let (uid, token, new) = f.finish(|| Some((uid?, token?, new?)))?;
    let user = user_for_token(&state, &uid, &token, Purpose::PasswordReset).await?;
    let password = state
        .policy
        .parse(&new, &[&user.username, &user.email])
        .map_err(|problems| ApiError::field("new_password", problems))?;
    let hash = state.hasher.hash(&password).await?;
    let (id, old_hash) = (user.id.clone(), user.password_hash.clone());
    let changed = state
        .db
        .run(move |conn| {
            let changed = User::replace_password_hash(conn, &id, &old_hash, &hash)?;
            if changed {
                tokens::revoke_user_families(conn, &id, None, "password_reset", Utc::now())?;
            }
            Ok(changed)
        })
        .await?;
    if !changed {
        return Err(bad_token()); // the same link was used a moment ago
    }
    log::info!(target: "latchkey::accounts", "user {} reset their password", user.id);
    Ok(HttpResponse::NoContent().finish())
}
