//! The API describing itself: `GET /openapi.json` (OpenAPI 3.1) and `GET /docs` (the same
//! document as a readable, self-contained HTML page).

use std::sync::OnceLock;

use actix_web::http::header::ContentType;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use utoipa::OpenApi;

use super::resource;
use crate::http::error::ApiError;
use crate::http::openapi::{self, html};
use crate::http::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    let docs = web::Data::new(Docs::default());
    cfg.service(
        resource("/openapi.json")
            .app_data(docs.clone())
            .route(web::get().to(openapi_json)),
    )
    .service(
        resource("/docs")
            .app_data(docs)
            .route(web::get().to(reference)),
    );
}

/// Every operation of the routes. Listed here rather than in `http::openapi` because the
/// route modules are private to `routes`.
#[derive(OpenApi)]
#[openapi(paths(
    super::auth::register,
    super::activation::activate,
    super::activation::resend,
    super::auth::login,
    super::auth::refresh,
    super::auth::verify,
    super::auth::logout,
    super::auth::logout_all,
    super::password_reset::request_reset,
    super::password_reset::confirm_reset,
    super::users_me::change_password,
    super::users_me::me,
    super::users_me::update_me,
    super::users_me::delete_me,
    super::users_admin::list,
    super::users_admin::read,
    super::users_admin::update,
    super::users_admin::delete,
    super::groups::list,
    super::groups::create,
    super::groups::delete,
    super::well_known::jwks,
    super::well_known::openid_configuration,
    super::health::healthz,
    super::health::readyz,
    super::metrics::metrics,
    openapi_json,
    reference,
))]
struct Operations;

/// The document and its page, made on first use (the server URL comes from the settings,
/// which `configure` cannot see) and then served as they are. Each worker builds its own
/// app, hence its own copy.
#[derive(Default)]
struct Docs(OnceLock<Result<Rendered, String>>);

/// Bytes, so that serving one is a reference-count increment.
struct Rendered {
    json: Bytes,
    html: Bytes,
}

impl Docs {
    fn get(&self, state: &AppState) -> Result<&Rendered, ApiError> {
        self.0
            .get_or_init(|| render(state.settings.public_url()))
            .as_ref()
            .map_err(|e| ApiError::Internal(e.clone()))
    }
}

fn render(public_url: &str) -> Result<Rendered, String> {
    let doc = openapi::document(Operations::openapi(), public_url)
        .map_err(|e| format!("building the OpenAPI document: {e}"))?;
    let json = doc
        .to_json()
        .map_err(|e| format!("serializing the OpenAPI document: {e}"))?;
    Ok(Rendered {
        json: Bytes::from(json),
        html: Bytes::from(html::render(&doc)),
    })
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "Service",
    summary = "This API as an OpenAPI 3.1 document",
    description = "Generated from the code: every operation, its parameters, bodies, \
                   responses and problems.",
    responses((status = 200, description = "The OpenAPI document.", body = Object)),
)]
async fn openapi_json(
    state: web::Data<AppState>,
    docs: web::Data<Docs>,
) -> Result<HttpResponse, ApiError> {
    let json = docs.get(&state)?.json.clone();
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(json))
}

#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "docs",
    tag = "Service",
    summary = "This API as a readable reference page",
    description = "The OpenAPI document rendered as one self-contained HTML page.",
    responses((status = 200, description = "The reference page.", body = String, content_type = "text/html")),
)]
async fn reference(
    state: web::Data<AppState>,
    docs: web::Data<Docs>,
) -> Result<HttpResponse, ApiError> {
    let html = docs.get(&state)?.html.clone();
    Ok(HttpResponse::Ok()
        .content_type(ContentType::html())
        .body(html))
}
