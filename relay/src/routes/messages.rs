//! `/v1/messages`: send, batch send, status and raw bytes.

use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tracing::Instrument as _;

use super::{ApiError, AppState, Caller};
use crate::accept::{AcceptError, Submitted, Submitter};
use crate::domain::message::SendRequest;
use crate::domain::{MessageId, NewMessage, RecipientState};
use crate::store::IdempotencyClaim;

/// Most messages in one batch call.
pub const MAX_BATCH: usize = 500;

pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body exceeds the size limit",
            )
        } else {
            ApiError::new(rej.status(), "bad_request", rej.body_text())
        }
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
        .field("Idempotency-Key")
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

impl From<AcceptError> for ApiError {
    fn from(e: AcceptError) -> Self {
        let message = e.to_string();
        match e {
            AcceptError::ForbiddenStream(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden_stream", message).field("stream")
            }
            AcceptError::RateLimited { retry_after, .. } => {
                ApiError::too_many("rate_limited", message, retry_after)
            }
            AcceptError::NoDkimKey { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_dkim_key", message)
                    .field("from")
            }
            // Only a message that arrives whole (SMTP) names its stream in
            // a header; the JSON API has a field, checked when parsed.
            AcceptError::Invalid(_) | AcceptError::UnknownStream(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_message", message)
            }
            AcceptError::LintFailed { report, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "lint_failed", message).detail(
                    "report",
                    serde_json::to_value(&*report).expect("reports serialize"),
                )
            }
            AcceptError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            AcceptError::Internal { context, source } => ApiError::internal(context, &*source),
        }
    }
}

/// `POST /v1/messages`: 202 once the message is committed.
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let idem = idempotency_key(&headers)?.map(|key| IdempotencyClaim {
        key,
        request_hash: hex::encode(Sha256::digest(&body)),
    });
    let req: SendRequest = super::error::parse_json(&body)?;
    let msg = NewMessage::try_from(req)?;
    let prepared = state
        .accept
        .prepare(Submitter::Key(&caller.0), msg, idem)
        .await?;
    let span = tracing::info_span!("accept", message_id = %prepared.receipt.id, stream = %prepared.receipt.stream);
    match state
        .accept
        .submit(prepared)
        .instrument(span.clone())
        .await?
    {
        Submitted::Accepted(receipt) => {
            span.in_scope(|| tracing::info!(recipients = receipt.recipients.len(), "accepted"));
            Ok((StatusCode::ACCEPTED, Json(receipt)).into_response())
        }
        Submitted::Replayed(saved) => {
            let mut resp = (
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, "application/json")],
                saved,
            )
                .into_response();
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(resp)
        }
        Submitted::KeyReused => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used before with a different request body",
        )
        .field("Idempotency-Key")),
    }
}

/// `POST /v1/messages/batch`: a JSON array of up to 500 messages. Each item
/// gets its own result; one bad item doesn't sink the others.
pub async fn send_batch(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let items: Vec<Value> = super::error::parse_json(&body)?;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_batch",
            format!(
                "a batch holds 1 to {MAX_BATCH} messages; got {}",
                items.len()
            ),
        ));
    }
    let mut results: Vec<Value> = vec![Value::Null; items.len()];
    let mut pending = tokio::task::JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let req = match serde_path_to_error::deserialize::<_, SendRequest>(item) {
            Ok(r) => r,
            Err(e) => {
                let field = e.path().to_string();
                let err = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    e.into_inner().to_string(),
                )
                .field(field);
                results[i] = item_error(i, err);
                continue;
            }
        };
        let (state, caller) = (state.clone(), caller.clone());
        pending.spawn(async move {
            let r = async {
                let msg = NewMessage::try_from(req)?;
                let receipt = state
                    .accept
                    .accept_once(Submitter::Key(&caller.0), msg)
                    .await?;
                Ok::<_, ApiError>(serde_json::to_value(receipt).expect("receipts serialize"))
            }
            .await;
            (i, r)
        });
    }
    let mut accepted = 0usize;
    while let Some(joined) = pending.join_next().await {
        let (i, r) = joined.map_err(|e| ApiError::internal("batch item task", &e))?;
        results[i] = match r {
            Ok(mut v) => {
                accepted += 1;
                v["index"] = json!(i);
                v["status"] = json!(202);
                v
            }
            Err(e) => item_error(i, e),
        };
    }
    tracing::info!(items = results.len(), accepted, "batch accepted");
    Ok((
        StatusCode::OK,
        Json(json!({ "accepted": accepted, "results": results })),
    )
        .into_response())
}

fn item_error(i: usize, e: ApiError) -> Value {
    let mut v = e.to_json();
    v["index"] = json!(i);
    v["status"] = json!(e.status.as_u16());
    v
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

/// `GET /v1/messages/{id}`: status and per-recipient history. A message on
/// a stream the key can't use is reported as not found.
pub async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = MessageId::parse(&id).ok_or_else(|| ApiError::not_found("message"))?;
    let m = state
        .store
        .get_message(&id)
        .await
        .map_err(|e| ApiError::internal("reading message", &e))?
        .filter(|m| caller.may_read(&m.stream))
        .ok_or_else(|| ApiError::not_found("message"))?;
    let recipients = state
        .store
        .get_recipients(&id)
        .await
        .map_err(|e| ApiError::internal("reading recipients", &e))?;
    let attempts = state
        .store
        .get_attempts(&id)
        .await
        .map_err(|e| ApiError::internal("reading attempts", &e))?;
    let recipients: Vec<Value> = recipients
        .iter()
        .map(|r| {
            let history: Vec<Value> = attempts
                .iter()
                .filter(|a| a.idx == r.idx)
                .map(|a| {
                    json!({
                        "attempt": a.attempt,
                        "started_at": rfc3339(a.started_at),
                        "finished_at": rfc3339(a.finished_at),
                        "outcome": a.outcome,
                        "smtp_code": a.smtp_code,
                        "reply": a.reply,
                        "host": a.host,
                    })
                })
                .collect();
            json!({
                "address": r.address,
                "kind": r.kind,
                "status": r.state,
                "attempts": r.attempts,
                "next_attempt_at": matches!(r.state, RecipientState::Deferred | RecipientState::Queued).then(|| r.next_attempt_at.map(rfc3339)).flatten(),
                "last_reply": r.last_reply,
                "updated_at": rfc3339(r.updated_at),
                "history": history,
            })
        })
        .collect();
    Ok(Json(json!({
        "id": m.id,
        "stream": m.stream,
        "from": m.sender,
        "subject": m.subject,
        "message_id": m.message_id_header,
        "dkim": m.dkim,
        "tags": serde_json::from_str::<Value>(&m.tags).unwrap_or(Value::Null),
        "metadata": serde_json::from_str::<Value>(&m.metadata).unwrap_or(Value::Null),
        "created_at": rfc3339(m.created_at),
        "status": summary(&recipients),
        "recipients": recipients,
    })))
}

/// One word for the whole message: the recipients' common final state when
/// they share one, `in_progress` while any is pending, else `partially_delivered`.
fn summary(recipients: &[Value]) -> String {
    let states: Vec<&str> = recipients
        .iter()
        .filter_map(|r| r["status"].as_str())
        .collect();
    let pending = |s: &&str| matches!(*s, "queued" | "deferred" | "inflight");
    match states.first() {
        Some(first)
            if states.iter().all(|s| s == first) && (*first == "queued" || !pending(first)) =>
        {
            (*first).to_owned()
        }
        _ if states.iter().any(pending) => "in_progress".to_owned(),
        _ => "partially_delivered".to_owned(),
    }
}

/// `GET /v1/messages/{id}/raw`: the final signed bytes, as delivered.
pub async fn get_raw(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = MessageId::parse(&id).ok_or_else(|| ApiError::not_found("message"))?;
    let (_, raw) = state
        .store
        .get_raw(&id)
        .await
        .map_err(|e| ApiError::internal("reading message", &e))?
        .filter(|(stream, _)| caller.may_read(stream))
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(([(header::CONTENT_TYPE, "message/rfc822")], raw).into_response())
}
