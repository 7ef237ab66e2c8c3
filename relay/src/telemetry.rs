//! Logging: human-readable by default, JSON for log shippers. Level from
//! `RUST_LOG` (default: `info`, with the libraries' own chatter left out).
//! Colour only when stderr is a terminal and `NO_COLOR` is not set.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber; logs go to stderr so stdout stays for
/// command output (keys, DNS records).
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The default level: the operator's own events. Lint's HTML tokenizer
/// hands the markup's parse errors to lint (the `html.malformed` finding
/// carries them), not to the log, so a sender's broken HTML doesn't fill
/// it; `RUST_LOG` overrides the level.
const DEFAULT_FILTER: &str = "info";

/// Colour codes only on a terminal, and not when `NO_COLOR` is set to
/// anything non-empty (no-color.org).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// `text` with the local part of every address in it masked
/// (`***@example.com`): SMTP replies quote the recipient ("550 5.1.1
/// <jane@example.com>: unknown user"), and logs at info level must not hold
/// full recipient addresses. The domain is kept; it is what an operator
/// needs to tell a provider's problem from a mailbox's.
pub fn redact_addresses(text: &str) -> Cow<'_, str> {
    static LOCAL_PART: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"[^\s<>"'(),;:\[\]@]+@"#).expect("a valid pattern"));
    LOCAL_PART.replace_all(text, "***@")
}

#[cfg(test)]
mod tests {
    use super::{colour, redact_addresses};

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".as_ref())));
        assert!(!colour(true, Some("1".as_ref())));
        assert!(!colour(false, None));
    }

    #[test]
    fn addresses_in_replies_lose_their_local_part() {
        assert_eq!(
            redact_addresses("550 5.1.1 <jane.doe+shop@example.com>: Recipient address rejected"),
            "550 5.1.1 <***@example.com>: Recipient address rejected"
        );
        assert_eq!(
            redact_addresses(
                "452 4.2.2 The email account that you tried to reach is over quota. a@b.c, x@y.z"
            ),
            "452 4.2.2 The email account that you tried to reach is over quota. ***@b.c, ***@y.z"
        );
        assert_eq!(
            redact_addresses("stored address \"bob@example.org\": invalid"),
            "stored address \"***@example.org\": invalid"
        );
        // Nothing to hide: the text is borrowed, not copied.
        assert!(matches!(
            redact_addresses("250 2.0.0 Ok: queued as 4F2D"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
