//! The API describing itself: `GET /openapi.json` (OpenAPI 3.1) and `GET /docs` (the same
//! document as a readable, self-contained HTML page).

use std::sync::OnceLock;

use actix_web::http::header::ContentType;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use utoipa::openapi::path::Paths;
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::Ref;
use utoipa::openapi::{Components, Content, OpenApi as Document, OpenApiBuilder, RefOr, Required};

use crate::http::body::SchemaContext;

use super::{Limit, Route};
use crate::config::Settings;
use crate::http::error::ApiError;
use crate::http::openapi::{self, THROTTLED_EXTENSION, html};
use crate::http::state::AppState;

pub(super) fn routes() -> Vec<Route> {
    vec![route!(Caller, openapi_json), route!(Caller, reference)]
}

/// Every operation of the route table, with its request body from the body spec it is
/// parsed with, and the schemas its responses refer to.
fn operations(ctx: &SchemaContext) -> Document {
    let mut paths = Paths::new();
    let mut schemas = Vec::new();
    for route in super::all() {
        let mut operation = route.operation();
        if let Some(spec) = route.body {
            schemas.push((spec.name.to_owned(), RefOr::T(spec.schema(ctx))));
            let content = Content::new(Some(Ref::from_schema_name(spec.name)));
            operation.request_body = Some(RefOr::T(
                RequestBodyBuilder::new()
                    .content("application/json", content)
                    .required(Some(if spec.may_be_absent() {
                        Required::False
                    } else {
                        Required::True
                    }))
                    .build(),
            ));
        }
        if route.limit != Limit::Never {
            operation
                .extensions
                .get_or_insert_with(Default::default)
                .insert(THROTTLED_EXTENSION.into(), true.into());
        }
        route.schemas(&mut schemas);
        paths.add_path_operation(&route.path, vec![route.http_method()], operation);
    }
    schemas.extend(crate::http::body::components());
    let mut components = Components::new();
    components.schemas.extend(schemas);
    OpenApiBuilder::new()
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The document and its page, made on first use (the server URL comes from the settings,
/// which `configure` cannot see) and then served as they are. Each worker builds its own
/// app, hence its own copy.
#[derive(Default)]
pub(super) struct Docs(OnceLock<Result<Rendered, String>>);

/// Bytes, so that serving one is a reference-count increment.
struct Rendered {
    json: Bytes,
    html: Bytes,
}

impl Docs {
    fn get(&self, state: &AppState) -> Result<&Rendered, ApiError> {
        self.0
            .get_or_init(|| render(&state.settings))
            .as_ref()
            .map_err(|e| ApiError::Internal(e.clone()))
    }
}

fn render(settings: &Settings) -> Result<Rendered, String> {
    let ctx = SchemaContext {
        password_min_length: settings.password.min_length,
    };
    let doc = openapi::document(operations(&ctx), settings.public_url())
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
