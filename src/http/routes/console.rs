//! The browser client and the web console's pages, served from the binary.

use actix_web::http::header;
use actix_web::{HttpResponse, Resource, web};

use super::Route;
use crate::console::{self, Console, Page, STATIC_PREFIX};
use crate::http::error::ApiError;

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

/// The pages' policy: nothing inline, nothing from another host, never framed.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'; object-src 'none'";

/// A versioned static file never changes: cache it for a year.
const STATIC_CACHE: &str = "public, max-age=31536000, immutable";

/// The console's pages and static files (`console.enabled`). Not part of the API: not in
/// the route table, the OpenAPI document or the throttle's scopes.
pub fn configure_pages(cfg: &mut web::ServiceConfig) {
    for page in Page::ALL {
        let show = move |console: web::Data<Console>| async move { show(&console, page) };
        cfg.service(
            read_only(page.path())
                .route(web::get().to(show))
                .route(web::head().to(show)),
        );
    }
    let path = format!("{STATIC_PREFIX}/{{version}}/{{file}}");
    cfg.service(
        read_only(&path)
            .route(web::get().to(static_file))
            .route(web::head().to(static_file)),
    );
}

/// A resource for `GET` and `HEAD` (whose body actix leaves out), answering other methods
/// with 405 and `Allow`.
fn read_only(path: &str) -> Resource {
    web::resource(path).default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
            allow: "GET, HEAD".into(),
        })
    }))
}

fn show(console: &Console, page: Page) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if page.carries_token() {
        // The emailed token is in the URL: no request from the page may carry it away.
        response.insert_header((header::REFERRER_POLICY, "no-referrer"));
    } else {
        response.insert_header((header::REFERRER_POLICY, "same-origin"));
    }
    response.body(console.page(page).to_owned())
}

async fn static_file(
    console: web::Data<Console>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (version, name) = path.into_inner();
    let (contents, content_type) = console
        .static_file(&version, &name)
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, STATIC_CACHE))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header(("cross-origin-resource-policy", "same-origin"))
        .body(contents))
}
