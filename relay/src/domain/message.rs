use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::address::{AddressError, EmailAddress, Sender};
use super::stream::Stream;

/// Most recipients (to + cc + bcc) one message may have. Bulk mail is sent as
/// one message per recipient; this keeps one API call from fanning out.
pub const MAX_RECIPIENTS: usize = 50;
const MAX_SUBJECT_CHARS: usize = 998;
const MAX_HEADER_VALUE: usize = 998;
const MAX_TAGS: usize = 10;
const MAX_METADATA: usize = 50;

/// Headers a caller may not set: mailroom writes them itself, and letting a
/// caller set them would allow spoofing or break the DKIM signature.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "dkim-signature",
    "return-path",
    "received",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
    "authentication-results",
];

/// A field that failed validation: becomes a 422 naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Stable machine-readable code, e.g. `invalid_address`.
    pub code: &'static str,
    /// The JSON path of the offending field, e.g. `to[2]`.
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            code,
            field: field.into(),
            message: message.into(),
        }
    }

    fn address(field: impl Into<String>, err: AddressError) -> Self {
        let code = match err {
            AddressError::ControlCharacter => "header_injection",
            _ => "invalid_address",
        };
        ValidationError::new(code, field, err.to_string())
    }
}

/// A list field that also accepts a single string, as the big transactional
/// APIs do (`"to": "a@b.example"` or `"to": ["a@b.example"]`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The JSON body of `POST /v1/messages`, exactly as received.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub from: String,
    #[serde(default)]
    pub to: OneOrMany,
    #[serde(default)]
    pub cc: OneOrMany,
    #[serde(default)]
    pub bcc: OneOrMany,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentRequest>,
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRequest {
    pub filename: String,
    #[serde(default)]
    pub content_type: Option<String>,
    /// Base64 (standard alphabet, padding optional, whitespace ignored).
    pub content: String,
}

/// Which header a recipient came from; bcc recipients are in the envelope only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientKind {
    To,
    Cc,
    Bcc,
}

impl RecipientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientKind::To => "to",
            RecipientKind::Cc => "cc",
            RecipientKind::Bcc => "bcc",
        }
    }
}

/// A custom header whose name is a valid RFC 5322 field name, not one of
/// mailroom's own, and whose value holds no control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomHeader {
    name: String,
    value: String,
}

impl CustomHeader {
    pub fn parse(name: &str, value: &str) -> Result<Self, ValidationError> {
        let field = format!("headers.{name}");
        if name.is_empty()
            || name.len() > 76
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ValidationError::new(
                "invalid_header",
                field,
                "header names may hold only ASCII letters, digits and '-' (1 to 76 characters)",
            ));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(ValidationError::new(
                "reserved_header",
                field,
                format!("{name} is set by mailroom and cannot be given as a custom header"),
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ValidationError::new(
                "header_injection",
                field,
                "header values may not contain CR, LF or other control characters",
            ));
        }
        if value.len() > MAX_HEADER_VALUE {
            return Err(ValidationError::new(
                "invalid_header",
                field,
                "header value is longer than 998 bytes",
            ));
        }
        Ok(CustomHeader {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: lettre::message::header::ContentType,
    pub content: Vec<u8>,
}

/// A message that passed every check and can be rendered and queued.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub stream: Stream,
    pub from: Sender,
    pub to: Vec<EmailAddress>,
    pub cc: Vec<EmailAddress>,
    pub bcc: Vec<EmailAddress>,
    pub reply_to: Option<Sender>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub headers: Vec<CustomHeader>,
    pub attachments: Vec<Attachment>,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

impl NewMessage {
    /// Bytes of body and attachment content: roughly what rendering will handle.
    pub fn approx_size(&self) -> usize {
        self.text.as_ref().map_or(0, String::len)
            + self.html.as_ref().map_or(0, String::len)
            + self
                .attachments
                .iter()
                .map(|a| a.content.len())
                .sum::<usize>()
    }

    /// Every envelope recipient with the header it came from, in request order.
    pub fn recipients(&self) -> impl Iterator<Item = (RecipientKind, &EmailAddress)> {
        self.to
            .iter()
            .map(|a| (RecipientKind::To, a))
            .chain(self.cc.iter().map(|a| (RecipientKind::Cc, a)))
            .chain(self.bcc.iter().map(|a| (RecipientKind::Bcc, a)))
    }
}

fn parse_addresses(field: &str, list: OneOrMany) -> Result<Vec<EmailAddress>, ValidationError> {
    list.into_vec()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            EmailAddress::parse(s).map_err(|e| ValidationError::address(format!("{field}[{i}]"), e))
        })
        .collect()
}

fn no_controls(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ValidationError::new(
            "header_injection",
            field,
            "may not contain CR, LF or other control characters",
        ));
    }
    Ok(())
}

impl TryFrom<SendRequest> for NewMessage {
    type Error = ValidationError;

    fn try_from(req: SendRequest) -> Result<Self, Self::Error> {
        let stream = match req.stream.as_deref() {
            None => Stream::Transactional,
            Some(s) => s.parse().map_err(|e: super::stream::UnknownStream| {
                ValidationError::new("invalid_stream", "stream", e.to_string())
            })?,
        };
        let from = Sender::parse(&req.from).map_err(|e| ValidationError::address("from", e))?;
        let reply_to = req
            .reply_to
            .as_deref()
            .map(Sender::parse)
            .transpose()
            .map_err(|e| ValidationError::address("reply_to", e))?;
        let to = parse_addresses("to", req.to)?;
        let cc = parse_addresses("cc", req.cc)?;
        let bcc = parse_addresses("bcc", req.bcc)?;
        let count = to.len() + cc.len() + bcc.len();
        if count == 0 {
            return Err(ValidationError::new(
                "missing_recipients",
                "to",
                "at least one of to, cc or bcc is required",
            ));
        }
        if count > MAX_RECIPIENTS {
            return Err(ValidationError::new(
                "too_many_recipients",
                "to",
                format!("{count} recipients; at most {MAX_RECIPIENTS} (to + cc + bcc) per message"),
            ));
        }

        no_controls("subject", &req.subject)?;
        if req.subject.trim().is_empty() {
            return Err(ValidationError::new(
                "missing_field",
                "subject",
                "subject is required",
            ));
        }
        if req.subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(ValidationError::new(
                "invalid_field",
                "subject",
                "subject is longer than 998 characters",
            ));
        }
        let text = req.text.filter(|t| !t.is_empty());
        let html = req.html.filter(|t| !t.is_empty());
        if text.is_none() && html.is_none() {
            return Err(ValidationError::new(
                "missing_field",
                "text",
                "a text or html body is required",
            ));
        }

        let headers = req
            .headers
            .iter()
            .map(|(n, v)| CustomHeader::parse(n, v))
            .collect::<Result<Vec<_>, _>>()?;

        let attachments = req
            .attachments
            .into_iter()
            .enumerate()
            .map(|(i, a)| parse_attachment(i, a))
            .collect::<Result<Vec<_>, _>>()?;

        if req.tags.len() > MAX_TAGS {
            return Err(ValidationError::new(
                "invalid_field",
                "tags",
                format!("at most {MAX_TAGS} tags"),
            ));
        }
        for (i, t) in req.tags.iter().enumerate() {
            if t.is_empty() || t.len() > 100 || t.chars().any(char::is_control) {
                return Err(ValidationError::new(
                    "invalid_field",
                    format!("tags[{i}]"),
                    "tags are 1 to 100 characters without control characters",
                ));
            }
        }
        if req.metadata.len() > MAX_METADATA {
            return Err(ValidationError::new(
                "invalid_field",
                "metadata",
                format!("at most {MAX_METADATA} entries"),
            ));
        }
        for (k, v) in &req.metadata {
            if k.is_empty() || k.len() > 100 || v.len() > 1000 {
                return Err(ValidationError::new(
                    "invalid_field",
                    format!("metadata.{k}"),
                    "metadata keys are 1 to 100 bytes, values at most 1000",
                ));
            }
        }

        Ok(NewMessage {
            stream,
            from,
            to,
            cc,
            bcc,
            reply_to,
            subject: req.subject,
            text,
            html,
            headers,
            attachments,
            tags: req.tags,
            metadata: req.metadata,
        })
    }
}

fn parse_attachment(i: usize, a: AttachmentRequest) -> Result<Attachment, ValidationError> {
    let field = |f: &str| format!("attachments[{i}].{f}");
    if a.filename.trim().is_empty() || a.filename.len() > 255 {
        return Err(ValidationError::new(
            "invalid_field",
            field("filename"),
            "filename is 1 to 255 bytes",
        ));
    }
    no_controls(&field("filename"), &a.filename)?;
    let ct = a
        .content_type
        .as_deref()
        .unwrap_or("application/octet-stream");
    no_controls(&field("content_type"), ct)?;
    let content_type = lettre::message::header::ContentType::parse(ct).map_err(|e| {
        ValidationError::new(
            "invalid_field",
            field("content_type"),
            format!("{ct:?}: {e}"),
        )
    })?;
    let compact: String = a
        .content
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let content = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(compact.trim_end_matches('='))
        .map_err(|e| {
            ValidationError::new(
                "invalid_base64",
                field("content"),
                format!("not valid base64: {e}"),
            )
        })?;
    Ok(Attachment {
        filename: a.filename,
        content_type,
        content,
    })
}

/// mailroom's id for an accepted message: a UUIDv7, so ids sort by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(uuid::Uuid);

impl MessageId {
    pub fn new() -> Self {
        MessageId(uuid::Uuid::now_v7())
    }

    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::try_parse(s).ok().map(MessageId)
    }

    pub fn from_uuid(id: uuid::Uuid) -> Self {
        MessageId(id)
    }

    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_hyphenated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(v: serde_json::Value) -> SendRequest {
        serde_json::from_value(v).unwrap()
    }

    fn valid() -> serde_json::Value {
        json!({"from": "Shop <orders@shop.example>", "to": ["a@x.example"], "subject": "Your receipt", "text": "Thanks"})
    }

    fn refused(mut patch: impl FnMut(&mut serde_json::Value)) -> ValidationError {
        let mut v = valid();
        patch(&mut v);
        NewMessage::try_from(request(v)).unwrap_err()
    }

    #[test]
    fn a_minimal_request_is_transactional_by_default() {
        let m = NewMessage::try_from(request(valid())).unwrap();
        assert_eq!(m.stream, Stream::Transactional);
        assert_eq!(m.recipients().count(), 1);
    }

    #[test]
    fn a_single_string_is_accepted_where_a_list_is_expected() {
        let mut v = valid();
        v["to"] = json!("b@y.example");
        let m = NewMessage::try_from(request(v)).unwrap();
        assert_eq!(m.to[0].as_str(), "b@y.example");
    }

    type Patch = Box<dyn Fn(&mut serde_json::Value)>;

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(&str, &str, Patch)> = vec![
            (
                "from",
                "invalid_address",
                Box::new(|v| v["from"] = json!("not an address")),
            ),
            (
                "to[1]",
                "invalid_address",
                Box::new(|v| v["to"] = json!(["a@x.example", "bad"])),
            ),
            (
                "to",
                "missing_recipients",
                Box::new(|v| v["to"] = json!([])),
            ),
            (
                "subject",
                "header_injection",
                Box::new(|v| v["subject"] = json!("Hi\r\nBcc: victim@x.example")),
            ),
            (
                "subject",
                "missing_field",
                Box::new(|v| v["subject"] = json!(" ")),
            ),
            (
                "stream",
                "invalid_stream",
                Box::new(|v| v["stream"] = json!("bulk")),
            ),
            (
                "headers.X-Campaign",
                "header_injection",
                Box::new(|v| v["headers"] = json!({"X-Campaign": "a\nb"})),
            ),
            (
                "headers.From",
                "reserved_header",
                Box::new(|v| v["headers"] = json!({"From": "ceo@bank.example"})),
            ),
            (
                "headers.Bad Name",
                "invalid_header",
                Box::new(|v| v["headers"] = json!({"Bad Name": "x"})),
            ),
            (
                "reply_to",
                "header_injection",
                Box::new(|v| v["reply_to"] = json!("a@x.example\nBcc: b@y.example")),
            ),
            (
                "text",
                "missing_field",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("text");
                }),
            ),
            (
                "attachments[0].content",
                "invalid_base64",
                Box::new(|v| v["attachments"] = json!([{"filename": "a.pdf", "content": "!!!"}])),
            ),
            (
                "attachments[0].filename",
                "header_injection",
                Box::new(|v| {
                    v["attachments"] = json!([{"filename": "a\r\n.pdf", "content": "aGk="}])
                }),
            ),
            (
                "attachments[0].content_type",
                "invalid_field",
                Box::new(|v| {
                    v["attachments"] = json!([{"filename": "a.pdf", "content_type": "nonsense", "content": "aGk="}])
                }),
            ),
        ];
        for (field, code, patch) in cases {
            let err = refused(patch);
            assert_eq!((err.field.as_str(), err.code), (field, code), "{err}");
        }
    }

    #[test]
    fn more_than_fifty_recipients_are_refused() {
        let err = refused(|v| {
            v["to"] = json!(
                (0..40)
                    .map(|i| format!("t{i}@x.example"))
                    .collect::<Vec<_>>()
            );
            v["bcc"] = json!(
                (0..11)
                    .map(|i| format!("b{i}@x.example"))
                    .collect::<Vec<_>>()
            );
        });
        assert_eq!(err.code, "too_many_recipients");
        assert!(err.message.contains("51"), "{err}");
    }

    #[test]
    fn attachments_are_decoded() {
        let mut v = valid();
        v["attachments"] =
            json!([{"filename": "r.txt", "content_type": "text/plain", "content": "aGVs\nbG8="}]);
        let m = NewMessage::try_from(request(v)).unwrap();
        assert_eq!(m.attachments[0].content, b"hello");
    }

    #[test]
    fn message_ids_round_trip() {
        let id = MessageId::new();
        assert_eq!(MessageId::parse(&id.to_string()), Some(id));
        assert_eq!(MessageId::parse("../etc/passwd"), None);
    }
}
