//! `mailroom list`: offline CSV cleaning, import into a list, pruning.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use list_hygiene::clean;

use super::{Database, Done};
use crate::lists::MarketingSuppressions;
use crate::store::Store;

#[derive(Subcommand)]
pub(super) enum Command {
    /// Offline hygiene of a subscriber CSV: writes the rows worth mailing to
    /// --out and every removed row with its reason (invalid, duplicate,
    /// role, disposable, typo with a suggestion) to --report.
    Clean(CleanArgs),
    /// Add a CSV's subscribers to a list as confirmed (consent collected
    /// elsewhere), after the same checks as `list clean`; suppressed
    /// addresses are left out, and an address already on the list keeps
    /// its state. Removed rows go to --report.
    Import {
        input: PathBuf,
        #[arg(long)]
        list: String,
        #[command(flatten)]
        database: Database,
        /// Header of the address column [default: email, e-mail, ...].
        #[arg(long)]
        column: Option<String>,
        /// Where the consent was collected, for the consent trail
        /// [default: import:FILE NAME].
        #[arg(long)]
        source: Option<String>,
        /// [default: INPUT with `.rejected.csv` in place of `.csv`]
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Print confirmed subscribers with no open or click in --inactive-days
    /// (dry run); --apply marks them pruned. With --reengage, print those to
    /// send a last-chance campaign first (--apply records that it went);
    /// a later prune spares them for --grace-days.
    Prune {
        #[arg(long)]
        list: String,
        #[arg(long)]
        inactive_days: u32,
        #[arg(long, default_value_t = 14)]
        grace_days: u32,
        #[arg(long)]
        reengage: bool,
        #[arg(long)]
        apply: bool,
        #[command(flatten)]
        database: Database,
    },
}

#[derive(clap::Args)]
pub(super) struct CleanArgs {
    /// CSV with a header row.
    input: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// [default: OUT with `.removed.csv` in place of `.csv`]
    #[arg(long)]
    report: Option<PathBuf>,
    /// Header of the address column [default: email, e-mail,
    /// email_address, ...].
    #[arg(long)]
    column: Option<String>,
    /// Also remove addresses on this relay database's suppression list
    /// (global and marketing entries).
    #[arg(long, env = "MAILROOM_DATABASE_URL")]
    database: Option<String>,
}

/// `PATH` with `suffix` in place of its `.csv` ending (or after it): where
/// a command's report goes by default.
fn beside(path: &std::path::Path, suffix: &str) -> PathBuf {
    let name = path.to_string_lossy();
    let base = name.strip_suffix(".csv").unwrap_or(&name);
    PathBuf::from(format!("{base}{suffix}"))
}

pub(super) async fn run(command: Command) -> anyhow::Result<Done> {
    match command {
        Command::Clean(args) => clean_csv(&args).await,
        Command::Import {
            input,
            list,
            database,
            column,
            source,
            report,
        } => {
            let store = database.open().await?;
            import(&input, &list, &store, column.as_deref(), source, report).await
        }
        Command::Prune {
            list,
            inactive_days,
            grace_days,
            reengage,
            apply,
            database,
        } => {
            let store = database.open().await?;
            let done =
                crate::lists::prune(&store, &list, inactive_days, grace_days, reengage, apply)
                    .await?;
            let ts = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_default();
            let mut out = csv::Writer::from_writer(std::io::stdout().lock());
            out.write_record([
                "address",
                "confirmed_at",
                "last_delivered_at",
                "last_open_at",
                "last_click_at",
            ])?;
            for s in &done.subscribers {
                out.write_record([
                    s.address.clone(),
                    ts(s.confirmed_at),
                    ts(s.last_delivered_at),
                    ts(s.last_open_at),
                    ts(s.last_click_at),
                ])?;
            }
            out.flush()?;
            let n = done.subscribers.len();
            let what = match (reengage, done.applied) {
                (true, true) => format!("{n} marked as sent a last-chance campaign"),
                (true, false) => {
                    format!("{n} to send a last-chance campaign (dry run; --apply records it)")
                }
                (false, true) => format!("{n} pruned"),
                (false, false) => format!("{n} would be pruned (dry run; --apply prunes)"),
            };
            eprintln!("{list}: {what}");
            Ok(Done::Clean)
        }
    }
}

/// `mailroom list import`.
async fn import(
    input: &std::path::Path,
    list: &str,
    store: &Store,
    column: Option<&str>,
    source: Option<String>,
    report: Option<PathBuf>,
) -> anyhow::Result<Done> {
    store
        .get_list(list)
        .await?
        .with_context(|| format!("no list {list:?}; create it with POST /v1/lists"))?;
    let suppressed = crate::lists::marketing_suppressions(store).await?;
    let reader =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let summary = clean::clean(
        std::io::BufReader::new(reader),
        std::io::sink(),
        column,
        |a| suppressed.reason(a),
    )
    .with_context(|| input.display().to_string())?;
    let report = report.unwrap_or_else(|| beside(input, ".rejected.csv"));
    let report_file =
        std::fs::File::create(&report).with_context(|| format!("creating {}", report.display()))?;
    clean::write_report(&summary, std::io::BufWriter::new(report_file))
        .with_context(|| format!("writing {}", report.display()))?;
    let source = source.unwrap_or_else(|| {
        format!(
            "import:{}",
            input.file_name().unwrap_or_default().to_string_lossy()
        )
    });
    let added = store
        .import_subscribers(list, &summary.kept_addresses, &source)
        .await?;
    println!(
        "{}: {} rows, {added} added to {list}, {} already on the list, {} rejected (see {})",
        input.display(),
        summary.rows,
        summary.kept - added,
        summary.removed.len(),
        report.display()
    );
    Ok(Done::Clean)
}

/// `mailroom list clean`.
async fn clean_csv(args: &CleanArgs) -> anyhow::Result<Done> {
    let CleanArgs {
        input,
        out,
        report,
        column,
        database,
    } = args;
    let (input, out) = (input.as_path(), out.as_path());
    let column = column.as_deref();
    // What a mailing list must leave out: global and marketing entries.
    let suppressed = match database {
        Some(url) => crate::lists::marketing_suppressions(&super::open(url).await?).await?,
        None => MarketingSuppressions::default(),
    };

    anyhow::ensure!(
        input != out,
        "--out must not be the input file: it would be overwritten while read"
    );
    let report = report
        .clone()
        .unwrap_or_else(|| beside(out, ".removed.csv"));
    let reader =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let writer =
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let summary = clean::clean(
        std::io::BufReader::new(reader),
        std::io::BufWriter::new(writer),
        column,
        |a| suppressed.reason(a),
    )
    .with_context(|| input.display().to_string())?;
    let report_file =
        std::fs::File::create(&report).with_context(|| format!("creating {}", report.display()))?;
    clean::write_report(&summary, std::io::BufWriter::new(report_file))
        .with_context(|| format!("writing {}", report.display()))?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &summary.removed {
        *counts.entry(r.reason).or_default() += 1;
    }
    let removed: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    println!(
        "kept {} of {} rows in {}; removed {}{} (listed in {})",
        summary.kept,
        summary.rows,
        out.display(),
        summary.removed.len(),
        if removed.is_empty() {
            String::new()
        } else {
            format!(": {}", removed.join(", "))
        },
        report.display()
    );
    Ok(Done::Clean)
}
