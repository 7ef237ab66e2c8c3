//! `mailroom lint` and `mailroom bounce parse`: offline readers of mail
//! files, printing what the lint and list-hygiene libraries find.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;

use super::{Done, Format, read_file_or_stdin};
use crate::domain::Stream;
use crate::linting;

#[derive(clap::Args)]
pub(super) struct Args {
    /// Stream rules to apply [default: the JSON message's stream, else
    /// marketing].
    #[arg(long, value_parser = super::parse_stream)]
    stream: Option<Stream>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 1 when any file scores above this [default: the model's
    /// `risky` threshold, see docs/lint-rules.md].
    #[arg(long, value_parser = parse_score)]
    fail_above: Option<f64>,
    /// .eml messages, .html bodies or the relay's JSON messages; `-`
    /// reads stdin.
    #[arg(required = true)]
    files: Vec<String>,
}

fn parse_score(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("{s:?} is not a score (a number of at least 0)")),
    }
}

#[derive(Subcommand)]
pub(super) enum BounceCommand {
    /// Print what bounces say: recipients, status, reason, class, and the
    /// message each refers to (exit 0; 2 if a file can't be read or isn't
    /// a message — the others are still read).
    Parse {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Bounces as received (RFC 5322); `-` reads stdin. With JSON, one
        /// object per file per line, with its `file`.
        #[arg(required = true)]
        files: Vec<String>,
    },
}

/// Every file is linted even when one fails to read; each failure is
/// reported as it comes.
pub(super) fn lint(args: &Args) -> Done {
    let mut out = anstream::stdout().lock();
    let mut unreadable = false;
    let mut above = false;
    for (i, file) in args.files.iter().enumerate() {
        let (name, bytes) = read_file_or_stdin(file);
        let input = match bytes {
            Ok(bytes) => linting::read_input(file, &bytes).map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::Error::from(e)),
        };
        let input = match input {
            Ok(input) => input,
            Err(e) => {
                eprintln!("error: {name}: {e:#}");
                unreadable = true;
                continue;
            }
        };
        let stream = args.stream.or(input.stream).unwrap_or(Stream::Marketing);
        let options = lint::Options {
            stream: linting::lint_stream(stream),
            threshold: args
                .fail_above
                .unwrap_or_else(|| lint::Options::default().threshold),
        };
        let report = lint::lint(&input.email, &options);
        above |= !report.passed;
        let written = match args.format {
            Format::Json => writeln!(out, "{}", linting::json_line(name, &report)),
            Format::Text => {
                let gap = if i > 0 { writeln!(out) } else { Ok(()) };
                gap.and_then(|()| linting::write_text(&mut out, name, &report))
            }
        };
        if let Err(e) = written {
            // A closed pipe (`| head`) ends the output, it isn't a failure.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            eprintln!("error: writing output: {e}");
            return Done::Failed;
        }
    }
    if unreadable {
        Done::Failed
    } else if above {
        Done::Found
    } else {
        Done::Clean
    }
}

pub(super) fn bounce(command: &BounceCommand) -> anyhow::Result<Done> {
    let BounceCommand::Parse { format, files } = command;
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for (i, file) in files.iter().enumerate() {
        let (name, raw) = read_file_or_stdin(file);
        let bounce = raw
            .with_context(|| format!("reading {name}"))
            .and_then(|raw| list_hygiene::bounce::parse(&raw).with_context(|| name.to_string()));
        let bounce = match bounce {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
                continue;
            }
        };
        let written = match format {
            Format::Json => {
                let mut v = serde_json::to_value(&bounce).expect("bounces serialize");
                if files.len() > 1 {
                    v["file"] = serde_json::Value::from(name);
                }
                writeln!(out, "{v}")
            }
            Format::Text => {
                let gap = if i > 0 { writeln!(out) } else { Ok(()) };
                gap.and_then(|()| linting::write_bounce(&mut out, name, &bounce))
            }
        };
        match written {
            // A closed pipe (`| head`) ends the output, it isn't a failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("writing output"),
            Ok(()) => {}
        }
    }
    Ok(if failed { Done::Failed } else { Done::Clean })
}
