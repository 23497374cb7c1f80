//! The schema of experiment files: every field with its type and range, the keys allowed at
//! each level, the parsed values (fixed, per dataset, grid, random) of a run before expansion,
//! and the error collector.

use std::collections::{BTreeMap, HashMap};

use crate::data::DatasetName;
use crate::distill::LossKind;
use crate::model::{Channels, Preset};

use super::SpecError;

#[derive(Debug, Clone, Copy)]
pub(super) enum Ty {
    /// Integer in `[min, max]`.
    Int(i64, i64),
    /// Number in a range; `open_lo`/`open_hi` exclude the ends.
    Float {
        lo: f64,
        hi: f64,
        open_lo: bool,
        open_hi: bool,
    },
    Enum(&'static [&'static str]),
    Bool,
}

impl Ty {
    pub(super) fn allowed(&self) -> String {
        match self {
            Ty::Int(lo, hi) if *hi == i64::MAX => format!("an integer ≥ {lo}"),
            Ty::Int(lo, hi) => format!("an integer in [{lo}, {hi}]"),
            Ty::Float {
                lo,
                hi,
                open_lo,
                open_hi,
            } => {
                if hi.is_infinite() {
                    format!("a number {} {lo}", if *open_lo { ">" } else { "≥" })
                } else {
                    format!(
                        "a number in {}{lo}, {hi}{}",
                        if *open_lo { "(" } else { "[" },
                        if *open_hi { ")" } else { "]" }
                    )
                }
            }
            Ty::Enum(v) => format!("one of {}", v.join(", ")),
            Ty::Bool => "true or false".into(),
        }
    }
}

pub(super) const UNIT: Ty = Ty::Float {
    lo: 0.0,
    hi: 1.0,
    open_lo: false,
    open_hi: false,
};
pub(super) const POSITIVE: Ty = Ty::Float {
    lo: 0.0,
    hi: f64::INFINITY,
    open_lo: true,
    open_hi: false,
};
pub(super) const LOSSES: &[&str] = &LossKind::NAMES;

/// Searchable run fields: each may be a value, a grid list, a random distribution, or a
/// per-dataset mapping of those.
pub(super) const FIELDS: &[(&str, Ty)] = &[
    ("loss", Ty::Enum(LOSSES)),
    ("epochs", Ty::Int(1, 100_000)),
    ("batch_size", Ty::Int(1, 1_000_000)),
    ("lr", POSITIVE),
    (
        "lr_decay",
        Ty::Float {
            lo: 0.0,
            hi: 1.0,
            open_lo: true,
            open_hi: false,
        },
    ),
    ("decay_every", Ty::Int(1, 100_000)),
    ("optimizer", Ty::Enum(&["adam", "rmsprop"])),
    ("beta", UNIT),
    ("alpha", UNIT),
    ("alpha1", UNIT),
    ("alpha2", UNIT),
    ("alpha3", UNIT),
    ("tau", POSITIVE),
    ("norm", Ty::Enum(&["squared", "abs"])),
    ("ord_reduction", Ty::Enum(&["mean", "sum"])),
    ("gradient_revision", Ty::Bool),
    (
        "dropout",
        Ty::Float {
            lo: 0.0,
            hi: 1.0,
            open_lo: false,
            open_hi: true,
        },
    ),
    ("max_steps_per_epoch", Ty::Int(1, i64::MAX)),
    ("eval_batch", Ty::Int(1, 1_000_000)),
    ("test_runs", Ty::Int(0, 100_000)),
];

/// A pruning share in percent.
pub(super) const SHARE: Ty = Ty::Float {
    lo: 0.0,
    hi: 100.0,
    open_lo: true,
    open_hi: true,
};

/// Keys of a run's `prune:` mapping — (key, field name, type) —, searchable like [`FIELDS`].
pub(super) const PRUNE_FIELDS: &[(&str, &str, Ty)] = &[
    ("method", "prune.method", Ty::Enum(&["taylor", "kdis"])),
    (
        "granularity",
        "prune.granularity",
        Ty::Enum(&["channel", "element"]),
    ),
    ("target", "prune.target", SHARE),
    ("steps", "prune.steps", Ty::Int(1, 10_000)),
    ("share_per_step", "prune.share_per_step", SHARE),
    (
        "interval_epochs",
        "prune.interval_epochs",
        Ty::Int(1, 100_000),
    ),
    (
        "interval_steps",
        "prune.interval_steps",
        Ty::Int(1, i64::MAX),
    ),
    (
        "finetune_epochs",
        "prune.finetune_epochs",
        Ty::Int(0, 100_000),
    ),
    (
        "finetune_loss",
        "prune.finetune_loss",
        Ty::Enum(&["mse", "kd"]),
    ),
];

/// Every searchable field: the run fields and the `prune:` fields.
pub(super) fn all_fields() -> impl Iterator<Item = (&'static str, Ty)> {
    FIELDS
        .iter()
        .copied()
        .chain(PRUNE_FIELDS.iter().map(|&(_, n, t)| (n, t)))
}

/// Run keys that are not searchable.
pub(super) const RUN_KEYS: &[&str] = &[
    "label",
    "model",
    "teacher",
    "datasets",
    "seeds",
    "samples",
    "search_seed",
    "prune",
    "base",
];
pub(super) const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "datasets",
    "defaults",
    "runs",
    "data",
    "search",
    "executor",
    "mean_check",
];
pub(super) const DATASETS: &[&str] = &["pemsd7", "pemsd8"];
pub(super) const DISTS: &[&str] = &["uniform", "log_uniform", "choice"];

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    I(i64),
    F(f64),
    S(String),
    B(bool),
}

impl Val {
    pub(super) fn f64(&self) -> f64 {
        match self {
            Val::I(i) => *i as f64,
            Val::F(f) => *f,
            _ => f64::NAN,
        }
    }
    pub(super) fn text(&self) -> String {
        match self {
            Val::I(i) => i.to_string(),
            Val::F(f) => format!("{f}"),
            Val::S(s) => s.clone(),
            Val::B(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Dist {
    Uniform(f64, f64),
    LogUniform(f64, f64),
    Choice(Vec<Val>),
}

#[derive(Debug, Clone)]
pub(super) enum Choice {
    Fixed(Val),
    Grid(Vec<Val>),
    Random(Dist),
}

/// A field's value: the same for every dataset or per dataset.
#[derive(Debug, Clone)]
pub(super) struct FieldValue {
    pub(super) all: Option<Choice>,
    pub(super) per_dataset: BTreeMap<DatasetName, Choice>,
    pub(super) line: usize,
}

impl FieldValue {
    pub(super) fn for_dataset(&self, d: DatasetName) -> Option<&Choice> {
        self.per_dataset.get(&d).or(self.all.as_ref())
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct RawRun {
    pub(super) label: String,
    pub(super) line: usize,
    pub(super) path: String,
    pub(super) model: Option<(StgcnConfigSpec, usize)>,
    /// A `model` key was written (even one whose value was refused, already reported).
    pub(super) model_given: bool,
    pub(super) teacher: Option<(String, usize)>,
    /// Label of the run this one prunes, and its line.
    pub(super) base: Option<(String, usize)>,
    /// Line of the run's own `prune:` mapping.
    pub(super) prune_line: Option<usize>,
    pub(super) datasets: Option<Vec<DatasetName>>,
    pub(super) seeds: Option<Vec<u64>>,
    pub(super) samples: Option<usize>,
    pub(super) search_seed: Option<u64>,
    pub(super) fields: HashMap<&'static str, FieldValue>,
}

#[derive(Debug, Clone)]
pub(super) enum StgcnConfigSpec {
    Preset(Preset),
    Channels(Channels),
}

pub(super) struct Ctx {
    pub(super) errors: Vec<SpecError>,
}

impl Ctx {
    pub(super) fn err(&mut self, line: usize, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(SpecError {
            line,
            path: path.into(),
            message: message.into(),
        });
    }

    pub(super) fn unknown_key(&mut self, line: usize, path: &str, key: &str, allowed: &[&str]) {
        let hint = did_you_mean(key, allowed)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        self.err(
            line,
            path,
            format!("unknown key `{key}`{hint}; allowed: {}", allowed.join(", ")),
        );
    }
}

/// The closest allowed name within edit distance 2 (or sharing a 4-letter prefix).
pub(super) fn did_you_mean<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    // Optimal string alignment distance (edits and adjacent transpositions).
    let dist = |a: &str, b: &str| {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for (i, row) in d.iter_mut().enumerate() {
            row[0] = i;
        }
        for (j, v) in d[0].iter_mut().enumerate() {
            *v = j;
        }
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                d[i][j] = (d[i - 1][j - 1] + cost)
                    .min(d[i - 1][j] + 1)
                    .min(d[i][j - 1] + 1);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
                }
            }
        }
        d[a.len()][b.len()]
    };
    let key_l = key.to_ascii_lowercase();
    allowed
        .iter()
        .map(|a| (dist(&key_l, a), *a))
        .filter(|(d, a)| *d <= 2 || (key_l.len() >= 4 && a.starts_with(&key_l[..4])))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}
