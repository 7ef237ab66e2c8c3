//! Who a returned message (a bounce, a complaint) is about, as far as
//! mailroom can prove it. A bounce is text anyone can write; what makes
//! mailroom act on one is that it names mail mailroom sent:
//!
//! 1. a VERP return path whose HMAC tag verifies (or, for complaints, the
//!    signed `X-Mailroom-Ref` header): the message and the recipient it was
//!    sent to, proven. The address is the one mailroom stored, never one
//!    read from the bounce;
//! 2. else the returned message's Message-ID (or an untagged VERP path of
//!    an older relay) *and* the failed address, both matching a recipient
//!    of a message accepted within `feedback_window`;
//! 3. else nothing: unattributed, recorded, applied to nobody (unless
//!    `suppress_unattributed`).
//!
//! A tag we did not make, one older than the window, or a second report of
//! what was already applied is refused and counted.

use std::fmt;

use list_hygiene::verp::{Check, Verp};

use crate::domain::MessageId;
use crate::store::{self, SentBy, SentRecipient, Store, now_ms};
use crate::unsubscribe::Links;

/// Why a returned message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A VERP tag or reference we did not make.
    Forged,
    /// Ours, but older than `feedback_window` (or its message is gone).
    Stale,
    /// The same bounce or complaint for the same recipient was applied
    /// already.
    Replayed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Forged => "forged",
            Refusal::Stale => "stale",
            Refusal::Replayed => "replayed",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Forged => "its VERP tag or reference was not made by this relay",
            Refusal::Stale => "its VERP tag or reference is older than feedback_window",
            Refusal::Replayed => "the same report for the same recipient was applied already",
        })
    }
}

/// What a returned message's proof names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// A verified tag or reference: this recipient of this message.
    Verified(SentRecipient),
    /// No verified proof; an untagged VERP path, if any, claims this
    /// message (a hint for matching, nothing more).
    Unproven(Option<MessageId>),
    /// A proof that does not hold.
    Refused(Refusal),
}

/// Traces returned messages against the store and the relay's key.
#[derive(Debug, Clone, Copy)]
pub struct Tracer<'a> {
    pub store: &'a Store,
    pub links: &'a Links,
    pub window_ms: i64,
}

impl Tracer<'_> {
    /// Whether a VERP address found in a returned message is one we made,
    /// within the window (no lookup).
    pub fn check(&self, verp: &Verp) -> Check {
        verp.check(self.links.signer(), now_ms(), self.window_ms)
    }

    /// What a VERP address found in a returned message proves.
    ///
    /// # Errors
    /// Store errors looking the recipient up.
    pub async fn verp(&self, verp: Option<&Verp>) -> store::Result<Proof> {
        match verp {
            Some(v) => self.checked(v, self.check(v)).await,
            None => Ok(Proof::Unproven(None)),
        }
    }

    /// What `verp`, already checked (see [`Tracer::check`]), proves.
    ///
    /// # Errors
    /// Store errors looking the recipient up.
    pub async fn checked(&self, verp: &Verp, check: Check) -> store::Result<Proof> {
        match check {
            Check::Verified {
                message,
                recipient_index,
            } => {
                self.recipient(MessageId::from_uuid(message), recipient_index)
                    .await
            }
            Check::Untagged => Ok(Proof::Unproven(MessageId::parse(&verp.message_id))),
            Check::Forged => Ok(Proof::Refused(Refusal::Forged)),
            Check::Stale => Ok(Proof::Refused(Refusal::Stale)),
        }
    }

    /// What a signed reference header value (`X-Mailroom-Ref`) proves.
    ///
    /// # Errors
    /// Store errors looking the recipient up.
    pub async fn reference(&self, reference: &str) -> store::Result<Proof> {
        let Some((id, idx)) = self.links.verify_reference(reference) else {
            return Ok(Proof::Refused(Refusal::Forged));
        };
        if !self.within_window(&id) {
            return Ok(Proof::Refused(Refusal::Stale));
        }
        self.recipient(id, idx).await
    }

    /// The stored recipient a verified proof names; stale when the message
    /// is no longer stored.
    async fn recipient(&self, id: MessageId, idx: u16) -> store::Result<Proof> {
        Ok(
            match self.store.sent_recipient(&id, i64::from(idx)).await? {
                Some(sent) => Proof::Verified(sent),
                None => Proof::Refused(Refusal::Stale),
            },
        )
    }

    /// The recipient `address` of a message accepted within the window
    /// that the returned message names by the relay's id (`hint`, from an
    /// untagged VERP path) or by its Message-ID header field.
    ///
    /// # Errors
    /// Store errors.
    pub async fn by_message(
        &self,
        hint: Option<&MessageId>,
        message_id_header: Option<&str>,
        address: &str,
    ) -> store::Result<Option<SentRecipient>> {
        let since = now_ms() - self.window_ms;
        if let Some(id) = hint
            && let Some(sent) = self.store.find_sent(SentBy::Id(id), address, since).await?
        {
            return Ok(Some(sent));
        }
        match message_id_header {
            Some(h) => {
                self.store
                    .find_sent(SentBy::MessageIdHeader(h), address, since)
                    .await
            }
            None => Ok(None),
        }
    }

    fn within_window(&self, id: &MessageId) -> bool {
        list_hygiene::verp::within_window(id.as_uuid(), now_ms(), self.window_ms)
    }
}
