//! The admin server (axum): readiness, the applied config, and Prometheus metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::config::ConfigDump;
use crate::gateway::Gateway;

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/config_dump", get(config_dump))
        .route("/metrics", get(metrics))
        .with_state(gateway)
}

pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) -> std::io::Result<()> {
    axum::serve(listener, router(gateway)).await
}

/// 200 once a snapshot has been applied, 503 before.
async fn readyz(State(gateway): State<Arc<Gateway>>) -> (StatusCode, &'static str) {
    if gateway.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no config applied yet\n")
    }
}

#[derive(serde::Serialize)]
struct Dump<'a> {
    version: &'a str,
    #[serde(flatten)]
    resources: &'a ConfigDump,
}

/// The applied snapshot: its version and the decoded resources it was built from.
async fn config_dump(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    let snapshot = gateway.snapshot();
    let body = serde_json::to_value(Dump {
        version: &snapshot.version,
        resources: &snapshot.dump,
    });
    match body {
        Ok(value) => Json(value).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gateway.metrics().encode(),
    )
}
