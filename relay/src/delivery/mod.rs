//! Delivery: workers claim due recipients of their own stream, send the
//! stored bytes over SMTP (to a smarthost or the recipient's MX hosts) and
//! record the outcome. Handlers never get here: only workers deliver.

pub mod dkim;
pub mod mx;
pub mod outcomes;
pub mod shaping;
pub mod smtp;
pub mod worker;

use anyhow::Context as _;

/// Where a stream's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Each recipient domain's MX hosts, port 25, opportunistic STARTTLS.
    Mx,
    /// One relay host.
    Smarthost(Smarthost),
    /// Keep the signed message and deliver nothing (`--capture`).
    Capture,
}

/// How a session is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text.
    None,
    /// STARTTLS when offered, certificates not verified (RFC 7435).
    Opportunistic,
    /// STARTTLS or fail, certificate verified.
    Required,
    /// TLS from the first byte (`smtps://`, port 465), certificate verified.
    Wrapper,
}

/// A smarthost from a URL: `smtp://[user:pass@]host[:port][?tls=required|opportunistic]`
/// or `smtps://[user:pass@]host[:port]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Smarthost {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub credentials: Option<(String, String)>,
    /// The URL with its password hidden, for logs and attempt records.
    pub display: String,
}

impl std::fmt::Debug for Smarthost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl Smarthost {
    /// # Errors
    /// Not a URL, another scheme, no host, or an unknown `tls=` value.
    pub fn parse(s: &str) -> anyhow::Result<Smarthost> {
        let display = redact(s);
        let url =
            url::Url::parse(s).with_context(|| format!("invalid smarthost URL {display:?}"))?;
        let (default_port, mut tls) = match url.scheme() {
            "smtp" => (25, TlsMode::None),
            "smtps" => (465, TlsMode::Wrapper),
            other => anyhow::bail!(
                "smarthost URL {display:?}: scheme {other:?} is neither smtp nor smtps"
            ),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .with_context(|| format!("smarthost URL {display:?} has no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        for (k, v) in url.query_pairs() {
            match (k.as_ref(), v.as_ref(), tls) {
                ("tls", "required", TlsMode::None) => tls = TlsMode::Required,
                ("tls", "opportunistic", TlsMode::None) => tls = TlsMode::Opportunistic,
                ("tls", "none", TlsMode::None) => {}
                _ => anyhow::bail!("smarthost URL {display:?}: unsupported parameter {k}={v}"),
            }
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let credentials = (!url.username().is_empty())
            .then(|| (decode(url.username()), decode(url.password().unwrap_or(""))));
        Ok(Smarthost {
            host,
            port: url.port().unwrap_or(default_port),
            tls,
            credentials,
            display,
        })
    }
}

impl Route {
    /// # Errors
    /// Neither `mx`, `capture` nor a smarthost URL (see [`Smarthost::parse`]).
    pub fn parse(s: &str) -> anyhow::Result<Route> {
        match s {
            "mx" => Ok(Route::Mx),
            "capture" => Ok(Route::Capture),
            url if url.starts_with("smtp://") || url.starts_with("smtps://") => {
                Ok(Route::Smarthost(Smarthost::parse(url)?))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(Route::parse("mx").unwrap(), Route::Mx);
        let Route::Smarthost(s) = Route::parse("smtp://127.0.0.1:2526").unwrap() else {
            panic!("not a smarthost")
        };
        assert_eq!(
            (s.host.as_str(), s.port, s.tls, s.credentials),
            ("127.0.0.1", 2526, TlsMode::None, None)
        );
        let Route::Smarthost(s) = Route::parse("smtps://us%40er:p%3Ass@mail.example").unwrap()
        else {
            panic!()
        };
        assert_eq!((s.port, s.tls), (465, TlsMode::Wrapper));
        assert_eq!(s.credentials, Some(("us@er".into(), "p:ss".into())));
        assert!(!format!("{s:?}").contains("p%3Ass"), "{s:?}");
        let Route::Smarthost(s) = Route::parse("smtp://mail.example:587?tls=required").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.tls, TlsMode::Required);
        assert!(Route::parse("smtp://mail.example?tls=sometimes").is_err());
        assert!(Route::parse("smtp://").is_err());
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
