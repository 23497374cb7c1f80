//! Machine time of an experiment: what its finished runs took (their recorded training time) and
//! what the runs still to do will take, estimated from finished runs of the same kind. Shown by
//! `stkd sweep FILE --dry-run`; the per-kind breakdown is what BENCHMARKS.md quotes.
//!
//! A run's kind is its data set, network, loss, batch size, minibatches per epoch and pruning
//! schedule. A run still to do is estimated by the mean recorded time of the experiment's
//! latest finished runs of its kind and length (epochs; the [`LATEST`] last to finish, since the
//! code gets faster and an old run overstates what a new one takes); failing that, of its kind
//! at another length, scaled by epochs (not for pruning runs, whose length is their schedule);
//! failing both, the same from every finished run of the store and the records (other
//! experiments); failing that, it has no estimate and is counted as such. Failed and skipped
//! runs are not left to do (a sweep keeps them unless `--retry-failed`): they are listed apart.
//! Times are as recorded: a run that shared the machine with another took longer than it would
//! alone.

use std::collections::BTreeMap;

use std::path::Path;

use crate::experiment::{Experiment, RunConfig};
use crate::plan::Plan;
use crate::report::against::ResultSet;
use crate::report::collect::{ReportData, RunState};
use crate::report::ReportError;
use crate::status::{plan_states, PlanState};
use crate::store::Store;

/// Recorded and estimated machine time of an experiment's runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimate {
    /// Finished runs and the sum of their recorded training time (s).
    pub done: (usize, f64),
    /// Runs still to do with an estimate, and the estimated sum (s).
    pub left: (usize, f64),
    /// Runs still to do without one (no finished run of their kind), by display name.
    pub unknown: Vec<String>,
    /// Failed or skipped runs, which a sweep keeps as they are unless `--retry-failed`, by
    /// display name.
    pub kept: Vec<String>,
    /// Per kind (e.g. `pemsd7 student stcd batch 50`): finished runs and their seconds, runs
    /// left and their estimated seconds.
    pub by_kind: BTreeMap<String, KindTime>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KindTime {
    pub done: usize,
    pub done_s: f64,
    pub left: usize,
    pub left_s: f64,
}

/// The kind of a run, without its length.
fn kind(c: &RunConfig) -> String {
    let t = &c.train;
    let model = c
        .preset
        .map(|p| format!("{p:?}").to_lowercase())
        .unwrap_or_else(|| format!("{:?}", c.model.channels));
    let mut k = format!(
        "{} {model} {} batch {}",
        c.dataset, c.loss.kind, t.batch_size
    );
    if let Some(m) = t.max_steps_per_epoch {
        k.push_str(&format!(" ({m} minibatches an epoch)"));
    }
    if let Some(p) = &c.prune {
        k.push_str(&format!(
            " pruned {} {}% ({} fine-tuning epochs)",
            format!("{:?}", p.method).to_lowercase(),
            p.target_pct,
            p.finetune_epochs
        ));
    }
    k
}

/// The machine time of `plan`'s runs: finished ones from the store at `store` and the records
/// beside it (what a fresh clone has), the rest estimated.
pub fn of_plan(exp: &Experiment, plan: &Plan, store: &Path) -> Result<Estimate, ReportError> {
    let opened = Store::open_read_only(store)?;
    let mut known = match &opened {
        Some(st) => ResultSet::from_store(st)?,
        None => ResultSet::default(),
    };
    let records = crate::archive::beside(store, crate::archive::RECORDS);
    if records.is_dir() {
        known.extend_missing(ResultSet::from_records(&records)?);
    }
    drop(opened);
    let (mut data, _) = known.join(plan, &exp.name, "", "");
    // Done or left as a sweep would see it ([`plan_states`]: a run found above only by its
    // configuration, under another hash, is computed again; failed ones are kept).
    let hashes: Vec<String> = plan.jobs.iter().map(|j| j.hash.clone()).collect();
    for (r, s) in data.runs.iter_mut().zip(plan_states(store, &hashes)?) {
        if !s.is_done() {
            r.result = None;
            r.state = match s {
                PlanState::Stored(status) => RunState::from(status),
                PlanState::Recorded | PlanState::New => RunState::NotRegistered,
            };
        }
    }
    let recorded: Vec<Recorded> = known
        .runs
        .iter()
        .map(|r| Recorded {
            config: r.config.clone(),
            seconds: r.result.train_seconds,
            finished: r.finished,
        })
        .collect();
    Ok(estimate(&data, &recorded))
}

/// A finished run known besides the experiment's own.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub config: RunConfig,
    /// Its recorded training time (s).
    pub seconds: f64,
    /// When it finished (seconds since the epoch), where known.
    pub finished: Option<f64>,
}

/// How many of the latest finished runs of a kind estimate a run still to do.
pub const LATEST: usize = 3;

/// (finished, recorded seconds) per (kind, epochs).
type Seen = BTreeMap<(String, usize), Vec<(Option<f64>, f64)>>;

/// The mean recorded time of the [`LATEST`] runs to finish last (runs with no finish time count
/// as the oldest; ties by the time itself, so the order of `v` does not matter).
fn latest_mean(v: &[(Option<f64>, f64)]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| {
        let t = |x: &(Option<f64>, f64)| x.0.unwrap_or(f64::NEG_INFINITY);
        t(b).total_cmp(&t(a)).then(a.1.total_cmp(&b.1))
    });
    let last = &v[..v.len().min(LATEST)];
    last.iter().map(|x| x.1).sum::<f64>() / last.len() as f64
}

/// Estimate the machine time of `data`'s runs (see the module docs); `recorded`: every finished
/// run known besides, for kinds the experiment has not finished yet.
pub fn estimate(data: &ReportData, recorded: &[Recorded]) -> Estimate {
    let mut seen = Seen::new();
    let mut elsewhere = Seen::new();
    for r in recorded {
        elsewhere
            .entry((kind(&r.config), r.config.train.epochs))
            .or_default()
            .push((r.finished, r.seconds));
    }
    let mut e = Estimate::default();
    for r in &data.runs {
        if let Some(res) = r.done() {
            seen.entry((kind(&r.config), r.config.train.epochs))
                .or_default()
                .push((r.finished, res.train_seconds));
            e.done.0 += 1;
            e.done.1 += res.train_seconds;
            let k = e.by_kind.entry(kind(&r.config)).or_default();
            k.done += 1;
            k.done_s += res.train_seconds;
        }
    }
    for r in data.runs.iter().filter(|r| r.done().is_none()) {
        if r.state.is_kept() {
            e.kept.push(format!("{} ({})", r.display_name(), r.state));
            continue;
        }
        let k = kind(&r.config);
        let epochs = r.config.train.epochs;
        let exact = |seen: &Seen| seen.get(&(k.clone(), epochs)).map(|v| latest_mean(v));
        let scaled = |seen: &Seen| {
            if r.config.prune.is_some() {
                return None;
            }
            seen.iter()
                .find(|((kk, _), _)| *kk == k)
                .map(|((_, ep), v)| latest_mean(v) * epochs as f64 / (*ep).max(1) as f64)
        };
        let guess = exact(&seen)
            .or_else(|| scaled(&seen))
            .or_else(|| exact(&elsewhere))
            .or_else(|| scaled(&elsewhere));
        match guess {
            Some(s) => {
                e.left.0 += 1;
                e.left.1 += s;
                let kt = e.by_kind.entry(k).or_default();
                kt.left += 1;
                kt.left_s += s;
            }
            None => e.unknown.push(r.display_name()),
        }
    }
    e
}

/// `12.3 h` / `45 min` / `30 s`.
pub fn duration(seconds: f64) -> String {
    if seconds >= 5400.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else if seconds >= 90.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{seconds:.0} s")
    }
}

impl Estimate {
    /// The lines `sweep --dry-run` prints.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "machine time: {} finished runs took {} (recorded training time, some of it beside \
             another run); {} runs left, estimated {}{}",
            self.done.0,
            duration(self.done.1),
            self.left.0 + self.unknown.len(),
            duration(self.left.1),
            if self.unknown.is_empty() {
                String::new()
            } else {
                format!(
                    " for {} of them ({} with no finished run of their kind: {})",
                    self.left.0,
                    self.unknown.len(),
                    self.unknown.join(", ")
                )
            }
        )];
        if !self.kept.is_empty() {
            out.push(format!(
                "  not counted: {} kept as they are (`--retry-failed` runs them again): {}",
                self.kept.len(),
                self.kept.join(", ")
            ));
        }
        for (k, t) in &self.by_kind {
            out.push(format!(
                "  {k}: {} done in {}{}",
                t.done,
                duration(t.done_s),
                if t.left > 0 {
                    format!(", {} left ≈ {}", t.left, duration(t.left_s))
                } else {
                    String::new()
                }
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::collect::RunState;
    use crate::store::RunResult;

    fn data(yaml: &str) -> ReportData {
        ReportData::planned_for_tests(yaml)
    }

    fn finish(d: &mut ReportData, label: &str, seed: u64, seconds: f64) {
        let r = d
            .runs
            .iter_mut()
            .find(|r| r.label == label && r.seed() == seed)
            .unwrap();
        r.state = RunState::Done;
        r.result = Some(RunResult {
            train_seconds: seconds,
            ..Default::default()
        });
    }

    #[test]
    fn runs_left_are_estimated_from_finished_runs_of_their_kind() {
        let mut d = data(
            "name: t\ndatasets: [pemsd7]\ndefaults: {epochs: 10, seeds: [1, 2, 3]}\nruns:\n  \
             - {label: teacher, model: teacher, seeds: [1]}\n  \
             - {label: wo, model: student}\n  \
             - {label: long, model: student, epochs: 20, seeds: [1]}\n  \
             - {label: stcd, model: student, teacher: teacher, loss: stcd}\n",
        );
        finish(&mut d, "teacher", 1, 1000.0);
        finish(&mut d, "wo", 1, 100.0);
        finish(&mut d, "wo", 2, 120.0);
        let e = estimate(&d, &[]);
        assert_eq!(e.done, (3, 1220.0));
        // wo seed 3: 110 s (mean of its kind); long: 2 × 110 s scaled by epochs; STCD unknown.
        assert_eq!(e.left.0, 2);
        assert!((e.left.1 - 330.0).abs() < 1e-9, "{}", e.left.1);
        assert_eq!(e.unknown.len(), 3);
        assert!(e.unknown[0].starts_with("stcd pemsd7"));
        let k = &e.by_kind["pemsd7 student mse batch 50"];
        assert_eq!((k.done, k.left), (2, 2));
        assert!(e.lines()[0].contains("3 finished runs took"));
        // STCD's kind recorded by another experiment (one run of 10 epochs, one of 5): the
        // same length is taken before a scaled one, and only where the experiment has none.
        let stcd = d
            .runs
            .iter()
            .find(|r| r.label == "stcd")
            .unwrap()
            .config
            .clone();
        let short = RunConfig {
            train: crate::train::TrainConfig {
                epochs: 5,
                ..stcd.train.clone()
            },
            ..stcd.clone()
        };
        let wo = d
            .runs
            .iter()
            .find(|r| r.label == "wo")
            .unwrap()
            .config
            .clone();
        let rec = |config: &RunConfig, seconds: f64, finished: Option<f64>| Recorded {
            config: config.clone(),
            seconds,
            finished,
        };
        let e = estimate(
            &d,
            &[
                rec(&short, 100.0, None),
                rec(&stcd, 700.0, None),
                rec(&wo, 9999.0, None),
            ],
        );
        assert_eq!(e.left.0, 5);
        assert!(
            (e.left.1 - (330.0 + 3.0 * 700.0)).abs() < 1e-9,
            "{}",
            e.left.1
        );
        assert!(e.unknown.is_empty());
        // Of five STCD runs recorded, the three that finished last decide (the code got
        // faster): (300 + 200 + 100) / 3 per run left.
        let runs: Vec<Recorded> = [(9000.0, 1.0), (8000.0, 2.0), (300.0, 3.0), (200.0, 5.0)]
            .into_iter()
            .map(|(s, t)| rec(&stcd, s, Some(t)))
            .chain([rec(&stcd, 100.0, Some(4.0)), rec(&stcd, 50.0, None)])
            .collect();
        let e = estimate(&d, &runs);
        assert!(
            (e.left.1 - (330.0 + 3.0 * 200.0)).abs() < 1e-9,
            "{}",
            e.left.1
        );
        // A failed run is kept by a sweep: not left to do, listed apart.
        let r = d
            .runs
            .iter_mut()
            .find(|r| r.label == "wo" && r.seed() == 3)
            .unwrap();
        r.state = RunState::Failed;
        let e = estimate(&d, &[]);
        assert_eq!(e.left.0, 1);
        assert_eq!(e.kept.len(), 1);
        assert!(e.kept[0].starts_with("wo pemsd7") && e.kept[0].ends_with("(failed)"));
        assert!(
            e.lines()[1].contains("1 kept as they are"),
            "{:?}",
            e.lines()
        );
    }
}
