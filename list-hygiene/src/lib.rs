//! mailroom-list-hygiene: keeping a mailing list clean.
//!
//! Built so far: [`address`], the checks an address gets before it goes on
//! a list (syntax by a real parser, IDN, role accounts, disposable domains,
//! typos with a suggestion); [`clean`], offline hygiene of a subscriber CSV
//! (`mailroom list clean`); and [`bounce`], reading bounces — RFC 3464 delivery status
//! notifications and the common non-standard formats — into failed
//! recipients with an RFC 3463 status and a class (hard, soft, mailbox
//! full, policy, transient, unknown), with auto-replies told apart. It is
//! pure: bytes in, a [`bounce::Bounce`] out. `mailroom bounce parse` prints
//! what it understood.
//!
//! Still to come (see the list-hygiene issue): subscribers and double
//! opt-in, suppression enforced by the relay, complaint (ARF) processing,
//! one-click unsubscribe, inactive pruning, CSV hygiene and event webhooks.
//!
//! Layout:
//! - `address.rs`: address checks; `data/` holds the disposable-domain lists.
//! - `clean.rs`: CSV in, kept rows and a report of removed rows out.
//! - `bounce/`: `mod.rs` (entry point, auto-replies, VERP), `dsn.rs`
//!   (RFC 3464), `text.rs` (non-standard bodies), `classify.rs` (RFC 3463
//!   codes and diagnostic words → class).

pub mod address;
pub mod bounce;
pub mod clean;
