//! Offline hygiene of a subscriber CSV: keep the rows worth mailing, and say
//! for every removed row why.

use std::collections::HashSet;
use std::io::{Read, Write};

use serde::Serialize;

use crate::address::{Address, Problem, check};

/// Why a row was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// 1-based line of the row in the input (the header is line 1).
    pub line: u64,
    pub address: String,
    /// invalid, duplicate, disposable, typo, role or suppressed.
    pub reason: &'static str,
    /// The invalid reason, the suggestion for a typo, ...
    pub detail: String,
}

/// Totals of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub rows: u64,
    pub kept: u64,
    pub removed: Vec<Removed>,
    /// The kept addresses in their compared form ([`Address::key`]), in
    /// input order.
    #[serde(skip)]
    pub kept_addresses: Vec<String>,
}

/// Why the CSV couldn't be cleaned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CleanError {
    #[error("reading the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("no email column: name one (headers are {0})")]
    NoEmailColumn(String),
    #[error("the input has no header row")]
    Empty,
}

/// Header names taken for the address column, case-insensitively.
const EMAIL_HEADERS: &[&str] = &[
    "email",
    "e-mail",
    "email_address",
    "email address",
    "mail",
    "address",
];

/// Copies the rows of `input` worth mailing to `output`, header included.
/// The address column is `column` if given, else the first header named like
/// an email column. Rows keep every other column as they were. `suppressed`
/// says why an address must not be mailed (the caller's suppression list),
/// or `None`.
///
/// # Errors
/// Malformed CSV, no header row, or no column to read addresses from.
pub fn clean(
    input: impl Read,
    output: impl Write,
    column: Option<&str>,
    suppressed: impl Fn(&Address) -> Option<String>,
) -> Result<Summary, CleanError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let headers = reader.headers()?.clone();
    if headers.is_empty() {
        return Err(CleanError::Empty);
    }
    let index = headers
        .iter()
        .position(|h| match column {
            Some(c) => h.trim().eq_ignore_ascii_case(c),
            None => EMAIL_HEADERS
                .iter()
                .any(|e| h.trim().eq_ignore_ascii_case(e)),
        })
        .ok_or_else(|| CleanError::NoEmailColumn(headers.iter().collect::<Vec<_>>().join(", ")))?;
    let mut writer = csv::Writer::from_writer(output);
    writer.write_record(&headers)?;

    let mut summary = Summary::default();
    let mut seen = HashSet::new();
    for record in reader.records() {
        let record = record?;
        summary.rows += 1;
        let line = record.position().map_or(summary.rows + 1, |p| p.line());
        let raw = record.get(index).unwrap_or_default().trim().to_string();
        let checked = check(&raw);
        let problem = checked.problems.first();
        let removed = match (problem, &checked.address) {
            (Some(p), _) => Some((
                p.as_str(),
                match p {
                    Problem::Invalid { reason } => reason.clone(),
                    Problem::Typo { suggestion } => format!("did you mean {suggestion}?"),
                    Problem::Disposable { domain } => {
                        format!("{domain} is a disposable-mail domain")
                    }
                    Problem::Role { local_part } => format!("{local_part}@ is a role account"),
                },
            )),
            (None, Some(a)) if !seen.insert(a.key()) => Some((
                "duplicate",
                "the same address is on an earlier row".to_string(),
            )),
            (None, Some(a)) => suppressed(a).map(|why| ("suppressed", why)),
            _ => None,
        };
        match removed {
            Some((reason, detail)) => summary.removed.push(Removed {
                line,
                address: raw,
                reason,
                detail,
            }),
            None => {
                writer.write_record(&record)?;
                summary.kept += 1;
                if let Some(a) = &checked.address {
                    summary.kept_addresses.push(a.key());
                }
            }
        }
    }
    writer.flush().map_err(csv::Error::from)?;
    Ok(summary)
}

/// The removed rows as CSV: line, address, reason, detail.
///
/// # Errors
/// Write errors.
pub fn write_report(summary: &Summary, out: impl Write) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["line", "address", "reason", "detail"])?;
    for r in &summary.removed {
        w.write_record([r.line.to_string().as_str(), &r.address, r.reason, &r.detail])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_kept_or_removed_with_a_reason_and_other_columns_survive() {
        let input = "name,Email,signed_up\n\
                     Dana,dana@customer.example,2026-01-02\n\
                     Dup,DANA@customer.example,2026-02-03\n\
                     Bad,not-an-address,2026-02-04\n\
                     Info,info@shop.example,2026-02-05\n\
                     Temp,x@mailinator.com,2026-02-06\n\
                     Typo,sam@gmial.com,2026-02-07\n\
                     \"Quoted, Name\",kim@oldisp.example,2026-02-08\n";
        let mut out = Vec::new();
        let summary = clean(input.as_bytes(), &mut out, None, |a| {
            (a.domain() == "oldisp.example").then(|| "unsubscribe (marketing)".to_string())
        })
        .unwrap();
        assert_eq!(summary.rows, 7);
        assert_eq!(summary.kept, 1);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "name,Email,signed_up\nDana,dana@customer.example,2026-01-02\n"
        );
        let reasons: Vec<(u64, &str)> =
            summary.removed.iter().map(|r| (r.line, r.reason)).collect();
        assert_eq!(
            reasons,
            [
                (3, "duplicate"),
                (4, "invalid"),
                (5, "role"),
                (6, "disposable"),
                (7, "typo"),
                (8, "suppressed")
            ]
        );
        assert_eq!(summary.removed[5].detail, "unsubscribe (marketing)");
        assert_eq!(summary.removed[4].detail, "did you mean sam@gmail.com?");
        let mut report = Vec::new();
        write_report(&summary, &mut report).unwrap();
        assert!(
            String::from_utf8(report)
                .unwrap()
                .starts_with("line,address,reason,detail\n3,DANA@customer.example,duplicate,")
        );
    }

    #[test]
    fn a_csv_without_an_email_column_is_an_error_naming_the_headers() {
        let e = clean("a,b\n1,2\n".as_bytes(), Vec::new(), None, |_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no email column: name one (headers are a, b)"
        );
        let s = clean(
            "a,contact\n1,x@y.example\n".as_bytes(),
            Vec::new(),
            Some("contact"),
            |_| None,
        )
        .unwrap();
        assert_eq!(s.kept, 1);
    }
}
