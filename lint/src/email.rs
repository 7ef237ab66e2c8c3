//! The linter's view of a message: the parts the checks read, taken from a
//! parsed MIME message or from a bare HTML body.

use mail_parser::{Address, HeaderName, HeaderValue, MessageParser, MimeHeaders, PartType};

/// A name and address as written in a header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    /// The part after the last `@`, lower-cased.
    pub fn domain(&self) -> Option<String> {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
    }

    pub fn local_part(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map_or(self.address.as_str(), |(l, _)| l)
    }
}

/// Header facts that only exist when the whole message (not just a body)
/// is linted.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    pub has_date: bool,
    pub has_message_id: bool,
    /// The Message-ID, without angle brackets.
    pub message_id: Option<String>,
    /// In-Reply-To or References present: the message answers another.
    pub is_reply: bool,
    pub list_unsubscribe: Option<String>,
    pub list_unsubscribe_post: Option<String>,
}

/// An attachment as the checks see it.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub filename: Option<String>,
    /// `type/subtype`, lower-cased.
    pub content_type: String,
    pub size: usize,
    /// An image referenced from the HTML by Content-ID rather than a file
    /// for the reader.
    pub inline: bool,
}

/// Everything the checks read. Build it with [`Email::parse`],
/// [`Email::from_message`] or [`Email::from_html`].
#[derive(Debug, Clone, Default)]
pub struct Email {
    pub subject: Option<String>,
    pub from: Option<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    /// `None` when only a body was given: header rules are then skipped.
    pub headers: Option<Headers>,
    /// The text/plain alternative, if the message has one.
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// Why an input could not be read as an email.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("empty input")]
    Empty,
    #[error("not an email message: no header fields and no body")]
    NotEmail,
}

impl Email {
    /// Parses an RFC 5322 message (an `.eml` file).
    ///
    /// # Errors
    /// When the input is empty or holds neither headers nor a body.
    pub fn parse(raw: &[u8]) -> Result<Email, ParseError> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(ParseError::Empty);
        }
        let message = MessageParser::default()
            .parse(raw)
            .ok_or(ParseError::NotEmail)?;
        if message.headers().is_empty() {
            return Err(ParseError::NotEmail);
        }
        Ok(Email::from_message(&message))
    }

    /// Takes what the checks need from a message mail-parser has parsed.
    pub fn from_message(message: &mail_parser::Message<'_>) -> Email {
        let mut text = String::new();
        let mut html = String::new();
        // mail-parser lists an HTML part under text_body too when there is
        // no text alternative, so look at what each part really is.
        for id in &message.text_body {
            if let Some(PartType::Text(t)) = message.part(*id).map(|p| &p.body) {
                text.push_str(t);
            }
        }
        for id in &message.html_body {
            if let Some(PartType::Html(h)) = message.part(*id).map(|p| &p.body) {
                html.push_str(h);
            }
        }
        let attachments = message
            .attachments()
            .map(|part| {
                let content_type = part
                    .content_type()
                    .map(|ct| {
                        format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default())
                            .to_ascii_lowercase()
                    })
                    .unwrap_or_else(|| "application/octet-stream".into());
                let disposition_inline = part
                    .content_disposition()
                    .is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline"));
                Attachment {
                    filename: part.attachment_name().map(str::to_string),
                    inline: part.content_id().is_some()
                        && (disposition_inline || part.content_disposition().is_none())
                        && content_type.starts_with("image/"),
                    content_type,
                    size: part.len(),
                }
            })
            .collect();
        let header_text = |name: &str| message.header_raw(name).map(|v| v.trim().to_string());
        Email {
            subject: message.subject().map(str::to_string),
            from: first_mailbox(message.from()),
            reply_to: first_mailbox(message.reply_to()),
            to: message.to().map(all_mailboxes).unwrap_or_default(),
            headers: Some(Headers {
                has_date: message.header(HeaderName::Date).is_some(),
                has_message_id: message.message_id().is_some(),
                message_id: message.message_id().map(str::to_string),
                is_reply: !is_empty(message.in_reply_to()) || !is_empty(message.references()),
                list_unsubscribe: header_text("List-Unsubscribe"),
                list_unsubscribe_post: header_text("List-Unsubscribe-Post"),
            }),
            text: (!text.is_empty()).then_some(text),
            html: (!html.is_empty()).then_some(html),
            attachments,
        }
    }

    /// A bare HTML body, as exported from an email editor.
    pub fn from_html(html: impl Into<String>) -> Email {
        Email {
            html: Some(html.into()),
            ..Email::default()
        }
    }
}

fn is_empty(value: &HeaderValue<'_>) -> bool {
    matches!(value, HeaderValue::Empty)
}

fn first_mailbox(address: Option<&Address<'_>>) -> Option<Mailbox> {
    address.and_then(|a| all_mailboxes(a).into_iter().next())
}

fn all_mailboxes(address: &Address<'_>) -> Vec<Mailbox> {
    address
        .iter()
        .filter_map(|addr| {
            Some(Mailbox {
                name: addr
                    .name
                    .as_deref()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
                address: addr.address.as_deref()?.trim().to_string(),
            })
        })
        .collect()
}
