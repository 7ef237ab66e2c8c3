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
use crate::suppression::Target;

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
    // Our own reference first: it is signed, so it can't be pointed at
    // someone else. Then the VERP path, then the report's own field.
    let traced = match reference_in(&reported).and_then(|r| state.links.verify_reference(r)) {
        Some(found) => Some(("reference", found)),
        None => verp_in(&reported).map(|found| ("return-path", found)),
    };
    let mut address = None;
    let mut via = "original-rcpt-to";
    if let Some((how, (id, idx))) = &traced {
        let (how, idx) = (*how, *idx);
        let rows = state
            .store
            .get_recipients(id)
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
    state
        .hygiene()
        .apply_complaint(&target, &feedback_type)
        .await
        .map_err(|e| ApiError::internal("suppressing a complainer", &e))?;
    let message_stream = match &traced {
        Some((_, (id, _))) => state
            .store
            .get_message(id)
            .await
            .ok()
            .flatten()
            .and_then(|m| m.stream.parse::<crate::domain::Stream>().ok()),
        None => None,
    };
    if let Err(e) = state
        .store
        .insert_complaint(
            target.value(),
            &feedback_type,
            traced
                .as_ref()
                .map(|(_, (id, _))| id.to_string())
                .as_deref(),
            message_stream.map(|s| s.as_str()),
        )
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
                "message_id": traced.as_ref().map(|(_, (id, _))| id.to_string()),
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
