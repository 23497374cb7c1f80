//! The `search:` block of an experiment file and the studies it makes of the runs whose fields
//! hold distributions (`{uniform: [lo, hi]}`, `{log_uniform: …}`, `{choice: […]}`):
//!
//! ```yaml
//! search:
//!   sampler: tpe            # grid | random | tpe
//!   trials: 20              # per searched run and dataset
//!   seed: 1
//!   objective: val_mae      # val_mae (best epoch), or test_{mae,rmse,mape}_{15,30,45}
//!   direction: minimize     # or maximize
//!   pruner: {kind: median, warmup_epochs: 3, startup_trials: 4}   # none | median | asha
//! ```
//!
//! Without the block, distributions are drawn up front (`samples`, `search_seed`). With it,
//! each searched run becomes a [`Study`] per dataset (and seed): its trials are proposed one at
//! a time by the sweep from the trials already in the store ([`crate::search`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::DatasetName;
use crate::search::{Pruner, Space, Value};

use super::expand::build_config;
use super::parse::unique_keys;
use super::schema::{did_you_mean, Ctx, Dist, RawRun, Val};
use super::yaml::Node;
use super::RunConfig;

/// How the trials of a study are proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampler {
    /// Every combination of the `{choice: [...]}` values, in order (the last field fastest).
    Grid,
    Random,
    Tpe,
}

/// Which number of a finished trial is optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// The best epoch's validation MAE (mph, mean over the predicted steps): the value runs
    /// are selected by.
    ValMae,
    /// A test metric at a paper horizon (15, 30 or 45 minutes).
    Test { metric: TestMetric, minutes: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestMetric {
    Mae,
    Rmse,
    Mape,
}

impl Metric {
    /// Names accepted in `objective:`.
    pub const NAMES: &'static [&'static str] = &[
        "val_mae",
        "test_mae_15",
        "test_mae_30",
        "test_mae_45",
        "test_rmse_15",
        "test_rmse_30",
        "test_rmse_45",
        "test_mape_15",
        "test_mape_30",
        "test_mape_45",
    ];

    fn parse(s: &str) -> Option<Metric> {
        if s == "val_mae" {
            return Some(Metric::ValMae);
        }
        let rest = s.strip_prefix("test_")?;
        let (m, min) = rest.split_once('_')?;
        let metric = match m {
            "mae" => TestMetric::Mae,
            "rmse" => TestMetric::Rmse,
            "mape" => TestMetric::Mape,
            _ => return None,
        };
        let minutes: usize = min.parse().ok()?;
        [15, 30, 45]
            .contains(&minutes)
            .then_some(Metric::Test { metric, minutes })
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::ValMae => f.write_str("val_mae"),
            Metric::Test { metric, minutes } => {
                let m = match metric {
                    TestMetric::Mae => "mae",
                    TestMetric::Rmse => "rmse",
                    TestMetric::Mape => "mape",
                };
                write!(f, "test_{m}_{minutes}")
            }
        }
    }
}

/// The `search:` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSpec {
    pub sampler: Sampler,
    /// Trials per study.
    pub trials: usize,
    pub seed: u64,
    pub objective: Metric,
    /// Whether a larger objective is better.
    pub maximize: bool,
    pub pruner: Pruner,
}

/// One searched run on one dataset (and seed): the space of its distributions and how to
/// build the run of a trial.
#[derive(Debug, Clone)]
pub struct Study {
    pub label: String,
    pub dataset: DatasetName,
    pub seed: u64,
    pub search: SearchSpec,
    /// The searched fields (`alpha1`, `prune.target`, …) in the file's order.
    pub fields: Vec<String>,
    pub space: Vec<Space>,
    /// Index (into [`Experiment::runs`]) of the teacher and base variants.
    pub teacher: Option<usize>,
    pub base: Option<usize>,
    build: Arc<StudyBuild>,
}

/// What [`Study::config`] needs from the file.
#[derive(Debug)]
struct StudyBuild {
    raw: RawRun,
    defaults: RawRun,
    fixed: Vec<(&'static str, Val)>,
    dists: Vec<(&'static str, Dist)>,
    split_days: Option<[usize; 3]>,
}

impl Study {
    /// The run of a trial with `values` (one per field of [`Study::space`]); its teacher and
    /// base are still unresolved (the planner sets their hashes).
    pub fn config(&self, values: &[Value]) -> RunConfig {
        let b = &self.build;
        let chosen = b.dists.iter().zip(values).map(|((name, dist), v)| {
            let val = match (dist, v) {
                (Dist::Choice(opts), Value::Index(i)) => opts[(*i).min(opts.len() - 1)].clone(),
                (_, v) => Val::F(v.number()),
            };
            (*name, val)
        });
        let values: Vec<(&str, Val)> = b.fixed.iter().cloned().chain(chosen).collect();
        build_config(
            &b.raw,
            &b.defaults,
            self.dataset,
            self.seed,
            &values,
            b.split_days,
            None,
        )
    }

    /// `alpha1=0.1234 alpha2=…` for a trial's values.
    pub fn describe(&self, values: &[Value]) -> String {
        self.build
            .dists
            .iter()
            .zip(values)
            .map(|((name, dist), v)| {
                let name = name.strip_prefix("prune.").unwrap_or(name);
                match (dist, v) {
                    (Dist::Choice(opts), Value::Index(i)) => {
                        format!("{name}={}", opts[(*i).min(opts.len() - 1)].text())
                    }
                    (_, v) => {
                        let x = v.number();
                        if x != 0.0 && !(1e-2..1e4).contains(&x.abs()) {
                            format!("{name}={x:.3e}")
                        } else {
                            format!("{name}={x:.4}")
                        }
                    }
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub(super) fn space_of(dist: &Dist) -> Space {
    match dist {
        Dist::Uniform(low, high) => Space::Uniform {
            low: *low,
            high: *high,
        },
        Dist::LogUniform(low, high) => Space::LogUniform {
            low: *low,
            high: *high,
        },
        Dist::Choice(v) => Space::Choice { options: v.len() },
    }
}

/// A study of run `r` on dataset `d` with `seed` (the searched fields `dists`, the others
/// `fixed`).
#[allow(clippy::too_many_arguments)]
pub(super) fn study(
    r: &RawRun,
    defaults: &RawRun,
    search: &SearchSpec,
    d: DatasetName,
    seed: u64,
    fixed: Vec<(&'static str, Val)>,
    dists: Vec<(&'static str, Dist)>,
    split_days: Option<[usize; 3]>,
) -> Study {
    Study {
        label: r.label.clone(),
        dataset: d,
        seed,
        search: search.clone(),
        fields: dists.iter().map(|(n, _)| n.to_string()).collect(),
        space: dists.iter().map(|(_, dist)| space_of(dist)).collect(),
        teacher: None,
        base: None,
        build: Arc::new(StudyBuild {
            raw: r.clone(),
            defaults: defaults.clone(),
            fixed,
            dists,
            split_days,
        }),
    }
}

pub(super) const SEARCH_KEYS: &[&str] = &[
    "sampler",
    "trials",
    "seed",
    "objective",
    "direction",
    "pruner",
];
const PRUNER_KEYS: &[&str] = &[
    "kind",
    "warmup_epochs",
    "startup_trials",
    "min_epochs",
    "reduction",
];

/// Parse the `search:` block (every problem into `cx`).
pub(super) fn parse_search(node: &Node, cx: &mut Ctx) -> Option<SearchSpec> {
    let Some(map) = node.as_map() else {
        cx.err(
            node.line,
            "search",
            format!(
                "expected a mapping with keys {}, got {}",
                SEARCH_KEYS.join(", "),
                node.describe()
            ),
        );
        return None;
    };
    let mut spec = SearchSpec {
        sampler: Sampler::Tpe,
        trials: 0,
        seed: 0,
        objective: Metric::ValMae,
        maximize: false,
        pruner: Pruner::None,
    };
    let before = cx.errors.len();
    let bad = |cx: &mut Ctx, line: usize, p: &str, msg: String| cx.err(line, p, msg);
    let mut trials_seen = false;
    for (k, line, v, p) in unique_keys(map, "search", cx) {
        match k.as_str() {
            "sampler" => match v.as_str() {
                Some("grid") => spec.sampler = Sampler::Grid,
                Some("random") => spec.sampler = Sampler::Random,
                Some("tpe") => spec.sampler = Sampler::Tpe,
                _ => {
                    const SAMPLERS: &[&str] = &["grid", "random", "tpe"];
                    let message = match v.as_scalar() {
                        Some(s) => {
                            let hint = did_you_mean(&s.to_string(), SAMPLERS)
                                .map(|s| format!(" (did you mean `{s}`?)"))
                                .unwrap_or_default();
                            format!(
                                "unknown sampler `{s}`{hint}; allowed: {}",
                                SAMPLERS.join(", ")
                            )
                        }
                        None => format!(
                            "expected a sampler, got {}; allowed: {}",
                            v.shown(),
                            SAMPLERS.join(", ")
                        ),
                    };
                    bad(cx, v.line, &p, message)
                }
            },
            "trials" => match v.as_i64() {
                Some(n) if n >= 1 => {
                    spec.trials = n as usize;
                    trials_seen = true;
                }
                _ => bad(
                    cx,
                    v.line,
                    &p,
                    format!("expected a number of trials ≥ 1, got {}", v.shown()),
                ),
            },
            "seed" => match v.as_i64() {
                Some(n) if n >= 0 => spec.seed = n as u64,
                _ => bad(
                    cx,
                    v.line,
                    &p,
                    format!("expected a seed ≥ 0, got {}", v.shown()),
                ),
            },
            "objective" => match v.as_str().and_then(Metric::parse) {
                Some(m) => spec.objective = m,
                None => bad(
                    cx,
                    v.line,
                    &p,
                    format!(
                        "expected one of {}, got {}",
                        Metric::NAMES.join(", "),
                        v.shown()
                    ),
                ),
            },
            "direction" => match v.as_str() {
                Some("minimize") => spec.maximize = false,
                Some("maximize") => spec.maximize = true,
                _ => bad(
                    cx,
                    v.line,
                    &p,
                    format!("expected minimize or maximize, got {}", v.shown()),
                ),
            },
            "pruner" => {
                if let Some(pr) = parse_pruner(v, &p, cx) {
                    spec.pruner = pr;
                }
            }
            _ => cx.unknown_key(*line, "search", k, SEARCH_KEYS),
        }
    }
    if !trials_seen {
        cx.err(
            node.line,
            "search.trials",
            "missing: how many trials each searched run gets",
        );
    }
    (cx.errors.len() == before).then_some(spec)
}

fn parse_pruner(node: &Node, path: &str, cx: &mut Ctx) -> Option<Pruner> {
    let kind_of = |s: &str| match s {
        "none" => Some(Pruner::None),
        "median" => Some(Pruner::Median {
            warmup_epochs: 5,
            startup_trials: 5,
        }),
        "asha" => Some(Pruner::Asha {
            min_epochs: 1,
            reduction: 3,
        }),
        _ => None,
    };
    let kinds = "none, median, asha";
    if let Some(s) = node.as_str() {
        let p = kind_of(s);
        if p.is_none() {
            cx.err(node.line, path, format!("expected {kinds}, got `{s}`"));
        }
        return p;
    }
    let Some(map) = node.as_map() else {
        cx.err(
            node.line,
            path,
            format!(
                "expected {kinds} or a mapping with keys {}",
                PRUNER_KEYS.join(", ")
            ),
        );
        return None;
    };
    let Some(kind) = node.get("kind") else {
        cx.err(
            node.line,
            format!("{path}.kind"),
            format!("missing: {kinds}"),
        );
        return None;
    };
    let mut pruner = match kind.as_str().and_then(kind_of) {
        Some(p) => p,
        None => {
            cx.err(
                kind.line,
                format!("{path}.kind"),
                format!("expected {kinds}, got {}", kind.shown()),
            );
            return None;
        }
    };
    let before = cx.errors.len();
    for (k, line, v, p) in unique_keys(map, path, cx) {
        if k == "kind" {
            continue;
        }
        let n = match v.as_i64() {
            Some(n) if n >= 0 => n as usize,
            _ => {
                cx.err(
                    v.line,
                    &p,
                    format!("expected a whole number ≥ 0, got {}", v.shown()),
                );
                continue;
            }
        };
        match (&mut pruner, k.as_str()) {
            (Pruner::Median { warmup_epochs, .. }, "warmup_epochs") => *warmup_epochs = n,
            (Pruner::Median { startup_trials, .. }, "startup_trials") => *startup_trials = n,
            (Pruner::Asha { min_epochs, .. }, "min_epochs") if n >= 1 => *min_epochs = n,
            (Pruner::Asha { reduction, .. }, "reduction") if n >= 2 => *reduction = n,
            (Pruner::Asha { .. }, "min_epochs" | "reduction") => {
                cx.err(
                    v.line,
                    &p,
                    format!("too small: min_epochs ≥ 1, reduction ≥ 2 (got {n})"),
                );
            }
            (_, key) if PRUNER_KEYS.contains(&key) => {
                cx.err(
                    *line,
                    &p,
                    format!(
                        "not a setting of the {} pruner",
                        kind.as_str().unwrap_or("")
                    ),
                );
            }
            _ => cx.unknown_key(*line, path, k, PRUNER_KEYS),
        }
    }
    (cx.errors.len() == before).then_some(pruner)
}
