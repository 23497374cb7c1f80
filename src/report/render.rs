//! Markdown and CSV text of a [`Report`]. Pure and deterministic: fixed number formats, rows in
//! the data model's order, times from the store only (formatted in UTC by hand), `\n` line ends.
//!
//! Markdown layout of a metrics table (GitHub-rendered): each model has an **ours** line (mean ±
//! std over seeds, then ours − paper in parentheses) and, below it, a **paper** line with the
//! paper's value, so every cell stays short and the two numbers sit on top of each other.

use std::fmt::Write;

use crate::report::assembly::Report;
use crate::report::collect::RunState;
use crate::report::format::{
    cell, csv_line, duration, fixed, join, opt, signed, stat_text, thousands, utc, CSV_DECIMALS,
};
use crate::report::paper::{self, dataset_title, COLUMNS, HORIZONS, METRICS};
use crate::report::pareto::{Pareto, Point as ParetoPoint};
use crate::report::runs::short_number;
use crate::report::stats::{Comparison, Test};
use crate::report::tables::{
    AttentionTable, Figure, FigureItem, Meta, MetricsRow, MetricsTable, NetworksTable, RunCounts,
    RunLine, Section, Unfinished,
};
use crate::report::timing::latency_text;
use crate::report::verdicts::{cell_name, Cell, CellOutcome, Claim, Source, Verdict};

// ---------------------------------------------------------------------------------------------
// Markdown

/// The whole Markdown report.
pub fn render_markdown(r: &Report) -> String {
    let mut s = String::new();
    match r.table {
        Some(t) => {
            let _ = writeln!(s, "# {}: our results beside the paper's Table {t}", r.name);
        }
        None => {
            let _ = writeln!(s, "# {}: results", r.name);
        }
    }
    s.push('\n');
    if !r.description.is_empty() {
        let _ = writeln!(s, "{}\n", r.description);
    }
    meta_md(&mut s, r);
    for sec in &r.sections {
        match sec {
            Section::Metrics(t) => metrics_md(&mut s, t, r.table),
            Section::Networks(t) => networks_md(&mut s, t),
            Section::Attention(t) => attention_md(&mut s, t),
        }
    }
    if let Some(p) = &r.pareto {
        pareto_md(&mut s, p);
    }
    crate::report::search::search_md(&mut s, &r.search);
    figures_md(&mut s, &r.figures);
    runs_md(&mut s, &r.runs);
    verdicts_md(&mut s, &r.verdicts);
    crate::report::table1_claims::claims_md(&mut s, &r.table1_claims);
    s
}

/// The non-dominated runs of each data set with their configuration (the chart is a figure).
fn pareto_md(s: &mut String, p: &Pareto) {
    let _ = writeln!(
        s,
        "## Pareto front: test MAE at {} min against size and latency\n",
        p.horizon
    );
    let _ = writeln!(
        s,
        "Runs that no other run of the same data set beats on both error and size (**size**) or \
         on both error and latency (**latency**: test time of one batch on the device it was \
         measured on). A run re-timed alone (`stkd retime`) shows the median [first–third \
         quartile] of R repetitions; a run that was not shows the figure recorded at the end of \
         its training, marked: it was timed with other work running (not a measurement). Where \
         a data set has runs re-timed alone, only those rank on the latency front. Runs of one \
         network size and device share the median of their figures, since a prediction's time \
         does not depend on the weights. Every finished run is in the report's `-pareto.csv` \
         file and on the chart under Figures.\n"
    );
    for b in &p.blocks {
        let _ = writeln!(s, "### {}\n", dataset_title(b.dataset));
        let _ = writeln!(
            s,
            "| Run | Model | Configuration | Parameters | Test time (ms) | MAE {} min | Front |",
            p.horizon
        );
        let _ = writeln!(s, "|---|---|---|---:|---:|---:|---|");
        let mut front: Vec<&ParetoPoint> = b
            .points
            .iter()
            .filter(|q| q.front_size || q.front_latency)
            .collect();
        front.sort_by(|a, b| {
            a.parameters
                .cmp(&b.parameters)
                .then(a.mae.total_cmp(&b.mae))
        });
        for q in front {
            let on = match (q.front_size, q.front_latency) {
                (true, true) => "size, latency",
                (true, false) => "size",
                _ => "latency",
            };
            let setup = match q.batch {
                Some(b) => format!("{}, batch {b}", q.device),
                None => q.device.clone(),
            };
            let mark = q.latency_kind.mark();
            let latency = match (q.latency_ms, q.latency_iqr_ms) {
                (Some(l), Some((a, b))) => format!(
                    "{} [{}–{}], R = {} ({setup}){}{mark}",
                    fixed(l, 2),
                    fixed(a, 2),
                    fixed(b, 2),
                    q.latency_runs.unwrap_or(0),
                    if mark.is_empty() { "" } else { ", " }
                ),
                (Some(l), None) => format!("{} ({setup}), {mark}", fixed(l, 2)),
                _ => "—".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {on} |",
                cell(&q.name, 60),
                q.model,
                cell(&q.config, 80),
                thousands(q.parameters),
                latency,
                fixed(q.mae, 3)
            );
        }
        let dominated = b
            .points
            .iter()
            .filter(|q| !q.front_size && !q.front_latency)
            .count();
        let _ = writeln!(
            s,
            "\n{dominated} of {} finished runs are dominated on both.\n",
            b.points.len()
        );
        if let Some(line) = &b.flops_order {
            let _ = writeln!(s, "{line}\n");
        }
    }
}

/// Every finished run of the Pareto section, one line each.
pub fn pareto_csv(p: &Pareto) -> String {
    let mut out = csv_line(
        &[
            "dataset",
            "run",
            "model",
            "configuration",
            "hash",
            "parameters",
            "latency_ms",
            "device",
            "latency_batch",
            "horizon_min",
            "mae",
            "front_size",
            "front_latency",
            "flops",
            "latency_kind",
            "latency_q1_ms",
            "latency_q3_ms",
            "latency_runs",
        ]
        .map(String::from),
    );
    for b in &p.blocks {
        for q in &b.points {
            out.push_str(&csv_line(&[
                b.dataset.to_string(),
                q.name.clone(),
                q.model.clone(),
                q.config.clone(),
                q.hash.clone(),
                q.parameters.to_string(),
                opt(q.latency_ms, CSV_DECIMALS),
                q.device.clone(),
                q.batch.map(|b| b.to_string()).unwrap_or_default(),
                p.horizon.to_string(),
                fixed(q.mae, CSV_DECIMALS),
                q.front_size.to_string(),
                q.front_latency.to_string(),
                q.flops.to_string(),
                q.latency_kind.as_str().to_string(),
                opt(q.latency_iqr_ms.map(|x| x.0), CSV_DECIMALS),
                opt(q.latency_iqr_ms.map(|x| x.1), CSV_DECIMALS),
                q.latency_runs.map_or(String::new(), |n| n.to_string()),
            ]));
        }
    }
    out
}

/// `−0.123 [−0.250, +0.004]` (the 95 % interval), or `−0.123 (n = 1 vs 3, not judged)`; then
/// the paper's own difference and, within noise, the seeds that would resolve it.
fn diff_text(c: &Cell) -> String {
    let mut t = match &c.comparison {
        Comparison::Judged(j) => format!(
            "{} [{}, {}]",
            signed(j.diff, 3, true),
            signed(j.diff - j.half_width, 3, true),
            signed(j.diff + j.half_width, 3, true)
        ),
        Comparison::NotJudged { n, diff } => {
            format!(
                "{} (n = {} vs {}, not judged)",
                signed(*diff, 3, true),
                n.0,
                n.1
            )
        }
        Comparison::Empty => "—".into(),
    };
    if let Some(p) = c.paper_diff {
        t.push_str(&format!(" (paper {}", signed(p, 3, true)));
        if let Comparison::Judged(j) = &c.comparison {
            if (p - j.diff).abs() > j.half_width {
                t.push_str(", outside our interval");
            }
        }
        if c.outcome == CellOutcome::WithinNoise {
            match c.seeds_to_resolve {
                Some(n) => t.push_str(&format!("; {n} seeds would resolve it")),
                None if p < 0.0 => t.push_str("; not resolvable with 200 seeds"),
                None => {}
            }
        }
        t.push(')');
    }
    t
}

/// The claim's source: the quoted sentence and its section, or "ours" and why.
fn source_text(c: &Claim) -> String {
    match &c.source {
        Source::Paper { section, quote } => format!("{section}: “{quote}”"),
        Source::Ours(why) => format!("ours: {why}"),
    }
}

fn verdicts_md(s: &mut String, verdicts: &[Verdict]) {
    if verdicts.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## The paper's claims\n");
    let _ = writeln!(
        s,
        "Each claim of the paper's text about this table, quoted, over exactly the metrics, \
         horizons and data sets its sentence names; claims of ours are marked \"ours\". Per cell: \
         the difference of our means (claimed better − claimed worse, in the metric's unit; \
         negative agrees with the claim), its 95 % interval (Student's t over the per-seed \
         differences when both sides hold the same seeds, Welch's t otherwise), the paper's own \
         difference (\"outside our interval\" when our data exclude a difference of the paper's \
         size) and, for a cell within noise, how many seeds per side would resolve the \
         paper's difference at the spread measured here. A cell whose interval lies below zero \
         **holds**, above zero is **against** the claim, else **within noise**; a claim holds \
         when every cell holds and does not hold when any cell is against it. A side with a \
         single seed is **not judged**. Each cell is a 95 % interval on its own: over a claim of 9 cells, \
         one cell beyond noise in either direction by chance alone is likely (about 1 − 0.95⁹ ≈ \
         37 % when nothing differs), so a verdict resting on one cell is weak evidence; read the \
         counts. Both sides must be trained alike (optimiser steps, \
         batch, learning-rate schedule, optimiser, pruning schedule); where the claimed-worse \
         model was trained several ways, its runs trained as the claimed-better ones are used, \
         else the claim is **not comparable**.\n"
    );
    let _ = writeln!(
        s,
        "| Data set | Claim | Source | Ours: better − worse [95 % interval] | Verdict |"
    );
    let _ = writeln!(s, "|:--|:--|:--|:--|:--|");
    for v in verdicts {
        let cells: Vec<String> = v
            .cells
            .iter()
            .map(|c| format!("{}: {}", cell_name(c), diff_text(c)))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            dataset_title(v.dataset),
            cell(&v.claim.text, 300),
            cell(&source_text(&v.claim), 600),
            if cells.is_empty() {
                "—".to_string()
            } else {
                cells.join("; ")
            },
            cell(&v.text(), 400)
        );
    }
}

/// The claims as CSV, one line per (claim, cell); a claim without cells has one line.
pub fn verdicts_csv(verdicts: &[Verdict]) -> String {
    let header = [
        "dataset",
        "claim",
        "source",
        "metric",
        "horizon_min",
        "n_better",
        "n_worse",
        "test",
        "diff",
        "ci_low",
        "ci_high",
        "paper_diff",
        "seeds_to_resolve",
        "cell",
        "verdict",
    ];
    let mut s = csv_line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for v in verdicts {
        let verdict = v.text();
        let base = |cells: Vec<String>| {
            let mut row = vec![
                v.dataset.to_string(),
                v.claim.text.clone(),
                source_text(&v.claim),
            ];
            row.extend(cells);
            row.push(verdict.clone());
            csv_line(&row)
        };
        if v.cells.is_empty() {
            s.push_str(&base(vec![String::new(); header.len() - 4]));
        }
        for c in &v.cells {
            let (n, test, lo, hi) = match &c.comparison {
                Comparison::Judged(j) => (
                    (v.seeds.0, v.seeds.1),
                    match j.test {
                        Test::Paired => "paired",
                        Test::Welch => "welch",
                    },
                    Some(j.diff - j.half_width),
                    Some(j.diff + j.half_width),
                ),
                Comparison::NotJudged { n, .. } => (*n, "not judged", None, None),
                Comparison::Empty => ((0, 0), "", None, None),
            };
            s.push_str(&base(vec![
                paper::METRICS[c.metric].to_string(),
                paper::HORIZONS[c.horizon].to_string(),
                n.0.to_string(),
                n.1.to_string(),
                test.to_string(),
                opt(c.diff(), CSV_DECIMALS),
                opt(lo, CSV_DECIMALS),
                opt(hi, CSV_DECIMALS),
                opt(c.paper_diff, CSV_DECIMALS),
                c.seeds_to_resolve
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                match c.outcome {
                    CellOutcome::Holds => "holds",
                    CellOutcome::Against => "against",
                    CellOutcome::WithinNoise => "within noise",
                    CellOutcome::NotJudged => "not judged",
                }
                .to_string(),
            ]));
        }
    }
    s
}

fn meta_md(s: &mut String, r: &Report) {
    let m: &Meta = &r.meta;
    let _ = writeln!(s, "- **Experiment file:** `{}`", r.file);
    let paper = match r.table {
        Some(t) => format!("{}, Table {t}: {}", paper::CITATION, paper::caption(t)),
        None => format!(
            "{} (no table of its own; paper values by model name)",
            paper::CITATION
        ),
    };
    let _ = writeln!(s, "- **Paper:** {paper}");
    let _ = writeln!(
        s,
        "- **Runs:** {} planned: {}",
        m.counts.total(),
        m.counts.describe()
    );
    for st in &r.search {
        let epochs = st
            .trials
            .iter()
            .map(|t| t.epochs_planned)
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            s,
            "- **Search trials** ({} on {}, besides the planned runs): {}; up to {epochs} epochs a trial",
            st.label,
            dataset_title(st.dataset),
            st.counts()
        );
    }
    let ds: Vec<&str> = m.datasets.iter().map(|d| dataset_title(*d)).collect();
    let _ = writeln!(s, "- **Data sets:** {}", ds.join(", "));
    let mut epochs = join(&m.epochs);
    if m.steps_per_epoch.iter().any(Option::is_some) {
        let caps: Vec<String> = m
            .steps_per_epoch
            .iter()
            .map(|c| c.map_or("all".into(), |n| n.to_string()))
            .collect();
        let _ = write!(epochs, " (minibatches per epoch: {})", caps.join(", "));
    }
    let _ = writeln!(s, "- **Epochs:** {epochs}");
    let _ = writeln!(s, "- **Seeds:** {}", join(&m.seeds));
    let devices = if m.devices.is_empty() {
        "none yet".to_string()
    } else {
        m.devices.join(", ")
    };
    let _ = writeln!(s, "- **Devices:** {devices}");
    let finished = match m.finished {
        None => "none yet".to_string(),
        Some((a, b)) if utc(a) == utc(b) => utc(b),
        Some((a, b)) => format!("{} to {}", utc(a), utc(b)),
    };
    let _ = writeln!(s, "- **Runs finished:** {finished}");
    let _ = writeln!(s, "- **stkd:** {}, commit `{}`", m.version, m.commit);
    s.push('\n');
}

/// Column headers of the nine metric columns: `MAPE 15 min`, …
fn metric_headers() -> Vec<String> {
    METRICS
        .iter()
        .flat_map(|m| HORIZONS.iter().map(move |h| format!("{m} {h} min")))
        .collect()
}

fn row_name(model: &str, variant: &str) -> String {
    if variant.is_empty() {
        cell(model, 200)
    } else {
        cell(&format!("{model} [{variant}]"), 200)
    }
}

fn ours_cell(r: &MetricsRow, c: usize) -> String {
    let Some(st) = r.ours[c] else {
        return "—".into();
    };
    let mut text = stat_text(&st, 3);
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
                ours.push(r.param_pct.map_or("—".into(), |p| stat_text(&p, 2)));
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

fn networks_md(s: &mut String, t: &NetworksTable) {
    let _ = writeln!(s, "## Table 1: {}\n", paper::caption(1));
    let _ = writeln!(
        s,
        "Each network has an **ours** line and a **paper** line. Parameters: ours as trained \
         (equal to the architecture's count). Test time: ours is the wall time of the full \
         9-step prediction of one batch of test windows, re-timed alone (`stkd retime`: no \
         other run computing, one warm-up, then R timed repetitions; median [first–third \
         quartile], R; device and batch under the table); a network not re-timed shows the \
         figure recorded at the end of its training (mean ± std over seeds), marked: it was \
         timed with other work running (not a measurement). The paper's is the average of 100 \
         trials on a GTX 1080. FLOPs: \
         ours counts 2 × the multiply–accumulates of one forward step (12 input steps → 1 output \
         step) for one sample: temporal and graph convolutions, bottleneck residual projections \
         and the output layer, not the elementwise work (biases, gates, activations, LayerNorm). \
         The paper's FLOPs are as reported: they cannot be reproduced from the architecture. \
         FLOPs % of teacher compares each count with the teacher's count of the same kind.\n"
    );
    for b in &t.blocks {
        let _ = writeln!(s, "### {}\n", dataset_title(b.dataset));
        let _ = writeln!(
            s,
            "| Model | | Runs | Parameters | Hidden blocks channels | Test time (s) | FLOPs | \
             FLOPs % of teacher |"
        );
        let _ = writeln!(s, "|:--|:--|:--|--:|:--|--:|--:|--:|");
        for r in &b.rows {
            let kind = r.test_time_kind;
            let time = match (&r.latency, r.test_time) {
                (Some(l), _) if kind.is_measurement() => latency_text(l, 1.0, 3),
                (Some(l), _) => format!("{}, {}", latency_text(l, 1.0, 3), kind.mark()),
                (None, Some(st)) => format!("{}, {}", stat_text(&st, 3), kind.mark()),
                (None, None) => "—".into(),
            };
            let _ = writeln!(
                s,
                "| {} | ours | {} | {} | {} | {} | {} | {} |",
                row_name(&r.model, &r.variant),
                r.counts.describe(),
                thousands(r.parameters),
                r.channels,
                time,
                thousands(r.flops),
                fixed(r.flops_pct_teacher, 1)
            );
            if let Some(p) = &r.paper {
                let _ = writeln!(
                    s,
                    "| | paper | | {} | {} | {} | {} (as reported) | {} |",
                    thousands(p.parameters),
                    p.channels,
                    fixed(p.test_time_s, 3),
                    thousands(p.flops),
                    r.paper_flops_pct_teacher
                        .map_or("—".into(), |x| fixed(x, 1))
                );
            }
        }
        s.push('\n');
        let setups: Vec<String> = b
            .rows
            .iter()
            .filter_map(|r| match &r.latency {
                Some(l) => Some(format!(
                    "{}: {} on {} ({} threads), batch {}, build {}",
                    r.model,
                    r.test_time_kind.as_str(),
                    l.device,
                    l.threads,
                    l.batch,
                    l.commit
                )),
                None if !r.test_time_setup.is_empty() => Some(format!(
                    "{}: {} ({})",
                    r.model,
                    r.test_time_setup,
                    r.test_time_kind.as_str()
                )),
                None => None,
            })
            .collect();
        if !setups.is_empty() {
            let _ = writeln!(
                s,
                "Our test times: {}. A prediction's time depends on the network's shape and the \
                 machine, not on its weights: each shape is timed once per device and build, and \
                 runs of the same shape share that measurement.\n",
                setups.join("; ")
            );
        }
        if let Some(line) = &b.flops_order {
            let _ = writeln!(s, "{line}\n");
        }
    }
}

fn attention_cell(c: &crate::report::tables::AttentionCell) -> String {
    let Some(st) = c.ours else {
        return c.counts.describe();
    };
    let mut text = stat_text(&st, 3);
    if let (Some(p), true) = (c.paper, st.mean.is_finite()) {
        let _ = write!(text, " ({})", signed(st.mean - p, 3, true));
    }
    if c.counts.total() > c.counts.done() {
        let _ = write!(text, "; {}", c.counts.describe());
    }
    text
}

fn attention_md(s: &mut String, t: &AttentionTable) {
    let _ = writeln!(s, "## Table 3: {}\n", paper::caption(3));
    let _ = writeln!(
        s,
        "Share (%) of the training elements (sample × node, over every step of training) for \
         which ORD's target was the teacher's prediction instead of the data. ours: mean ± \
         sample std over the finished seeds, then ours − paper in percentage points; paper: \
         Table 3.\n"
    );
    let mut head = vec!["Model".to_string()];
    let mut align = vec![":--"];
    for d in &t.datasets {
        head.push(format!("{} ours", dataset_title(*d)));
        head.push(format!("{} paper", dataset_title(*d)));
        align.extend([("--:"), ("--:")]);
    }
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let _ = writeln!(s, "|{}|", align.join("|"));
    for r in &t.rows {
        let mut line = vec![row_name(&r.model, &r.variant)];
        for c in &r.cells {
            line.push(attention_cell(c));
            line.push(c.paper.map_or("—".into(), |p| fixed(p, 3)));
        }
        let _ = writeln!(s, "| {} |", line.join(" | "));
    }
    s.push('\n');
}

fn figures_md(s: &mut String, figures: &[Figure]) {
    if figures.is_empty() {
        return;
    }
    let _ = writeln!(s, "## Figures\n");
    for f in figures {
        let _ = writeln!(s, "### {}\n", f.title);
        for item in &f.items {
            match item {
                FigureItem::Image { alt, path, caption } => {
                    let _ = writeln!(s, "![{alt}]({path})\n");
                    if !caption.is_empty() {
                        let _ = writeln!(s, "{caption}\n");
                    }
                }
                FigureItem::Note(n) => {
                    let _ = writeln!(s, "{n}\n");
                }
            }
        }
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

// ---------------------------------------------------------------------------------------------
// CSV

fn counts_csv(c: &RunCounts) -> String {
    c.describe()
}

/// Long format like `paper/paper_metrics.csv`: one line per model row, metric and horizon.
pub fn metrics_csv(t: &MetricsTable) -> String {
    let mut s = csv_line(
        &[
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
        ]
        .map(String::from),
    );
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
                        counts_csv(&r.counts),
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

/// Table 1, one line per network (ours and the paper's side by side).
pub fn networks_csv(t: &NetworksTable) -> String {
    let mut s = csv_line(
        &[
            "dataset",
            "model",
            "variant",
            "runs",
            "channels",
            "parameters",
            "paper_parameters",
            "test_time_s",
            "test_time_std",
            "test_time_n",
            "test_time_setup",
            "paper_test_time_s",
            "flops",
            "paper_flops_as_reported",
            "flops_pct_teacher",
            "paper_flops_pct_teacher",
            "test_time_kind",
            "latency_median_s",
            "latency_q1_s",
            "latency_q3_s",
            "latency_runs",
            "latency_batch",
            "latency_device",
            "latency_threads",
            "latency_commit",
            "latency_alone",
        ]
        .map(String::from),
    );
    for b in &t.blocks {
        for r in &b.rows {
            let p = r.paper.as_ref();
            let l = r.latency.as_ref();
            s.push_str(&csv_line(&[
                b.dataset.to_string(),
                r.model.clone(),
                r.variant.clone(),
                counts_csv(&r.counts),
                r.channels.clone(),
                r.parameters.to_string(),
                p.map_or(String::new(), |p| p.parameters.to_string()),
                opt(r.test_time.map(|x| x.mean), CSV_DECIMALS),
                opt(r.test_time.and_then(|x| x.std), CSV_DECIMALS),
                r.test_time.map_or(0, |x| x.n).to_string(),
                r.test_time_setup.clone(),
                opt(p.map(|p| p.test_time_s), 3),
                r.flops.to_string(),
                p.map_or(String::new(), |p| p.flops.to_string()),
                fixed(r.flops_pct_teacher, CSV_DECIMALS),
                opt(r.paper_flops_pct_teacher, CSV_DECIMALS),
                r.test_time_kind.as_str().to_string(),
                opt(l.map(|l| l.median_s), CSV_DECIMALS),
                opt(l.map(|l| l.q1_s), CSV_DECIMALS),
                opt(l.map(|l| l.q3_s), CSV_DECIMALS),
                l.map_or(String::new(), |l| l.runs.to_string()),
                l.map_or(String::new(), |l| l.batch.to_string()),
                l.map_or(String::new(), |l| l.device.clone()),
                l.map_or(String::new(), |l| l.threads.to_string()),
                l.map_or(String::new(), |l| l.commit.clone()),
                l.map_or(String::new(), |l| l.alone.to_string()),
            ]));
        }
    }
    s
}

/// Table 3, one line per model and data set.
pub fn attention_csv(t: &AttentionTable) -> String {
    let mut s = csv_line(
        &[
            "dataset",
            "model",
            "variant",
            "runs",
            "n",
            "pct",
            "std",
            "paper_pct",
            "diff",
        ]
        .map(String::from),
    );
    for r in &t.rows {
        for (d, c) in t.datasets.iter().zip(&r.cells) {
            let diff = match (c.ours, c.paper) {
                (Some(o), Some(p)) if o.mean.is_finite() => Some(o.mean - p),
                _ => None,
            };
            s.push_str(&csv_line(&[
                d.to_string(),
                r.model.clone(),
                r.variant.clone(),
                counts_csv(&c.counts),
                c.ours.map_or(0, |o| o.n).to_string(),
                opt(c.ours.map(|o| o.mean), CSV_DECIMALS),
                opt(c.ours.and_then(|o| o.std), CSV_DECIMALS),
                opt(c.paper, 3),
                diff.map_or(String::new(), |d| signed(d, CSV_DECIMALS, false)),
            ]));
        }
    }
    s
}

/// The run ledger.
pub fn runs_csv(runs: &[RunLine]) -> String {
    let mut s = csv_line(
        &[
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
        ]
        .map(String::from),
    );
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

/// Every CSV file of a report: `(file name suffix, text)`. The metrics table is `""` (written
/// as `<name>.csv`), the others `-networks`, `-attention`, `-runs`.
pub fn render_csv(r: &Report) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sec in &r.sections {
        match sec {
            Section::Metrics(t) => out.push((String::new(), metrics_csv(t))),
            Section::Networks(t) => out.push(("-networks".into(), networks_csv(t))),
            Section::Attention(t) => out.push(("-attention".into(), attention_csv(t))),
        }
    }
    out.push(("-runs".into(), runs_csv(&r.runs)));
    if let Some(p) = &r.pareto {
        out.push(("-pareto".into(), pareto_csv(p)));
    }
    if !r.verdicts.is_empty() {
        out.push(("-claims".into(), verdicts_csv(&r.verdicts)));
    }
    if !r.table1_claims.is_empty() {
        // Table 1 has no claims of the other kind; should it get some, they keep the name.
        let suffix = if r.verdicts.is_empty() {
            "-claims"
        } else {
            "-table1-claims"
        };
        out.push((
            suffix.into(),
            crate::report::table1_claims::claims_csv(&r.table1_claims),
        ));
    }
    if !r.search.is_empty() {
        out.push((
            "-trials".into(),
            crate::report::search::search_csv(&r.search),
        ));
    }
    out
}
