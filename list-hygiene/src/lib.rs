//! mailroom-list-hygiene: the decisions that keep a mailing list clean, as
//! pure code. The relay loads state, calls these and stores the result;
//! nothing here touches a database or the network.
//!
//! # Layout
//! - [`email`]: addresses and domains as mailroom accepts them (one
//!   grammar for the send API, suppression entries and lists).
//! - [`stream`]: transactional and marketing, which every suppression and
//!   policy is scoped by.
//! - [`subscriber`]: a subscriber's statuses and the one transition table
//!   (sign-up, confirmation, unsubscribe, bounce, complaint, prune, import).
//! - [`suppression`]: what an entry is: scope, target, reason.
//! - [`bounce`]: reading bounces (RFC 3464 DSNs and the common
//!   non-standard formats) into failed recipients with an RFC 3463 status
//!   and a class, classifying an SMTP reply the same way, and
//!   [`bounce::policy`], the one rule from a bounce to a suppression.
//! - [`token`]: signed unsubscribe, reference and confirmation tokens.
//! - [`verp`]: the per-recipient return path, made and found.
//! - [`address`]: the checks a sign-up address gets (syntax, IDN, role
//!   accounts, disposable domains, typos with a suggestion).
//! - [`clean`]: offline hygiene of a subscriber CSV (`mailroom list clean`).

pub mod address;
pub mod bounce;
pub mod clean;
pub mod email;
pub mod stream;
pub mod subscriber;
pub mod suppression;
pub mod token;
pub mod verp;
