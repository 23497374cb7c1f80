//! The search section of a report: for each study of the experiment (a searched run on one
//! dataset), its trials as the store holds them (an unfinished trial as far as its recorded
//! checkpoint goes), the best ones beside the paper's Table 6
//! weights, the machine time the pruner saved, a CSV of every trial and a chart (the objective
//! over the trials with the best so far, and against each searched value).

use std::fmt::Write as _;

use crate::data::DatasetName;
use crate::experiment::{RunConfig, Sampler, SearchSpec};
use crate::plan::Plan;
use crate::report::format::csv_field;
use crate::report::paper::{dataset_title, kd_hyperparameter};
use crate::report::plots::{self, TradeOff, TradeOffPanel};
use crate::schedule::trials::{objective, values_of};
use crate::search::{Pruner, Space, Value};
use crate::store::{RunStatus, Store, StoreError};

/// One trial as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialLine {
    pub number: usize,
    pub hash: String,
    pub status: RunStatus,
    /// The searched values as the run's name shows them, and as numbers (a choice: its index).
    pub values: Vec<String>,
    pub numbers: Vec<f64>,
    /// The objective as the search defines it (not negated), for finished trials.
    pub objective: Option<f64>,
    /// For every trial that trained: its best validation MAE over the epochs it ran.
    pub best_val_mae: Option<f64>,
    pub epochs_run: usize,
    pub epochs_planned: usize,
    pub seconds: f64,
}

/// One study as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyReport {
    pub label: String,
    pub dataset: DatasetName,
    pub search: SearchSpec,
    pub fields: Vec<String>,
    pub log_fields: Vec<bool>,
    /// The paper's Table 6 value of each field for the run's loss, where it gives one.
    pub paper: Vec<Option<f64>>,
    pub trials: Vec<TrialLine>,
}

impl StudyReport {
    /// Finished trials, best first.
    /// "20 of 20 trials proposed: 8 finished, 12 pruned, 0 failed, 0 not finished".
    pub fn counts(&self) -> String {
        let count = |k: RunStatus| self.trials.iter().filter(|t| t.status == k).count();
        format!(
            "{} of {} trials proposed: {} finished, {} pruned, {} failed, {} not finished",
            self.trials.len(),
            self.search.trials,
            count(RunStatus::Done),
            count(RunStatus::Pruned),
            count(RunStatus::Failed) + count(RunStatus::Skipped),
            count(RunStatus::Pending) + count(RunStatus::Running),
        )
    }

    pub fn ranked(&self) -> Vec<&TrialLine> {
        let mut done: Vec<&TrialLine> = self
            .trials
            .iter()
            .filter(|t| t.objective.is_some())
            .collect();
        let key = |t: &TrialLine| {
            let v = t.objective.unwrap_or(f64::NAN);
            if self.search.maximize {
                -v
            } else {
                v
            }
        };
        done.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.number.cmp(&b.number)));
        done
    }

    /// `(seconds trained, seconds the pruned trials would have needed for their remaining
    /// epochs at their own mean epoch time)`.
    pub fn machine_time(&self) -> (f64, f64) {
        let trained = self.trials.iter().map(|t| t.seconds).sum();
        let saved = self
            .trials
            .iter()
            .filter(|t| t.status == RunStatus::Pruned && t.epochs_run > 0)
            .map(|t| {
                let per_epoch = t.seconds / t.epochs_run as f64;
                per_epoch * t.epochs_planned.saturating_sub(t.epochs_run) as f64
            })
            .sum();
        (trained, saved)
    }
}

/// The studies of `plan` with their trials in `store` (none without a store).
pub fn collect_search(plan: &Plan, store: Option<&Store>) -> Result<Vec<StudyReport>, StoreError> {
    let mut out = Vec::with_capacity(plan.studies.len());
    for st in &plan.studies {
        let study = &st.study;
        let loss = study
            .config(&vec![Value::Number(0.0); study.space.len()])
            .loss
            .kind;
        let mut report = StudyReport {
            label: study.label.clone(),
            dataset: study.dataset,
            search: study.search.clone(),
            fields: study.fields.clone(),
            log_fields: study
                .space
                .iter()
                .map(|s| matches!(s, Space::LogUniform { .. }))
                .collect(),
            paper: study
                .fields
                .iter()
                .map(|f| kd_hyperparameter(study.dataset, &loss.to_string(), f))
                .collect(),
            trials: Vec::new(),
        };
        let Some(store) = store else {
            out.push(report);
            continue;
        };
        for t in store.trials(&st.key)? {
            let values = values_of(&t).unwrap_or_default();
            // A finished or pruned trial's curve is the store's; an unfinished one's is its
            // checkpoint's (record first), so that every clone of the records reports it alike.
            let epochs = match t.status {
                RunStatus::Pending | RunStatus::Running => {
                    crate::archive::checkpoint_curve(store.path(), &t.hash).unwrap_or_default()
                }
                _ => store.epochs(&t.hash)?,
            };
            let planned = store
                .run(&t.hash)?
                .and_then(|r| serde_json::from_str::<RunConfig>(&r.config_json).ok())
                .map_or(0, |c| c.train.epochs);
            let names = study.describe(&values);
            report.trials.push(TrialLine {
                number: t.number,
                hash: t.hash.clone(),
                status: t.status,
                values: names
                    .split(' ')
                    .map(|kv| kv.split_once('=').map_or(kv, |x| x.1).to_string())
                    .collect(),
                numbers: values.iter().map(|v| v.number()).collect(),
                objective: objective(store, &t, &study.search)?.map(|v| {
                    if study.search.maximize {
                        -v
                    } else {
                        v
                    }
                }),
                best_val_mae: epochs
                    .iter()
                    .map(|e| e.val_mae)
                    .filter(|v| !v.is_nan())
                    .reduce(f64::min),
                epochs_run: epochs.len(),
                epochs_planned: planned,
                seconds: epochs.iter().map(|e| e.seconds).sum(),
            });
        }
        out.push(report);
    }
    Ok(out)
}

fn pruner_text(p: &Pruner) -> String {
    match p {
        Pruner::None => "none (every trial runs to the end)".into(),
        Pruner::Median {
            warmup_epochs,
            startup_trials,
        } => format!(
            "median (a trial stops when its best validation MAE so far is worse than the median \
             of the other trials' at that epoch; after {warmup_epochs} warm-up epochs, once \
             {startup_trials} other trials got that far)"
        ),
        Pruner::Asha {
            min_epochs,
            reduction,
        } => format!(
            "ASHA (rungs at {min_epochs}·{reduction}^k epochs; a trial goes on from a rung only \
             in the best 1/{reduction} of the trials that reached it)"
        ),
    }
}

/// `## Search` sections, one per study.
pub fn search_md(s: &mut String, studies: &[StudyReport]) {
    for st in studies {
        let _ = writeln!(
            s,
            "## Search: {} on {}\n",
            st.label,
            dataset_title(st.dataset)
        );
        let sampler = match st.search.sampler {
            Sampler::Grid => "grid (every combination of the choices, in order)",
            Sampler::Tpe => {
                "TPE (Optuna's defaults: 10 random start-up trials, γ = 10 %, 24 candidates)"
            }
            Sampler::Random => "random",
        };
        let _ = writeln!(
            s,
            "Sampler {sampler}, seed {}; {}. Objective: {} ({}). Pruner: {}.\n",
            st.search.seed,
            st.counts(),
            st.search.objective,
            if st.search.maximize {
                "higher is better"
            } else {
                "lower is better"
            },
            pruner_text(&st.search.pruner),
        );
        let ranked = st.ranked();
        if ranked.is_empty() {
            let _ = writeln!(s, "No trial has finished yet.\n");
        } else {
            let _ = writeln!(s, "Best finished trials:\n");
            let _ = writeln!(
                s,
                "| Trial | {} | Objective | Epochs | Run |",
                st.fields.join(" | ")
            );
            let _ = writeln!(s, "|---:|{}---:|---:|---|", "---:|".repeat(st.fields.len()));
            for t in ranked.iter().take(5) {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.3} | {} | `{}` |",
                    t.number,
                    t.values.join(" | "),
                    t.objective.unwrap_or(f64::NAN),
                    t.epochs_run,
                    t.hash
                );
            }
            if st.paper.iter().any(Option::is_some) {
                let paper: Vec<String> = st
                    .paper
                    .iter()
                    .map(|v| v.map_or("—".into(), |v| format!("{v}")))
                    .collect();
                let _ = writeln!(s, "| paper (Table 6) | {} | — | — | — |", paper.join(" | "));
            }
            s.push('\n');
        }
        let (trained, saved) = st.machine_time();
        // `+ 0.0` turns an empty sum's −0 into 0 (printed "0 s", not "-0 s").
        let (trained, saved) = (trained + 0.0, saved + 0.0);
        let pruned = st
            .trials
            .iter()
            .filter(|t| t.status == RunStatus::Pruned)
            .count();
        if pruned > 0 {
            let _ = writeln!(
                s,
                "Machine time: the trials trained {trained:.0} s in all. Pruning stopped {pruned} \
                 trials early; their remaining epochs would have taken about {saved:.0} s more \
                 (each at its own mean epoch time), so the search ran in {:.0} % of the time it \
                 would have taken without pruning.\n",
                100.0 * trained / (trained + saved).max(f64::MIN_POSITIVE)
            );
        } else {
            let _ = writeln!(
                s,
                "Machine time: the trials trained {trained:.0} s in all; no trial was pruned.\n"
            );
        }
    }
}

/// `<stem>-trials.csv`: every trial of every study, one row per searched value.
pub fn search_csv(studies: &[StudyReport]) -> String {
    let mut s = String::from(
        "label,dataset,trial,hash,status,field,value,objective,best_val_mae,epochs_run,epochs_planned,seconds\n",
    );
    for st in studies {
        for t in &st.trials {
            for (f, v) in st.fields.iter().zip(&t.values) {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{},{},{},{},{},{:.1}",
                    csv_field(&st.label),
                    st.dataset,
                    t.number,
                    csv_field(&t.hash),
                    t.status,
                    csv_field(f),
                    csv_field(v),
                    t.objective.map_or(String::new(), |o| format!("{o:.4}")),
                    t.best_val_mae.map_or(String::new(), |o| format!("{o:.4}")),
                    t.epochs_run,
                    t.epochs_planned,
                    t.seconds
                );
            }
        }
    }
    s
}

/// The chart of a study: the objective of the finished trials (pruned ones at their best
/// validation MAE, hollow) over the trial number with the best so far as a staircase, then one
/// panel per searched value.
pub fn search_svg(st: &StudyReport) -> Result<String, String> {
    let point = |t: &TrialLine, x: f64, front: bool| -> Option<TradeOff> {
        let (y, name, colour) = match (t.objective, t.status) {
            (Some(o), _) => (o, "finished", 0),
            (None, RunStatus::Pruned) => (t.best_val_mae?, "pruned (best val MAE)", 3),
            _ => return None,
        };
        Some(TradeOff {
            name: name.into(),
            colour,
            x,
            y,
            front,
        })
    };
    let mut best = f64::INFINITY;
    let over_trials: Vec<TradeOff> = st
        .trials
        .iter()
        .filter_map(|t| {
            let key = t.objective.map(|o| if st.search.maximize { -o } else { o });
            let improves = key.is_some_and(|k| k < best);
            if improves {
                best = key.expect("some");
            }
            point(t, t.number as f64, improves)
        })
        .collect();
    let per_field: Vec<Vec<TradeOff>> = (0..st.fields.len())
        .map(|i| {
            st.trials
                .iter()
                .filter_map(|t| point(t, *t.numbers.get(i)?, false))
                .collect()
        })
        .collect();
    let mut panels = vec![TradeOffPanel {
        title: "over the trials (best so far)",
        x_desc: "trial",
        points: &over_trials,
        log_x: false,
    }];
    for (i, f) in st.fields.iter().enumerate() {
        panels.push(TradeOffPanel {
            title: f,
            x_desc: f,
            points: &per_field[i],
            log_x: st.log_fields[i],
        });
    }
    plots::pareto_svg(
        &format!("search: {} on {}", st.label, st.dataset),
        &st.search.objective.to_string(),
        &panels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Metric;
    use crate::report::format::read_csv;
    use crate::search::Pruner;

    fn trial(
        number: usize,
        status: RunStatus,
        objective: Option<f64>,
        run: usize,
        seconds: f64,
    ) -> TrialLine {
        TrialLine {
            number,
            hash: format!("h{number}"),
            status,
            values: vec![format!("0.{number}")],
            numbers: vec![number as f64 / 10.0],
            objective,
            best_val_mae: objective.or(Some(9.0)),
            epochs_run: run,
            epochs_planned: 10,
            seconds,
        }
    }

    fn study() -> StudyReport {
        StudyReport {
            label: "student-stcd".into(),
            dataset: DatasetName::Pemsd7,
            search: SearchSpec {
                sampler: Sampler::Tpe,
                trials: 4,
                seed: 1,
                objective: Metric::ValMae,
                maximize: false,
                pruner: Pruner::Median {
                    warmup_epochs: 3,
                    startup_trials: 5,
                },
            },
            fields: vec!["alpha1".into()],
            log_fields: vec![false],
            paper: vec![Some(0.17)],
            trials: vec![
                trial(1, RunStatus::Done, Some(3.2), 10, 100.0),
                trial(2, RunStatus::Pruned, None, 4, 40.0),
                trial(3, RunStatus::Done, Some(3.1), 10, 100.0),
                trial(4, RunStatus::Running, None, 2, 20.0),
            ],
        }
    }

    #[test]
    fn best_trials_come_first_and_pruning_savings_are_counted() {
        let st = study();
        let ranked: Vec<usize> = st.ranked().iter().map(|t| t.number).collect();
        assert_eq!(ranked, vec![3, 1]);
        // Trial 2 ran 4 of 10 epochs at 10 s each: 60 s saved.
        assert_eq!(st.machine_time(), (260.0, 60.0));
        let mut md = String::new();
        search_md(&mut md, std::slice::from_ref(&st));
        assert!(
            md.contains("4 of 4 trials proposed: 2 finished, 1 pruned, 0 failed, 1 not finished"),
            "{md}"
        );
        assert!(md.contains("| 3 | 0.3 | 3.100 | 10 | `h3` |"), "{md}");
        assert!(md.contains("| paper (Table 6) | 0.17 |"), "{md}");
        assert!(md.contains("81 % of the time"), "{md}");
        let csv = search_csv(std::slice::from_ref(&st));
        assert_eq!(csv.lines().count(), 5);
        // Every record has the header's fields, a searched value with a comma included.
        let mut listed = st.clone();
        listed.trials[0].values = vec!["[1, 2]".into()];
        let records = read_csv(&search_csv(&[st.clone(), listed])).unwrap();
        assert_eq!(records.len(), 9);
        assert!(records.iter().all(|r| r.len() == records[0].len()));
        assert_eq!(records[5][6], "[1, 2]");
        assert!(
            csv.contains("student-stcd,pemsd7,2,h2,pruned,alpha1,0.2,,9.0000,4,10,40.0"),
            "{csv}"
        );
        let svg = search_svg(&st).unwrap();
        assert_eq!(svg, search_svg(&st).unwrap());
        assert!(svg.contains("pruned (best val MAE)") && svg.contains("alpha1"));
    }

    #[test]
    fn the_paper_gives_table_6_weights() {
        assert_eq!(
            kd_hyperparameter(DatasetName::Pemsd7, "stcd", "alpha2"),
            Some(0.047)
        );
        assert_eq!(
            kd_hyperparameter(DatasetName::Pemsd8, "rd-l2", "beta"),
            Some(0.905)
        );
        assert_eq!(kd_hyperparameter(DatasetName::Pemsd7, "stcd", "beta"), None);
        assert_eq!(
            kd_hyperparameter(DatasetName::Pemsd7, "mse", "alpha1"),
            None
        );
    }
}
