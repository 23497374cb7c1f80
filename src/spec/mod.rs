//! Experiment files: the YAML schema, validation (every problem at once, each with file, line
//! and field path), and expansion into resolved run configurations (spec §6).
//!
//! ```yaml
//! name: table4
//! datasets: [pemsd7, pemsd8]
//! defaults: {epochs: 50, batch_size: 50, lr: 1.0e-3, seeds: [1, 2, 3]}
//! runs:
//!   - {label: teacher, model: teacher, loss: mse}
//!   - label: student-stcd
//!     model: student
//!     teacher: teacher
//!     loss: stcd
//!     alpha1: {pemsd7: 0.170, pemsd8: 0.846}   # per dataset
//!     alpha2: [0.047, 0.1]                     # a grid
//!     alpha3: {uniform: [0.0, 1.0]}            # random search (needs `samples`)
//!     samples: 8
//!   - label: base-pruned                       # pruning (spec §5): prunes run `base`
//!     base: teacher
//!     prune: {method: taylor, target: [25, 50, 75], interval_epochs: 2}
//! ```
//!
//! Parsing keeps the line of every node (yaml-rust2 events; serde_yaml's values carry no
//! positions and serde stops at the first error), so each message can say where to look.

pub mod yaml;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::DatasetName;
use crate::distill::{LossConfig, LossKind, Norm, Reduction};
use crate::model::{Channels, Preset, StgcnConfig};
use crate::prune::{
    FinetuneLoss, Granularity, Interval, PruneConfig, PruneMethod, StepRule,
    DEFAULT_FINETUNE_EPOCHS, DEFAULT_INTERVAL_EPOCHS, DEFAULT_STEPS,
};
use crate::rng::Rng;
use crate::train::TrainConfig;
use yaml::{Kind, Node, Scalar};

/// Everything one run needs, nothing else: the contract between spec, plan, schedule, train and
/// store. Hashed (with the data checksum and [`crate::plan::CODE_VERSION`]) for identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub dataset: DatasetName,
    /// Train/val/test days; `None` = the dataset's default split.
    pub split_days: Option<[usize; 3]>,
    pub preset: Option<Preset>,
    pub model: StgcnConfig,
    pub train: TrainConfig,
    pub loss: LossConfig,
    /// Identity (hash) of the teacher run; filled in by the planner.
    pub teacher: Option<String>,
    /// Runs of the test-time measurement (`None`: 100 on a GPU, about a minute on the CPU).
    pub test_runs: Option<usize>,
    /// Pruning settings: the run prunes its base run's network (spec §5, [`crate::prune`]).
    /// For a pruning run `model` is the base's network and `train.epochs` is not read (set to
    /// the fine-tuning epochs); `loss` is the distillation loss of KDIS / KD fine-tuning (`mse`
    /// when neither is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneConfig>,
    /// Identity (hash) of the base run whose checkpoint is pruned; filled in by the planner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// A problem of a resolved run configuration: the setting it concerns, as a path into
/// [`RunConfig`] (`loss`, `teacher`, `prune`), and what is wrong. The experiment file attaches
/// the line of that setting, the command line its flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub field: &'static str,
    pub rule: Rule,
    pub message: String,
}

/// Which rule of [`RunConfig::problems`] a problem breaks (each layer words its remedy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A loss or pruning value out of its range.
    Invalid,
    /// The run distils but names no teacher.
    TeacherMissing,
    /// A teacher is named but nothing distils from it.
    TeacherUnused,
    /// Pruning without distillation, yet a distillation loss that nothing reads.
    LossUnread,
    /// Pruning that distils with a loss that cannot (plain MSE, or SKD).
    LossCannotDistil,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl RunConfig {
    /// Whether the run distils from a teacher: its loss does, or its pruning scores or
    /// fine-tunes with the loss (KDIS, KD fine-tuning).
    pub fn distils(&self) -> bool {
        match &self.prune {
            Some(pc) => pc.uses_teacher(),
            None => self.loss.kind.needs_teacher(),
        }
    }

    /// Every problem of the configuration at once: the loss's and the pruning's own checks; a
    /// teacher exactly when the run distils; and pruning that distils does so with a
    /// distillation loss other than SKD (whose gradient revision cannot score or fine-tune a
    /// masked network).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        if let Err(e) = self.loss.validate() {
            out.push(ConfigProblem {
                field: "loss",
                rule: Rule::Invalid,
                message: e.to_string(),
            });
        }
        if let Some(pc) = &self.prune {
            if let Err(e) = pc.validate() {
                out.push(ConfigProblem {
                    field: "prune",
                    rule: Rule::Invalid,
                    message: e.to_string(),
                });
            }
            let kind = self.loss.kind;
            if !pc.uses_teacher() && kind != LossKind::Mse {
                out.push(ConfigProblem {
                    field: "loss",
                    rule: Rule::LossUnread,
                    message: format!(
                        "{} pruning with {} fine-tuning reads no distillation loss (got {kind})",
                        pc.method, pc.finetune_loss
                    ),
                });
            }
            if pc.uses_teacher() && (!kind.needs_teacher() || kind == LossKind::Skd) {
                out.push(ConfigProblem {
                    field: "loss",
                    rule: Rule::LossCannotDistil,
                    message: format!(
                        "method {} / fine-tuning {} distil with the run's loss, which must be a \
                         distillation loss other than skd (stcd in the paper), not {kind}",
                        pc.method, pc.finetune_loss
                    ),
                });
            }
        }
        match (self.distils(), &self.teacher) {
            (true, None) => out.push(ConfigProblem {
                field: "teacher",
                rule: Rule::TeacherMissing,
                message: format!(
                    "the run distils from a teacher (loss {}) but has none",
                    self.loss.kind
                ),
            }),
            (false, Some(_)) => out.push(ConfigProblem {
                field: "teacher",
                rule: Rule::TeacherUnused,
                message: "a teacher is given but the run does not distil from it".into(),
            }),
            _ => {}
        }
        out
    }
}

/// One expanded run of an experiment file, before hashing.
#[derive(Debug, Clone)]
pub struct ExpandedRun {
    /// The run's label in the file.
    pub label: String,
    /// The grid/random/seed values that distinguish this variant, e.g. `alpha2=0.1 seed=2`.
    pub variant: String,
    pub config: RunConfig,
    /// Index (into [`Experiment::runs`]) of the teacher variant.
    pub teacher: Option<usize>,
    /// Index (into [`Experiment::runs`]) of the base variant a pruning run prunes.
    pub base: Option<usize>,
}

impl ExpandedRun {
    /// `label[variant]` for tables and logs.
    pub fn display_name(&self) -> String {
        if self.variant.is_empty() {
            format!("{} {}", self.label, self.config.dataset)
        } else {
            format!("{} {} [{}]", self.label, self.config.dataset, self.variant)
        }
    }
}

/// A validated, expanded experiment file.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub description: String,
    pub file: PathBuf,
    /// The file's text (stored with the experiment).
    pub text: String,
    pub runs: Vec<ExpandedRun>,
}

/// One problem in an experiment file.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub line: usize,
    /// Field path, e.g. `runs[2].alpha1.pemsd7`.
    pub path: String,
    pub message: String,
}

/// Every problem found in a file.
#[derive(Debug, Clone)]
pub struct SpecErrors {
    pub file: PathBuf,
    pub errors: Vec<SpecError>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} has {} problem{}:",
            self.file.display(),
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            if e.path.is_empty() {
                writeln!(f, "  {}:{}: {}", self.file.display(), e.line, e.message)?;
            } else {
                writeln!(
                    f,
                    "  {}:{}: {}: {}",
                    self.file.display(),
                    e.line,
                    e.path,
                    e.message
                )?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

// ---------------------------------------------------------------------------------------------
// Field table

#[derive(Debug, Clone, Copy)]
enum Ty {
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
    fn allowed(&self) -> String {
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

const UNIT: Ty = Ty::Float {
    lo: 0.0,
    hi: 1.0,
    open_lo: false,
    open_hi: false,
};
const POSITIVE: Ty = Ty::Float {
    lo: 0.0,
    hi: f64::INFINITY,
    open_lo: true,
    open_hi: false,
};
const LOSSES: &[&str] = &["mse", "rd-l2", "rd-kl", "skd", "ord", "tcd", "scd", "stcd"];

/// Searchable run fields: each may be a value, a grid list, a random distribution, or a
/// per-dataset mapping of those.
const FIELDS: &[(&str, Ty)] = &[
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
const SHARE: Ty = Ty::Float {
    lo: 0.0,
    hi: 100.0,
    open_lo: true,
    open_hi: true,
};

/// Keys of a run's `prune:` mapping — (key, field name, type) —, searchable like [`FIELDS`].
const PRUNE_FIELDS: &[(&str, &str, Ty)] = &[
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
fn all_fields() -> impl Iterator<Item = (&'static str, Ty)> {
    FIELDS
        .iter()
        .copied()
        .chain(PRUNE_FIELDS.iter().map(|&(_, n, t)| (n, t)))
}

/// Run keys that are not searchable.
const RUN_KEYS: &[&str] = &[
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
const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "datasets",
    "defaults",
    "runs",
    "data",
];
const DATASETS: &[&str] = &["pemsd7", "pemsd8"];
const DISTS: &[&str] = &["uniform", "log_uniform", "choice"];

#[derive(Debug, Clone, PartialEq)]
enum Val {
    I(i64),
    F(f64),
    S(String),
    B(bool),
}

impl Val {
    fn f64(&self) -> f64 {
        match self {
            Val::I(i) => *i as f64,
            Val::F(f) => *f,
            _ => f64::NAN,
        }
    }
    fn text(&self) -> String {
        match self {
            Val::I(i) => i.to_string(),
            Val::F(f) => format!("{f}"),
            Val::S(s) => s.clone(),
            Val::B(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
enum Dist {
    Uniform(f64, f64),
    LogUniform(f64, f64),
    Choice(Vec<Val>),
}

#[derive(Debug, Clone)]
enum Choice {
    Fixed(Val),
    Grid(Vec<Val>),
    Random(Dist),
}

/// A field's value: the same for every dataset or per dataset.
#[derive(Debug, Clone)]
struct FieldValue {
    all: Option<Choice>,
    per_dataset: BTreeMap<DatasetName, Choice>,
    line: usize,
}

impl FieldValue {
    fn for_dataset(&self, d: DatasetName) -> Option<&Choice> {
        self.per_dataset.get(&d).or(self.all.as_ref())
    }
}

#[derive(Debug, Clone, Default)]
struct RawRun {
    label: String,
    line: usize,
    path: String,
    model: Option<(StgcnConfigSpec, usize)>,
    teacher: Option<(String, usize)>,
    /// Label of the run this one prunes, and its line.
    base: Option<(String, usize)>,
    /// Line of the run's own `prune:` mapping.
    prune_line: Option<usize>,
    datasets: Option<Vec<DatasetName>>,
    seeds: Option<Vec<u64>>,
    samples: Option<usize>,
    search_seed: Option<u64>,
    fields: HashMap<&'static str, FieldValue>,
}

#[derive(Debug, Clone)]
enum StgcnConfigSpec {
    Preset(Preset),
    Channels(Channels),
}

struct Ctx {
    errors: Vec<SpecError>,
}

impl Ctx {
    fn err(&mut self, line: usize, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(SpecError {
            line,
            path: path.into(),
            message: message.into(),
        });
    }

    fn unknown_key(&mut self, line: usize, path: &str, key: &str, allowed: &[&str]) {
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
fn did_you_mean<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
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

fn scalar_val(node: &Node, ty: Ty, path: &str, cx: &mut Ctx) -> Option<Val> {
    let bad = |cx: &mut Ctx, what: String| {
        cx.err(
            node.line,
            path,
            format!("{what}; allowed: {}", ty.allowed()),
        );
        None
    };
    let Some(s) = node.as_scalar() else {
        return bad(
            cx,
            format!("expected a single value, got {}", node.describe()),
        );
    };
    match (ty, s) {
        (Ty::Int(lo, hi), Scalar::Int(i)) => {
            if *i < lo || *i > hi {
                bad(cx, format!("{i} is out of range"))
            } else {
                Some(Val::I(*i))
            }
        }
        (
            Ty::Float {
                lo,
                hi,
                open_lo,
                open_hi,
            },
            Scalar::Int(_) | Scalar::Float(_),
        ) => {
            let v = node.as_f64().unwrap();
            let ok = v.is_finite()
                && (if open_lo { v > lo } else { v >= lo })
                && (if open_hi { v < hi } else { v <= hi });
            if ok {
                Some(Val::F(v))
            } else {
                bad(cx, format!("{v} is out of range"))
            }
        }
        (Ty::Enum(allowed), Scalar::Str(v)) => {
            let l = v.to_ascii_lowercase();
            if allowed.contains(&l.as_str()) {
                Some(Val::S(l))
            } else {
                let hint = did_you_mean(v, allowed)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                bad(cx, format!("unknown value `{v}`{hint}"))
            }
        }
        (Ty::Bool, Scalar::Bool(b)) => Some(Val::B(*b)),
        (_, other) => bad(
            cx,
            format!("expected {}, got {}", ty.allowed(), other.kind()),
        ),
    }
}

fn parse_choice(node: &Node, ty: Ty, path: &str, cx: &mut Ctx) -> Option<Choice> {
    match &node.kind {
        Kind::Scalar(_) => scalar_val(node, ty, path, cx).map(Choice::Fixed),
        Kind::Seq(items) => {
            if items.is_empty() {
                cx.err(
                    node.line,
                    path,
                    "an empty grid list; give at least one value",
                );
                return None;
            }
            let vals: Vec<Option<Val>> = items
                .iter()
                .enumerate()
                .map(|(i, n)| scalar_val(n, ty, &format!("{path}[{i}]"), cx))
                .collect();
            vals.into_iter()
                .collect::<Option<Vec<_>>>()
                .map(Choice::Grid)
        }
        Kind::Map(entries) => {
            let (key, key_line, arg) = &entries[0];
            if entries.len() != 1 || !DISTS.contains(&key.as_str()) {
                let k = if entries.len() == 1 { key.as_str() } else { "" };
                let hint = did_you_mean(k, DISTS)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                cx.err(
                    *key_line,
                    path,
                    format!(
                        "expected a value, a grid list, one of {{uniform: [lo, hi]}}, {{log_uniform: [lo, hi]}}, {{choice: [...]}}, or a per-dataset mapping ({}){hint}",
                        DATASETS.join(", ")
                    ),
                );
                return None;
            }
            let sub = format!("{path}.{key}");
            let items = match arg.as_seq() {
                Some(items) if !items.is_empty() => items,
                _ => {
                    cx.err(
                        arg.line,
                        &sub,
                        format!("expected a non-empty list, got {}", arg.describe()),
                    );
                    return None;
                }
            };
            let vals = items
                .iter()
                .enumerate()
                .map(|(i, n)| scalar_val(n, ty, &format!("{sub}[{i}]"), cx))
                .collect::<Option<Vec<_>>>()?;
            match key.as_str() {
                "choice" => Some(Choice::Random(Dist::Choice(vals))),
                _ => {
                    if !matches!(ty, Ty::Float { .. }) {
                        cx.err(
                            arg.line,
                            &sub,
                            format!(
                                "{key} needs a real-valued field; use `choice` or a grid for {}",
                                ty.allowed()
                            ),
                        );
                        return None;
                    }
                    if vals.len() != 2 || vals[0].f64() >= vals[1].f64() {
                        cx.err(arg.line, &sub, "expected [lo, hi] with lo < hi");
                        return None;
                    }
                    let (lo, hi) = (vals[0].f64(), vals[1].f64());
                    if key == "log_uniform" {
                        if lo <= 0.0 {
                            cx.err(arg.line, &sub, "log_uniform needs lo > 0");
                            return None;
                        }
                        Some(Choice::Random(Dist::LogUniform(lo, hi)))
                    } else {
                        Some(Choice::Random(Dist::Uniform(lo, hi)))
                    }
                }
            }
        }
    }
}

fn parse_field(
    node: &Node,
    ty: Ty,
    path: &str,
    datasets: &[DatasetName],
    cx: &mut Ctx,
) -> Option<FieldValue> {
    let mut fv = FieldValue {
        all: None,
        per_dataset: BTreeMap::new(),
        line: node.line,
    };
    let per_dataset = node
        .as_map()
        .is_some_and(|m| m.iter().all(|(k, _, _)| k.parse::<DatasetName>().is_ok()));
    if per_dataset {
        for (k, line, v) in node.as_map().unwrap() {
            let d: DatasetName = k.parse().unwrap();
            if !datasets.contains(&d) {
                cx.err(
                    *line,
                    format!("{path}.{k}"),
                    format!("dataset {d} is not in this experiment's datasets"),
                );
            }
            if let Some(c) = parse_choice(v, ty, &format!("{path}.{k}"), cx) {
                fv.per_dataset.insert(d, c);
            }
        }
        Some(fv)
    } else {
        fv.all = Some(parse_choice(node, ty, path, cx)?);
        Some(fv)
    }
}

fn parse_datasets(node: &Node, path: &str, cx: &mut Ctx) -> Option<Vec<DatasetName>> {
    let items: Vec<&Node> = match &node.kind {
        Kind::Seq(s) => s.iter().collect(),
        Kind::Scalar(_) => vec![node],
        _ => {
            cx.err(
                node.line,
                path,
                format!("expected a list of datasets ({})", DATASETS.join(", ")),
            );
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, n) in items.iter().enumerate() {
        match n.as_str().map(|s| s.parse::<DatasetName>()) {
            Some(Ok(d)) if !out.contains(&d) => out.push(d),
            Some(Ok(d)) => cx.err(
                n.line,
                format!("{path}[{i}]"),
                format!("dataset {d} listed twice"),
            ),
            _ => {
                let shown = n
                    .as_scalar()
                    .map(|s| format!("`{s}`"))
                    .unwrap_or_else(|| n.describe().into());
                let v = n.as_str().unwrap_or("");
                let hint = did_you_mean(v, DATASETS)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                cx.err(
                    n.line,
                    format!("{path}[{i}]"),
                    format!(
                        "unknown dataset {shown}{hint}; allowed: {}",
                        DATASETS.join(", ")
                    ),
                );
            }
        }
    }
    if out.is_empty() && cx.errors.is_empty() {
        cx.err(node.line, path, "no datasets given");
    }
    Some(out)
}

fn parse_seeds(node: &Node, path: &str, cx: &mut Ctx) -> Option<Vec<u64>> {
    let items: Vec<&Node> = match &node.kind {
        Kind::Seq(s) if !s.is_empty() => s.iter().collect(),
        Kind::Scalar(_) => vec![node],
        _ => {
            cx.err(
                node.line,
                path,
                "expected a seed or a non-empty list of seeds (integers ≥ 0)",
            );
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, n) in items.iter().enumerate() {
        match n.as_i64() {
            Some(s) if s >= 0 => out.push(s as u64),
            _ => cx.err(
                n.line,
                format!("{path}[{i}]"),
                format!("expected an integer ≥ 0, got {}", n.describe()),
            ),
        }
    }
    Some(out)
}

fn parse_model(node: &Node, path: &str, cx: &mut Ctx) -> Option<StgcnConfigSpec> {
    if let Some(s) = node.as_str() {
        return match s.parse::<Preset>() {
            Ok(p) => Some(StgcnConfigSpec::Preset(p)),
            Err(e) => {
                cx.err(node.line, path, e);
                None
            }
        };
    }
    let Some(map) = node.as_map() else {
        cx.err(node.line, path, "expected a preset (teacher, base, student) or {channels: [[1, c_t, c_out], [c_out, c_t, c_out2]]}");
        return None;
    };
    let mut channels = None;
    for (k, line, v) in map {
        if k != "channels" {
            cx.unknown_key(*line, path, k, &["channels"]);
            continue;
        }
        let parsed: Option<Vec<Vec<i64>>> = v.as_seq().and_then(|blocks| {
            blocks
                .iter()
                .map(|b| {
                    b.as_seq()
                        .and_then(|c| c.iter().map(Node::as_i64).collect())
                })
                .collect()
        });
        match parsed {
            Some(b)
                if b.len() == 2 && b.iter().all(|c| c.len() == 3 && c.iter().all(|&x| x > 0)) =>
            {
                let c = |i: usize, j: usize| b[i][j] as usize;
                let ch = [[c(0, 0), c(0, 1), c(0, 2)], [c(1, 0), c(1, 1), c(1, 2)]];
                if let Err(e) = StgcnConfig::new(ch, 1, 12).validate() {
                    cx.err(v.line, format!("{path}.channels"), e.to_string());
                } else {
                    channels = Some(ch);
                }
            }
            _ => cx.err(
                v.line,
                format!("{path}.channels"),
                "expected two blocks of three positive integers, e.g. [[1, 32, 64], [64, 32, 128]]",
            ),
        }
    }
    channels.map(StgcnConfigSpec::Channels)
}

/// Parse the run-level keys of `node` (a run or the defaults) into `raw`.
fn parse_run_keys(
    node: &Node,
    path: &str,
    is_defaults: bool,
    datasets: &[DatasetName],
    raw: &mut RawRun,
    cx: &mut Ctx,
) {
    let Some(map) = node.as_map() else {
        cx.err(
            node.line,
            path,
            format!(
                "expected a mapping of run settings, got {}",
                node.describe()
            ),
        );
        return;
    };
    let mut allowed: Vec<&str> = RUN_KEYS.to_vec();
    allowed.extend(FIELDS.iter().map(|(n, _)| *n));
    let mut seen = HashSet::new();
    for (k, line, v) in map {
        let p = format!("{path}.{k}");
        if !seen.insert(k.as_str()) {
            cx.err(*line, &p, "key given twice");
            continue;
        }
        if let Some((name, ty)) = FIELDS.iter().find(|(n, _)| n == k) {
            if let Some(fv) = parse_field(v, *ty, &p, datasets, cx) {
                raw.fields.insert(name, fv);
            }
            continue;
        }
        match k.as_str() {
            "label" if !is_defaults => match v.as_scalar() {
                Some(Scalar::Str(s))
                    if !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                {
                    raw.label = s.clone()
                }
                _ => cx.err(
                    v.line,
                    &p,
                    "expected a name of letters, digits, '-', '_' or '.'",
                ),
            },
            "model" => raw.model = parse_model(v, &p, cx).map(|m| (m, v.line)),
            "teacher" if !is_defaults => match v.as_str() {
                Some(s) => raw.teacher = Some((s.to_string(), v.line)),
                None => cx.err(v.line, &p, "expected the label of another run"),
            },
            "datasets" if !is_defaults => raw.datasets = parse_datasets(v, &p, cx),
            "seeds" => raw.seeds = parse_seeds(v, &p, cx),
            "samples" => match v.as_i64() {
                Some(n) if n >= 1 => raw.samples = Some(n as usize),
                _ => cx.err(
                    v.line,
                    &p,
                    "expected the number of random draws, an integer ≥ 1",
                ),
            },
            "search_seed" => match v.as_i64() {
                Some(n) if n >= 0 => raw.search_seed = Some(n as u64),
                _ => cx.err(v.line, &p, "expected an integer ≥ 0"),
            },
            "base" if !is_defaults => match v.as_str() {
                Some(s) => raw.base = Some((s.to_string(), v.line)),
                None => cx.err(v.line, &p, "expected the label of the run to prune"),
            },
            "prune" => parse_prune(v, &p, datasets, raw, cx),
            _ => {
                let allowed: Vec<&str> = if is_defaults {
                    allowed
                        .iter()
                        .copied()
                        .filter(|k| !["label", "teacher", "datasets", "base"].contains(k))
                        .collect()
                } else {
                    allowed.clone()
                };
                cx.unknown_key(*line, path, k, &allowed)
            }
        }
    }
}

/// Parse a `prune:` mapping into `raw`'s fields (`prune.<key>`).
fn parse_prune(node: &Node, path: &str, datasets: &[DatasetName], raw: &mut RawRun, cx: &mut Ctx) {
    let keys: Vec<&str> = PRUNE_FIELDS.iter().map(|f| f.0).collect();
    let Some(map) = node.as_map() else {
        cx.err(
            node.line,
            path,
            format!(
                "expected a mapping of pruning settings ({}), got {}",
                keys.join(", "),
                node.describe()
            ),
        );
        return;
    };
    raw.prune_line = Some(node.line);
    let mut seen = HashSet::new();
    for (k, line, v) in map {
        let p = format!("{path}.{k}");
        if !seen.insert(k.as_str()) {
            cx.err(*line, &p, "key given twice");
            continue;
        }
        match PRUNE_FIELDS.iter().find(|f| f.0 == k) {
            Some(&(_, name, ty)) => {
                if let Some(fv) = parse_field(v, ty, &p, datasets, cx) {
                    raw.fields.insert(name, fv);
                }
            }
            None => cx.unknown_key(*line, path, k, &keys),
        }
    }
}

/// Read, validate and expand an experiment file.
pub fn load(path: &Path) -> Result<Experiment, SpecErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecErrors {
        file: path.to_path_buf(),
        errors: vec![SpecError {
            line: 0,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    parse_experiment(&text, path)
}

/// Validate and expand an experiment given as text (`file` names it in messages).
pub fn parse_experiment(text: &str, file: &Path) -> Result<Experiment, SpecErrors> {
    let fail = |errors: Vec<SpecError>| SpecErrors {
        file: file.to_path_buf(),
        errors,
    };
    let root = yaml::parse(text).map_err(|e| {
        fail(vec![SpecError {
            line: e.line,
            path: String::new(),
            message: format!("YAML syntax error: {}", e.message),
        }])
    })?;
    let mut cx = Ctx { errors: Vec::new() };
    let Some(top) = root.as_map() else {
        return Err(fail(vec![SpecError {
            line: root.line,
            path: String::new(),
            message: format!(
                "expected a mapping with keys {}, got {}",
                TOP_KEYS.join(", "),
                root.describe()
            ),
        }]));
    };
    for (k, line, _) in top {
        if !TOP_KEYS.contains(&k.as_str()) {
            cx.unknown_key(*line, "", k, TOP_KEYS);
        }
    }
    let name = match root.get("name") {
        Some(n) => match n.as_scalar() {
            Some(Scalar::Str(s)) if !s.is_empty() => s.clone(),
            _ => {
                cx.err(n.line, "name", "expected the experiment's name (text)");
                String::new()
            }
        },
        None => {
            cx.err(1, "name", "missing: every experiment needs a name");
            String::new()
        }
    };
    let description = root
        .get("description")
        .and_then(Node::as_str)
        .unwrap_or("")
        .to_string();
    let datasets = match root.get("datasets") {
        Some(n) => parse_datasets(n, "datasets", &mut cx).unwrap_or_default(),
        None => {
            cx.err(
                1,
                "datasets",
                format!("missing: list the datasets ({})", DATASETS.join(", ")),
            );
            vec![]
        }
    };
    let mut split_days: HashMap<DatasetName, [usize; 3]> = HashMap::new();
    if let Some(data) = root.get("data") {
        match data.as_map() {
            Some(m) => {
                for (k, line, v) in m {
                    if k != "split_days" {
                        cx.unknown_key(*line, "data", k, &["split_days"]);
                        continue;
                    }
                    for (d, dl, days) in v.as_map().unwrap_or(&[]) {
                        let p = format!("data.split_days.{d}");
                        let parsed: Option<Vec<i64>> = days
                            .as_seq()
                            .and_then(|s| s.iter().map(Node::as_i64).collect());
                        match (d.parse::<DatasetName>(), parsed) {
                            (Ok(dn), Some(v)) if v.len() == 3 && v.iter().all(|&x| x >= 1) => {
                                split_days
                                    .insert(dn, [v[0] as usize, v[1] as usize, v[2] as usize]);
                            }
                            (Err(_), _) => cx.err(
                                *dl,
                                &p,
                                format!("unknown dataset; allowed: {}", DATASETS.join(", ")),
                            ),
                            _ => {
                                cx.err(days.line, &p, "expected [train, val, test] days, each ≥ 1")
                            }
                        }
                    }
                    if v.as_map().is_none() {
                        cx.err(
                            v.line,
                            "data.split_days",
                            "expected a mapping dataset → [train, val, test]",
                        );
                    }
                }
            }
            None => cx.err(data.line, "data", "expected a mapping"),
        }
    }
    let mut defaults = RawRun::default();
    if let Some(d) = root.get("defaults") {
        parse_run_keys(d, "defaults", true, &datasets, &mut defaults, &mut cx);
    }
    let mut raws: Vec<RawRun> = Vec::new();
    match root.get("runs") {
        Some(n) => match n.as_seq() {
            Some(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("runs[{i}]");
                    let mut raw = RawRun {
                        line: item.line,
                        ..RawRun::default()
                    };
                    parse_run_keys(item, &path, false, &datasets, &mut raw, &mut cx);
                    if raw.label.is_empty() && item.get("label").is_none() {
                        cx.err(
                            item.line,
                            &path,
                            "missing `label`: every run needs a unique label",
                        );
                    }
                    if !raw.label.is_empty() {
                        raw.path = format!("runs[{i}] ({})", raw.label);
                    } else {
                        raw.path = path;
                    }
                    raws.push(raw);
                }
            }
            _ => cx.err(n.line, "runs", "expected a non-empty list of runs"),
        },
        None => cx.err(1, "runs", "missing: list the runs to execute"),
    }
    check_runs(&raws, &defaults, &mut cx);
    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|e| e.line);
        return Err(fail(cx.errors));
    }
    let runs = expand(&raws, &defaults, &datasets, &split_days, &mut cx);
    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|e| e.line);
        return Err(fail(cx.errors));
    }
    Ok(Experiment {
        name,
        description,
        file: file.to_path_buf(),
        text: text.to_string(),
        runs,
    })
}

fn field<'a>(run: &'a RawRun, defaults: &'a RawRun, name: &str) -> Option<&'a FieldValue> {
    run.fields.get(name).or_else(|| defaults.fields.get(name))
}

fn check_runs(raws: &[RawRun], defaults: &RawRun, cx: &mut Ctx) {
    let mut labels: HashMap<&str, usize> = HashMap::new();
    for r in raws.iter().filter(|r| !r.label.is_empty()) {
        if let Some(first) = labels.insert(&r.label, r.line) {
            cx.err(
                r.line,
                &r.path,
                format!(
                    "label `{}` is already used by the run on line {first}",
                    r.label
                ),
            );
        }
    }
    for r in raws {
        if r.model.is_none() && defaults.model.is_none() && r.base.is_none() {
            cx.err(
                r.line,
                format!("{}.model", r.path),
                "missing `model`: teacher, base, student or {channels: ...}",
            );
        }
        // Whether the run needs its teacher is a rule of the resolved configuration
        // ([`RunConfig::problems`], checked per expanded run); here only that it exists.
        match &r.teacher {
            Some((t, line)) if !labels.contains_key(t.as_str()) => {
                let known: Vec<&str> = labels.keys().copied().collect();
                let hint = did_you_mean(t, &known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                cx.err(
                    *line,
                    format!("{}.teacher", r.path),
                    format!("no run is labelled `{t}`{hint}"),
                );
            }
            _ => {}
        }
        let random = all_fields().any(|(n, _)| {
            field(r, defaults, n).is_some_and(|f| {
                f.all
                    .iter()
                    .chain(f.per_dataset.values())
                    .any(|c| matches!(c, Choice::Random(_)))
            })
        });
        if random && r.samples.or(defaults.samples).is_none() {
            cx.err(r.line, format!("{}.samples", r.path), "random search values need `samples: <number of draws>` (in the run or in defaults)");
        }
    }
    check_prune_runs(raws, defaults, &labels, cx);
    // Cycles in the dependency graph (teacher and base edges).
    let index: HashMap<&str, usize> = raws
        .iter()
        .enumerate()
        .map(|(i, r)| (r.label.as_str(), i))
        .collect();
    let edges = |r: &RawRun| -> Vec<(usize, usize, &'static str)> {
        [(&r.teacher, "teacher"), (&r.base, "base")]
            .into_iter()
            .filter_map(|(e, what)| {
                let (t, line) = e.as_ref()?;
                Some((*index.get(t.as_str())?, *line, what))
            })
            .collect()
    };
    // A path of runs from `from` to `to`, depth first.
    fn path_to(
        from: usize,
        to: usize,
        edges: &dyn Fn(usize) -> Vec<usize>,
        seen: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        if from == to {
            return Some(vec![to]);
        }
        if seen.contains(&from) {
            return None;
        }
        seen.push(from);
        for next in edges(from) {
            if let Some(mut p) = path_to(next, to, edges, seen) {
                p.insert(0, from);
                return Some(p);
            }
        }
        None
    }
    let next_of = |i: usize| edges(&raws[i]).into_iter().map(|e| e.0).collect();
    for (start, r) in raws.iter().enumerate() {
        for (next, line, what) in edges(r) {
            if let Some(p) = path_to(next, start, &next_of, &mut Vec::new()) {
                let chain: Vec<&str> = std::iter::once(start)
                    .chain(p)
                    .map(|i| raws[i].label.as_str())
                    .collect();
                cx.err(
                    line,
                    format!("{}.{what}", r.path),
                    format!("dependency cycle: {}", chain.join(" -> ")),
                );
                break;
            }
        }
    }
}

/// The rules of pruning runs (those with `base`).
fn check_prune_runs(
    raws: &[RawRun],
    defaults: &RawRun,
    labels: &HashMap<&str, usize>,
    cx: &mut Ctx,
) {
    let by_label: HashMap<&str, &RawRun> = raws.iter().map(|r| (r.label.as_str(), r)).collect();
    for r in raws {
        let Some((b, bline)) = &r.base else {
            if let Some(line) = r.prune_line {
                cx.err(
                    line,
                    format!("{}.prune", r.path),
                    "a pruning run needs `base: <label of the run to prune>`",
                );
            }
            continue;
        };
        let p = |f: &str| format!("{}.{f}", r.path);
        match by_label.get(b.as_str()) {
            None => {
                let known: Vec<&str> = labels.keys().copied().collect();
                let hint = did_you_mean(b, &known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                cx.err(*bline, p("base"), format!("no run is labelled `{b}`{hint}"));
            }
            Some(base) if base.base.is_some() => cx.err(
                *bline,
                p("base"),
                format!("`{b}` is itself a pruning run; prune a trained run (its compacted channels are only known once it has run)"),
            ),
            _ => {}
        }
        let at = r.prune_line.unwrap_or(r.line);
        if field(r, defaults, "prune.target").is_none() {
            cx.err(
                at,
                p("prune.target"),
                "missing: the share of the parameters to remove, in percent, in (0, 100)",
            );
        }
        for (a, b) in [
            ("prune.steps", "prune.share_per_step"),
            ("prune.interval_epochs", "prune.interval_steps"),
        ] {
            if let (Some(_), Some(fb)) = (field(r, defaults, a), field(r, defaults, b)) {
                cx.err(
                    fb.line,
                    p(b),
                    format!("give either `{}` or `{}`, not both", &a[6..], &b[6..]),
                );
            }
        }
        if let Some((_, line)) = &r.model {
            cx.err(
                *line,
                p("model"),
                "a pruning run starts from its base run's network: remove `model`",
            );
        }
        if let Some(f) = r.fields.get("epochs") {
            cx.err(
                f.line,
                p("epochs"),
                "a pruning run's length is set by `prune`: steps × interval, then finetune_epochs; remove `epochs`",
            );
        }
    }
}

fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn expand(
    raws: &[RawRun],
    defaults: &RawRun,
    datasets: &[DatasetName],
    split_days: &HashMap<DatasetName, [usize; 3]>,
    cx: &mut Ctx,
) -> Vec<ExpandedRun> {
    let mut out: Vec<ExpandedRun> = Vec::new();
    let mut by_label: HashMap<&str, Vec<usize>> = HashMap::new();
    // Expand teachers before their students.
    let mut order: Vec<usize> = Vec::new();
    let index: HashMap<&str, usize> = raws
        .iter()
        .enumerate()
        .map(|(i, r)| (r.label.as_str(), i))
        .collect();
    fn visit(i: usize, raws: &[RawRun], index: &HashMap<&str, usize>, order: &mut Vec<usize>) {
        if order.contains(&i) {
            return;
        }
        for (t, _) in raws[i].teacher.iter().chain(&raws[i].base) {
            if let Some(&j) = index.get(t.as_str()) {
                visit(j, raws, index, order);
            }
        }
        order.push(i);
    }
    for i in 0..raws.len() {
        visit(i, raws, &index, &mut order);
    }
    for i in order {
        let r = &raws[i];
        let run_datasets = r.datasets.clone().unwrap_or_else(|| datasets.to_vec());
        let seeds = r
            .seeds
            .clone()
            .or_else(|| defaults.seeds.clone())
            .unwrap_or_else(|| vec![1]);
        let samples = r.samples.or(defaults.samples).unwrap_or(1);
        let search_seed = r.search_seed.or(defaults.search_seed).unwrap_or(0);
        for &d in &run_datasets {
            if !datasets.contains(&d) {
                cx.err(
                    r.line,
                    format!("{}.datasets", r.path),
                    format!("dataset {d} is not in the experiment's datasets"),
                );
                continue;
            }
            // Resolve every field for this dataset.
            let mut grid: Vec<(&str, Vec<Val>)> = Vec::new();
            let mut random: Vec<(&str, Dist)> = Vec::new();
            let mut fixed: Vec<(&str, Val)> = Vec::new();
            let is_prune = r.base.is_some();
            for (name, _) in all_fields().filter(|(n, _)| is_prune || !n.starts_with("prune.")) {
                match field(r, defaults, name).and_then(|f| f.for_dataset(d)) {
                    Some(Choice::Fixed(v)) => fixed.push((name, v.clone())),
                    Some(Choice::Grid(v)) => grid.push((name, v.clone())),
                    Some(Choice::Random(dist)) => random.push((name, dist.clone())),
                    None => {}
                }
            }
            let mut combos: Vec<Vec<(&str, Val)>> = vec![vec![]];
            for (name, vals) in &grid {
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        vals.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push((*name, v.clone()));
                            c
                        })
                    })
                    .collect();
            }
            if !random.is_empty() {
                let mut rng = Rng::new(search_seed, stable_hash(&format!("{}/{d}", r.label)));
                let draws: Vec<Vec<(&str, Val)>> = (0..samples)
                    .map(|_| {
                        random
                            .iter()
                            .map(|(name, dist)| {
                                let v = match dist {
                                    Dist::Uniform(lo, hi) => {
                                        Val::F(lo + (hi - lo) * rng.next_f64())
                                    }
                                    Dist::LogUniform(lo, hi) => Val::F(
                                        (lo.ln() + (hi.ln() - lo.ln()) * rng.next_f64()).exp(),
                                    ),
                                    Dist::Choice(v) => v[rng.below(v.len())].clone(),
                                };
                                (*name, v)
                            })
                            .collect()
                    })
                    .collect();
                combos = combos
                    .into_iter()
                    .flat_map(|c| draws.iter().map(move |dr| [c.clone(), dr.clone()].concat()))
                    .collect();
            }
            for combo in &combos {
                for &seed in &seeds {
                    let mut variant: Vec<String> = combo
                        .iter()
                        .map(|(n, v)| match (n.strip_prefix("prune."), v) {
                            (Some(n), v) => format!("{n}={}", v.text()),
                            (None, Val::F(f)) => format!("{n}={f:.4}"),
                            (None, v) => format!("{n}={}", v.text()),
                        })
                        .collect();
                    if seeds.len() > 1 || seed != 1 {
                        variant.push(format!("seed={seed}"));
                    }
                    let values: Vec<(&str, Val)> =
                        fixed.iter().cloned().chain(combo.iter().cloned()).collect();
                    let mut config =
                        build_config(r, defaults, d, seed, &values, split_days.get(&d).copied());
                    let base = r.base.as_ref().and_then(|(b, line)| {
                        let j = pick_dep(&by_label, &out, b, *line, d, seed, r, "base", cx)?;
                        config.model = out[j].config.model.clone();
                        config.preset = out[j].config.preset;
                        Some(j)
                    });
                    // The run's own rules, on its resolved configuration (dependencies named
                    // by label until the planner hashes them).
                    let mut probe = config.clone();
                    probe.teacher = r.teacher.as_ref().map(|(t, _)| t.clone());
                    probe.base = r.base.as_ref().map(|(b, _)| b.clone());
                    for problem in probe.problems() {
                        config_error(r, defaults, &problem, cx);
                    }
                    let teacher = match (&r.teacher, config.distils()) {
                        (Some((t, line)), true) => {
                            pick_dep(&by_label, &out, t, *line, d, seed, r, "teacher", cx)
                        }
                        _ => None,
                    };
                    by_label
                        .entry(r.label.as_str())
                        .or_default()
                        .push(out.len());
                    out.push(ExpandedRun {
                        label: r.label.clone(),
                        variant: variant.join(" "),
                        config,
                        teacher,
                        base,
                    });
                }
            }
        }
    }
    out
}

/// A [`RunConfig::problems`] entry as a file error: at the line of the setting it concerns (or
/// of what makes the setting needed), with the remedy in the file's terms; each once, however
/// many runs a grid or the seeds expand it into.
fn config_error(r: &RawRun, defaults: &RawRun, problem: &ConfigProblem, cx: &mut Ctx) {
    let line_of = |name: &str| field(r, defaults, name).map(|f| f.line);
    let prune_line = line_of("prune.method")
        .or_else(|| line_of("prune.finetune_loss"))
        .or_else(|| line_of("prune.target"));
    let loss_line = line_of("loss");
    let (line, path, remedy) = match problem.rule {
        Rule::TeacherUnused => (
            r.teacher.as_ref().map_or(r.line, |(_, l)| *l),
            "teacher",
            "remove `teacher`",
        ),
        Rule::TeacherMissing => (
            loss_line.or(prune_line).unwrap_or(r.line),
            "teacher",
            "add `teacher: <label of a run>`",
        ),
        Rule::LossUnread => (
            loss_line.unwrap_or(r.line),
            "loss",
            "remove `loss` (and `teacher`), or use `method: kdis` / `finetune_loss: kd`",
        ),
        Rule::LossCannotDistil => match loss_line {
            Some(line) => (
                line,
                "loss",
                "use stcd (the paper's) or another distillation loss",
            ),
            None => (
                prune_line.unwrap_or(r.line),
                "prune.method",
                "set `loss: stcd` (or another distillation loss) and `teacher`",
            ),
        },
        Rule::Invalid => (
            if problem.field == "loss" {
                loss_line
            } else {
                prune_line
            }
            .unwrap_or(r.line),
            problem.field,
            "",
        ),
    };
    let path = format!("{}.{path}", r.path);
    let message = if remedy.is_empty() {
        problem.message.clone()
    } else {
        format!("{}: {remedy}", problem.message)
    };
    if !cx
        .errors
        .iter()
        .any(|e| e.line == line && e.path == path && e.message == message)
    {
        cx.err(line, path, message);
    }
}

/// The variant of run `label` a dependant on dataset `d` with `seed` uses: the one with the
/// same dataset and seed, else the only one on the dataset.
#[allow(clippy::too_many_arguments)]
fn pick_dep(
    by_label: &HashMap<&str, Vec<usize>>,
    out: &[ExpandedRun],
    label: &str,
    line: usize,
    d: DatasetName,
    seed: u64,
    r: &RawRun,
    what: &str,
    cx: &mut Ctx,
) -> Option<usize> {
    let cands = by_label.get(label).cloned().unwrap_or_default();
    let same_d: Vec<usize> = cands
        .into_iter()
        .filter(|&j| out[j].config.dataset == d)
        .collect();
    let same_seed: Vec<usize> = same_d
        .iter()
        .copied()
        .filter(|&j| out[j].config.train.seed == seed)
        .collect();
    match (same_seed.len(), same_d.len()) {
        (1, _) => Some(same_seed[0]),
        (_, 1) => Some(same_d[0]),
        (_, 0) => {
            cx.err(
                line,
                format!("{}.{what}", r.path),
                format!("{what} `{label}` has no run on {d}"),
            );
            None
        }
        (_, n) => {
            cx.err(line, format!("{}.{what}", r.path), format!("{what} `{label}` expands to {n} runs on {d} (grid or random values); a {what} must be one run per dataset and seed"));
            None
        }
    }
}

fn build_config(
    r: &RawRun,
    defaults: &RawRun,
    d: DatasetName,
    seed: u64,
    values: &[(&str, Val)],
    split_days: Option<[usize; 3]>,
) -> RunConfig {
    let get = |name: &str| {
        values
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    let f = |name: &str, default: f64| get(name).map_or(default, |v| v.f64());
    let u = |name: &str| get(name).map(|v| v.f64() as usize);
    let s = |name: &str| get(name).map(|v| v.text());
    let kind: LossKind = s("loss").map_or(LossKind::Mse, |v| v.parse().expect("validated loss"));
    let mut loss = LossConfig::new(kind);
    loss.beta = f("beta", loss.beta);
    loss.alpha = f("alpha", loss.alpha);
    loss.alpha1 = f("alpha1", loss.alpha1);
    loss.alpha2 = f("alpha2", loss.alpha2);
    loss.alpha3 = f("alpha3", loss.alpha3);
    loss.tau = f("tau", loss.tau);
    if let Some(n) = s("norm") {
        loss.norm = if n == "abs" { Norm::Abs } else { Norm::Squared };
    }
    if let Some(n) = s("ord_reduction") {
        loss.ord_reduction = if n == "sum" {
            Reduction::Sum
        } else {
            Reduction::Mean
        };
    }
    if let Some(Val::B(b)) = get("gradient_revision") {
        loss.gradient_revision = b;
    }
    let defaults_train = TrainConfig::default();
    let train = TrainConfig {
        epochs: u("epochs").unwrap_or(defaults_train.epochs),
        batch_size: u("batch_size").unwrap_or(defaults_train.batch_size),
        lr: f("lr", defaults_train.lr),
        lr_decay: f("lr_decay", defaults_train.lr_decay),
        decay_every: u("decay_every").unwrap_or(defaults_train.decay_every),
        optimizer: s("optimizer").map_or(defaults_train.optimizer, |o| {
            o.parse().expect("validated optimizer")
        }),
        seed,
        eval_batch: u("eval_batch").unwrap_or(defaults_train.eval_batch),
        max_steps_per_epoch: u("max_steps_per_epoch"),
    };
    let (preset, channels) = match r.model.as_ref().or(defaults.model.as_ref()).map(|(m, _)| m) {
        Some(StgcnConfigSpec::Preset(p)) => (Some(*p), p.channels()),
        Some(StgcnConfigSpec::Channels(c)) => (None, *c),
        None => (Some(Preset::Teacher), Preset::Teacher.channels()),
    };
    let mut model = StgcnConfig::new(channels, d.nodes(), 12);
    model.dropout = f("dropout", 0.0);
    let prune = r.base.is_some().then(|| {
        let parsed = |name: &str| s(name).map(|v| v.to_string());
        PruneConfig {
            method: parsed("prune.method").map_or(PruneMethod::Taylor, |v| {
                v.parse().expect("validated method")
            }),
            granularity: parsed("prune.granularity").map_or(Granularity::Channel, |v| {
                v.parse().expect("validated granularity")
            }),
            target_pct: f("prune.target", 50.0),
            schedule: match (u("prune.steps"), get("prune.share_per_step")) {
                (Some(n), _) => StepRule::Steps(n),
                (None, Some(v)) => StepRule::SharePerStep(v.f64()),
                (None, None) => StepRule::Steps(DEFAULT_STEPS),
            },
            interval: match (u("prune.interval_epochs"), u("prune.interval_steps")) {
                (Some(e), _) => Interval::Epochs(e),
                (None, Some(m)) => Interval::Minibatches(m),
                (None, None) => Interval::Epochs(DEFAULT_INTERVAL_EPOCHS),
            },
            finetune_epochs: u("prune.finetune_epochs").unwrap_or(DEFAULT_FINETUNE_EPOCHS),
            finetune_loss: parsed("prune.finetune_loss").map_or(FinetuneLoss::Mse, |v| {
                v.parse().expect("validated fine-tuning loss")
            }),
        }
    });
    let mut train = train;
    if let Some(p) = &prune {
        // Not read by a pruning run; fixed so that an inherited `epochs` does not split runs.
        train.epochs = p.finetune_epochs.max(1);
    }
    RunConfig {
        dataset: d,
        split_days,
        preset,
        model,
        train,
        loss: loss.canonical(),
        teacher: None,
        test_runs: u("test_runs"),
        prune,
        base: None,
    }
}

#[cfg(test)]
mod tests;
