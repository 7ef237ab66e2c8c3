//! What a lint run returns: the score, its rating and the findings.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;

use crate::model::{Contributions, MODEL, Scored};
use crate::rules::{Rule, Severity};

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
    /// Scores above this fail (`Report::passed` is false). The default is
    /// the model's `risky` threshold.
    pub threshold: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stream: Stream::Marketing,
            threshold: MODEL.thresholds.review_max,
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
    /// By the thresholds the training report chose (docs/lint-model.md).
    pub fn from_score(score: f64) -> Rating {
        let t = &MODEL.thresholds;
        if score <= t.good_max {
            Rating::Good
        } else if score <= t.review_max {
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
    /// What this finding adds to the score: its learned weight (log-odds),
    /// shared among the findings of the same feature.
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
    /// The model's log-odds of spam plus 5, floored at 0: 5 is "as likely
    /// spam as not", each point more multiplies the odds by e. It is the
    /// sum of `contributions`.
    pub score: f64,
    /// The model's probability that a filter trained on real mail takes
    /// this message for spam (0–1).
    pub probability: f64,
    pub rating: Rating,
    pub threshold: f64,
    /// `score <= threshold`.
    pub passed: bool,
    /// Where the score comes from, by kind of evidence.
    pub contributions: Contributions,
    /// Costliest first.
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

/// One rule hit as a check records it, before the model prices it.
pub(crate) struct Hit {
    pub rule: Rule,
    /// The model feature this hit sets: the rule id, or for trigger
    /// phrases `phrase:<phrase>` (each phrase is weighed on its own).
    pub feature: Cow<'static, str>,
    pub message: String,
    pub evidence: Option<String>,
}

/// Collects rule hits while the checks run.
pub(crate) struct Findings {
    stream: Stream,
    pub(crate) hits: Vec<Hit>,
}

impl Findings {
    pub(crate) fn new(stream: Stream) -> Self {
        Findings {
            stream,
            hits: Vec::new(),
        }
    }

    /// Records a hit of `rule`; its feature is the rule itself.
    pub(crate) fn add(&mut self, rule: Rule, message: String, evidence: Option<String>) {
        self.add_feature(rule, Cow::Borrowed(rule.info().id), message, evidence);
    }

    /// Records a hit of `rule` that sets its own feature (trigger phrases).
    pub(crate) fn add_feature(
        &mut self,
        rule: Rule,
        feature: Cow<'static, str>,
        message: String,
        evidence: Option<String>,
    ) {
        if rule.info().marketing_only && self.stream != Stream::Marketing {
            return;
        }
        self.hits.push(Hit {
            rule,
            feature,
            message,
            evidence: evidence.map(|e| clip(&e, 200)),
        });
    }

    /// Prices every hit by the model: a feature's contribution is shared
    /// among the hits that set it. Trigger phrases the model gives no
    /// weight are dropped: they don't count, so they aren't reported.
    pub(crate) fn finish(self, options: &Options, summary: Summary, scored: Scored) -> Report {
        let mut hits_per_feature: HashMap<&str, usize> = HashMap::new();
        for h in &self.hits {
            *hits_per_feature.entry(&h.feature).or_default() += 1;
        }
        let mut findings: Vec<Finding> = Vec::with_capacity(self.hits.len());
        for h in &self.hits {
            let weight = scored.weight_of(&h.feature);
            if h.rule == Rule::TriggerPhrase && weight < MIN_PHRASE_WEIGHT {
                continue;
            }
            let info = h.rule.info();
            let share = weight / hits_per_feature[h.feature.as_ref()] as f64;
            findings.push(Finding {
                rule: info.id,
                severity: info.severity,
                points: round2(share),
                message: h.message.clone(),
                evidence: h.evidence.clone(),
                fix: info.fix,
            });
        }
        for extra in scored.signals() {
            findings.push(extra);
        }
        // Costliest first: that is the order to fix them in.
        findings.sort_by(|a, b| {
            b.points
                .total_cmp(&a.points)
                .then(b.severity.cmp(&a.severity))
        });
        let score = round(scored.score());
        Report {
            score,
            probability: (scored.probability() * 1000.0).round() / 1000.0,
            rating: Rating::from_score(score),
            threshold: options.threshold,
            passed: score <= options.threshold,
            contributions: scored.contributions(),
            findings,
            summary,
        }
    }
}

/// A trigger phrase whose learned weight is below this (log-odds) is
/// treated as carrying no weight.
const MIN_PHRASE_WEIGHT: f64 = 0.05;

/// To 0.01, without a "-0.0".
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0 + 0.0
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
