//! `POST /v1/webhooks/bounces`: asynchronous bounces, fed in by the MTA or
//! mailbox that receives mail at the return-path domain.
//!
//! Bounce policy: an address-level failure (class `hard`: bad mailbox or
//! domain) suppresses the address on every stream at once; `soft` failures
//! suppress after `soft_bounce_limit` of them within `soft_bounce_window`;
//! full mailboxes, policy blocks and transient trouble are the sender's or a
//! passing problem: recorded, never suppressing. Every bounce is recorded.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use list_hygiene::bounce::{self, BounceClass, Kind};
use serde_json::{Value, json};

use super::messages::body_bytes;
use super::{ApiError, AppState, Caller};
use crate::store::{BounceRecord, now_ms};
use crate::suppression::{self, Scope, Target};

/// Takes the raw bounce message (RFC 5322) as the body; answers what was
/// understood and done for each failed recipient.
pub async fn bounces(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_all_streams(
        "bounces can suppress addresses on every stream: they need a key for every stream",
    )?;
    let body = body_bytes(body)?;
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
    if matches!(parsed.kind, Kind::Dsn | Kind::NonStandard) {
        let now = now_ms();
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
            };
            state
                .store
                .insert_bounce(&record)
                .await
                .map_err(|e| ApiError::internal("recording a bounce", &e))?;
            let suppress = match (r.action.as_str(), r.class) {
                // A delay notice is not a failure yet.
                ("delayed", _) => None,
                (_, BounceClass::Hard) => Some("hard_bounce"),
                (_, BounceClass::Soft) => {
                    let since = now - state.settings.soft_bounce_window.as_millis() as i64;
                    let n = state
                        .store
                        .count_bounces(target.value(), "soft", since)
                        .await
                        .map_err(|e| ApiError::internal("counting soft bounces", &e))?;
                    (n >= i64::from(state.settings.soft_bounce_limit)).then_some("soft_bounces")
                }
                _ => None,
            };
            if let Some(reason) = suppress {
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
                let entry = suppression::entry(Scope::Global, &target, reason, Some(source), None);
                state
                    .suppressions
                    .add(&state.store, &entry)
                    .await
                    .map_err(|e| ApiError::internal("suppressing a bounced address", &e))?;
            }
            tracing::info!(
                class = r.class.as_str(),
                suppressed = suppress.is_some(),
                "bounce recorded"
            );
            results.push(json!({
                "address": target.value(),
                "action": r.action,
                "status": r.status,
                "class": r.class,
                "outcome": if suppress.is_some() { "suppressed" } else { "recorded" },
            }));
        }
    }
    Ok(Json(json!({
        "kind": parsed.kind,
        "original_message_id": parsed.original_message_id,
        "verp": parsed.verp,
        "recipients": results,
    })))
}

/// The relay's VERP return path in the reported message's headers.
fn verp_in(headers: &str) -> Option<(crate::domain::MessageId, u16)> {
    let verp = bounce::verp_in(headers)?;
    Some((
        crate::domain::MessageId::parse(&verp.message_id)?,
        u16::try_from(verp.recipient_index).ok()?,
    ))
}

/// The value of the signed reference header in the reported headers.
fn reference_in(headers: &str) -> Option<&str> {
    headers.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case(crate::unsubscribe::REFERENCE_HEADER)
            .then(|| value.trim())
    })
}

/// Takes an ARF feedback report (RFC 5965) as the body: the complaining
/// recipient goes on the global suppression list. Feedback loops often
/// redact the recipient; it is then found from the signed `X-Mailroom-Ref`
/// header or the VERP return path in the reported message's headers.
pub async fn complaints(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_all_streams(
        "complaints suppress addresses on every stream: they need a key for every stream",
    )?;
    let body = body_bytes(body)?;
    let report = mail_auth::report::Feedback::parse_rfc5322(&body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_report",
            format!("the body is not an ARF feedback report (RFC 5965): {e:?}"),
        )
    })?;
    let feedback_type = format!("{:?}", report.feedback_type).to_lowercase();
    let reported = format!(
        "{}\n{}",
        report.headers().unwrap_or_default(),
        report.message().unwrap_or_default()
    );
    // Our own reference first: it is signed, so it can't be pointed at
    // someone else. Then the VERP path, then the report's own field.
    let traced = match reference_in(&reported).and_then(|r| state.links.verify_reference(r)) {
        Some(found) => Some(("reference", found)),
        None => verp_in(&reported).map(|found| ("return-path", found)),
    };
    let mut address = None;
    let mut via = "original-rcpt-to";
    if let Some((how, (id, idx))) = traced {
        let rows = state
            .store
            .get_recipients(&id)
            .await
            .map_err(|e| ApiError::internal("looking up a complaint's recipient", &e))?;
        if let Some(r) = rows.into_iter().find(|r| r.idx == i64::from(idx)) {
            address = Some(r.address);
            via = how;
        }
    }
    if address.is_none() {
        address = report
            .original_rcpt_to()
            .map(|a| a.trim().trim_matches(['<', '>']).to_string());
    }
    let Some(target) = address
        .as_deref()
        .and_then(|a| Target::parse(Some(a), None).ok())
    else {
        tracing::warn!(
            feedback_type,
            "complaint with no recipient that could be traced"
        );
        return Ok(Json(json!({
            "feedback_type": feedback_type,
            "address": null,
            "outcome": "unresolved",
        })));
    };
    let entry = suppression::entry(
        Scope::Global,
        &target,
        "complaint",
        Some(format!("complaint:{feedback_type}")),
        None,
    );
    state
        .suppressions
        .add(&state.store, &entry)
        .await
        .map_err(|e| ApiError::internal("suppressing a complainer", &e))?;
    tracing::info!(feedback_type, via, "complaint: address suppressed");
    Ok(Json(json!({
        "feedback_type": feedback_type,
        "address": target.value(),
        "found_by": via,
        "outcome": "suppressed",
    })))
}
