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
use crate::compose::{self, Rendered};
use crate::domain::message::SendRequest;
use crate::domain::{MessageId, NewMessage, Stream};
use crate::events::{self, Event, EventKind};
use crate::linting;
use crate::queue::EnqueueError;
use crate::store::{EnqueueOutcome, IdempotencyClaim, PreparedMessage, PreparedRecipient, now_ms};

/// The key id recorded for mail the relay sends itself.
const SYSTEM_KEY_ID: &str = "system";

/// Messages up to this size (bodies and attachments) render on the request's
/// own thread.
const INLINE_RENDER_LIMIT: usize = 64 * 1024;

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

/// Validates, scopes, renders and signs one request: everything up to the commit.
async fn prepare(
    state: &AppState,
    caller: &Caller,
    req: SendRequest,
    idempotency: Option<IdempotencyClaim>,
) -> Result<(PreparedMessage, Value), ApiError> {
    let mut msg = NewMessage::try_from(req)?;
    caller.require_stream(msg.stream)?;
    // The relay's own mail (confirmations) is not the caller's budget.
    if caller.0.id != SYSTEM_KEY_ID {
        let limiter = &state.limits.messages[match msg.stream {
            Stream::Transactional => 0,
            Stream::Marketing => 1,
        }];
        if let Err(wait) = limiter.check(&caller.0.id) {
            state
                .metrics
                .rate_limited
                .get_or_create(&crate::metrics::Reason { reason: "messages" })
                .inc();
            return Err(ApiError::too_many(
                "rate_limited",
                format!(
                    "this API key is over its {} stream's messages_per_hour",
                    msg.stream
                ),
                wait,
            ));
        }
    }
    let from_domain = msg.from.address().domain();
    let signer = state.signers.for_domain(from_domain.as_str(), msg.stream);
    if signer.is_none() && !state.settings.allow_unsigned {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_dkim_key",
            format!("no DKIM key is configured for {from_domain} on the {} stream; add a [[dkim]] entry or set allow_unsigned", msg.stream),
        )
        .field("from"));
    }
    let id = MessageId::new();
    add_list_headers(state, &mut msg, &id);
    // An RSA signature (~1 ms) or a big message would stall an async worker
    // thread: those go to the blocking pool. A small Ed25519-signed message
    // renders in tens of microseconds, less than the hand-off to another
    // thread would cost.
    let heavy =
        signer.as_ref().is_some_and(|s| s.is_rsa()) || msg.approx_size() > INLINE_RENDER_LIMIT;
    let rendered = if heavy {
        let msg = msg.clone();
        tokio::task::spawn_blocking(move || compose::render(&msg, &id, signer.as_deref()))
            .await
            .map_err(|e| ApiError::internal("render task", &e))?
    } else {
        compose::render(&msg, &id, signer.as_deref())
    }
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_message",
            e.to_string(),
        )
    })?;
    let rendered = lint_gate(state, msg.stream, rendered).await?;
    let targets: Vec<(String, String)> = msg
        .recipients()
        .map(|(_, a)| (a.to_string().to_lowercase(), a.domain().to_string()))
        .collect();
    let suppressed = state
        .suppressions
        .check(&state.store, msg.stream, &targets)
        .await
        .map_err(|e| ApiError::internal("checking the suppression list", &e))?;
    let recipients: Vec<PreparedRecipient> = msg
        .recipients()
        .zip(suppressed)
        .map(|((kind, a), suppressed)| PreparedRecipient {
            kind,
            address: a.to_string(),
            domain: a.domain().to_string(),
            suppressed,
        })
        .collect();
    let response = json!({
        "id": id.to_string(),
        "stream": msg.stream,
        "message_id": rendered.message_id_header,
        "recipients": recipients.iter().map(|r| match &r.suppressed {
            None => json!({"address": r.address, "status": "queued"}),
            Some(why) => json!({"address": r.address, "status": "suppressed", "reason": why}),
        }).collect::<Vec<_>>(),
    });
    let prepared = PreparedMessage {
        id,
        stream: msg.stream,
        api_key_id: caller.0.id.clone(),
        sender: msg.from.address().to_string(),
        subject: msg.subject.clone(),
        message_id_header: rendered.message_id_header,
        dkim: rendered.dkim,
        tags: serde_json::to_string(&msg.tags).expect("strings serialize"),
        metadata: serde_json::to_string(&msg.metadata).expect("strings serialize"),
        raw: rendered.raw,
        recipients,
        response: response.to_string(),
        idempotency,
        created_at: now_ms(),
    };
    Ok((prepared, response))
}

/// Adds the one-click unsubscribe and list headers to marketing mail, and
/// the signed recipient reference to every single-recipient message (see
/// [`crate::unsubscribe`]).
pub(super) fn add_list_headers(state: &AppState, msg: &mut NewMessage, id: &MessageId) {
    let return_path = &state.settings.streams.get(msg.stream).return_path;
    let domain = if return_path.is_empty() {
        msg.from.address().domain().to_string()
    } else {
        return_path.clone()
    };
    crate::unsubscribe::add_list_headers(msg, |recipients| {
        let single = recipients == 1;
        let token = state.links.token(
            id,
            if single {
                0
            } else {
                crate::unsubscribe::WHOLE_MESSAGE
            },
        );
        crate::unsubscribe::ListLinks {
            https: single.then(|| state.links.url(&token)),
            mailto: format!(
                "mailto:{}{token}@{domain}?subject=unsubscribe",
                crate::unsubscribe::MAILTO_PREFIX
            ),
        }
    });
    crate::unsubscribe::add_reference_header(msg, || state.links.reference(id, 0));
}

/// Refuses a message that scores above its stream's `lint_max_score`,
/// answering 422 with the report so the sender sees what to fix.
async fn lint_gate(
    state: &AppState,
    stream: Stream,
    mut rendered: Rendered,
) -> Result<Rendered, ApiError> {
    let Some(max) = state.settings.streams.get(stream).lint_max_score else {
        return Ok(rendered);
    };
    // Parsing HTML is CPU work of a millisecond or more: off the async threads.
    let raw = std::mem::take(&mut rendered.raw);
    let (raw, report) = tokio::task::spawn_blocking(move || {
        let report = linting::lint_rendered(&raw, stream, max);
        (raw, report)
    })
    .await
    .map_err(|e| ApiError::internal("lint task", &e))?;
    rendered.raw = raw;
    let report = report.map_err(|e| ApiError::internal("linting a rendered message", &e))?;
    if report.passed {
        return Ok(rendered);
    }
    tracing::info!(%stream, score = report.score, max, "refused by the lint gate");
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "lint_failed",
        format!(
            "the message scores {:.1} for spam risk, above the {stream} stream's limit of {max:.1}; see the report",
            report.score
        ),
    )
    .detail("report", serde_json::to_value(&report).expect("reports serialize")))
}

/// Counts an accepted message's recipients, and sends a `suppressed` event
/// for each one the suppression list held back.
async fn after_accept(state: &AppState, response: &Value) {
    let stream = response["stream"]
        .as_str()
        .and_then(|s| s.parse::<Stream>().ok())
        .unwrap_or(Stream::Transactional);
    for r in response["recipients"].as_array().into_iter().flatten() {
        let address = r["address"].as_str().unwrap_or_default();
        let labels = crate::metrics::StreamDomain {
            stream: stream.into(),
            domain: crate::metrics::domain_group(address.rsplit('@').next().unwrap_or_default()),
        };
        let family = if r["status"] == "suppressed" {
            &state.metrics.suppressed
        } else {
            &state.metrics.accepted
        };
        family.get_or_create(&labels).inc();
    }
    let events: Vec<Event> = response["recipients"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["status"] == "suppressed")
        .map(|r| {
            Event::new(
                EventKind::Suppressed,
                json!({
                    "message_id": response["id"],
                    "stream": response["stream"],
                    "address": r["address"],
                    "reason": r["reason"],
                }),
            )
        })
        .collect();
    if !events.is_empty() {
        events::emit(&state.store, &state.wake, events).await;
    }
}

/// Sends mail the relay writes itself (double opt-in confirmations) on
/// `stream`, through the same checks, signing, suppression list and queue
/// as an API request. Returns the message id.
pub(super) async fn send_system(
    state: &AppState,
    stream: Stream,
    req: SendRequest,
) -> Result<MessageId, ApiError> {
    let caller = Caller(crate::store::ApiKeyRecord {
        id: SYSTEM_KEY_ID.into(),
        name: "mailroom".into(),
        streams: vec![stream],
        scopes: Vec::new(),
        created_at: 0,
        revoked_at: None,
        expires_at: None,
        last_used_at: None,
    });
    let (prepared, response) = prepare(state, &caller, req, None).await?;
    let id = prepared.id;
    state
        .enqueuer
        .enqueue(prepared)
        .await
        .map_err(enqueue_failed)?;
    after_accept(state, &response).await;
    Ok(id)
}

fn enqueue_failed(e: EnqueueError) -> ApiError {
    match e {
        EnqueueError::ShuttingDown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the relay is shutting down; retry",
        ),
        EnqueueError::Store(e) => ApiError::internal("storing message", &*e),
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
    let (prepared, response) = prepare(&state, &caller, req, idem).await?;
    let span = tracing::info_span!("accept", message_id = %prepared.id, stream = %prepared.stream);
    let outcome = state
        .enqueuer
        .enqueue(prepared)
        .instrument(span.clone())
        .await
        .map_err(enqueue_failed)?;
    match outcome {
        EnqueueOutcome::Accepted => {
            after_accept(&state, &response).await;
            span.in_scope(|| {
                tracing::info!(
                    recipients = response["recipients"].as_array().map_or(0, Vec::len),
                    "accepted"
                )
            });
            Ok((StatusCode::ACCEPTED, Json(response)).into_response())
        }
        EnqueueOutcome::Replayed(saved) => {
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
        EnqueueOutcome::KeyReused => Err(ApiError::new(
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
                let (prepared, response) = prepare(&state, &caller, req, None).await?;
                state
                    .enqueuer
                    .enqueue(prepared)
                    .await
                    .map_err(enqueue_failed)?;
                after_accept(&state, &response).await;
                Ok::<_, ApiError>(response)
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
                "next_attempt_at": (r.state == "deferred" || r.state == "queued").then(|| r.next_attempt_at.map(rfc3339)).flatten(),
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
