//! What a lint run returns: the score, its rating and the findings.

use std::collections::HashMap;

use serde::Serialize;

use crate::rules::{LIMITS, Rule, Severity};

/// Which kind of mail is being linted; compliance rules apply to marketing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Transactional,
    #[default]
    Marketing,
}

impl std::str::FromStr for Stream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "transactional" => Ok(Stream::Transactional),
            "marketing" => Ok(Stream::Marketing),
            other => Err(format!(
                "unknown stream {other:?}: expected transactional or marketing"
            )),
        }
    }
}

/// How to lint.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub stream: Stream,
    /// Scores above this fail (`Report::passed` is false).
    pub threshold: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stream: Stream::Marketing,
            threshold: LIMITS.review_max,
        }
    }
}

/// The verdict in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Good,
    Review,
    Risky,
}

impl Rating {
    pub fn from_score(score: f64) -> Rating {
        if score <= LIMITS.good_max {
            Rating::Good
        } else if score <= LIMITS.review_max {
            Rating::Review
        } else {
            Rating::Risky
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Good => "good",
            Rating::Review => "review",
            Rating::Risky => "risky",
        }
    }
}

/// One thing the linter found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable rule id, e.g. `links.shortener`.
    pub rule: &'static str,
    pub severity: Severity,
    /// What this finding adds to the score (after the rule's cap).
    pub points: f64,
    pub message: String,
    /// The word, link or element at fault, as it appears in the message.
    pub evidence: Option<String>,
    pub fix: &'static str,
}

/// Counts that help read the findings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub stream: Stream,
    pub subject: Option<String>,
    /// The inbox preview text, as far as it can be told from the HTML/text.
    pub preheader: Option<String>,
    pub words: usize,
    pub links: usize,
    pub link_domains: usize,
    pub images: usize,
    pub html_bytes: usize,
    pub attachments: usize,
}

/// The result of linting one message.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Sum of the findings' points; higher is riskier.
    pub score: f64,
    pub rating: Rating,
    pub threshold: f64,
    /// `score <= threshold`.
    pub passed: bool,
    pub findings: Vec<Finding>,
    pub summary: Summary,
}

impl Report {
    /// The rule ids that fired, sorted and without repeats.
    pub fn rule_ids(&self) -> Vec<&'static str> {
        let mut ids: Vec<_> = self.findings.iter().map(|f| f.rule).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Collects findings while the checks run and applies each rule's cap.
pub(crate) struct Findings {
    stream: Stream,
    findings: Vec<Finding>,
    spent: HashMap<Rule, f64>,
}

impl Findings {
    pub(crate) fn new(stream: Stream) -> Self {
        Findings {
            stream,
            findings: Vec::new(),
            spent: HashMap::new(),
        }
    }

    /// Records a finding worth the rule's standard points.
    pub(crate) fn add(&mut self, rule: Rule, message: String, evidence: Option<String>) {
        self.add_points(rule, rule.info().points, message, evidence);
    }

    /// Records a finding with its own weight (trigger phrases), still capped.
    pub(crate) fn add_points(
        &mut self,
        rule: Rule,
        points: f64,
        message: String,
        evidence: Option<String>,
    ) {
        let info = rule.info();
        if info.marketing_only && self.stream != Stream::Marketing {
            return;
        }
        let spent = self.spent.entry(rule).or_insert(0.0);
        let points = round(points.min(info.cap - *spent).max(0.0));
        *spent += points;
        self.findings.push(Finding {
            rule: info.id,
            severity: info.severity,
            points,
            message,
            evidence: evidence.map(|e| clip(&e, 200)),
            fix: info.fix,
        });
    }

    pub(crate) fn finish(mut self, options: &Options, summary: Summary) -> Report {
        // `+ 0.0`: an empty f64 sum is -0.0, which would print as "-0.0".
        let score = round(self.findings.iter().map(|f| f.points).sum::<f64>() + 0.0);
        // Most severe and costly first: that is the order to fix them in.
        self.findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(b.points.total_cmp(&a.points))
        });
        Report {
            score,
            rating: Rating::from_score(score),
            threshold: options.threshold,
            passed: score <= options.threshold,
            findings: self.findings,
            summary,
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Shortens evidence to `max` characters on a char boundary.
pub(crate) fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
