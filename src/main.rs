//! The `stkd` command line: a thin layer that turns arguments into library calls and shows
//! progress.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tabled::{Table, Tabled};

use stkd::backend::{check_device, DeviceSpec};
use stkd::data::{DataConfig, Dataset, DatasetName};
use stkd::model::{GraphKernel, Preset, StgcnConfig};
use stkd::train::{self, Event, OptimizerKind, TestTime, TrainConfig, TrainOutcome};

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
    /// Time one training step and one forward step for teacher, base and student (N = 228).
    Bench(BenchArgs),
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
    #[arg(long, value_delimiter = ',', num_args = 3)]
    split_days: Option<Vec<usize>>,
}

impl DataArgs {
    fn load(&self, dataset: DatasetName) -> Result<Dataset> {
        let mut cfg = DataConfig::new(dataset);
        cfg.data_dir = self.data_dir.clone();
        cfg.pems08_npz = self.pems08_npz.clone();
        cfg.split_days = self.split_days.as_ref().map(|v| [v[0], v[1], v[2]]);
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
    /// Timed repetitions per figure (median reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    #[arg(long, default_value_t = 228)]
    nodes: usize,
    #[arg(long)]
    json: bool,
}

fn main() {
    stkd::backend::tune_allocator();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
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
        Cmd::Bench(args) => {
            check_device(args.device)?;
            with_backend!(args.device, B, dev => bench_cmd::<B>(&args, dev))
        }
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

#[derive(Serialize)]
struct TrainReport<'a> {
    run_dir: &'a Path,
    dataset: DatasetName,
    model: Preset,
    device: DeviceSpec,
    data_checksum: &'a str,
    config: &'a TrainConfig,
    model_config: &'a StgcnConfig,
    #[serde(flatten)]
    outcome: &'a TrainOutcome,
    test_time: Option<TestTime>,
}

fn train_cmd<B: AutodiffBackend>(args: &TrainArgs, device: B::Device) -> Result<()> {
    let data = args.data.load(args.dataset)?;
    for n in &data.notes {
        eprintln!("note: {n}");
    }
    let model_cfg = StgcnConfig::new(args.model.channels(), data.nodes, data.n_his);
    let cfg = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        optimizer: args.optimizer,
        seed: args.seed,
        max_steps_per_epoch: args.max_steps_per_epoch,
        ..TrainConfig::default()
    };
    let id = run_id(&(&cfg, &model_cfg, &data.checksum, args.dataset));
    let run_dir = args
        .out
        .join(format!("{}-{}-{id}", args.dataset, args.model));
    eprintln!(
        "training {} on {} ({} parameters) on {}, {} epochs, batch {}; run folder {}",
        args.model,
        args.dataset,
        model_cfg.param_count(),
        args.device,
        cfg.epochs,
        cfg.batch_size,
        run_dir.display()
    );
    let mut bar: Option<ProgressBar> = None;
    let tty = std::io::stderr().is_terminal();
    let mut steps_in_epoch = 0;
    let mut on_event = |e: Event| match e {
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
            // Without a terminal, a plain line about every tenth of an epoch.
            if !tty && step % steps_in_epoch.div_ceil(10).max(1) == 0 {
                eprintln!("epoch {epoch}: step {step}/{steps_in_epoch} loss {loss:.4}");
            }
        }
        Event::Evaluating { .. } => {
            if let Some(pb) = &bar {
                pb.set_message("validating".to_string());
            }
        }
        Event::EpochEnd(r) => {
            if let Some(pb) = bar.take() {
                pb.finish_and_clear();
            }
            eprintln!(
                "epoch {:>3}: lr {:.2e}  train loss {:.5}  val MAE {:.3} mph  ({:.1} s)",
                r.epoch, r.lr, r.train_loss, r.val_mae, r.seconds
            );
        }
    };
    let (best, outcome) = train::train::<B>(
        &data,
        &model_cfg,
        &cfg,
        &device,
        Some(&run_dir),
        &mut on_event,
    )?;
    let test_time = match args.test_runs {
        Some(0) => None,
        runs => {
            let runs = runs.or(match args.device {
                DeviceSpec::Cpu => None,
                DeviceSpec::Cuda(_) => Some(100),
            });
            eprintln!("measuring test time (9-step prediction, batch 1140)...");
            let g = GraphKernel::<B::InnerBackend>::new(&data.cheb, data.nodes, &device);
            Some(train::measure_test_time(
                &best, &g, &data, 1140, runs, 60.0, &device,
            ))
        }
    };
    let report = TrainReport {
        run_dir: &run_dir,
        dataset: args.dataset,
        model: args.model,
        device: args.device,
        data_checksum: &data.checksum,
        config: &cfg,
        model_config: &model_cfg,
        outcome: &outcome,
        test_time,
    };
    std::fs::write(
        run_dir.join("outcome.json"),
        serde_json::to_string_pretty(&report)?,
    )
    .with_context(|| format!("writing {}", run_dir.join("outcome.json").display()))?;
    if args.json {
        return print_json(&report);
    }
    print_metrics(&outcome, test_time);
    println!("checkpoint: {}", run_dir.display());
    Ok(())
}

fn print_metrics(o: &TrainOutcome, test_time: Option<TestTime>) {
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
    if let Some(t) = test_time {
        println!(
            "test time: {:.3} s per 9-step prediction of a batch of {} (mean of {} runs)",
            t.seconds, t.batch, t.runs
        );
    }
}

/// A short stable identifier of a run's configuration.
fn run_id<T: Serialize>(v: &T) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(v).expect("serialisable config");
    let d = Sha256::digest(bytes);
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn bench_cmd<B: AutodiffBackend>(args: &BenchArgs, device: B::Device) -> Result<()> {
    #[derive(Tabled)]
    struct Row {
        model: String,
        #[tabled(rename = "train step b=50 (s)")]
        train: String,
        #[tabled(rename = "PyTorch (s)")]
        pt_train: String,
        #[tabled(rename = "ratio")]
        r_train: String,
        #[tabled(rename = "forward b=1140 (s)")]
        fwd: String,
        #[tabled(rename = "PyTorch (s)")]
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
    let rows = stkd::bench::run::<B>(args.nodes, 50, 1140, args.reps.max(1), &device, |r| {
        eprintln!(
            "{}: train step {:.3} s, forward {:.3} s",
            r.model, r.train_step_s, r.forward_s
        )
    });
    if args.json {
        return print_json(&rows);
    }
    let table: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            model: r.model.to_string(),
            train: format!("{:.3}", r.train_step_s),
            pt_train: format!("{:.3}", r.pytorch_train_step_s),
            r_train: format!("{:.2}x", r.train_step_s / r.pytorch_train_step_s),
            fwd: format!("{:.3}", r.forward_s),
            pt_fwd: format!("{:.2}", r.pytorch_forward_s),
            r_fwd: format!("{:.2}x", r.forward_s / r.pytorch_forward_s),
        })
        .collect();
    println!("{}", Table::new(table));
    println!("ratio = stkd time / PyTorch 2.15 time on the same 2-core machine (2 threads); below 1 is faster");
    Ok(())
}
