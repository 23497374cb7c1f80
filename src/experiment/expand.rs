//! Expansion into runs: datasets × grids × random draws × seeds, each built into a
//! [`RunConfig`] and checked with [`RunConfig::problems`]; dependencies picked per dataset and
//! seed.

use std::collections::HashMap;

use crate::data::DatasetName;
use crate::distill::{LossKind, LossSettings, Norm, Reduction};
use crate::model::Preset;
use crate::prune::{
    FinetuneLoss, Granularity, Interval, PruneConfig, PruneMethod, StepRule,
    DEFAULT_FINETUNE_EPOCHS, DEFAULT_INTERVAL_EPOCHS, DEFAULT_STEPS,
};
use crate::rng::Rng;
use crate::train::TrainConfig;

use super::check::field;
use super::schema::{all_fields, Choice, Ctx, Dist, RawRun, StgcnConfigSpec, Val};
use super::search::{study, Sampler, SearchSpec, Study};
use super::{ConfigProblem, ExpandedRun, Network, Rule, RunConfig, RunSettings};

pub(super) fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(super) fn expand(
    raws: &[RawRun],
    defaults: &RawRun,
    datasets: &[DatasetName],
    split_days: &HashMap<DatasetName, [usize; 3]>,
    search: Option<&SearchSpec>,
    cx: &mut Ctx,
) -> (Vec<ExpandedRun>, Vec<Study>) {
    let mut out = Expansion::default();
    for i in dependency_order(raws) {
        let r = &raws[i];
        let seeds = r
            .seeds
            .clone()
            .or_else(|| defaults.seeds.clone())
            .unwrap_or_else(|| vec![1]);
        for &d in r.datasets.as_deref().unwrap_or(datasets) {
            if !datasets.contains(&d) {
                cx.err(
                    r.line,
                    format!("{}.datasets", r.path),
                    format!("dataset {d} is not in the experiment's datasets"),
                );
                continue;
            }
            let fields = Fields::of(r, defaults, d);
            let split = split_days.get(&d).copied();
            match search {
                Some(search) if !fields.random.is_empty() => {
                    out.studies_of(r, defaults, search, d, &seeds, fields, split, cx)
                }
                _ => out.runs_of(r, defaults, d, &seeds, &fields, split, cx),
            }
        }
    }
    (out.runs, out.studies)
}

/// The runs' indices with every run after the teacher and base it names.
fn dependency_order(raws: &[RawRun]) -> Vec<usize> {
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
    let mut order = Vec::new();
    for i in 0..raws.len() {
        visit(i, raws, &index, &mut order);
    }
    order
}

/// A run's fields resolved for one dataset: fixed values, grid lists and random draws.
struct Fields {
    fixed: Vec<(&'static str, Val)>,
    grid: Vec<(&'static str, Vec<Val>)>,
    random: Vec<(&'static str, Dist)>,
}

impl Fields {
    fn of(r: &RawRun, defaults: &RawRun, d: DatasetName) -> Self {
        let mut f = Fields {
            fixed: Vec::new(),
            grid: Vec::new(),
            random: Vec::new(),
        };
        let is_prune = r.base.is_some();
        for (name, _) in all_fields().filter(|(n, _)| is_prune || !n.starts_with("prune.")) {
            match field(r, defaults, name).and_then(|c| c.for_dataset(d)) {
                Some(Choice::Fixed(v)) => f.fixed.push((name, v.clone())),
                Some(Choice::Grid(v)) => f.grid.push((name, v.clone())),
                Some(Choice::Random(dist)) => f.random.push((name, dist.clone())),
                None => {}
            }
        }
        f
    }

    /// Every grid combination, each with every random draw (`samples` of them, seeded by
    /// `search_seed`, the run's label and the dataset).
    fn combinations(
        &self,
        r: &RawRun,
        defaults: &RawRun,
        d: DatasetName,
    ) -> Vec<Vec<(&'static str, Val)>> {
        let mut combos: Vec<Vec<(&str, Val)>> = vec![vec![]];
        for (name, vals) in &self.grid {
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
        if self.random.is_empty() {
            return combos;
        }
        let samples = r.samples.or(defaults.samples).unwrap_or(1);
        let search_seed = r.search_seed.or(defaults.search_seed).unwrap_or(0);
        let mut rng = Rng::new(search_seed, stable_hash(&format!("{}/{d}", r.label)));
        let draws: Vec<Vec<(&str, Val)>> = (0..samples)
            .map(|_| {
                self.random
                    .iter()
                    .map(|(name, dist)| {
                        let v = match dist {
                            Dist::Uniform(lo, hi) => Val::F(lo + (hi - lo) * rng.next_f64()),
                            Dist::LogUniform(lo, hi) => {
                                Val::F((lo.ln() + (hi.ln() - lo.ln()) * rng.next_f64()).exp())
                            }
                            Dist::Choice(v) => v[rng.below(v.len())].clone(),
                        };
                        (*name, v)
                    })
                    .collect()
            })
            .collect();
        combos
            .into_iter()
            .flat_map(|c| draws.iter().map(move |dr| [c.clone(), dr.clone()].concat()))
            .collect()
    }
}

/// A run's name within its label: its grid and drawn values, and its seed when there are
/// several or it is not 1.
fn variant_name(combo: &[(&str, Val)], seeds: &[u64], seed: u64) -> String {
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
    variant.join(" ")
}

/// The run's own rules on a resolved configuration (dependencies named by label until the
/// planner hashes them), reported at the file's lines.
fn check_rules(r: &RawRun, defaults: &RawRun, config: &RunConfig, cx: &mut Ctx) {
    let mut probe = config.clone();
    probe.teacher = r.teacher.as_ref().map(|(t, _)| t.clone());
    probe.base = r.base.as_ref().map(|(b, _)| b.clone());
    for problem in probe.problems() {
        config_error(r, defaults, &problem, cx);
    }
}

/// What the expansion has produced so far: runs (with their indices by label, for the
/// dependencies of later runs) and studies.
#[derive(Default)]
struct Expansion<'a> {
    runs: Vec<ExpandedRun>,
    studies: Vec<Study>,
    by_label: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Expansion<'a> {
    /// The run `r` names as `what` (teacher or base) for dataset `d` and `seed`.
    fn dep(
        &self,
        dep: &(String, usize),
        what: &str,
        r: &RawRun,
        d: DatasetName,
        seed: u64,
        cx: &mut Ctx,
    ) -> Option<usize> {
        pick_dep(
            &self.by_label,
            &self.runs,
            &dep.0,
            dep.1,
            d,
            seed,
            r,
            what,
            cx,
        )
    }

    /// A searched run: one study per seed, its trials proposed during the sweep.
    #[allow(clippy::too_many_arguments)]
    fn studies_of(
        &mut self,
        r: &RawRun,
        defaults: &RawRun,
        search: &SearchSpec,
        d: DatasetName,
        seeds: &[u64],
        fields: Fields,
        split: Option<[usize; 3]>,
        cx: &mut Ctx,
    ) {
        if !fields.grid.is_empty() {
            cx.err(r.line, &r.path, "a searched run cannot also have grid lists: give the listed values as `{choice: [...]}`");
            return;
        }
        if search.sampler == Sampler::Grid
            && fields
                .random
                .iter()
                .any(|(_, d)| !matches!(d, Dist::Choice(_)))
        {
            cx.err(r.line, &r.path, "the grid sampler enumerates `{choice: [...]}` values: give every searched value as a choice");
            return;
        }
        for &seed in seeds {
            let mut st = study(
                r,
                defaults,
                search,
                d,
                seed,
                fields.fixed.clone(),
                fields.random.clone(),
                split,
            );
            let probe = st.config(&crate::search::random_values(
                &st.space,
                &mut Rng::new(0, 0),
            ));
            check_rules(r, defaults, &probe, cx);
            st.base = r
                .base
                .as_ref()
                .and_then(|b| self.dep(b, "base", r, d, seed, cx));
            st.teacher = match (&r.teacher, probe.distils()) {
                (Some(t), true) => self.dep(t, "teacher", r, d, seed, cx),
                _ => None,
            };
            self.studies.push(st);
        }
    }

    /// A run's grid combinations and random draws for every seed.
    #[allow(clippy::too_many_arguments)]
    fn runs_of(
        &mut self,
        r: &'a RawRun,
        defaults: &RawRun,
        d: DatasetName,
        seeds: &[u64],
        fields: &Fields,
        split: Option<[usize; 3]>,
        cx: &mut Ctx,
    ) {
        for combo in &fields.combinations(r, defaults, d) {
            for &seed in seeds {
                let values: Vec<(&str, Val)> = fields
                    .fixed
                    .iter()
                    .cloned()
                    .chain(combo.iter().cloned())
                    .collect();
                let base = r
                    .base
                    .as_ref()
                    .and_then(|b| self.dep(b, "base", r, d, seed, cx));
                let base_network = base.map(|j| Network::Trained {
                    model: self.runs[j].config.model.clone(),
                    preset: self.runs[j].config.preset,
                });
                let config = build_config(r, defaults, d, seed, &values, split, base_network);
                check_rules(r, defaults, &config, cx);
                let teacher = match (&r.teacher, config.distils()) {
                    (Some(t), true) => self.dep(t, "teacher", r, d, seed, cx),
                    _ => None,
                };
                self.by_label
                    .entry(r.label.as_str())
                    .or_default()
                    .push(self.runs.len());
                self.runs.push(ExpandedRun {
                    label: r.label.clone(),
                    variant: variant_name(combo, seeds, seed),
                    config,
                    teacher,
                    base,
                });
            }
        }
    }
}

/// A [`RunConfig::problems`] entry as a file error: at the line of the setting it concerns (or
/// of what makes the setting needed), with the remedy in the file's terms; each once, however
/// many runs a grid or the seeds expand it into.
pub(super) fn config_error(r: &RawRun, defaults: &RawRun, problem: &ConfigProblem, cx: &mut Ctx) {
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
pub(super) fn pick_dep(
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

/// The run configuration of `values` (the run's resolved fields) for dataset `d` and `seed`;
/// `base_network` is the trained network a pruning run prunes (the base run's), when known.
#[allow(clippy::too_many_arguments)]
pub(super) fn build_config(
    r: &RawRun,
    defaults: &RawRun,
    d: DatasetName,
    seed: u64,
    values: &[(&str, Val)],
    split_days: Option<[usize; 3]>,
    base_network: Option<Network>,
) -> RunConfig {
    let get = |name: &str| {
        values
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    let f = |name: &str, default: f64| get(name).map_or(default, |v| v.f64());
    let fo = |name: &str| get(name).map(|v| v.f64());
    let u = |name: &str| get(name).map(|v| v.f64() as usize);
    let s = |name: &str| get(name).map(|v| v.text());
    let loss = s("loss").map_or(LossKind::Mse, |v| v.parse().expect("validated loss"));
    let loss_settings = LossSettings {
        beta: fo("beta"),
        alpha: fo("alpha"),
        alpha1: fo("alpha1"),
        alpha2: fo("alpha2"),
        alpha3: fo("alpha3"),
        tau: fo("tau"),
        norm: s("norm").map(|n| if n == "abs" { Norm::Abs } else { Norm::Squared }),
        ord_reduction: s("ord_reduction").map(|n| {
            if n == "sum" {
                Reduction::Sum
            } else {
                Reduction::Mean
            }
        }),
        gradient_revision: match get("gradient_revision") {
            Some(Val::B(b)) => Some(b),
            _ => None,
        },
    };
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
    let network = base_network.unwrap_or_else(|| {
        let (preset, channels) = match r.model.as_ref().or(defaults.model.as_ref()).map(|(m, _)| m)
        {
            Some(StgcnConfigSpec::Preset(p)) => (Some(*p), p.channels()),
            Some(StgcnConfigSpec::Channels(c)) => (None, *c),
            None => (Some(Preset::Teacher), Preset::Teacher.channels()),
        };
        Network::New {
            preset,
            channels,
            dropout: f("dropout", 0.0),
        }
    });
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
    RunConfig::new(RunSettings {
        dataset: d,
        split_days,
        network,
        train,
        loss,
        loss_settings,
        test_runs: u("test_runs"),
        prune,
        teacher: None,
        base: None,
    })
}
