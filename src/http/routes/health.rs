//! Probes for Kubernetes: liveness needs nothing, readiness needs the database.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::Route;
use crate::http::error::ApiError;
use crate::http::error::ProblemCode as Code;
use crate::http::openapi::schemas::Status;
use crate::http::state::AppState;

pub(super) fn routes() -> Vec<Route> {
    vec![route!(Never, healthz), route!(Never, readyz)]
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "Service",
    summary = "Liveness probe",
    description = "The process is alive; no dependency is checked.",
    responses((status = 200, description = "Alive.", body = Status)),
)]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "Service",
    summary = "Readiness probe",
    description = "The database answers.",
    responses((status = 200, description = "Ready.", body = Status)),
    extensions(("x-problems" = json!([Code::ServiceUnavailable]))),
)]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.db.ping().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
