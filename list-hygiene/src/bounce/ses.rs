//! Amazon SES bounce notifications: the JSON that SES sends through SNS
//! to an e-mail subscription (the body is the notification itself) or to
//! an HTTP one forwarded by mail (an SNS envelope whose `Message` is the
//! notification, as a string). SES has read the remote server's reply
//! already; its `bouncedRecipients` say who failed and why.

use serde_json::Value;

use super::classify::{StatusCode, diagnose};
use super::{Kind, Recipient};

/// What an SES notification in `body` is, with the failed recipients of a
/// `Bounce`; `None` when the body is not an SES notification.
pub(super) fn read(body: &str) -> Option<(Kind, Vec<Recipient>)> {
    let json = body.trim_start();
    if !json.starts_with('{') {
        return None;
    }
    // Sendmail-style wrapping of over-long lines ("…!" CRLF SPACE "…")
    // cuts the JSON mid-token; undo it.
    let unwrapped = json.replace("!\r\n ", "").replace("!\n ", "");
    // The first JSON value only: SNS appends an unsubscribe footer.
    let mut values = serde_json::Deserializer::from_str(&unwrapped).into_iter::<Value>();
    let mut note = values.next()?.ok()?;
    if note.get("Type").and_then(Value::as_str) == Some("Notification") {
        note = serde_json::from_str(note.get("Message")?.as_str()?).ok()?;
    }
    match note.get("notificationType").and_then(Value::as_str)? {
        "Bounce" => {}
        "Complaint" => return Some((Kind::FeedbackReport, Vec::new())),
        "Delivery" => return Some((Kind::DeliveryNotice, Vec::new())),
        _ => return None,
    }
    let bounce = note.get("bounce")?;
    let transient = bounce.get("bounceType").and_then(Value::as_str) == Some("Transient");
    let recipients = bounce
        .get("bouncedRecipients")?
        .as_array()?
        .iter()
        .take(super::MAX_RECIPIENTS)
        .filter_map(|r| {
            let field = |name: &str| r.get(name).and_then(Value::as_str);
            let address = field("emailAddress")?.trim().to_ascii_lowercase();
            let diagnostic = field("diagnosticCode").map(|d| {
                // "smtp; 550 5.1.1 user unknown" → "550 5.1.1 user unknown"
                d.split_once(';').map_or(d, |(_, v)| v).trim().to_string()
            });
            let status = field("status").and_then(StatusCode::parse);
            let d = diagnose(status, diagnostic.as_deref().unwrap_or_default());
            Some(Recipient {
                address,
                action: field("action")
                    .map(str::to_ascii_lowercase)
                    .unwrap_or_else(|| if transient { "delayed" } else { "failed" }.into()),
                status: d.status.map(|s| s.to_string()),
                diagnostic,
                reason: d.reason,
                class: d.class,
            })
        })
        .collect();
    Some((Kind::NonStandard, recipients))
}
