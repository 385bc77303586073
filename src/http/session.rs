//! Sessions: a login starts a refresh-token family and answers with a token pair; a
//! refresh rotates within the family; a password change or reset ends every session.
//!
//! A session only starts against the password hash and active flag its request verified
//! (`accounts::start_session`), so a login racing a password change, a reset or a
//! deactivation counts as before it (its session is revoked with the others) or after it
//! (the old password fails): no session outlives the change.

use chrono::{DateTime, Utc};

use super::client_ip::Client;
use super::error::ApiError;
use super::state::AppState;
use super::views::{TokenPair, UserView, custom_claims};
use crate::accounts::{self, NewSession, NotReplaced, PasswordChange, Refused, Started};
use crate::auth::jwt::{AccessSubject, RefreshClaims, RefreshToken};
use crate::db::models::groups;
use crate::db::models::tokens::{self, Issued, Opening, RotateRequest, Rotation};
use crate::db::models::users::User;
use crate::domain::Password;

fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A refresh token about to be recorded: its identity and the instants it carries.
struct Minted {
    id: RefreshClaims,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl Minted {
    /// The first token of a new session, used by `client`, after a login by `amr`.
    fn opening<'a>(&'a self, client: &'a Client, amr: &'a str) -> Opening<'a> {
        Opening {
            first: self.issued(),
            device: client.device(),
            amr,
        }
    }

    fn issued(&self) -> Issued<'_> {
        Issued {
            jti: &self.id.jti,
            family_id: &self.id.fam,
            user_id: &self.id.sub,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
        }
    }
}

/// A new refresh token of `user_id`, in `family` or a new one: what to record, and the
/// signed token.
fn mint(
    state: &AppState,
    user_id: &str,
    family: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(Minted, String), ApiError> {
    let id = RefreshClaims {
        sub: user_id.to_owned(),
        jti: new_id(),
        fam: family.map_or_else(new_id, str::to_owned),
    };
    let RefreshToken {
        token,
        issued_at,
        expires_at,
    } = state.tokens.issue_refresh(&id, now).map_err(signing)?;
    let minted = Minted {
        id,
        issued_at,
        expires_at,
    };
    Ok((minted, token))
}

/// Starts a new family for `user`, the row as the request verified it (its password hash,
/// active), and returns its first pair. With `touch_login` the user's `last_login` moves to
/// now (a login or an activation). If the row changed meanwhile, the request is refused as
/// the row is now: `invalid_credentials` (password changed, or user deleted) or
/// `account_inactive`.
pub async fn open(
    state: &AppState,
    user: &User,
    touch_login: bool,
    client: &Client,
) -> Result<TokenPair, ApiError> {
    open_by(state, user, touch_login, client, PASSWORD).await
}

/// [`open`], for a session authenticated by `amr` (space-separated RFC 8176 values).
pub async fn open_by(
    state: &AppState,
    user: &User,
    touch_login: bool,
    client: &Client,
    amr: &'static str,
) -> Result<TokenPair, ApiError> {
    let now = Utc::now();
    let (minted, refresh) = mint(state, &user.id, None, now)?;
    let sid = minted.id.fam.clone();
    let verified_hash = user.password_hash.clone();
    let client = client.clone();
    let hooks = state.webhooks.clone();
    let started = state
        .db
        .write(move |conn| {
            let new = NewSession {
                opening: minted.opening(&client, amr),
                verified_hash: &verified_hash,
                touch_login,
                hooks: &hooks,
            };
            accounts::start_session(conn, &new, now)
        })
        .await?;
    match started {
        Ok((user, groups)) => pair(state, &user, groups, Fresh::new(refresh, &sid, amr)),
        Err(refused) => Err(refusal(state, refused)),
    }
}

fn refusal(state: &AppState, refused: Refused) -> ApiError {
    match refused {
        Refused::Credentials => ApiError::InvalidCredentials,
        Refused::Inactive(user) => ApiError::AccountInactive(
            user.inactive_reason(state.settings.accounts.require_email_verification),
        ),
    }
}

/// Exchanges a verified refresh token for a pair of the same family: a new refresh token,
/// or, for the token the live one replaced presented again within the grace window, the
/// live one (see `tokens`), with a fresh access token either way.
pub async fn rotate(
    state: &AppState,
    user_id: &str,
    family: &str,
    presented_jti: &str,
    client: &Client,
) -> Result<TokenPair, ApiError> {
    let now = Utc::now();
    let (successor, refresh) = mint(state, user_id, Some(family), now)?;
    let grace = state.settings.jwt.rotation_grace;
    // A window longer than time itself reaches back to its beginning.
    let grace_cutoff = (!grace.is_zero()).then(|| {
        chrono::Duration::from_std(grace)
            .ok()
            .and_then(|grace| now.checked_sub_signed(grace))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    });
    let presented = presented_jti.to_owned();
    let client = client.clone();
    let hooks = state.webhooks.clone();
    let (rotation, found) = state
        .db
        .write(move |conn| {
            let request = RotateRequest {
                presented_jti: &presented,
                device: client.device(),
                now,
                grace_cutoff,
                hooks: &hooks,
            };
            let rotation = tokens::rotate(conn, request, &successor.issued())?;
            if matches!(rotation, Rotation::Reused | Rotation::Revoked) {
                return Ok((rotation, None));
            }
            Ok((rotation, groups::user_with_groups(conn, &successor.id.sub)?))
        })
        .await?;
    match (rotation, found) {
        (Rotation::Reused, _) => {
            state.metrics.refresh_reuse.inc();
            log::warn!(target: "latchkey::auth", "refresh token reuse detected for user {user_id}; family revoked");
            Err(ApiError::TokenReused)
        }
        (Rotation::Revoked, _) => Err(ApiError::TokenRevoked),
        (Rotation::Rotated { amr }, Some((user, groups))) if user.is_active => {
            pair(state, &user, groups, Fresh::new(refresh, family, &amr))
        }
        (Rotation::Converged(live), Some((user, groups))) if user.is_active => {
            let id = RefreshClaims {
                sub: user_id.to_owned(),
                jti: live.jti,
                fam: family.to_owned(),
            };
            let current = state
                .tokens
                .reissue_refresh(&id, live.issued_at, live.expires_at)
                .map_err(signing)?;
            let again = Fresh {
                new: false,
                ..Fresh::new(current, family, &live.amr)
            };
            pair(state, &user, groups, again)
        }
        _ => Err(ApiError::TokenInvalid(
            "user no longer exists or is inactive".into(),
        )),
    }
}

/// A password reset: sets `password` if the user's hash is still the one the link was
/// made for, and revokes every session of theirs, in one transaction. `false`: a
/// concurrent change won.
pub async fn replace_password(
    state: &AppState,
    user: &User,
    password: &Password,
    why: &'static str,
) -> Result<bool, ApiError> {
    Ok(replace(state, user, password, why, None).await?.is_ok())
}

/// A password change by a signed-in user: like [`replace_password`], and in the same
/// transaction the caller's fresh session starts against the new hash. `None`: a
/// concurrent change won, so the current password the request checked is not current.
pub async fn change_password(
    state: &AppState,
    user: &User,
    password: &Password,
    client: &Client,
) -> Result<Option<TokenPair>, ApiError> {
    let (minted, refresh) = mint(state, &user.id, None, Utc::now())?;
    let sid = minted.id.fam.clone();
    let new_session = Some((minted, client.clone()));
    match replace(state, user, password, "password_change", new_session).await? {
        Ok(Some((user, groups))) => {
            pair(state, &user, groups, Fresh::new(refresh, &sid, PASSWORD)).map(Some)
        }
        Ok(None) | Err(NotReplaced::Stale) => Ok(None),
        // Deactivated between the request's authentication and its change.
        Err(NotReplaced::Inactive) => Err(ApiError::TokenInvalid("user is inactive".into())),
    }
}

async fn replace(
    state: &AppState,
    user: &User,
    password: &Password,
    why: &'static str,
    new_session: Option<(Minted, Client)>,
) -> Result<Result<Option<Started>, NotReplaced>, ApiError> {
    let new_hash = state.hasher.hash(password).await?;
    let (id, old_hash) = (user.id.clone(), user.password_hash.clone());
    let hooks = state.webhooks.clone();
    Ok(state
        .db
        .write(move |conn| {
            let change = PasswordChange {
                user_id: &id,
                old_hash: &old_hash,
                new_hash: &new_hash,
                why,
                new_session: new_session
                    .as_ref()
                    .map(|(minted, client)| minted.opening(client, PASSWORD)),
                hooks: &hooks,
            };
            accounts::replace_password(conn, &change, Utc::now())
        })
        .await?)
}

/// The `amr` of a session started by a password (RFC 8176).
const PASSWORD: &str = "pwd";

/// The `amr` of a session started by a password and a one-time code (TOTP or recovery).
pub const PASSWORD_AND_OTP: &str = "pwd otp";

/// The refresh token of a pair and the session it belongs to.
struct Fresh<'a> {
    refresh_token: String,
    /// `false` when it is a family's live token handed out again (not counted as issued).
    new: bool,
    sid: &'a str,
    amr: &'a str,
}

impl<'a> Fresh<'a> {
    fn new(refresh_token: String, sid: &'a str, amr: &'a str) -> Self {
        Self {
            refresh_token,
            new: true,
            sid,
            amr,
        }
    }
}

/// The pair for `user`: a fresh access token of the session, and its refresh token.
fn pair(
    state: &AppState,
    user: &User,
    groups: Vec<String>,
    fresh: Fresh<'_>,
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
        sid: fresh.sid,
        amr: fresh.amr,
    };
    let access_token = state
        .tokens
        .issue_access(&subject, Utc::now())
        .map_err(signing)?;
    state.metrics.count_tokens("access");
    if fresh.new {
        state.metrics.count_tokens("refresh");
    }
    Ok(TokenPair {
        access_token,
        refresh_token: Some(fresh.refresh_token),
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl.as_secs(),
        refresh_expires_in: state.tokens.refresh_ttl.as_secs(),
        user: UserView::new(user, groups),
    })
}

fn signing(e: crate::auth::jwt::TokenError) -> ApiError {
    ApiError::Internal(format!("token signing: {e}"))
}
