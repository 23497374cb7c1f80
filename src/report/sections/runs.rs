//! The run ledger: every run the experiment file plans, finished or not; CSV `<name>-runs.csv`.

use std::fmt::Write;

use crate::report::collect::RunState;
use crate::report::format::{cell, csv_header, csv_line, duration, opt, utc};
use crate::report::runs::short_number;
use crate::report::tables::RunLine;

use super::{CsvFile, ReportSection};

/// The run ledger.
#[derive(Debug)]
pub struct RunLedger(pub Vec<RunLine>);

impl ReportSection for RunLedger {
    fn markdown(&self, out: &mut String) {
        runs_md(out, &self.0);
    }

    fn csv(&self) -> Vec<CsvFile> {
        vec![("-runs".into(), runs_csv(&self.0))]
    }
}

fn status_text(r: &RunLine, max: usize) -> String {
    match (&r.error, r.state) {
        (Some(e), RunState::Failed | RunState::Skipped) => {
            format!("{}: {}", r.state, cell(e, max))
        }
        _ => r.state.to_string(),
    }
}

fn runs_md(s: &mut String, runs: &[RunLine]) {
    let _ = writeln!(s, "## Runs\n");
    let _ = writeln!(
        s,
        "Every run the experiment file plans, finished or not. Hash: the run's identity in the \
         store (configuration, data and code version).\n"
    );
    let _ = writeln!(
        s,
        "| Run | Model | Loss | Hyperparameters | Epochs | Batch | LR | Seed | Status | Best \
         epoch | Training time | Finished | Hash |"
    );
    let _ = writeln!(s, "|:--|:--|:--|:--|--:|--:|--:|--:|:--|--:|--:|:--|:--|");
    for r in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | `{}` |",
            cell(&r.name, 200),
            cell(&r.model, 200),
            r.loss,
            if r.hyper.is_empty() { "—" } else { &r.hyper },
            r.epochs,
            r.batch_size,
            short_number(r.lr),
            r.seed,
            status_text(r, 120),
            r.best_epoch.map_or("—".into(), |e| e.to_string()),
            r.train_seconds.map_or("—".into(), duration),
            r.finished.map_or("—".into(), utc),
            r.hash
        );
    }
    s.push('\n');
}

/// The run ledger.
fn runs_csv(runs: &[RunLine]) -> String {
    let mut s = csv_header(&[
        "run",
        "model",
        "loss",
        "hyperparameters",
        "epochs",
        "batch_size",
        "lr",
        "seed",
        "status",
        "best_epoch",
        "train_seconds",
        "finished_utc",
        "hash",
        "error",
    ]);
    for r in runs {
        s.push_str(&csv_line(&[
            r.name.clone(),
            r.model.clone(),
            r.loss.to_string(),
            r.hyper.clone(),
            r.epochs.to_string(),
            r.batch_size.to_string(),
            short_number(r.lr),
            r.seed.to_string(),
            r.state.to_string(),
            r.best_epoch.map_or(String::new(), |e| e.to_string()),
            opt(r.train_seconds, 3),
            r.finished.map_or(String::new(), utc),
            r.hash.clone(),
            r.error.clone().unwrap_or_default(),
        ]));
    }
    s
}
