//! `stkd bench` and `stkd device-check`.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use tabled::Tabled;

use crate::{print_json, terminal_table};
use stkd::backend::DeviceSpec;

#[derive(Args)]
pub(crate) struct BenchArgs {
    #[arg(long, default_value = "cpu")]
    pub(crate) device: DeviceSpec,
    /// Also time burn's generic tensor-op path (fused CPU kernels off) in the same run and print
    /// the speed-up of the kernels.
    #[arg(long)]
    pub(crate) compare_generic: bool,
    /// Folder holding pemsd7/: at N = 228 the benchmark runs on PeMSD7(M)'s graph.
    #[arg(long, default_value = "data")]
    pub(crate) data_dir: PathBuf,
    /// Timed repetitions per figure (median reported).
    #[arg(long, default_value_t = 3)]
    pub(crate) reps: usize,
    #[arg(long, default_value_t = 228)]
    pub(crate) nodes: usize,
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct DeviceCheckArgs {
    /// The device to compare against the CPU, e.g. cuda:0.
    pub(crate) device: DeviceSpec,
    #[arg(long, default_value_t = 228)]
    pub(crate) nodes: usize,
    #[arg(long, default_value_t = 8)]
    pub(crate) batch: usize,
    /// Largest accepted difference relative to each quantity's scale.
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) tolerance: f64,
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn device_check_cmd<B: AutodiffBackend>(
    args: &DeviceCheckArgs,
    device: B::Device,
) -> Result<()> {
    #[derive(Tabled)]
    struct Row {
        quantity: &'static str,
        elements: usize,
        #[tabled(rename = "max |diff|")]
        diff: String,
        #[tabled(rename = "max |cpu|")]
        scale: String,
        relative: String,
        ok: &'static str,
    }
    let rows = stkd::bench::parity::<stkd::backend::Cpu, B>(
        args.nodes,
        args.batch,
        &Default::default(),
        &device,
    );
    let failed = rows
        .iter()
        .filter(|r| r.relative().is_nan() || r.relative() > args.tolerance)
        .count();
    if args.json {
        print_json(
            &serde_json::json!({"device": args.device, "tolerance": args.tolerance, "rows": rows, "failed": failed}),
        )?;
    } else {
        let table: Vec<Row> = rows
            .iter()
            .map(|r| Row {
                quantity: r.quantity,
                elements: r.elements,
                diff: format!("{:.3e}", r.max_abs_diff),
                scale: format!("{:.3e}", r.max_abs_ref),
                relative: format!("{:.3e}", r.relative()),
                ok: if r.relative() <= args.tolerance {
                    "yes"
                } else {
                    "NO"
                },
            })
            .collect();
        println!(
            "{} against cpu (N = {}, batch {}):",
            args.device, args.nodes, args.batch
        );
        println!("{}", terminal_table(table));
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} quantities differ from the CPU by more than {} (relative)",
            rows.len(),
            args.tolerance
        );
    }
    Ok(())
}

pub(crate) fn bench_cmd<B: AutodiffBackend>(args: &BenchArgs, device: B::Device) -> Result<()> {
    #[derive(Tabled)]
    struct Row {
        model: String,
        #[tabled(rename = "train step b=50 (s)")]
        train: String,
        #[tabled(rename = "reference (s)")]
        pt_train: String,
        #[tabled(rename = "ratio")]
        r_train: String,
        #[tabled(rename = "forward b=1140 (s)")]
        fwd: String,
        #[tabled(rename = "reference (s) ")]
        pt_fwd: String,
        #[tabled(rename = "ratio ")]
        r_fwd: String,
    }
    eprintln!(
        "bench on {} (N = {}, {} timed reps each, median; {} rayon threads)",
        args.device,
        args.nodes,
        args.reps,
        rayon::current_num_threads()
    );
    let (cheb, graph) = stkd::bench::graph(args.nodes, &args.data_dir);
    eprintln!("graph: {graph}");
    let measure = || {
        let rows = stkd::bench::run::<B>(
            &cheb,
            args.nodes,
            50,
            1140,
            args.reps.max(1),
            &device,
            |r| {
                eprintln!(
                    "{}: train step {:.3} s, forward {:.3} s (first, untimed: {:.3} s / {:.3} s)",
                    r.model, r.train_step_s, r.forward_s, r.warmup_train_s, r.warmup_forward_s
                )
            },
        );
        let stcd = stkd::bench::stcd_step::<B>(&cheb, args.nodes, 50, args.reps.max(1), &device);
        (rows, stcd)
    };
    let cpu = args.device == DeviceSpec::Cpu;
    let probe = || cpu.then(stkd::bench::cpu_probe_gflops);
    let probe_before = probe();
    // On a GPU: what this process found in the kernel caches and what it added (compiled).
    let cache_before = (!cpu).then(stkd::backend::gpu_cache_files);
    let (rows, stcd) = measure();
    let cache = cache_before.map(|before| (before, stkd::backend::gpu_cache_files()));
    let generic = args.compare_generic.then(|| {
        eprintln!("the same with the fused CPU kernels off (burn's generic ops):");
        stkd::kernels::without_fused(measure)
    });
    let probe = probe_before.zip(probe());
    if args.json {
        let generic = generic
            .as_ref()
            .map(|(rows, stcd)| serde_json::json!({"models": rows, "stcd_step_s": stcd}));
        return print_json(
            &serde_json::json!({"device": args.device, "graph": graph, "threads": rayon::current_num_threads(), "models": rows, "stcd_step_s": stcd, "stcd_step_target_s": stkd::bench::STCD_STEP_TARGET_S, "generic": generic, "cpu_probe_gflops": probe, "first_teacher_step_s": rows[0].warmup_train_s, "kernel_cache_files": cache.map(|(b, a)| serde_json::json!({"before": b, "after": a}))}),
        );
    }
    // Our figures against a reference, as `ours / reference` (below 1: ours is faster).
    let table = |rows: &[stkd::bench::BenchRow], reference: &dyn Fn(usize) -> (f64, f64)| {
        let rows: Vec<Row> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (rt, rf) = reference(i);
                Row {
                    model: r.model.to_string(),
                    train: format!("{:.3}", r.train_step_s),
                    pt_train: format!("{rt:.3}"),
                    r_train: format!("{:.2}x", r.train_step_s / rt),
                    fwd: format!("{:.3}", r.forward_s),
                    pt_fwd: format!("{rf:.3}"),
                    r_fwd: format!("{:.2}x", r.forward_s / rf),
                }
            })
            .collect();
        terminal_table(rows)
    };
    if let Some((before, after)) = cache {
        println!(
            "cold start: first teacher training step {:.2} s; kernel caches {} files before, {} after ({} compiled by this process)",
            rows[0].warmup_train_s,
            before,
            after,
            after.saturating_sub(before)
        );
    }
    println!("reference: PyTorch 2.15 on the same 2-core machine (2 threads)");
    if let Some((before, after)) = probe {
        println!("machine speed (1024^3 f32 product on all threads): {before:.1} GFLOP/s before the figures, {after:.1} after; the figures scale with it");
    }
    println!(
        "{}",
        table(&rows, &|i| (
            rows[i].pytorch_train_step_s,
            rows[i].pytorch_forward_s
        ))
    );
    println!(
        "STCD distillation step (teacher forward + student forward/backward + loss + Adam), batch 50: {:.3} s (target {:.2} s, ratio {:.2})",
        stcd,
        stkd::bench::STCD_STEP_TARGET_S,
        stcd / stkd::bench::STCD_STEP_TARGET_S
    );
    if let Some((generic_rows, generic_stcd)) = generic {
        println!("reference: burn's generic ops (fused CPU kernels off), same run");
        println!(
            "{}",
            table(&rows, &|i| (
                generic_rows[i].train_step_s,
                generic_rows[i].forward_s
            ))
        );
        println!(
            "STCD step: {:.3} s with the kernels, {:.3} s generic (ratio {:.2})",
            stcd,
            generic_stcd,
            stcd / generic_stcd
        );
    }
    Ok(())
}
