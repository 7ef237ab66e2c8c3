//! Lists and subscribers: double opt-in, the consent trail, engagement.
//!
//! A sign-up (`POST /v1/lists/{list}/subscribers`) is checked (syntax, role
//! account, disposable domain, likely typo, optionally MX), stored as
//! `pending` and sent a confirmation through the transactional stream. The
//! link in it carries a signed, expiring, single-use token; `GET /c/TOKEN`
//! shows a button and only `POST /c/TOKEN` confirms, because link scanners
//! fetch every URL in a message. The answer to a sign-up is the same
//! whatever the address's state, so the endpoint can't be used to learn who
//! is subscribed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::messages::body_bytes;
use super::unsubscribe::{escape, html, masked, page_response};
use super::{ApiError, AppState, Caller};
use crate::accept::Submitter;
use crate::domain::message::{OneOrMany, SendRequest};
use crate::domain::{NewMessage, Stream};
use crate::events::{self, Event, EventKind};
use crate::keys::ApiScope;
use crate::store::{ConsentEvent, ListRecord, SubscriberRecord, now_ms};
use list_hygiene::subscriber::{Change, Status, transition};

/// List ids are the shop's slugs: they appear in URLs and `List-Id`s.
fn list_id(raw: &str) -> Result<String, ApiError> {
    let ok = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && raw.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(raw.to_string())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_list_id",
            "a list id is 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit",
        )
        .field("id"))
    }
}

async fn find_list(state: &AppState, id: &str) -> Result<ListRecord, ApiError> {
    state
        .store
        .get_list(id)
        .await
        .map_err(|e| ApiError::internal("reading a list", &e))?
        .ok_or_else(|| ApiError::not_found("list"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewList {
    id: String,
    name: String,
    /// Sender of the confirmation mail, e.g. `"Shop <news@shop.example>"`.
    from: String,
}

/// `POST /v1/lists`: 201 with the list, 409 if the id is taken.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require_scope(ApiScope::Lists)?;
    let req: NewList = super::error::parse_json(&body_bytes(body)?)?;
    let id = list_id(&req.id)?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
            "name must be 1 to 200 characters without control characters",
        )
        .field("name"));
    }
    let from = crate::domain::address::Sender::parse(&req.from).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_address",
            format!("from: {e}"),
        )
        .field("from")
    })?;
    // The confirmation goes out on the transactional stream: refuse a list
    // whose mail could not be signed rather than fail every sign-up later.
    let domain = from.address().domain();
    if state
        .accept
        .signers
        .for_domain(domain.as_str(), Stream::Transactional)
        .is_none()
        && !state.settings.allow_unsigned
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_dkim_key",
            format!("no DKIM key is configured for {domain} on the transactional stream, which sends confirmations"),
        )
        .field("from"));
    }
    let list = ListRecord {
        id,
        name: name.to_string(),
        from_address: req.from.trim().to_string(),
        created_at: now_ms(),
    };
    if !state
        .store
        .insert_list(&list)
        .await
        .map_err(|e| ApiError::internal("creating a list", &e))?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "list_exists",
            format!("a list with id {:?} exists already", list.id),
        )
        .field("id"));
    }
    tracing::info!(list = %list.id, key_id = %caller.0.id, "list created");
    Ok((StatusCode::CREATED, Json(json!(list))).into_response())
}

/// `GET /v1/lists`.
pub async fn all(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Lists)?;
    let lists = state
        .store
        .list_lists()
        .await
        .map_err(|e| ApiError::internal("listing lists", &e))?;
    Ok(Json(json!({ "lists": lists })))
}

/// `GET /v1/lists/{list}`: the list and its subscribers counted by status.
pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Lists)?;
    let list = find_list(&state, &id).await?;
    let counts: serde_json::Map<String, Value> = state
        .store
        .count_subscribers(&id)
        .await
        .map_err(|e| ApiError::internal("counting subscribers", &e))?
        .into_iter()
        .map(|(status, n)| (status, json!(n)))
        .collect();
    let mut v = json!(list);
    v["subscribers"] = Value::Object(counts);
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    email: String,
    /// Where the sign-up came from: `checkout`, `footer-form`, ...
    #[serde(default)]
    source: Option<String>,
    /// The subscriber's IP address and browser, for the consent trail.
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    user_agent: Option<String>,
    /// Store an address whose domain looks like a typo of a popular one
    /// (the subscriber insisted).
    #[serde(default)]
    allow_typo: bool,
}

fn short_text(
    field: &'static str,
    v: Option<String>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if s.len() > max || s.chars().any(char::is_control) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field} must be at most {max} bytes without control characters"),
        )
        .field(field)),
        other => Ok(other.filter(|s| !s.trim().is_empty())),
    }
}

/// The address checks that come before anything is stored; the normalised
/// address (domain in ASCII, lower-cased) when it passes.
async fn check_address(state: &AppState, raw: &str, allow_typo: bool) -> Result<String, ApiError> {
    use list_hygiene::address::{Problem, check};
    let checked = check(raw);
    for p in &checked.problems {
        let (code, message) = match p {
            Problem::Invalid { reason } => {
                ("invalid_address", format!("not a valid address: {reason}"))
            }
            Problem::Disposable { domain } => (
                "disposable_address",
                format!("{domain} is a disposable-mail domain"),
            ),
            Problem::Role { local_part } => (
                "role_address",
                format!("{local_part}@ is a role account, not a person who can opt in"),
            ),
            Problem::Typo { suggestion } if !allow_typo => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "possible_typo",
                    format!("the domain looks like a typo; did you mean {suggestion}? (send allow_typo: true to keep it)"),
                )
                .field("email")
                .detail("suggestion", json!(suggestion)));
            }
            Problem::Typo { .. } => continue,
        };
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).field("email"));
    }
    let address = checked.address.expect("no problems means it parsed");
    if state.settings.lists.check_mx
        && let Some(mx) = &state.mx
    {
        match mx.can_receive(address.domain()).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "domain_cannot_receive",
                    format!(
                        "{} has no mail server (no MX or address record)",
                        address.domain()
                    ),
                )
                .field("email"));
            }
            // DNS trouble is no proof the address is bad: don't turn a
            // subscriber away for it.
            Err(e) => tracing::warn!(error = %e, "MX check inconclusive; sign-up accepted"),
        }
    }
    Ok(address.key())
}

/// A new single-use link secret, its stored hash, and the signed URL.
fn new_link(state: &AppState) -> (String, String) {
    use rand::RngCore as _;
    let mut secret = [0u8; 16];
    rand::rng().fill_bytes(&mut secret);
    let expires = (now_ms() / 1000) + state.settings.lists.confirm_link_ttl.as_secs() as i64;
    let token = state.links.confirm_token(&secret, expires);
    (
        hex::encode(Sha256::digest(secret)),
        state.links.confirm_url(&token),
    )
}

fn confirmation_mail(list: &ListRecord, address: &str, url: &str) -> SendRequest {
    let name = &list.name;
    SendRequest {
        from: list.from_address.clone(),
        to: OneOrMany::One(address.to_string()),
        cc: OneOrMany::None,
        bcc: OneOrMany::None,
        reply_to: None,
        subject: format!("Please confirm your subscription to {name}"),
        text: Some(format!(
            "Please confirm that you want to receive {name}:\n\n{url}\n\n\
             If you did not ask for this, ignore this email and you will not hear from us again.\n"
        )),
        html: Some(format!(
            "<p>Please confirm that you want to receive {n}.</p>\
             <p><a href=\"{u}\">Confirm my subscription</a></p>\
             <p>If you did not ask for this, ignore this email and you will not hear from us again.</p>",
            n = escape(name),
            u = escape(url),
        )),
        headers: Default::default(),
        attachments: Vec::new(),
        stream: Some("transactional".into()),
        tags: vec!["confirmation".into()],
        metadata: [("list".to_string(), list.id.clone())]
            .into_iter()
            .collect(),
    }
}

/// `POST /v1/lists/{list}/subscribers`: 202 with the same body whatever
/// the address's state. New, unsubscribed or pruned addresses become
/// `pending` and get a confirmation; a pending one gets a fresh link at most
/// every `resend_interval`; confirmed, bounced and complained ones get
/// nothing.
pub async fn subscribe(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require_scope(ApiScope::Lists)?;
    let req: SignUp = super::error::parse_json(&body_bytes(body)?)?;
    let list = find_list(&state, &id).await?;
    let ip = match req.ip.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<IpAddr>()
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_ip",
                        format!("{s:?} is not an IP address"),
                    )
                    .field("ip")
                })?
                .to_string(),
        ),
    };
    let source = short_text("source", req.source, 100)?.unwrap_or_else(|| "api".into());
    let user_agent = short_text("user_agent", req.user_agent, 500)?;
    let address = check_address(&state, &req.email, req.allow_typo).await?;
    let accepted = json!({
        "list": list.id,
        "email": address,
        "message": "if this address is not already subscribed, a confirmation email is on its way",
    });
    let current = state
        .store
        .get_subscriber(&list.id, &address)
        .await
        .map_err(|e| ApiError::internal("reading a subscriber", &e))?;
    let now = now_ms();
    let resend_ms = state.settings.lists.resend_interval.as_millis() as i64;
    let next = transition(current.as_ref().map(|s| s.status), Change::SignUp);
    let mut sub = match (current, next) {
        // Confirmed already, or bounced/complained (mailing them is what
        // the suppression list is for not doing): nothing to send.
        (_, None) => return Ok((StatusCode::ACCEPTED, Json(accepted)).into_response()),
        (None, Some(_)) => SubscriberRecord {
            list_id: list.id.clone(),
            address: address.clone(),
            status: Status::Pending,
            confirm_hash: None,
            confirm_sent_at: None,
            created_at: now,
            updated_at: now,
            confirmed_at: None,
            last_delivered_at: None,
            last_open_at: None,
            last_click_at: None,
            reengaged_at: None,
        },
        (Some(s), Some(_))
            if s.status == Status::Pending
                && s.confirm_sent_at.is_some_and(|t| now - t < resend_ms) =>
        {
            return Ok((StatusCode::ACCEPTED, Json(accepted)).into_response());
        }
        (Some(s), Some(_)) => s,
    };
    let (hash, url) = new_link(&state);
    sub.status = Status::Pending;
    sub.confirm_hash = Some(hash);
    sub.confirm_sent_at = None;
    sub.updated_at = now;
    let mut event = ConsentEvent::new(&list.id, &address, Status::Pending, &source);
    event.ip = ip;
    event.user_agent = user_agent;
    state
        .store
        .put_subscriber(&sub, &event)
        .await
        .map_err(|e| ApiError::internal("storing a subscriber", &e))?;
    // Through the same pipeline as the shop's own mail (suppression list,
    // DKIM, queue), as the relay itself: no key's budget is spent.
    let confirmation = NewMessage::try_from(confirmation_mail(&list, &address, &url))?;
    let message_id = state
        .accept
        .accept_once(Submitter::Relay, confirmation)
        .await?
        .id;
    // Only now does the resend interval start: a sign-up whose mail failed
    // to queue can be retried at once.
    state
        .store
        .mark_confirmation_sent(&list.id, &address, now_ms())
        .await
        .map_err(|e| ApiError::internal("recording a confirmation", &e))?;
    tracing::info!(list = %list.id, %message_id, "sign-up pending confirmation");
    events::emit(
        &state.store,
        &state.wake,
        vec![Event::new(
            EventKind::Subscribed,
            json!({"list": list.id, "address": address, "source": event.source, "status": Status::Pending}),
        )],
    )
    .await;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// `GET /v1/lists/{list}/subscribers?status=&limit=&offset=`.
pub async fn subscribers(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Lists)?;
    find_list(&state, &id).await?;
    let status = params
        .get("status")
        .map(|s| s.parse::<Status>())
        .transpose()
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_status",
                e.to_string(),
            )
            .field("status")
        })?;
    let (limit, offset) = super::paging(&params)?;
    let rows = state
        .store
        .list_subscribers(&id, status, limit, offset)
        .await
        .map_err(|e| ApiError::internal("listing subscribers", &e))?;
    Ok(Json(json!({ "subscribers": rows })))
}

fn address_param(raw: &str) -> Result<String, ApiError> {
    list_hygiene::address::Address::parse(raw)
        .map(|a| a.key())
        .map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_address", e).field("address")
        })
}

/// `GET /v1/lists/{list}/subscribers/{address}`: the subscriber and the
/// whole consent trail.
pub async fn subscriber(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, address)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Lists)?;
    let address = address_param(&address)?;
    let sub = state
        .store
        .get_subscriber(&id, &address)
        .await
        .map_err(|e| ApiError::internal("reading a subscriber", &e))?
        .ok_or_else(|| ApiError::not_found("subscriber"))?;
    let trail = state
        .store
        .consent_trail(&id, &address)
        .await
        .map_err(|e| ApiError::internal("reading the consent trail", &e))?;
    let mut v = json!(sub);
    v["consent_trail"] = json!(trail);
    Ok(Json(v))
}

/// `DELETE /v1/lists/{list}/subscribers/{address}`: unsubscribes (the row
/// and its trail stay: they are the record of consent withdrawn). 204, or
/// 404 if the address is not subscribed or pending.
pub async fn unsubscribe(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, address)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_scope(ApiScope::Lists)?;
    let address = address_param(&address)?;
    let changed = state
        .store
        .change_status(
            Some(&id),
            &address,
            Change::Unsubscribe,
            &format!("api:{}", caller.0.id),
            None,
        )
        .await
        .map_err(|e| ApiError::internal("unsubscribing", &e))?;
    if changed.is_empty() {
        return Err(ApiError::not_found("subscriber"));
    }
    events::emit(
        &state.store,
        &state.wake,
        vec![Event::new(
            EventKind::Unsubscribed,
            json!({"list": id, "address": address, "source": "api"}),
        )],
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Engagement {
    address: String,
    /// `open` or `click`.
    #[serde(rename = "type")]
    kind: String,
    /// When it happened (Unix milliseconds); default now.
    #[serde(default)]
    at: Option<i64>,
    /// One list; default every list the address is on.
    #[serde(default)]
    list: Option<String>,
}

/// `POST /v1/engagement`: an open or click seen by the shop's tracking,
/// which keeps the subscriber off the inactive list.
pub async fn engagement(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Lists)?;
    let req: Engagement = super::error::parse_json(&body_bytes(body)?)?;
    let click = match req.kind.as_str() {
        "open" => false,
        "click" => true,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_type",
                "type must be \"open\" or \"click\"",
            )
            .field("type"));
        }
    };
    let now = now_ms();
    let at = req.at.unwrap_or(now);
    if at <= 0 || at > now + 60_000 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "at must be a time in Unix milliseconds, not in the future",
        )
        .field("at"));
    }
    let address = address_param(&req.address)?;
    let updated = state
        .store
        .record_engagement(req.list.as_deref(), &address, click, at)
        .await
        .map_err(|e| ApiError::internal("recording engagement", &e))?;
    Ok(Json(json!({ "updated": updated })))
}

/// Who a confirmation token is for, if it is ours, unexpired and unused.
async fn pending_for(
    state: &AppState,
    token: &str,
) -> Result<Option<(SubscriberRecord, String)>, Response> {
    let Some(secret) = state.links.verify_confirm(token, now_ms() / 1000) else {
        return Ok(None);
    };
    let hash = hex::encode(Sha256::digest(secret));
    match state.store.subscriber_by_confirm_hash(&hash).await {
        Ok(Some(s)) if s.status == Status::Pending => Ok(Some((s, hash))),
        Ok(_) => Ok(None),
        Err(e) => {
            tracing::error!(error = %e, "confirmation lookup failed");
            Err(page_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                html(
                    "Something went wrong",
                    "<p>Please try again in a minute.</p>",
                ),
            ))
        }
    }
}

fn link_invalid() -> Response {
    page_response(
        StatusCode::NOT_FOUND,
        html(
            "Link not valid",
            "<p>This confirmation link has expired or was already used. \
             If you still want to subscribe, please sign up again.</p>",
        ),
    )
}

/// `GET /c/{token}`: a page with a confirm button; changes nothing.
pub async fn confirm_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let sub = match pending_for(&state, &token).await {
        Ok(Some((s, _))) => s,
        Ok(None) => return link_invalid(),
        Err(r) => return r,
    };
    let name = match state.store.get_list(&sub.list_id).await {
        Ok(Some(l)) => l.name,
        _ => sub.list_id.clone(),
    };
    page_response(
        StatusCode::OK,
        html(
            "Confirm your subscription",
            &format!(
                "<p>Receive <strong>{}</strong> at <strong>{}</strong>?</p>\
                 <form method=\"post\"><button type=\"submit\">Yes, subscribe me</button></form>",
                escape(&name),
                escape(&masked(&sub.address)),
            ),
        ),
    )
}

/// `POST /c/{token}`: confirms, once. The trail records the IP address
/// and browser that clicked.
pub async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (sub, hash) = match pending_for(&state, &token).await {
        Ok(Some(found)) => found,
        Ok(None) => return link_invalid(),
        Err(r) => return r,
    };
    let mut event = ConsentEvent::new(
        &sub.list_id,
        &sub.address,
        Status::Confirmed,
        "confirmation-link",
    );
    // The same rule as the limits: X-Forwarded-For only from a trusted
    // proxy, or anyone could write any address into the consent trail.
    event.ip = state
        .limits
        .client_ip(&headers, Some(peer.ip()))
        .map(|ip| ip.to_string());
    event.user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(500).collect());
    match state.store.confirm_subscriber(&hash, &event).await {
        Ok(true) => {}
        Ok(false) => return link_invalid(),
        Err(e) => {
            tracing::error!(error = %e, "confirming failed");
            return page_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                html(
                    "Something went wrong",
                    "<p>Please try again in a minute.</p>",
                ),
            );
        }
    }
    // Opting in again is consent anew: an earlier one-click unsubscribe no
    // longer stands in its way. Bounces and complaints stay suppressed.
    if let Err(e) = state
        .suppressions
        .lift_unsubscribe(&state.store, &sub.address)
        .await
    {
        tracing::warn!(error = %e, "lifting an earlier unsubscribe failed");
    }
    tracing::info!(list = %sub.list_id, "subscription confirmed");
    events::emit(
        &state.store,
        &state.wake,
        vec![Event::new(
            EventKind::Confirmed,
            json!({"list": sub.list_id, "address": sub.address}),
        )],
    )
    .await;
    page_response(
        StatusCode::OK,
        html(
            "Subscribed",
            "<p>Thank you: your subscription is confirmed.</p>",
        ),
    )
}
