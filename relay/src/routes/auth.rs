use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use lru::LruCache;

use super::{ApiError, AppState};
use crate::domain::Stream;
use crate::keys::{ApiScope, hash_key};
use crate::store::ApiKeyRecord;

/// How long a verified key is trusted without asking the store again: a
/// revocation takes effect within this time on every relay process.
const KEY_CACHE_TTL: Duration = Duration::from_secs(10);

pub struct KeyCache(Mutex<LruCache<String, (ApiKeyRecord, Instant)>>);

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache(Mutex::new(LruCache::new(
            NonZeroUsize::new(1024).expect("non-zero"),
        )))
    }
}

impl KeyCache {
    /// The live key whose secret is `key` (HTTP bearer, SMTP AUTH
    /// password), from the cache while it is fresh; None for an unknown,
    /// revoked or expired key.
    ///
    /// # Errors
    /// The store failed.
    pub async fn verify(
        &self,
        store: &crate::store::Store,
        key: &str,
    ) -> crate::store::Result<Option<ApiKeyRecord>> {
        let hash = hash_key(key);
        let now = Instant::now();
        let cached = self
            .0
            .lock()
            .expect("key cache lock")
            .get(&hash)
            // An expiry (a rotation's grace period ending) applies at once,
            // cached or not.
            .filter(|(rec, at)| {
                now.duration_since(*at) < KEY_CACHE_TTL
                    && rec.expires_at.is_none_or(|t| t > crate::store::now_ms())
            })
            .map(|(rec, _)| rec.clone());
        if cached.is_some() {
            return Ok(cached);
        }
        let Some(rec) = store.find_api_key(&hash).await? else {
            tracing::info!(
                key_id = crate::keys::key_id(key).unwrap_or("malformed"),
                "unknown or revoked API key"
            );
            return Ok(None);
        };
        self.0
            .lock()
            .expect("key cache lock")
            .put(hash, (rec.clone(), now));
        // Last use, at most once per cache period per process; off the
        // request's path.
        let (store, id) = (store.clone(), rec.id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(&id, crate::store::now_ms()).await {
                tracing::debug!(error = %e, "noting a key's last use failed");
            }
        });
        Ok(Some(rec))
    }
}

/// The authenticated caller of a `/v1` route.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiKeyRecord);

impl Caller {
    /// 403 unless the key may use `stream`.
    pub fn require_stream(&self, stream: Stream) -> Result<(), ApiError> {
        if self.0.streams.contains(&stream) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_stream",
                format!("this API key is not allowed to use the {stream} stream"),
            )
            .field("stream"))
        }
    }

    /// 403 `forbidden_scope` unless the key holds `scope`.
    pub fn require_scope(&self, scope: ApiScope) -> Result<(), ApiError> {
        if self.0.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_scope",
                format!(
                    "this API key lacks the {scope} scope (mailroom keys create --scope {scope})"
                ),
            ))
        }
    }

    pub fn may_read(&self, stream: &str) -> bool {
        self.0.streams.iter().any(|s| s.as_str() == stream)
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let ip = state.limits.client_ip(&parts.headers, peer);
        if let Some(ip) = ip
            && let Some(wait) = state.limits.lockout.locked(ip)
        {
            state
                .metrics
                .rate_limited
                .get_or_create(&crate::metrics::Reason { reason: "lockout" })
                .inc();
            return Err(ApiError::too_many(
                "locked_out",
                "too many failed authentications from this address; try again later",
                wait,
            ));
        }
        // A missing header is a client that didn't try; a malformed or
        // unknown key counts towards the lockout.
        let failed = |reason: &'static str| {
            state
                .metrics
                .auth_failures
                .get_or_create(&crate::metrics::Reason { reason })
                .inc();
            if reason != "missing"
                && let Some(ip) = ip
                && state.limits.lockout.failed(ip)
            {
                state.metrics.lockouts.inc();
                tracing::warn!(%ip, "client locked out after repeated authentication failures");
            }
        };
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                failed("missing");
                unauthorized("missing Authorization: Bearer <API key> header")
            })?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                failed("malformed");
                unauthorized("Authorization header must be \"Bearer <API key>\"")
            })?;
        let rec = state
            .keys
            .verify(&state.store, key)
            .await
            .map_err(|e| ApiError::internal("looking up API key", &e))?
            .ok_or_else(|| {
                failed("unknown");
                unauthorized("unknown or revoked API key")
            })?;
        rate_limit(state, parts, rec)
    }
}

/// Each key's request budget: inbound webhooks have their own, so a burst
/// of bounces and the shop's sending don't starve each other.
fn rate_limit(state: &AppState, parts: &Parts, rec: ApiKeyRecord) -> Result<Caller, ApiError> {
    let path = parts.uri.path();
    let inbound = [
        "/v1/webhooks/bounces",
        "/v1/webhooks/complaints",
        "/v1/webhooks/unsubscribes",
    ]
    .contains(&path);
    let (limiter, reason) = if inbound {
        (&state.limits.webhooks, "webhook_requests")
    } else {
        (&state.limits.requests, "requests")
    };
    if let Err(wait) = limiter.check(&rec.id) {
        state
            .metrics
            .rate_limited
            .get_or_create(&crate::metrics::Reason { reason })
            .inc();
        return Err(ApiError::too_many(
            "rate_limited",
            "this API key is over its request rate; slow down",
            wait,
        ));
    }
    Ok(Caller(rec))
}

/// The body of an inbound webhook (bounces, complaints, `mailto:`
/// unsubscribes): raw mail from the MTA at the return-path domain. The
/// caller must hold the `webhooks` scope; the body is read within the
/// size limit.
pub struct InboundMail(pub axum::body::Bytes);

impl axum::extract::FromRequest<AppState> for InboundMail {
    type Rejection = ApiError;

    async fn from_request(
        req: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        Caller::from_request_parts(&mut parts, state)
            .await?
            .require_scope(ApiScope::Webhooks)?;
        let req = axum::extract::Request::from_parts(parts, body);
        let bytes = axum::body::Bytes::from_request(req, state).await;
        Ok(InboundMail(super::messages::body_bytes(bytes)?))
    }
}
