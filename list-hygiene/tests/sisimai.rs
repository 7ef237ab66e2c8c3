//! The bounce reader measured on real mail nobody here wrote: Sisimai's
//! public corpus (sisimai/set-of-emails, BSD-2-Clause, `tests/sisimai/`),
//! 629 bounces from ~70 MTAs and mailbox providers, ARF reports, auto-
//! replies and delivery notices, with Sisimai's verdict for each bounced
//! recipient in `expected.tsv`.
//!
//! The test prints every figure and fails when one falls below its floor:
//! the floors are what the reader reaches today, so a change that reads
//! real bounces worse shows at once. The list-hygiene issue's targets are
//! printed beside them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use list_hygiene::bounce::{Bounce, BounceClass, Kind, parse};
use list_hygiene::email::EmailAddress;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sisimai")
}

/// One row of `expected.tsv`: one bounced recipient (or a non-bounce).
struct Expected {
    status: String,
    reason: String,
    class: String,
}

fn expected() -> BTreeMap<String, Vec<Expected>> {
    let text = std::fs::read_to_string(corpus().join("expected.tsv")).expect("expected.tsv");
    let mut files: BTreeMap<String, Vec<Expected>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 6, "expected.tsv: {line}");
        files
            .entry(cols[0].to_string())
            .or_default()
            .push(Expected {
                status: cols[2].to_string(),
                reason: cols[3].to_string(),
                class: cols[5].to_string(),
            });
    }
    // The three files Sisimai reads as no bounce at all.
    for entry in std::fs::read_dir(corpus().join("maildir/not")).expect("maildir/not") {
        let name = entry.expect("a directory entry").file_name();
        files
            .entry(format!("maildir/not/{}", name.to_string_lossy()))
            .or_default()
            .push(Expected {
                status: String::new(),
                reason: "not-bounce".into(),
                class: "not-bounce".into(),
            });
    }
    files
}

/// Recipients reported as failed or delayed.
fn failed(b: &Bounce) -> Vec<(Option<String>, BounceClass)> {
    b.recipients
        .iter()
        .filter(|r| r.action == "failed" || r.action == "delayed")
        .map(|r| (r.status.clone(), r.class))
        .collect()
}

/// Whether `got` is the class Sisimai's reason maps to; `filtered` is
/// Sisimai's word both for content filters and for "user unknown" after
/// DATA, so policy and hard both agree with it.
fn class_agrees(want: &Expected, got: BounceClass) -> bool {
    if want.reason == "filtered" {
        return matches!(got, BounceClass::Policy | BounceClass::Hard);
    }
    want.class == got.as_str()
}

/// Whether `got` agrees with Sisimai's status; its own `X.0.9NN` codes
/// never appear in a message, so only their class digit is compared.
fn status_agrees(want: &str, got: Option<&str>) -> bool {
    let Some(got) = got else {
        return false;
    };
    if want
        .split('.')
        .nth(2)
        .is_some_and(|d| d.starts_with('9') && d.len() == 3)
    {
        return want.chars().next() == got.chars().next();
    }
    want == got
}

/// `raw` with every line ending made a bare CR.
fn cr_only(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.push(b'\r');
                i += 2;
                continue;
            }
            b'\n' => out.push(b'\r'),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

struct Ratio {
    name: &'static str,
    hits: usize,
    of: usize,
    /// What the reader reaches today: a regression below fails the test.
    floor: f64,
    /// The list-hygiene issue's target.
    target: f64,
}

impl Ratio {
    fn pct(&self) -> f64 {
        100.0 * self.hits as f64 / self.of.max(1) as f64
    }
}

#[test]
fn the_sisimai_corpus_is_read_at_least_as_well_as_before() {
    let files = expected();
    let mut bounce_files = 0;
    let mut detected = 0;
    let mut count_right = 0;
    let mut rows = 0;
    let mut class_right = 0;
    let mut status_right = 0;
    let mut cr_same = 0;
    let mut not_bounces = 0;
    let mut not_bounces_clean = 0;
    let mut not_bounces_kind = 0;
    let mut recipients = 0;
    let mut not_addresses = Vec::new();
    let mut by_class: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (path, want) in &files {
        let raw = std::fs::read(corpus().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let parsed = parse(&raw).ok();
        let got = parsed.as_ref().map(failed).unwrap_or_default();
        for r in parsed.iter().flat_map(|b| &b.recipients) {
            recipients += 1;
            if EmailAddress::parse(&r.address).is_err() {
                not_addresses.push(format!("{path}: {:?}", r.address));
            }
        }
        let cr = parse(&cr_only(&raw)).ok();
        if cr.as_ref().map(failed) == parsed.as_ref().map(failed) {
            cr_same += 1;
        }
        if want.iter().all(|w| w.class == "not-bounce") {
            not_bounces += 1;
            not_bounces_clean += usize::from(got.is_empty());
            // Sisimai's reason for a non-bounce says what it is instead.
            // Sisimai files a mail client's unsubscribe request under
            // "feedback" (ARF's opt-out); mailroom keeps it apart from a
            // complaint, which counts against the sender's reputation.
            let kind = match want[0].reason.as_str() {
                "feedback"
                    if String::from_utf8_lossy(&raw).contains("\nX-Apple-Unsubscribe: true") =>
                {
                    Some(Kind::UnsubscribeRequest)
                }
                "feedback" => Some(Kind::FeedbackReport),
                "vacation" => Some(Kind::AutoReply),
                "delivered" => Some(Kind::DeliveryNotice),
                _ => Some(Kind::NotABounce),
            };
            not_bounces_kind += usize::from(parsed.as_ref().map(|b| b.kind) == kind);
            continue;
        }
        let want: Vec<&Expected> = want.iter().filter(|w| w.class != "not-bounce").collect();
        bounce_files += 1;
        detected += usize::from(!got.is_empty());
        count_right += usize::from(got.len() == want.len());
        // Match expected rows to parsed recipients by status, then order.
        let mut used = vec![false; got.len()];
        for w in &want {
            rows += 1;
            let pick = (0..got.len())
                .find(|&i| !used[i] && got[i].0.as_deref() == Some(w.status.as_str()))
                .or_else(|| (0..got.len()).find(|&i| !used[i]));
            let entry = by_class.entry(w.class.as_str()).or_default();
            entry.1 += 1;
            if let Some(i) = pick {
                used[i] = true;
                if class_agrees(w, got[i].1) {
                    class_right += 1;
                    entry.0 += 1;
                }
                status_right += usize::from(status_agrees(&w.status, got[i].0.as_deref()));
            }
        }
    }
    let ratios = [
        Ratio {
            name: "bounce files giving >= 1 failed/delayed recipient",
            hits: detected,
            of: bounce_files,
            floor: 98.0,
            target: 98.0,
        },
        Ratio {
            name: "number of failed recipients right",
            hits: count_right,
            of: bounce_files,
            floor: 96.5,
            target: 95.0,
        },
        Ratio {
            name: "class agrees with Sisimai",
            hits: class_right,
            of: rows,
            floor: 90.5,
            target: 90.0,
        },
        Ratio {
            name: "status agrees with Sisimai",
            hits: status_right,
            of: rows,
            floor: 92.5,
            target: 90.0,
        },
        Ratio {
            name: "CR-only copy reads the same",
            hits: cr_same,
            of: files.len(),
            floor: 100.0,
            target: 100.0,
        },
        Ratio {
            name: "non-bounces giving no failed recipient",
            hits: not_bounces_clean,
            of: not_bounces,
            floor: 100.0,
            target: 100.0,
        },
        Ratio {
            name: "non-bounces told apart (complaint, auto-reply, ...)",
            hits: not_bounces_kind,
            of: not_bounces,
            floor: 100.0,
            target: 100.0,
        },
    ];
    println!("Sisimai corpus, {} files:", files.len());
    for r in &ratios {
        println!(
            "  {:<52} {:>4} / {:<4} = {:5.1} %  (floor {:.0} %, target {:.0} %)",
            r.name,
            r.hits,
            r.of,
            r.pct(),
            r.floor,
            r.target
        );
    }
    let classes: Vec<String> = by_class
        .iter()
        .map(|(c, (ok, n))| format!("{c} {ok}/{n}"))
        .collect();
    println!(
        "  class agreement by Sisimai's class: {}",
        classes.join(", ")
    );
    println!(
        "  recipients that are not addresses: {} of {recipients}",
        not_addresses.len()
    );
    assert!(
        not_addresses.is_empty(),
        "recipients that are not addresses:\n{}",
        not_addresses.join("\n")
    );
    let below: Vec<&str> = ratios
        .iter()
        .filter(|r| r.pct() < r.floor)
        .map(|r| r.name)
        .collect();
    assert!(below.is_empty(), "fell below the floor: {below:?}");
}
