//! What a report says about one run, whatever section shows it: its name in the paper's
//! tables, its pruning settings, its hyperparameters, its test metrics; and which paper table
//! an experiment reproduces. Pure functions of [`ReportData`] and [`RunEntry`], shared by the
//! sections ([`super::tables`], [`super::verdicts`], [`super::pareto`], …) so they need not
//! import each other.

use std::collections::BTreeSet;

use crate::data::DatasetName;
use crate::distill::LossKind;
use crate::model::Preset;
use crate::report::collect::{ReportData, RunEntry};
use crate::report::paper::HORIZONS;
use crate::store::RunResult;

/// The paper table an experiment reproduces, from its name (`table1` … `table8`; Table 6 is
/// hyperparameters, not results). Other names get a generic report.
pub fn paper_table(experiment_name: &str) -> Option<u8> {
    let n: u8 = experiment_name.strip_prefix("table")?.parse().ok()?;
    matches!(n, 1..=5 | 7 | 8).then_some(n)
}

/// A pruning run's settings, as far as a report needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneInfo {
    /// `taylor` (plain-loss importance, "Pruned W/O KD") or `kdis` (Algorithm 1, with KD).
    pub method: Option<String>,
    /// Share of the base network's parameters to remove (%).
    pub target_pct: Option<f64>,
}

/// The pruning settings of a run: the `prune` object of its resolved configuration (read from
/// the configuration's JSON, so this module does not depend on the pruning module's types), or
/// the stored pruning figures of a done run.
pub fn prune_info(run: &RunEntry) -> Option<PruneInfo> {
    let json = serde_json::to_value(&run.config).ok();
    let cfg = json
        .as_ref()
        .and_then(|v| v.get("prune"))
        .filter(|p| !p.is_null());
    if let Some(p) = cfg {
        return Some(PruneInfo {
            method: p.get("method").and_then(|m| m.as_str()).map(str::to_string),
            target_pct: p.get("target_pct").and_then(|t| t.as_f64()),
        });
    }
    let stored = run.result.as_ref().and_then(|r| r.pruning.as_ref())?;
    Some(PruneInfo {
        method: None,
        target_pct: Some(stored.target_pct),
    })
}

/// Whether a run prunes its network.
pub fn is_pruned(run: &RunEntry) -> bool {
    prune_info(run).is_some()
}

/// The paper's name of the model a run trains, from its model preset and loss (Tables 2, 4, 5,
/// 7, 8 names: `Teacher`, `Student W/O KD`, `Student STCD`, `Base Model`, `Pruned W STCD`, …).
/// Runs with custom channels are named by their label.
pub fn model_name(run: &RunEntry, table: Option<u8>) -> String {
    let kind = run.config.loss.kind;
    let k = kind.title();
    if let Some(p) = prune_info(run) {
        let plain = match p.method.as_deref() {
            Some(m) => m == "taylor",
            None => kind == LossKind::Mse,
        };
        return match (table, plain) {
            (_, true) => "Pruned W/O KD".into(),
            (Some(7), false) => "Student W pruning algorithm".into(),
            (_, false) => format!("Pruned W {k}"),
        };
    }
    match (run.config.preset, kind) {
        (Some(Preset::Teacher), LossKind::Mse) => "Teacher".into(),
        (Some(Preset::Base), LossKind::Mse) => "Base Model".into(),
        (Some(Preset::Student), LossKind::Stcd) if table == Some(7) => {
            "Student W/O pruning algorithm".into()
        }
        (Some(Preset::Student), _) => format!("Student {k}"),
        (Some(Preset::Teacher), _) => format!("Teacher {k}"),
        (Some(Preset::Base), _) => format!("Base Model {k}"),
        (None, _) => run.label.clone(),
    }
}

/// Table 1's name of a run's network.
pub fn network_name(run: &RunEntry) -> String {
    match run.config.preset {
        Some(Preset::Teacher) => "Teacher".into(),
        Some(Preset::Base) => "Pruning Base Model".into(),
        Some(Preset::Student) => "Student".into(),
        None => run.label.clone(),
    }
}

/// Reference rows (the unpruned teacher and base model trained plainly) are what the students
/// are compared with; they are not ranked for the bold "best" mark.
pub fn is_reference(run: &RunEntry) -> bool {
    !is_pruned(run)
        && run.config.loss.kind == LossKind::Mse
        && matches!(run.config.preset, Some(Preset::Teacher | Preset::Base))
}

/// Data sets of the runs, in order.
pub fn datasets(data: &ReportData) -> Vec<DatasetName> {
    data.runs
        .iter()
        .map(|r| r.config.dataset)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Test-split value of metric `m` at horizon index `h` of a finished run.
pub fn metric_of(run: &RunEntry, m: usize, h: usize) -> Option<f64> {
    test_metric(run.done()?, m, h)
}

/// Test-split value of metric `m` (0 MAPE, 1 MAE, 2 RMSE) at horizon index `h` (15, 30, 45
/// min) of a result.
pub fn test_metric(result: &RunResult, m: usize, h: usize) -> Option<f64> {
    let step = HORIZONS[h] / 5;
    let row = result
        .metrics
        .iter()
        .find(|r| r.split == "test" && r.step == step)?;
    Some([row.mape, row.mae, row.rmse][m])
}

/// A weight with at most 4 decimals and no trailing zeros (`0.17`, `0.045`, `0.1235`).
pub fn short_number(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The hyperparameters a loss reads (those that decide the run), by their paper names.
pub fn hyperparameters(run: &RunEntry) -> String {
    let l = &run.config.loss;
    let f = short_number;
    let mut out: Vec<String> = Vec::new();
    match l.kind {
        LossKind::Mse => {}
        LossKind::RdL2 => out.push(format!("β={}", f(l.beta))),
        LossKind::RdKl => {
            out.push(format!("β={}", f(l.beta)));
            if l.tau != 1.0 {
                out.push(format!("τ={}", f(l.tau)));
            }
        }
        LossKind::Skd => out.push(format!("α={}", f(l.alpha))),
        LossKind::Ord => out.push(format!("α1={}", f(l.alpha1))),
        LossKind::Tcd | LossKind::Scd => {
            out.push(format!("α1={}", f(l.alpha1)));
            out.push(format!("α3={}", f(l.alpha3)));
        }
        LossKind::Stcd => {
            out.push(format!("α1={}", f(l.alpha1)));
            out.push(format!("α2={}", f(l.alpha2)));
            out.push(format!("α3={}", f(l.alpha3)));
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_tables_from_names() {
        assert_eq!(paper_table("table4"), Some(4));
        assert_eq!(paper_table("table8"), Some(8));
        assert_eq!(paper_table("table6"), None);
        assert_eq!(paper_table("quickstart"), None);
        assert_eq!(paper_table("table44"), None);
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short_number(0.17), "0.17");
        assert_eq!(short_number(0.045), "0.045");
        assert_eq!(short_number(0.123456), "0.1235");
        assert_eq!(short_number(1.0), "1");
        assert_eq!(short_number(0.0), "0");
    }
}
