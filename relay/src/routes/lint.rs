//! `POST /v1/lint`: the spam-risk report for a message, without sending it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::messages::body_bytes;
use super::{ApiError, AppState, Caller};
use crate::domain::NewMessage;
use crate::domain::message::SendRequest;
use crate::linting;

/// Takes the same JSON as `POST /v1/messages` and answers 200 with the
/// report. The threshold is the stream's `lint_max_score` when the gate is
/// on, else lint's default (the review/risky boundary).
pub async fn lint(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body_bytes(body)?;
    let req: SendRequest = super::error::parse_json(&body)?;
    let mut msg = NewMessage::try_from(req)?;
    caller.require_stream(msg.stream)?;
    // Lint what would be sent: marketing mail gets its list headers.
    state
        .accept
        .add_list_headers(&mut msg, &crate::domain::MessageId::new());
    let stream = msg.stream;
    let gate = state.settings.streams.get(stream).lint_max_score;
    let options = lint::Options {
        stream: linting::lint_stream(stream),
        threshold: gate.unwrap_or(lint::Options::default().threshold),
    };
    let report = tokio::task::spawn_blocking(move || {
        linting::email_of(&msg).map(|email| lint::lint(&email, &options))
    })
    .await
    .map_err(|e| ApiError::internal("lint task", &e))?
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_message",
            e.to_string(),
        )
    })?;
    let mut body = serde_json::to_value(&report).expect("reports serialize");
    // Whether sending this message would be refused by the stream's gate.
    body["gate"] = json!({
        "enabled": gate.is_some(),
        "would_refuse": gate.is_some() && !report.passed,
    });
    Ok(Json(body))
}
