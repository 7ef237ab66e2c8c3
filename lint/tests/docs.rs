//! docs/lint-rules.md stays true to the rule table and the shipped model:
//! every rule's row, with its severity, prior and learned weight as the
//! code and data/model.txt have them, must be in it.

use lint::model::MODEL;
use lint::rules::{RULES, Rule, RuleInfo};

fn row(r: &RuleInfo) -> String {
    let (prior, learned) = if r.rule == Rule::TriggerPhrase {
        ("per phrase".to_string(), "per phrase".to_string())
    } else if r.prior == 0.0 {
        ("–".to_string(), "its features' sum".to_string())
    } else {
        (
            format!("{:.1}", r.prior),
            format!("{:.2}", MODEL.named_weight(r.id)),
        )
    };
    let scope = if r.marketing_only { "marketing" } else { "all" };
    format!(
        "| `{}` | {} | {prior} | {learned} | {scope} | {} |",
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
            println!("| rule | severity | prior | learned | streams | catches |");
            println!("|---|---|---|---|---|---|");
        }
        println!("{}", row(r));
    }
}

#[test]
fn the_rules_document_quotes_the_models_rating_thresholds() {
    let doc = doc();
    let t = MODEL.thresholds;
    for row in [
        format!("| ≤ {:.1} | `good` |", t.good_max),
        format!("| ≤ {:.1} | `review` |", t.review_max),
        format!("| > {:.1} | `risky` |", t.review_max),
    ] {
        assert!(doc.contains(&row), "docs/lint-rules.md lacks {row:?}");
    }
}
