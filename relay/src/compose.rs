//! Turns a validated [`NewMessage`] into the final bytes: MIME built by
//! lettre, then DKIM-signed. These bytes are stored and sent unchanged.

use lettre::message::header::{ContentTransferEncoding, HeaderName, HeaderValue};
use lettre::message::{Attachment as LettreAttachment, Body, Mailbox, MultiPart, SinglePart};

use crate::delivery::dkim::Signer;
use crate::domain::{MessageId, NewMessage};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    #[error("building the MIME message: {0}")]
    Mime(String),
    #[error(transparent)]
    Sign(anyhow::Error),
}

#[derive(Debug, Clone)]
pub struct Rendered {
    pub raw: Vec<u8>,
    pub message_id_header: String,
    /// `domain/selector` when signed.
    pub dkim: Option<String>,
}

/// Builds and signs `msg`. The Message-ID is on the From domain, so it
/// aligns with the signature and never leaks the relay's host name.
///
/// # Errors
/// lettre refused the message, or signing failed.
pub fn render(
    msg: &NewMessage,
    id: &MessageId,
    signer: Option<&Signer>,
) -> Result<Rendered, ComposeError> {
    let domain = msg.from.address().domain();
    let message_id_header = format!("<{id}@{domain}>");
    let mut b = lettre::Message::builder()
        .from(msg.from.mailbox().clone())
        .subject(msg.subject.clone())
        .message_id(Some(message_id_header.clone()))
        .date_now();
    for a in &msg.to {
        b = b.to(Mailbox::new(None, a.as_lettre().clone()));
    }
    for a in &msg.cc {
        b = b.cc(Mailbox::new(None, a.as_lettre().clone()));
    }
    // lettre leaves Bcc out of the rendered headers; it is here only so a
    // bcc-only message has an envelope for lettre to accept.
    for a in &msg.bcc {
        b = b.bcc(Mailbox::new(None, a.as_lettre().clone()));
    }
    if let Some(r) = &msg.reply_to {
        b = b.reply_to(r.mailbox().clone());
    }
    for h in &msg.headers {
        let name = HeaderName::new_from_ascii(h.name().to_owned())
            .map_err(|e| ComposeError::Mime(e.to_string()))?;
        b = b.raw_header(HeaderValue::new(name, h.value().to_owned()));
    }

    let body = match (&msg.text, &msg.html) {
        (Some(t), Some(h)) => Parts::Multi(MultiPart::alternative_plain_html(t.clone(), h.clone())),
        (Some(t), None) => Parts::Single(SinglePart::plain(t.clone())),
        (None, Some(h)) => Parts::Single(SinglePart::html(h.clone())),
        (None, None) => return Err(ComposeError::Mime("no text or html body".into())),
    };
    let message = if msg.attachments.is_empty() {
        match body {
            Parts::Multi(m) => b.multipart(m),
            Parts::Single(s) => b.singlepart(s),
        }
    } else {
        let mut mixed = match body {
            Parts::Multi(m) => MultiPart::mixed().multipart(m),
            Parts::Single(s) => MultiPart::mixed().singlepart(s),
        };
        for a in &msg.attachments {
            // Always base64: lettre would pick 7bit for ASCII-range bytes,
            // and binary files may hold NULs and bare CRs that 7bit forbids.
            let body = Body::new_with_encoding(a.content.clone(), ContentTransferEncoding::Base64)
                .map_err(|_| ComposeError::Mime("attachment could not be base64-encoded".into()))?;
            mixed = mixed.singlepart(
                LettreAttachment::new(a.filename.clone()).body(body, a.content_type.clone()),
            );
        }
        b.multipart(mixed)
    }
    .map_err(|e| ComposeError::Mime(e.to_string()))?;

    let unsigned = message.formatted();
    let (raw, dkim) = match signer {
        Some(s) => (
            s.sign(&unsigned).map_err(ComposeError::Sign)?,
            Some(s.label()),
        ),
        None => (unsigned, None),
    };
    Ok(Rendered {
        raw,
        message_id_header,
        dkim,
    })
}

enum Parts {
    Single(SinglePart),
    Multi(MultiPart),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::dkim::{Algorithm, generate};
    use crate::domain::message::SendRequest;
    use proptest::prelude::*;

    fn signer() -> Signer {
        Signer::from_pem(
            "shop.example",
            "s1",
            &generate("shop.example", "s1", Algorithm::Ed25519)
                .unwrap()
                .private_pem,
        )
        .unwrap()
    }

    #[test]
    fn a_bcc_only_message_renders_without_a_bcc_header() {
        let req: SendRequest = serde_json::from_value(serde_json::json!({
            "from": "a@shop.example", "bcc": ["hidden@x.example"], "subject": "s", "text": "t"
        }))
        .unwrap();
        let msg = NewMessage::try_from(req).unwrap();
        let r = render(&msg, &MessageId::new(), Some(&signer())).unwrap();
        let text = String::from_utf8(r.raw).unwrap();
        assert!(!text.contains("hidden@x.example"), "{text}");
        assert!(text.starts_with("DKIM-Signature:"));
        assert_eq!(r.dkim.as_deref(), Some("shop.example/s1"));
    }

    proptest! {
        /// Whatever strings arrive, validation either refuses them or the
        /// message renders and signs: never a panic, never a bare CR or LF
        /// smuggled into the header block.
        #[test]
        fn any_request_is_refused_or_renders_safely(
            name in "\\PC{0,30}",
            subject in "\\PC{0,200}",
            text in "\\PC{0,300}",
            html in "\\PC{0,300}",
            hname in "[A-Za-z-]{1,20}",
            hval in "\\PC{0,80}",
            to in "\\PC{0,40}",
        ) {
            let req = serde_json::json!({
                "from": format!("{name} <a@shop.example>"), "to": [to, "ok@x.example"],
                "subject": subject, "text": text, "html": html, "headers": {hname: hval},
            });
            let Ok(req) = serde_json::from_value::<SendRequest>(req) else { return Ok(()) };
            let Ok(msg) = NewMessage::try_from(req) else { return Ok(()) };
            let r = render(&msg, &MessageId::new(), Some(&signer())).unwrap();
            let raw = r.raw;
            let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("header block ends");
            let head = &raw[..head_end];
            for (i, b) in head.iter().enumerate() {
                if *b == b'\n' {
                    prop_assert!(i > 0 && head[i - 1] == b'\r', "bare LF in headers");
                }
                if *b == b'\r' {
                    prop_assert!(head.get(i + 1) == Some(&b'\n'), "bare CR in headers");
                }
            }
        }
    }
}
