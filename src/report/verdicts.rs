//! The paper's claims for a table, one line each, and whether our runs bear them out.
//!
//! A claim says that one model (`better`) has a lower test error than another (`worse`) on some
//! metrics at some horizons. For each (metric, horizon) cell we take the difference of the means
//! over seeds, `better − worse` (negative: the claim's direction), and its standard error
//! `sqrt(s_b²/n_b + s_w²/n_w)` from the sample standard deviations over seeds (the combined
//! spread of the two means). Where one side has a single seed it borrows the other side's
//! standard deviation (same architecture, other seeds); where neither has two seeds there is no
//! spread and the verdict says so. A cell **holds** when the difference is below −2 standard
//! errors, **does not hold** above +2, and is **within noise** otherwise; a claim holds when all
//! its cells hold and does not hold when any cell does not. Both sides must be trained equally
//! long (epochs and minibatches per epoch, pruning schedule included), otherwise the claim is
//! reported as not comparable.

use crate::data::DatasetName;
use crate::report::collect::{ReportData, RunEntry};
use crate::report::paper::{self, HORIZONS};
use crate::report::tables::{datasets, metric_of, model_name, prune_info, stat, Stat};

/// Metric indices of [`paper::METRICS`].
const MAE: usize = 1;
const RMSE: usize = 2;

/// One of the paper's claims about a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The claim in words, as the report prints it.
    pub text: String,
    pub better: Side,
    pub worse: Side,
    /// Metric indices (MAPE 0, MAE 1, RMSE 2).
    pub metrics: Vec<usize>,
    /// Horizon indices (15, 30, 45 min → 0, 1, 2).
    pub horizons: Vec<usize>,
}

/// The runs a claim compares: a model name of the table (see [`model_name`]), and for pruning
/// runs the pruning target.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    pub model: String,
    pub target_pct: Option<f64>,
}

fn side(model: &str) -> Side {
    Side {
        model: model.to_string(),
        target_pct: None,
    }
}

fn claim(better: Side, worse: Side, metrics: &[usize], horizons: &[usize], text: String) -> Claim {
    Claim {
        text,
        better,
        worse,
        metrics: metrics.to_vec(),
        horizons: horizons.to_vec(),
    }
}

const EVERY: [usize; 3] = [0, 1, 2];
const SHORT: [usize; 2] = [0, 1];

/// "A has lower MAE than B at every horizon".
fn lower_mae_everywhere(a: &str, b: &str) -> Claim {
    claim(
        side(a),
        side(b),
        &[MAE],
        &EVERY,
        format!("{a} has lower MAE than {b} at every horizon"),
    )
}

/// "A has lower MAE and RMSE than B at 15 and 30 min" (the paper's wording for Tables 2, 4).
fn lower_mae_rmse_short(a: &str, b: &str) -> Claim {
    claim(
        side(a),
        side(b),
        &[MAE, RMSE],
        &SHORT,
        format!("{a} has lower MAE and RMSE than {b} at 15 and 30 min"),
    )
}

/// The paper's claims for its Table `table` (its Section 4 text), in the table's model names.
pub fn claims(table: u8) -> Vec<Claim> {
    match table {
        2 => vec![
            lower_mae_everywhere("Student ORD", "Student W/O KD"),
            lower_mae_rmse_short("Student ORD", "Student RD-L2"),
            lower_mae_rmse_short("Student ORD", "Student RD-KL"),
        ],
        4 => vec![
            lower_mae_everywhere("Student STCD", "Student W/O KD"),
            lower_mae_rmse_short("Student STCD", "Student RD-L2"),
            lower_mae_rmse_short("Student STCD", "Student RD-KL"),
            lower_mae_rmse_short("Student STCD", "Student SKD"),
        ],
        5 => vec![
            lower_mae_everywhere("Student STCD", "Student W/O KD"),
            lower_mae_everywhere("Student STCD", "Student ORD"),
            lower_mae_everywhere("Student STCD", "Student TCD"),
            lower_mae_everywhere("Student STCD", "Student SCD"),
        ],
        7 => vec![claim(
            side("Student W pruning algorithm"),
            side("Student W/O pruning algorithm"),
            &[MAE, RMSE],
            &EVERY,
            "the student found by KDIS pruning of the teacher has lower MAE and RMSE than the \
             preset student distilled with STCD at every horizon"
                .into(),
        )],
        8 => [25.0, 50.0, 75.0]
            .iter()
            .map(|&t| {
                let at = |m: &str| Side {
                    model: m.to_string(),
                    target_pct: Some(t),
                };
                claim(
                    at("Pruned W STCD"),
                    at("Pruned W/O KD"),
                    &[MAE],
                    &EVERY,
                    format!("KDIS beats Taylor pruning at {t:.0} %: lower MAE at every horizon"),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// One (metric, horizon) comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub metric: usize,
    pub horizon: usize,
    /// Mean of `better` − mean of `worse`.
    pub diff: f64,
    /// Standard error of the difference; `None` without two seeds on either side.
    pub se: Option<f64>,
    pub outcome: Outcome,
}

/// What our runs say of a claim or a cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Holds,
    DoesNotHold,
    WithinNoise,
    /// A side has no finished run.
    NoData,
    /// The sides were not trained equally long (the reason).
    NotComparable(String),
}

/// A claim and our verdict on one data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub dataset: DatasetName,
    pub claim: Claim,
    /// Finished seeds of `better` and `worse`.
    pub seeds: (usize, usize),
    pub cells: Vec<Cell>,
    pub outcome: Outcome,
}

impl Verdict {
    /// The verdict in words: `holds`, `does not hold`, `within noise (3 seeds)`, … with `(1
    /// seed, no spread)` where there was none to measure.
    pub fn text(&self) -> String {
        let spread = self.cells.iter().all(|c| c.se.is_some());
        let seeds = match self.seeds {
            (a, b) if a == b => format!("{a} seed{}", if a == 1 { "" } else { "s" }),
            (a, b) => format!("{a} vs {b} seeds"),
        };
        let qual = if spread {
            format!(" ({seeds})")
        } else {
            format!(" ({seeds}, no spread)")
        };
        match &self.outcome {
            Outcome::Holds => format!("holds{qual}"),
            Outcome::DoesNotHold => format!("does not hold{qual}"),
            Outcome::WithinNoise => format!("within noise{qual}"),
            Outcome::NoData => "no finished runs to compare".into(),
            Outcome::NotComparable(why) => format!("not comparable: {why}"),
        }
    }
}

fn matches(run: &RunEntry, s: &Side, table: u8) -> bool {
    model_name(run, Some(table)) == s.model
        && match s.target_pct {
            Some(t) => prune_info(run)
                .and_then(|p| p.target_pct)
                .is_some_and(|x| (x - t).abs() < 1e-9),
            None => true,
        }
}

/// How long a run trains: epochs, minibatches per epoch and, for pruning, its schedule.
fn length(run: &RunEntry) -> String {
    let t = &run.config.train;
    let mut s = format!("{} epochs", t.epochs);
    if let Some(m) = t.max_steps_per_epoch {
        s.push_str(&format!(" of {m} minibatches"));
    }
    if let Some(p) = &run.config.prune {
        // Its schedule decides how long pruning trains; the method, the share removed and
        // the losses do not (KDIS and Taylor runs of one schedule are compared).
        let json = |v: serde_json::Result<String>| v.unwrap_or_default();
        s.push_str(&format!(
            " + pruning ({} every {}, then {} fine-tuning epochs)",
            json(serde_json::to_string(&p.schedule)),
            json(serde_json::to_string(&p.interval)),
            p.finetune_epochs
        ));
    }
    s
}

/// `diff`'s verdict against its standard error.
fn judge(diff: f64, se: Option<f64>) -> Outcome {
    let margin = 2.0 * se.unwrap_or(0.0);
    if !diff.is_finite() {
        Outcome::DoesNotHold
    } else if diff < -margin {
        Outcome::Holds
    } else if diff > margin {
        Outcome::DoesNotHold
    } else {
        Outcome::WithinNoise
    }
}

/// Standard error of the difference of two means (see the module docs for one-seed sides).
pub(crate) fn standard_error(a: &Stat, b: &Stat) -> Option<f64> {
    let (sa, sb) = match (a.std, b.std) {
        (Some(x), Some(y)) => (x, y),
        (Some(x), None) => (x, x),
        (None, Some(y)) => (y, y),
        (None, None) => return None,
    };
    Some((sa * sa / a.n as f64 + sb * sb / b.n as f64).sqrt())
}

/// Our verdict on every claim of `table` for every data set of `data`.
pub fn verdicts(data: &ReportData, table: u8) -> Vec<Verdict> {
    let mut out = Vec::new();
    for d in datasets(data) {
        for c in claims(table) {
            let pick = |s: &Side| -> Vec<&RunEntry> {
                data.runs
                    .iter()
                    .filter(|r| r.config.dataset == d && matches(r, s, table))
                    .collect()
            };
            let (better, worse) = (pick(&c.better), pick(&c.worse));
            if better.is_empty() || worse.is_empty() {
                continue; // the experiment does not have both models
            }
            let done = |rs: &[&RunEntry]| rs.iter().filter(|r| r.done().is_some()).count();
            let seeds = (done(&better), done(&worse));
            let lengths: std::collections::BTreeSet<String> =
                better.iter().chain(&worse).map(|r| length(r)).collect();
            let mut cells = Vec::new();
            let outcome = if seeds.0 == 0 || seeds.1 == 0 {
                Outcome::NoData
            } else if lengths.len() > 1 {
                Outcome::NotComparable(format!(
                    "trained for {}",
                    lengths.into_iter().collect::<Vec<_>>().join(" vs ")
                ))
            } else {
                for &m in &c.metrics {
                    for &h in &c.horizons {
                        let values = |rs: &[&RunEntry]| -> Vec<f64> {
                            rs.iter().filter_map(|r| metric_of(r, m, h)).collect()
                        };
                        let (Some(a), Some(b)) = (stat(&values(&better)), stat(&values(&worse)))
                        else {
                            continue;
                        };
                        let diff = a.mean - b.mean;
                        let se = standard_error(&a, &b);
                        cells.push(Cell {
                            metric: m,
                            horizon: h,
                            diff,
                            se,
                            outcome: judge(diff, se),
                        });
                    }
                }
                if cells.iter().any(|x| x.outcome == Outcome::DoesNotHold) {
                    Outcome::DoesNotHold
                } else if !cells.is_empty() && cells.iter().all(|x| x.outcome == Outcome::Holds) {
                    Outcome::Holds
                } else {
                    Outcome::WithinNoise
                }
            };
            out.push(Verdict {
                dataset: d,
                claim: c,
                seeds,
                cells,
                outcome,
            });
        }
    }
    out
}

/// `MAE 15 min` for a cell.
pub fn cell_name(c: &Cell) -> String {
    format!("{} {} min", paper::METRICS[c.metric], HORIZONS[c.horizon])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: usize, mean: f64, std: Option<f64>) -> Stat {
        Stat { n, mean, std }
    }

    #[test]
    fn judging_against_twice_the_standard_error() {
        assert_eq!(judge(-0.3, Some(0.1)), Outcome::Holds);
        assert_eq!(judge(-0.1, Some(0.1)), Outcome::WithinNoise);
        assert_eq!(judge(0.19, Some(0.1)), Outcome::WithinNoise);
        assert_eq!(judge(0.21, Some(0.1)), Outcome::DoesNotHold);
        // No spread: the sign decides.
        assert_eq!(judge(-0.001, None), Outcome::Holds);
        assert_eq!(judge(0.001, None), Outcome::DoesNotHold);
        assert_eq!(judge(f64::NAN, Some(0.1)), Outcome::DoesNotHold);
    }

    #[test]
    fn standard_error_of_a_difference_borrows_a_missing_spread() {
        let se = standard_error(&s(3, 1.0, Some(0.3)), &s(3, 2.0, Some(0.4))).unwrap();
        assert!((se - (0.09f64 / 3.0 + 0.16 / 3.0).sqrt()).abs() < 1e-12);
        let se = standard_error(&s(1, 1.0, None), &s(3, 2.0, Some(0.3))).unwrap();
        assert!((se - (0.09f64 + 0.09 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(standard_error(&s(1, 1.0, None), &s(1, 2.0, None)), None);
    }

    /// Table 4's W/O KD and STCD students on PeMSD7, done, with test MAE `mae(label, seed)` at
    /// every horizon; `stcd_epochs` sets STCD's training length.
    fn table4(stcd_epochs: usize, mae: impl Fn(&str, u64) -> f64) -> ReportData {
        done_runs(
            &format!(
                "name: table4\ndatasets: [pemsd7]\ndefaults: {{epochs: 5, seeds: [1, 2, 3]}}\nruns:\n  \
                 - {{label: teacher, model: teacher, seeds: [1]}}\n  \
                 - {{label: wo, model: student}}\n  \
                 - {{label: stcd, model: student, teacher: teacher, loss: stcd, epochs: {stcd_epochs}}}\n"
            ),
            mae,
        )
    }

    /// Every run of the experiment `yaml` done, with test MAE `mae(label, seed)` at every
    /// horizon.
    fn done_runs(yaml: &str, mae: impl Fn(&str, u64) -> f64) -> ReportData {
        use crate::report::collect::RunState;
        use crate::store::{MetricRow, RunResult};
        let exp = crate::spec::parse_experiment(yaml, std::path::Path::new("t.yaml")).unwrap();
        let p = crate::plan::plan(&exp, |d| Ok::<_, ()>(format!("sum-{d}"))).unwrap();
        let runs = p
            .jobs
            .iter()
            .map(|j| {
                let mut e =
                    RunEntry::planned(&j.hash, &j.label, &j.variant, j.config.clone(), vec![]);
                e.state = RunState::Done;
                let v = mae(&j.label, j.config.train.seed);
                e.result = Some(RunResult {
                    metrics: (1..=9)
                        .map(|step| MetricRow {
                            split: "test".into(),
                            step,
                            mape: 0.0,
                            mae: v,
                            rmse: 0.0,
                        })
                        .collect(),
                    ..Default::default()
                });
                e
            })
            .collect();
        ReportData {
            name: "table4".into(),
            description: String::new(),
            file: "t.yaml".into(),
            runs,
        }
    }

    #[test]
    fn verdicts_on_runs_hold_fail_stay_within_noise_or_refuse_unequal_lengths() {
        let seed = |s: u64| s as f64 * 0.01;
        let first = |data: &ReportData| verdicts(data, 4).remove(0);
        // STCD 0.5 mph better with a spread of 0.01: holds, three seeds a side.
        let v = first(&table4(
            5,
            |l, s| if l == "stcd" { 2.5 } else { 3.0 } + seed(s),
        ));
        assert_eq!(
            v.claim.text,
            "Student STCD has lower MAE than Student W/O KD at every horizon"
        );
        assert_eq!(
            (v.outcome.clone(), v.seeds, v.cells.len()),
            (Outcome::Holds, (3, 3), 3)
        );
        assert!((v.cells[0].diff + 0.5).abs() < 1e-12);
        assert_eq!(v.text(), "holds (3 seeds)");
        // Worse by 0.5: does not hold; by 0.005 (inside the spread): within noise.
        let v = first(&table4(
            5,
            |l, s| if l == "stcd" { 3.5 } else { 3.0 } + seed(s),
        ));
        assert_eq!(v.outcome, Outcome::DoesNotHold);
        let v = first(&table4(
            5,
            |l, s| if l == "stcd" { 3.005 } else { 3.0 } + seed(s),
        ));
        assert_eq!(v.outcome, Outcome::WithinNoise);
        // A baseline trained for fewer epochs than what it is compared with is not compared.
        let v = first(&table4(
            50,
            |l, s| if l == "stcd" { 2.5 } else { 3.0 } + seed(s),
        ));
        assert!(
            matches!(&v.outcome, Outcome::NotComparable(w) if w.contains("5 epochs") && w.contains("50 epochs")),
            "{:?}",
            v.outcome
        );
        assert!(v.cells.is_empty());
    }

    #[test]
    fn kdis_and_taylor_runs_of_one_schedule_are_compared_and_of_two_are_not() {
        let table8 = |kdis_finetune: usize| {
            done_runs(
                &format!(
                    "name: table8\ndatasets: [pemsd7]\ndefaults: {{epochs: 5, seeds: [1, 2]}}\nruns:\n  \
                     - {{label: teacher, model: teacher, seeds: [1]}}\n  \
                     - {{label: base, model: base}}\n  \
                     - {{label: taylor, base: base, prune: {{method: taylor, target: 25, steps: 2, interval_epochs: 1, finetune_epochs: 3}}}}\n  \
                     - {{label: kdis, base: base, teacher: teacher, loss: stcd, prune: {{method: kdis, target: 25, steps: 2, interval_epochs: 1, finetune_epochs: {kdis_finetune}}}}}\n"
                ),
                |l, s| if l == "kdis" { 2.5 } else { 3.0 } + s as f64 * 0.01,
            )
        };
        let at_25 = |data: &ReportData| {
            verdicts(data, 8)
                .into_iter()
                .find(|v| v.claim.text.contains("25 %"))
                .expect("the claim at 25 %")
        };
        assert_eq!(at_25(&table8(3)).outcome, Outcome::Holds);
        let v = at_25(&table8(4));
        assert!(
            matches!(&v.outcome, Outcome::NotComparable(w) if w.contains("then 3 fine-tuning epochs") && w.contains("then 4 fine-tuning")),
            "{:?}",
            v.outcome
        );
    }

    #[test]
    fn every_paper_table_with_metrics_has_claims_in_its_model_names() {
        for t in [2, 4, 5, 7, 8] {
            let c = claims(t);
            assert!(!c.is_empty(), "table {t}");
            for c in &c {
                assert_ne!(c.better.model, c.worse.model);
                assert!(!c.metrics.is_empty() && !c.horizons.is_empty());
            }
        }
        assert!(claims(1).is_empty() && claims(3).is_empty());
    }
}
