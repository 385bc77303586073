//! `GET /metrics`: the OpenMetrics text exposition Prometheus scrapes. Gauges that describe a current state
//! (hashing queue, connection pool, the oldest pending webhook delivery) are read at scrape
//! time.

use actix_web::{HttpResponse, web};
use chrono::Utc;

use super::Route;
use crate::db::models::webhook_outbox;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::metrics::StateLabels;

pub(super) fn routes() -> Vec<Route> {
    vec![route!(Never, metrics)]
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "Service",
    summary = "Prometheus metrics",
    description = "Request counts and latencies per route and status, logins by outcome, \
                   tokens issued, refresh reuse detected, verified-token cache hits and \
                   misses, hashing queue depth, database connections, webhook deliveries \
                   and the age of the oldest pending one.",
    responses((
        status = 200,
        description = "The OpenMetrics text exposition format.",
        body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )),
)]
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
    if !state.webhooks.endpoints().is_empty() {
        let oldest = state.db.run(webhook_outbox::oldest_pending).await?;
        let age = oldest.map_or(0, |at| (Utc::now().naive_utc() - at).num_seconds().max(0));
        m.webhooks_oldest_pending.set(age);
    }
    let text = m
        .render()
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        // prometheus-client writes OpenMetrics text (counters typed without `_total`,
        // `# EOF`); Prometheus negotiates and parses it as such.
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}
