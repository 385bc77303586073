//! `GET /metrics`: the Prometheus text exposition. Gauges that describe a current state
//! (hashing queue, connection pool) are read at scrape time.

use actix_web::{HttpResponse, web};

use super::resource;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::metrics::StateLabels;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics").route(web::get().to(metrics)));
}

async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let m = &state.metrics;
    m.hash_queue_depth
        .set(i64::try_from(state.hasher.queue_depth()).unwrap_or(i64::MAX));
    let (idle, in_use) = state.db.connections();
    m.db_connections
        .get_or_create(&StateLabels { state: "idle" })
        .set(idle.into());
    m.db_connections
        .get_or_create(&StateLabels { state: "in_use" })
        .set(in_use.into());
    let text = m
        .render()
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
