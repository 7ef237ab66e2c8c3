//! `POST /v1/webhooks/complaints`: ARF feedback reports (RFC 5965) from
//! mailbox providers' feedback loops.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::auth::InboundMail;
use super::{ApiError, AppState};
use list_hygiene::bounce;

use crate::events::{self, Event, EventKind};
use crate::hygiene::trace::{Proof, Refusal};
use crate::suppression::Target;

/// The value of header `name` in a block of header lines.
fn header_in<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|line| {
        let (n, value) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Takes an ARF feedback report (RFC 5965) as the body: the complaining
/// recipient goes on the global suppression list. Only a recipient
/// mailroom sent to (see [`crate::hygiene::trace`]): feedback loops often
/// redact the recipient, so it is found from the signed `X-Mailroom-Ref`
/// header or the VERP path's tag in the reported message's headers, else
/// from the report's Original-Rcpt-To together with the reported
/// Message-ID. A report that matches nothing is unattributed and
/// suppresses nobody (unless `suppress_unattributed`).
pub async fn complaints(
    State(state): State<AppState>,
    InboundMail(body): InboundMail,
) -> Result<Json<Value>, ApiError> {
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
    let tracer = state.tracer();
    let internal = |e| ApiError::internal("tracing a complaint", &e);
    // Our own reference first, then the VERP path's tag; a forged or stale
    // one refuses the report rather than falling back to weaker evidence.
    let (mut proof, mut via) = match header_in(&reported, crate::unsubscribe::REFERENCE_HEADER) {
        Some(r) => (tracer.reference(r).await.map_err(internal)?, "reference"),
        None => (Proof::Unproven(None), "reference"),
    };
    if matches!(proof, Proof::Unproven(_)) {
        let verp = bounce::verp_in(&reported);
        proof = tracer.verp(verp.as_ref()).await.map_err(internal)?;
        via = "return-path";
    }
    let named = report
        .original_rcpt_to()
        .map(|a| a.trim().trim_matches(['<', '>']).to_string());
    let sent = match proof {
        Proof::Refused(refusal) => return Ok(Json(refused(&state, &feedback_type, refusal))),
        Proof::Verified(sent) => Some(sent),
        Proof::Unproven(hint) => match &named {
            Some(address) => {
                via = "message-id";
                tracer
                    .by_message(hint.as_ref(), header_in(&reported, "Message-ID"), address)
                    .await
                    .map_err(internal)?
            }
            None => None,
        },
    };
    let address = match &sent {
        Some(s) => Some(s.address.clone()),
        None => {
            via = "original-rcpt-to";
            named
        }
    };
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
    if sent.is_none() {
        state.metrics.return_unattributed("complaint");
        if !state.settings.suppress_unattributed {
            tracing::warn!(
                feedback_type,
                "complaint matches no message sent: unattributed, nobody suppressed"
            );
            return Ok(Json(json!({
                "feedback_type": feedback_type,
                "address": target.value(),
                "outcome": "unattributed",
            })));
        }
    }
    if let Some(sent) = &sent {
        let replayed = state
            .store
            .complaint_recorded(&sent.message_id.to_string(), sent.idx)
            .await
            .map_err(internal)?;
        if replayed {
            return Ok(Json(refused(&state, &feedback_type, Refusal::Replayed)));
        }
    }
    state
        .hygiene()
        .apply_complaint(&target, &feedback_type)
        .await
        .map_err(|e| ApiError::internal("suppressing a complainer", &e))?;
    let message_stream = sent.as_ref().map(|s| s.stream);
    if let Err(e) = state
        .store
        .insert_complaint(target.value(), &feedback_type, sent.as_ref())
        .await
    {
        tracing::warn!(error = %e, "recording a complaint failed");
    }
    let stream = message_stream.map_or(crate::metrics::StreamLabel::unknown, Into::into);
    state
        .metrics
        .complained
        .get_or_create(&crate::metrics::StreamDomain {
            stream,
            domain: crate::metrics::domain_group(target.domain()),
        })
        .inc();
    events::emit(
        &state.store,
        &state.wake,
        vec![Event::new(
            EventKind::Complained,
            json!({
                "address": target.value(),
                "feedback_type": feedback_type,
                "message_id": sent.as_ref().map(|s| s.message_id.to_string()),
            }),
        )],
    )
    .await;
    tracing::info!(feedback_type, via, "complaint: address suppressed");
    Ok(Json(json!({
        "feedback_type": feedback_type,
        "address": target.value(),
        "found_by": via,
        "outcome": "suppressed",
    })))
}

/// Counts and logs a refused report; its answer.
fn refused(state: &AppState, feedback_type: &str, refusal: Refusal) -> Value {
    tracing::warn!(
        feedback_type,
        refused = refusal.as_str(),
        "complaint refused: {refusal}"
    );
    state.metrics.return_refused("complaint", refusal.as_str());
    json!({
        "feedback_type": feedback_type,
        "address": null,
        "outcome": "refused",
        "refused": refusal.as_str(),
        "why": refusal.to_string(),
    })
}
