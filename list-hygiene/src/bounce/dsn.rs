//! RFC 3464 delivery status notifications: a multipart/report whose
//! message/delivery-status part holds one block of fields about the
//! message, then one block per recipient.

use mail_parser::{MimeHeaders, PartType};

use super::Recipient;
use super::classify::{StatusCode, diagnose};

pub(super) struct Report {
    pub recipients: Vec<Recipient>,
    /// Recipients the report says were delivered, relayed or expanded:
    /// success notices, left out of `recipients`.
    pub succeeded: usize,
    pub original_message_id: Option<String>,
}

/// The DSN in `message`, if it is one.
pub(super) fn read(message: &mail_parser::Message<'_>) -> Option<Report> {
    let mut status_part = None;
    let mut original_message_id = None;
    for part in &message.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = ct.ctype().to_ascii_lowercase();
        let subtype = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        match (ctype.as_str(), subtype.as_str(), &part.body) {
            ("message", "delivery-status" | "global-delivery-status", body) => {
                status_part = Some(match body {
                    PartType::Binary(b) | PartType::InlineBinary(b) => {
                        String::from_utf8_lossy(b).into_owned()
                    }
                    PartType::Text(t) => t.to_string(),
                    _ => continue,
                });
            }
            ("message", "rfc822" | "global", PartType::Message(m)) => {
                original_message_id = original_message_id.or(m.message_id().map(angle));
            }
            ("text", "rfc822-headers", PartType::Text(t)) => {
                original_message_id = original_message_id.or_else(|| {
                    super::PARSER
                        .parse_headers(t.as_bytes())
                        .and_then(|h| h.message_id().map(angle))
                });
            }
            _ => {}
        }
    }
    let fields = status_part?;
    let (recipients, succeeded) = recipients(&fields);
    Some(Report {
        recipients,
        succeeded,
        original_message_id,
    })
}

/// DSN fields written into a text body (a report whose MIME structure
/// was lost, or a sendmail notice that pastes them in): the blocks from
/// the first `Reporting-MTA:` or `Final-Recipient:` line on. `None` when
/// no recipient block is there.
pub(super) fn read_text(body: &str) -> Option<Report> {
    // Offsets from the lines as they are, terminators included: `lines()`
    // drops a CR as well as the LF, and an offset counted from it would
    // drift by a byte per CRLF line (and could fall inside a character).
    let start = body
        .split_inclusive('\n')
        .scan(0, |at, line| {
            let here = *at;
            *at += line.len();
            Some((here, line))
        })
        .find(|(_, line)| {
            let l = line
                .trim_start_matches('>')
                .trim_start()
                .to_ascii_lowercase();
            l.starts_with("reporting-mta:") || l.starts_with("final-recipient:")
        })?
        .0;
    let fields = &body[start..];
    let (recipients, succeeded) = recipients(fields);
    (!recipients.is_empty() || succeeded > 0).then_some(Report {
        recipients,
        succeeded,
        original_message_id: None,
    })
}

fn angle(id: &str) -> String {
    format!("<{}>", id.trim_matches(['<', '>']))
}

/// Splits the delivery-status body into blocks of unfolded `(name, value)`
/// fields; blank lines separate blocks.
fn blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !blocks.last().is_some_and(Vec::is_empty) {
                blocks.push(Vec::new());
            }
            continue;
        }
        let block = blocks.last_mut().expect("never empty");
        if line.starts_with([' ', '\t']) {
            // A folded continuation of the previous field.
            if let Some((_, value)) = block.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            block.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    blocks.retain(|b| !b.is_empty());
    blocks
}

/// `rfc822; a@b.example` → `a@b.example`.
fn typed_value(value: &str) -> &str {
    value
        .split_once(';')
        .map_or(value, |(_, v)| v)
        .trim()
        .trim_matches(['<', '>'])
}

/// The failed (and delayed) recipients, and how many succeeded.
fn recipients(fields: &str) -> (Vec<Recipient>, usize) {
    let mut out = Vec::new();
    let mut succeeded = 0;
    for block in blocks(fields) {
        if out.len() == super::MAX_RECIPIENTS {
            break;
        }
        let get = |name: &str| {
            block
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let Some(address) = get("final-recipient")
            .or_else(|| get("original-recipient"))
            .map(typed_value)
            .filter(|a| a.contains('@'))
        else {
            continue; // the per-message block, or a recipient we can't name
        };
        let action = get("action")
            .unwrap_or("failed")
            .trim()
            .to_ascii_lowercase();
        let action = action
            .split_whitespace()
            .next()
            .unwrap_or("failed")
            .to_string();
        // RFC 3464's success actions, and RFC 3885's tracking "deliverable".
        if matches!(
            action.as_str(),
            "delivered" | "relayed" | "expanded" | "deliverable"
        ) {
            succeeded += 1;
            continue; // success notices are not bounces
        }
        let status = get("status")
            .and_then(|s| s.split_whitespace().next())
            .and_then(StatusCode::parse);
        let diagnostic = get("diagnostic-code").map(|d| {
            // "smtp; 550 5.1.1 ..." → "550 5.1.1 ..."
            d.split_once(';').map_or(d, |(_, v)| v).trim().to_string()
        });
        let d = diagnose(status, diagnostic.as_deref().unwrap_or_default());
        out.push(Recipient {
            address: address.to_ascii_lowercase(),
            action,
            status: d.status.map(|s| s.to_string()),
            diagnostic,
            reason: d.reason,
            class: d.class,
        });
    }
    (out, succeeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_in_crlf_text_are_found_where_they_are() {
        // Three CRLF lines before the fields, the last ending in a
        // two-byte character: an offset that counted one byte per line
        // end would land inside it.
        let body = "Zustellung\r\nfehlgeschlagen\r\nfü\r\nReporting-MTA: dns; mx.example\r\n\r\n\
                    Final-Recipient: rfc822; kim@customer.example\r\nAction: failed\r\nStatus: 5.1.1\r\n";
        let report = read_text(body).expect("a report");
        assert_eq!(report.recipients.len(), 1);
        assert_eq!(report.recipients[0].address, "kim@customer.example");
        assert_eq!(report.recipients[0].status.as_deref(), Some("5.1.1"));
    }
}
