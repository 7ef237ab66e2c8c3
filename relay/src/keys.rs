//! API keys: `mr_<id>_<secret>`. The id is public and safe to log; only a
//! SHA-256 of the whole key is stored. The secret is 32 random bytes, so a
//! fast hash is enough: there is nothing to brute-force as with passwords.

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::domain::Stream;
use crate::store::{NewApiKey, Store, StoreError};

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

/// Creates and stores a key scoped to `streams`.
///
/// # Errors
/// The store failed.
pub async fn create(
    store: &Store,
    name: &str,
    streams: &[Stream],
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
    store
        .insert_api_key(&NewApiKey {
            id: id.clone(),
            name: name.to_owned(),
            secret_hash: hash_key(&full),
            streams,
        })
        .await?;
    Ok(IssuedKey { id, secret: full })
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
