//! docs/lint-rules.md stays true to the rule table: every rule's row, with
//! its severity, points and cap as the code has them, must be in it.

use lint::rules::{RULES, RuleInfo};

fn row(r: &RuleInfo) -> String {
    let points = if r.points == 0.0 {
        format!("per phrase, max {:.1}", r.cap)
    } else if r.points == r.cap {
        format!("{:.1}", r.points)
    } else {
        format!("{:.1} each, max {:.1}", r.points, r.cap)
    };
    let scope = if r.marketing_only { "marketing" } else { "all" };
    format!(
        "| `{}` | {} | {points} | {scope} | {} |",
        r.id,
        r.severity.as_str(),
        r.title
    )
}

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/lint-rules.md");
    std::fs::read_to_string(path).expect("docs/lint-rules.md")
}

#[test]
fn the_rules_document_lists_every_rule_as_the_code_defines_it() {
    let doc = doc();
    let missing: Vec<String> = RULES.iter().map(row).filter(|r| !doc.contains(r)).collect();
    assert!(
        missing.is_empty(),
        "docs/lint-rules.md is out of date; expected rows:\n{}",
        missing.join("\n")
    );
}

/// `cargo test -p mailroom-lint --test docs -- --ignored --nocapture`
/// prints the tables to paste into the document after changing rules.rs.
#[test]
#[ignore]
fn print_rule_tables() {
    let mut category = None;
    for r in RULES {
        if category != Some(r.category) {
            category = Some(r.category);
            println!("\n### {:?}\n", r.category);
            println!("| rule | severity | points | streams | catches |");
            println!("|---|---|---|---|---|");
        }
        println!("{}", row(r));
    }
}
