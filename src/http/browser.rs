//! Browser sessions (API.md "Browser sessions"): with `X-Token-Transport: cookie` the
//! refresh token travels in an `HttpOnly` cookie instead of the JSON body, so no script
//! (and no injected one) can read it.
//!
//! The cookie is sent by the browser on its own, so whatever uses it must prove that the
//! page making the request is one of ours (CSRF). Two checks, both required:
//! - the `X-Token-Transport: cookie` header: a cross-site `<form>` cannot set a header,
//!   and a cross-origin `fetch` can only set one after a CORS preflight, which only
//!   `cors.allowed_origins` pass;
//! - the `Origin` header, when the browser sends one, must be `server.public_url`'s or
//!   an allowed origin: this also covers clients that skip the preflight, and SameSite
//!   `none` deployments.
//!
//! Only `/auth/token/refresh` and `/auth/logout` read the cookie; every other endpoint
//! takes the access token from `Authorization`, so none of them needs CSRF protection.

use std::future::{Ready, ready};

use actix_web::cookie::{Cookie, SameSite as CookieSameSite, time::Duration};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};

use super::error::ApiError;
use super::state::AppState;
use super::views::TokenPair;
use crate::config::{CookieSettings, SameSite, Settings};

/// The request header that asks for the cookie transport (as the OpenAPI document
/// spells it; header names are case-insensitive).
pub const TRANSPORT_HEADER: &str = "X-Token-Transport";

/// How a request wants its refresh token delivered (and may present one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// In the JSON body (the default, and `X-Token-Transport: body`).
    Body,
    /// In the refresh cookie (`X-Token-Transport: cookie`), from an allowed origin.
    Cookie,
}

impl FromRequest for Transport {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::of(req))
    }
}

impl Transport {
    fn of(req: &HttpRequest) -> Result<Self, ApiError> {
        let Some(value) = req.headers().get(TRANSPORT_HEADER) else {
            return Ok(Self::Body);
        };
        let value = value.as_bytes();
        if value.eq_ignore_ascii_case(b"body") {
            return Ok(Self::Body);
        }
        if !value.eq_ignore_ascii_case(b"cookie") {
            return Err(ApiError::Malformed(
                "`X-Token-Transport` must be `cookie` or `body`".into(),
            ));
        }
        // Asking for the cookie is checked like using it: a login from a foreign page must
        // not plant a session in the browser either (login CSRF).
        let state = req
            .app_data::<web::Data<AppState>>()
            .ok_or_else(|| ApiError::Internal("no AppState".into()))?;
        check_origin(req, &state.settings)?;
        Ok(Self::Cookie)
    }

    /// The token pair as this transport delivers it: in the body, or the refresh token in
    /// the cookie and the rest in the body.
    pub fn respond(
        self,
        mut response: HttpResponseBuilder,
        mut pair: TokenPair,
        cookies: &CookieSettings,
    ) -> HttpResponse {
        if self == Self::Cookie
            && let Some(token) = pair.refresh_token.take()
        {
            let max_age = i64::try_from(pair.refresh_expires_in).unwrap_or(i64::MAX);
            response.cookie(cookie(cookies, token, Duration::seconds(max_age)));
        }
        response.json(pair)
    }
}

/// `Origin`, when present, must be the service's own or an allowed one. (`null`, sent by
/// sandboxed frames and some redirects, is neither.)
fn check_origin(req: &HttpRequest, settings: &Settings) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.as_bytes();
    let allowed = settings.public_origin().as_bytes() == origin
        || settings
            .cors
            .allowed_origins
            .iter()
            .any(|o| o.as_bytes() == origin);
    if allowed {
        Ok(())
    } else {
        Err(ApiError::CsrfFailed(
            "the refresh cookie is not used from this origin",
        ))
    }
}

/// The refresh token a refresh or logout acts on.
pub struct Presented {
    pub token: String,
    /// It came from the cookie: a failure must clear the cookie.
    pub via_cookie: bool,
}

/// The refresh token of a refresh or logout: the body's if it has one (it always wins),
/// else the cookie's, which needs `X-Token-Transport: cookie` (CSRF). `None`: neither.
pub fn presented(
    req: &HttpRequest,
    transport: Transport,
    from_body: Option<String>,
    cookies: &CookieSettings,
) -> Result<Option<Presented>, ApiError> {
    if let Some(token) = from_body {
        return Ok(Some(Presented {
            token,
            via_cookie: false,
        }));
    }
    match (req.cookie(&cookies.name), transport) {
        (None, _) => Ok(None),
        (Some(_), Transport::Body) => Err(ApiError::CsrfFailed(
            "the refresh cookie is only used with `X-Token-Transport: cookie`",
        )),
        (Some(cookie), Transport::Cookie) => Ok(Some(Presented {
            token: cookie.value().to_owned(),
            via_cookie: true,
        })),
    }
}

/// `response` with the refresh cookie cleared (same name, path and domain; `Max-Age=0`).
pub fn clear_cookie(mut response: HttpResponse, cookies: &CookieSettings) -> HttpResponse {
    // Only fails on a header value that cannot be encoded, which a checked name, path
    // and domain never make.
    let _ = response.add_cookie(&cookie(cookies, String::new(), Duration::ZERO));
    response
}

/// The outcome of an operation on a cookie-presented token: an error still answers, and
/// clears the cookie, whose token is of no more use.
pub fn clearing_on_error(
    outcome: Result<HttpResponse, ApiError>,
    presented: &Presented,
    cookies: &CookieSettings,
) -> Result<HttpResponse, ApiError> {
    match outcome {
        Err(e) if presented.via_cookie => Ok(clear_cookie(e.error_response(), cookies)),
        other => other,
    }
}

fn cookie(settings: &CookieSettings, value: String, max_age: Duration) -> Cookie<'static> {
    let mut cookie = Cookie::build(settings.name.clone(), value)
        .path(settings.path.clone())
        .http_only(true)
        .secure(true)
        .same_site(match settings.same_site {
            SameSite::Strict => CookieSameSite::Strict,
            SameSite::Lax => CookieSameSite::Lax,
            SameSite::None => CookieSameSite::None,
        })
        .max_age(max_age)
        .finish();
    if let Some(domain) = &settings.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}
