use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

/// A TXT "cache" holding the records a test publishes: DKIM is verified
/// without DNS.
#[derive(Default)]
pub struct Published(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for Published {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, _: std::time::Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

impl Published {
    /// Publishes `value` (`v=DKIM1; k=...; p=...`) at `name` (`sel._domainkey.domain`).
    pub fn publish(&self, name: &str, value: &str) {
        let key = DomainKey::parse(value.as_bytes()).expect("valid DKIM record");
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        self.0
            .lock()
            .unwrap()
            .insert(fqdn.into(), Txt::DomainKey(Arc::new(key)));
    }

    /// Verifies every DKIM signature of `raw`; returns (domain, selector,
    /// signed header names) of each that passes, and panics on any failure.
    pub async fn verify(&self, raw: &[u8]) -> Vec<(String, String, Vec<String>)> {
        let msg = AuthenticatedMessage::parse(raw).expect("parsable message");
        let auth = MessageAuthenticator::new_system_conf().expect("resolver config");
        let results = auth
            .verify_dkim(Parameters::new(&msg).with_txt_cache(self))
            .await;
        assert!(!results.is_empty(), "no DKIM signature found");
        results
            .iter()
            .map(|r| {
                assert_eq!(r.result(), &DkimResult::Pass, "DKIM did not pass");
                let sig = r.signature().expect("signature");
                (sig.d.clone(), sig.s.clone(), sig.h.clone())
            })
            .collect()
    }
}
