//! Bounces: `POST /v1/webhooks/bounces` takes asynchronous bounces, fed
//! in by the MTA or mailbox that receives mail at the return-path domain;
//! `GET /v1/bounces/summary` counts what was recorded.
//!
//! What a bounce does to its address is the one bounce policy
//! (list-hygiene's `bounce::policy`, applied by [`crate::hygiene`]), the
//! same as for the relay's own 5xx replies. Every bounce is recorded.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::auth::InboundMail;
use super::{ApiError, AppState, Caller};
use list_hygiene::bounce::{self, Failure, Kind};

use crate::events::{self, Event, EventKind};
use crate::keys::ApiScope;
use crate::store::{BounceRecord, now_ms};
use crate::suppression::Target;

/// Takes the raw bounce message (RFC 5322) as the body; answers what was
/// understood and done for each failed recipient.
pub async fn bounces(
    State(state): State<AppState>,
    InboundMail(body): InboundMail,
) -> Result<Json<Value>, ApiError> {
    let parsed = tokio::task::spawn_blocking(move || bounce::parse(&body))
        .await
        .map_err(|e| ApiError::internal("bounce parse task", &e))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_bounce",
                format!("the body is not a message: {e}"),
            )
        })?;
    let mut results = Vec::new();
    let mut events = Vec::new();
    if matches!(parsed.kind, Kind::Dsn | Kind::NonStandard) {
        let now = now_ms();
        let hygiene = state.hygiene();
        // The stream, when the VERP path names one of our messages.
        let stream = match parsed
            .verp
            .as_ref()
            .and_then(|v| crate::domain::MessageId::parse(&v.message_id))
        {
            Some(id) => state
                .store
                .get_message(&id)
                .await
                .map_err(|e| ApiError::internal("looking up a bounced message", &e))?
                .map(|m| m.stream),
            None => None,
        };
        // What a suppression names as its cause: the message, as far as
        // the bounce tells.
        let source = parsed
            .verp
            .as_ref()
            .map(|v| format!("bounce:{}", v.message_id))
            .or_else(|| {
                parsed
                    .original_message_id
                    .as_ref()
                    .map(|id| format!("bounce:{id}"))
            })
            .unwrap_or_else(|| "bounce".into());
        for r in &parsed.recipients {
            let Ok(target) = Target::parse(Some(&r.address), None) else {
                results.push(json!({"address": r.address, "class": r.class, "outcome": "ignored: not an address"}));
                continue;
            };
            let record = BounceRecord {
                id: uuid::Uuid::now_v7().to_string(),
                received_at: now,
                address: target.value().to_string(),
                class: r.class.as_str().to_string(),
                action: r.action.clone(),
                status: r.status.clone(),
                diagnostic: r.diagnostic.clone(),
                original_message_id: parsed.original_message_id.clone(),
                relay_message_id: parsed.verp.as_ref().map(|v| v.message_id.clone()),
                source: "webhook".into(),
                stream: stream.clone(),
                domain: Some(target.domain().to_string()),
            };
            let failure = Failure {
                class: r.class,
                delayed: r.action == "delayed",
            };
            let suppress = hygiene
                .apply_bounce(&record, &target, failure, source.clone())
                .await
                .map_err(|e| ApiError::internal("recording a bounce", &e))?;
            if !failure.delayed {
                events.push(Event::new(
                    EventKind::Bounced,
                    json!({
                        "message_id": record.relay_message_id,
                        "stream": stream,
                        "address": target.value(),
                        "class": r.class,
                        "reason": r.reason,
                        "status": r.status,
                        "diagnostic": r.diagnostic,
                        "source": "webhook",
                        "suppressed": suppress.is_some(),
                    }),
                ));
            }
            tracing::info!(
                class = r.class.as_str(),
                suppressed = suppress.is_some(),
                "bounce recorded"
            );
            if !failure.delayed {
                let stream = match stream.as_deref() {
                    Some("transactional") => crate::metrics::StreamLabel::transactional,
                    Some("marketing") => crate::metrics::StreamLabel::marketing,
                    _ => crate::metrics::StreamLabel::unknown,
                };
                state
                    .metrics
                    .bounced
                    .get_or_create(&crate::metrics::Bounce {
                        stream,
                        domain: crate::metrics::domain_group(
                            record.domain.as_deref().unwrap_or_default(),
                        ),
                        class: r.class.as_str(),
                    })
                    .inc();
            }
            results.push(json!({
                "address": target.value(),
                "action": r.action,
                "status": r.status,
                "class": r.class,
                "reason": r.reason,
                "outcome": if suppress.is_some() { "suppressed" } else { "recorded" },
            }));
        }
    }
    events::emit(&state.store, &state.wake, events).await;
    Ok(Json(json!({
        "kind": parsed.kind,
        "original_message_id": parsed.original_message_id,
        "verp": parsed.verp,
        "recipients": results,
    })))
}

/// `GET /v1/bounces/summary?since=7d`: bounces counted by stream,
/// destination domain and class — where policy blocks and full mailboxes
/// (which suppress nothing) pile up.
pub async fn bounce_summary(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Suppressions)?;
    let since = match params.get("since") {
        None => std::time::Duration::from_secs(7 * 24 * 3600),
        Some(s) => humantime::parse_duration(s).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("since must be a duration like 7d or 24h: {e}"),
            )
            .field("since")
        })?,
    };
    let (limit, _) = super::paging(&params)?;
    let rows = state
        .store
        .bounce_counts(now_ms() - since.as_millis() as i64, limit)
        .await
        .map_err(|e| ApiError::internal("counting bounces", &e))?;
    Ok(Json(
        json!({ "since_ms": since.as_millis() as i64, "counts": rows }),
    ))
}
