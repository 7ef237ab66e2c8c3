//! mailroom-lint: spam-risk scoring of an email's content, preheader,
//! links, images, structure, attachments, compliance and headers.
//!
//! ```
//! let email = lint::Email::parse(b"From: Shop <news@shop.example>\r\nSubject: Hi\r\n\r\nHello").unwrap();
//! let report = lint::lint(&email, &lint::Options::default());
//! assert!(report.score >= 0.0);
//! ```
//!
//! [`lint`] is a pure function: no I/O, no clock, no network. Rule ids and
//! the checks' limits live in [`rules`] (docs/lint-rules.md explains them);
//! what each finding is worth is learned from real mail ([`model`],
//! docs/lint-model.md).
//!
//! Layout:
//! - `rules`: the rule table and the numeric limits.
//! - `email`: the linter's view of a message, from mail-parser or bare HTML.
//! - `markup`: the HTML parse, streamed as a mail client would nest it.
//! - `html`: what a mail client shows — visible/hidden text, links, images.
//! - `text`: words, disguised words and trigger phrases.
//! - `checks/`: one module per rule category.
//! - `model`: features, the learned weights, the score.
//! - `report`: findings, score, rating.

mod checks;
mod email;
mod html;
mod markup;
pub mod model;
pub mod report;
pub mod rules;
mod text;

pub use email::{Attachment, Email, Headers, Mailbox, ParseError};
pub use report::{Finding, Options, Rating, Report, Stream, Summary};
pub use rules::{RULES, Rule, Severity};

/// Lints one message.
pub fn lint(email: &Email, options: &Options) -> Report {
    checks::run(email, options)
}

/// What the model sees of a message: for training (`lint-train`) and for
/// looking into a score.
pub fn features(email: &Email, options: &Options) -> model::Features {
    checks::examine(email, options).2
}
