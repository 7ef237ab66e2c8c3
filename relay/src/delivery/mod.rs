//! Delivery: workers claim due recipients of their own stream, send the
//! stored bytes over SMTP (to a smarthost or the recipient's MX hosts) and
//! record the outcome. Handlers never get here: only workers deliver.

pub mod dkim;
pub mod mx;
pub mod smtp;
pub mod worker;

use anyhow::Context as _;

/// Where a stream's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Each recipient domain's MX hosts, port 25, opportunistic STARTTLS.
    Mx,
    /// One relay host, as a lettre connection URL (`smtp://`, `smtps://`).
    Smarthost(String),
    /// Keep the signed message and deliver nothing (`--capture`).
    Capture,
}

impl Route {
    /// # Errors
    /// Neither `mx`, `capture` nor an `smtp://`/`smtps://` URL lettre accepts.
    pub fn parse(s: &str) -> anyhow::Result<Route> {
        match s {
            "mx" => Ok(Route::Mx),
            "capture" => Ok(Route::Capture),
            url if url.starts_with("smtp://") || url.starts_with("smtps://") => {
                lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
                    .with_context(|| format!("invalid smarthost URL {:?}", redact(url)))?;
                Ok(Route::Smarthost(url.to_owned()))
            }
            other => anyhow::bail!(
                "unknown route {:?}: expected \"mx\" or an smtp:// or smtps:// URL",
                redact(other)
            ),
        }
    }
}

/// A URL with its password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The result of one SMTP attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        code: Option<u16>,
        reply: String,
        host: Option<String>,
    },
    /// 4xx, or the connection/TLS failed: try again later.
    Deferred {
        code: Option<u16>,
        reply: String,
        host: Option<String>,
    },
    /// 5xx: permanent for this recipient.
    Bounced {
        code: Option<u16>,
        reply: String,
        host: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(Route::parse("mx").unwrap(), Route::Mx);
        assert_eq!(
            Route::parse("smtp://127.0.0.1:2526").unwrap(),
            Route::Smarthost("smtp://127.0.0.1:2526".into())
        );
        assert!(Route::parse("smtps://u:p@mail.example:465").is_ok());
        let err = Route::parse("http://u:secret@x").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("smtps://user:pw@host:465"),
            "smtps://user:***@host:465"
        );
        assert_eq!(redact("smtp://host:25"), "smtp://host:25");
    }
}
