//! `stkd sweep`, `status` and `report` arguments, and the hidden `run-one` that executes one run of a sweep.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use indicatif::ProgressBar;
use serde::Serialize;
use tabled::Tabled;

use crate::{print_json, terminal_table, Exit};
use stkd::backend::DeviceSpec;
use stkd::data::DatasetName;
use stkd::exec::{self, RunReport};
use stkd::experiment::RunConfig;
use stkd::experiment::{is_slurm_mem, is_slurm_time, ExecutorKind, ExecutorSpec, SlurmOptions};
use stkd::schedule::{self, RunEvent, SweepEvent};
use stkd::status::PlanState;
use stkd::store::{RunStatus, Store};
use stkd::with_backend;

#[derive(Args)]
pub(crate) struct SweepArgs {
    /// The experiment file (YAML).
    pub(crate) file: PathBuf,
    /// SQLite store of runs and results; run folders go next to it (`runs/<hash>/`).
    #[arg(long, default_value = stkd::store::DEFAULT_PATH)]
    pub(crate) store: PathBuf,
    /// Device slots: `cpu` or a list such as `cuda:0,cuda:1`.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    pub(crate) devices: Vec<DeviceSpec>,
    /// Runs at once on each device.
    #[arg(long, default_value_t = 1)]
    pub(crate) per_device: usize,
    /// Print the plan (runs, which are done, what each waits for) and run nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Re-queue failed (and skipped) runs of this file.
    #[arg(long)]
    pub(crate) retry_failed: bool,
    /// Infrastructure faults of a run (its process killed by a signal, its heartbeat lost, its
    /// Slurm node failed or job preempted) retried from its checkpoint before it fails; errors
    /// of the run itself are never retried. Default: the file's `executor: {retries: N}`, else 2.
    #[arg(long, value_name = "N")]
    pub(crate) retries: Option<u32>,
    /// Keep runs whose best validation MAE is worse than predicting the training mean
    /// everywhere (by default they fail); like `mean_check: false` in the file.
    #[arg(long)]
    pub(crate) no_mean_check: bool,
    /// Seconds without a heartbeat after which a running run counts as interrupted (after a
    /// `kill -9`) and is claimed again; at least 10 (five heartbeat intervals of 2 s).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS", value_parser = parse_stale_after)]
    pub(crate) stale_after: f64,
    /// Folder holding pemsd7/ and pemsd8/.
    #[arg(long, default_value = "data")]
    pub(crate) data_dir: PathBuf,
    /// With --dry-run: the plan as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Where runs execute: `local` (child processes here) or `slurm` (one batch job per run;
    /// the store, run folders, data and the stkd binary must be on a file system the nodes
    /// share). Default: the file's `executor:` block, else local. Every `--slurm-*` setting
    /// and `--max-jobs` likewise overrides the file's.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(ExecutorKind::NAMES))]
    pub(crate) executor: Option<String>,
    /// Slurm: jobs in flight at once (replaces the device slots; default 4).
    #[arg(long)]
    pub(crate) max_jobs: Option<usize>,
    /// Slurm: `--partition` of every job.
    #[arg(long)]
    pub(crate) slurm_partition: Option<String>,
    /// Slurm: `--time` limit of every job (e.g. `2:00:00`).
    #[arg(long, value_parser = parse_slurm_time)]
    pub(crate) slurm_time: Option<String>,
    /// Slurm: `--cpus-per-task`.
    #[arg(long)]
    pub(crate) slurm_cpus: Option<usize>,
    /// Slurm: `--mem` (e.g. `8G`).
    #[arg(long, value_parser = parse_slurm_mem)]
    pub(crate) slurm_mem: Option<String>,
    /// Slurm: `--gres` (e.g. `gpu:1`; give `--devices cuda:0` so that runs use it).
    #[arg(long)]
    pub(crate) slurm_gres: Option<String>,
    /// Slurm: `--account`.
    #[arg(long)]
    pub(crate) slurm_account: Option<String>,
    /// Slurm: `--qos`.
    #[arg(long)]
    pub(crate) slurm_qos: Option<String>,
    /// Slurm: on Ctrl-C (or SIGTERM, SIGHUP) leave the jobs running instead of cancelling
    /// them; their runs go back to pending and a later `sweep` re-attaches to the jobs.
    #[arg(long)]
    pub(crate) detach: bool,
    /// Slurm: seconds a job may stay pending for a reason other than its turn in the queue (a
    /// request no node can meet, a partition's limit, its nodes down) before it is cancelled and
    /// its run failed with Slurm's reason. Default: the file's `executor: {pending_limit: N}`,
    /// else 600.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) slurm_pending_limit: Option<u64>,
    /// Slurm: a further `sbatch` argument, as given (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) slurm_arg: Vec<String>,
    /// Before starting runs, compile the kernels they need once, in one process, so the runs
    /// start with warm caches: `auto` does it for a CUDA device with the local executor.
    #[arg(long, value_enum, default_value_t = WarmUp::Auto)]
    pub(crate) warm_up: WarmUp,
    /// Skip the timing phase at the sweep's end (every finished network's test time measured
    /// alone, R = 20, into its run's `latency.json`; shapes measured before are not timed
    /// again). `stkd retime FILE --missing` does it later.
    #[arg(long)]
    pub(crate) no_timing: bool,
}

/// When `sweep` prepares a device's kernel caches before its runs (see [`stkd::warmup`]).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum WarmUp {
    Auto,
    Always,
    Never,
}

impl From<WarmUp> for stkd::sweep::WarmUp {
    fn from(w: WarmUp) -> Self {
        match w {
            WarmUp::Auto => stkd::sweep::WarmUp::Auto,
            WarmUp::Always => stkd::sweep::WarmUp::Always,
            WarmUp::Never => stkd::sweep::WarmUp::Never,
        }
    }
}

/// `stkd warm-up`: the process a sweep starts to prepare a device's kernel caches.
#[derive(Args)]
pub(crate) struct WarmUpArgs {
    #[arg(long, default_value = "cpu")]
    pub(crate) device: DeviceSpec,
}

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// The experiment file (YAML).
    pub(crate) file: PathBuf,
    #[arg(long, default_value = stkd::store::DEFAULT_PATH)]
    pub(crate) store: PathBuf,
    /// Output folder.
    #[arg(long, default_value = "results/reports")]
    pub(crate) out: PathBuf,
    /// Formats, comma-separated: md, csv.
    #[arg(long, value_delimiter = ',', default_value = "md,csv")]
    pub(crate) format: Vec<stkd::report::Format>,
    #[arg(long, default_value = "data")]
    pub(crate) data_dir: PathBuf,
    /// Minutes ahead of the MAE in the Pareto section: 15, 30 or 45.
    #[arg(long, default_value_t = 15, value_parser = parse_horizon)]
    pub(crate) pareto_horizon: u32,
    /// Print a diff against earlier results instead of writing the report: a git revision
    /// (its committed records and experiment file), a folder of records or a store file.
    #[arg(long, value_name = "REF")]
    pub(crate) against: Option<String>,
    /// With --against: the diff as JSON.
    #[arg(long, requires = "against")]
    pub(crate) json: bool,
    /// With --against: exit with status 3 when a cell is worse beyond the seeds' noise after the
    /// correction for all the diff's judged cells.
    #[arg(long, requires = "against")]
    pub(crate) fail_on_regression: bool,
}

fn parse_horizon(s: &str) -> Result<u32, String> {
    match s.trim().trim_end_matches("min").trim().parse::<u32>() {
        Ok(h) if stkd::report::paper::HORIZONS.contains(&h) => Ok(h),
        _ => Err(format!(
            "`{s}` is not a horizon: expected 15, 30 or 45 (minutes)"
        )),
    }
}

#[derive(Args)]
pub(crate) struct StatusArgs {
    /// Only the runs of this experiment file.
    pub(crate) file: Option<PathBuf>,
    #[arg(long, default_value = stkd::store::DEFAULT_PATH)]
    pub(crate) store: PathBuf,
    #[arg(long, default_value = "data")]
    pub(crate) data_dir: PathBuf,
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct RunOneArgs {
    pub(crate) hash: String,
    #[arg(long)]
    pub(crate) store: PathBuf,
    #[arg(long)]
    pub(crate) worker: String,
    #[arg(long, default_value = "cpu")]
    pub(crate) device: DeviceSpec,
    #[arg(long, default_value = "data")]
    pub(crate) data_dir: PathBuf,
    /// Run without the store (a cluster job): read the run from its folder's `job.json`,
    /// leave the outcome there for the sweep that submitted it.
    #[arg(long)]
    pub(crate) detached: bool,
    /// Do not fail the run when it is worse than predicting the training mean.
    #[arg(long)]
    pub(crate) no_mean_check: bool,
}

/// `--stale-after`: a number of seconds of at least [`schedule::MIN_STALE_AFTER_S`].
fn parse_stale_after(text: &str) -> std::result::Result<f64, String> {
    let seconds: f64 = text.trim().parse().map_err(|_| {
        format!(
            "expected a number of seconds (at least {})",
            schedule::MIN_STALE_AFTER_S
        )
    })?;
    // `inf`, `nan` and out-of-range numbers (`1e999`) parse as floats, but are no time.
    if !seconds.is_finite() {
        return Err(format!(
            "`{}` is not a finite number of seconds; allowed: a number of seconds, {} or more \
             ({} heartbeat intervals of {} s)",
            text.trim(),
            schedule::MIN_STALE_AFTER_S,
            schedule::MISSED_HEARTBEATS,
            schedule::HEARTBEAT_INTERVAL.as_secs(),
        ));
    }
    schedule::check_stale_after(seconds).map_err(|_| {
        format!(
            "{seconds} s is below the safe minimum: runs send a heartbeat every {} s, so a live \
             run could be taken for an interrupted one and executed twice; allowed: {} or more \
             seconds ({} heartbeat intervals)",
            schedule::HEARTBEAT_INTERVAL.as_secs(),
            schedule::MIN_STALE_AFTER_S,
            schedule::MISSED_HEARTBEATS,
        )
    })
}

/// Validate an experiment file; on problems print them all and end with exit status 2
/// (nothing is written anywhere).
pub(crate) fn load_experiment(file: &Path) -> Result<stkd::experiment::Experiment> {
    stkd::experiment::load(file).map_err(|errors| {
        eprint!("{errors}");
        Exit(2).into()
    })
}

pub(crate) fn plan_experiment(
    exp: &stkd::experiment::Experiment,
    data_dir: &Path,
) -> Result<stkd::plan::Plan> {
    Ok(stkd::plan::plan_in(exp, data_dir)?)
}

#[derive(Serialize)]
pub(crate) struct PlannedRow<'a> {
    pub(crate) hash: &'a str,
    pub(crate) label: &'a str,
    pub(crate) variant: &'a str,
    pub(crate) dataset: DatasetName,
    pub(crate) status: String,
    pub(crate) waits_for: Vec<&'a str>,
    pub(crate) config: &'a RunConfig,
}

pub(crate) fn print_plan(plan: &stkd::plan::Plan, store: &Path, json: bool) -> Result<()> {
    let hashes: Vec<String> = plan.jobs.iter().map(|j| j.hash.clone()).collect();
    let states = stkd::status::plan_states(store, &hashes)?;
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
        .zip(&states)
        .map(|(j, s)| PlannedRow {
            hash: &j.hash,
            label: &j.label,
            variant: &j.variant,
            dataset: j.config.dataset,
            status: s.as_str().to_string(),
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
    let count = |f: fn(&PlanState) -> bool| states.iter().filter(|s| f(s)).count();
    let done = count(|s| s.is_done());
    let recorded = count(|s| *s == PlanState::Recorded);
    let kept = count(|s| s.is_kept());
    println!(
        "plan of {}: {} runs, {} already done{}, {} to run{} (store {})",
        plan.name,
        planned.len(),
        done,
        if recorded > 0 {
            format!(" ({recorded} in the records only: a sweep takes them from there)")
        } else {
            String::new()
        },
        planned.len() - done - kept,
        if kept > 0 {
            format!(", {kept} failed or skipped (kept; `--retry-failed` runs them again)")
        } else {
            String::new()
        },
        store.display()
    );
    println!("{}", terminal_table(table));
    let store_now = Store::open_read_only(store).ok().flatten();
    for st in &plan.studies {
        let proposed = match &store_now {
            Some(s) => s.trials(&st.key).map_or(0, |t| t.len()),
            None => 0,
        };
        let search = &st.study.search;
        println!(
            "search {} {}: {} trials ({} sampler, {proposed} proposed so far) over {}, each waiting for {}",
            st.study.label,
            st.study.dataset,
            search.trials,
            format!("{:?}", search.sampler).to_lowercase(),
            st.study.fields.join(", "),
            if st.deps.is_empty() {
                "nothing".to_string()
            } else {
                st.deps.iter().map(|d| name_of(d)).collect::<Vec<_>>().join(", ")
            }
        );
    }
    Ok(())
}

/// Sweep progress ([`stkd::progress`]): one bar for the sweep and one per active slot on a
/// terminal; plain lines otherwise.
pub(crate) struct SweepDisplay {
    progress: stkd::progress::Progress,
    main: Option<ProgressBar>,
    warm: Option<ProgressBar>,
}

impl SweepDisplay {
    fn new(slots: usize) -> Self {
        SweepDisplay {
            progress: stkd::progress::Progress::for_stderr(slots),
            main: None,
            warm: None,
        }
    }

    fn notice(&mut self, n: stkd::sweep::Notice) {
        use stkd::sweep::Notice;
        match n {
            Notice::Schedule(ev) => self.on(ev),
            Notice::WarmUpStarted { device, kinds } => {
                self.progress.println(&format!(
                    "preparing {device}'s kernel caches for {kinds} kind(s) of run before \
                     starting them"
                ));
                self.warm = self
                    .progress
                    .overall("warm-up [{bar:30}] {pos}/{len} {msg}", kinds, 0);
            }
            Notice::WarmedUp { line, kinds } => match &self.warm {
                Some(pb) => {
                    pb.set_message(line.shape);
                    pb.inc(1);
                }
                None => self.progress.println(&format!(
                    "warm-up {}/{kinds}: {} ({:.1} s)",
                    line.index + 1,
                    line.shape,
                    line.seconds
                )),
            },
            Notice::WarmUpEnded { outcome } => {
                if let Some(pb) = self.warm.take() {
                    pb.finish_and_clear();
                }
                self.progress.println(&match outcome {
                    Ok((seconds, cache)) => format!(
                        "kernel caches ready in {seconds:.1} s{}",
                        cache.map_or(String::new(), |(d, n)| format!(
                            " (cache {}, {n} files)",
                            d.display()
                        ))
                    ),
                    Err(why) => format!("warning: {why}; each run compiles its own kernels"),
                });
            }
            Notice::TimingStarted { device, threads } => {
                if let Some(main) = self.main.take() {
                    main.finish_and_clear();
                }
                self.progress.println(&format!(
                    "timing phase: each finished network's test time measured alone on \
                     {device} ({threads} threads, R = {}), unless measured before",
                    stkd::latency::DEFAULT_RUNS
                ))
            }
            Notice::Timing(e) => self.progress.println(&super::retime::event_line(&e)),
            Notice::TimingSkipped { why } => self
                .progress
                .println(&format!("timing phase skipped: {why}")),
        }
    }

    fn on(&mut self, ev: SweepEvent) {
        match ev {
            SweepEvent::Imported { finished, resumed } => self.progress.println(&format!(
                "from the committed records: {finished} finished runs (not computed again), \
                 {resumed} checkpoints of unfinished runs"
            )),
            SweepEvent::Planned { total, done } => {
                self.progress
                    .println(&format!("{total} runs, {done} already done"));
                self.main = self.progress.overall(
                    "sweep [{bar:30}] {pos}/{len} runs (ETA {eta})",
                    total,
                    done,
                );
            }
            SweepEvent::Started {
                slot,
                device,
                name,
                hash,
            } => {
                let title = format!("[{device}] {name} ({hash})");
                self.progress.println(&format!("start  {title}"));
                self.progress
                    .start(slot, &format!("  slot {slot}: "), &title);
            }
            SweepEvent::Progress { slot, event } => self.progress.event(slot, &event),
            SweepEvent::Finished {
                slot,
                name,
                hash,
                status,
                detail,
            } => {
                self.progress.finish(slot);
                if let Some(main) = &self.main {
                    if matches!(status, RunStatus::Done | RunStatus::Pruned) {
                        main.inc(1);
                    }
                }
                let msg = match detail {
                    Some(d) if status != RunStatus::Done => {
                        format!(": {}", d.lines().next().unwrap_or(""))
                    }
                    _ => String::new(),
                };
                self.progress
                    .println(&format!("{status:<7} {name} ({hash}){msg}"));
            }
            SweepEvent::Waiting { running_elsewhere } => self.progress.println(&format!(
                "waiting for {running_elsewhere} run(s) that another sweep is executing"
            )),
        }
    }
}

impl SweepArgs {
    /// The command line's executor settings (each `None` where not given).
    fn executor_spec(&self) -> ExecutorSpec {
        ExecutorSpec {
            kind: self.executor.as_deref().and_then(ExecutorKind::parse),
            max_jobs: self.max_jobs,
            retries: self.retries,
            slurm: SlurmOptions {
                partition: self.slurm_partition.clone(),
                time: self.slurm_time.clone(),
                cpus: self.slurm_cpus,
                mem: self.slurm_mem.clone(),
                gres: self.slurm_gres.clone(),
                account: self.slurm_account.clone(),
                qos: self.slurm_qos.clone(),
                extra: self.slurm_arg.clone(),
                pending_limit_s: self.slurm_pending_limit,
            },
        }
    }
}

fn parse_slurm_time(s: &str) -> Result<String, String> {
    if is_slurm_time(s) {
        Ok(s.to_string())
    } else {
        Err(
            "expected a Slurm time limit: minutes, hours:minutes:seconds or \
             days-hours:minutes:seconds (e.g. 4:00:00)"
                .into(),
        )
    }
}

fn parse_slurm_mem(s: &str) -> Result<String, String> {
    if is_slurm_mem(s) {
        Ok(s.to_string())
    } else {
        Err(
            "expected a memory size: a whole number with an optional unit K, M, G or T (e.g. 16G)"
                .into(),
        )
    }
}

pub(crate) fn sweep_cmd(args: &SweepArgs) -> Result<()> {
    let exp = load_experiment(&args.file)?;
    let plan = plan_experiment(&exp, &args.data_dir)?;
    if args.dry_run {
        print_plan(&plan, &args.store, args.json)?;
        if !args.json {
            for line in stkd::report::estimate::of_plan(&exp, &plan, &args.store)?.lines() {
                println!("{line}");
            }
        }
        return Ok(());
    }
    let request = stkd::sweep::SweepRequest {
        file: args.file.clone(),
        store: args.store.clone(),
        data_dir: args.data_dir.clone(),
        devices: args.devices.clone(),
        per_device: args.per_device,
        retry_failed: args.retry_failed,
        stale_after_s: args.stale_after,
        executor: args.executor_spec(),
        no_mean_check: args.no_mean_check,
        detach: args.detach,
        warm_up: args.warm_up.into(),
        timing: !args.no_timing,
        exe: std::env::current_exe().context("locating the stkd binary")?,
    };
    let signals = stkd::sweep::StopSignals::install()?;
    let mut display = SweepDisplay::new(stkd::sweep::slots(&request, &exp));
    let outcome = stkd::sweep::run(&request, &exp, &plan, &signals, &mut |n| display.notice(n))?;
    if let Some(main) = &display.main {
        main.finish_and_clear();
    }
    let summary = &outcome.summary;
    eprintln!(
        "{}: {} runs: {} done, {} failed, {} skipped, {} pruned, {} not finished; {} executed now (store {})",
        plan.name,
        summary.total,
        summary.done,
        summary.failed,
        summary.skipped,
        summary.pruned,
        summary.pending,
        summary.ran_now,
        args.store.display()
    );
    print_closing_table(&exp, &plan, &args.store)?;
    if let Some(sig) = outcome.signal {
        eprintln!(
            "interrupted by {}: unfinished runs went back to pending; run the same command to \
             resume",
            stkd::sweep::stop_signal_name(sig)
        );
        return Err(Exit(128 + sig).into());
    }
    if summary.failed > 0 || summary.skipped > 0 {
        eprintln!(
            "see `stkd status {}` for the errors; `--retry-failed` re-queues them",
            args.file.display()
        );
        return Err(Exit(1).into());
    }
    Ok(())
}

/// `stkd warm-up`: reads the shapes (JSON) on stdin, runs each once on the device and prints a
/// [`WarmedUp`] line after each.
pub(crate) fn warm_up_cmd<B: AutodiffBackend>(device: B::Device) -> Result<()> {
    let shapes: Vec<stkd::warmup::WarmShape> =
        serde_json::from_reader(std::io::stdin().lock()).context("reading the shapes on stdin")?;
    for (index, shape) in shapes.iter().enumerate() {
        let t = std::time::Instant::now();
        stkd::warmup::warm_up::<B>(shape, &device)
            .with_context(|| format!("warming up {}", shape.describe()))?;
        let line = stkd::warmup::WarmedUp {
            index,
            shape: shape.describe(),
            seconds: t.elapsed().as_secs_f64(),
        };
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}

/// The runs of the sweep with their results (`stkd::report::summary`), on standard output.
fn print_closing_table(
    exp: &stkd::experiment::Experiment,
    plan: &stkd::plan::Plan,
    store: &Path,
) -> Result<()> {
    let st = Store::open_read_only(store)?;
    let data = stkd::report::collect::collect_store(exp, plan, st.as_ref())?;
    #[derive(Tabled)]
    struct Row {
        run: String,
        status: String,
        #[tabled(rename = "MAE 15 / 30 / 45 min")]
        mae: String,
        #[tabled(rename = "RMSE 15 / 30 / 45 min")]
        rmse: String,
        #[tabled(rename = "training")]
        train: String,
    }
    let rows: Vec<Row> = stkd::report::summary::run_lines(&data)
        .into_iter()
        .map(|l| Row {
            run: l.run,
            status: l.state,
            mae: stkd::report::summary::three(&l.mae),
            rmse: stkd::report::summary::three(&l.rmse),
            train: l
                .train_seconds
                .map_or(String::new(), stkd::report::estimate::duration),
        })
        .collect();
    if !rows.is_empty() {
        println!("{}", terminal_table(rows));
    }
    Ok(())
}

/// Exit status of `report --against … --fail-on-regression` when a cell got worse beyond noise
/// after the correction for the diff's judged cells.
pub(crate) const EXIT_REGRESSION: i32 = 3;

/// `stkd report`: write the report files, or with `--against` print the diff.
pub(crate) fn report_cmd(args: &ReportArgs) -> Result<()> {
    let Some(reference) = &args.against else {
        let written = stkd::report::write_reports(
            &args.file,
            &args.store,
            &args.data_dir,
            &args.out,
            &args.format,
            args.pareto_horizon,
        )?;
        for p in written {
            println!("{}", p.display());
        }
        return Ok(());
    };
    let d = stkd::report::diff_against(&args.file, &args.store, &args.data_dir, reference)?;
    if args.json {
        print!("{}", stkd::report::diff::render_diff_json(&d));
    } else {
        print!("{}", stkd::report::diff::render_diff_markdown(&d));
    }
    if args.fail_on_regression && d.regressions() > 0 {
        eprintln!(
            "{} cell{} worse beyond noise than {}, after the correction for {} judged cells",
            d.regressions(),
            if d.regressions() == 1 { "" } else { "s" },
            d.before,
            d.summary.judged
        );
        return Err(Exit(EXIT_REGRESSION).into());
    }
    Ok(())
}

pub(crate) fn status_cmd(args: &StatusArgs) -> Result<()> {
    // Read-only: `status` never creates, migrates or writes a store (an empty file is a store
    // without runs).
    let store = Store::open_read_only(&args.store)?;
    if store.is_none() && !args.store.exists() {
        anyhow::bail!(
            "no store at {} (run a sweep first, or pass --store)",
            args.store.display()
        );
    }
    let out = match &args.file {
        Some(file) => {
            let exp = load_experiment(file)?;
            let plan = plan_experiment(&exp, &args.data_dir)?;
            stkd::status::of_experiment(&exp, &plan, store.as_ref())?
        }
        None => match &store {
            Some(s) => stkd::status::of_store(s)?,
            None => Vec::new(),
        },
    };
    if args.json {
        return print_json(&out);
    }
    #[derive(Tabled)]
    struct Row {
        run: String,
        status: String,
        hash: String,
        device: String,
        job: String,
        attempts: String,
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
            job: match (&r.job, &r.slurm_state, &r.slurm_reason) {
                (Some(j), Some(s), Some(why)) => format!("{j} ({s}: {why})"),
                (Some(j), Some(s), None) => format!("{j} ({s})"),
                (Some(j), None, _) => j.clone(),
                _ => String::new(),
            },
            attempts: match r.faults.len() {
                0 => r.attempts.to_string(),
                1 => format!("{} (1 fault)", r.attempts),
                n => format!("{} ({n} faults)", r.attempts),
            },
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
    println!("{}", terminal_table(table));
    let faulted: Vec<&stkd::status::StatusRow> =
        out.iter().filter(|r| !r.faults.is_empty()).collect();
    if !faulted.is_empty() {
        println!("infrastructure faults (each attempt retried from the run's checkpoint):");
        for r in faulted {
            let causes: Vec<String> = r
                .faults
                .iter()
                .map(|f| format!("attempt {}: {}", f.attempt, f.cause))
                .collect();
            println!("  {} ({}): {}", r.run, r.hash, causes.join("; "));
        }
    }
    Ok(())
}

pub(crate) fn run_one_cmd(args: &RunOneArgs) -> Result<()> {
    if args.detached {
        // A cluster job: no parent to die with, no store.
        let run_dir = stkd::archive::beside(&args.store, stkd::archive::RUNS).join(&args.hash);
        let device = args.device;
        let outcome = schedule::worker::run_detached(
            &run_dir,
            device,
            |cfg, data, paths, on_event| with_backend!(device, B, dev => exec::execute::<B>(cfg, data, paths, device, &dev, on_event)),
            |ev| {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", ev.to_line());
                let _ = out.flush();
            },
        );
        return pruned_is_success(&args.hash, outcome);
    }
    schedule::worker::die_with_parent();
    let assignment = schedule::worker::Assignment {
        store: args.store.clone(),
        hash: args.hash.clone(),
        worker: args.worker.clone(),
        device: args.device,
        data_dir: args.data_dir.clone(),
        mean_check: !args.no_mean_check,
    };
    let (hash, lost_hash, worker) = (args.hash.clone(), args.hash.clone(), args.worker.clone());
    let device = args.device;
    let outcome = schedule::worker::run_claimed(
        &assignment,
        |cfg, data, paths, on_event| with_backend!(device, B, dev => exec::execute::<B>(cfg, data, paths, device, &dev, on_event)),
        |ev| {
            use std::io::Write;
            if let RunEvent::WaitingForFolder { holder } = ev {
                eprintln!("run {hash}: {}", stkd::progress::folder_wait_text(holder));
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", ev.to_line());
            let _ = out.flush();
        },
        move |e| {
            eprintln!(
                "error: worker {worker} lost its claim on run {lost_hash}: {e}; stopping \
                 without writing results"
            )
        },
    );
    pruned_is_success(&args.hash, outcome)
}

/// A trial stopped by its search's pruner ends `run-one` with success.
fn pruned_is_success(
    hash: &str,
    outcome: Result<RunReport, schedule::worker::WorkerError>,
) -> Result<()> {
    match outcome {
        Ok(_) => Ok(()),
        Err(e @ schedule::worker::WorkerError::Pruned { .. }) => {
            eprintln!("run {hash}: {e}");
            Ok(())
        }
        Err(schedule::worker::WorkerError::LostClaim { .. }) => {
            Err(Exit(schedule::EXIT_LOST_CLAIM).into())
        }
        Err(e) => Err(e.into()),
    }
}
