//! `GET /v1/destinations` and the hand-set suspend / resume of a provider
//! on a stream (`POST /v1/destinations/{stream}/{provider}/suspend|resume`).
//! All need the `admin` scope; changes are audited.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller};
use crate::domain::Stream;
use crate::keys::ApiScope;

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Admin)?;
    let tables: Vec<_> = state
        .shapers
        .iter()
        .map(|s| {
            let stream = s.stream();
            (stream, s.table().clone(), state.settings.shaped(stream))
        })
        .collect();
    let overview = crate::destinations::overview(
        &state.store,
        &tables,
        &state.shapers,
        crate::node::heartbeat_interval(state.settings.shortest_lease()),
    )
    .await
    .map_err(|e| ApiError::internal("reading destinations", &e))?;
    Ok(Json(json!(overview)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspendBody {
    /// How long, e.g. `"30m"`.
    duration: String,
    reason: String,
}

/// The stream and provider named in the path, checked against the
/// stream's shaping table.
fn target(state: &AppState, stream: &str, provider: &str) -> Result<Stream, ApiError> {
    let stream: Stream = stream.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_stream",
            format!("no stream {stream:?}: transactional or marketing"),
        )
    })?;
    let known = state
        .shapers
        .iter()
        .find(|s| s.stream() == stream)
        .is_some_and(|s| s.table().get(provider).is_some());
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            format!("no provider {provider:?} in the {stream} stream's shaping table"),
        ));
    }
    Ok(stream)
}

pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    Path((stream, provider)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Admin)?;
    let stream = target(&state, &stream, &provider)?;
    // A suspension would be stored, audited — and obeyed by nothing.
    if !state.settings.shaped(stream) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_shaped",
            format!(
                "the {stream} stream is not sent on the mx route, so its providers are not shaped \
                 and a suspension would not hold anything back"
            ),
        ));
    }
    let body: SuspendBody = super::error::parse_json(&super::messages::body_bytes(body)?)?;
    let duration: Duration = humantime::parse_duration(&body.duration)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(30 * 24 * 3600))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!(
                    "duration {:?}: a duration up to 30d, e.g. \"30m\"",
                    body.duration
                ),
            )
            .field("duration")
        })?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "reason: say why, in 1 to 500 characters",
        )
        .field("reason"));
    }
    let actor = format!("api:{}", caller.0.id);
    let s = crate::destinations::suspend(&state.store, stream, &provider, duration, reason, &actor)
        .await
        .map_err(|e| ApiError::internal("suspending a provider", &e))?;
    tracing::warn!(%stream, provider, %actor, reason, "provider suspended by hand");
    Ok(Json(json!({
        "stream": stream,
        "provider": provider,
        "suspended_until": s.suspended_until.map(crate::store::rfc3339),
        "reason": reason,
        "set_by": actor,
    })))
}

pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path((stream, provider)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Admin)?;
    let stream = target(&state, &stream, &provider)?;
    let actor = format!("api:{}", caller.0.id);
    let (had, due) = crate::destinations::resume(&state.store, stream, &provider, &actor)
        .await
        .map_err(|e| ApiError::internal("resuming a provider", &e))?;
    if let Some(s) = state.shapers.iter().find(|s| s.stream() == stream) {
        s.forget_state(&provider);
    }
    tracing::info!(%stream, provider, %actor, due, "provider resumed by hand");
    Ok(Json(json!({
        "stream": stream,
        "provider": provider,
        "was_limited": had,
        "recipients_due_now": due,
    })))
}
