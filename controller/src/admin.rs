//! The controller's admin API: readiness, object status, load errors and hosts.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde_json::json;

use crate::standalone::SharedStatus;
use crate::supervisor::Supervisor;
use crate::xds_server::SnapshotCache;

#[derive(Clone)]
pub struct AdminState {
    pub cache: SnapshotCache,
    pub status: SharedStatus,
    /// Standalone: the host processes this controller runs (their readiness is ours).
    /// Kubernetes: none; hosts are pods that connect to any replica, so a replica is
    /// ready once it has translated the cluster.
    pub supervisor: Option<Supervisor>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/hosts", get(hosts))
        .with_state(state)
}

/// 200 once the config is translated and (standalone) every Gateway's host has ACKed
/// its newest snapshot.
async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let translated = s.status.read().unwrap().translation.is_some();
    if translated && (s.supervisor.is_none() || s.cache.all_acked()) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn status(State(s): State<AdminState>) -> impl IntoResponse {
    let board = s.status.read().unwrap();
    let items = board
        .translation
        .as_ref()
        .map(|t| serde_json::to_value(&t.statuses).unwrap_or_default())
        .unwrap_or_else(|| json!([]));
    Json(json!({
        "items": items,
        "errors": board.errors,
        "translations": board.translations,
        "leading": board.leading,
    }))
}

async fn hosts(State(s): State<AdminState>) -> impl IntoResponse {
    Json(json!({
        "processes": match &s.supervisor {
            Some(supervisor) => supervisor.hosts().await,
            None => Vec::new(),
        },
        "streams": s.cache.hosts(),
    }))
}
