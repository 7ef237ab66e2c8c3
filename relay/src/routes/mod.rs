//! The HTTP API, one file per resource. Handlers parse, hand a message to
//! the accept pipeline ([`crate::accept`]) and map the result to HTTP; they
//! never speak SMTP or DNS.

mod auth;
mod bounces;
mod complaints;
mod destinations;
mod domains;
mod error;
mod health;
mod lint;
mod lists;
mod messages;
mod suppressions;
mod unsubscribe;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use auth::{Caller, KeyCache};
pub use error::ApiError;

use crate::config::Settings;
use crate::domain::Stream;
use crate::store::Store;
use crate::suppression::Suppressions;
use crate::unsubscribe::Links;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The accept pipeline every message goes through.
    pub accept: Arc<crate::accept::Pipeline>,
    pub store: Store,
    pub settings: Arc<Settings>,
    pub keys: Arc<KeyCache>,
    pub suppressions: Arc<Suppressions>,
    pub links: Arc<Links>,
    /// Wakes this process's webhook dispatcher when events are queued.
    pub wake: Arc<tokio::sync::Notify>,
    /// For the optional MX check on new subscribers.
    pub mx: Option<Arc<crate::delivery::mx::MxResolver>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub limits: Arc<crate::limits::Limits>,
    /// Each stream's traffic shaping (`GET /v1/destinations`).
    pub shapers: Arc<Vec<Arc<crate::delivery::shaping::Shaper>>>,
    /// Per stream: whether its worker is running (for `/readyz`).
    pub workers: Arc<Vec<(Stream, Arc<std::sync::atomic::AtomicBool>)>>,
}

impl AppState {
    /// list-hygiene's decisions, applied to this relay's store.
    pub fn hygiene(&self) -> crate::hygiene::Hygiene<'_> {
        crate::hygiene::Hygiene {
            store: &self.store,
            suppressions: &self.suppressions,
            policy: self.settings.bounce_policy(),
            suppress_unattributed: self.settings.suppress_unattributed,
            events: &self.wake,
        }
    }

    /// Traces bounces and complaints to the mail this relay sent.
    pub fn tracer(&self) -> crate::hygiene::trace::Tracer<'_> {
        crate::hygiene::trace::Tracer {
            store: &self.store,
            links: &self.links,
            window_ms: i64::try_from(self.settings.feedback_window.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// What the inbound MX received, by the address it was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    Bounce,
    Complaint,
    Unsubscribe,
}

/// Handles mail the inbound MX took exactly as the inbound webhook of its
/// kind does (same parsing, trust rules and answer). The MX has no key to
/// check: the listener itself is the authority.
///
/// # Errors
/// As the webhook: the message is not what its address says (4xx), or
/// the store failed (5xx).
pub async fn inbound(
    state: &AppState,
    kind: Inbound,
    body: Vec<u8>,
) -> Result<serde_json::Value, ApiError> {
    use axum::extract::State;
    let body = auth::InboundMail(body.into());
    let state = State(state.clone());
    Ok(match kind {
        Inbound::Bounce => bounces::bounces(state, body).await?.0,
        Inbound::Complaint => complaints::complaints(state, body).await?.0,
        Inbound::Unsubscribe => unsubscribe::unsubscribes(state, body).await?.0,
    })
}

/// `limit` (default 100, at most 1000) and `offset` (default 0) of a list
/// route's query; `422 invalid_field` naming the bad one.
pub(super) fn paging(
    params: &std::collections::HashMap<String, String>,
) -> Result<(i64, i64), ApiError> {
    let number = |name: &'static str, default: i64, max: i64| {
        params.get(name).map_or(Ok(default), |v| {
            v.parse::<i64>()
                .ok()
                .filter(|n| (0..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::new(
                        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_field",
                        format!("{name} must be a number from 0 to {max}"),
                    )
                    .field(name)
                })
        })
    };
    Ok((number("limit", 100, 1000)?, number("offset", 0, i64::MAX)?))
}

/// The public pages' budget per client address: nothing in them needs a
/// key, so this is what stops one client hammering them.
async fn public_limit(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = state.limits.client_ip(req.headers(), peer)
        && let Err(wait) = state.limits.public.check(&ip.to_string())
    {
        state
            .metrics
            .rate_limited
            .get_or_create(&crate::metrics::Reason { reason: "public" })
            .inc();
        return ApiError::too_many("rate_limited", "too many requests; try again shortly", wait)
            .into_response();
    }
    next.run(req).await
}

/// Counts every request by route pattern and status.
async fn count_requests(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    state
        .metrics
        .api_requests
        .get_or_create(&crate::metrics::Request {
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// The API described for clients and tools; docs/api.md is the prose.
const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

pub fn router(state: AppState) -> Router {
    let limit = state.settings.max_request_bytes;
    Router::new()
        .route("/v1/messages", post(messages::send))
        .route("/v1/messages/batch", post(messages::send_batch))
        .route("/v1/messages/{id}", get(messages::get_message))
        .route("/v1/messages/{id}/raw", get(messages::get_raw))
        .route("/v1/lint", post(lint::lint))
        .route(
            "/v1/suppressions",
            get(suppressions::list)
                .post(suppressions::add)
                .delete(suppressions::remove),
        )
        .route("/v1/lists", get(lists::all).post(lists::create))
        .route("/v1/lists/{list}", get(lists::one))
        .route(
            "/v1/lists/{list}/subscribers",
            get(lists::subscribers).post(lists::subscribe),
        )
        .route(
            "/v1/lists/{list}/subscribers/{address}",
            get(lists::subscriber).delete(lists::unsubscribe),
        )
        .route("/v1/engagement", post(lists::engagement))
        .route("/v1/webhooks/bounces", post(bounces::bounces))
        .route("/v1/webhooks/complaints", post(complaints::complaints))
        .route("/v1/webhooks/unsubscribes", post(unsubscribe::unsubscribes))
        .route(
            "/v1/webhooks/endpoints",
            get(webhooks::endpoints).post(webhooks::add_endpoint),
        )
        .route(
            "/v1/webhooks/endpoints/{id}",
            axum::routing::delete(webhooks::delete_endpoint),
        )
        .route("/v1/webhooks/deliveries", get(webhooks::deliveries))
        .route("/v1/bounces/summary", get(bounces::bounce_summary))
        .route(
            "/c/{token}",
            get(lists::confirm_page).post(lists::confirm).route_layer(
                axum::middleware::from_fn_with_state(state.clone(), public_limit),
            ),
        )
        .route(
            "/u/{token}",
            get(unsubscribe::page)
                .post(unsubscribe::one_click)
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    public_limit,
                )),
        )
        .route("/v1/domains", get(domains::domains))
        .route("/v1/destinations", get(destinations::list))
        .route(
            "/v1/destinations/{stream}/{provider}/suspend",
            post(destinations::suspend),
        )
        .route(
            "/v1/destinations/{stream}/{provider}/resume",
            post(destinations::resume),
        )
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            state.settings.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_is_json_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for path in [
            "/v1/messages",
            "/v1/messages/batch",
            "/v1/messages/{id}",
            "/v1/messages/{id}/raw",
            "/v1/lint",
            "/v1/suppressions",
            "/v1/webhooks/bounces",
            "/v1/webhooks/complaints",
            "/v1/webhooks/unsubscribes",
            "/v1/webhooks/endpoints",
            "/v1/webhooks/endpoints/{id}",
            "/v1/webhooks/deliveries",
            "/v1/bounces/summary",
            "/v1/lists",
            "/v1/lists/{list}",
            "/v1/lists/{list}/subscribers",
            "/v1/lists/{list}/subscribers/{address}",
            "/v1/engagement",
            "/c/{token}",
            "/u/{token}",
            "/metrics",
            "/healthz",
            "/readyz",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
    }
}
