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

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::DatasetName;
use crate::distill::{LossConfig, LossKind, LossSettings};
use crate::model::{Channels, Preset, StgcnConfig};
use crate::prune::PruneConfig;
use crate::train::TrainConfig;
use yaml::{Node, Scalar};

mod check;
mod executor;
mod expand;
mod parse;
mod schema;
mod search;

use check::check_runs;
use executor::parse_executor;
pub use executor::{
    is_slurm_mem, is_slurm_time, ExecutorKind, ExecutorSpec, SlurmOptions, DEFAULT_PENDING_LIMIT_S,
};
use expand::expand;
use parse::{parse_datasets, parse_run_keys, parse_runs, parse_split_days};
use schema::{Ctx, RawRun, DATASETS, TOP_KEYS};
use search::parse_search;
pub use search::{Metric, Sampler, SearchSpec, Study, TestMetric};

/// Everything one run needs, nothing else: the contract between experiment, plan, schedule,
/// train and store. Hashed (with the data checksum and [`crate::plan::CODE_VERSION`]) for identity.
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

/// The network a run trains.
#[derive(Debug, Clone, PartialEq)]
pub enum Network {
    /// A new network with these channels (of `preset` when it is one of the paper's), on the
    /// dataset's graph with 12 input steps.
    New {
        preset: Option<Preset>,
        channels: Channels,
        dropout: f64,
    },
    /// A trained network as it is (the base run a pruning run prunes), recorded under `preset`.
    Trained {
        model: StgcnConfig,
        preset: Option<Preset>,
    },
}

/// What a run is made of, as every front end (the experiment file's expansion, `stkd train`,
/// `stkd prune`) resolves it; [`RunConfig::new`] applies the rules they share.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub dataset: DatasetName,
    pub split_days: Option<[usize; 3]>,
    pub network: Network,
    pub train: TrainConfig,
    pub loss: LossKind,
    pub loss_settings: LossSettings,
    pub test_runs: Option<usize>,
    pub prune: Option<PruneConfig>,
    pub teacher: Option<String>,
    pub base: Option<String>,
}

impl RunConfig {
    /// The one constructor of a run configuration: the network built on the dataset's graph
    /// (or taken as trained), the loss made from its settings ([`LossSettings::config`],
    /// canonical), and for a pruning run `train.epochs` fixed to the fine-tuning epochs (at
    /// least 1; not read by a pruning run, fixed so that an inherited `epochs` does not split
    /// runs). Not validated: see [`RunConfig::problems`].
    pub fn new(s: RunSettings) -> RunConfig {
        let (preset, model) = match s.network {
            Network::New {
                preset,
                channels,
                dropout,
            } => {
                let mut model = StgcnConfig::new(channels, s.dataset.nodes(), 12);
                model.dropout = dropout;
                (preset, model)
            }
            Network::Trained { model, preset } => (preset, model),
        };
        let mut train = s.train;
        if let Some(p) = &s.prune {
            train.epochs = p.finetune_epochs.max(1);
        }
        RunConfig {
            dataset: s.dataset,
            split_days: s.split_days,
            preset,
            model,
            train,
            loss: s.loss_settings.config(s.loss),
            teacher: s.teacher,
            test_runs: s.test_runs,
            prune: s.prune,
            base: s.base,
        }
    }
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
    /// The `search:` block, if any.
    pub search: Option<SearchSpec>,
    /// The searched runs (with a `search:` block), one per dataset and seed.
    pub studies: Vec<Study>,
    /// The `executor:` block (empty without one): where a sweep runs the runs by default.
    pub executor: ExecutorSpec,
    /// `mean_check` (default true): a run whose best validation MAE is worse than predicting
    /// the training mean everywhere fails. Off for deliberate experiments; in no run's hash.
    pub mean_check: bool,
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
    let split_days = root
        .get("data")
        .map(|d| parse_split_days(d, &mut cx))
        .unwrap_or_default();
    let mut defaults = RawRun::default();
    if let Some(d) = root.get("defaults") {
        parse_run_keys(d, "defaults", true, &datasets, &mut defaults, &mut cx);
    }
    let raws = match root.get("runs") {
        Some(n) => parse_runs(n, &datasets, &mut cx),
        None => {
            cx.err(1, "runs", "missing: list the runs to execute");
            Vec::new()
        }
    };
    let search = root.get("search").and_then(|n| parse_search(n, &mut cx));
    let executor = root
        .get("executor")
        .map(|n| parse_executor(n, &mut cx))
        .unwrap_or_default();
    let mean_check = match root.get("mean_check") {
        None => true,
        Some(n) => match n.as_scalar() {
            Some(Scalar::Bool(b)) => *b,
            _ => {
                cx.err(
                    n.line,
                    "mean_check",
                    format!("expected true or false, got {}", n.shown()),
                );
                true
            }
        },
    };
    check_runs(&raws, &defaults, root.get("search").is_some(), &mut cx);
    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|e| e.line);
        return Err(fail(cx.errors));
    }
    let (runs, studies) = expand(
        &raws,
        &defaults,
        &datasets,
        &split_days,
        search.as_ref(),
        &mut cx,
    );
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
        search,
        studies,
        executor,
        mean_check,
    })
}

#[cfg(test)]
mod tests;
