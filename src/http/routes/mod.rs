//! Every route of API.md, one module per resource, each with a `configure`.

mod activation;
mod auth;
mod docs;
mod groups;
mod health;
mod metrics;
mod password_reset;
mod users_admin;
mod users_me;
mod well_known;

use actix_web::{Resource, web};

use super::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    auth::configure(cfg);
    activation::configure(cfg);
    password_reset::configure(cfg);
    users_me::configure(cfg);
    users_admin::configure(cfg);
    groups::configure(cfg);
    well_known::configure(cfg);
    health::configure(cfg);
    metrics::configure(cfg);
    docs::configure(cfg);
}

/// A resource whose unrouted methods answer 405 `method_not_allowed`.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(|| async {
        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed)
    }))
}

/// The fallback for every unknown path.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
