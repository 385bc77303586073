//! Registration, login, refresh, verify and logout.

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::Utc;
use diesel::Connection;
use serde_json::json;

use super::Route;
use crate::auth::account_tokens::Purpose;
use crate::auth::jwt::{RefreshClaims, TokenType};
use crate::db::models::db_time;
use crate::db::models::tokens::{self, Liveness, Revoke};
use crate::db::models::users::{NewUser, Taken, User};
use crate::domain::{Email, Password, UserId, Username, check_bio, check_name};
use crate::http::account_limit::Account;
use crate::http::body::{BodySpec, Kind, bounds, optional, required};
use crate::http::browser::{self, Transport};
use crate::http::client_ip::Client;
use crate::http::error::ApiError;
use crate::http::error::ProblemCode as Code;
use crate::http::extractors::AuthenticatedUser;
use crate::http::fields::{Fields, JsonBody, REQUIRED};
use crate::http::openapi::schemas::{Registered, TokenTransport, Verified};
use crate::http::state::AppState;
use crate::http::views::{TokenPair, UserView};
use crate::http::{mailing, session};

pub(super) fn routes() -> Vec<Route> {
    vec![
        route!(Credentials, register, REGISTER),
        route!(Credentials, login, LOGIN),
        route!(Caller, refresh, REFRESH),
        route!(Caller, verify, VERIFY),
        route!(Caller, logout, REFRESH),
        route!(Caller, logout_all),
    ]
}

const REGISTER: BodySpec = BodySpec {
    name: "RegisterRequest",
    description: "A new account.",
    fields: &[
        required(
            "username",
            Kind::Text(bounds::USERNAME),
            "Letters, digits and `@ . + - _`, NFKC-normalised; unique, ignoring case.",
        ),
        required(
            "email",
            Kind::Text(bounds::EMAIL),
            "Unique, ignoring case; stored with the domain lower-cased.",
        ),
        required(
            "password",
            Kind::Text(bounds::NEW_PASSWORD),
            "At least `password.min_length` characters, not entirely numeric, not too similar to the username or email, not a common password.",
        ),
        required(
            "password_confirm",
            Kind::Text(bounds::PASSWORD),
            "Must equal `password`.",
        ),
        optional("first_name", Kind::Text(bounds::NAME), ""),
        optional("last_name", Kind::Text(bounds::NAME), ""),
        optional("bio", Kind::Text(bounds::BIO), ""),
    ],
    one_of: &[],
};

const LOGIN: BodySpec = BodySpec {
    name: "LoginRequest",
    description: "Credentials: `password` and one of `username` or `email` (`username` wins if both are given).",
    fields: &[
        optional("username", Kind::Text(bounds::LOGIN_NAME), ""),
        optional("email", Kind::Text(bounds::LOGIN_NAME), ""),
        required("password", Kind::Text(bounds::PASSWORD), ""),
    ],
    one_of: &["username", "email"],
};

const REFRESH: BodySpec = BodySpec {
    name: "RefreshTokenRequest",
    description: "A refresh token, in the body or in the refresh cookie (then the body may be \
                  empty or `{}`, and `X-Token-Transport: cookie` is required).",
    fields: &[optional(
        "refresh_token",
        Kind::Text(bounds::JWT),
        "Required unless the refresh cookie is sent; wins over the cookie.",
    )],
    one_of: &[],
};

const VERIFY: BodySpec = BodySpec {
    name: "VerifyRequest",
    description: "A token to check.",
    fields: &[required(
        "token",
        Kind::Text(bounds::JWT),
        "An access or a refresh token.",
    )],
    one_of: &[],
};

struct Registration {
    username: Username,
    email: Email,
    password: Password,
    first_name: String,
    last_name: String,
    bio: String,
}

impl Registration {
    async fn parse(body: JsonBody, state: &AppState) -> Result<Self, ApiError> {
        let mut f = Fields::new(body);
        let raw_username = f.required_str("username");
        let raw_email = f.required_str("email");
        let raw_password = f.password_pair("password", "password_confirm");
        let first_name = f
            .optional_checked("first_name", check_name)
            .unwrap_or_default();
        let last_name = f
            .optional_checked("last_name", check_name)
            .unwrap_or_default();
        let bio = f.optional_checked("bio", check_bio).unwrap_or_default();

        let username = raw_username
            .as_deref()
            .and_then(|u| f.check("username", Username::parse(u)));
        let email = raw_email
            .as_deref()
            .and_then(|e| f.check("email", Email::parse(e)));
        // The policy compares with what will be stored (NFKC), or the text as given when it
        // did not parse.
        let attributes: Vec<&str> = [
            username
                .as_ref()
                .map(Username::as_str)
                .or(raw_username.as_deref()),
            email.as_ref().map(Email::as_str).or(raw_email.as_deref()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let password = match raw_password {
            Some(p) => f.check("password", state.check_password(&p, &attributes).await?),
            None => None,
        };
        f.finish(|| {
            Some(Self {
                username: username?,
                email: email?,
                password: password?,
                first_name,
                last_name,
                bio,
            })
        })
    }
}

fn conflict(taken: Taken) -> ApiError {
    ApiError::Conflict(match taken {
        Taken::Username => "A user with that username already exists.".into(),
        Taken::Email => "A user with that email already exists.".into(),
    })
}

#[utoipa::path(
    post,
    path = "/auth/register",
    operation_id = "register",
    tag = "Registration and activation",
    summary = "Create an account",
    description = "With `accounts.require_email_verification` on (the default) the account \
                   starts inactive and an activation email is sent; with \
                   `accounts.require_admin_approval` on it then also waits for a staff member. \
                   With neither, the user is logged in at once.",
    params(TokenTransport),
    responses((status = 201, description = "The account was created.", body = Registered)),
    extensions(("x-problems" = json!([
        Code::Conflict,
        Code::ServiceUnavailable,
    ]))),
)]
async fn register(
    state: web::Data<AppState>,
    client: Client,
    transport: Transport,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let r = Registration::parse(body, &state).await?;
    let (username_key, email_key) = (r.username.key(), r.email.key());
    // Checked before the costly hash; the unique indexes still decide races.
    let (uk, ek) = (username_key.clone(), email_key.clone());
    // With email verification on, an unclaimed account's email is free (see `User::register`).
    let replace_unclaimed = state.settings.accounts.require_email_verification;
    if let Some(taken) = state
        .db
        .run(move |conn| User::find_taken(conn, &uk, &ek, replace_unclaimed))
        .await?
    {
        return Err(conflict(taken));
    }
    let password_hash = state.hasher.hash(&r.password).await?;
    let accounts = &state.settings.accounts;
    let verify_email = accounts.require_email_verification;
    let approval = accounts.require_admin_approval;
    let id = UserId::new().to_string();
    let now = Utc::now();
    let hooks = state.webhooks.clone();
    let user = {
        let (id, username, email) = (
            id.clone(),
            r.username.as_str().to_owned(),
            r.email.as_str().to_owned(),
        );
        let (first_name, last_name, bio) = (r.first_name, r.last_name, r.bio);
        state
            .db
            .write(move |conn| {
                let new = NewUser {
                    id: &id,
                    username: &username,
                    username_key: &username_key,
                    email: &email,
                    email_key: &email_key,
                    password_hash: &password_hash,
                    first_name: &first_name,
                    last_name: &last_name,
                    bio: &bio,
                    is_active: !verify_email && !approval,
                    is_staff: false,
                    email_verified: false,
                    approval_pending: approval,
                    date_joined: db_time(now),
                };
                // The activation link is asked for in the same transaction: a sign-up
                // that commits always gets its email, even if the process dies next.
                conn.transaction(|conn| {
                    let user = User::register(conn, &new, replace_unclaimed, &hooks)?;
                    if verify_email {
                        mailing::request_link(conn, Purpose::Activation, new.email_key, now)?;
                    }
                    Ok(user)
                })
            })
            .await
            .map_err(|e| User::taken(&e).map_or_else(|| ApiError::from(e), conflict))?
    };
    log::info!(target: "latchkey::accounts", "registered user {}", user.id);

    if verify_email {
        state.links.wake();
        let body = json!({"user": UserView::new(&user, vec![]), "activation_required": true});
        return Ok(HttpResponse::Created().json(body));
    }
    if approval {
        let body = json!({"user": UserView::new(&user, vec![]), "approval_required": true});
        return Ok(HttpResponse::Created().json(body));
    }
    let pair = session::open(&state, &user, true, &client).await?;
    Ok(transport.respond(HttpResponse::Created(), pair, &state.settings.cookies))
}

/// Which account a login names (as given, then as its lookup key).
#[derive(Clone)]
enum LoginName {
    Username(String),
    Email(String),
}

#[utoipa::path(
    post,
    path = "/auth/login",
    operation_id = "login",
    tag = "Login and tokens",
    summary = "Log in",
    description = "Checks `password` against the account named by `username` or `email` \
                   and updates its `last_login`. An unknown user costs as much time as a \
                   wrong password. With two-factor login on for the account, the answer is \
                   `{\"mfa_required\": true, \"mfa_token\", \"methods\"}` instead, with no \
                   tokens and `last_login` unchanged: finish at `/auth/login/mfa`.",
    params(TokenTransport),
    responses((status = 200, description = "A new session, or the two-factor challenge.", body = super::mfa::LoginAnswer)),
    extensions(("x-problems" = json!([
        Code::InvalidCredentials,
        Code::AccountInactive,
        Code::ServiceUnavailable,
    ]))),
)]
async fn login(
    state: web::Data<AppState>,
    client: Client,
    transport: Transport,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let username = f.optional_str("username");
    let email = f.optional_str("email");
    let password = f.required_str("password");
    // The spec requires one of the two; `username` wins if both are given.
    let name = match (username, email) {
        (Some(u), _) => Some(LoginName::Username(u)),
        (None, e) => e.map(LoginName::Email),
    };
    let (name, password) = f.finish(|| Some((name?, password?)))?;

    let name = match name {
        LoginName::Username(u) => LoginName::Username(Username::key_of(&u)),
        LoginName::Email(e) => LoginName::Email(Email::key_of(&e)),
    };
    let lookup = name.clone();
    let found = state
        .db
        .run(move |conn| match &lookup {
            LoginName::Username(key) => User::find_by_username_key(conn, key),
            LoginName::Email(key) => User::find_by_email_key(conn, key),
        })
        .await?;
    let (LoginName::Username(key) | LoginName::Email(key)) = &name;
    state
        .account_limit
        .check(match &found {
            Some(user) => Account::User(&user.id),
            None => Account::Unknown(key),
        })
        .await?;
    // An unknown user costs a dummy-hash check, so timing does not tell who exists.
    let stored = found.as_ref().map(|u| u.password_hash.clone());
    let matches = state.hasher.verify(&password, stored).await?;
    let user = found
        .filter(|_| matches)
        .ok_or(ApiError::InvalidCredentials)?;
    if !user.is_active {
        let verification = state.settings.accounts.require_email_verification;
        return Err(ApiError::AccountInactive(
            user.inactive_reason(verification),
        ));
    }
    if user.mfa_enabled {
        return super::mfa::challenge(&state, &user).await;
    }
    let pair = session::open(&state, &user, true, &client).await?;
    Ok(transport.respond(HttpResponse::Ok(), pair, &state.settings.cookies))
}

#[utoipa::path(
    post,
    path = "/auth/token/refresh",
    operation_id = "refresh",
    tag = "Login and tokens",
    summary = "Rotate a refresh token",
    description = "The presented refresh token is blacklisted and a new pair of the same \
                   family returned. The token just replaced, presented again within the \
                   grace window (10 s by default), gets the family's current refresh token \
                   (the same string) and a fresh access token; any other reuse revokes the \
                   whole family (`token_reused`). Without `refresh_token` in the body, the \
                   refresh cookie is used (with `X-Token-Transport: cookie`); a failure then \
                   also clears the cookie.",
    params(TokenTransport),
    responses((status = 200, description = "The rotated pair.", body = TokenPair)),
    extensions(("x-problems" = json!([
        Code::TokenInvalid,
        Code::TokenRevoked,
        Code::TokenReused,
        Code::ServiceUnavailable,
    ]))),
)]
async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    transport: Transport,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let cookies = &state.settings.cookies;
    let client = Client::of(&req);
    let from_body = Fields::only_optional_str(body, "refresh_token")?;
    let Some(presented) = browser::presented(&req, transport, from_body, cookies)? else {
        return Err(match transport {
            Transport::Cookie => ApiError::TokenInvalid("no refresh token: no cookie".into()),
            Transport::Body => ApiError::field("refresh_token", vec![REQUIRED.into()]),
        });
    };
    let rotated = async {
        let claims = refresh_claims(&state, &presented.token)?;
        let pair = session::rotate(&state, &claims.sub, &claims.fam, &claims.jti, &client).await?;
        Ok(transport.respond(HttpResponse::Ok(), pair, cookies))
    };
    browser::clearing_on_error(rotated.await, &presented, cookies)
}

/// The claims of a refresh token whose signature and lifetime check out.
fn refresh_claims(state: &AppState, token: &str) -> Result<RefreshClaims, ApiError> {
    state
        .tokens
        .verify(token, Some(TokenType::Refresh))?
        .refresh()
        .ok_or_else(|| ApiError::TokenInvalid("refresh token lacks its family".into()))
}

#[utoipa::path(
    post,
    path = "/auth/token/verify",
    operation_id = "verify_token",
    tag = "Login and tokens",
    summary = "Check a token",
    description = "Verifies an access or refresh token: signature, claims, that its user \
                   still exists and is active, and for a refresh token that it is still live.",
    responses((status = 200, description = "The token is valid.", body = Verified)),
    extensions(("x-problems" = json!([
        Code::TokenInvalid,
        Code::TokenRevoked,
        Code::ServiceUnavailable,
    ]))),
)]
async fn verify(state: web::Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let token = Fields::only_str(body, "token")?;
    let verified = state.tokens.verify(&token, None)?;
    let subject = verified.subject.clone();
    let refresh = verified.refresh();
    let (user_ok, live) = state
        .db
        .run(move |conn| {
            let user_ok = User::find(conn, &subject)?.is_some_and(|u| u.is_active);
            let live = match refresh {
                Some(r) => tokens::liveness(conn, &r.fam, &r.jti)?,
                None => Liveness::Live,
            };
            Ok((user_ok, live))
        })
        .await?;
    if !user_ok {
        return Err(ApiError::TokenInvalid(
            "user no longer exists or is inactive".into(),
        ));
    }
    if live == Liveness::Dead {
        return Err(ApiError::TokenRevoked);
    }
    Ok(HttpResponse::Ok().json(json!({
        "valid": true,
        "token_type": verified.token_type.as_str(),
        "claims": &verified.claims,
    })))
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    operation_id = "logout",
    tag = "Login and tokens",
    summary = "Log out one session",
    description = "Revokes the refresh token's family. Idempotent. Without `refresh_token` \
                   in the body, the refresh cookie's family is revoked (with \
                   `X-Token-Transport: cookie`) and the cookie cleared, also when it holds \
                   no valid token, and 204 when there is no cookie.",
    params(TokenTransport),
    responses((status = 204, description = "The session is revoked.")),
    extensions(("x-problems" = json!([
        Code::TokenInvalid,
        Code::ServiceUnavailable,
    ]))),
)]
async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    transport: Transport,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let cookies = &state.settings.cookies;
    let from_body = Fields::only_optional_str(body, "refresh_token")?;
    let Some(presented) = browser::presented(&req, transport, from_body, cookies)? else {
        return match transport {
            // Already logged out in this browser: nothing to revoke, nothing to keep.
            Transport::Cookie => Ok(browser::clear_cookie(
                HttpResponse::NoContent().finish(),
                cookies,
            )),
            Transport::Body => Err(ApiError::field("refresh_token", vec![REQUIRED.into()])),
        };
    };
    let revoked = async {
        let claims = refresh_claims(&state, &presented.token)?;
        let hooks = state.webhooks.clone();
        state
            .db
            .write(move |conn| {
                tokens::revoke_family(conn, &claims.fam, &Revoke::now("logout", &hooks))
            })
            .await?;
        Ok(HttpResponse::NoContent().finish())
    };
    let outcome = revoked.await;
    if !presented.via_cookie {
        return outcome;
    }
    // Logged out of this browser whatever the token's state: the cookie goes either way.
    let response = outcome.unwrap_or_else(|e| e.error_response());
    Ok(browser::clear_cookie(response, cookies))
}

#[utoipa::path(
    post,
    path = "/auth/logout/all",
    operation_id = "logout_all",
    tag = "Login and tokens",
    summary = "Log out everywhere",
    description = "Revokes every refresh token of the caller. Access tokens stay valid until \
                   they expire.",
    security(("bearer" = [])),
    responses((status = 204, description = "Every session is revoked.")),
)]
async fn logout_all(
    state: web::Data<AppState>,
    who: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let id = who.user.id;
    let hooks = state.webhooks.clone();
    let revoked = state
        .db
        .write(move |conn| {
            tokens::revoke_user_families(conn, &id, None, &Revoke::now("logout_all", &hooks))
        })
        .await?;
    log::info!(target: "latchkey::accounts", "logout everywhere: {revoked} session(s) revoked");
    Ok(HttpResponse::NoContent().finish())
}
