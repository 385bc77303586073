//! Sessions: a login starts a refresh-token family and answers with a token pair; a
//! refresh rotates within the family.

use chrono::Utc;

use super::error::ApiError;
use super::state::AppState;
use super::views::{TokenPair, UserView, custom_claims};
use crate::auth::jwt::{AccessSubject, RefreshClaims, RefreshToken};
use crate::db::models::tokens::{self, Issued, RotateRequest, Rotation};
use crate::db::models::{groups, users::User};
use crate::domain::Password;

fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Starts a new family for `user_id` and returns its first pair. With `touch_login` the
/// user's `last_login` moves to now (a login, as opposed to a password change).
pub async fn open(
    state: &AppState,
    user_id: &str,
    touch_login: bool,
) -> Result<TokenPair, ApiError> {
    let now = Utc::now();
    let (family, jti) = (new_id(), new_id());
    let claims = RefreshClaims {
        sub: user_id.to_owned(),
        jti: jti.clone(),
        fam: family.clone(),
    };
    let RefreshToken {
        token: refresh,
        expires_at,
        ..
    } = state.tokens.issue_refresh(&claims, now).map_err(signing)?;
    let id = user_id.to_owned();
    let (user, groups) = state
        .db
        .write(move |conn| {
            let first = Issued {
                jti: &jti,
                family_id: &family,
                user_id: &id,
                expires_at,
            };
            tokens::start_family(conn, &first, now)?;
            let user = if touch_login {
                User::touch_last_login(conn, &id, now)?
            } else {
                User::find(conn, &id)?
            };
            let groups = groups::names_of(conn, &id)?;
            Ok(user.map(|u| (u, groups)))
        })
        .await?
        .ok_or_else(|| ApiError::TokenInvalid("user no longer exists".into()))?;
    pair(state, &user, groups, refresh)
}

/// Exchanges a verified refresh token for a new pair of the same family.
pub async fn rotate(
    state: &AppState,
    user_id: &str,
    family: &str,
    presented_jti: &str,
) -> Result<TokenPair, ApiError> {
    let now = Utc::now();
    let jti = new_id();
    let claims = RefreshClaims {
        sub: user_id.to_owned(),
        jti: jti.clone(),
        fam: family.to_owned(),
    };
    let RefreshToken {
        token: refresh,
        expires_at,
        ..
    } = state.tokens.issue_refresh(&claims, now).map_err(signing)?;
    let grace = chrono::Duration::from_std(state.settings.jwt.rotation_grace)
        .unwrap_or(chrono::Duration::zero());
    let (id, family, presented) = (
        user_id.to_owned(),
        family.to_owned(),
        presented_jti.to_owned(),
    );
    let (rotation, found) = state
        .db
        .write(move |conn| {
            let successor = Issued {
                jti: &jti,
                family_id: &family,
                user_id: &id,
                expires_at,
            };
            let request = RotateRequest {
                presented_jti: &presented,
                now,
                grace_cutoff: now - grace,
            };
            let rotation = tokens::rotate(conn, request, &successor)?;
            if rotation != Rotation::Rotated {
                return Ok((rotation, None));
            }
            Ok((rotation, groups::user_with_groups(conn, &id)?))
        })
        .await?;
    match (rotation, found) {
        (Rotation::Rotated, Some((user, groups))) if user.is_active => {
            pair(state, &user, groups, refresh)
        }
        (Rotation::Rotated, _) => Err(ApiError::TokenInvalid(
            "user no longer exists or is inactive".into(),
        )),
        (Rotation::Reused, _) => {
            state.metrics.refresh_reuse.inc();
            log::warn!(target: "latchkey::auth", "refresh token reuse detected for user {user_id}; family revoked");
            Err(ApiError::TokenReused)
        }
        (Rotation::Revoked, _) => Err(ApiError::TokenRevoked),
    }
}

/// Sets `password` if the user's hash is still the one they had when the request was
/// checked, and revokes every session of theirs. `false`: a concurrent change won.
pub async fn replace_password(
    state: &AppState,
    user: &User,
    password: &Password,
    why: &'static str,
) -> Result<bool, ApiError> {
    let hash = state.hasher.hash(password).await?;
    let (id, old_hash) = (user.id.clone(), user.password_hash.clone());
    let changed = state
        .db
        .write(move |conn| {
            let changed = User::replace_password_hash(conn, &id, &old_hash, &hash)?;
            if changed {
                tokens::revoke_user_families(conn, &id, None, why, Utc::now())?;
            }
            Ok(changed)
        })
        .await?;
    Ok(changed)
}

fn pair(
    state: &AppState,
    user: &User,
    groups: Vec<String>,
    refresh_token: String,
) -> Result<TokenPair, ApiError> {
    let custom = custom_claims(user);
    let subject = AccessSubject {
        user_id: &user.id,
        username: &user.username,
        email: &user.email,
        email_verified: user.email_verified,
        is_staff: user.is_staff,
        groups: &groups,
        custom: &custom,
    };
    let access_token = state
        .tokens
        .issue_access(&subject, Utc::now())
        .map_err(signing)?;
    state.metrics.count_tokens("access");
    state.metrics.count_tokens("refresh");
    Ok(TokenPair {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl.as_secs(),
        refresh_expires_in: state.tokens.refresh_ttl.as_secs(),
        user: UserView::new(user, groups),
    })
}

fn signing(e: crate::auth::jwt::TokenError) -> ApiError {
    ApiError::Internal(format!("token signing: {e}"))
}
