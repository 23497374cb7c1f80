//! The `stkd` command line: a thin layer that turns arguments into library calls and shows
//! progress.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tabled::{Table, Tabled};

use stkd::backend::{check_device, DeviceSpec};
use stkd::data::{DataConfig, Dataset, DatasetName};
use stkd::distill::{LossConfig, LossKind, Norm, Reduction};
use stkd::exec::{self, RunPaths, RunReport};
use stkd::model::{Preset, StgcnConfig};
use stkd::schedule::{self, LocalExecutor, RunEvent, SweepEvent, SweepOptions};
use stkd::spec::RunConfig;
use stkd::store::{RunStatus, Store};
use stkd::train::{Event, OptimizerKind, TrainConfig};

#[derive(Parser)]
#[command(
    name = "stkd",
    version,
    about = "Knowledge distillation and pruning of STGCN for traffic prediction"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Inspect a dataset.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// Inspect a network.
    Model {
        #[command(subcommand)]
        cmd: ModelCmd,
    },
    /// Train one network on one dataset (an ad-hoc run).
    Train(TrainArgs),
    /// Prune a trained network (Taylor or KDIS importance, Algorithm 1), fine-tune and compact it.
    Prune(PruneArgs),
    /// Time one training step and one forward step for teacher, base and student (N = 228).
    Bench(BenchArgs),
    /// Check that a device computes what the CPU computes: teacher inference, 9-step prediction,
    /// STCD loss, student gradients and three Adam steps on the same weights and inputs.
    DeviceCheck(DeviceCheckArgs),
    /// Run an experiment file: validate, plan, and execute every run not yet done.
    Sweep(SweepArgs),
    /// Show the runs of a store (or of one experiment file) and their state.
    Status(StatusArgs),
    /// Write the paper's tables (Markdown/CSV, beside the paper's values) and plots for an
    /// experiment file from the store.
    Report(ReportArgs),
    /// Execute one claimed run of a store (started by `sweep`; one process per run).
    #[command(hide = true)]
    RunOne(RunOneArgs),
}

#[derive(Args)]
struct SweepArgs {
    /// The experiment file (YAML).
    file: PathBuf,
    /// SQLite store of runs and results; run folders go next to it (`runs/<hash>/`).
    #[arg(long, default_value = stkd::store::DEFAULT_PATH)]
    store: PathBuf,
    /// Device slots: `cpu` or a list such as `cuda:0,cuda:1`.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    devices: Vec<DeviceSpec>,
    /// Runs at once on each device.
    #[arg(long, default_value_t = 1)]
    per_device: usize,
    /// Print the plan (runs, which are done, what each waits for) and run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Re-queue failed (and skipped) runs of this file.
    #[arg(long)]
    retry_failed: bool,
    /// Seconds without a heartbeat after which a running run counts as interrupted.
    #[arg(long, default_value_t = 60.0)]
    stale_after: f64,
    /// Folder holding pemsd7/ and pemsd8/.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// With --dry-run: the plan as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReportArgs {
    /// The experiment file (YAML).
    file: PathBuf,
    #[arg(long, default_value = stkd::store::DEFAULT_PATH)]
    store: PathBuf,
    /// Output folder.
    #[arg(long, default_value = "results/reports")]
    out: PathBuf,
    /// Formats, comma-separated: md, csv.
    #[arg(long, value_delimiter = ',', default_value = "md,csv")]
    format: Vec<stkd::report::Format>,
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
}

#[derive(Args)]
struct StatusArgs {
    /// Only the runs of this experiment file.
    file: Option<PathBuf>,
    #[arg(long, default_value = stkd::store::DEFAULT_PATH)]
    store: PathBuf,
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunOneArgs {
    hash: String,
    #[arg(long)]
    store: PathBuf,
    #[arg(long)]
    worker: String,
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Nodes, steps, days, filled gaps, edges, z-score statistics, windows per split.
    Info {
        dataset: DatasetName,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Parameters, channels and FLOPs of a preset on a dataset's graph.
    Summary {
        #[arg(long)]
        dataset: DatasetName,
        #[arg(long)]
        model: Preset,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Folder holding pemsd7/ and pemsd8/.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// The full ASTGCN PEMS08.npz (all 62 days); without it PeMSD8 uses the partial file.
    #[arg(long)]
    pems08_npz: Option<PathBuf>,
    /// Train/val/test days, e.g. 34,5,5.
    #[arg(long, value_delimiter = ',')]
    split_days: Option<Vec<usize>>,
}

impl DataArgs {
    /// `--split-days train,val,test`.
    fn split_days(&self) -> Result<Option<[usize; 3]>> {
        match self.split_days.as_deref() {
            None => Ok(None),
            Some(&[a, b, c]) => Ok(Some([a, b, c])),
            Some(v) => anyhow::bail!(
                "--split-days {v:?}: give three day counts, train,val,test (e.g. 34,5,5)"
            ),
        }
    }

    fn load(&self, dataset: DatasetName) -> Result<Dataset> {
        let mut cfg = DataConfig::new(dataset);
        cfg.data_dir = self.data_dir.clone();
        cfg.pems08_npz = self.pems08_npz.clone();
        cfg.split_days = self.split_days()?;
        Dataset::load(&cfg).with_context(|| format!("loading dataset {dataset}"))
    }
}

#[derive(Args)]
struct TrainArgs {
    #[arg(long)]
    dataset: DatasetName,
    /// teacher, base or student.
    #[arg(long)]
    model: Preset,
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// adam or rmsprop.
    #[arg(long, default_value = "adam")]
    optimizer: OptimizerKind,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop each epoch after this many minibatches (quick runs).
    #[arg(long)]
    max_steps_per_epoch: Option<usize>,
    /// Loss: mse (W/O KD), rd-l2, rd-kl, skd, ord, tcd, scd, stcd.
    #[arg(long, default_value = "mse")]
    loss: LossKind,
    /// Checkpoint folder of a finished teacher run (for every loss but mse).
    #[arg(long)]
    teacher: Option<PathBuf>,
    #[arg(long)]
    beta: Option<f64>,
    #[arg(long)]
    alpha: Option<f64>,
    #[arg(long)]
    alpha1: Option<f64>,
    #[arg(long)]
    alpha2: Option<f64>,
    #[arg(long)]
    alpha3: Option<f64>,
    /// RD-KL softmax temperature.
    #[arg(long)]
    tau: Option<f64>,
    /// Distance of scalar differences: squared (default) or abs.
    #[arg(long)]
    norm: Option<String>,
    /// ORD reduction over elements: mean (default) or sum.
    #[arg(long)]
    ord_reduction: Option<String>,
    /// SKD: turn off gradient revision (plain weighted sum).
    #[arg(long)]
    no_gradient_revision: bool,
    /// cpu or cuda:<index>.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Runs of the test-time measurement (default: 100 on a GPU; on the CPU as many as fit
    /// about a minute); 0 skips it.
    #[arg(long)]
    test_runs: Option<usize>,
    /// Where run folders are written.
    #[arg(long, default_value = "results/runs")]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Also time burn's generic tensor-op path (fused CPU kernels off) in the same run and print
    /// the speed-up of the kernels.
    #[arg(long)]
    compare_generic: bool,
    /// Folder holding pemsd7/: at N = 228 the benchmark runs on PeMSD7(M)'s graph.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Timed repetitions per figure (median reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    #[arg(long, default_value_t = 228)]
    nodes: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DeviceCheckArgs {
    /// The device to compare against the CPU, e.g. cuda:0.
    device: DeviceSpec,
    #[arg(long, default_value_t = 228)]
    nodes: usize,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Largest accepted difference relative to each quantity's scale.
    #[arg(long, default_value_t = 1e-3)]
    tolerance: f64,
    #[arg(long)]
    json: bool,
}

fn main() {
    stkd::backend::tune_allocator();
    restore_sigpipe();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Die quietly on a closed pipe (`stkd status | head`) like other command-line tools, instead of
/// panicking on the failed write.
fn restore_sigpipe() {
    #[cfg(unix)]
    {
        extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        const SIGPIPE: i32 = 13;
        const SIG_DFL: usize = 0;
        // SAFETY: resets one signal's disposition to the default before any threads start.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Data {
            cmd:
                DataCmd::Info {
                    dataset,
                    data,
                    json,
                },
        } => data_info(dataset, &data, json),
        Cmd::Model {
            cmd:
                ModelCmd::Summary {
                    dataset,
                    model,
                    json,
                },
        } => model_summary(dataset, model, json),
        Cmd::Train(args) => {
            check_device(args.device)?;
            with_backend!(args.device, B, dev => train_cmd::<B>(&args, dev))
        }
        Cmd::Prune(args) => {
            check_device(args.device)?;
            with_backend!(args.device, B, dev => prune_cmd::<B>(&args, dev))
        }
        Cmd::Bench(args) => {
            check_device(args.device)?;
            with_backend!(args.device, B, dev => bench_cmd::<B>(&args, dev))
        }
        Cmd::DeviceCheck(args) => {
            check_device(args.device)?;
            with_backend!(args.device, B, dev => device_check_cmd::<B>(&args, dev))
        }
        Cmd::Sweep(args) => sweep_cmd(&args),
        Cmd::Status(args) => status_cmd(&args),
        Cmd::Report(args) => {
            let written = stkd::report::write_reports(
                &args.file,
                &args.store,
                &args.data_dir,
                &args.out,
                &args.format,
            )?;
            for p in written {
                println!("{}", p.display());
            }
            Ok(())
        }
        Cmd::RunOne(args) => run_one_cmd(&args),
    }
}

/// Run `$body` with `$B` bound to the autodiff backend of `$device` and `$dev` to its device.
macro_rules! with_backend {
    ($device:expr, $B:ident, $dev:ident => $body:expr) => {{
        match $device {
            DeviceSpec::Cpu => {
                type $B = stkd::backend::Cpu;
                let $dev = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(i) => {
                type $B = stkd::backend::CudaAd;
                let $dev = burn::backend::cuda::CudaDevice::new(i);
                $body
            }
            #[cfg(not(feature = "cuda"))]
            DeviceSpec::Cuda(_) => unreachable!("check_device rejects CUDA without the feature"),
        }
    }};
}
use with_backend;

fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn data_info(dataset: DatasetName, args: &DataArgs, json: bool) -> Result<()> {
    let data = args.load(dataset)?;
    let info = data.info();
    if json {
        return print_json(&info);
    }
    #[derive(Tabled)]
    struct Row {
        field: &'static str,
        value: String,
    }
    let rows = vec![
        Row {
            field: "dataset",
            value: info.dataset.clone(),
        },
        Row {
            field: "nodes",
            value: info.nodes.to_string(),
        },
        Row {
            field: "steps",
            value: info.steps.to_string(),
        },
        Row {
            field: "days (train/val/test)",
            value: format!("{} ({:?})", info.days, info.split_days),
        },
        Row {
            field: "filled readings",
            value: info.filled.to_string(),
        },
        Row {
            field: "edges (directed)",
            value: info.edges.to_string(),
        },
        Row {
            field: "train mean / std (mph)",
            value: format!("{:.4} / {:.4}", info.train_mean, info.train_std),
        },
        Row {
            field: "windows (train/val/test)",
            value: format!(
                "{} / {} / {}",
                info.windows.train, info.windows.val, info.windows.test
            ),
        },
        Row {
            field: "checksum",
            value: info.checksum.clone(),
        },
    ];
    println!("{}", Table::new(rows));
    for n in &info.notes {
        println!("note: {n}");
    }
    Ok(())
}

#[derive(Serialize)]
struct ModelSummary {
    dataset: DatasetName,
    model: Preset,
    nodes: usize,
    channels: [[usize; 3]; 2],
    parameters: usize,
    flops_per_sample: u64,
    flops_counted: &'static str,
}

const FLOPS_COUNTED: &str = "2 x multiply-accumulates of one forward step (12 steps in, 1 out) for one sample: \
temporal convolutions, 1x1 bottleneck residuals, Chebyshev graph convolution (dense N x N node mixing for each \
of Ks = 3 terms, then theta), output 1x1 convolutions and the fully connected layer; elementwise work \
(bias, GLU gate, ReLU, sigmoid, LayerNorm, residual adds) is not counted";

fn model_summary(dataset: DatasetName, model: Preset, json: bool) -> Result<()> {
    let cfg = StgcnConfig::new(model.channels(), dataset.nodes(), 12);
    let s = ModelSummary {
        dataset,
        model,
        nodes: cfg.nodes,
        channels: cfg.channels,
        parameters: cfg.param_count(),
        flops_per_sample: cfg.flops_per_sample(),
        flops_counted: FLOPS_COUNTED,
    };
    if json {
        return print_json(&s);
    }
    println!(
        "{model} on {dataset} (N = {}): channels {:?}, {} parameters, {:.3} GFLOPs per sample and forward step",
        s.nodes,
        s.channels,
        s.parameters,
        s.flops_per_sample as f64 / 1e9
    );
    println!("FLOPs: {FLOPS_COUNTED}");
    Ok(())
}

/// A progress display: a bar on a terminal, plain lines otherwise (CI, logs).
fn progress_bar(len: u64) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let pb = ProgressBar::new(len);
        pb.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} (ETA {eta})")
                .expect("static template")
                .progress_chars("=> "),
        );
        pb.enable_steady_tick(Duration::from_millis(250));
        pb
    } else {
        ProgressBar::hidden()
    }
}

fn parse_norm(v: &Option<String>) -> Result<Option<Norm>> {
    Ok(match v.as_deref() {
        None => None,
        Some("squared") => Some(Norm::Squared),
        Some("abs") => Some(Norm::Abs),
        Some(o) => anyhow::bail!("--norm {o}: allowed squared or abs"),
    })
}

/// The run configuration an ad-hoc `stkd train` describes.
fn train_config(args: &TrainArgs) -> Result<RunConfig> {
    let mut loss = LossConfig::new(args.loss);
    let set = |slot: &mut f64, v: Option<f64>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(&mut loss.beta, args.beta);
    set(&mut loss.alpha, args.alpha);
    set(&mut loss.alpha1, args.alpha1);
    set(&mut loss.alpha2, args.alpha2);
    set(&mut loss.alpha3, args.alpha3);
    set(&mut loss.tau, args.tau);
    if let Some(n) = parse_norm(&args.norm)? {
        loss.norm = n;
    }
    match args.ord_reduction.as_deref() {
        None => {}
        Some("mean") => loss.ord_reduction = Reduction::Mean,
        Some("sum") => loss.ord_reduction = Reduction::Sum,
        Some(o) => anyhow::bail!("--ord-reduction {o}: allowed mean or sum"),
    }
    loss.gradient_revision = !args.no_gradient_revision;
    loss.validate().context("invalid loss options")?;
    match (args.loss.needs_teacher(), &args.teacher) {
        (true, None) => anyhow::bail!(
            "--loss {} distils from a teacher: pass --teacher <run folder of a finished teacher run>",
            args.loss
        ),
        (false, Some(_)) => anyhow::bail!("--teacher is given but --loss mse does not use a teacher"),
        (_, Some(t)) if !t.join("model.json").exists() => anyhow::bail!(
            "--teacher {}: no checkpoint there (expected model.json and model.bin of a finished run)",
            t.display()
        ),
        _ => {}
    }
    let split_days = args.data.split_days()?;
    let train = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        optimizer: args.optimizer,
        seed: args.seed,
        max_steps_per_epoch: args.max_steps_per_epoch,
        ..TrainConfig::default()
    };
    train.validate()?;
    Ok(RunConfig {
        dataset: args.dataset,
        split_days,
        preset: Some(args.model),
        model: StgcnConfig::new(args.model.channels(), args.dataset.nodes(), 12),
        train,
        loss: loss.canonical(),
        teacher: args.teacher.as_ref().map(|t| t.display().to_string()),
        test_runs: args.test_runs,
        prune: None,
        base: None,
    })
}

/// Progress of one run on stderr: a bar on a terminal, a line about every tenth of an epoch
/// otherwise.
fn train_progress() -> impl FnMut(Event) {
    let mut bar: Option<ProgressBar> = None;
    let tty = std::io::stderr().is_terminal();
    let mut steps_in_epoch = 0;
    move |e: Event| match e {
        Event::EpochStart {
            epoch,
            epochs,
            steps,
        } => {
            let pb = progress_bar(steps as u64);
            pb.set_prefix(format!("epoch {epoch}/{epochs}"));
            bar = Some(pb);
            steps_in_epoch = steps;
        }
        Event::Step { epoch, step, loss } => {
            if let Some(pb) = &bar {
                pb.set_message(format!("loss {loss:.4}"));
                pb.inc(1);
            }
            if !tty && step % steps_in_epoch.div_ceil(10).max(1) == 0 {
                eprintln!("epoch {epoch}: step {step}/{steps_in_epoch} loss {loss:.4}");
            }
        }
        Event::Evaluating { .. } => {
            if let Some(pb) = &bar {
                pb.set_message("validating".to_string());
            }
        }
        Event::Testing => eprintln!("evaluating the best model on the test split..."),
        Event::EpochEnd(r) => {
            if let Some(pb) = bar.take() {
                pb.finish_and_clear();
            }
            eprintln!(
                "epoch {:>3}: lr {:.2e}  train loss {:.5}  val MAE {:.3} mph  ({:.1} s)",
                r.epoch, r.lr, r.train_loss, r.val_mae, r.seconds
            );
        }
    }
}

fn train_cmd<B: AutodiffBackend>(args: &TrainArgs, device: B::Device) -> Result<()> {
    let cfg = train_config(args)?;
    let data = args.data.load(args.dataset)?;
    for n in &data.notes {
        eprintln!("note: {n}");
    }
    let id = stkd::plan::run_hash(&cfg, &data.checksum);
    let run_dir = args.out.join(format!(
        "{}-{}-{}-{id}",
        args.dataset, args.model, args.loss
    ));
    eprintln!(
        "training {} on {} ({} parameters, loss {}) on {}, {} epochs, batch {}; run folder {}",
        args.model,
        args.dataset,
        cfg.model.param_count(),
        cfg.loss.kind,
        args.device,
        cfg.train.epochs,
        cfg.train.batch_size,
        run_dir.display()
    );
    let paths = RunPaths {
        run_dir: run_dir.clone(),
        teacher_dir: args.teacher.clone(),
        base_dir: None,
        data_dir: args.data.data_dir.clone(),
    };
    let mut progress = train_progress();
    let report = exec::execute::<B>(&cfg, &data, &paths, args.device, &device, &mut progress)?;
    exec::write_report(&report, &run_dir)?;
    if args.json {
        return print_json(&report);
    }
    print_metrics(&report);
    println!("checkpoint: {}", run_dir.display());
    Ok(())
}

fn print_metrics(r: &RunReport) {
    #[derive(Tabled)]
    struct Row {
        horizon: String,
        #[tabled(rename = "MAPE %")]
        mape: String,
        #[tabled(rename = "MAE")]
        mae: String,
        #[tabled(rename = "RMSE")]
        rmse: String,
    }
    let o = &r.outcome;
    let rows: Vec<Row> = o
        .test
        .paper_horizons()
        .iter()
        .map(|s| Row {
            horizon: format!("{} min (step {})", s.minutes(), s.step),
            mape: format!("{:.3}", s.mape),
            mae: format!("{:.3}", s.mae),
            rmse: format!("{:.3}", s.rmse),
        })
        .collect();
    println!(
        "test metrics of the best epoch ({} of {}), {} windows, de-normalised speeds (mph):",
        o.best_epoch,
        o.epochs.len(),
        o.test.windows
    );
    println!("{}", Table::new(rows));
    println!(
        "parameters: {}  training time: {:.1} s",
        o.parameters, o.train_seconds
    );
    if let Some((picks, elements)) = r.attention {
        println!(
            "attention to the teacher (Table 3): {:.3} % ({picks} of {elements} elements)",
            100.0 * picks as f64 / elements.max(1) as f64
        );
    }
    if let Some(t) = r.test_time {
        println!(
            "test time: {:.3} s per 9-step prediction of a batch of {} (mean of {} runs)",
            t.seconds, t.batch, t.runs
        );
    }
}

// ---------------------------------------------------------------------------------------------
// stkd prune (issue #4)

#[derive(Args)]
struct PruneArgs {
    #[arg(long)]
    dataset: DatasetName,
    /// Checkpoint folder of the trained run to prune (model.json and model.bin).
    #[arg(long)]
    base: PathBuf,
    /// Importance: taylor (gradients of the plain loss) or kdis (of the distillation loss
    /// against --teacher, Algorithm 1).
    #[arg(long)]
    method: stkd::prune::PruneMethod,
    /// Checkpoint folder of the teacher (for kdis and --finetune-loss kd).
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Share of the base network's parameters to remove, in percent, in (0, 100).
    #[arg(long)]
    target: f64,
    /// channel (whole channels; the result is compacted) or element (single weights).
    #[arg(long, default_value = "channel")]
    granularity: stkd::prune::Granularity,
    /// Pruning steps that reach the target [default: 4].
    #[arg(long, conflicts_with = "share_per_step")]
    steps: Option<usize>,
    /// Or: percent of the parameters removed per step.
    #[arg(long)]
    share_per_step: Option<f64>,
    /// A pruning step every this many epochs [default: 2].
    #[arg(long, conflicts_with = "interval_steps")]
    interval_epochs: Option<usize>,
    /// Or: a pruning step every this many minibatches.
    #[arg(long)]
    interval_steps: Option<usize>,
    /// Fine-tuning epochs after the last pruning step.
    #[arg(long, default_value_t = stkd::prune::DEFAULT_FINETUNE_EPOCHS)]
    finetune_epochs: usize,
    /// Fine-tuning loss: mse (Algorithm 1 line 25) or kd (the --loss against the teacher).
    #[arg(long, default_value = "mse")]
    finetune_loss: stkd::prune::FinetuneLoss,
    /// Distillation loss of kdis and of kd fine-tuning.
    #[arg(long, default_value = "stcd")]
    loss: LossKind,
    #[arg(long)]
    alpha1: Option<f64>,
    #[arg(long)]
    alpha2: Option<f64>,
    #[arg(long)]
    alpha3: Option<f64>,
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value = "adam")]
    optimizer: OptimizerKind,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop each epoch after this many minibatches (quick runs).
    #[arg(long)]
    max_steps_per_epoch: Option<usize>,
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Timed runs (after a warm-up run) of the 9-step prediction of the base and of the pruned
    /// network, for the speed-up (default: 100 on a GPU, 2 on the CPU); 0 skips it.
    #[arg(long)]
    test_runs: Option<usize>,
    #[arg(long, default_value = "results/runs")]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[arg(long)]
    json: bool,
}

/// The run configuration an ad-hoc `stkd prune` describes.
fn prune_config(args: &PruneArgs) -> Result<RunConfig> {
    use stkd::prune::{Interval, PruneConfig, StepRule};
    let mut pc = PruneConfig::new(args.method, args.target);
    pc.granularity = args.granularity;
    if let Some(n) = args.steps {
        pc.schedule = StepRule::Steps(n);
    }
    if let Some(s) = args.share_per_step {
        pc.schedule = StepRule::SharePerStep(s);
    }
    if let Some(e) = args.interval_epochs {
        pc.interval = Interval::Epochs(e);
    }
    if let Some(m) = args.interval_steps {
        pc.interval = Interval::Minibatches(m);
    }
    pc.finetune_epochs = args.finetune_epochs;
    pc.finetune_loss = args.finetune_loss;
    pc.validate()?;
    let json = std::fs::read_to_string(args.base.join("model.json")).with_context(|| {
        format!(
            "--base {}: no checkpoint there (expected model.json and model.bin of a finished run)",
            args.base.display()
        )
    })?;
    let model: StgcnConfig =
        serde_json::from_str(&json).context("reading the base's model.json")?;
    let mut loss = LossConfig::new(LossKind::Mse);
    if pc.uses_teacher() {
        loss = LossConfig::new(args.loss);
        for (slot, v) in [
            (&mut loss.alpha1, args.alpha1),
            (&mut loss.alpha2, args.alpha2),
            (&mut loss.alpha3, args.alpha3),
        ] {
            if let Some(v) = v {
                *slot = v;
            }
        }
        loss.validate().context("invalid loss options")?;
        if !args.loss.needs_teacher() || args.loss == LossKind::Skd {
            anyhow::bail!("--loss {} cannot drive kdis or kd fine-tuning: use a distillation loss other than skd (stcd in the paper)", args.loss);
        }
        match &args.teacher {
            None => anyhow::bail!("--method {} / --finetune-loss {} distil from a teacher: pass --teacher <run folder>", pc.method, pc.finetune_loss),
            Some(t) if !t.join("model.json").exists() => anyhow::bail!("--teacher {}: no checkpoint there", t.display()),
            _ => {}
        }
    } else if args.teacher.is_some() {
        anyhow::bail!(
            "--teacher is given but taylor pruning with mse fine-tuning does not use one"
        );
    }
    let train = TrainConfig {
        epochs: pc.finetune_epochs.max(1),
        batch_size: args.batch_size,
        lr: args.lr,
        optimizer: args.optimizer,
        seed: args.seed,
        max_steps_per_epoch: args.max_steps_per_epoch,
        ..TrainConfig::default()
    };
    train.validate()?;
    Ok(RunConfig {
        dataset: args.dataset,
        split_days: args.data.split_days()?,
        preset: Preset::ALL
            .into_iter()
            .find(|p| p.channels() == model.channels),
        model,
        train,
        loss: loss.canonical(),
        teacher: args.teacher.as_ref().map(|t| t.display().to_string()),
        test_runs: args.test_runs,
        prune: Some(pc),
        base: Some(args.base.display().to_string()),
    })
}

fn prune_cmd<B: AutodiffBackend>(args: &PruneArgs, device: B::Device) -> Result<()> {
    let cfg = prune_config(args)?;
    let pc = cfg.prune.clone().expect("a pruning run");
    let data = args.data.load(args.dataset)?;
    for n in &data.notes {
        eprintln!("note: {n}");
    }
    let id = stkd::plan::run_hash(&cfg, &data.checksum);
    let run_dir = args.out.join(format!(
        "{}-prune-{}-{}-{}-{id}",
        args.dataset, pc.method, pc.granularity, pc.target_pct
    ));
    eprintln!(
        "pruning {} ({:?}, {} parameters) on {} to {} % with {} ({} granularity, {} steps, {:?}, then {} fine-tuning epochs with {}) on {}; run folder {}",
        args.base.display(),
        cfg.model.channels,
        cfg.model.param_count(),
        args.dataset,
        pc.target_pct,
        pc.method,
        pc.granularity,
        pc.steps(),
        pc.interval,
        pc.finetune_epochs,
        pc.finetune_loss,
        args.device,
        run_dir.display()
    );
    let paths = RunPaths {
        run_dir: run_dir.clone(),
        teacher_dir: args.teacher.clone(),
        base_dir: Some(args.base.clone()),
        data_dir: args.data.data_dir.clone(),
    };
    let mut progress = train_progress();
    let report = exec::execute::<B>(&cfg, &data, &paths, args.device, &device, &mut progress)?;
    exec::write_report(&report, &run_dir)?;
    if args.json {
        return print_json(&report);
    }
    print_metrics(&report);
    if let Some(s) = &report.pruning {
        print_pruning(s);
    }
    println!("checkpoint: {}", run_dir.display());
    Ok(())
}

fn print_pruning(s: &stkd::prune::PruneSummary) {
    #[derive(Tabled)]
    struct Row {
        step: usize,
        epoch: usize,
        minibatch: usize,
        #[tabled(rename = "aimed %")]
        goal: String,
        #[tabled(rename = "removed %")]
        removed: String,
        channels: String,
    }
    let rows: Vec<Row> = s
        .steps
        .iter()
        .map(|p| Row {
            step: p.step,
            epoch: p.epoch,
            minibatch: p.minibatch,
            goal: format!("{:.2}", 100.0 * p.goal_share),
            removed: format!("{:.2}", 100.0 * p.masked_share),
            channels: p.channels.map_or(String::new(), |c| format!("{c:?}")),
        })
        .collect();
    println!("{}", Table::new(rows));
    println!(
        "pruning ({} importance, {} granularity, target {} %): removed {} of {} parameters ({:.2} %)",
        s.method,
        s.granularity,
        s.target_pct,
        s.original_parameters - s.remaining_parameters,
        s.original_parameters,
        100.0 * s.masked_share
    );
    if let (Some(p), Some(c)) = (s.compact_parameters, s.compact_channels) {
        println!(
            "compacted network: channels {c:?}, {p} parameters ({:.2} % of the base); max |masked − compacted| output {:.2e}",
            100.0 * s.kept_share(),
            s.compaction_max_abs_diff.unwrap_or(f64::NAN)
        );
    }
    if let (Some(v), Some(b), Some(p)) = (s.speedup, s.base_test_time, s.pruned_test_time) {
        println!(
            "inference speed-up: {v:.2}x (9-step prediction of a batch of {}: base {:.4} s over {} runs, pruned {:.4} s over {} runs)",
            p.batch, b.seconds, b.runs, p.seconds, p.runs
        );
    }
}

fn device_check_cmd<B: AutodiffBackend>(args: &DeviceCheckArgs, device: B::Device) -> Result<()> {
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
        .filter(|r| !(r.relative() <= args.tolerance))
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
        println!("{}", Table::new(table));
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

fn bench_cmd<B: AutodiffBackend>(args: &BenchArgs, device: B::Device) -> Result<()> {
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
                    "{}: train step {:.3} s, forward {:.3} s",
                    r.model, r.train_step_s, r.forward_s
                )
            },
        );
        let stcd = stkd::bench::stcd_step::<B>(&cheb, args.nodes, 50, args.reps.max(1), &device);
        (rows, stcd)
    };
    let (rows, stcd) = measure();
    let generic = args.compare_generic.then(|| {
        eprintln!("the same with the fused CPU kernels off (burn's generic ops):");
        stkd::kernels::without_fused(measure)
    });
    if args.json {
        let generic = generic
            .as_ref()
            .map(|(rows, stcd)| serde_json::json!({"models": rows, "stcd_step_s": stcd}));
        return print_json(
            &serde_json::json!({"device": args.device, "graph": graph, "threads": rayon::current_num_threads(), "models": rows, "stcd_step_s": stcd, "stcd_step_target_s": stkd::bench::STCD_STEP_TARGET_S, "generic": generic}),
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
        Table::new(rows).to_string()
    };
    println!("reference: PyTorch 2.15 on the same 2-core machine (2 threads)");
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

/// Validate an experiment file; on problems print them all and exit with code 2 (nothing is
/// written anywhere).
fn load_experiment(file: &Path) -> stkd::spec::Experiment {
    match stkd::spec::load(file) {
        Ok(e) => e,
        Err(errors) => {
            eprint!("{errors}");
            std::process::exit(2);
        }
    }
}

fn plan_experiment(exp: &stkd::spec::Experiment, data_dir: &Path) -> Result<stkd::plan::Plan> {
    stkd::plan::plan(exp, |d| {
        let mut cfg = DataConfig::new(d);
        cfg.data_dir = data_dir.to_path_buf();
        Dataset::load(&cfg)
            .map(|data| data.checksum)
            .with_context(|| format!("loading dataset {d} to identify its runs"))
    })
}

/// Run statuses of `hashes` in an existing store (none if the store does not exist yet).
fn statuses(store: &Path, hashes: &[String]) -> Result<Vec<Option<stkd::store::RunRow>>> {
    if !store.exists() {
        return Ok(vec![None; hashes.len()]);
    }
    let s = Store::open(store)?;
    hashes.iter().map(|h| Ok(s.run(h)?)).collect()
}

#[derive(Serialize)]
struct PlannedRow<'a> {
    hash: &'a str,
    label: &'a str,
    variant: &'a str,
    dataset: DatasetName,
    status: String,
    waits_for: Vec<&'a str>,
    config: &'a RunConfig,
}

fn print_plan(plan: &stkd::plan::Plan, store: &Path, json: bool) -> Result<()> {
    let hashes: Vec<String> = plan.jobs.iter().map(|j| j.hash.clone()).collect();
    let rows = statuses(store, &hashes)?;
    let name_of = |h: &str| {
        plan.jobs
            .iter()
            .find(|j| j.hash == h)
            .map(|j| j.display_name())
            .unwrap_or_else(|| h.to_string())
    };
    let planned: Vec<PlannedRow> = plan
        .jobs
        .iter()
        .zip(&rows)
        .map(|(j, r)| PlannedRow {
            hash: &j.hash,
            label: &j.label,
            variant: &j.variant,
            dataset: j.config.dataset,
            status: r
                .as_ref()
                .map_or("new".to_string(), |r| r.status.to_string()),
            waits_for: j.deps.iter().map(String::as_str).collect(),
            config: &j.config,
        })
        .collect();
    if json {
        return print_json(&serde_json::json!({"experiment": plan.name, "runs": planned}));
    }
    #[derive(Tabled)]
    struct Row {
        run: String,
        hash: String,
        status: String,
        #[tabled(rename = "waits for")]
        waits: String,
    }
    let table: Vec<Row> = planned
        .iter()
        .zip(&plan.jobs)
        .map(|(p, j)| Row {
            run: j.display_name(),
            hash: p.hash.to_string(),
            status: p.status.clone(),
            waits: j
                .deps
                .iter()
                .map(|d| name_of(d))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let done = planned.iter().filter(|p| p.status == "done").count();
    println!(
        "plan of {}: {} runs, {} already done, {} to run (store {})",
        plan.name,
        planned.len(),
        done,
        planned.len() - done,
        store.display()
    );
    println!("{}", Table::new(table));
    Ok(())
}

/// Sweep progress: one bar for the sweep and one per active slot on a terminal; plain lines
/// otherwise.
struct SweepDisplay {
    multi: Option<indicatif::MultiProgress>,
    main: Option<ProgressBar>,
    slots: Vec<Option<(ProgressBar, String)>>,
    /// Steps per epoch of each slot's run (plain-line mode).
    plain_steps: Vec<usize>,
}

impl SweepDisplay {
    fn new(slots: usize) -> Self {
        let tty = std::io::stderr().is_terminal();
        SweepDisplay {
            multi: tty.then(indicatif::MultiProgress::new),
            main: None,
            slots: vec![None; slots],
            plain_steps: vec![0; slots],
        }
    }

    fn on(&mut self, ev: SweepEvent) {
        match ev {
            SweepEvent::Planned { total, done } => {
                eprintln!("{total} runs, {done} already done");
                if let Some(m) = &self.multi {
                    let pb = m.add(ProgressBar::new(total as u64));
                    pb.set_style(
                        ProgressStyle::with_template(
                            "sweep [{bar:30}] {pos}/{len} runs (ETA {eta})",
                        )
                        .expect("static template")
                        .progress_chars("=> "),
                    );
                    pb.set_position(done as u64);
                    pb.enable_steady_tick(Duration::from_millis(500));
                    self.main = Some(pb);
                }
            }
            SweepEvent::Started {
                slot,
                device,
                name,
                hash,
            } => {
                let line = format!("[{device}] {name} ({hash})");
                match &self.multi {
                    Some(m) => {
                        let pb = m.add(ProgressBar::new_spinner());
                        pb.set_style(
                            ProgressStyle::with_template("  {prefix} {msg}")
                                .expect("static template"),
                        );
                        pb.set_prefix(line.clone());
                        pb.set_message("starting");
                        pb.enable_steady_tick(Duration::from_millis(500));
                        self.slots[slot] = Some((pb, line));
                    }
                    None => eprintln!("start  {line}"),
                }
            }
            SweepEvent::Progress { slot, event } => {
                let Some((pb, line)) = self.slots.get_mut(slot).and_then(|s| s.as_mut()) else {
                    // No terminal: a line per epoch and about every tenth of an epoch.
                    match event {
                        RunEvent::Epoch { epoch, epochs, steps } => {
                            self.plain_steps[slot] = steps;
                            eprintln!("  slot {slot}: epoch {epoch}/{epochs}, {steps} steps");
                        }
                        RunEvent::Step { step, loss } => {
                            let every = self.plain_steps[slot].div_ceil(10).max(1);
                            if step % every == 0 {
                                eprintln!("  slot {slot}: step {step}/{} loss {loss:.4}", self.plain_steps[slot]);
                            }
                        }
                        RunEvent::EpochEnd { epoch, train_loss, val_mae } => eprintln!(
                            "  slot {slot}: epoch {epoch} train loss {train_loss:.5} val MAE {val_mae:.3}"
                        ),
                        RunEvent::Validating => eprintln!("  slot {slot}: validating"),
                        RunEvent::Testing => eprintln!("  slot {slot}: testing"),
                    }
                    return;
                };
                match event {
                    RunEvent::Epoch {
                        epoch,
                        epochs,
                        steps,
                    } => {
                        pb.set_length(steps as u64);
                        pb.set_position(0);
                        pb.set_message(format!("epoch {epoch}/{epochs}"));
                        *line = format!("{} epoch {epoch}/{epochs}", pb.prefix());
                    }
                    RunEvent::Step { step, loss } => pb.set_message(format!(
                        "{} step {step} loss {loss:.4}",
                        line.rsplit_once(']').map_or("", |x| x.1).trim()
                    )),
                    RunEvent::Validating => pb.set_message("validating"),
                    RunEvent::Testing => pb.set_message("testing"),
                    RunEvent::EpochEnd { epoch, val_mae, .. } => {
                        pb.set_message(format!("epoch {epoch} val MAE {val_mae:.3}"))
                    }
                }
            }
            SweepEvent::Finished {
                slot,
                name,
                hash,
                status,
                detail,
            } => {
                if let Some((pb, _)) = self.slots.get_mut(slot).and_then(|s| s.take()) {
                    pb.finish_and_clear();
                }
                if let Some(main) = &self.main {
                    if status == RunStatus::Done {
                        main.inc(1);
                    }
                }
                let msg = match detail {
                    Some(d) if status != RunStatus::Done => {
                        format!(": {}", d.lines().next().unwrap_or(""))
                    }
                    _ => String::new(),
                };
                let line = format!("{status:<7} {name} ({hash}){msg}");
                match &self.multi {
                    Some(m) => {
                        let _ = m.println(line);
                    }
                    None => eprintln!("{line}"),
                }
            }
            SweepEvent::Waiting { running_elsewhere } => {
                eprintln!("waiting for {running_elsewhere} run(s) that another sweep is executing")
            }
        }
    }
}

fn sweep_cmd(args: &SweepArgs) -> Result<()> {
    let exp = load_experiment(&args.file);
    let plan = plan_experiment(&exp, &args.data_dir)?;
    if args.dry_run {
        return print_plan(&plan, &args.store, args.json);
    }
    for d in &args.devices {
        check_device(*d)?;
    }
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    let cpu_slots = args
        .devices
        .iter()
        .filter(|d| **d == DeviceSpec::Cpu)
        .count()
        * args.per_device.max(1);
    let executor = LocalExecutor {
        exe: std::env::current_exe().context("locating the stkd binary")?,
        store: args.store.clone(),
        data_dir: args.data_dir.clone(),
        cpu_threads: (cpu_slots > 1).then(|| (rayon::current_num_threads() / cpu_slots).max(1)),
    };
    let opts = SweepOptions {
        store: args.store.clone(),
        devices: args.devices.clone(),
        per_device: args.per_device.max(1),
        retry_failed: args.retry_failed,
        stale_after_s: args.stale_after,
        data_dir: args.data_dir.clone(),
    };
    let mut display = SweepDisplay::new(args.devices.len() * args.per_device.max(1));
    let summary = schedule::run_sweep(
        &plan,
        &args.file,
        &exp.text,
        &opts,
        &executor,
        &interrupt,
        &mut |ev| display.on(ev),
    )?;
    if let Some(main) = &display.main {
        main.finish_and_clear();
    }
    eprintln!(
        "{}: {} runs: {} done, {} failed, {} skipped, {} not finished; {} executed now (store {})",
        plan.name,
        summary.total,
        summary.done,
        summary.failed,
        summary.skipped,
        summary.pending,
        summary.ran_now,
        args.store.display()
    );
    if summary.interrupted {
        eprintln!(
            "interrupted: unfinished runs go back to pending; run the same command to resume"
        );
        std::process::exit(130);
    }
    if summary.failed > 0 || summary.skipped > 0 {
        eprintln!(
            "see `stkd status {}` for the errors; `--retry-failed` re-queues them",
            args.file.display()
        );
        std::process::exit(1);
    }
    Ok(())
}

#[derive(Serialize)]
struct StatusRow {
    run: String,
    dataset: String,
    status: String,
    hash: String,
    device: Option<String>,
    attempts: u32,
    test_mae_15min: Option<f64>,
    error: Option<String>,
}

fn status_cmd(args: &StatusArgs) -> Result<()> {
    if !args.store.exists() {
        anyhow::bail!(
            "no store at {} (run a sweep first, or pass --store)",
            args.store.display()
        );
    }
    let store = Store::open(&args.store)?;
    let rows: Vec<(String, String, Option<stkd::store::RunRow>)> = match &args.file {
        Some(file) => {
            let exp = load_experiment(file);
            let plan = plan_experiment(&exp, &args.data_dir)?;
            plan.jobs
                .iter()
                .map(|j| Ok((j.display_name(), j.hash.clone(), store.run(&j.hash)?)))
                .collect::<Result<_>>()?
        }
        None => store
            .runs(None)?
            .into_iter()
            .map(|r| (r.label.clone(), r.hash.clone(), Some(r)))
            .collect(),
    };
    let mut out = Vec::new();
    for (name, hash, row) in rows {
        let mae15 = match &row {
            Some(r) if r.status == RunStatus::Done => store.result(&hash)?.and_then(|res| {
                res.metrics
                    .iter()
                    .find(|m| m.split == "test" && m.step == 3)
                    .map(|m| m.mae)
            }),
            _ => None,
        };
        out.push(StatusRow {
            run: name,
            dataset: row.as_ref().map_or(String::new(), |r| r.dataset.clone()),
            status: row
                .as_ref()
                .map_or("not registered".into(), |r| r.status.to_string()),
            hash,
            device: row.as_ref().and_then(|r| r.device.clone()),
            attempts: row.as_ref().map_or(0, |r| r.attempts),
            test_mae_15min: mae15,
            error: row.and_then(|r| r.error),
        });
    }
    if args.json {
        return print_json(&out);
    }
    #[derive(Tabled)]
    struct Row {
        run: String,
        status: String,
        hash: String,
        device: String,
        #[tabled(rename = "MAE 15 min")]
        mae: String,
        error: String,
    }
    let table: Vec<Row> = out
        .iter()
        .map(|r| Row {
            run: r.run.clone(),
            status: r.status.clone(),
            hash: r.hash.clone(),
            device: r.device.clone().unwrap_or_default(),
            mae: r
                .test_mae_15min
                .map_or(String::new(), |m| format!("{m:.3}")),
            error: r
                .error
                .as_deref()
                .map(|e| e.lines().next().unwrap_or("").chars().take(70).collect())
                .unwrap_or_default(),
        })
        .collect();
    println!("{}", Table::new(table));
    Ok(())
}

/// Ask the kernel to kill this process when its parent (the sweep) dies, so that after a
/// `kill -9` of the sweep no orphan keeps a run's heartbeat alive.
fn die_with_parent() {
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
        }
        const PR_SET_PDEATHSIG: i32 = 1;
        const SIGKILL: u64 = 9;
        // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a signal number for this process.
        unsafe {
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        }
    }
}

fn run_one_cmd(args: &RunOneArgs) -> Result<()> {
    die_with_parent();
    let mut store = Store::open(&args.store)?;
    let row = store
        .run(&args.hash)?
        .with_context(|| format!("run {} is not in {}", args.hash, args.store.display()))?;
    if row.status != RunStatus::Running || row.claimed_by.as_deref() != Some(args.worker.as_str()) {
        anyhow::bail!(
            "run {} is {} and not claimed by {}; refusing to execute it",
            args.hash,
            row.status,
            args.worker
        );
    }
    let base = args
        .store
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let runs_dir = base.join("runs");
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (stop, store_path, hash, worker) = (
            stop.clone(),
            args.store.clone(),
            args.hash.clone(),
            args.worker.clone(),
        );
        std::thread::spawn(move || {
            let Ok(s) = Store::open(&store_path) else {
                return;
            };
            while !stop.load(Ordering::SeqCst) {
                let _ = s.heartbeat(&hash, &worker);
                for _ in 0..20 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    let result = (|| -> Result<RunReport> {
        let cfg: RunConfig =
            serde_json::from_str(&row.config_json).context("reading the run's configuration")?;
        check_device(args.device)?;
        let data = exec::load_data(&cfg, &args.data_dir)?;
        let paths = RunPaths {
            run_dir: runs_dir.join(&args.hash),
            teacher_dir: cfg.teacher.as_ref().map(|t| runs_dir.join(t)),
            base_dir: cfg.base.as_ref().map(|b| runs_dir.join(b)),
            data_dir: args.data_dir.clone(),
        };
        let mut emit = |e: Event| {
            let ev = match e {
                Event::EpochStart {
                    epoch,
                    epochs,
                    steps,
                } => RunEvent::Epoch {
                    epoch,
                    epochs,
                    steps,
                },
                Event::Step { step, loss, .. } => RunEvent::Step { step, loss },
                Event::Evaluating { .. } => RunEvent::Validating,
                Event::Testing => RunEvent::Testing,
                Event::EpochEnd(r) => RunEvent::EpochEnd {
                    epoch: r.epoch,
                    train_loss: r.train_loss,
                    val_mae: r.val_mae,
                },
            };
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(&ev).expect("event serialises")
            );
            let _ = out.flush();
        };
        let report = with_backend!(args.device, B, dev => exec::execute::<B>(&cfg, &data, &paths, args.device, &dev, &mut emit))?;
        exec::write_report(&report, &paths.run_dir)?;
        Ok(report)
    })();
    stop.store(true, Ordering::SeqCst);
    let _ = heartbeat.join();
    match result {
        Ok(report) => {
            let rel = format!("runs/{}", args.hash);
            store.finish(&args.hash, &args.worker, &report.to_store_result(&rel))?;
            Ok(())
        }
        Err(e) => {
            store.fail(&args.hash, &args.worker, &format!("{e:#}"))?;
            Err(e)
        }
    }
}
