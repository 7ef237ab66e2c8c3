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
/// reported as it comes. Files are linted on every core, a batch at a
/// time, and printed in the order given.
pub(super) fn lint(args: &Args) -> Done {
    let mut out = anstream::stdout().lock();
    let mut unreadable = false;
    let mut above = false;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut printed = 0usize;
    'files: for batch in args.files.chunks(BATCH) {
        for (name, result) in lint_batch(args, batch, threads) {
            let report = match result {
                Ok(report) => report,
                Err(e) => {
                    eprintln!("error: {name}: {e:#}");
                    unreadable = true;
                    continue;
                }
            };
            above |= !report.passed;
            let written = match args.format {
                Format::Json => writeln!(out, "{}", linting::json_line(name, &report)),
                Format::Text => {
                    let gap = if printed > 0 { writeln!(out) } else { Ok(()) };
                    gap.and_then(|()| linting::write_text(&mut out, name, &report))
                }
            };
            printed += 1;
            if let Err(e) = written {
                // A closed pipe (`| head`) ends the output, it isn't a failure.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    break 'files;
                }
                eprintln!("error: writing output: {e}");
                return Done::Failed;
            }
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

/// Files linted between two writes: enough to keep every core busy, few
/// enough that output starts at once and memory stays small.
const BATCH: usize = 64;

type Linted<'a> = (&'a str, anyhow::Result<lint::Report>);

/// Lints `files` on up to `threads` threads; results in the files' order.
fn lint_batch<'a>(args: &Args, files: &'a [String], threads: usize) -> Vec<Linted<'a>> {
    let threads = threads.clamp(1, files.len().max(1));
    let mut results: Vec<Option<Linted<'a>>> = (0..files.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    files
                        .iter()
                        .enumerate()
                        .skip(t)
                        .step_by(threads)
                        .map(|(i, file)| (i, lint_file(args, file)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for w in workers {
            for (i, r) in w.join().expect("a lint worker panicked") {
                results[i] = Some(r);
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every file linted"))
        .collect()
}

fn lint_file<'a>(args: &Args, file: &'a str) -> Linted<'a> {
    let (name, bytes) = read_file_or_stdin(file);
    let input = match bytes {
        Ok(bytes) => linting::read_input(file, &bytes).map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::Error::from(e)),
    };
    let report = input.map(|input| {
        let stream = args.stream.or(input.stream).unwrap_or(Stream::Marketing);
        let options = lint::Options {
            stream: linting::lint_stream(stream),
            threshold: args
                .fail_above
                .unwrap_or_else(|| lint::Options::default().threshold),
        };
        lint::lint(&input.email, &options)
    });
    (name, report)
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
