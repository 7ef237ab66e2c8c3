//! Development aid: every Sisimai corpus file where the bounce reader
//! disagrees with Sisimai (no recipient, wrong count, class or status),
//! with what each side says. `cargo run -p mailroom-list-hygiene
//! --example sisimai_misses [FILTER]`; the figures themselves come from
//! `tests/sisimai.rs`.

use std::collections::BTreeMap;
use std::path::Path;

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sisimai");
    let tsv = std::fs::read_to_string(dir.join("expected.tsv")).expect("expected.tsv");
    let mut files: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for line in tsv.lines().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        files.entry(c[0].to_string()).or_default().push((
            c[2].to_string(),
            c[3].to_string(),
            c[5].to_string(),
        ));
    }
    for (path, want) in files {
        if !path.contains(&filter) || want.iter().all(|w| w.2 == "not-bounce") {
            continue;
        }
        let raw = std::fs::read(dir.join(&path)).expect("file");
        let got = list_hygiene::bounce::parse(&raw).ok();
        let rows: Vec<(String, String, String, String)> = got
            .iter()
            .flat_map(|b| &b.recipients)
            .map(|r| {
                (
                    r.address.clone(),
                    r.status.clone().unwrap_or_default(),
                    r.reason.map(|x| x.as_str()).unwrap_or("-").to_string(),
                    r.class.as_str().to_string(),
                )
            })
            .collect();
        let mut ok = rows.len() == want.len();
        if ok {
            for (w, g) in want.iter().zip(&rows) {
                let class_ok =
                    g.3 == w.2 || (w.1 == "filtered" && (g.3 == "policy" || g.3 == "hard"));
                let status_ok = if w
                    .0
                    .split('.')
                    .nth(2)
                    .is_some_and(|d| d.len() == 3 && d.starts_with('9'))
                {
                    g.1.chars().next() == w.0.chars().next()
                } else {
                    g.1 == w.0
                };
                ok &= class_ok && status_ok;
            }
        }
        if ok {
            continue;
        }
        println!("== {path}");
        for w in &want {
            println!("   want {:8} {:18} {}", w.0, w.1, w.2);
        }
        for g in &rows {
            println!("   got  {:8} {:18} {:12} {}", g.1, g.2, g.3, g.0);
        }
        if rows.is_empty()
            && let Some(b) = &got
        {
            println!(
                "   got  nothing: kind {:?} unnamed {:?}",
                b.kind,
                b.unnamed.as_ref().map(|u| (&u.status, u.reason, u.class))
            );
        }
    }
}
