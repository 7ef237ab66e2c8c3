//! Outbound event webhooks: `/v1/webhooks/endpoints` (the shop's
//! endpoints and their signing secrets) and `/v1/webhooks/deliveries` (the
//! outbox's attempts). The inbound webhooks are resources of their own:
//! `bounces.rs`, `complaints.rs`, and `unsubscribe.rs` for `mailto:`
//! unsubscribes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::messages::body_bytes;
use super::{ApiError, AppState, Caller};
use crate::events::{self, EventKind};
use crate::keys::ApiScope;
use crate::store::{DeliveryState, EndpointRecord, now_ms};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    url: String,
    /// Event types; omitted or empty: all of them.
    #[serde(default)]
    events: Vec<String>,
}

/// `POST /v1/webhooks/endpoints`: 201 with the endpoint and its signing
/// secret, shown this once.
pub async fn add_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    caller.require_scope(ApiScope::Webhooks)?;
    let req: NewEndpoint = super::error::parse_json(&body_bytes(body)?)?;
    let bad_url = |why: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
            why.to_string(),
        )
        .field("url")
    };
    let url = url::Url::parse(req.url.trim()).map_err(|e| bad_url(&format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(bad_url("the URL must be http(s) with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad_url(
            "credentials in the URL would be stored in clear; verify the signature instead",
        ));
    }
    let mut kinds = Vec::new();
    for e in &req.events {
        let k = EventKind::parse(e).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
                format!(
                    "unknown event {e:?}; events are {}",
                    EventKind::ALL.map(EventKind::as_str).join(", ")
                ),
            )
            .field("events")
        })?;
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    if kinds.is_empty() {
        kinds = EventKind::ALL.to_vec();
    }
    let endpoint = EndpointRecord {
        id: format!("we_{}", uuid::Uuid::now_v7().simple()),
        url: url.to_string(),
        events: format!(
            ",{},",
            kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
        secret: events::new_secret(),
        created_at: now_ms(),
    };
    state
        .store
        .insert_endpoint(&endpoint)
        .await
        .map_err(|e| ApiError::internal("storing an endpoint", &e))?;
    state
        .store
        .audit(
            &format!("api:{}", caller.0.id),
            "webhook.endpoint_added",
            &endpoint.id,
            Some(&endpoint.url),
        )
        .await
        .map_err(|e| ApiError::internal("writing the audit log", &e))?;
    tracing::info!(endpoint = %endpoint.id, key_id = %caller.0.id, "webhook endpoint added");
    let mut v = json!(endpoint);
    v["secret"] = json!(endpoint.secret);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `GET /v1/webhooks/endpoints` (secrets are not shown again).
pub async fn endpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Webhooks)?;
    let list = state
        .store
        .list_endpoints()
        .await
        .map_err(|e| ApiError::internal("listing endpoints", &e))?;
    Ok(Json(json!({ "endpoints": list })))
}

/// `DELETE /v1/webhooks/endpoints/{id}`: 204; pending deliveries to it are
/// given up.
pub async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_scope(ApiScope::Webhooks)?;
    if state
        .store
        .delete_endpoint(&id)
        .await
        .map_err(|e| ApiError::internal("deleting an endpoint", &e))?
    {
        state
            .store
            .audit(
                &format!("api:{}", caller.0.id),
                "webhook.endpoint_deleted",
                &id,
                None,
            )
            .await
            .map_err(|e| ApiError::internal("writing the audit log", &e))?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("endpoint"))
    }
}

/// `GET /v1/webhooks/deliveries?endpoint=&state=&limit=&offset=`: the
/// outbox, newest first, with each delivery's attempts and last answer.
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Webhooks)?;
    let wanted = params
        .get("state")
        .map(|s| s.parse::<DeliveryState>())
        .transpose()
        .map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_state",
                "state must be pending, delivered or failed",
            )
            .field("state")
        })?;
    let (limit, offset) = super::paging(&params)?;
    let rows = state
        .store
        .list_deliveries(
            params.get("endpoint").map(String::as_str),
            wanted,
            limit,
            offset,
        )
        .await
        .map_err(|e| ApiError::internal("listing deliveries", &e))?;
    let depth = state
        .store
        .outbox_depth()
        .await
        .map_err(|e| ApiError::internal("counting the outbox", &e))?;
    Ok(Json(json!({ "pending": depth, "deliveries": rows })))
}
