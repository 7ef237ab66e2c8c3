//! A whole message as an SMTP client hands it over, and the header edits
//! the relay makes before signing it: the client's own headers are kept
//! (Message-ID, Date, MIME structure, everything), missing ones added,
//! `Bcc` and the stream-selection headers removed.
//!
//! Only the header block is split into fields here (names and raw,
//! folded values: what an edit needs); what the fields *mean* (addresses,
//! the Message-ID) is read with mail-parser.

/// The headers that choose the stream of a message sent over SMTP,
/// mailroom's own and Postmark's. Removed before signing.
pub const STREAM_HEADERS: [&str; 2] = ["X-Mailroom-Stream", "X-PM-Message-Stream"];

/// Headers never passed on: `Bcc` would disclose blind recipients, and
/// `Return-Path` is the receiving MTA's to write (from mailroom's VERP).
const DROPPED: [&str; 2] = ["Bcc", "Return-Path"];

/// One header field: its name and its whole raw text (`Name: value`,
/// continuation lines included, ending in CRLF).
#[derive(Debug, Clone)]
struct Field {
    name: String,
    raw: Vec<u8>,
}

/// A message split into its header fields and body.
#[derive(Debug, Clone)]
pub struct RawMessage {
    fields: Vec<Field>,
    /// Everything after the blank line, CRLF line endings.
    body: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RawError {
    #[error("the message has no header block")]
    NoHeaders,
    #[error("header line {0} is neither a field (Name: value) nor a continuation")]
    BadHeaderLine(usize),
}

/// `data` with every line ending CRLF: SMTP DATA is CRLF already, but a
/// bare CR or LF inside would make the DKIM signature and the receiving
/// MTA read the message differently.
pub fn normalize_line_endings(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

impl RawMessage {
    /// Splits `data` (CRLF line endings, see [`normalize_line_endings`]).
    ///
    /// # Errors
    /// No header field before the body, or a header line that is neither
    /// a field nor a continuation.
    pub fn parse(data: &[u8]) -> Result<RawMessage, RawError> {
        let (head, body) = match find(data, b"\r\n\r\n") {
            Some(i) => (&data[..i + 2], &data[i + 4..]),
            // Headers only, no body.
            None if data.ends_with(b"\r\n") => (data, &[][..]),
            None => return Err(RawError::NoHeaders),
        };
        let mut fields: Vec<Field> = Vec::new();
        for (n, line) in head.split_inclusive(|&b| b == b'\n').enumerate() {
            if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                let Some(last) = fields.last_mut() else {
                    return Err(RawError::BadHeaderLine(n + 1));
                };
                last.raw.extend_from_slice(line);
                continue;
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(RawError::BadHeaderLine(n + 1))?;
            let name = &line[..colon];
            if name.is_empty() || !name.iter().all(|b| (33..=126).contains(b)) {
                return Err(RawError::BadHeaderLine(n + 1));
            }
            fields.push(Field {
                name: String::from_utf8_lossy(name).into_owned(),
                raw: line.to_vec(),
            });
        }
        if fields.is_empty() {
            return Err(RawError::NoHeaders);
        }
        Ok(RawMessage {
            fields,
            body: body.to_vec(),
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The unfolded, trimmed value of the first `name` field.
    pub fn value(&self, name: &str) -> Option<String> {
        let f = self
            .fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))?;
        let value = &f.raw[f.name.len() + 1..];
        let text = String::from_utf8_lossy(value);
        Some(
            text.split(['\r', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|f| !f.name.eq_ignore_ascii_case(name));
    }

    /// Drops `Bcc`, `Return-Path` and the stream-selection headers.
    pub fn strip_private_headers(&mut self) {
        for name in DROPPED.iter().chain(STREAM_HEADERS.iter()) {
            self.remove(name);
        }
    }

    /// Appends a field. `value` comes from the relay (list headers, a
    /// Message-ID), never from the client, and holds no line break.
    pub fn push(&mut self, name: &str, value: &str) {
        debug_assert!(
            !value.contains(['\r', '\n']),
            "header value with a line break"
        );
        let mut raw = Vec::with_capacity(name.len() + value.len() + 4);
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value.as_bytes());
        raw.extend_from_slice(b"\r\n");
        self.fields.push(Field {
            name: name.to_owned(),
            raw,
        });
    }

    /// The message again: fields in order, blank line, body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let head: usize = self.fields.iter().map(|f| f.raw.len()).sum();
        let mut out = Vec::with_capacity(head + 2 + self.body.len());
        for f in &self.fields {
            out.extend_from_slice(&f.raw);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MSG: &[u8] = b"From: Shop <orders@shop.example>\r\nTo: ana@x.example\r\nBcc: secret@y.example\r\nSubject: Your\r\n order\r\nX-Mailroom-Stream: marketing\r\n\r\nbody\r\n.line\r\n";

    #[test]
    fn bcc_and_stream_headers_go_and_everything_else_stays_as_written() {
        let mut m = RawMessage::parse(MSG).unwrap();
        assert_eq!(m.value("subject").as_deref(), Some("Your order"));
        assert_eq!(m.value("X-Mailroom-Stream").as_deref(), Some("marketing"));
        m.strip_private_headers();
        m.push("Message-ID", "<1@shop.example>");
        let out = String::from_utf8(m.to_bytes()).unwrap();
        assert_eq!(
            out,
            "From: Shop <orders@shop.example>\r\nTo: ana@x.example\r\nSubject: Your\r\n order\r\nMessage-ID: <1@shop.example>\r\n\r\nbody\r\n.line\r\n"
        );
    }

    #[test]
    fn line_endings_become_crlf() {
        assert_eq!(normalize_line_endings(b"a\nb\rc\r\nd"), b"a\r\nb\r\nc\r\nd");
    }

    #[test]
    fn a_message_without_headers_is_refused() {
        assert_eq!(
            RawMessage::parse(b"\r\nbody\r\n").unwrap_err(),
            RawError::BadHeaderLine(1)
        );
        assert_eq!(
            RawMessage::parse(b"just text").unwrap_err(),
            RawError::NoHeaders
        );
        assert_eq!(
            RawMessage::parse(b" folded: first\r\n\r\n").unwrap_err(),
            RawError::BadHeaderLine(1)
        );
    }

    proptest! {
        /// Any bytes: refused or split and rejoined unchanged.
        #[test]
        fn parse_then_to_bytes_is_the_identity(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let data = normalize_line_endings(&data);
            if let Ok(m) = RawMessage::parse(&data) {
                let again = m.to_bytes();
                if find(&data, b"\r\n\r\n").is_some() {
                    prop_assert_eq!(again, data);
                }
            }
        }
    }
}
