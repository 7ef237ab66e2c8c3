//! mailroom-lint: spam-risk scoring of a campaign's content, preheader and
//! links before it is sent.
//!
//! Not built yet: this crate holds the workspace slot for the lint issue
//! (a pure library over a parsed message, the `mailroom lint` command and the
//! relay's `POST /v1/lint`). Nothing depends on it so far.
