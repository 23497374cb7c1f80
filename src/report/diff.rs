//! A report against an earlier result set (`stkd report FILE --against REF`), for review in a
//! pull request: the paper-layout metrics table with each cell's value now, before and the
//! change, judged against the seeds' noise; runs added, removed, reconfigured or recomputed; and
//! timing changes apart from accuracy. Pure data from two [`ReportData`]; rendering is
//! deterministic (same inputs, same bytes).
//!
//! A change is *beyond noise* when its 95 % interval excludes zero, decided by the one comparison
//! the claims use too ([`super::stats::compare`]: paired by seed over the seeds both sides hold,
//! Welch's t otherwise); with a single seed on a side the change is not judged and is
//! listed as such. Every metric is an error: lower is better. A regression (what
//! `--fail-on-regression` fails on) is a cell worse beyond the correction for all the diff's
//! judged cells ([`super::stats::family_confidence`]): among a hundred cells, a few worse at 95 %
//! by chance alone are expected.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::collect::{ReportData, RunEntry};
use super::format::{fixed, signed};
use super::paper::{self, dataset_title, HORIZONS, METRICS};
use super::runs::{model_name, paper_table};
use super::stats::{self, Comparison, Sign};
use super::tables::{metrics_table, MetricsRow, Stat};

/// A metrics row by (data set, model, variant).
type RowKey = (String, String, String);

/// A mean over seeds, as the diff reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Value {
    pub n: usize,
    pub mean: f64,
    pub std: Option<f64>,
}

impl From<Stat> for Value {
    fn from(s: Stat) -> Self {
        Value {
            n: s.n,
            mean: s.mean,
            std: s.std,
        }
    }
}

impl From<Value> for Stat {
    fn from(v: Value) -> Self {
        Stat {
            n: v.n,
            mean: v.mean,
            std: v.std,
        }
    }
}

/// What happened to one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Lower, the 95 % interval below zero.
    Better,
    /// Higher, the 95 % interval above zero.
    Worse,
    WithinNoise,
    /// Changed, a single seed on a side: not judged.
    NoNoiseEstimate,
    Unchanged,
    /// A value now, none before.
    New,
    /// A value before, none now.
    Gone,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellDiff {
    pub metric: &'static str,
    pub horizon_min: u32,
    pub now: Option<Value>,
    pub before: Option<Value>,
    /// Mean now − mean before.
    pub change: Option<f64>,
    /// Half-width of the change's 95 % interval (`None`: a side with a single seed).
    pub se: Option<f64>,
    pub verdict: Change,
    /// Worse beyond the correction for every judged cell of the diff ([`Summary::judged`]).
    pub worse_beyond_correction: bool,
    /// The comparison behind `verdict`, where one was judged.
    #[serde(skip)]
    judged: Option<stats::Judged>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowDiff {
    pub model: String,
    pub variant: String,
    /// The non-empty cells, in the paper's column order.
    pub cells: Vec<CellDiff>,
}

impl RowDiff {
    fn changed(&self) -> bool {
        self.cells.iter().any(|c| c.verdict != Change::Unchanged)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockDiff {
    pub dataset: String,
    pub rows: Vec<RowDiff>,
}

/// Cell counts by verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub better: usize,
    pub worse: usize,
    /// Cells judged (better, worse or within noise): the k of the correction.
    pub judged: usize,
    /// Worse cells whose interval at [`stats::family_confidence`]`(judged)` lies above zero:
    /// what `--fail-on-regression` fails on (wrong at most 5 % of the time when nothing
    /// changed, however many cells the diff spans).
    pub worse_beyond_correction: usize,
    pub within_noise: usize,
    pub no_noise_estimate: usize,
    pub unchanged: usize,
    pub new: usize,
    pub gone: usize,
}

impl Summary {
    fn add(&mut self, c: Change) {
        *match c {
            Change::Better => &mut self.better,
            Change::Worse => &mut self.worse,
            Change::WithinNoise => &mut self.within_noise,
            Change::NoNoiseEstimate => &mut self.no_noise_estimate,
            Change::Unchanged => &mut self.unchanged,
            Change::New => &mut self.new,
            Change::Gone => &mut self.gone,
        } += 1;
    }

    /// `3 cells better beyond noise, 1 worse, …` (parts that are zero left out).
    pub fn text(&self) -> String {
        let mut parts = vec![format!(
            "{} cell{} better beyond noise, {} worse{}",
            self.better,
            if self.better == 1 { "" } else { "s" },
            self.worse,
            if self.worse > 0 && self.judged > 1 {
                format!(
                    " ({} beyond the correction for {} judged cells)",
                    self.worse_beyond_correction, self.judged
                )
            } else {
                String::new()
            }
        )];
        let more = [
            (self.within_noise, "within noise"),
            (
                self.no_noise_estimate,
                "changed with a single seed on a side (not judged)",
            ),
            (self.unchanged, "unchanged"),
            (self.new, "new"),
            (self.gone, "gone"),
        ];
        parts.extend(
            more.iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}")),
        );
        parts.join(", ")
    }
}

/// A run by its name in the experiment (`label dataset [variant]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRef {
    pub name: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    pub name: String,
    /// `train.lr: 0.001 → 0.002`, one per changed setting.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recomputed {
    pub name: String,
    pub hash_before: String,
    pub hash_now: String,
    pub commit_before: String,
    pub commit_now: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunChanges {
    /// Planned now, not before.
    pub added: Vec<RunRef>,
    /// Planned before, not now.
    pub removed: Vec<RunRef>,
    /// Planned on both sides under one name with another configuration.
    pub reconfigured: Vec<ConfigChange>,
    /// Same configuration, done on both sides under different hashes (another code version or
    /// data).
    pub recomputed: Vec<Recomputed>,
    /// Done now, not before (same plan).
    pub finished: Vec<RunRef>,
}

/// Mean training and test times of a row, on both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimingDiff {
    pub dataset: String,
    pub model: String,
    pub variant: String,
    pub train_s_now: Option<f64>,
    pub train_s_before: Option<f64>,
    pub test_ms_now: Option<f64>,
    pub test_ms_before: Option<f64>,
}

/// The whole diff.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportDiff {
    pub name: String,
    /// What "now" is (e.g. `results/stkd.db + results/records`).
    pub now: String,
    /// What "before" is (e.g. `git HEAD~1 (0123456789ab)`).
    pub before: String,
    pub summary: Summary,
    pub blocks: Vec<BlockDiff>,
    pub runs: RunChanges,
    pub timings: Vec<TimingDiff>,
}

impl ReportDiff {
    /// Cells worse beyond noise after the correction for the diff's judged cells (what
    /// `--fail-on-regression` fails on).
    pub fn regressions(&self) -> usize {
        self.summary.worse_beyond_correction
    }
}

/// Two sides of a diff: the joined runs and the code commit of each done run (by hash).
pub struct Side<'a> {
    pub label: &'a str,
    pub data: &'a ReportData,
    pub commits: &'a BTreeMap<String, String>,
}

type Judgement = (Option<f64>, Option<f64>, Change, Option<stats::Judged>);

fn cell(
    now: Option<Stat>,
    before: Option<Stat>,
    seeds_now: &[(u64, f64)],
    seeds_before: &[(u64, f64)],
) -> Option<Judgement> {
    Some(match (now, before) {
        (None, None) => return None,
        (Some(_), None) => (None, None, Change::New, None),
        (None, Some(_)) => (None, None, Change::Gone, None),
        (Some(a), Some(b)) => {
            let d = a.mean - b.mean;
            // Equal as printed (3 decimals) and in number: unchanged.
            let same = fixed(a.mean, 3) == fixed(b.mean, 3) && a.n == b.n;
            let (half, verdict, judged) = match stats::compare(seeds_now, seeds_before) {
                _ if same => (None, Change::Unchanged, None),
                Comparison::Judged(j) => (
                    Some(j.half_width),
                    match j.sign {
                        Sign::Lower => Change::Better,
                        Sign::Higher => Change::Worse,
                        Sign::WithinNoise => Change::WithinNoise,
                    },
                    Some(j),
                ),
                _ => (None, Change::NoNoiseEstimate, None),
            };
            (Some(d), half, verdict, judged)
        }
    })
}

fn row_key(dataset: &str, r: &MetricsRow) -> RowKey {
    (dataset.to_string(), r.model.clone(), r.variant.clone())
}

/// Rows with at least one value, by (dataset, model, variant), in table order.
fn valued_rows(data: &ReportData) -> Vec<(RowKey, MetricsRow)> {
    let t = metrics_table(data, paper_table(&data.name));
    t.blocks
        .iter()
        .flat_map(|b| {
            let d = b.dataset.to_string();
            b.rows
                .iter()
                .filter(|r| r.ours.iter().any(Option::is_some))
                .map(move |r| (row_key(&d, r), r.clone()))
        })
        .collect()
}

/// Leaves of two JSON values that differ, as `path: before → now`.
fn json_changes(
    path: &str,
    before: &serde_json::Value,
    now: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value as V;
    match (before, now) {
        (V::Object(a), V::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                json_changes(
                    &p,
                    a.get(k).unwrap_or(&V::Null),
                    b.get(k).unwrap_or(&V::Null),
                    out,
                );
            }
        }
        _ if before != now => out.push(format!("{path}: {before} → {now}")),
        _ => {}
    }
}

fn config_value(r: &RunEntry) -> serde_json::Value {
    let mut c = r.config.clone();
    c.teacher = None;
    c.base = None;
    serde_json::to_value(c).expect("RunConfig serialises")
}

fn run_changes(now: &Side, before: &Side) -> RunChanges {
    let by_name = |d: &ReportData| -> BTreeMap<String, RunEntry> {
        d.runs
            .iter()
            .map(|r| (r.display_name(), r.clone()))
            .collect()
    };
    let (a, b) = (by_name(now.data), by_name(before.data));
    let mut out = RunChanges::default();
    let reference = |r: &RunEntry| RunRef {
        name: r.display_name(),
        hash: r.hash.clone(),
    };
    for r in &now.data.runs {
        let name = r.display_name();
        let Some(old) = b.get(&name) else {
            out.added.push(reference(r));
            continue;
        };
        let (cn, cb) = (config_value(r), config_value(old));
        if cn != cb {
            let mut fields = Vec::new();
            json_changes("", &cb, &cn, &mut fields);
            out.reconfigured.push(ConfigChange { name, fields });
            continue;
        }
        match (r.done(), old.done()) {
            (Some(_), Some(_)) if r.hash != old.hash => out.recomputed.push(Recomputed {
                name,
                hash_before: old.hash.clone(),
                hash_now: r.hash.clone(),
                commit_before: before.commits.get(&old.hash).cloned().unwrap_or_default(),
                commit_now: now.commits.get(&r.hash).cloned().unwrap_or_default(),
            }),
            (Some(_), None) => out.finished.push(reference(r)),
            _ => {}
        }
    }
    out.removed = before
        .data
        .runs
        .iter()
        .filter(|r| !a.contains_key(&r.display_name()))
        .map(reference)
        .collect();
    out
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Mean training seconds and test milliseconds of the done runs of each row.
fn row_times(data: &ReportData) -> BTreeMap<RowKey, (Option<f64>, Option<f64>)> {
    let table = paper_table(&data.name).filter(|t| matches!(t, 2 | 4 | 5 | 7 | 8));
    type Times = (Vec<f64>, Vec<f64>);
    let mut acc: BTreeMap<RowKey, Times> = BTreeMap::new();
    for r in &data.runs {
        let Some(res) = r.done() else { continue };
        let key = (
            r.config.dataset.to_string(),
            model_name(r, table),
            r.variant_without_seed(),
        );
        let e = acc.entry(key).or_default();
        e.0.push(res.train_seconds);
        if let Some(t) = res.profile.as_ref().and_then(|p| p.test_time_s) {
            e.1.push(t * 1e3);
        }
    }
    acc.into_iter()
        .map(|(k, (tr, te))| (k, (mean(&tr), mean(&te))))
        .collect()
}

/// The diff of `now` against `before`.
pub fn diff(name: &str, now: &Side, before: &Side) -> ReportDiff {
    let (rows_now, rows_before) = (valued_rows(now.data), valued_rows(before.data));
    let mut keys: Vec<RowKey> = rows_now.iter().map(|(k, _)| k.clone()).collect();
    for (k, _) in &rows_before {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    let find = |rows: &[(RowKey, MetricsRow)], k: &RowKey| {
        rows.iter().find(|(x, _)| x == k).map(|(_, r)| r.clone())
    };
    let mut summary = Summary::default();
    let mut blocks: Vec<BlockDiff> = Vec::new();
    for k in &keys {
        let (a, b) = (find(&rows_now, k), find(&rows_before, k));
        let mut cells = Vec::new();
        for (m, metric) in METRICS.iter().enumerate() {
            for (h, horizon) in HORIZONS.iter().enumerate() {
                let c = paper::column(m, h);
                let (sa, sb) = (
                    a.as_ref().and_then(|r| r.ours[c]),
                    b.as_ref().and_then(|r| r.ours[c]),
                );
                let none = Vec::new();
                let seeds = |r: &Option<MetricsRow>| -> Vec<(u64, f64)> {
                    r.as_ref()
                        .and_then(|r| r.seeds.get(c).cloned())
                        .unwrap_or_else(|| none.clone())
                };
                let Some((change, se, verdict, judged)) = cell(sa, sb, &seeds(&a), &seeds(&b))
                else {
                    continue;
                };
                summary.add(verdict);
                summary.judged += usize::from(judged.is_some());
                cells.push(CellDiff {
                    metric,
                    horizon_min: *horizon,
                    now: sa.map(Value::from),
                    before: sb.map(Value::from),
                    change,
                    se,
                    verdict,
                    worse_beyond_correction: false,
                    judged,
                });
            }
        }
        let row = RowDiff {
            model: k.1.clone(),
            variant: k.2.clone(),
            cells,
        };
        match blocks.iter_mut().find(|b| b.dataset == k.0) {
            Some(b) => b.rows.push(row),
            None => blocks.push(BlockDiff {
                dataset: k.0.clone(),
                rows: vec![row],
            }),
        }
    }
    // Worse beyond the correction for all the judged cells together.
    let family = stats::family_confidence(summary.judged);
    for c in blocks
        .iter_mut()
        .flat_map(|b| b.rows.iter_mut())
        .flat_map(|r| r.cells.iter_mut())
    {
        c.worse_beyond_correction = c.verdict == Change::Worse
            && c.judged.is_some_and(|j| j.sign_at(family) == Sign::Higher);
        summary.worse_beyond_correction += usize::from(c.worse_beyond_correction);
    }
    let (tn, tb) = (row_times(now.data), row_times(before.data));
    let timings = keys
        .iter()
        .filter_map(|k| {
            let (a, b) = (
                tn.get(k).copied().unwrap_or_default(),
                tb.get(k).copied().unwrap_or_default(),
            );
            // Rows on one side only are listed with their cells already.
            let moved = |x: Option<f64>, y: Option<f64>| match (x, y) {
                (Some(x), Some(y)) => (x - y).abs() > 0.01 * y.abs(),
                _ => false,
            };
            (moved(a.0, b.0) || moved(a.1, b.1)).then(|| TimingDiff {
                dataset: k.0.clone(),
                model: k.1.clone(),
                variant: k.2.clone(),
                train_s_now: a.0,
                train_s_before: b.0,
                test_ms_now: a.1,
                test_ms_before: b.1,
            })
        })
        .collect();
    ReportDiff {
        name: name.to_string(),
        now: now.label.to_string(),
        before: before.label.to_string(),
        summary,
        blocks,
        runs: run_changes(now, before),
        timings,
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn mark(c: Change) -> &'static str {
    match c {
        Change::Better => " ✅",
        Change::Worse => " ❌",
        Change::NoNoiseEstimate => " †",
        _ => "",
    }
}

fn cell_md(c: &CellDiff) -> String {
    let v = |x: &Value| fixed(x.mean, 3);
    match (c.now, c.before, c.change) {
        (Some(a), _, _) if c.verdict == Change::Unchanged => format!("{} (=)", v(&a)),
        (Some(a), None, _) => format!("{} (new)", v(&a)),
        (None, Some(b), _) => format!("— ← {} (gone)", v(&b)),
        (Some(a), Some(b), Some(d)) => {
            format!(
                "{} ← {} ({}{})",
                v(&a),
                v(&b),
                signed(d, 3, true),
                if c.worse_beyond_correction {
                    " ❌‼"
                } else {
                    mark(c.verdict)
                }
            )
        }
        _ => String::new(),
    }
}

fn row_title(r: &RowDiff) -> String {
    if r.variant.is_empty() {
        r.model.clone()
    } else {
        format!("{} [{}]", r.model, r.variant)
    }
}

fn dataset_name(d: &str) -> String {
    d.parse()
        .map(|x| dataset_title(x).to_string())
        .unwrap_or_else(|_| d.to_string())
}

fn opt(x: Option<f64>, decimals: usize) -> String {
    x.map(|x| fixed(x, decimals)).unwrap_or_else(|| "—".into())
}

fn ratio(now: Option<f64>, before: Option<f64>) -> String {
    match (now, before) {
        (Some(a), Some(b)) if b > 0.0 => format!("×{}", fixed(a / b, 2)),
        _ => "—".into(),
    }
}

/// The diff as Markdown for a pull request: the summary first, then the changed rows.
pub fn render_diff_markdown(d: &ReportDiff) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}: {} against {}\n", d.name, d.now, d.before);
    let _ = writeln!(s, "**{}.**", d.summary.text());
    let r = &d.runs;
    let _ = writeln!(
        s,
        "Runs: {} added, {} removed, {} reconfigured, {} recomputed by other code, {} newly finished.\n",
        r.added.len(),
        r.removed.len(),
        r.reconfigured.len(),
        r.recomputed.len(),
        r.finished.len()
    );
    let _ = writeln!(
        s,
        "Cells read *now ← before (change)*; lower is better. ✅ / ❌: better / worse beyond noise \
         (the change's 95 % interval excludes zero: paired by seed over the seeds both sides \
         hold, Welch's t otherwise); ❌‼: worse beyond the correction for all the judged \
         cells (its interval at 1 − 0.05/k, k judged cells, excludes zero: a regression, what \
         `--fail-on-regression` fails on); †: a single seed on a side, not judged; (=): the \
         same to three decimals. Only rows and columns with a change are shown.\n"
    );
    for b in &d.blocks {
        let changed: Vec<&RowDiff> = b.rows.iter().filter(|r| r.changed()).collect();
        let same: Vec<String> = b
            .rows
            .iter()
            .filter(|r| !r.changed())
            .map(row_title)
            .collect();
        let _ = writeln!(s, "## {}\n", dataset_name(&b.dataset));
        if !changed.is_empty() {
            // Columns where some cell changed, in the paper's order.
            let mut cols: Vec<(&str, u32)> = Vec::new();
            for metric in METRICS {
                for horizon in HORIZONS {
                    let moved = |c: &CellDiff| {
                        c.metric == metric
                            && c.horizon_min == horizon
                            && c.verdict != Change::Unchanged
                    };
                    if changed.iter().any(|r| r.cells.iter().any(moved)) {
                        cols.push((metric, horizon));
                    }
                }
            }
            let _ = write!(s, "| Model |");
            for (m, h) in &cols {
                let _ = write!(s, " {m} {h} min |");
            }
            let _ = write!(s, "\n|---|");
            for _ in &cols {
                let _ = write!(s, "---|");
            }
            s.push('\n');
            for r in &changed {
                let _ = write!(s, "| {} |", row_title(r));
                for (m, h) in &cols {
                    let text = r
                        .cells
                        .iter()
                        .find(|c| c.metric == *m && c.horizon_min == *h)
                        .map(cell_md)
                        .unwrap_or_default();
                    let _ = write!(s, " {text} |");
                }
                s.push('\n');
            }
            s.push('\n');
        }
        if !same.is_empty() {
            let _ = writeln!(s, "Unchanged: {}.\n", same.join(", "));
        }
    }
    let list = |s: &mut String, title: &str, items: Vec<String>| {
        if !items.is_empty() {
            let _ = writeln!(s, "**{title}**\n");
            for i in items {
                let _ = writeln!(s, "- {i}");
            }
            s.push('\n');
        }
    };
    if !(r.added.is_empty()
        && r.removed.is_empty()
        && r.reconfigured.is_empty()
        && r.recomputed.is_empty()
        && r.finished.is_empty())
    {
        let _ = writeln!(s, "## Runs\n");
    }
    let named = |v: &[RunRef]| {
        v.iter()
            .map(|x| format!("{} `{}`", x.name, x.hash))
            .collect()
    };
    list(&mut s, "Added", named(&r.added));
    list(&mut s, "Removed", named(&r.removed));
    list(
        &mut s,
        "Reconfigured",
        r.reconfigured
            .iter()
            .map(|c| format!("{}: {}", c.name, c.fields.join("; ")))
            .collect(),
    );
    list(
        &mut s,
        "Recomputed by other code (same configuration, new hash)",
        r.recomputed
            .iter()
            .map(|c| {
                let commit = |x: &str| {
                    if x.is_empty() {
                        "?".to_string()
                    } else {
                        x.chars().take(12).collect()
                    }
                };
                format!(
                    "{}: `{}` → `{}` (code {} → {})",
                    c.name,
                    c.hash_before,
                    c.hash_now,
                    commit(&c.commit_before),
                    commit(&c.commit_now)
                )
            })
            .collect(),
    );
    list(&mut s, "Newly finished", named(&r.finished));
    if !d.timings.is_empty() {
        let _ = writeln!(s, "## Timings\n");
        let _ = writeln!(
            s,
            "Mean over the row's finished runs, where either changed by more than 1 %. Training \
             time is wall time on the machine that ran it; test time is one batch's prediction.\n"
        );
        let _ = writeln!(
            s,
            "| Data | Model | Training (s) now ← before | | Test (ms) now ← before | |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for t in &d.timings {
            let title = if t.variant.is_empty() {
                t.model.clone()
            } else {
                format!("{} [{}]", t.model, t.variant)
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} ← {} | {} | {} ← {} | {} |",
                dataset_name(&t.dataset),
                title,
                opt(t.train_s_now, 0),
                opt(t.train_s_before, 0),
                ratio(t.train_s_now, t.train_s_before),
                opt(t.test_ms_now, 2),
                opt(t.test_ms_before, 2),
                ratio(t.test_ms_now, t.test_ms_before),
            );
        }
        s.push('\n');
    }
    s
}

/// The diff as pretty JSON.
pub fn render_diff_json(d: &ReportDiff) -> String {
    let mut s = serde_json::to_string_pretty(d).expect("diff serialises");
    s.push('\n');
    s
}
