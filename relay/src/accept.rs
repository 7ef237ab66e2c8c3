//! The accept pipeline: a validated message in, a stored message (with
//! each recipient queued or held back by the suppression list) out. Every
//! ingress calls it — `POST /v1/messages` and its batch form, the double
//! opt-in confirmations the relay writes itself, and the SMTP listener —
//! so each check happens once, in one order:
//!
//! 1. scope: the submitter may use the message's stream;
//! 2. limits: the key's `messages_per_hour` on that stream;
//! 3. a DKIM key for the From domain (unless `allow_unsigned`);
//! 4. list headers on marketing mail (RFC 8058 one-click, `mailto:`,
//!    `List-Id`) and the signed complaint reference;
//! 5. rendering and DKIM signing;
//! 6. the lint gate (`lint_max_score` of the stream);
//! 7. the suppression check, recipient by recipient;
//! 8. enqueue: one group commit with the idempotency key; only then is
//!    the message accepted (HTTP 202, SMTP 250).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::compose::{self, Rendered};
use crate::config::Settings;
use crate::delivery::dkim::{Signer, Signers};
use crate::domain::{EmailAddress, MessageId, NewMessage, RecipientKind, Stream};
use crate::events::{self, Event, EventKind};
use crate::limits::Limits;
use crate::linting;
use crate::metrics::Metrics;
use crate::queue::{EnqueueError, Enqueuer};
use crate::rawmail;
use crate::store::{
    ApiKeyRecord, EnqueueOutcome, IdempotencyClaim, PreparedMessage, PreparedRecipient, Store,
    now_ms,
};
use crate::suppression::Suppressions;
use crate::unsubscribe::{self, Links};

/// Messages up to this size (bodies and attachments) render on the calling
/// task's thread.
const INLINE_RENDER_LIMIT: usize = 64 * 1024;

/// The key id recorded for mail the relay writes itself.
const RELAY_KEY_ID: &str = "system";

/// Who hands a message in.
#[derive(Debug, Clone, Copy)]
pub enum Submitter<'a> {
    /// An API key (HTTP bearer, SMTP AUTH): its streams, its budget.
    Key(&'a ApiKeyRecord),
    /// The relay's own mail (double opt-in confirmations): any stream, no
    /// budget; recorded as key `system`.
    Relay,
}

impl Submitter<'_> {
    fn key_id(&self) -> &str {
        match self {
            Submitter::Key(k) => &k.id,
            Submitter::Relay => RELAY_KEY_ID,
        }
    }
}

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    #[error("this API key is not allowed to use the {0} stream")]
    ForbiddenStream(Stream),
    #[error("this API key is over its {stream} stream's messages_per_hour")]
    RateLimited {
        stream: Stream,
        retry_after: Duration,
    },
    #[error(
        "no DKIM key is configured for {domain} on the {stream} stream; add a [[dkim]] entry or set allow_unsigned"
    )]
    NoDkimKey { domain: String, stream: Stream },
    #[error("Unknown stream {0:?} in X-Mailroom-Stream: transactional or marketing")]
    UnknownStream(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the message scores {score:.1} for spam risk, above the {stream} stream's limit of {max:.1}; see the report",
        score = report.score
    )]
    LintFailed {
        stream: Stream,
        max: f64,
        report: Box<lint::Report>,
    },
    #[error("the relay is shutting down; retry")]
    ShuttingDown,
    /// Anything else: the store, a task that died. The cause is for the log.
    #[error("{context}")]
    Internal {
        context: &'static str,
        #[source]
        source: anyhow::Error,
    },
}

impl AcceptError {
    fn internal(context: &'static str, e: impl Into<anyhow::Error>) -> AcceptError {
        AcceptError::Internal {
            context,
            source: e.into(),
        }
    }
}

/// What one recipient came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum RecipientStatus {
    Queued,
    /// On the suppression list: stored, never sent.
    Suppressed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientReceipt {
    pub address: String,
    #[serde(flatten)]
    pub status: RecipientStatus,
}

/// What the submitter is told (the 202 body, replayed byte for byte on a
/// retry with the same idempotency key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub id: MessageId,
    pub stream: Stream,
    /// The Message-ID header.
    pub message_id: String,
    pub recipients: Vec<RecipientReceipt>,
}

/// A message that passed every check, ready for [`Pipeline::submit`].
#[derive(Debug)]
pub struct Prepared {
    message: PreparedMessage,
    pub receipt: Receipt,
}

/// What a submission came to.
#[derive(Debug)]
pub enum Submitted {
    /// Committed now.
    Accepted(Receipt),
    /// Committed earlier under the same idempotency key: the saved answer.
    Replayed(String),
    /// The idempotency key was used before with another request.
    KeyReused,
}

impl Submitted {
    /// The receipt of a message submitted without an idempotency key.
    ///
    /// # Errors
    /// A replay or reused key, which only an idempotency key can cause.
    fn receipt(self) -> Result<Receipt, AcceptError> {
        match self {
            Submitted::Accepted(receipt) => Ok(receipt),
            Submitted::Replayed(_) | Submitted::KeyReused => Err(AcceptError::internal(
                "storing message",
                anyhow::anyhow!("an idempotency outcome for a message without a key"),
            )),
        }
    }
}

/// What the store keeps beside the rendered message.
struct Envelope<'a> {
    sender: &'a EmailAddress,
    subject: &'a str,
    recipients: &'a [(RecipientKind, &'a EmailAddress)],
    tags: String,
    metadata: String,
}

/// The stream of a message that arrived whole: its `X-Mailroom-Stream`
/// (or Postmark's `X-PM-Message-Stream`) header, else the key's only
/// stream, else transactional (as Postmark defaults to its transactional
/// stream).
fn raw_stream(raw: &rawmail::RawMessage, key: &ApiKeyRecord) -> Result<Stream, AcceptError> {
    match rawmail::STREAM_HEADERS.iter().find_map(|h| raw.value(h)) {
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "transactional" | "outbound" => Ok(Stream::Transactional),
            "marketing" | "broadcast" | "broadcasts" => Ok(Stream::Marketing),
            _ => Err(AcceptError::UnknownStream(v)),
        },
        None => match key.streams.as_slice() {
            [one] => Ok(*one),
            _ => Ok(Stream::Transactional),
        },
    }
}

/// The one From address of a message that arrived whole.
fn one_from(parsed: &mail_parser::Message<'_>) -> Result<EmailAddress, AcceptError> {
    let addresses: Vec<&str> = parsed
        .from()
        .map(|f| f.iter().filter_map(|a| a.address()).collect())
        .unwrap_or_default();
    match addresses.as_slice() {
        [one] => EmailAddress::parse(one)
            .map_err(|e| AcceptError::Invalid(format!("the From address {one:?}: {e}"))),
        [] => Err(AcceptError::Invalid(
            "the message has no From: header with an address".into(),
        )),
        _ => Err(AcceptError::Invalid(
            "the From: header names several addresses; send from one".into(),
        )),
    }
}

/// The pipeline's parts; one per process, shared.
#[derive(Clone)]
pub struct Pipeline {
    pub store: Store,
    pub enqueuer: Enqueuer,
    pub signers: Arc<Signers>,
    pub settings: Arc<Settings>,
    pub suppressions: Arc<Suppressions>,
    pub links: Arc<Links>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    /// Wakes the webhook dispatcher for `suppressed` events.
    pub wake: Arc<Notify>,
}

impl Pipeline {
    /// Prepares and submits: the whole pipeline.
    ///
    /// # Errors
    /// See [`Pipeline::prepare`] and [`Pipeline::submit`].
    pub async fn accept(
        &self,
        who: Submitter<'_>,
        msg: NewMessage,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<Submitted, AcceptError> {
        let prepared = self.prepare(who, msg, idempotency).await?;
        self.submit(prepared).await
    }

    /// The whole pipeline for a message without an idempotency key (batch
    /// items, the relay's own mail): its receipt.
    ///
    /// # Errors
    /// As [`Pipeline::accept`].
    pub async fn accept_once(
        &self,
        who: Submitter<'_>,
        msg: NewMessage,
    ) -> Result<Receipt, AcceptError> {
        self.accept(who, msg, None).await?.receipt()
    }

    /// Every check and the signing: everything up to the commit.
    ///
    /// # Errors
    /// The stream is not the key's, the key is over its budget, no DKIM
    /// key, the message doesn't render, the lint gate refuses it; store
    /// errors checking the suppression list.
    pub async fn prepare(
        &self,
        who: Submitter<'_>,
        mut msg: NewMessage,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<Prepared, AcceptError> {
        let stream = msg.stream;
        let signer = self.admit(who, stream, msg.from.address().domain().as_str())?;
        let id = MessageId::new();
        self.add_list_headers(&mut msg, &id);
        // An RSA signature (~1 ms) or a big message would stall an async
        // worker thread: those go to the blocking pool. A small
        // Ed25519-signed message renders in tens of microseconds, less than
        // the hand-off to another thread would cost.
        let heavy =
            signer.as_ref().is_some_and(|s| s.is_rsa()) || msg.approx_size() > INLINE_RENDER_LIMIT;
        let rendered = if heavy {
            let msg = msg.clone();
            tokio::task::spawn_blocking(move || compose::render(&msg, &id, signer.as_deref()))
                .await
                .map_err(|e| AcceptError::internal("render task", e))?
        } else {
            compose::render(&msg, &id, signer.as_deref())
        }
        .map_err(|e| AcceptError::Invalid(e.to_string()))?;
        let rendered = self.lint_gate(stream, rendered).await?;
        let recipients: Vec<(RecipientKind, &EmailAddress)> = msg.recipients().collect();
        let sender = msg.from.address();
        self.finish(
            who,
            id,
            stream,
            Envelope {
                sender: &sender,
                subject: &msg.subject,
                recipients: &recipients,
                tags: serde_json::to_string(&msg.tags).expect("strings serialize"),
                metadata: serde_json::to_string(&msg.metadata).expect("strings serialize"),
            },
            rendered,
            idempotency,
        )
        .await
    }

    /// Scope, budget and DKIM key: whether `who` may send from
    /// `from_domain` on `stream`, and the signer to use.
    fn admit(
        &self,
        who: Submitter<'_>,
        stream: Stream,
        from_domain: &str,
    ) -> Result<Option<Arc<Signer>>, AcceptError> {
        if let Submitter::Key(key) = who {
            if !key.streams.contains(&stream) {
                return Err(AcceptError::ForbiddenStream(stream));
            }
            self.check_budget(&key.id, stream)?;
        }
        let signer = self.signers.for_domain(from_domain, stream);
        if signer.is_none() && !self.settings.allow_unsigned {
            return Err(AcceptError::NoDkimKey {
                domain: from_domain.to_string(),
                stream,
            });
        }
        Ok(signer)
    }

    /// The suppression check, recipient by recipient, and the message as
    /// the store takes it, with its receipt.
    async fn finish(
        &self,
        who: Submitter<'_>,
        id: MessageId,
        stream: Stream,
        envelope: Envelope<'_>,
        rendered: Rendered,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<Prepared, AcceptError> {
        let targets: Vec<(String, String)> = envelope
            .recipients
            .iter()
            .map(|(_, a)| (a.to_string().to_lowercase(), a.domain().to_string()))
            .collect();
        let suppressed = self
            .suppressions
            .check(&self.store, stream, &targets)
            .await
            .map_err(|e| AcceptError::internal("checking the suppression list", e))?;
        let recipients: Vec<PreparedRecipient> = envelope
            .recipients
            .iter()
            .zip(suppressed)
            .map(|((kind, a), suppressed)| PreparedRecipient {
                kind: *kind,
                address: a.to_string(),
                domain: a.domain().to_string(),
                suppressed,
            })
            .collect();
        let receipt = Receipt {
            id,
            stream,
            message_id: rendered.message_id_header.clone(),
            recipients: recipients
                .iter()
                .map(|r| RecipientReceipt {
                    address: r.address.clone(),
                    status: match &r.suppressed {
                        None => RecipientStatus::Queued,
                        Some(why) => RecipientStatus::Suppressed {
                            reason: why.clone(),
                        },
                    },
                })
                .collect(),
        };
        let message = PreparedMessage {
            id,
            stream,
            api_key_id: who.key_id().to_string(),
            sender: envelope.sender.to_string(),
            subject: envelope.subject.to_owned(),
            message_id_header: rendered.message_id_header,
            dkim: rendered.dkim,
            tags: envelope.tags,
            metadata: envelope.metadata,
            raw: rendered.raw,
            recipients,
            response: serde_json::to_string(&receipt).expect("receipts serialize"),
            idempotency,
            created_at: now_ms(),
        };
        Ok(Prepared { message, receipt })
    }

    /// The whole pipeline for a message that arrived whole (SMTP AUTH with
    /// `key`): its stream chosen (see [`raw_stream`]), its headers kept as
    /// the client wrote them, a Message-ID and Date added if missing,
    /// `Bcc` and the stream headers removed, list headers for marketing,
    /// then signing, the lint gate, suppression and the commit as for
    /// every message. Returns once the message is committed.
    ///
    /// # Errors
    /// As [`Pipeline::accept`]; `UnknownStream` for a stream header naming
    /// neither stream; `Invalid` for a message without a usable From
    /// address or header block.
    pub async fn accept_raw(
        &self,
        key: &ApiKeyRecord,
        recipients: &[EmailAddress],
        data: &[u8],
    ) -> Result<Receipt, AcceptError> {
        let who = Submitter::Key(key);
        let data = rawmail::normalize_line_endings(data);
        let mut raw =
            rawmail::RawMessage::parse(&data).map_err(|e| AcceptError::Invalid(e.to_string()))?;
        let stream = raw_stream(&raw, key)?;
        let parsed = mail_parser::MessageParser::default()
            .parse_headers(&data)
            .ok_or_else(|| AcceptError::Invalid("the message headers don't parse".into()))?;
        let from = one_from(&parsed)?;
        let signer = self.admit(who, stream, from.domain().as_str())?;
        let id = MessageId::new();
        let in_header = |h: Option<&mail_parser::Address>, a: &EmailAddress| {
            h.is_some_and(|h| {
                h.iter().any(|x| {
                    x.address()
                        .is_some_and(|x| x.eq_ignore_ascii_case(&a.to_string()))
                })
            })
        };
        let kinds: Vec<(RecipientKind, &EmailAddress)> = recipients
            .iter()
            .map(|a| {
                let kind = if in_header(parsed.to(), a) {
                    RecipientKind::To
                } else if in_header(parsed.cc(), a) {
                    RecipientKind::Cc
                } else {
                    RecipientKind::Bcc
                };
                (kind, a)
            })
            .collect();
        let subject = parsed.subject().unwrap_or_default().to_owned();
        let message_id_header = match parsed.message_id() {
            Some(mid) => format!("<{mid}>"),
            // One the parser can't read is kept as written, not doubled.
            None if raw.has("Message-ID") => raw.value("Message-ID").unwrap_or_default(),
            None => {
                let mid = format!("<{id}@{}>", from.domain());
                raw.push("Message-ID", &mid);
                mid
            }
        };
        if !raw.has("Date") {
            let mut h = lettre::message::header::Headers::new();
            h.set(lettre::message::header::Date::now());
            raw.push("Date", h.get_raw("Date").unwrap_or_default());
        }
        raw.strip_private_headers();
        let domain = self.return_path_domain(stream, from.domain().as_str());
        let list = unsubscribe::list_headers(
            stream,
            from.domain().as_str(),
            recipients.len(),
            |name| raw.has(name),
            |n| self.list_links(&id, n, &domain),
        );
        for (name, value) in list {
            raw.push(name, &value);
        }
        if recipients.len() == 1 && !raw.has(unsubscribe::REFERENCE_HEADER) {
            raw.push(unsubscribe::REFERENCE_HEADER, &self.links.reference(&id, 0));
        }
        let unsigned = raw.to_bytes();
        let dkim = signer.as_ref().map(|s| s.label());
        let signed = match signer {
            Some(s) if s.is_rsa() || unsigned.len() > INLINE_RENDER_LIMIT => {
                tokio::task::spawn_blocking(move || s.sign(&unsigned))
                    .await
                    .map_err(|e| AcceptError::internal("signing task", e))?
            }
            Some(s) => s.sign(&unsigned),
            None => Ok(unsigned),
        }
        .map_err(|e| AcceptError::Invalid(e.to_string()))?;
        let rendered = self
            .lint_gate(
                stream,
                Rendered {
                    raw: signed,
                    message_id_header,
                    dkim,
                },
            )
            .await?;
        let prepared = self
            .finish(
                who,
                id,
                stream,
                Envelope {
                    sender: &from,
                    subject: &subject,
                    recipients: &kinds,
                    tags: "[]".into(),
                    metadata: "{}".into(),
                },
                rendered,
                None,
            )
            .await?;
        self.submit(prepared).await?.receipt()
    }

    /// Commits the message (group commit with its idempotency key), then
    /// counts its recipients and sends a `suppressed` event for each one
    /// the suppression list held back.
    ///
    /// # Errors
    /// Shutting down, or the store refused the batch.
    pub async fn submit(&self, prepared: Prepared) -> Result<Submitted, AcceptError> {
        let Prepared { message, receipt } = prepared;
        let outcome = self.enqueuer.enqueue(message).await.map_err(|e| match e {
            EnqueueError::ShuttingDown => AcceptError::ShuttingDown,
            EnqueueError::Store(e) => AcceptError::internal("storing message", e),
        })?;
        Ok(match outcome {
            EnqueueOutcome::Accepted => {
                self.after_accept(&receipt).await;
                Submitted::Accepted(receipt)
            }
            EnqueueOutcome::Replayed(saved) => Submitted::Replayed(saved),
            EnqueueOutcome::KeyReused => Submitted::KeyReused,
        })
    }

    fn check_budget(&self, key_id: &str, stream: Stream) -> Result<(), AcceptError> {
        let limiter = &self.limits.messages[match stream {
            Stream::Transactional => 0,
            Stream::Marketing => 1,
        }];
        limiter.check(key_id).map_err(|retry_after| {
            self.metrics
                .rate_limited
                .get_or_create(&crate::metrics::Reason { reason: "messages" })
                .inc();
            AcceptError::RateLimited {
                stream,
                retry_after,
            }
        })
    }

    /// Adds the one-click unsubscribe and list headers to marketing mail,
    /// and the signed recipient reference to every single-recipient
    /// message (see [`crate::unsubscribe`]).
    pub fn add_list_headers(&self, msg: &mut NewMessage, id: &MessageId) {
        let domain = self.return_path_domain(msg.stream, msg.from.address().domain().as_str());
        unsubscribe::add_list_headers(msg, |recipients| self.list_links(id, recipients, &domain));
        unsubscribe::add_reference_header(msg, || self.links.reference(id, 0));
    }

    /// The domain of `stream`'s envelope sender for mail from `from_domain`.
    fn return_path_domain(&self, stream: Stream, from_domain: &str) -> String {
        let return_path = &self.settings.streams.get(stream).return_path;
        if return_path.is_empty() {
            from_domain.to_owned()
        } else {
            return_path.clone()
        }
    }

    /// The unsubscribe links of message `id` with `recipients` recipients:
    /// a one-click URL only when it names one recipient.
    fn list_links(
        &self,
        id: &MessageId,
        recipients: usize,
        domain: &str,
    ) -> unsubscribe::ListLinks {
        let single = recipients == 1;
        let token = self.links.token(
            id,
            if single {
                0
            } else {
                unsubscribe::WHOLE_MESSAGE
            },
        );
        unsubscribe::ListLinks {
            https: single.then(|| self.links.url(&token)),
            mailto: format!(
                "mailto:{}{token}@{domain}?subject=unsubscribe",
                unsubscribe::MAILTO_PREFIX
            ),
        }
    }

    /// Refuses a message that scores above its stream's `lint_max_score`,
    /// with the report, so the sender sees what to fix.
    async fn lint_gate(
        &self,
        stream: Stream,
        mut rendered: Rendered,
    ) -> Result<Rendered, AcceptError> {
        let Some(max) = self.settings.streams.get(stream).lint_max_score else {
            return Ok(rendered);
        };
        // Parsing HTML is CPU work of a millisecond or more: off the async threads.
        let raw = std::mem::take(&mut rendered.raw);
        let (raw, report) = tokio::task::spawn_blocking(move || {
            let report = linting::lint_rendered(&raw, stream, max);
            (raw, report)
        })
        .await
        .map_err(|e| AcceptError::internal("lint task", e))?;
        rendered.raw = raw;
        let report = report.map_err(|e| AcceptError::internal("linting a rendered message", e))?;
        if report.passed {
            return Ok(rendered);
        }
        tracing::info!(%stream, score = report.score, max, "refused by the lint gate");
        Err(AcceptError::LintFailed {
            stream,
            max,
            report: Box::new(report),
        })
    }

    async fn after_accept(&self, receipt: &Receipt) {
        let mut events = Vec::new();
        for r in &receipt.recipients {
            let labels = crate::metrics::StreamDomain {
                stream: receipt.stream.into(),
                domain: crate::metrics::domain_group(
                    r.address.rsplit('@').next().unwrap_or_default(),
                ),
            };
            match &r.status {
                RecipientStatus::Queued => {
                    self.metrics.accepted.get_or_create(&labels).inc();
                }
                RecipientStatus::Suppressed { reason } => {
                    self.metrics.suppressed.get_or_create(&labels).inc();
                    events.push(Event::new(
                        EventKind::Suppressed,
                        serde_json::json!({
                            "message_id": receipt.id,
                            "stream": receipt.stream,
                            "address": r.address,
                            "reason": reason,
                        }),
                    ));
                }
            }
        }
        if !events.is_empty() {
            events::emit(&self.store, &self.wake, events).await;
        }
    }
}
