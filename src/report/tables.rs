//! The report's data model: which paper table an experiment reproduces, which of its runs make
//! which row (by loss kind and model preset, not by label text), our mean ± std over seeds beside
//! the paper's values. Pure functions of [`ReportData`]: no files, no models, no clocks.

use std::collections::{BTreeMap, BTreeSet};

use crate::data::DatasetName;
use crate::distill::LossKind;
use crate::model::{Preset, StgcnConfig};
use crate::report::collect::{ReportData, RunEntry, RunState};
use crate::report::format::fixed;
use crate::report::paper::{self, COLUMNS, HORIZONS};
use crate::report::runs::{
    datasets, hyperparameters, is_pruned, is_reference, metric_of, model_name, network_name,
    prune_info,
};

/// Mean and sample standard deviation (n − 1) of one value over a group's finished runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub n: usize,
    pub mean: f64,
    /// `None` for a single value.
    pub std: Option<f64>,
}

impl Stat {
    /// `5.301 ± 0.012`, or `5.301` for one value.
    pub fn text(&self, decimals: usize) -> String {
        match self.std {
            Some(sd) => format!("{} ± {}", fixed(self.mean, decimals), fixed(sd, decimals)),
            None => fixed(self.mean, decimals),
        }
    }
}

/// `None` for no values. A NaN (diverged run) makes the mean NaN: it is shown, not hidden.
pub fn stat(values: &[f64]) -> Option<Stat> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = (n > 1).then(|| {
        let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        (ss / (n - 1) as f64).sqrt()
    });
    Some(Stat { n, mean, std })
}

/// How many runs of a row are in each [`RunState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunCounts(pub [usize; RunState::ALL.len()]);

impl RunCounts {
    pub fn of<'a>(runs: impl IntoIterator<Item = &'a RunEntry>) -> Self {
        let mut c = RunCounts::default();
        for r in runs {
            c.add(r.state);
        }
        c
    }

    pub fn add(&mut self, s: RunState) {
        let i = RunState::ALL.iter().position(|x| *x == s).expect("a state");
        self.0[i] += 1;
    }

    pub fn get(&self, s: RunState) -> usize {
        self.0[RunState::ALL.iter().position(|x| *x == s).expect("a state")]
    }

    pub fn done(&self) -> usize {
        self.get(RunState::Done)
    }

    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }

    /// `2 done`, `1 done, 1 failed`; `not in experiment` for no runs.
    pub fn describe(&self) -> String {
        if self.total() == 0 {
            return "not in experiment".to_string();
        }
        RunState::ALL
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs that differ only by seed, under one row name.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    pub dataset: DatasetName,
    pub model: String,
    pub variant: String,
    pub runs: Vec<&'a RunEntry>,
}

impl Group<'_> {
    pub fn counts(&self) -> RunCounts {
        RunCounts::of(self.runs.iter().copied())
    }

    pub fn done(&self) -> impl Iterator<Item = &RunEntry> {
        self.runs.iter().copied().filter(|r| r.done().is_some())
    }

    pub fn reference(&self) -> bool {
        self.runs.iter().all(|r| is_reference(r))
    }
}

/// Groups of `runs` by (dataset, name, label, variant without seed), in order of first
/// appearance: runs that differ only by seed. Where runs of different labels get the same name
/// (two W/O KD students, say), the label is put in front of the variant to tell them apart.
pub fn groups<'a>(
    runs: impl IntoIterator<Item = &'a RunEntry>,
    name: impl Fn(&RunEntry) -> String,
) -> Vec<Group<'a>> {
    let mut out: Vec<(String, Group<'a>)> = Vec::new();
    for r in runs {
        let (d, m, v) = (r.config.dataset, name(r), r.variant_without_seed());
        match out
            .iter_mut()
            .find(|(l, g)| g.dataset == d && g.model == m && g.variant == v && *l == r.label)
        {
            Some((_, g)) => g.runs.push(r),
            None => out.push((
                r.label.clone(),
                Group {
                    dataset: d,
                    model: m,
                    variant: v,
                    runs: vec![r],
                },
            )),
        }
    }
    let labels_of = |m: &str, v: &str| -> BTreeSet<&str> {
        out.iter()
            .filter(|(_, g)| g.model == m && g.variant == v)
            .map(|(l, _)| l.as_str())
            .collect()
    };
    let ambiguous: Vec<bool> = out
        .iter()
        .map(|(_, g)| labels_of(&g.model, &g.variant).len() > 1)
        .collect();
    out.into_iter()
        .zip(ambiguous)
        .map(|((label, mut g), amb)| {
            if amb {
                g.variant = if g.variant.is_empty() {
                    label
                } else {
                    format!("{label} {}", g.variant)
                };
            }
            g
        })
        .collect()
}

/// A run that has no result (yet), listed under its table.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfinished {
    pub name: String,
    pub hash: String,
    pub state: RunState,
    pub error: Option<String>,
}

fn unfinished<'a>(runs: impl IntoIterator<Item = &'a RunEntry>) -> Vec<Unfinished> {
    runs.into_iter()
        .filter(|r| r.done().is_none())
        .map(|r| Unfinished {
            name: r.display_name(),
            hash: r.hash.clone(),
            state: r.state,
            error: r.error.clone(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Metrics tables (Tables 2, 4, 5, 7, 8 and the generic one)

/// One model row: ours over seeds, the paper's value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    pub model: String,
    /// Variant without seed (grid / random values), empty for most rows.
    pub variant: String,
    pub counts: RunCounts,
    /// MAPE, MAE, RMSE × 15, 30, 45 min over finished runs (see [`paper::column`]).
    pub ours: [Option<Stat>; COLUMNS],
    /// The values behind `ours`, `(seed, value)` per finished run, per column: what a
    /// comparison pairs by seed ([`crate::report::stats::compare`]).
    pub seeds: Vec<Vec<(u64, f64)>>,
    /// Best (lowest) of our values in the column among the ranked rows.
    pub best: [bool; COLUMNS],
    pub paper: Option<[f64; COLUMNS]>,
    /// The paper table `paper` comes from.
    pub paper_table: Option<u8>,
    /// Whether the paper's line is printed under this row (once per paper model).
    pub paper_line: bool,
    /// Table 7: share of parameters kept, relative to the teacher (%); Table 8: share of the
    /// base model's parameters pruned (%), the paper's pruning level ([I-10]).
    pub param_pct: Option<Stat>,
    pub paper_param_pct: Option<f64>,
    pub reference: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsBlock {
    pub dataset: DatasetName,
    pub rows: Vec<MetricsRow>,
    pub unfinished: Vec<Unfinished>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsTable {
    /// The paper table whose rows and values are shown (`None`: values looked up by model name
    /// in any of the paper's tables).
    pub table: Option<u8>,
    /// Tables 7 and 8 have a Parameter % column.
    pub param_pct: bool,
    pub blocks: Vec<MetricsBlock>,
}

/// Parameters of a preset on a run's graph.
fn preset_params(run: &RunEntry, p: Preset) -> usize {
    StgcnConfig::new(p.channels(), run.config.model.nodes, run.config.model.n_his).param_count()
}

/// A run's share of parameters relative to `reference` (%): the compact count of a pruned run
/// against its original, otherwise its own count against the reference network.
fn param_pct(run: &RunEntry, reference: Preset) -> Option<f64> {
    let result = run.done();
    if let Some(p) = result.and_then(|r| r.pruning.as_ref()) {
        if p.original_parameters > 0 {
            return Some(100.0 * p.compact_parameters as f64 / p.original_parameters as f64);
        }
    }
    if let Some(p) = prune_info(run) {
        // Not done: the planned share kept.
        return p.target_pct.map(|t| 100.0 - t);
    }
    let own = result
        .and_then(|r| r.profile.as_ref())
        .map(|p| p.parameters as f64)
        .unwrap_or(run.config.model.param_count() as f64);
    Some(100.0 * own / preset_params(run, reference) as f64)
}

fn metrics_row(g: &Group, table: Option<u8>) -> MetricsRow {
    let mut ours = [None; COLUMNS];
    let mut seeds = vec![Vec::new(); COLUMNS];
    for (m, _) in paper::METRICS.iter().enumerate() {
        for (h, _) in HORIZONS.iter().enumerate() {
            let v: Vec<(u64, f64)> = g
                .done()
                .filter_map(|r| metric_of(r, m, h).map(|x| (r.seed(), x)))
                .collect();
            ours[paper::column(m, h)] = stat(&v.iter().map(|p| p.1).collect::<Vec<f64>>());
            seeds[paper::column(m, h)] = v;
        }
    }
    let reference = match table {
        Some(7) => Some(Preset::Teacher),
        Some(8) => Some(Preset::Base),
        _ => None,
    };
    let param_pct = reference.and_then(|p| {
        let done: Vec<f64> = g.done().filter_map(|r| param_pct(r, p)).collect();
        if done.is_empty() {
            // Not finished: the planned network's size, when it is known before training.
            stat(
                &g.runs
                    .iter()
                    .filter_map(|r| param_pct(r, p))
                    .collect::<Vec<_>>(),
            )
        } else {
            stat(&done)
        }
    });
    // Table 8's rows are pruning levels ([I-10]): the share removed, which is what its paper
    // rows are matched by and what the report prints.
    let param_pct = match table {
        // Only the base model and its pruned runs have a pruning level (the teacher has none).
        Some(8)
            if g.runs
                .iter()
                .all(|r| is_pruned(r) || r.config.preset == Some(Preset::Base)) =>
        {
            param_pct.map(|s| Stat {
                mean: 100.0 - s.mean,
                ..s
            })
        }
        Some(8) => None,
        _ => param_pct,
    };
    MetricsRow {
        model: g.model.clone(),
        variant: g.variant.clone(),
        counts: g.counts(),
        ours,
        seeds,
        best: [false; COLUMNS],
        paper: None,
        paper_table: None,
        paper_line: false,
        param_pct,
        paper_param_pct: None,
        reference: g.reference(),
    }
}

/// Marks the best (lowest, as printed with 3 decimals) of our values per column among the
/// non-reference rows (all rows if there are only reference rows).
fn mark_best(rows: &mut [MetricsRow]) {
    let ranked_any = rows
        .iter()
        .any(|r| !r.reference && r.ours.iter().any(Option::is_some));
    for c in 0..COLUMNS {
        let key = |r: &MetricsRow| -> Option<i64> {
            if ranked_any && r.reference {
                return None;
            }
            let s = r.ours[c]?;
            s.mean.is_finite().then(|| (s.mean * 1000.0).round() as i64)
        };
        if let Some(best) = rows.iter().filter_map(key).min() {
            for r in rows.iter_mut() {
                r.best[c] = key(r) == Some(best);
            }
        }
    }
}

/// The metrics table of `data`: for a paper table, the paper's rows in the paper's order
/// (matched with our rows by model name, and by Parameter % where a model appears several
/// times), rows the paper has and the experiment lacks kept as `not in experiment`, then our
/// other rows; otherwise our rows in plan order, each with the paper's values of that model
/// from any table.
pub fn metrics_table(data: &ReportData, table: Option<u8>) -> MetricsTable {
    let metrics_table = table.filter(|t| matches!(t, 2 | 4 | 5 | 7 | 8));
    let all = groups(&data.runs, |r| model_name(r, metrics_table));
    let mut blocks = Vec::new();
    for d in datasets(data) {
        let ours: Vec<&Group> = all.iter().filter(|g| g.dataset == d).collect();
        let mut rows: Vec<MetricsRow> = ours.iter().map(|g| metrics_row(g, table)).collect();
        let mut order: Vec<usize> = Vec::new(); // indices into rows, in output order
        if let Some(t) = metrics_table {
            let paper_rows = paper::metrics_of(t, d);
            let mut taken = vec![false; rows.len()];
            // Assign each of our rows to a paper row of the same model: nearest Parameter %
            // when both are known, else the first paper row of that model.
            let mut assigned: Vec<Option<usize>> = vec![None; rows.len()];
            for (i, row) in rows.iter().enumerate() {
                let cands: Vec<usize> = (0..paper_rows.len())
                    .filter(|&p| paper_rows[p].model == row.model)
                    .collect();
                let ours_pct = row.param_pct.map(|s| s.mean);
                let pick = match ours_pct {
                    Some(x) if cands.len() > 1 => cands.iter().copied().min_by(|&a, &b| {
                        let da = (paper_rows[a].param_pct.unwrap_or(100.0) - x).abs();
                        let db = (paper_rows[b].param_pct.unwrap_or(100.0) - x).abs();
                        da.total_cmp(&db)
                    }),
                    _ => cands.first().copied(),
                };
                assigned[i] = pick;
            }
            for (p, pr) in paper_rows.iter().enumerate() {
                let mine: Vec<usize> = (0..assigned.len())
                    .filter(|&i| assigned[i] == Some(p))
                    .collect();
                if mine.is_empty() {
                    rows.push(MetricsRow {
                        model: pr.model.clone(),
                        variant: String::new(),
                        counts: RunCounts::default(),
                        ours: [None; COLUMNS],
                        seeds: vec![Vec::new(); COLUMNS],
                        best: [false; COLUMNS],
                        paper: Some(pr.values),
                        paper_table: Some(t),
                        paper_line: true,
                        param_pct: None,
                        paper_param_pct: pr.param_pct,
                        reference: matches!(pr.model.as_str(), "Teacher" | "Base Model"),
                    });
                    order.push(rows.len() - 1);
                    continue;
                }
                for (k, &i) in mine.iter().enumerate() {
                    rows[i].paper = Some(pr.values);
                    rows[i].paper_table = Some(t);
                    rows[i].paper_param_pct = pr.param_pct;
                    rows[i].paper_line = k == 0;
                    taken[i] = true;
                    order.push(i);
                }
            }
            order.extend((0..taken.len()).filter(|&i| !taken[i]));
        } else {
            order.extend(0..rows.len());
        }
        // Rows outside the paper table: the paper's values of that model from any table.
        let mut seen: Vec<String> = Vec::new();
        for &i in &order {
            let r = &mut rows[i];
            if r.paper.is_none() {
                if let Some(p) = paper::metrics_anywhere(d, &r.model) {
                    r.paper = Some(p.values);
                    r.paper_table = Some(p.table);
                    r.paper_line = !seen.contains(&r.model);
                }
            }
            if r.paper.is_some() {
                seen.push(r.model.clone());
            }
        }
        let mut rows: Vec<MetricsRow> = order.into_iter().map(|i| rows[i].clone()).collect();
        mark_best(&mut rows);
        let unfinished = unfinished(ours.iter().flat_map(|g| g.runs.iter().copied()));
        blocks.push(MetricsBlock {
            dataset: d,
            rows,
            unfinished,
        });
    }
    MetricsTable {
        table: metrics_table,
        param_pct: matches!(metrics_table, Some(7 | 8)),
        blocks,
    }
}

// ---------------------------------------------------------------------------------------------
// Table 1: networks

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkRow {
    pub model: String,
    pub variant: String,
    pub counts: RunCounts,
    /// `[1,32,64][64,32,128]`, as the paper prints channels.
    pub channels: String,
    /// From the stored profile, or from the architecture for runs not finished.
    pub parameters: u64,
    /// [`StgcnConfig::flops_per_sample`] of the architecture.
    pub flops: u64,
    /// Our FLOPs relative to the teacher architecture on the same graph (%).
    pub flops_pct_teacher: f64,
    /// Mean wall time of the full 9-step prediction of one test batch (s), over seeds, as
    /// recorded at the end of training (beside other work: not a measurement).
    pub test_time: Option<Stat>,
    /// Batch sizes and devices of those measurements, e.g. `batch 1140, cpu`.
    pub test_time_setup: String,
    /// The network re-timed (`stkd retime`; runs of one shape share it), if it was.
    pub latency: Option<crate::latency::Latency>,
    /// Which of the two figures the table shows.
    pub test_time_kind: crate::report::timing::TimeKind,
    pub paper: Option<paper::Network>,
    pub paper_flops_pct_teacher: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworksBlock {
    pub dataset: DatasetName,
    pub rows: Vec<NetworkRow>,
    /// The networks whose latency order contradicts their FLOPs order
    /// ([`crate::report::timing::flops_order_line`]); `None` with fewer than two timed.
    pub flops_order: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworksTable {
    pub blocks: Vec<NetworksBlock>,
}

fn channels_text(c: &crate::model::Channels) -> String {
    c.iter()
        .map(|b| format!("[{},{},{}]", b[0], b[1], b[2]))
        .collect()
}

/// Table 1 over the runs trained plainly (W/O KD) — one row per network.
pub fn networks_table(data: &ReportData) -> NetworksTable {
    let plain = data
        .runs
        .iter()
        .filter(|r| r.config.loss.kind == LossKind::Mse && !is_pruned(r));
    let all = groups(plain, network_name);
    let paper_all = paper::networks();
    let blocks = datasets(data)
        .into_iter()
        .map(|d| {
            let paper_teacher = paper_all
                .iter()
                .find(|n| n.dataset == d && n.model == "Teacher");
            let rows = all
                .iter()
                .filter(|g| g.dataset == d)
                .map(|g| {
                    let first = g.runs[0];
                    let cfg = &first.config.model;
                    let teacher_flops =
                        StgcnConfig::new(Preset::Teacher.channels(), cfg.nodes, cfg.n_his)
                            .flops_per_sample();
                    let profiles: Vec<_> = g
                        .done()
                        .filter_map(|r| r.done().and_then(|x| x.profile.as_ref()))
                        .collect();
                    let times: Vec<f64> = profiles.iter().filter_map(|p| p.test_time_s).collect();
                    let mut setup: Vec<String> = profiles
                        .iter()
                        .filter(|p| p.test_time_s.is_some())
                        .map(|p| match p.test_time_batch {
                            Some(b) => format!("batch {b}, {}", p.device),
                            None => p.device.clone(),
                        })
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    setup.sort();
                    let flops = cfg.flops_per_sample();
                    let latency = g.done().find_map(|r| r.latency().cloned());
                    let paper = paper_all
                        .iter()
                        .find(|n| n.dataset == d && n.model == g.model)
                        .cloned();
                    let paper_flops_pct_teacher = match (&paper, paper_teacher) {
                        (Some(p), Some(t)) if t.flops > 0 => {
                            Some(100.0 * p.flops as f64 / t.flops as f64)
                        }
                        _ => None,
                    };
                    NetworkRow {
                        model: g.model.clone(),
                        variant: g.variant.clone(),
                        counts: g.counts(),
                        channels: channels_text(&cfg.channels),
                        parameters: profiles
                            .first()
                            .map(|p| p.parameters)
                            .unwrap_or(cfg.param_count() as u64),
                        flops,
                        flops_pct_teacher: 100.0 * flops as f64 / teacher_flops as f64,
                        test_time: stat(&times),
                        test_time_setup: setup.join("; "),
                        test_time_kind: crate::report::timing::TimeKind::of(latency.as_ref()),
                        latency,
                        paper,
                        paper_flops_pct_teacher,
                    }
                })
                .collect::<Vec<NetworkRow>>();
            let timed: Vec<crate::report::timing::Timed> = rows
                .iter()
                .filter_map(|r| {
                    let (seconds, iqr, device) = match (&r.latency, r.test_time) {
                        (Some(l), _) => (l.median_s, Some((l.q1_s, l.q3_s)), l.device.clone()),
                        (None, Some(t)) => (t.mean, None, r.test_time_setup.clone()),
                        (None, None) => return None,
                    };
                    Some(crate::report::timing::Timed {
                        name: r.model.clone(),
                        flops: r.flops,
                        seconds,
                        iqr,
                        kind: r.test_time_kind,
                        device,
                    })
                })
                .collect();
            NetworksBlock {
                dataset: d,
                flops_order: crate::report::timing::flops_order_line(&timed),
                rows,
            }
        })
        .collect();
    NetworksTable { blocks }
}

// ---------------------------------------------------------------------------------------------
// Table 3: attention ratios

#[derive(Debug, Clone, PartialEq)]
pub struct AttentionCell {
    pub counts: RunCounts,
    /// Share (%) of training elements where ORD used the teacher, over seeds.
    pub ours: Option<Stat>,
    pub paper: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttentionRow {
    pub model: String,
    pub variant: String,
    /// One per data set of the table.
    pub cells: Vec<AttentionCell>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttentionTable {
    pub datasets: Vec<DatasetName>,
    pub rows: Vec<AttentionRow>,
}

/// Table 3 over the runs whose loss contains ORD: the paper's rows first, in its order.
pub fn attention_table(data: &ReportData) -> AttentionTable {
    let ord_runs = data.runs.iter().filter(|r| r.config.loss.kind.uses_ord());
    let all = groups(ord_runs, |r| model_name(r, Some(3)));
    let ds = datasets(data);
    let paper_rows = paper::attention();
    // Row keys (model, variant): the paper's, then ours in plan order.
    let mut keys: Vec<(String, String)> = paper_rows
        .iter()
        .map(|p| (p.model.clone(), String::new()))
        .collect();
    for g in &all {
        let k = (g.model.clone(), g.variant.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    // A paper row with only variant rows of ours takes the variants' place.
    keys.retain(|(m, v)| {
        !v.is_empty()
            || all.iter().any(|g| &g.model == m && g.variant.is_empty())
            || !all.iter().any(|g| &g.model == m)
    });
    let rows = keys
        .into_iter()
        .map(|(model, variant)| {
            let paper = paper_rows.iter().find(|p| p.model == model);
            let cells = ds
                .iter()
                .map(|&d| {
                    let g = all
                        .iter()
                        .find(|g| g.dataset == d && g.model == model && g.variant == variant);
                    let pct: Vec<f64> = g
                        .into_iter()
                        .flat_map(|g| g.done())
                        .filter_map(|r| r.done()?.attention.clone())
                        .filter(|a| a.elements > 0)
                        .map(|a| 100.0 * a.picks as f64 / a.elements as f64)
                        .collect();
                    AttentionCell {
                        counts: g.map(|g| g.counts()).unwrap_or_default(),
                        ours: stat(&pct),
                        paper: paper.map(|p| p.pct(d)),
                    }
                })
                .collect();
            AttentionRow {
                model,
                variant,
                cells,
            }
        })
        .collect();
    AttentionTable { datasets: ds, rows }
}

// ---------------------------------------------------------------------------------------------
// All runs

/// One line of the run ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLine {
    pub name: String,
    pub model: String,
    pub loss: LossKind,
    /// The loss's own weights, e.g. `α1=0.17 α2=0.047 α3=0.313`.
    pub hyper: String,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub state: RunState,
    pub best_epoch: Option<u32>,
    pub train_seconds: Option<f64>,
    pub finished: Option<f64>,
    pub hash: String,
    pub error: Option<String>,
}

pub fn runs_table(data: &ReportData, table: Option<u8>) -> Vec<RunLine> {
    data.runs
        .iter()
        .map(|r| {
            let result = r.done();
            RunLine {
                name: r.display_name(),
                model: model_name(r, table),
                loss: r.config.loss.kind,
                hyper: hyperparameters(r),
                epochs: r.config.train.epochs,
                batch_size: r.config.train.batch_size,
                lr: r.config.train.lr,
                seed: r.seed(),
                state: r.state,
                best_epoch: result.and_then(|x| x.best_epoch),
                train_seconds: result.map(|x| x.train_seconds),
                finished: r.finished,
                hash: r.hash.clone(),
                error: r.error.clone(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The whole report

/// Facts printed at the top of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub counts: RunCounts,
    pub datasets: Vec<DatasetName>,
    /// Distinct epoch counts of the runs.
    pub epochs: Vec<usize>,
    /// Distinct caps on minibatches per epoch (`None` = whole split).
    pub steps_per_epoch: Vec<Option<usize>>,
    pub seeds: Vec<u64>,
    /// Devices the finished runs were trained on.
    pub devices: Vec<String>,
    /// Earliest and latest finish time (unix seconds) of the finished or failed runs.
    pub finished: Option<(f64, f64)>,
    /// `stkd` version of the report's code.
    pub version: String,
    /// The commits of the code that computed the done runs, each with its number of runs: most
    /// runs first, then by commit (`unknown` for a run whose outcome names none).
    pub code_commits: Vec<(String, usize)>,
}

fn distinct<T: Ord + Clone>(v: impl IntoIterator<Item = T>) -> Vec<T> {
    v.into_iter().collect::<BTreeSet<T>>().into_iter().collect()
}

pub fn meta(data: &ReportData, version: &str) -> Meta {
    let runs = &data.runs;
    let times: Vec<f64> = runs.iter().filter_map(|r| r.finished).collect();
    let finished = (!times.is_empty()).then(|| {
        (
            times.iter().copied().fold(f64::INFINITY, f64::min),
            times.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    });
    Meta {
        counts: RunCounts::of(runs),
        datasets: datasets(data),
        epochs: distinct(runs.iter().map(|r| r.config.train.epochs)),
        steps_per_epoch: distinct(runs.iter().map(|r| r.config.train.max_steps_per_epoch)),
        seeds: distinct(runs.iter().map(|r| r.seed())),
        devices: distinct(runs.iter().filter_map(|r| {
            let done = r.done()?;
            Some(
                done.profile
                    .as_ref()
                    .map(|p| p.device.clone())
                    .or_else(|| r.device.clone())
                    .unwrap_or_else(|| "unknown".into()),
            )
        })),
        finished,
        version: version.to_string(),
        code_commits: code_commits(runs),
    }
}

/// [`Meta::code_commits`] of `runs`.
fn code_commits(runs: &[RunEntry]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.done().is_some()) {
        let commit = r.code_commit.clone().unwrap_or_else(|| "unknown".into());
        *counts.entry(commit).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// A figure (or the reason it is missing) linked from the Markdown.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// e.g. `Training and validation curves (paper Figure 3)`.
    pub title: String,
    /// Per data set: image path relative to the Markdown file, with its caption; or a note.
    pub items: Vec<FigureItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FigureItem {
    Image {
        alt: String,
        path: String,
        caption: String,
    },
    Note(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_std_and_single_values() {
        let s = stat(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.n, s.mean, s.std), (3, 2.0, Some(1.0)));
        let s = stat(&[4.5]).unwrap();
        assert_eq!((s.n, s.mean, s.std), (1, 4.5, None));
        assert!(stat(&[]).is_none());
        assert!(stat(&[1.0, f64::NAN]).unwrap().mean.is_nan());
        let s = stat(&[0.75, 1.25]).unwrap();
        assert_eq!(s.text(3), "1.000 ± 0.354");
        assert_eq!(stat(&[4.5]).unwrap().text(2), "4.50");
    }

    /// Entries of a small experiment, every run done with a plain result.
    fn entries(yaml: &str) -> ReportData {
        let mut d = ReportData::planned_for_tests(yaml);
        for e in d.runs.iter_mut() {
            e.state = RunState::Done;
            e.result = Some(crate::store::RunResult::default());
        }
        d
    }

    #[test]
    fn code_commits_count_done_runs_most_first() {
        let mut d = entries(
            "name: t\ndatasets: [pemsd7]\ndefaults: {seeds: [1, 2, 3, 4, 5]}\nruns:\n  \
             - {label: s, model: student}\n",
        );
        let commits = [Some("bbb"), Some("aaa"), Some("bbb"), None, Some("ccc")];
        for (e, c) in d.runs.iter_mut().zip(commits) {
            e.code_commit = c.map(String::from);
        }
        d.runs[4].state = RunState::Failed; // not counted: only done runs were computed
        let m = meta(&d, "1.0");
        let want = [("bbb", 2), ("aaa", 1), ("unknown", 1)];
        let want: Vec<(String, usize)> = want.iter().map(|(c, n)| (c.to_string(), *n)).collect();
        assert_eq!(m.code_commits, want);
    }

    #[test]
    fn rows_are_named_by_preset_and_loss_not_label() {
        let d = entries(
            "name: table8\ndatasets: [pemsd7]\nruns:\n  - {label: big, model: teacher}\n  \
             - {label: b, model: base}\n  - {label: x, model: student, teacher: big, loss: stcd}\n  \
             - {label: y, model: student}\n",
        );
        let names: Vec<String> = d.runs.iter().map(|r| model_name(r, None)).collect();
        assert_eq!(
            names,
            ["Teacher", "Base Model", "Student STCD", "Student W/O KD"]
        );
        assert_eq!(
            model_name(&d.runs[2], Some(7)),
            "Student W/O pruning algorithm"
        );
        assert!(is_reference(&d.runs[0]) && is_reference(&d.runs[1]));
        assert!(!is_reference(&d.runs[2]));
    }

    #[test]
    fn pruned_runs_match_the_paper_row_of_their_pruned_share() {
        let mut d = entries(
            "name: table8\ndatasets: [pemsd7]\nruns:\n  - {label: base, model: base}\n  \
             - {label: pruned-25, model: base, lr: 2.0e-3}\n  \
             - {label: pruned-75, model: base, lr: 3.0e-3}\n",
        );
        for (i, kept) in [(1, 75u64), (2, 25)] {
            let r = d.runs[i].result.as_mut().unwrap();
            r.pruning = Some(crate::store::Pruning {
                target_pct: 100.0 - kept as f64,
                masked_share: 0.0,
                compact_parameters: kept * 100,
                original_parameters: 10_000,
                speedup: None,
            });
        }
        assert_eq!(model_name(&d.runs[1], Some(8)), "Pruned W/O KD");
        let t = metrics_table(&d, Some(8));
        assert!(t.param_pct);
        let rows = &t.blocks[0].rows;
        // Table 8's rows are pruning levels [I-10]: the run keeping 75 % of the parameters
        // (25 % pruned) sits beside the paper's "25" row.
        let got: Vec<(&str, &str, Option<f64>, Option<f64>, usize)> = rows
            .iter()
            .map(|r| {
                (
                    r.model.as_str(),
                    r.variant.as_str(),
                    r.param_pct.map(|s| s.mean),
                    r.paper_param_pct,
                    r.counts.total(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("Base Model", "", Some(0.0), Some(100.0), 1),
                ("Pruned W/O KD", "pruned-25", Some(25.0), Some(25.0), 1),
                ("Pruned W STCD", "", None, Some(25.0), 0),
                ("Pruned W/O KD", "", None, Some(50.0), 0),
                ("Pruned W STCD", "", None, Some(50.0), 0),
                ("Pruned W/O KD", "pruned-75", Some(75.0), Some(75.0), 1),
                ("Pruned W STCD", "", None, Some(75.0), 0),
            ]
        );
    }

    #[test]
    fn counts_describe_every_state() {
        let mut c = RunCounts::default();
        assert_eq!(c.describe(), "not in experiment");
        c.add(RunState::Done);
        c.add(RunState::Done);
        c.add(RunState::Failed);
        c.add(RunState::NotRegistered);
        assert_eq!(c.describe(), "2 done, 1 failed, 1 not started");
        assert_eq!((c.done(), c.total()), (2, 4));
    }
}
