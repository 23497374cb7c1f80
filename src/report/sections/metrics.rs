//! The metrics table (paper Tables 2, 4–9, or the test metrics of any experiment): each model's
//! **ours** line (mean ± std over seeds, ours − paper) over its **paper** line; CSV in long
//! format like `paper/paper_metrics.csv`, written as `<name>.csv`.

use std::fmt::Write;

use crate::report::format::{
    cell, csv_header, csv_line, fixed, opt, row_name, signed, CSV_DECIMALS,
};
use crate::report::paper::{self, dataset_title, COLUMNS, HORIZONS, METRICS};
use crate::report::tables::{MetricsRow, MetricsTable, Unfinished};

use super::{CsvFile, ReportSection};

/// A metrics table and the paper table of the report it is in (a table of the same runs beside
/// Table 1 or 3 is headed "Test metrics of these runs").
#[derive(Debug)]
pub struct Metrics {
    pub table: MetricsTable,
    pub report_table: Option<u8>,
}

impl ReportSection for Metrics {
    fn markdown(&self, out: &mut String) {
        metrics_md(out, &self.table, self.report_table);
    }

    fn csv(&self) -> Vec<CsvFile> {
        vec![(String::new(), metrics_csv(&self.table))]
    }
}

/// Column headers of the nine metric columns: `MAPE 15 min`, …
fn metric_headers() -> Vec<String> {
    METRICS
        .iter()
        .flat_map(|m| HORIZONS.iter().map(move |h| format!("{m} {h} min")))
        .collect()
}

fn ours_cell(r: &MetricsRow, c: usize) -> String {
    let Some(st) = r.ours[c] else {
        return "—".into();
    };
    let mut text = st.text(3);
    if r.best[c] {
        text = format!("**{text}**");
    }
    if let Some(p) = r.paper {
        if st.mean.is_finite() {
            let _ = write!(text, " ({})", signed(st.mean - p[c], 3, true));
        }
    }
    text
}

fn metrics_md(s: &mut String, t: &MetricsTable, report_table: Option<u8>) {
    match t.table {
        Some(n) => {
            let _ = writeln!(s, "## Table {n}: {}\n", paper::caption(n));
        }
        None if report_table.is_some() => {
            let _ = writeln!(s, "## Test metrics of these runs\n");
        }
        None => {
            let _ = writeln!(s, "## Test metrics\n");
        }
    }
    let paper_is = match t.table {
        Some(n) => format!("the value the paper reports in Table {n}"),
        None => "the paper's value for that model, from the table named on the line".into(),
    };
    let _ = writeln!(
        s,
        "Test split; MAPE in %, MAE and RMSE in mph; 15 / 30 / 45 min are predicted steps \
         3 / 6 / 9. Each model has two lines: **ours** is the mean ± sample standard deviation \
         (n − 1) over the finished seeds (no ± for a single seed; Runs gives n and any run not \
         finished), followed in parentheses by ours − paper (negative: our error is lower); \
         **paper** is {paper_is}. Bold: our best value in the column among the models compared \
         (the plainly trained teacher or base model is the reference and is not ranked). \
         —: no finished run.\n"
    );
    let mut head = vec!["Model".to_string(), String::new(), "Runs".into()];
    let mut align = vec![":--", ":--", ":--"];
    if t.param_pct {
        head.push(
            if t.table == Some(8) {
                "Pruned %"
            } else {
                "Parameter %"
            }
            .into(),
        );
        align.push("--:");
    }
    head.extend(metric_headers());
    align.extend(std::iter::repeat_n("--:", COLUMNS));
    for b in &t.blocks {
        let _ = writeln!(s, "### {}\n", dataset_title(b.dataset));
        let _ = writeln!(s, "| {} |", head.join(" | "));
        let _ = writeln!(s, "|{}|", align.join("|"));
        for r in &b.rows {
            let mut ours = vec![
                row_name(&r.model, &r.variant),
                "ours".into(),
                r.counts.describe(),
            ];
            if t.param_pct {
                ours.push(r.param_pct.map_or("—".into(), |p| p.text(2)));
            }
            ours.extend((0..COLUMNS).map(|c| ours_cell(r, c)));
            let _ = writeln!(s, "| {} |", ours.join(" | "));
            if let (Some(p), true) = (r.paper, r.paper_line) {
                let label = match (r.paper_table, t.table) {
                    (Some(pt), Some(tt)) if pt == tt => "paper".to_string(),
                    (Some(pt), _) => format!("paper (Table {pt})"),
                    (None, _) => "paper".to_string(),
                };
                let mut line = vec![String::new(), label, String::new()];
                if t.param_pct {
                    line.push(r.paper_param_pct.map_or("—".into(), |x| fixed(x, 0)));
                }
                line.extend(p.iter().map(|v| fixed(*v, 3)));
                let _ = writeln!(s, "| {} |", line.join(" | "));
            }
        }
        s.push('\n');
        unfinished_md(s, &b.unfinished);
    }
    match (t.param_pct, t.table) {
        (true, Some(8)) => {
            let _ = writeln!(
                s,
                "Pruned %: the share of the pruning base model's parameters removed (a pruned \
                 run's compact count against its original count), and the paper's pruning level. \
                 The paper heads this column \"Parameter %\", but its text calls the rows pruning \
                 levels (\"even at aggressive pruning levels of 75%\"), its errors grow with the \
                 number, and its Table 9 of the same runs is headed \"Pruned %\"; so we read the \
                 paper's numbers as the share removed [I-10] and match our rows with its rows by \
                 it (the base model's row, unpruned, is the paper's 100). \n"
            );
        }
        (true, _) => {
            let _ = writeln!(
                s,
                "Parameter %: parameters kept relative to the teacher; a pruned run's compact \
                 count against its original count.\n"
            );
        }
        _ => {}
    }
}

fn unfinished_md(s: &mut String, list: &[Unfinished]) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(s, "Runs without results:\n");
    for u in list {
        let why = match &u.error {
            Some(e) => format!("{}: {}", u.state, cell(e, 160)),
            None => u.state.to_string(),
        };
        let _ = writeln!(s, "- `{}` (`{}`): {why}", u.name, u.hash);
    }
    s.push('\n');
}

/// Long format like `paper/paper_metrics.csv`: one line per model row, metric and horizon.
fn metrics_csv(t: &MetricsTable) -> String {
    let mut s = csv_header(&[
        "dataset",
        "model",
        "variant",
        "runs",
        "n",
        "param_pct",
        "paper_param_pct",
        "metric",
        "horizon_min",
        "mean",
        "std",
        "paper",
        "diff",
        "paper_table",
        "best",
    ]);
    for b in &t.blocks {
        for r in &b.rows {
            for (m, metric) in METRICS.iter().enumerate() {
                for (h, horizon) in HORIZONS.iter().enumerate() {
                    let c = paper::column(m, h);
                    let ours = r.ours[c];
                    let paper = r.paper.map(|p| p[c]);
                    let diff = match (ours, paper) {
                        (Some(o), Some(p)) if o.mean.is_finite() => Some(o.mean - p),
                        _ => None,
                    };
                    s.push_str(&csv_line(&[
                        b.dataset.to_string(),
                        r.model.clone(),
                        r.variant.clone(),
                        r.counts.describe(),
                        ours.map_or(0, |o| o.n).to_string(),
                        opt(r.param_pct.map(|p| p.mean), CSV_DECIMALS),
                        opt(r.paper_param_pct, 0),
                        metric.to_string(),
                        horizon.to_string(),
                        opt(ours.map(|o| o.mean), CSV_DECIMALS),
                        opt(ours.and_then(|o| o.std), CSV_DECIMALS),
                        opt(paper, 3),
                        diff.map_or(String::new(), |d| signed(d, CSV_DECIMALS, false)),
                        r.paper_table.map_or(String::new(), |t| format!("table{t}")),
                        r.best[c].to_string(),
                    ]));
                }
            }
        }
    }
    s
}
