//! DKIM: one signer per (domain, selector), built at start-up, and key
//! generation for `mailroom dkim keygen`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::generate::DkimKeyPair;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;

use crate::config::DkimSettings;
use crate::domain::Stream;

/// Headers signed on every message. Listing `From` twice over-signs it: no
/// second From can be added without breaking the signature. Headers listed
/// but absent are over-signed too (mail-auth adds them to `h=`), so nobody
/// can add a Reply-To or List-Unsubscribe in transit.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Reply-To",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    Ed25519,
    Rsa,
}

enum Key {
    Ed25519(DkimSigner<Ed25519Key, Done>),
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
}

/// A loaded signing key for one domain and selector.
pub struct Signer {
    domain: String,
    selector: String,
    key: Key,
    /// The DNS record that publishes this key (`v=DKIM1; k=...; p=...`),
    /// for `check-domain` to compare with what is published.
    public_record: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        write!(f, "Signer({}/{})", self.domain, self.selector)
    }
}

impl Signer {
    /// Parses a PEM private key: PKCS#8 Ed25519, PKCS#8 RSA or PKCS#1 RSA.
    ///
    /// # Errors
    /// Not PEM, or not a key of a supported kind.
    pub fn from_pem(domain: &str, selector: &str, pem_text: &str) -> anyhow::Result<Self> {
        let block = pem::parse(pem_text).context("not a PEM file")?;
        let rsa = |der: PrivateKeyDer<'_>| {
            let key = RsaKey::<Sha256>::from_key_der(der)?;
            let public = key.public_key();
            Ok::<_, mail_auth::Error>((key, public))
        };
        let (key, public_record) = match block.tag() {
            "RSA PRIVATE KEY" => {
                let (k, public) = rsa(PrivateKeyDer::Pkcs1(block.contents().to_vec().into()))
                    .map_err(|e| anyhow::anyhow!("not an RSA key: {e}"))?;
                (
                    Key::Rsa(Self::builder(k, domain, selector)),
                    rsa_record(&public)?,
                )
            }
            "PRIVATE KEY" => match Ed25519Key::from_pkcs8_maybe_unchecked_der(block.contents()) {
                Ok(k) => {
                    let record = ed25519_record(&k.public_key());
                    (Key::Ed25519(Self::builder(k, domain, selector)), record)
                }
                Err(_) => {
                    let (k, public) = rsa(PrivateKeyDer::Pkcs8(block.contents().to_vec().into()))
                        .map_err(|e| {
                        anyhow::anyhow!("neither an Ed25519 nor an RSA key: {e}")
                    })?;
                    (
                        Key::Rsa(Self::builder(k, domain, selector)),
                        rsa_record(&public)?,
                    )
                }
            },
            other => anyhow::bail!(
                "unsupported PEM block {other:?}: expected PRIVATE KEY or RSA PRIVATE KEY"
            ),
        };
        Ok(Signer {
            domain: domain.to_ascii_lowercase(),
            selector: selector.to_owned(),
            key,
            public_record,
        })
    }

    fn builder<K: mail_auth::common::crypto::SigningKey>(
        key: K,
        domain: &str,
        selector: &str,
    ) -> DkimSigner<K, Done> {
        DkimSigner::from_key(key)
            .domain(domain.to_ascii_lowercase())
            .selector(selector)
            .headers(SIGNED_HEADERS.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
    }

    /// RSA signing costs about a millisecond of CPU; Ed25519 microseconds.
    pub fn is_rsa(&self) -> bool {
        matches!(self.key, Key::Rsa(_))
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// Where the public key is published: `SEL._domainkey.DOMAIN`.
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record to publish at [`Signer::dns_name`].
    pub fn public_record(&self) -> &str {
        &self.public_record
    }

    /// `domain/selector`, as recorded with each message.
    pub fn label(&self) -> String {
        format!("{}/{}", self.domain, self.selector)
    }

    /// Returns `message` with a DKIM-Signature header in front.
    ///
    /// # Errors
    /// The message has none of the signed headers, or the key failed.
    pub fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let header = match &self.key {
            Key::Ed25519(s) => s.sign(message),
            Key::Rsa(s) => s.sign(message),
        }
        .map_err(|e| anyhow::anyhow!("DKIM signing failed: {e}"))?
        .to_header();
        let mut out = Vec::with_capacity(header.len() + message.len() + 2);
        out.extend_from_slice(header.as_bytes());
        if !header.ends_with("\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(message);
        Ok(out)
    }
}

/// Every configured signer, looked up by From domain and stream.
#[derive(Debug, Default)]
pub struct Signers {
    by_domain: HashMap<(String, Option<Stream>), Arc<Signer>>,
    /// Capture mode's development key (PEM, selector) for domains with no
    /// configured key; a signer per domain is made from it on first use so
    /// that `d=` always matches the From domain.
    fallback: Option<(String, String)>,
    fallback_signers: std::sync::Mutex<HashMap<String, Arc<Signer>>>,
}

impl Signers {
    /// Loads each `[[dkim]]` key file.
    ///
    /// # Errors
    /// A key file can't be read or parsed (the error names it).
    pub fn load(entries: &[DkimSettings]) -> anyhow::Result<Self> {
        let mut by_domain = HashMap::new();
        for e in entries {
            let text = std::fs::read_to_string(&e.key)
                .with_context(|| format!("reading DKIM key {}", e.key.display()))?;
            let signer = Signer::from_pem(&e.domain, &e.selector, &text)
                .with_context(|| format!("loading DKIM key {}", e.key.display()))?;
            by_domain.insert((e.domain.to_ascii_lowercase(), e.stream), Arc::new(signer));
        }
        Ok(Signers {
            by_domain,
            ..Default::default()
        })
    }

    pub fn insert(&mut self, stream: Option<Stream>, signer: Signer) {
        self.by_domain
            .insert((signer.domain.clone(), stream), Arc::new(signer));
    }

    /// Signs every otherwise unsigned domain with this key (capture mode only).
    pub fn set_fallback(&mut self, private_pem: String, selector: &str) {
        self.fallback = Some((private_pem, selector.to_owned()));
    }

    /// The signer for mail from `domain` on `stream`: a stream-specific key
    /// first, then the domain's shared key, then the capture fallback.
    pub fn for_domain(&self, domain: &str, stream: Stream) -> Option<Arc<Signer>> {
        if let Some(s) = self
            .by_domain
            .get(&(domain.to_owned(), Some(stream)))
            .or_else(|| self.by_domain.get(&(domain.to_owned(), None)))
        {
            return Some(s.clone());
        }
        let (pem, selector) = self.fallback.as_ref()?;
        let mut cache = self.fallback_signers.lock().expect("fallback signer lock");
        if let Some(s) = cache.get(domain) {
            return Some(s.clone());
        }
        let signer = Arc::new(Signer::from_pem(domain, selector, pem).ok()?);
        cache.insert(domain.to_owned(), signer.clone());
        Some(signer)
    }
}

/// A new key pair: the private key as PEM and the DNS record to publish.
pub struct GeneratedKey {
    pub private_pem: String,
    /// `SEL._domainkey.DOMAIN`
    pub dns_name: String,
    /// `v=DKIM1; k=...; p=...`
    pub dns_value: String,
}

/// Generates a DKIM key pair (RSA is 2048 bits).
///
/// # Errors
/// The key generator failed.
pub fn generate(
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
) -> anyhow::Result<GeneratedKey> {
    let (private_pem, dns_value) = match algorithm {
        Algorithm::Ed25519 => {
            let pair = DkimKeyPair::generate_ed25519().map_err(|e| anyhow::anyhow!("{e}"))?;
            let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pair.private_key().to_vec()));
            (pem, ed25519_record(pair.public_key()))
        }
        Algorithm::Rsa => {
            let pair = DkimKeyPair::generate_rsa(2048).map_err(|e| anyhow::anyhow!("{e}"))?;
            let pem = pem::encode(&pem::Pem::new(
                "RSA PRIVATE KEY",
                pair.private_key().to_vec(),
            ));
            (pem, rsa_record(pair.public_key())?)
        }
    };
    Ok(GeneratedKey {
        private_pem,
        dns_name: format!("{selector}._domainkey.{}", domain.to_ascii_lowercase()),
        dns_value,
    })
}

/// The DKIM record for an Ed25519 public key: RFC 8463 publishes the bare
/// 32 bytes.
fn ed25519_record(public: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("v=DKIM1; k=ed25519; p={}", b64.encode(public))
}

/// The DKIM record for an RSA public key given as PKCS#1 (as ring and
/// mail-auth hand it out). RFC 6376 §3.6.1: `p=` holds a
/// SubjectPublicKeyInfo, as openssl writes it.
fn rsa_record(pkcs1: &[u8]) -> anyhow::Result<String> {
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    use rsa::pkcs8::EncodePublicKey as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let spki = rsa::RsaPublicKey::from_pkcs1_der(pkcs1)
        .context("reading RSA public key")?
        .to_public_key_der()
        .context("encoding RSA public key")?;
    Ok(format!("v=DKIM1; k=rsa; p={}", b64.encode(spki.as_bytes())))
}

/// Writes a generated key to `out` (mode 0600 on Unix; refuses to overwrite).
///
/// # Errors
/// The file exists or can't be written.
pub fn write_private_key(out: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    f.write_all(pem.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_sign() {
        for alg in [Algorithm::Ed25519, Algorithm::Rsa] {
            let k = generate("Shop.Example", "s1", alg).unwrap();
            assert_eq!(k.dns_name, "s1._domainkey.shop.example");
            assert!(k.dns_value.starts_with("v=DKIM1; k="), "{}", k.dns_value);
            let signer = Signer::from_pem("shop.example", "s1", &k.private_pem).unwrap();
            let signed = signer
                .sign(b"From: a@shop.example\r\nSubject: hi\r\n\r\nbody\r\n")
                .unwrap();
            let text = String::from_utf8(signed).unwrap();
            assert!(text.starts_with("DKIM-Signature:"), "{text}");
            assert!(text.contains("d=shop.example"), "{text}");
            assert!(text.contains("s=s1"), "{text}");
            assert!(text.contains("c=relaxed/relaxed"), "{text}");
            assert!(text.ends_with("From: a@shop.example\r\nSubject: hi\r\n\r\nbody\r\n"));
        }
    }

    #[test]
    fn a_garbage_key_file_is_an_error_not_a_panic() {
        assert!(Signer::from_pem("x.example", "s", "hello").is_err());
        let bogus = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(Signer::from_pem("x.example", "s", &bogus).is_err());
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert!(Signer::from_pem("x.example", "s", &cert).is_err());
    }

    #[test]
    fn a_stream_specific_key_wins_over_the_shared_one() {
        let mut s = Signers::default();
        let shared = generate("shop.example", "shared", Algorithm::Ed25519).unwrap();
        let mkt = generate("shop.example", "mkt", Algorithm::Ed25519).unwrap();
        s.insert(
            None,
            Signer::from_pem("shop.example", "shared", &shared.private_pem).unwrap(),
        );
        s.insert(
            Some(Stream::Marketing),
            Signer::from_pem("shop.example", "mkt", &mkt.private_pem).unwrap(),
        );
        assert_eq!(
            s.for_domain("shop.example", Stream::Marketing)
                .unwrap()
                .label(),
            "shop.example/mkt"
        );
        assert_eq!(
            s.for_domain("shop.example", Stream::Transactional)
                .unwrap()
                .label(),
            "shop.example/shared"
        );
        assert!(
            s.for_domain("other.example", Stream::Transactional)
                .is_none()
        );
    }
}
