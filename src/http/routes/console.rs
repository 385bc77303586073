//! The browser client, served from the binary.

use actix_web::HttpResponse;
use actix_web::http::header;

use super::Route;
use crate::console;

/// Short enough that an upgrade reaches browsers soon; the module is a few kilobytes.
const SDK_MAX_AGE_SECS: u32 = 300;

pub(super) fn routes() -> Vec<Route> {
    vec![route!(Caller, sdk)]
}

#[utoipa::path(
    get,
    path = "/sdk/latchkey.js",
    operation_id = "browser_client",
    tag = "Service",
    summary = "The browser client",
    description = "An ES module with no dependencies for single-page apps: login (with the \
                   two-factor step), the access token in memory only, the refresh token in \
                   the HttpOnly cookie, refresh before expiry and once on a 401, one tab \
                   refreshing at a time, logout reaching every tab, and a `fetch()` that \
                   adds the Bearer header. See the README, \"Single-page apps\".",
    responses((
        status = 200,
        description = "The module.",
        content_type = "text/javascript",
        body = String,
        headers(("Cache-Control" = String, description = "`public, max-age=300`")),
    )),
)]
async fn sdk() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={SDK_MAX_AGE_SECS}"),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(console::SDK)
}
