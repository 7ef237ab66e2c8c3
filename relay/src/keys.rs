//! API keys: `mr_<id>_<secret>`. The id is public and safe to log; only a
//! SHA-256 of the whole key is stored. The secret is 32 random bytes, so a
//! fast hash is enough: there is nothing to brute-force as with passwords.

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::domain::Stream;
use crate::store::{NewApiKey, Store, StoreError};

/// What a key may do beside sending on its streams. Each is an
/// administrative power of its own, given only on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiScope {
    /// The inbound bounce, complaint and unsubscribe webhooks, and the
    /// outbound event endpoints and their deliveries.
    Webhooks,
    /// Lists and subscribers.
    Lists,
    /// The suppression list and the bounce summary.
    Suppressions,
    /// `GET /metrics`, for the Prometheus scraper.
    Metrics,
    /// Reports on the relay's own set-up: `GET /v1/domains`.
    Admin,
}

impl ApiScope {
    pub const ALL: [ApiScope; 5] = [
        ApiScope::Webhooks,
        ApiScope::Lists,
        ApiScope::Suppressions,
        ApiScope::Metrics,
        ApiScope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Webhooks => "webhooks",
            ApiScope::Lists => "lists",
            ApiScope::Suppressions => "suppressions",
            ApiScope::Metrics => "metrics",
            ApiScope::Admin => "admin",
        }
    }
}

impl std::fmt::Display for ApiScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ApiScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ApiScope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scope {s:?}: expected webhooks, lists, suppressions, metrics or admin"
                )
            })
    }
}

/// A freshly made key: `secret` is shown once and never stored.
pub struct IssuedKey {
    pub id: String,
    pub secret: String,
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The public id part of a presented key, for logs; None if malformed.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("mr_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && !secret.is_empty()).then_some(id)
}

/// Creates and stores a key that may send on `streams` and use `scopes`,
/// valid until `expires_at` (Unix ms) if given.
///
/// # Errors
/// The store failed.
pub async fn create(
    store: &Store,
    name: &str,
    streams: &[Stream],
    scopes: &[ApiScope],
    expires_at: Option<i64>,
) -> Result<IssuedKey, StoreError> {
    let mut rng = rand::rng();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let full = format!("mr_{id}_{}", hex::encode(secret));
    let mut streams = streams.to_vec();
    streams.sort();
    streams.dedup();
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    store
        .insert_api_key(&NewApiKey {
            id: id.clone(),
            name: name.to_owned(),
            secret_hash: hash_key(&full),
            streams,
            scopes,
            expires_at,
        })
        .await?;
    Ok(IssuedKey { id, secret: full })
}

/// Why a key couldn't be rotated.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("no live key with id {0}")]
    NoSuchKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Issues a new key with the old one's name, streams and scopes, and lets
/// the old one live on for `grace` (so clients can be moved over without
/// an outage), then expire.
///
/// # Errors
/// No live key with that id, or the store failed.
pub async fn rotate(
    store: &Store,
    id: &str,
    grace: std::time::Duration,
) -> Result<IssuedKey, RotateError> {
    let now = crate::store::now_ms();
    let old = store
        .get_api_key(id)
        .await?
        .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|t| t > now))
        .ok_or_else(|| RotateError::NoSuchKey(id.to_string()))?;
    let new = create(store, &old.name, &old.streams, &old.scopes, None).await?;
    store
        .expire_api_key(id, now + grace.as_millis() as i64)
        .await?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_created_key_is_found_by_its_hash_and_not_stored_in_clear() {
        for t in crate::store::testing::all().await {
            let k = create(
                &t.store,
                "shop",
                &[Stream::Marketing, Stream::Transactional, Stream::Marketing],
                &[ApiScope::Suppressions, ApiScope::Webhooks],
                None,
            )
            .await
            .unwrap();
            assert_eq!(key_id(&k.secret), Some(k.id.as_str()));
            let found = t
                .store
                .find_api_key(&hash_key(&k.secret))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                found.streams,
                vec![Stream::Transactional, Stream::Marketing]
            );
            assert_eq!(
                found.scopes,
                vec![ApiScope::Webhooks, ApiScope::Suppressions]
            );
            assert!(
                t.store
                    .find_api_key(&hash_key("mr_000000000000_nope"))
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(t.store.revoke_api_key(&k.id).await.unwrap());
            assert!(
                t.store
                    .find_api_key(&hash_key(&k.secret))
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(!t.store.revoke_api_key(&k.id).await.unwrap());
        }
    }

    #[tokio::test]
    async fn rotation_keeps_the_old_key_for_the_grace_period_and_expiry_ends_a_key() {
        for t in crate::store::testing::all().await {
            let old = create(
                &t.store,
                "shop",
                &[Stream::Marketing],
                &[ApiScope::Lists],
                None,
            )
            .await
            .unwrap();
            let new = rotate(&t.store, &old.id, std::time::Duration::from_secs(3600))
                .await
                .unwrap();
            let found = t
                .store
                .find_api_key(&hash_key(&new.secret))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (found.name.as_str(), found.scopes.clone()),
                ("shop", vec![ApiScope::Lists])
            );
            let still = t
                .store
                .find_api_key(&hash_key(&old.secret))
                .await
                .unwrap()
                .unwrap();
            assert!(still.expires_at.is_some(), "in its grace period");
            // A rotation with no grace ends the key at once.
            rotate(&t.store, &new.id, std::time::Duration::ZERO)
                .await
                .unwrap();
            assert!(
                t.store
                    .find_api_key(&hash_key(&new.secret))
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(matches!(
                rotate(&t.store, &new.id, std::time::Duration::ZERO).await,
                Err(RotateError::NoSuchKey(_))
            ));
            let expired = create(&t.store, "x", &[Stream::Marketing], &[], Some(1))
                .await
                .unwrap();
            assert!(
                t.store
                    .find_api_key(&hash_key(&expired.secret))
                    .await
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn malformed_keys_have_no_id() {
        assert_eq!(key_id("mr_abcdefabcdef_x"), Some("abcdefabcdef"));
        for k in [
            "",
            "mr_",
            "mr_short_x",
            "xx_abcdefabcdef_x",
            "mr_abcdefabcdef_",
        ] {
            assert_eq!(key_id(k), None, "{k}");
        }
    }
}
