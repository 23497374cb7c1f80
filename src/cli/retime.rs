//! `stkd retime`: time every finished run's network again, alone (see `stkd::latency`).

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use clap::Args;

use stkd::backend::DeviceSpec;

use super::sweep::{load_experiment, plan_experiment};
use stkd::latency::{self, RetimeEvent, RetimeOptions};

#[derive(Args)]
pub(crate) struct RetimeArgs {
    /// Experiment files whose finished runs to re-time.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Timed repetitions per network shape, after one warm-up (median and interquartile range
    /// recorded); at least 20 unless --allow-few.
    #[arg(long, default_value_t = latency::DEFAULT_RUNS)]
    pub(crate) runs: usize,
    /// Accept fewer than 20 repetitions (a quick look, which the reports do not judge).
    #[arg(long)]
    pub(crate) allow_few: bool,
    /// Time even while the store shows runs computing (recorded as not measured alone).
    #[arg(long)]
    pub(crate) force: bool,
    /// Only runs without a measurement (what a sweep's timing phase does): a figure of the
    /// same shape measured alone earlier, on this device and thread count, is reused.
    #[arg(long)]
    pub(crate) missing: bool,
    /// List the shapes and runs and estimate the time from the recorded test times; time
    /// nothing, write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[arg(long, default_value = "cpu")]
    pub(crate) device: DeviceSpec,
    #[arg(long, default_value = stkd::store::DEFAULT_PATH)]
    pub(crate) store: PathBuf,
    #[arg(long, default_value = "data")]
    pub(crate) data_dir: PathBuf,
}

fn plans(args: &RetimeArgs) -> Result<Vec<stkd::plan::Plan>> {
    args.files
        .iter()
        .map(|f| plan_experiment(&load_experiment(f)?, &args.data_dir))
        .collect()
}

fn minutes(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

pub(crate) fn retime_cmd<B: AutodiffBackend>(args: &RetimeArgs, device: B::Device) -> Result<()> {
    let plans = plans(args)?;
    if args.dry_run {
        let p = latency::plan_retime(&plans, &args.store)?;
        println!(
            "{} finished runs in {} network shapes; {} runs not re-timed",
            p.runs(),
            p.groups.len(),
            p.skipped.len()
        );
        for g in &p.groups {
            let rec = g
                .recorded_s()
                .map_or("no recorded time".into(), |s| format!("recorded {s:.3} s"));
            println!("  {} ({} runs, {rec})", g.describe(), g.runs.len());
            for t in &g.runs {
                println!("    {} {}", t.hash, t.name);
            }
        }
        for s in &p.skipped {
            println!("  not re-timed: {} {}: {}", s.hash, s.name, s.why);
        }
        match p.estimate_s(args.runs) {
            Some(s) => println!(
                "estimate at the recorded test times: {} for {} repetitions plus {} warm-up per \
                 shape (the recorded times were taken beside other work; alone is usually faster)",
                minutes(s),
                args.runs,
                latency::WARM_UP_RUNS
            ),
            None => println!("no estimate: a shape has no recorded test time"),
        }
        return Ok(());
    }
    let opts = RetimeOptions {
        store: args.store.clone(),
        data_dir: args.data_dir.clone(),
        runs: args.runs,
        allow_few: args.allow_few,
        force: args.force,
        processes: true,
        device: args.device,
        only_missing: args.missing,
    };
    let stopped: Vec<String> = latency::other_processes()
        .into_iter()
        .filter(|p| p.stopped)
        .map(|p| p.to_string())
        .collect();
    if !stopped.is_empty() {
        eprintln!(
            "note: stopped stkd processes would load the machine if resumed while this runs: {}",
            stopped.join("; ")
        );
    }
    let summary = latency::retime::<B::InnerBackend>(&plans, &opts, &device, &mut |e| {
        if let RetimeEvent::Start { index: 0, .. } = e {
            eprintln!(
                "Timing alone: while this runs, no other process may load the machine (no \
                 sweep, build, test or benchmark); the store is checked for running runs \
                 before and after each shape, other work is not visible to it. {} \
                 repetitions per shape after {} warm-up, {} threads.",
                args.runs,
                latency::WARM_UP_RUNS,
                rayon::current_num_threads()
            );
        }
        eprintln!("{}", event_line(&e));
    })?;
    println!("shape\truns\tmedian_s\tq1_s\tq3_s\tR\tbatch\tdevice\tthreads\talone");
    for (g, l) in summary.timed.iter().chain(&summary.reused) {
        println!(
            "{}\t{}\t{:.6}\t{:.6}\t{:.6}\t{}\t{}\t{}\t{}\t{}",
            g.describe(),
            g.runs.len(),
            l.median_s,
            l.q1_s,
            l.q3_s,
            l.runs,
            l.batch,
            l.device,
            l.threads,
            l.alone
        );
    }
    for s in &summary.skipped {
        println!("not re-timed: {} {}: {}", s.hash, s.name, s.why);
    }
    eprintln!(
        "{} files {} written; `stkd report FILE` shows the figures",
        summary.written.len(),
        latency::LATENCY_FILE
    );
    Ok(())
}

/// A re-timing event as one line of text (for `retime` and a sweep's timing phase).
pub(crate) fn event_line(e: &RetimeEvent) -> String {
    match e {
        RetimeEvent::Start {
            index,
            shapes,
            group,
        } => format!(
            "[{}/{shapes}] {} ({} runs)…",
            index + 1,
            group.describe(),
            group.runs.len()
        ),
        RetimeEvent::Reused {
            index,
            shapes,
            group,
            latency: l,
            runs,
        } => format!(
            "[{}/{shapes}] {}: {runs} run(s) given the figure measured alone for run {} \
             (median {:.4} s, R = {}, build {})",
            index + 1,
            group.describe(),
            l.timed_run,
            l.median_s,
            l.runs,
            l.commit
        ),
        RetimeEvent::Done { latency: l, .. } => format!(
            "        median {:.4} s, IQR {:.4}–{:.4} s (R = {}, batch {}){}",
            l.median_s,
            l.q1_s,
            l.q3_s,
            l.runs,
            l.batch,
            if l.alone { "" } else { ", not alone" }
        ),
    }
}
