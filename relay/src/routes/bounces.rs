//! Bounces: `POST /v1/webhooks/bounces` takes asynchronous bounces, fed
//! in by the MTA or mailbox that receives mail at the return-path domain;
//! `GET /v1/bounces/summary` counts what was recorded.
//!
//! A bounce acts only on a recipient mailroom sent to, traced as
//! [`crate::hygiene::trace`] describes: by the VERP path's verified tag (the
//! stored address, never one read from the bounce), else by Message-ID and
//! address. What it does to that address is the one bounce policy
//! (list-hygiene's `bounce::policy`, applied by [`crate::hygiene`]), the same
//! as for the relay's own 5xx replies. Every bounce not refused is recorded.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::auth::InboundMail;
use super::{ApiError, AppState, Caller};
use list_hygiene::bounce::{self, Failure, Kind, Recipient};
use list_hygiene::verp::Check;

use crate::domain::message::MAX_RECIPIENTS;
use crate::events::{self, Event, EventKind};
use crate::hygiene::trace::{Proof, Refusal};
use crate::keys::ApiScope;
use crate::store::{Attribution, BounceRecord, SentRecipient, now_ms};
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
    let tracer = state.tracer();
    let checked = parsed.verp.as_ref().map(|v| (v, tracer.check(v)));
    let verp = checked.map(|(v, check)| {
        json!({
            "message_id": v.message_id,
            "recipient_index": v.recipient_index,
            "check": match check {
                Check::Verified { .. } => "verified",
                Check::Untagged => "untagged",
                Check::Forged => "forged",
                Check::Stale => "stale",
            },
        })
    });
    let mut answer = json!({
        "kind": parsed.kind,
        "original_message_id": parsed.original_message_id,
        "verp": verp,
        "recipients": [],
    });
    let nothing_failed = parsed.recipients.is_empty() && parsed.unnamed.is_none();
    if !matches!(parsed.kind, Kind::Dsn | Kind::NonStandard) || nothing_failed {
        return Ok(Json(answer));
    }
    let proof = match checked {
        Some((v, check)) => tracer.checked(v, check).await,
        None => Ok(Proof::Unproven(None)),
    }
    .map_err(|e| ApiError::internal("tracing a bounce", &e))?;
    let mut results = Vec::new();
    let mut events = Vec::new();
    match proof {
        Proof::Refused(refusal) => {
            refused(&state, refusal);
            answer["refused"] = json!(refusal.as_str());
            for r in &parsed.recipients {
                results.push(json!({
                    "address": r.address, "class": r.class, "reason": r.reason,
                    "outcome": "refused", "why": refusal.to_string(),
                }));
            }
        }
        Proof::Verified(sent) if parsed.recipients.is_empty() => {
            // A bounce in a form no reader names recipients in: the
            // verified path names the one this copy went to, and the
            // bounce's words say why.
            let u = parsed.unnamed.as_ref().expect("checked above");
            let r = Recipient {
                address: sent.address.clone(),
                action: "failed".into(),
                status: Some(u.status.clone()),
                diagnostic: u.diagnostic.clone(),
                reason: u.reason,
                class: u.class,
            };
            let traced = (sent, Attribution::Verp);
            results.push(apply(&state, &parsed, &r, Some(traced), &mut events).await?);
        }
        Proof::Verified(sent) => {
            // The bounce is about the one address this copy went to; the
            // recipient line that names it, else the first, says why.
            let named = parsed
                .recipients
                .iter()
                .position(|r| r.address.eq_ignore_ascii_case(&sent.address))
                .unwrap_or(0);
            for (i, r) in parsed.recipients.iter().enumerate() {
                if i == named {
                    let traced = (sent.clone(), Attribution::Verp);
                    results.push(apply(&state, &parsed, r, Some(traced), &mut events).await?);
                } else {
                    results.push(json!({
                        "address": r.address, "class": r.class, "reason": r.reason,
                        "outcome": "ignored",
                        "why": "not the recipient the verified VERP path names",
                    }));
                }
            }
        }
        Proof::Unproven(hint) => {
            // One message of ours has at most MAX_RECIPIENTS; past that a
            // bounce can't be all ours, and each line costs lookups.
            let (ours, rest) = parsed
                .recipients
                .split_at(parsed.recipients.len().min(MAX_RECIPIENTS));
            for r in ours {
                let sent = tracer
                    .by_message(
                        hint.as_ref(),
                        parsed.original_message_id.as_deref(),
                        &r.address,
                    )
                    .await
                    .map_err(|e| ApiError::internal("tracing a bounce", &e))?;
                let traced = sent.map(|s| (s, Attribution::MessageId));
                results.push(apply(&state, &parsed, r, traced, &mut events).await?);
            }
            for r in rest {
                results.push(json!({
                    "address": r.address, "class": r.class, "reason": r.reason,
                    "outcome": "ignored",
                    "why": format!("more recipients than one message can have ({MAX_RECIPIENTS})"),
                }));
            }
        }
    }
    events::emit(&state.store, &state.wake, events).await;
    answer["recipients"] = Value::Array(results);
    Ok(Json(answer))
}

/// Counts and logs a refused bounce.
fn refused(state: &AppState, refusal: Refusal) {
    tracing::warn!(refused = refusal.as_str(), "bounce refused: {refusal}");
    state.metrics.return_refused("bounce", refusal.as_str());
}

/// Records bounce line `r` against the recipient it was traced to (or as
/// unattributed) and applies the bounce policy; the answer's line for it.
async fn apply(
    state: &AppState,
    parsed: &bounce::Bounce,
    r: &Recipient,
    traced: Option<(SentRecipient, Attribution)>,
    events: &mut Vec<Event>,
) -> Result<Value, ApiError> {
    let attribution = traced.as_ref().map_or(Attribution::Unattributed, |t| t.1);
    let sent = traced.map(|t| t.0);
    let address = sent.as_ref().map_or(r.address.as_str(), |s| &s.address);
    let Ok(target) = Target::parse(Some(address), None) else {
        return Ok(
            json!({"address": address, "class": r.class, "outcome": "ignored", "why": "not an address"}),
        );
    };
    if let Some(sent) = &sent {
        let replayed = state
            .store
            .bounce_recorded(&sent.message_id.to_string(), sent.idx, &r.action)
            .await
            .map_err(|e| ApiError::internal("looking for an earlier bounce", &e))?;
        if replayed {
            refused(state, Refusal::Replayed);
            return Ok(json!({
                "address": target.value(), "class": r.class, "reason": r.reason,
                "attribution": attribution, "outcome": "refused",
                "why": Refusal::Replayed.to_string(),
            }));
        }
    } else {
        state.metrics.return_unattributed("bounce");
    }
    let stream = sent.as_ref().map(|s| s.stream);
    let record = BounceRecord {
        id: uuid::Uuid::now_v7().to_string(),
        received_at: now_ms(),
        address: target.value().to_string(),
        class: r.class.as_str().to_string(),
        action: r.action.clone(),
        status: r.status.clone(),
        diagnostic: r.diagnostic.clone(),
        original_message_id: parsed.original_message_id.clone(),
        relay_message_id: sent.as_ref().map(|s| s.message_id.to_string()),
        source: "webhook".into(),
        stream: stream.map(|s| s.as_str().to_string()),
        domain: Some(target.domain().to_string()),
        recipient_idx: sent.as_ref().map(|s| s.idx),
        reason: r.reason.map(|r| r.as_str().to_string()),
        attribution,
    };
    // What a suppression names as its cause: the message.
    let source = record
        .relay_message_id
        .as_ref()
        .map_or_else(|| "bounce".to_string(), |id| format!("bounce:{id}"));
    let failure = Failure {
        class: r.class,
        delayed: r.action == "delayed",
    };
    let suppress = state
        .hygiene()
        .apply_bounce(&record, &target, failure, source)
        .await
        .map_err(|e| ApiError::internal("recording a bounce", &e))?;
    tracing::info!(
        message_id = record.relay_message_id.as_deref().unwrap_or("-"),
        class = r.class.as_str(),
        attribution = attribution.as_str(),
        suppressed = suppress.is_some(),
        "bounce recorded"
    );
    if !failure.delayed && attribution != Attribution::Unattributed {
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
        state
            .metrics
            .bounced
            .get_or_create(&crate::metrics::Bounce {
                stream: stream.map_or(crate::metrics::StreamLabel::unknown, Into::into),
                domain: crate::metrics::domain_group(target.domain()),
                class: r.class.as_str(),
            })
            .inc();
    }
    Ok(json!({
        "address": target.value(),
        "action": r.action,
        "status": r.status,
        "class": r.class,
        "reason": r.reason,
        "attribution": attribution,
        "outcome": if suppress.is_some() { "suppressed" } else { "recorded" },
    }))
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
