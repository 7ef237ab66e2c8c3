//! `/v1/suppressions`: the addresses and domains mail must not go to.
//!
//! A key manages the entries of the streams it may send on; global entries
//! (which stop every stream) need a key for every stream.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::messages::body_bytes;
use super::{ApiError, AppState, Caller};
use crate::domain::Stream;
use crate::keys::ApiScope;
use crate::suppression::{self, Reason, Scope, Target};

fn scope_param(raw: Option<&str>) -> Result<Scope, ApiError> {
    raw.unwrap_or("global").parse().map_err(|e: String| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_scope", e).field("scope")
    })
}

/// Managing suppressions takes the `suppressions` scope, and the streams
/// the entry stops: one stream, or every stream for a global entry.
fn require_scope(caller: &Caller, scope: Scope) -> Result<(), ApiError> {
    caller.require_scope(ApiScope::Suppressions)?;
    match scope {
        Scope::Stream(s) => caller.require_stream(s),
        Scope::Global => Stream::ALL
            .into_iter()
            .try_for_each(|s| caller.require_stream(s))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_scope",
                    "global suppressions stop every stream: they need a key for every stream",
                )
                .field("scope")
            }),
    }
}

fn target(address: Option<&str>, domain: Option<&str>) -> Result<Target, ApiError> {
    Target::parse(address, domain).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_target",
            e.to_string(),
        )
        .field(if domain.is_some() && address.is_none() {
            "domain"
        } else {
            "address"
        })
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    address: Option<String>,
    domain: Option<String>,
    scope: Option<String>,
    reason: Option<String>,
    /// `30d`, `12h`: the entry lapses after this long.
    expires_in: Option<String>,
}

/// `POST /v1/suppressions`: 201 with the entry (an existing one is updated).
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let req: AddRequest = super::error::parse_json(&body)?;
    let scope = scope_param(req.scope.as_deref())?;
    require_scope(&caller, scope)?;
    let target = target(req.address.as_deref(), req.domain.as_deref())?;
    let reason = match req.reason.as_deref() {
        None => Reason::Manual,
        Some(r) => r.parse::<Reason>().map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reason", e).field("reason")
        })?,
    };
    let expires_at = match req.expires_in.as_deref() {
        None => None,
        Some(d) => Some(
            crate::store::now_ms()
                + humantime::parse_duration(d)
                    .map_err(|e| {
                        ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "invalid_field",
                            format!("expires_in {d:?}: {e}"),
                        )
                        .field("expires_in")
                    })?
                    .as_millis() as i64,
        ),
    };
    let entry = suppression::entry(
        scope,
        &target,
        reason,
        Some(format!("api:{}", caller.0.id)),
        expires_at,
    );
    state
        .suppressions
        .add(&state.store, &entry)
        .await
        .map_err(|e| ApiError::internal("adding a suppression", &e))?;
    state
        .store
        .audit(
            &format!("api:{}", caller.0.id),
            "suppression.added",
            &entry.value,
            Some(&format!("{} {reason}", entry.scope)),
        )
        .await
        .map_err(|e| ApiError::internal("writing the audit log", &e))?;
    tracing::info!(
        scope = entry.scope.as_str(),
        kind = entry.kind.as_str(),
        reason = reason.as_str(),
        "suppression added"
    );
    Ok((StatusCode::CREATED, Json(json!(entry))).into_response())
}

/// `GET /v1/suppressions?scope=&address=|domain=&limit=&offset=`: newest
/// first, only the scopes the key may see.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Suppressions)?;
    let scope = params
        .get("scope")
        .map(|s| scope_param(Some(s)))
        .transpose()?;
    let value = match (params.get("address"), params.get("domain")) {
        (None, None) => None,
        (a, d) => Some(
            target(a.map(String::as_str), d.map(String::as_str))?
                .value()
                .to_string(),
        ),
    };
    let (limit, offset) = super::paging(&params)?;
    let rows = state
        .store
        .list_suppressions(scope, value.as_deref(), limit, offset)
        .await
        .map_err(|e| ApiError::internal("listing suppressions", &e))?;
    let visible: Vec<_> = rows
        .into_iter()
        .filter(|r| match r.scope {
            Scope::Global => true,
            Scope::Stream(s) => caller.may_read(s.as_str()),
        })
        .collect();
    Ok(Json(json!({ "suppressions": visible })))
}

/// `DELETE /v1/suppressions?address=|domain=&scope=`: 204, or 404 if there
/// was no such entry.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let scope = scope_param(params.get("scope").map(String::as_str))?;
    require_scope(&caller, scope)?;
    let target = target(
        params.get("address").map(String::as_str),
        params.get("domain").map(String::as_str),
    )?;
    let removed = state
        .store
        .delete_suppression(scope, &target)
        .await
        .map_err(|e| ApiError::internal("removing a suppression", &e))?;
    if removed {
        state
            .store
            .audit(
                &format!("api:{}", caller.0.id),
                "suppression.removed",
                target.value(),
                Some(scope.as_str()),
            )
            .await
            .map_err(|e| ApiError::internal("writing the audit log", &e))?;
        tracing::info!(
            scope = scope.as_str(),
            kind = target.kind().as_str(),
            "suppression removed"
        );
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("suppression"))
    }
}
