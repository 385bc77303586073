//! TOTP two-factor login (API.md "Two-factor login: TOTP and recovery codes"): enrolment,
//! confirmation, turning it off, recovery codes, the second login step, and the staff
//! reset for a lost device.
//!
//! The second step is keyed by an opaque `mfa_token` (32 random bytes), stored as its
//! SHA-256 with its user, expiry, wrong-code count and used flag: it is no JWT, so no
//! service can mistake it for an access token, and it dies when used, after
//! `mfa.token_ttl`, after five wrong codes, or when the password it followed changes.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::Route;
use super::users_me::check_current_password;
use crate::auth::totp::{self, SecretBox};
use crate::db::models::mfa;
use crate::db::models::tokens::Revoke;
use crate::db::models::users::User;
use crate::http::account_limit::Account;
use crate::http::body::{BodySpec, Kind, bounds, required, text};
use crate::http::browser::Transport;
use crate::http::client_ip::Client;
use crate::http::error::ApiError;
use crate::http::error::ProblemCode as Code;
use crate::http::extractors::{AuthenticatedUser, StaffUser};
use crate::http::fields::{Fields, JsonBody};
use crate::http::openapi::schemas::TokenTransport;
use crate::http::session;
use crate::http::state::AppState;
use crate::http::views::TokenPair;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route!(Mfa, login_mfa, LOGIN_MFA),
        // API.md: every MFA endpoint under /users/me counts against `login`.
        route!(Credentials, status),
        route!(Credentials, enrol, ENROL),
        route!(Credentials, confirm, CONFIRM),
        route!(Credentials, disable, PASSWORD_AND_CODE),
        route!(Credentials, regenerate, PASSWORD_AND_CODE),
        route!(Caller, staff_reset),
    ]
}

/// Wrong codes after which an `mfa_token` is dead.
const MAX_FAILURES: i32 = 5;

const CODE: Kind = Kind::Text(text(64));

const LOGIN_MFA: BodySpec = BodySpec {
    name: "MfaLoginRequest",
    description: "The second login step: the `mfa_token` the password step answered, and a code.",
    fields: &[
        required(
            "mfa_token",
            Kind::Text(text(64)),
            "From the `/auth/login` answer.",
        ),
        required(
            "code",
            CODE,
            "The current TOTP code, or an unused recovery code.",
        ),
    ],
    one_of: &[],
};

const ENROL: BodySpec = BodySpec {
    name: "TotpEnrolRequest",
    description: "The caller's current password.",
    fields: &[required(
        "current_password",
        Kind::Text(bounds::PASSWORD),
        "",
    )],
    one_of: &[],
};

const CONFIRM: BodySpec = BodySpec {
    name: "TotpConfirmRequest",
    description: "A code from the authenticator app the pending secret was entered in.",
    fields: &[required("code", CODE, "The current TOTP code.")],
    one_of: &[],
};

const PASSWORD_AND_CODE: BodySpec = BodySpec {
    name: "PasswordAndCode",
    description: "The current password and a second factor.",
    fields: &[
        required("current_password", Kind::Text(bounds::PASSWORD), ""),
        required(
            "code",
            CODE,
            "The current TOTP code, or an unused recovery code (which is then used up).",
        ),
    ],
    one_of: &[],
};

/// What `/auth/login` answers when the account has two-factor login on.
#[derive(Serialize, ToSchema)]
pub struct MfaChallenge {
    /// Always `true`.
    mfa_required: bool,
    /// Opaque; for `/auth/login/mfa` only, once, within `mfa.token_ttl` (5 min).
    mfa_token: String,
    /// `["totp", "recovery_code"]`.
    methods: Vec<String>,
}

/// What `/auth/login` answers: a token pair, or, with two-factor login on, the challenge
/// for `/auth/login/mfa`.
#[derive(ToSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "documents the two shapes of the login answer")]
pub enum LoginAnswer {
    LoggedIn(Box<TokenPair>),
    MfaRequired(MfaChallenge),
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The secret, base32 (RFC 4648, no padding), for typing into an app.
    secret: String,
    /// `otpauth://totp/<issuer>:<username>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`
    otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    qr_svg: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes (`xxxx-xxxx`), shown this once.
    recovery_codes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MfaStatus {
    /// Whether login asks for a TOTP code.
    totp: bool,
    /// Unused recovery codes.
    recovery_codes_left: i64,
}

/// The answer to a right password when the account has TOTP on: a new `mfa_token`, and
/// no tokens (`last_login` moves only when the second step succeeds).
pub(super) async fn challenge(state: &AppState, user: &User) -> Result<HttpResponse, ApiError> {
    let (token, hash) = totp::new_mfa_token().map_err(internal)?;
    let expires_at = Utc::now()
        + chrono::Duration::from_std(state.settings.mfa.token_ttl)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (id, fingerprint) = (user.id.clone(), password_fingerprint(user));
    state
        .db
        .write(move |conn| mfa::insert_token(conn, &hash, &id, &fingerprint, expires_at))
        .await?;
    let body = MfaChallenge {
        mfa_required: true,
        mfa_token: token,
        methods: vec!["totp".into(), "recovery_code".into()],
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body))
}

/// What an `mfa_token` remembers of the password it followed: a change of password in
/// between ends it.
fn password_fingerprint(user: &User) -> String {
    totp::sha256_hex(&user.password_hash)
}

fn internal(e: totp::TotpError) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn wrong_code() -> ApiError {
    ApiError::field("code", vec!["Invalid code.".into()])
}

fn dead_token() -> ApiError {
    ApiError::TokenInvalid("mfa_token is unknown, expired, used up or ended by wrong codes".into())
}

/// Checks `code` for `user_id`: a TOTP code whose step is newer than any used before (the
/// step is then recorded), or an unused recovery code (then used up).
async fn check_code(state: &AppState, user_id: &str, code: &str) -> Result<bool, ApiError> {
    let id = user_id.to_owned();
    if !totp::is_totp_code(code) {
        let hash = totp::sha256_hex(&totp::normalise_recovery_code(code));
        return Ok(state
            .db
            .write(move |conn| mfa::use_recovery_code(conn, &id, &hash))
            .await?);
    }
    let row = state.db.run(move |conn| mfa::totp_of(conn, &id)).await?;
    let Some(sealed) = row.and_then(|r| r.secret) else {
        return Ok(false);
    };
    let Some(step) = matching_step(&state.totp, user_id, &sealed, code)? else {
        return Ok(false);
    };
    let id = user_id.to_owned();
    Ok(state
        .db
        .write(move |conn| mfa::claim_step(conn, &id, step))
        .await?)
}

fn matching_step(
    sealer: &SecretBox,
    user_id: &str,
    sealed: &str,
    code: &str,
) -> Result<Option<i64>, ApiError> {
    let secret = sealer.open(user_id, sealed).map_err(|_| {
        ApiError::Internal(format!(
            "the TOTP secret of user {user_id} does not open: was accounts.token_secret or the signing key changed?"
        ))
    })?;
    Ok(totp::matching_step(&secret, code, Utc::now().timestamp()))
}

fn not_enabled() -> ApiError {
    ApiError::field(
        "non_field_errors",
        vec!["Two-factor login is not on for this account.".into()],
    )
}

#[utoipa::path(
    post,
    path = "/auth/login/mfa",
    operation_id = "login_mfa",
    tag = "Login and tokens",
    summary = "Log in: the second factor",
    description = "Completes a login that answered `mfa_required`: with a current TOTP \
                   code (never one already accepted, RFC 6238 replay rule) or an unused \
                   recovery code (then used up), opens a session whose tokens carry \
                   `amr: [\"pwd\", \"otp\"]` and updates `last_login`. The `mfa_token` \
                   works once, for `mfa.token_ttl` (5 min), and dies after 5 wrong codes. \
                   Throttled per IP by `throttle.mfa`, and per account.",
    params(TokenTransport),
    responses((status = 200, description = "A new session.", body = TokenPair)),
    extensions(("x-problems" = json!([
        Code::TokenInvalid,
        Code::InvalidCredentials,
        Code::AccountInactive,
        Code::ServiceUnavailable,
    ]))),
)]
async fn login_mfa(
    state: web::Data<AppState>,
    client: Client,
    transport: Transport,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let token = f.required_str("mfa_token");
    let code = f.required_str("code");
    let (token, code) = f.finish(|| Some((token?, code?)))?;
    let hash = totp::sha256_hex(&token);
    let lookup = hash.clone();
    let found = state
        .db
        .run(move |conn| {
            let Some(row) = mfa::usable_token(conn, &lookup, MAX_FAILURES, Utc::now())? else {
                return Ok(None);
            };
            Ok(User::find(conn, &row.user_id)?.map(|user| (row, user)))
        })
        .await?;
    let (row, user) = found.ok_or_else(dead_token)?;
    if !user.mfa_enabled || row.password_fingerprint != password_fingerprint(&user) {
        return Err(dead_token());
    }
    state.account_limit.check(Account::User(&user.id)).await?;
    if !check_code(&state, &user.id, &code).await? {
        state
            .db
            .write(move |conn| mfa::count_failure(conn, &hash))
            .await?;
        return Err(wrong_code());
    }
    if !state
        .db
        .write(move |conn| mfa::spend_token(conn, &hash))
        .await?
    {
        return Err(dead_token());
    }
    let pair = session::open_by(&state, &user, true, &client, session::PASSWORD_AND_OTP).await?;
    Ok(transport.respond(HttpResponse::Ok(), pair, &state.settings.cookies))
}

#[utoipa::path(
    get,
    path = "/users/me/mfa",
    operation_id = "mfa_status",
    tag = "Two-factor login",
    summary = "The caller's two-factor status",
    description = "Whether TOTP is on, and how many recovery codes are left.",
    security(("bearer" = [])),
    responses((status = 200, description = "The status.", body = MfaStatus)),
)]
async fn status(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let id = who.user.id.clone();
    let left = state
        .db
        .run(move |conn| mfa::recovery_codes_left(conn, &id))
        .await?;
    Ok(HttpResponse::Ok().json(MfaStatus {
        totp: who.user.mfa_enabled,
        recovery_codes_left: left,
    }))
}

#[utoipa::path(
    post,
    path = "/users/me/mfa/totp",
    operation_id = "totp_enrol",
    tag = "Two-factor login",
    summary = "Start TOTP enrolment",
    description = "Checks the current password and starts (or restarts, with a new secret) \
                   an enrolment: the secret, its `otpauth://` URI and that URI as an SVG QR \
                   code (RFC 6238: SHA-1, 6 digits, 30 s). Login is unchanged until \
                   `/users/me/mfa/totp/confirm`. Counts against the `login` throttle.",
    security(("bearer" = [])),
    responses((status = 200, description = "The pending secret.", body = TotpEnrolment)),
    extensions(("x-problems" = json!([Code::Conflict]))),
)]
async fn enrol(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let current = Fields::only_str(body, "current_password")?;
    check_current_password(&state, &who.user, &current).await?;
    if who.user.mfa_enabled {
        return Err(ApiError::Conflict(
            "Two-factor login is already on; turn it off first.".into(),
        ));
    }
    let secret = totp::new_secret().map_err(internal)?;
    let sealed = state.totp.seal(&who.user.id, &secret).map_err(internal)?;
    let id = who.user.id.clone();
    state
        .db
        .write(move |conn| mfa::set_pending(conn, &id, &sealed))
        .await?;
    let encoded = totp::base32(&secret);
    let issuer = state.settings.mfa_issuer();
    let otpauth_uri = format!(
        "otpauth://totp/{}:{}?secret={encoded}&issuer={}&algorithm=SHA1&digits={}&period={}",
        percent_encode(issuer),
        percent_encode(&who.user.username),
        percent_encode(issuer),
        totp::DIGITS,
        totp::PERIOD,
    );
    let qr_svg = qrcode::QrCode::new(otpauth_uri.as_bytes())
        .map_err(|e| ApiError::Internal(format!("QR code: {e}")))?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(TotpEnrolment {
            secret: encoded,
            otpauth_uri,
            qr_svg,
        }))
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[utoipa::path(
    post,
    path = "/users/me/mfa/totp/confirm",
    operation_id = "totp_confirm",
    tag = "Two-factor login",
    summary = "Confirm TOTP enrolment",
    description = "With a current code of the pending secret, turns TOTP on and answers ten \
                   recovery codes, shown this once (only their hashes are stored). A wrong \
                   code is `errors.code`; no pending enrolment, `errors.non_field_errors`.",
    security(("bearer" = [])),
    responses((status = 200, description = "TOTP is on.", body = RecoveryCodes)),
)]
async fn confirm(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let code = Fields::only_str(body, "code")?;
    state
        .account_limit
        .check(Account::User(&who.user.id))
        .await?;
    let id = who.user.id.clone();
    let row = state.db.run(move |conn| mfa::totp_of(conn, &id)).await?;
    let Some(pending) = row.and_then(|r| r.pending_secret) else {
        return Err(ApiError::field(
            "non_field_errors",
            vec!["No enrolment is pending: start one with POST /users/me/mfa/totp.".into()],
        ));
    };
    let Some(step) = matching_step(&state.totp, &who.user.id, &pending, code.trim())? else {
        return Err(wrong_code());
    };
    let codes = totp::new_recovery_codes().map_err(internal)?;
    let (shown, hashes): (Vec<String>, Vec<String>) = codes.into_iter().unzip();
    let id = who.user.id.clone();
    let confirmed = state
        .db
        .write(move |conn| mfa::confirm(conn, &id, &pending, step, &hashes))
        .await?;
    if !confirmed {
        // A newer enrolment started meanwhile, or this step was already used.
        return Err(wrong_code());
    }
    log::info!(target: "latchkey::accounts", "user {} turned on two-factor login", who.user.id);
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(RecoveryCodes {
            recovery_codes: shown,
        }))
}

/// The current password and a second factor of an account with TOTP on.
async fn password_and_code(
    state: &AppState,
    who: &AuthenticatedUser,
    body: JsonBody,
) -> Result<(), ApiError> {
    let mut f = Fields::new(body);
    let current = f.required_str("current_password");
    let code = f.required_str("code");
    let (current, code) = f.finish(|| Some((current?, code?)))?;
    if !who.user.mfa_enabled {
        return Err(not_enabled());
    }
    check_current_password(state, &who.user, &current).await?;
    if !check_code(state, &who.user.id, code.trim()).await? {
        return Err(wrong_code());
    }
    Ok(())
}

#[utoipa::path(
    delete,
    path = "/users/me/mfa/totp",
    operation_id = "totp_disable",
    tag = "Two-factor login",
    summary = "Turn TOTP off",
    description = "With the current password and a TOTP or recovery code: TOTP is off, the \
                   recovery codes are deleted, and every session but the caller's is revoked.",
    security(("bearer" = [])),
    responses((status = 204, description = "TOTP is off.")),
)]
async fn disable(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    password_and_code(&state, &who, body).await?;
    let id = who.user.id.clone();
    let keep = who.token.session.clone();
    let hooks = state.webhooks.clone();
    state
        .db
        .write(move |conn| {
            let revoke = Revoke::now("mfa_disabled", &hooks);
            mfa::remove(conn, &id, keep.as_deref(), &revoke)
        })
        .await?;
    log::info!(target: "latchkey::accounts", "user {} turned off two-factor login", who.user.id);
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/users/me/mfa/recovery-codes",
    operation_id = "recovery_codes_regenerate",
    tag = "Two-factor login",
    summary = "New recovery codes",
    description = "With the current password and a TOTP or recovery code: ten new recovery \
                   codes, shown this once; the old ones stop working.",
    security(("bearer" = [])),
    responses((status = 200, description = "The new codes.", body = RecoveryCodes)),
)]
async fn regenerate(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    password_and_code(&state, &who, body).await?;
    let codes = totp::new_recovery_codes().map_err(internal)?;
    let (shown, hashes): (Vec<String>, Vec<String>) = codes.into_iter().unzip();
    let id = who.user.id.clone();
    state
        .db
        .write(move |conn| mfa::replace_recovery_codes(conn, &id, &hashes))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(RecoveryCodes {
            recovery_codes: shown,
        }))
}

#[utoipa::path(
    delete,
    path = "/users/{id}/mfa",
    operation_id = "staff_mfa_reset",
    tag = "Administration",
    summary = "Remove a user's two-factor login",
    description = "For a lost device: the user's TOTP secret and recovery codes are removed \
                   and every session of theirs is revoked; their next login asks for the \
                   password alone.",
    params(("id" = String, Path, description = "The user's id.")),
    security(("bearer" = [])),
    responses((status = 204, description = "Two-factor login is off for the user.")),
    extensions(("x-problems" = json!([Code::PermissionDenied, Code::MfaRequired, Code::NotFound]))),
)]
async fn staff_reset(
    state: web::Data<AppState>,
    StaffUser(staff): StaffUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let target = id.clone();
    let hooks = state.webhooks.clone();
    let found = state
        .db
        .write(move |conn| mfa::remove(conn, &target, None, &Revoke::now("mfa_reset", &hooks)))
        .await?;
    if !found {
        return Err(ApiError::NotFound);
    }
    log::info!(target: "latchkey::accounts", "staff {} removed two-factor login of user {id}", staff.user.id);
    Ok(HttpResponse::NoContent().finish())
}
