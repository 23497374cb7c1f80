//! `stkd train` and `stkd prune`: one ad-hoc run, its progress and its printed outcome.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use tabled::Tabled;

use stkd::backend::DeviceSpec;
use stkd::data::{Dataset, DatasetName};
use stkd::distill::{LossKind, LossSettings, Norm, Reduction};
use stkd::exec::{self, RunPaths, RunReport};
use stkd::experiment::{Network, RunConfig, RunSettings};
use stkd::model::{Preset, StgcnConfig};
use stkd::schedule::RunEvent;
use stkd::train::{Event, OptimizerKind, TrainConfig};

use super::info::DataArgs;
use crate::{print_json, terminal_table};

/// Options every ad-hoc run takes (`train` and `prune`).
#[derive(Args)]
pub(crate) struct RunOpts {
    #[arg(long, default_value_t = 50)]
    pub(crate) batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) lr: f64,
    /// adam or rmsprop.
    #[arg(long, default_value = "adam")]
    pub(crate) optimizer: OptimizerKind,
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Stop each epoch after this many minibatches (quick runs).
    #[arg(long)]
    pub(crate) max_steps_per_epoch: Option<usize>,
    /// cpu or cuda:<index>.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: DeviceSpec,
    /// Where run folders are written.
    #[arg(long, default_value = "results/runs")]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

impl RunOpts {
    /// The training settings of a run of `epochs` epochs (validated with the run's
    /// configuration: [`check_flags`]).
    fn train_config(&self, epochs: usize) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            optimizer: self.optimizer,
            seed: self.seed,
            max_steps_per_epoch: self.max_steps_per_epoch,
            ..TrainConfig::default()
        }
    }
}

#[derive(Args)]
pub(crate) struct TrainArgs {
    #[arg(long)]
    pub(crate) dataset: DatasetName,
    /// teacher, base or student.
    #[arg(long)]
    pub(crate) model: Preset,
    #[arg(long, default_value_t = 50)]
    pub(crate) epochs: usize,
    /// Loss: mse (W/O KD), rd-l2, rd-kl, skd, ord, tcd, scd, stcd.
    #[arg(long, default_value = "mse")]
    pub(crate) loss: LossKind,
    /// Checkpoint folder of a finished teacher run (for every loss but mse).
    #[arg(long)]
    pub(crate) teacher: Option<PathBuf>,
    #[arg(long)]
    pub(crate) beta: Option<f64>,
    #[arg(long)]
    pub(crate) alpha: Option<f64>,
    #[arg(long)]
    pub(crate) alpha1: Option<f64>,
    #[arg(long)]
    pub(crate) alpha2: Option<f64>,
    #[arg(long)]
    pub(crate) alpha3: Option<f64>,
    /// RD-KL softmax temperature.
    #[arg(long)]
    pub(crate) tau: Option<f64>,
    /// Distance of scalar differences: squared (default) or abs.
    #[arg(long)]
    pub(crate) norm: Option<String>,
    /// ORD reduction over elements: mean (default) or sum.
    #[arg(long)]
    pub(crate) ord_reduction: Option<String>,
    /// SKD: turn off gradient revision (plain weighted sum).
    #[arg(long)]
    pub(crate) no_gradient_revision: bool,
    /// Runs of the test-time measurement (default: 100 on a GPU; on the CPU as many as fit
    /// about a minute); 0 skips it.
    #[arg(long)]
    pub(crate) test_runs: Option<usize>,
    #[command(flatten)]
    pub(crate) run: RunOpts,
}

pub(crate) fn parse_norm(v: &Option<String>) -> Result<Option<Norm>> {
    Ok(match v.as_deref() {
        None => None,
        Some("squared") => Some(Norm::Squared),
        Some("abs") => Some(Norm::Abs),
        Some(o) => anyhow::bail!("--norm {o}: allowed squared or abs"),
    })
}

/// The run configuration an ad-hoc `stkd train` describes.
pub(crate) fn train_config(args: &TrainArgs) -> Result<RunConfig> {
    let ord_reduction = match args.ord_reduction.as_deref() {
        None => None,
        Some("mean") => Some(Reduction::Mean),
        Some("sum") => Some(Reduction::Sum),
        Some(o) => anyhow::bail!("--ord-reduction {o}: allowed mean or sum"),
    };
    let cfg = RunConfig::new(RunSettings {
        dataset: args.dataset,
        split_days: args.run.data.split_days()?,
        network: Network::New {
            preset: Some(args.model),
            channels: args.model.channels(),
            dropout: 0.0,
        },
        train: args.run.train_config(args.epochs),
        loss: args.loss,
        loss_settings: LossSettings {
            beta: args.beta,
            alpha: args.alpha,
            alpha1: args.alpha1,
            alpha2: args.alpha2,
            alpha3: args.alpha3,
            tau: args.tau,
            norm: parse_norm(&args.norm)?,
            ord_reduction,
            gradient_revision: Some(!args.no_gradient_revision),
        },
        test_runs: args.test_runs,
        prune: None,
        teacher: args
            .teacher
            .as_deref()
            .map(|t| checkpoint_of("--teacher", t))
            .transpose()?,
        base: None,
    });
    check_flags(&cfg)?;
    Ok(cfg)
}

/// The identity of the finished run whose folder `flag` names.
fn checkpoint_of(flag: &str, dir: &Path) -> Result<String> {
    exec::checkpoint_identity(dir).with_context(|| {
        format!(
            "{flag} {}: no checkpoint there (expected model.json and model.bin of a finished run)",
            dir.display()
        )
    })
}

/// [`RunConfig::problems`] in the command line's terms: each with the flag that sets it.
fn check_flags(cfg: &RunConfig) -> Result<()> {
    cfg.train.validate()?;
    let problems = cfg.problems();
    if problems.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = problems
        .iter()
        .map(|p| {
            let flag = match p.field {
                "teacher" => "--teacher",
                "prune" => "--method / --target / --steps / --interval-* / --finetune-*",
                _ => "--loss (and its weights)",
            };
            let hint = if p.rule == stkd::experiment::Rule::TeacherMissing {
                " (pass --teacher <run folder of a finished teacher run>)"
            } else {
                ""
            };
            format!("{flag}: {}{hint}", p.message)
        })
        .collect();
    anyhow::bail!("{}", lines.join("\n"))
}

/// Progress of one run on stderr ([`stkd::progress`]): a bar on a terminal, plain lines
/// otherwise.
pub(crate) fn train_progress() -> impl FnMut(Event) {
    let mut progress = stkd::progress::Progress::for_stderr(1);
    progress.start(0, "", "training");
    move |e: Event| progress.event(0, &RunEvent::from(e))
}

pub(crate) fn train_cmd<B: AutodiffBackend>(args: &TrainArgs, device: B::Device) -> Result<()> {
    let cfg = train_config(args)?;
    let data = args.run.data.load(args.dataset)?;
    for n in &data.notes {
        eprintln!("note: {n}");
    }
    let id = stkd::plan::run_hash(&cfg, &data.checksum);
    let run_dir = args.run.out.join(format!(
        "{}-{}-{}-{id}",
        args.dataset, args.model, args.loss
    ));
    eprintln!(
        "training {} on {} ({} parameters, loss {}) on {}, {} epochs, batch {}; run folder {}",
        args.model,
        args.dataset,
        cfg.model.param_count(),
        cfg.loss.kind,
        args.run.device,
        cfg.train.epochs,
        cfg.train.batch_size,
        run_dir.display()
    );
    let paths = RunPaths {
        run_dir,
        teacher_dir: args.teacher.clone(),
        base_dir: None,
        data_dir: args.run.data.data_dir.clone(),
    };
    execute_and_print::<B>(&cfg, &data, &paths, &args.run, &device)
}

/// Execute an ad-hoc run with a progress display, write its report next to its checkpoint and
/// print the outcome (JSON, or tables: metrics, pruning summary, checkpoint folder).
fn execute_and_print<B: AutodiffBackend>(
    cfg: &RunConfig,
    data: &Dataset,
    paths: &RunPaths,
    opts: &RunOpts,
    device: &B::Device,
) -> Result<()> {
    let mut progress = train_progress();
    let report = exec::execute::<B>(cfg, data, paths, opts.device, device, &mut progress)?;
    exec::write_report(&report, &paths.run_dir)?;
    if opts.json {
        return print_json(&report);
    }
    print_metrics(&report);
    if let Some(s) = &report.pruning {
        print_pruning(s);
    }
    println!("checkpoint: {}", paths.run_dir.display());
    Ok(())
}

pub(crate) fn print_metrics(r: &RunReport) {
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
    println!("{}", terminal_table(rows));
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
pub(crate) struct PruneArgs {
    #[arg(long)]
    pub(crate) dataset: DatasetName,
    /// Checkpoint folder of the trained run to prune (model.json and model.bin).
    #[arg(long)]
    pub(crate) base: PathBuf,
    /// Importance: taylor (gradients of the plain loss) or kdis (of the distillation loss
    /// against --teacher, Algorithm 1).
    #[arg(long)]
    pub(crate) method: stkd::prune::PruneMethod,
    /// Checkpoint folder of the teacher (for kdis and --finetune-loss kd).
    #[arg(long)]
    pub(crate) teacher: Option<PathBuf>,
    /// Share of the base network's parameters to remove, in percent, in (0, 100).
    #[arg(long)]
    pub(crate) target: f64,
    /// channel (whole channels; the result is compacted) or element (single weights).
    #[arg(long, default_value = "channel")]
    pub(crate) granularity: stkd::prune::Granularity,
    /// Pruning steps that reach the target [default: 4].
    #[arg(long, conflicts_with = "share_per_step")]
    pub(crate) steps: Option<usize>,
    /// Or: percent of the parameters removed per step.
    #[arg(long)]
    pub(crate) share_per_step: Option<f64>,
    /// A pruning step every this many epochs [default: 2].
    #[arg(long, conflicts_with = "interval_steps")]
    pub(crate) interval_epochs: Option<usize>,
    /// Or: a pruning step every this many minibatches.
    #[arg(long)]
    pub(crate) interval_steps: Option<usize>,
    /// Fine-tuning epochs after the last pruning step.
    #[arg(long, default_value_t = stkd::prune::DEFAULT_FINETUNE_EPOCHS)]
    pub(crate) finetune_epochs: usize,
    /// Fine-tuning loss: mse (Algorithm 1 line 25) or kd (the --loss against the teacher).
    #[arg(long, default_value = "mse")]
    pub(crate) finetune_loss: stkd::prune::FinetuneLoss,
    /// Distillation loss of kdis and of kd fine-tuning.
    #[arg(long, default_value = "stcd")]
    pub(crate) loss: LossKind,
    #[arg(long)]
    pub(crate) alpha1: Option<f64>,
    #[arg(long)]
    pub(crate) alpha2: Option<f64>,
    #[arg(long)]
    pub(crate) alpha3: Option<f64>,
    /// Timed runs (after a warm-up run) of the 9-step prediction of the base and of the pruned
    /// network, for the speed-up (default: 100 on a GPU, 2 on the CPU); 0 skips it.
    #[arg(long)]
    pub(crate) test_runs: Option<usize>,
    #[command(flatten)]
    pub(crate) run: RunOpts,
}

/// The run configuration an ad-hoc `stkd prune` describes.
pub(crate) fn prune_config(args: &PruneArgs) -> Result<RunConfig> {
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
    let json = std::fs::read_to_string(args.base.join("model.json")).with_context(|| {
        format!(
            "--base {}: no checkpoint there (expected model.json and model.bin of a finished run)",
            args.base.display()
        )
    })?;
    let model: StgcnConfig =
        serde_json::from_str(&json).context("reading the base's model.json")?;
    // The distillation loss only where pruning reads one (KDIS, KD fine-tuning).
    let (loss, loss_settings) = if pc.uses_teacher() {
        let settings = LossSettings {
            alpha1: args.alpha1,
            alpha2: args.alpha2,
            alpha3: args.alpha3,
            ..LossSettings::default()
        };
        (args.loss, settings)
    } else {
        (LossKind::Mse, LossSettings::default())
    };
    let cfg = RunConfig::new(RunSettings {
        dataset: args.dataset,
        split_days: args.run.data.split_days()?,
        network: Network::Trained {
            preset: Preset::ALL
                .into_iter()
                .find(|p| p.channels() == model.channels),
            model,
        },
        // The epochs are the fine-tuning epochs ([`RunConfig::new`]).
        train: args.run.train_config(pc.finetune_epochs),
        loss,
        loss_settings,
        test_runs: args.test_runs,
        teacher: args
            .teacher
            .as_deref()
            .map(|t| checkpoint_of("--teacher", t))
            .transpose()?,
        prune: Some(pc),
        base: Some(checkpoint_of("--base", &args.base)?),
    });
    check_flags(&cfg)?;
    Ok(cfg)
}

pub(crate) fn prune_cmd<B: AutodiffBackend>(args: &PruneArgs, device: B::Device) -> Result<()> {
    let cfg = prune_config(args)?;
    let pc = cfg.prune.clone().expect("a pruning run");
    let data = args.run.data.load(args.dataset)?;
    for n in &data.notes {
        eprintln!("note: {n}");
    }
    let id = stkd::plan::run_hash(&cfg, &data.checksum);
    let run_dir = args.run.out.join(format!(
        "{}-prune-{}-{}-{}-{id}",
        args.dataset, pc.method, pc.granularity, pc.target_pct
    ));
    let interval = match pc.interval {
        stkd::prune::Interval::Epochs(n) => format!("every {n} epoch(s)"),
        stkd::prune::Interval::Minibatches(n) => format!("every {n} minibatch(es)"),
    };
    eprintln!(
        "pruning {} ({:?}, {} parameters) on {} to {} % with {} ({} granularity, {} steps, {}, then {} fine-tuning epochs with {}) on {}; run folder {}",
        args.base.display(),
        cfg.model.channels,
        cfg.model.param_count(),
        args.dataset,
        pc.target_pct,
        pc.method,
        pc.granularity,
        pc.steps(),
        interval,
        pc.finetune_epochs,
        pc.finetune_loss,
        args.run.device,
        run_dir.display()
    );
    let paths = RunPaths {
        run_dir,
        teacher_dir: args.teacher.clone(),
        base_dir: Some(args.base.clone()),
        data_dir: args.run.data.data_dir.clone(),
    };
    execute_and_print::<B>(&cfg, &data, &paths, &args.run, &device)
}

pub(crate) fn print_pruning(s: &stkd::prune::PruneSummary) {
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
    println!("{}", terminal_table(rows));
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
