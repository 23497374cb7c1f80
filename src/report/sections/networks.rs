//! Table 1: the networks (parameters, test time, FLOPs), ours beside the paper's; CSV
//! `<name>-networks.csv`, one line per network.

use std::fmt::Write;

use crate::report::format::{csv_header, csv_line, fixed, opt, row_name, thousands, CSV_DECIMALS};
use crate::report::paper::{self, dataset_title};
use crate::report::tables::NetworksTable;
use crate::report::timing::latency_text;

use super::{CsvFile, ReportSection};

/// Table 1's networks.
#[derive(Debug)]
pub struct Networks(pub NetworksTable);

impl ReportSection for Networks {
    fn markdown(&self, out: &mut String) {
        networks_md(out, &self.0);
    }

    fn csv(&self) -> Vec<CsvFile> {
        vec![("-networks".into(), networks_csv(&self.0))]
    }
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
                (None, Some(st)) => format!("{}, {}", st.text(3), kind.mark()),
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

/// Table 1, one line per network (ours and the paper's side by side).
fn networks_csv(t: &NetworksTable) -> String {
    let mut s = csv_header(&[
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
    ]);
    for b in &t.blocks {
        for r in &b.rows {
            let p = r.paper.as_ref();
            let l = r.latency.as_ref();
            s.push_str(&csv_line(&[
                b.dataset.to_string(),
                r.model.clone(),
                r.variant.clone(),
                r.counts.describe(),
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
