//! The learned score. A message becomes a sparse feature vector (the rules
//! that fired, link/header/layout facts, hashed words: [`features`]); a
//! logistic-regression model trained on labelled real mail by `lint-train`
//! (weights in `data/model.txt`, embedded at build time, parsed once) turns
//! it into log-odds of spam. Each feature's weight is its contribution, so
//! the score explains itself: every finding carries its share.
//!
//! docs/lint-model.md is the training report: data, cross-validated
//! figures, how the rating thresholds were chosen, the heaviest features.

pub mod features;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use serde::Serialize;

pub use features::{Features, Group};

use crate::report::{Finding, round2};
use crate::rules::{Rule, Severity};

/// The score is log-odds + this, so that 5 means "as likely spam as not"
/// (the scale SpamAssassin users know) and ordinary mail stays positive.
pub const SCORE_OFFSET: f64 = 5.0;

/// Hashed wording features live in 2^18 buckets.
pub const HASH_BITS: u32 = 18;
pub const HASH_BUCKETS: usize = 1 << HASH_BITS;

/// Hashed weights are stored as integer multiples of 1/this.
const HASHED_UNIT: f32 = 10_000.0;

/// A group of non-rule evidence is reported as a finding once it adds at
/// least this much.
const SIGNAL_MIN: f64 = 0.3;

/// Score thresholds of the three ratings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// At or below: `good`.
    pub good_max: f64,
    /// At or below: `review`; above: `risky`.
    pub review_max: f64,
}

/// Weights of a trained model.
#[derive(Debug, Clone)]
pub struct Model {
    pub bias: f64,
    pub named: HashMap<String, f64>,
    /// `HASH_BUCKETS` weights.
    pub hashed: Vec<f32>,
    pub thresholds: Thresholds,
    /// Free-form provenance line (training data, date, settings).
    pub about: String,
}

/// The model shipped in the crate.
pub static MODEL: LazyLock<Model> = LazyLock::new(|| {
    Model::parse(include_str!("../data/model.txt")).expect("the embedded lint model parses")
});

/// `BUCKET UNITS` of an `h` line (after the `h `).
fn hashed_line(line: &[u8]) -> Option<(usize, i32)> {
    fn digits(b: &[u8]) -> Option<u32> {
        if b.is_empty() || b.len() > 9 {
            return None;
        }
        b.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    }
    let line = line.trim_ascii_end();
    let space = line.iter().position(|&c| c == b' ')?;
    let (bucket, units) = (&line[..space], &line[space + 1..]);
    let (negative, units) = match units.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, units),
    };
    let units = i32::try_from(digits(units)?).ok()?;
    Some((
        digits(bucket)? as usize,
        if negative { -units } else { units },
    ))
}

/// Why a model file can't be read.
#[derive(Debug, thiserror::Error)]
#[error("model line {line}: {problem}")]
pub struct ModelError {
    pub line: usize,
    pub problem: String,
}

impl Model {
    /// A model that knows nothing yet: what training starts from.
    pub fn empty() -> Model {
        Model {
            bias: 0.0,
            named: HashMap::new(),
            hashed: vec![0.0; HASH_BUCKETS],
            thresholds: Thresholds {
                good_max: 3.0,
                review_max: 5.0,
            },
            about: String::new(),
        }
    }

    /// Reads the text form [`Model::to_text`] writes: one `key value` per
    /// line (`bias`, `good_max`, `review_max`, `about`), `n WEIGHT NAME`
    /// for named features and `h BUCKET UNITS` for hashed ones, the weight
    /// in integer ten-thousandths (parsing 140,000 floats would cost every
    /// `mailroom lint` run ~20 ms at start).
    ///
    /// # Errors
    /// A line that is none of these, or a number that doesn't parse.
    pub fn parse(text: &str) -> Result<Model, ModelError> {
        let mut m = Model::empty();
        // Split on bytes and read `h` lines first, by hand: they are 140,000
        // of the file's lines, read at every `mailroom lint` start, and
        // `lines()` + `split_once` + `str::parse` cost ~650 instructions a
        // line against ~300 this way (93M -> 45M a start, in callgrind).
        for (i, line) in text.as_bytes().split(|&b| b == b'\n').enumerate() {
            let err = |problem: &str| ModelError {
                line: i + 1,
                problem: problem.to_string(),
            };
            if let Some(rest) = line.strip_prefix(b"h ") {
                let (b, w) = hashed_line(rest).ok_or_else(|| err("h BUCKET WEIGHT"))?;
                let slot = m
                    .hashed
                    .get_mut(b)
                    .ok_or_else(|| err("bucket out of range"))?;
                *slot = w as f32 / HASHED_UNIT;
                continue;
            }
            // A whole line of a str split at an ASCII byte is still UTF-8.
            let line = std::str::from_utf8(line)
                .map_err(|_| err("not UTF-8"))?
                .trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = line.split_once(' ').ok_or_else(|| err("no value"))?;
            let number = |s: &str| s.trim().parse::<f64>().map_err(|_| err("bad number"));
            match key {
                "about" => m.about = rest.to_string(),
                "bias" => m.bias = number(rest)?,
                "good_max" => m.thresholds.good_max = number(rest)?,
                "review_max" => m.thresholds.review_max = number(rest)?,
                "n" => {
                    let (w, name) = rest.split_once(' ').ok_or_else(|| err("n WEIGHT NAME"))?;
                    m.named.insert(name.to_string(), number(w)?);
                }
                _ => return Err(err("unknown key")),
            }
        }
        if m.thresholds.good_max > m.thresholds.review_max {
            return Err(ModelError {
                line: 0,
                problem: "good_max is above review_max".into(),
            });
        }
        Ok(m)
    }

    /// The text form, sorted so that a retrained model diffs readably.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# mailroom-lint model, written by lint-train (docs/lint-model.md); do not edit by hand\n",
        );
        let _ = writeln!(out, "about {}", self.about);
        let _ = writeln!(out, "bias {:.4}", self.bias);
        let _ = writeln!(out, "good_max {:.2}", self.thresholds.good_max);
        let _ = writeln!(out, "review_max {:.2}", self.thresholds.review_max);
        let mut named: Vec<_> = self.named.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        for (name, w) in named {
            let _ = writeln!(out, "n {w:.4} {name}");
        }
        for (b, w) in self.hashed.iter().enumerate() {
            let units = (w * HASHED_UNIT).round() as i32;
            if units != 0 {
                let _ = writeln!(out, "h {b} {units}");
            }
        }
        out
    }

    pub fn named_weight(&self, name: &str) -> f64 {
        self.named.get(name).copied().unwrap_or(0.0)
    }

    /// The log-odds of spam for these features.
    pub fn logit(&self, f: &Features) -> f64 {
        let named: f64 = f
            .named
            .iter()
            .map(|(n, x)| self.named_weight(n) * f64::from(*x))
            .sum();
        let hashed: f64 = f
            .hashed
            .iter()
            .map(|(b, x)| f64::from(self.hashed[*b as usize] * *x))
            .sum();
        self.bias + named + hashed
    }

    /// Prices the features, keeping what the report explains.
    pub fn score<'m>(&'m self, f: &Features) -> Scored<'m> {
        let mut groups = [0.0; Group::COUNT];
        let mut named = Vec::with_capacity(f.named.len());
        for (name, x) in &f.named {
            let c = self.named_weight(name) * f64::from(*x);
            groups[Group::of(name) as usize] += c;
            named.push((name.clone(), c));
        }
        let mut words: Vec<(usize, f64)> = f
            .hashed
            .iter()
            .enumerate()
            .map(|(i, (b, x))| (i, f64::from(self.hashed[*b as usize] * *x)))
            .collect();
        groups[Group::Wording as usize] = words.iter().map(|(_, c)| c).sum();
        words.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top_words = words
            .iter()
            .take(6)
            .filter(|(_, c)| *c > 0.01)
            .map(|(i, _)| f.token(*i).to_string())
            .collect();
        Scored {
            model: self,
            logit: self.bias + groups.iter().sum::<f64>(),
            groups,
            named,
            top_words,
        }
    }
}

/// Where a score comes from, in score points (log-odds).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Contributions {
    /// Where every message starts: the offset plus the model's bias.
    pub baseline: f64,
    /// The rules that fired (the findings).
    pub rules: f64,
    /// The words of the subject and body.
    pub wording: f64,
    pub links: f64,
    pub headers: f64,
    pub layout: f64,
}

/// A message priced by the model.
#[derive(Debug)]
pub struct Scored<'m> {
    model: &'m Model,
    logit: f64,
    groups: [f64; Group::COUNT],
    named: Vec<(Cow<'static, str>, f64)>,
    top_words: Vec<String>,
}

impl Scored<'_> {
    pub fn score(&self) -> f64 {
        (self.logit + SCORE_OFFSET).max(0.0)
    }

    pub fn probability(&self) -> f64 {
        1.0 / (1.0 + (-self.logit).exp())
    }

    /// The learned weight of a named feature.
    pub fn weight_of(&self, feature: &str) -> f64 {
        self.model.named_weight(feature)
    }

    pub fn contributions(&self) -> Contributions {
        Contributions {
            baseline: round2(SCORE_OFFSET + self.model.bias),
            rules: round2(self.groups[Group::Rules as usize]),
            wording: round2(self.groups[Group::Wording as usize]),
            links: round2(self.groups[Group::Links as usize]),
            headers: round2(self.groups[Group::Headers as usize]),
            layout: round2(self.groups[Group::Layout as usize]),
        }
    }

    /// Findings for the evidence that is not a rule (wording, link, header
    /// and layout patterns the model learned), where it adds enough to
    /// matter; the evidence names what adds most.
    pub(crate) fn signals(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for (group, rule) in [
            (Group::Wording, Rule::SpammyWording),
            (Group::Links, Rule::LinkPattern),
            (Group::Headers, Rule::HeaderPattern),
            (Group::Layout, Rule::LayoutPattern),
        ] {
            let total = self.groups[group as usize];
            if total < SIGNAL_MIN {
                continue;
            }
            let evidence = if group == Group::Wording {
                self.top_words.join(", ")
            } else {
                let mut parts: Vec<_> = self
                    .named
                    .iter()
                    .filter(|(n, c)| Group::of(n) == group && *c > 0.05)
                    .collect();
                parts.sort_by(|a, b| b.1.total_cmp(&a.1));
                parts
                    .iter()
                    .take(4)
                    .map(|(n, c)| format!("{n} (+{c:.1})"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let info = rule.info();
            out.push(Finding {
                rule: info.id,
                severity: if total >= 1.5 {
                    Severity::Warning
                } else {
                    Severity::Info
                },
                points: round2(total),
                message: match group {
                    Group::Wording => {
                        "The wording resembles spam more than legitimate mail.".into()
                    }
                    Group::Links => "The links look more like spam's than a brand's.".into(),
                    Group::Headers => "The sender headers look more like spam's.".into(),
                    _ => "The layout looks more like spam's than a brand's.".into(),
                },
                evidence: (!evidence.is_empty()).then_some(evidence),
                fix: info.fix,
            });
        }
        out
    }
}

/// How much a hand-set point is worth in log-odds before training: the
/// prior each rule's and phrase's weight is pulled towards, so a rule the
/// training data never shows keeps a sensible weight.
pub const PRIOR_SCALE: f64 = 0.5;

/// Which way a constrained weight may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// At or above 0: evidence of spam or nothing.
    Spammy,
    /// At or below 0: good practice never counts against a message.
    Good,
}

/// Good practice that a corpus may happen to correlate with spam (old ham
/// predates one-click unsubscribe; some spam copies brand templates): the
/// score must never teach a sender to drop it, so its weight stays ≤ 0.
pub const GOOD_PRACTICE: &[&str] = &[
    "headers:list-unsubscribe",
    "headers:one-click",
    "headers:reply-to-same-site",
    "headers:message-id-same-site",
    "headers:is-reply",
    "links:to-sender-site",
    "links:http=0%",
    "layout:parts=html+text",
    "layout:explicit-preheader",
];

/// The named features whose weight training constrains, with the prior
/// each is pulled towards: rules and trigger phrases are evidence *of*
/// spam by design (where the data says they aren't, the weight goes to 0,
/// not below), and [`GOOD_PRACTICE`] never counts against a message.
pub fn priors() -> Vec<(String, f64, Sign)> {
    let mut out: Vec<(String, f64, Sign)> = crate::rules::RULES
        .iter()
        .filter(|r| r.prior > 0.0)
        .map(|r| (r.id.to_string(), PRIOR_SCALE * r.prior, Sign::Spammy))
        .collect();
    out.extend(crate::text::PHRASES.phrases.iter().map(|p| {
        (
            format!("phrase:{}", p.text),
            PRIOR_SCALE * p.weight,
            Sign::Spammy,
        )
    }));
    out.extend(
        GOOD_PRACTICE
            .iter()
            .map(|n| ((*n).to_string(), 0.0, Sign::Good)),
    );
    out
}
