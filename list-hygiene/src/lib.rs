//! mailroom-list-hygiene: double opt-in, bounce and complaint processing,
//! one-click unsubscribe, suppression and inactive pruning.
//!
//! Not built yet: this crate holds the workspace slot for the list-hygiene
//! issue. The relay already gives it the hooks it needs: a VERP Return-Path
//! per message and recipient (`bounces+MESSAGEID-INDEX@RETURN_PATH`), and the
//! `bounced` recipient state with the SMTP code and reply of every attempt.
