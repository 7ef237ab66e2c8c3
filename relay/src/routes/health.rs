//! `/healthz`, `/readyz` (unauthenticated, cheap) and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState, Caller};
use crate::keys::ApiScope;

/// The process is up and answering.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The relay can accept and deliver mail: the store answers, its schema is
/// the one this binary expects, and every stream not paused has a worker.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let mut problems = Vec::new();
    match state.store.migrations_current().await {
        Ok(true) => {}
        Ok(false) => problems.push("database schema is not this version's (migrations pending)"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store unreachable");
            problems.push("store unreachable");
        }
    }
    let mut workers = serde_json::Map::new();
    for (stream, running) in state.workers.iter() {
        let paused = state.settings.streams.get(*stream).paused;
        let status = match (paused, running.load(std::sync::atomic::Ordering::Relaxed)) {
            (true, _) => "paused",
            (false, true) => "running",
            (false, false) => {
                problems.push("a stream's worker is not running");
                "stopped"
            }
        };
        workers.insert(stream.as_str().to_string(), json!(status));
    }
    if problems.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "workers": workers})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reasons": problems, "workers": workers})),
        )
    }
}

/// `GET /metrics`: Prometheus/OpenMetrics text; needs the `metrics` scope.
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require_scope(ApiScope::Metrics)?;
    let text = state
        .metrics
        .render(&state.store)
        .await
        .map_err(|e| ApiError::internal("reading queue metrics", &e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
