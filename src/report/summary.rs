//! The compact table a sweep ends with: each run of the experiment with its state, test MAE and
//! RMSE at 15 / 30 / 45 min and training time, so the numbers need no second command.

use crate::report::collect::ReportData;
use crate::report::paper::{MAE, RMSE};
use crate::report::runs::metric_of;

/// One run of the closing table.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLine {
    /// `label dataset [variant]`.
    pub run: String,
    pub state: String,
    /// Test MAE at 15, 30, 45 min (done runs).
    pub mae: [Option<f64>; 3],
    /// Test RMSE at 15, 30, 45 min.
    pub rmse: [Option<f64>; 3],
    /// Recorded training time (s).
    pub train_seconds: Option<f64>,
}

/// The closing table's lines, in plan order.
pub fn run_lines(data: &ReportData) -> Vec<RunLine> {
    data.runs
        .iter()
        .map(|r| {
            let at = |m: usize| -> [Option<f64>; 3] { [0, 1, 2].map(|h| metric_of(r, m, h)) };
            RunLine {
                run: r.display_name(),
                state: r.state.to_string(),
                mae: at(MAE),
                rmse: at(RMSE),
                train_seconds: r.done().map(|x| x.train_seconds),
            }
        })
        .collect()
}

/// `2.229 / 3.021 / 3.565`, `—` where there is no value.
pub fn three(v: &[Option<f64>; 3]) -> String {
    if v.iter().all(Option::is_none) {
        return "—".into();
    }
    v.iter()
        .map(|x| x.map_or("—".to_string(), |x| format!("{x:.3}")))
        .collect::<Vec<_>>()
        .join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::collect::RunState;
    use crate::store::{MetricRow, RunResult};

    #[test]
    fn lines_carry_state_metrics_and_time() {
        let mut data = ReportData::planned_for_tests(
            "name: t\ndatasets: [pemsd7]\nruns:\n  - {label: a, model: student}\n  - {label: b, model: student, lr: 0.01}\n",
        );
        let runs = &mut data.runs;
        runs[0].state = RunState::Done;
        runs[0].result = Some(RunResult {
            metrics: (1..=9)
                .map(|step| MetricRow {
                    split: "test".into(),
                    step,
                    mape: 0.0,
                    mae: step as f64,
                    rmse: 2.0 * step as f64,
                })
                .collect(),
            train_seconds: 12.5,
            ..Default::default()
        });
        let l = run_lines(&data);
        assert_eq!(l[0].run, "a pemsd7");
        assert_eq!(three(&l[0].mae), "3.000 / 6.000 / 9.000");
        assert_eq!(three(&l[0].rmse), "6.000 / 12.000 / 18.000");
        assert_eq!(l[0].train_seconds, Some(12.5));
        assert_eq!(
            (l[1].state.as_str(), three(&l[1].mae)),
            ("not started", "—".into())
        );
    }
}
