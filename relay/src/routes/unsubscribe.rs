//! Unsubscribes: `/u/{token}`, one-click unsubscribe (RFC 8058) and its
//! landing page, and `POST /v1/webhooks/unsubscribes`, the same token
//! mailed to the `mailto:` address of `List-Unsubscribe`.
//!
//! No key, no cookie, no login: the signed token is the authority. A GET
//! only shows a page with a button, because link scanners and previewers
//! fetch every URL in a message; the unsubscribe itself is a POST — the one
//! mailbox providers send for `List-Unsubscribe-Post: List-Unsubscribe=One-Click`,
//! or the page's button. It is idempotent and takes effect at once.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::InboundMail;
use super::{ApiError, AppState};
use crate::suppression::Target;

/// The page headers: nothing loads from elsewhere, nothing frames it, the
/// token never leaks in a Referer.
pub(super) fn page_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

pub(super) fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

pub(super) fn html(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         button{{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    )
}

/// `d***@customer.example`: enough for the reader to recognise, not enough
/// to harvest from a forwarded link.
pub(super) fn masked(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

fn not_found() -> Response {
    page_response(
        StatusCode::NOT_FOUND,
        html(
            "Link not recognised",
            "<p>This unsubscribe link is not valid. Please use the link in the most recent email you received.</p>",
        ),
    )
}

/// Who a token unsubscribes and from which sender, if it is one of ours.
async fn recipient(state: &AppState, token: &str) -> Result<Option<(String, String)>, Response> {
    let Some((id, idx)) = state.links.verify(token) else {
        return Ok(None);
    };
    let internal = |e: &dyn std::error::Error| {
        tracing::error!(error = %e, "unsubscribe lookup failed");
        page_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            html(
                "Something went wrong",
                "<p>Please try again in a minute.</p>",
            ),
        )
    };
    let Some(message) = state
        .store
        .get_message(&id)
        .await
        .map_err(|e| internal(&e))?
    else {
        return Ok(None);
    };
    let rows = state
        .store
        .get_recipients(&id)
        .await
        .map_err(|e| internal(&e))?;
    Ok(rows
        .into_iter()
        .find(|r| r.idx == i64::from(idx))
        .map(|r| (r.address, message.sender)))
}

/// `GET /u/{token}`: a page with one button; changes nothing.
pub async fn page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (address, sender) = match recipient(&state, &token).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(resp) => return resp,
    };
    let sender_domain = sender.rsplit_once('@').map_or(sender.as_str(), |(_, d)| d);
    page_response(
        StatusCode::OK,
        html(
            "Unsubscribe",
            &format!(
                "<p>Stop marketing email from <strong>{}</strong> to <strong>{}</strong>?</p>\
                 <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
                 <button type=\"submit\">Unsubscribe</button></form>\
                 <p>You will still receive receipts and other messages about your orders.</p>",
                escape(sender_domain),
                escape(&masked(&address)),
            ),
        ),
    )
}

/// `POST /u/{token}` with `List-Unsubscribe=One-Click`: unsubscribes the
/// recipient from marketing mail, at once; repeating it changes nothing.
pub async fn one_click(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    // RFC 8058: the POST body is the key/value pair, form-encoded.
    let one_click = String::from_utf8_lossy(&body)
        .split('&')
        .any(|pair| pair.trim() == "List-Unsubscribe=One-Click");
    if !one_click {
        return page_response(
            StatusCode::BAD_REQUEST,
            html(
                "Not understood",
                "<p>Expected the form field List-Unsubscribe=One-Click.</p>",
            ),
        );
    }
    let (address, _) = match recipient(&state, &token).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(resp) => return resp,
    };
    let target = match Target::parse(Some(&address), None) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(%e, "stored recipient no longer parses");
            return not_found();
        }
    };
    let (id, _) = state.links.verify(&token).expect("verified above");
    if let Err(e) = state
        .hygiene()
        .apply_unsubscribe(&target, &format!("one-click:{id}"))
        .await
    {
        tracing::error!(error = %e, "recording an unsubscribe failed");
        return page_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            html(
                "Something went wrong",
                "<p>Please try again in a minute.</p>",
            ),
        );
    }
    tracing::info!(message_id = %id, "unsubscribed (one-click)");
    page_response(
        StatusCode::OK,
        html(
            "You are unsubscribed",
            "<p>You will receive no more marketing email at this address.</p>",
        ),
    )
}

/// `POST /v1/webhooks/unsubscribes`: an unsubscribe request mailed to the
/// `mailto:` address in `List-Unsubscribe` (`unsubscribe+TOKEN@DOMAIN`),
/// handed over raw by the MTA that receives it. The token is the signed
/// one-click token; for a message with several recipients it names the
/// message only, and the request's From must be one of its recipients.
pub async fn unsubscribes(
    State(state): State<AppState>,
    InboundMail(body): InboundMail,
) -> Result<Json<Value>, ApiError> {
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
    state
        .hygiene()
        .apply_unsubscribe(&target, &format!("mailto:{id}"))
        .await
        .map_err(|e| ApiError::internal("recording an unsubscribe", &e))?;
    tracing::info!(message_id = %id, "unsubscribed (mailto)");
    Ok(Json(
        json!({"address": target.value(), "outcome": "unsubscribed"}),
    ))
}
