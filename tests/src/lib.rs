//! Helpers for mailroom's end-to-end tests: the real `mailroom` binary
//! started on a free port, a real SMTP sink on loopback, DKIM verification
//! against the generated public key.
//!
//! # Layout
//! - [`smtp_sink`]: the SMTP server the relay delivers to.
//! - [`smtp_client`]: a hand-driven SMTP client for the relay's listeners.
//! - [`relay`]: starting, killing and talking to the `mailroom` process.
//! - [`dkim`]: verifying signatures offline with mail-auth.
//! - [`dns`]: an authoritative DNS server on loopback, for the direct-MX
//!   route and `check-domain`.
//! - [`webhook_sink`]: an HTTP endpoint receiving the relay's event webhooks.

pub mod dkim;
pub mod dns;
pub mod relay;
pub mod smtp_client;
pub mod smtp_sink;
pub mod webhook_sink;

/// An HTTP client builder. The workspace builds reqwest's rustls without a
/// built-in crypto provider (the relay uses aws-lc-rs, as lettre does), so
/// one is installed first.
pub fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}
