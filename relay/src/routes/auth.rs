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
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer <API key> header"))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unauthorized("Authorization header must be \"Bearer <API key>\""))?;
        let hash = hash_key(key);
        let now = Instant::now();
        if let Some((rec, at)) = state.keys.0.lock().expect("key cache lock").get(&hash)
            && now.duration_since(*at) < KEY_CACHE_TTL
        {
            return Ok(Caller(rec.clone()));
        }
        let rec = state
            .store
            .find_api_key(&hash)
            .await
            .map_err(|e| ApiError::internal("looking up API key", &e))?
            .ok_or_else(|| {
                tracing::info!(
                    key_id = crate::keys::key_id(key).unwrap_or("malformed"),
                    "unknown or revoked API key"
                );
                unauthorized("unknown or revoked API key")
            })?;
        state
            .keys
            .0
            .lock()
            .expect("key cache lock")
            .put(hash, (rec.clone(), now));
        Ok(Caller(rec))
    }
}
