//! Every route of API.md, one module per resource. Each module lists its operations with
//! [`route!`]: the method and path come from the handler's `#[utoipa::path]` attribute, so
//! one declaration gives the router, the OpenAPI document, the throttle scope and the body
//! spec alike, and none of them can name a path the others do not know.

use std::collections::HashMap;

use actix_web::http::Method;
use actix_web::{HttpResponse, Resource, web};
use utoipa::__dev::SchemaReferences;
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::schema::Schema;

use super::body::BodySpec;
use super::error::ApiError;
use super::fields::BodySpecs;

/// How an operation counts against the throttle (API.md, Throttling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Probes, metrics and discovery: never throttled.
    Never,
    /// `anon` or `user`, by whether the caller presented a valid access token.
    Caller,
    /// Takes credentials or mails an address: the shared `login` bucket too.
    Credentials,
    /// The second login step (`/auth/login/mfa`): the `mfa` bucket too.
    Mfa,
}

/// One operation of the API.
pub struct Route {
    pub method: Method,
    pub path: String,
    pub limit: Limit,
    pub body: Option<&'static BodySpec>,
    handler: fn() -> actix_web::Route,
    operation: fn() -> Operation,
    /// The component schemas the operation's responses refer to.
    schemas: fn(&mut Vec<(String, RefOr<Schema>)>),
}

impl Route {
    /// The operation documented by `P` (a `#[utoipa::path]`), served by `handler`.
    ///
    /// `SchemaReferences` is utoipa's (hidden) hook through which `#[derive(OpenApi)]`
    /// collects the schemas an operation refers to; the document is built from this table
    /// instead of from a second list of handlers, so it needs the same hook.
    pub fn new<P: utoipa::Path + SchemaReferences>(
        limit: Limit,
        body: Option<&'static BodySpec>,
        handler: fn() -> actix_web::Route,
    ) -> Self {
        let method = match P::methods().as_slice() {
            [HttpMethod::Get] => Method::GET,
            [HttpMethod::Post] => Method::POST,
            [HttpMethod::Patch] => Method::PATCH,
            [HttpMethod::Delete] => Method::DELETE,
            [HttpMethod::Put] => Method::PUT,
            _ => unreachable!("one method per operation: {}", P::path()),
        };
        Self {
            method,
            path: P::path(),
            limit,
            body,
            handler,
            operation: P::operation,
            schemas: P::schemas,
        }
    }

    /// The operation's OpenAPI description, as its attribute states it.
    pub fn operation(&self) -> Operation {
        (self.operation)()
    }

    /// Adds the component schemas the operation refers to.
    pub fn schemas(&self, into: &mut Vec<(String, RefOr<Schema>)>) {
        (self.schemas)(into);
    }

    pub fn http_method(&self) -> HttpMethod {
        match self.method {
            Method::GET => HttpMethod::Get,
            Method::PATCH => HttpMethod::Patch,
            Method::DELETE => HttpMethod::Delete,
            Method::PUT => HttpMethod::Put,
            _ => HttpMethod::Post,
        }
    }
}

/// `route!(Limit, handler)` or `route!(Limit, handler, BODY_SPEC)`: the [`Route`] of a
/// handler with a `#[utoipa::path]` attribute.
macro_rules! route {
    ($limit:ident, $handler:ident) => {
        route!(@make $limit, $handler, None)
    };
    ($limit:ident, $handler:ident, $body:expr) => {
        route!(@make $limit, $handler, Some(&$body))
    };
    (@make $limit:ident, $handler:ident, $body:expr) => {
        pastey::paste! {
            $crate::http::routes::Route::new::<[<__path_ $handler>]>(
                $crate::http::routes::Limit::$limit,
                $body,
                || actix_web::web::to($handler),
            )
        }
    };
}

mod account_changes;
mod activation;
mod auth;
mod console;
pub use console::configure_pages;
mod docs;
mod groups;
mod health;
mod metrics;
mod mfa;
mod password_reset;
mod sessions;
mod users_admin;
mod users_me;
mod well_known;

/// Every operation, in routing order (a literal path before a template that would match
/// it: `/users/me` before `/users/{id}`).
pub fn all() -> Vec<Route> {
    [
        auth::routes(),
        mfa::routes(),
        activation::routes(),
        password_reset::routes(),
        users_me::routes(),
        sessions::routes(),
        account_changes::routes(),
        users_admin::routes(),
        groups::routes(),
        well_known::routes(),
        console::routes(),
        health::routes(),
        metrics::routes(),
        docs::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// One resource per path, holding its operations and their body specs; any other method
/// on the path answers 405 `method_not_allowed` with `Allow`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(docs::Docs::default()));
    let routes = all();
    let mut paths: Vec<&str> = Vec::new();
    for route in &routes {
        if !paths.contains(&route.path.as_str()) {
            paths.push(&route.path);
        }
    }
    for path in paths {
        let of_path: Vec<&Route> = routes.iter().filter(|r| r.path == path).collect();
        cfg.service(resource(path, &of_path));
    }
}

fn resource(path: &str, routes: &[&Route]) -> Resource {
    let allow = routes
        .iter()
        .map(|r| r.method.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let specs: HashMap<Method, &'static BodySpec> = routes
        .iter()
        .filter_map(|r| Some((r.method.clone(), r.body?)))
        .collect();
    let not_allowed = move || {
        let allow = allow.clone();
        async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) }
    };
    routes.iter().fold(
        web::resource(path)
            .app_data(BodySpecs(specs))
            .default_service(web::to(not_allowed)),
        |resource, r| resource.route((r.handler)().method(r.method.clone())),
    )
}

/// The fallback for every unknown path.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
