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
use list_hygiene::bounce::{self, Failure, Kind};
use list_hygiene::subscriber::Change;
use serde_json::{Value, json};

use super::messages::body_bytes;
use super::{ApiError, AppState, Caller};
use crate::events::{self, Event, EventKind};
use crate::hygiene::{self, Hygiene};
use crate::keys::ApiScope;
use crate::store::{BounceRecord, EndpointRecord, now_ms};
use crate::suppression::{self, Reason, Scope, Target};

/// Takes the raw bounce message (RFC 5322) as the body; answers what was
/// understood and done for each failed recipient.
pub async fn bounces(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Webhooks)?;
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
    let mut events = Vec::new();
    if matches!(parsed.kind, Kind::Dsn | Kind::NonStandard) {
        let now = now_ms();
        let hygiene = Hygiene {
            store: &state.store,
            suppressions: &state.suppressions,
            policy: state.settings.bounce_policy(),
        };
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
                domain: target.value().rsplit_once('@').map(|(_, d)| d.to_string()),
            };
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
            let failure = Failure {
                class: r.class,
                delayed: r.action == "delayed",
            };
            let suppress = hygiene
                .apply_bounce(&record, &target, failure, source)
                .await
                .map_err(|e| ApiError::internal("recording a bounce", &e))?;
            if r.action != "delayed" {
                events.push(Event::new(
                    EventKind::Bounced,
                    json!({
                        "message_id": record.relay_message_id,
                        "stream": stream,
                        "address": target.value(),
                        "class": r.class,
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
            if r.action != "delayed" {
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
    caller.require_scope(ApiScope::Webhooks)?;
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
    let entry = suppression::entry(
        Scope::Global,
        &target,
        Reason::Complaint,
        Some(format!("complaint:{feedback_type}")),
        None,
    );
    state
        .suppressions
        .add(&state.store, &entry)
        .await
        .map_err(|e| ApiError::internal("suppressing a complainer", &e))?;
    hygiene::change_subscribers(
        &state.store,
        target.value(),
        Change::Complaint,
        &feedback_type,
    )
    .await;
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
            domain: crate::metrics::domain_group(
                target.value().rsplit('@').next().unwrap_or_default(),
            ),
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

/// `POST /v1/webhooks/unsubscribes`: an unsubscribe request mailed to the
/// `mailto:` address in `List-Unsubscribe` (`unsubscribe+TOKEN@DOMAIN`),
/// handed over raw by the MTA that receives it. The token is the signed
/// one-click token; for a message with several recipients it names the
/// message only, and the request's From must be one of its recipients.
pub async fn unsubscribes(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Webhooks)?;
    let body = body_bytes(body)?;
    let parsed = mail_parser::MessageParser::default()
        .parse_headers(&body)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_message",
                "the body is not a mail message (RFC 5322)",
            )
        })?;
    let mut candidates: Vec<String> = Vec::new();
    for name in ["To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To"] {
        for h in parsed.header_values(name) {
            if let Some(list) = h.as_address() {
                candidates.extend(list.iter().filter_map(|a| a.address().map(str::to_string)));
            } else if let Some(text) = h.as_text() {
                candidates.push(text.trim().trim_matches(['<', '>']).to_string());
            }
        }
    }
    let from = parsed
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .map(str::to_lowercase);
    let token = candidates.iter().find_map(|a| {
        let local = a.split_once('@')?.0;
        let token = local.strip_prefix(crate::unsubscribe::MAILTO_PREFIX)?;
        state.links.verify(token)
    });
    let Some((id, idx)) = token else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_token",
            "no valid unsubscribe+TOKEN@ address among the message's recipients",
        ));
    };
    let rows = state
        .store
        .get_recipients(&id)
        .await
        .map_err(|e| ApiError::internal("looking up an unsubscribe", &e))?;
    let address = if idx == crate::unsubscribe::WHOLE_MESSAGE {
        // The token names the message: the sender must be one of its
        // recipients (a forged From can only unsubscribe a recipient of a
        // message the forger holds the token of).
        from.filter(|f| rows.iter().any(|r| r.address.eq_ignore_ascii_case(f)))
    } else {
        rows.into_iter()
            .find(|r| r.idx == i64::from(idx))
            .map(|r| r.address.to_lowercase())
    };
    let Some(address) = address else {
        return Ok(Json(json!({"address": null, "outcome": "unresolved"})));
    };
    let target = Target::parse(Some(&address), None).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_address",
            e.to_string(),
        )
    })?;
    super::unsubscribe::apply(&state, &target, &format!("mailto:{id}"))
        .await
        .map_err(|e| ApiError::internal("recording an unsubscribe", &e))?;
    tracing::info!(message_id = %id, "unsubscribed (mailto)");
    Ok(Json(
        json!({"address": target.value(), "outcome": "unsubscribed"}),
    ))
}

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
    let wanted = params.get("state").map(String::as_str);
    if let Some(w) = wanted
        && !matches!(w, "pending" | "delivered" | "failed")
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_state",
            "state must be pending, delivered or failed",
        )
        .field("state"));
    }
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
