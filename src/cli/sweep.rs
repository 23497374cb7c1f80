//! `stkd sweep`, `status` and `report` arguments, and the hidden `run-one` that executes one run of a sweep.

use crate::*;
use stkd::spec::{is_slurm_mem, is_slurm_time, ExecutorKind, ExecutorSpec, SlurmOptions};

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
    #[arg(long, value_parser = ["local", "slurm"])]
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
}

/// When `sweep` prepares a device's kernel caches before its runs (see [`stkd::warmup`]).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum WarmUp {
    Auto,
    Always,
    Never,
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
    /// With --against: exit with status 3 when a cell is worse beyond the seeds' noise.
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
pub(crate) fn load_experiment(file: &Path) -> Result<stkd::spec::Experiment> {
    stkd::spec::load(file).map_err(|errors| {
        eprint!("{errors}");
        Exit(2).into()
    })
}

pub(crate) fn plan_experiment(
    exp: &stkd::spec::Experiment,
    data_dir: &Path,
) -> Result<stkd::plan::Plan> {
    Ok(stkd::plan::plan_in(exp, data_dir)?)
}

/// Run statuses of `hashes` in an existing store (none if there is no store yet), read
/// without writing anything.
pub(crate) fn statuses(
    store: &Path,
    hashes: &[String],
) -> Result<Vec<Option<stkd::store::RunRow>>> {
    let Some(s) = Store::open_read_only(store)? else {
        return Ok(vec![None; hashes.len()]);
    };
    hashes.iter().map(|h| Ok(s.run(h)?)).collect()
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
}

impl SweepDisplay {
    fn new(slots: usize) -> Self {
        SweepDisplay {
            progress: stkd::progress::Progress::for_stderr(slots),
            main: None,
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
    for d in &args.devices {
        check_device(*d)?;
    }
    // Ctrl-C, SIGTERM (Slurm, systemd, container runtimes, shutdown) and SIGHUP (a closed
    // terminal) all stop the sweep the same way: children stopped, their runs back to pending,
    // exit code 128 + the signal's number.
    let interrupt = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(AtomicUsize::new(0));
    for sig in STOP_SIGNALS {
        signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)
            .and_then(|_| signal_hook::flag::register(sig, interrupt.clone()))
            .with_context(|| format!("installing the handler of {}", signal_name(sig)))?;
    }
    let cpu_slots = args
        .devices
        .iter()
        .filter(|d| **d == DeviceSpec::Cpu)
        .count()
        * args.per_device.max(1);
    let exe = std::env::current_exe().context("locating the stkd binary")?;
    let placement = exp.executor.overridden_by(&args.executor_spec());
    let slurm = placement.kind == Some(ExecutorKind::Slurm);
    let mean_check = exp.mean_check && !args.no_mean_check;
    let executor: Box<dyn schedule::Executor> = if slurm {
        Box::new(schedule::slurm::SlurmExecutor {
            exe,
            store: args.store.clone(),
            data_dir: args.data_dir.clone(),
            options: placement.slurm.clone(),
            mean_check,
        })
    } else {
        Box::new(LocalExecutor {
            exe,
            store: args.store.clone(),
            data_dir: args.data_dir.clone(),
            cpu_threads: (cpu_slots > 1).then(|| (rayon::current_num_threads() / cpu_slots).max(1)),
            mean_check,
        })
    };
    // On a cluster the slots are jobs in flight, each on the device its job is given.
    let (devices, per_device) = if slurm {
        (
            vec![args.devices[0]],
            placement.max_jobs.unwrap_or(4).max(1),
        )
    } else {
        (args.devices.clone(), args.per_device.max(1))
    };
    let warm = match args.warm_up {
        WarmUp::Never => None,
        WarmUp::Always => Some(devices[0]),
        WarmUp::Auto => devices
            .iter()
            .find(|d| !slurm && **d != DeviceSpec::Cpu)
            .copied(),
    };
    if let Some(device) = warm {
        prepare_caches(&plan, &args.store, device)?;
    }
    let opts = SweepOptions {
        store: args.store.clone(),
        devices: devices.clone(),
        per_device,
        retry_failed: args.retry_failed,
        stale_after_s: args.stale_after,
        data_dir: args.data_dir.clone(),
        detach: args.detach,
        retries: placement.retries.unwrap_or(stkd::store::DEFAULT_RETRIES),
    };
    let mut display = SweepDisplay::new(devices.len() * per_device);
    let summary = schedule::run_sweep(
        &plan,
        &args.file,
        &exp.text,
        &opts,
        executor.as_ref(),
        &interrupt,
        &mut |ev| display.on(ev),
    )?;
    if let Some(main) = &display.main {
        main.finish_and_clear();
    }
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
    if summary.interrupted {
        let sig = match signal.load(Ordering::SeqCst) {
            0 => signal_hook::consts::SIGINT,
            s => s as i32,
        };
        eprintln!(
            "interrupted by {}: unfinished runs went back to pending; run the same command to \
             resume",
            signal_name(sig)
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

/// Compiles, in one `stkd warm-up` process on `device`, the kernels of every kind of run of
/// `plan` not yet done, so the runs started next find them in the caches. A failed warm-up is
/// reported and the sweep goes on (each run then compiles what it needs itself).
fn prepare_caches(plan: &stkd::plan::Plan, store: &Path, device: DeviceSpec) -> Result<()> {
    use std::io::{BufRead, Write};
    let finished = if store.exists() {
        let store = Store::open(store)?;
        let mut finished = std::collections::HashSet::new();
        for job in &plan.jobs {
            if let Some(row) = store.run(&job.hash)? {
                if matches!(row.status, RunStatus::Done | RunStatus::Pruned) {
                    finished.insert(job.hash.clone());
                }
            }
        }
        finished
    } else {
        Default::default()
    };
    let shapes = stkd::warmup::shapes(&plan.jobs, |j| !finished.contains(&j.hash));
    if shapes.is_empty() {
        return Ok(());
    }
    let mut progress = stkd::progress::Progress::for_stderr(0);
    progress.println(&format!(
        "preparing {device}'s kernel caches for {} kind(s) of run before starting them",
        shapes.len()
    ));
    let bar = progress.overall("warm-up [{bar:30}] {pos}/{len} {msg}", shapes.len(), 0);
    let started = std::time::Instant::now();
    let exe = std::env::current_exe().context("locating the stkd binary")?;
    let mut child = std::process::Command::new(exe)
        .args(["warm-up", "--device", &device.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the warm-up process")?;
    let input = serde_json::to_vec(&shapes)?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(&input)
        .context("writing the warm-up's shapes")?;
    let stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    for line in stdout.lines().map_while(Result::ok) {
        let Ok(done) = serde_json::from_str::<WarmedUp>(&line) else {
            continue;
        };
        match &bar {
            Some(pb) => {
                pb.set_message(done.shape);
                pb.inc(1);
            }
            None => progress.println(&format!(
                "warm-up {}/{}: {} ({:.1} s)",
                done.index + 1,
                shapes.len(),
                done.shape,
                done.seconds
            )),
        }
    }
    let status = child.wait().context("waiting for the warm-up process")?;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    if status.success() {
        let cache = stkd::backend::gpu_cache_dir()
            .map(|d| {
                format!(
                    " (cache {}, {} files)",
                    d.display(),
                    stkd::backend::gpu_cache_files()
                )
            })
            .unwrap_or_default();
        progress.println(&format!(
            "kernel caches ready in {:.1} s{cache}",
            started.elapsed().as_secs_f64()
        ));
    } else {
        progress.println(&format!(
            "warning: the warm-up on {device} ended with {status}; each run compiles its own \
             kernels"
        ));
    }
    Ok(())
}

/// One line of `stkd warm-up`'s output: a kind of run whose kernels are compiled.
#[derive(Serialize, serde::Deserialize)]
struct WarmedUp {
    index: usize,
    shape: String,
    seconds: f64,
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
        let line = WarmedUp {
            index,
            shape: shape.describe(),
            seconds: t.elapsed().as_secs_f64(),
        };
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}

/// The signals that stop a sweep cleanly.
const STOP_SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

fn signal_name(sig: i32) -> &'static str {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT (Ctrl-C)",
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// The runs of the sweep with their results (`stkd::report::summary`), on standard output.
fn print_closing_table(
    exp: &stkd::spec::Experiment,
    plan: &stkd::plan::Plan,
    store: &Path,
) -> Result<()> {
    let st = Store::open_read_only(store)?;
    let data = stkd::report::collect(exp, plan, st.as_ref())?;
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

#[derive(Serialize)]
pub(crate) struct StatusRow {
    pub(crate) run: String,
    pub(crate) dataset: String,
    pub(crate) status: String,
    pub(crate) hash: String,
    pub(crate) device: Option<String>,
    /// The cluster job of the latest attempt (Slurm job id) and, while it runs, its state.
    pub(crate) job: Option<String>,
    pub(crate) slurm_state: Option<String>,
    /// Why Slurm keeps the job pending (`scontrol`'s `Reason`).
    pub(crate) slurm_reason: Option<String>,
    pub(crate) attempts: u32,
    /// Infrastructure faults that ended attempts (each retried from the checkpoint), in order.
    pub(crate) faults: Vec<stkd::store::FaultRow>,
    pub(crate) test_mae_15min: Option<f64>,
    pub(crate) error: Option<String>,
}

/// Exit status of `report --against … --fail-on-regression` when a cell got worse beyond noise.
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
            "{} cell{} worse beyond noise than {}",
            d.regressions(),
            if d.regressions() == 1 { "" } else { "s" },
            d.before
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
    let run = |hash: &str| -> Result<Option<stkd::store::RunRow>> {
        Ok(match &store {
            Some(s) => s.run(hash)?,
            None => None,
        })
    };
    let rows: Vec<(String, String, Option<stkd::store::RunRow>)> = match &args.file {
        Some(file) => {
            let exp = load_experiment(file)?;
            let plan = plan_experiment(&exp, &args.data_dir)?;
            let mut rows: Vec<_> = plan
                .jobs
                .iter()
                .map(|j| Ok((j.display_name(), j.hash.clone(), run(&j.hash)?)))
                .collect::<Result<_>>()?;
            // The trials of its searches proposed so far, in their order.
            if let Some(s) = &store {
                for st in &plan.studies {
                    for t in s.trials(&st.key)? {
                        let row = s.run(&t.hash)?;
                        let name = row.as_ref().map_or(t.hash.clone(), |r| r.label.clone());
                        rows.push((name, t.hash, row));
                    }
                }
            }
            rows
        }
        None => match &store {
            Some(s) => s
                .runs(None)?
                .into_iter()
                .map(|r| (r.label.clone(), r.hash.clone(), Some(r)))
                .collect(),
            None => Vec::new(),
        },
    };
    let mut out = Vec::new();
    for (name, hash, row) in rows {
        let mae15 = match (&row, &store) {
            (Some(r), Some(store)) if r.status == RunStatus::Done => {
                store.result(&hash)?.and_then(|res| {
                    res.metrics
                        .iter()
                        .find(|m| m.split == "test" && m.step == 3)
                        .map(|m| m.mae)
                })
            }
            _ => None,
        };
        let faults = match (&row, &store) {
            (Some(_), Some(store)) => store.faults(&hash)?,
            _ => Vec::new(),
        };
        let slurm = row
            .as_ref()
            .filter(|r| r.status == RunStatus::Running)
            .and_then(|r| r.job.as_deref())
            .and_then(|j| schedule::slurm::job_status(j).ok().flatten());
        out.push(StatusRow {
            run: name,
            dataset: row.as_ref().map_or(String::new(), |r| r.dataset.clone()),
            status: row
                .as_ref()
                .map_or("not registered".into(), |r| r.status.to_string()),
            hash,
            device: row.as_ref().and_then(|r| r.device.clone()),
            job: row.as_ref().and_then(|r| r.job.clone()),
            slurm_state: slurm.as_ref().map(|s| s.state.clone()),
            slurm_reason: slurm.and_then(|s| s.reason),
            attempts: row.as_ref().map_or(0, |r| r.attempts),
            faults,
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
    let faulted: Vec<&StatusRow> = out.iter().filter(|r| !r.faults.is_empty()).collect();
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

/// Ask the kernel to kill this process when its parent (the sweep) dies, so that after a
/// `kill -9` of the sweep no orphan keeps a run's heartbeat alive.
pub(crate) fn die_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a signal number for this process.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
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
    die_with_parent();
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
            );
            // From the heartbeat's thread: the only way to stop the training at once.
            std::process::exit(schedule::EXIT_LOST_CLAIM);
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
        Err(e) => Err(e.into()),
    }
}
