//! The Pareto front: each data set's non-dominated runs (error against size and latency) in the
//! Markdown (the chart is a figure); every finished run in `<name>-pareto.csv`.

use std::fmt::Write;

use crate::report::format::{cell, csv_header, csv_line, fixed, opt, thousands, CSV_DECIMALS};
use crate::report::paper::dataset_title;
use crate::report::pareto::{Pareto, Point};

use super::{CsvFile, ReportSection};

/// The Pareto section.
#[derive(Debug)]
pub struct ParetoFront(pub Pareto);

impl ReportSection for ParetoFront {
    fn markdown(&self, out: &mut String) {
        pareto_md(out, &self.0);
    }

    fn csv(&self) -> Vec<CsvFile> {
        vec![("-pareto".into(), pareto_csv(&self.0))]
    }
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
        let mut front: Vec<&Point> = b
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
fn pareto_csv(p: &Pareto) -> String {
    let mut out = csv_header(&[
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
    ]);
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
