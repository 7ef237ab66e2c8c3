//! Helpers for mailroom's end-to-end tests: the real `mailroom` binary
//! started on a free port, a real SMTP sink on loopback, DKIM verification
//! against the generated public key.
//!
//! # Layout
//! - [`smtp_sink`]: the SMTP server the relay delivers to.
//! - [`relay`]: starting, killing and talking to the `mailroom` process.
//! - [`dkim`]: verifying signatures offline with mail-auth.
//! - [`dns`]: a DNS server answering MX queries, for the direct-MX route.

pub mod dkim;
pub mod dns;
pub mod relay;
pub mod smtp_sink;
