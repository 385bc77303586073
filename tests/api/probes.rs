//! Kubernetes probes: liveness without dependencies, readiness through the database.

use crate::helpers::{Backend, json_ok, spawn_app};

dual_backend_tests!(health_probes_answer);

async fn health_probes_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        json_ok(app.get("/healthz").await, 200).await["status"],
        "ok"
    );
    assert_eq!(
        json_ok(app.get("/readyz").await, 200).await["status"],
        "ready"
    );
}
