//! One call that runs an experiment's sweep from resolved options ([`run`]): where the runs
//! execute (the local executor's device slots, or Slurm jobs), the warm-up of a GPU's kernel
//! caches before the runs, the scheduling itself ([`crate::schedule::run_sweep`]), and the
//! timing phase at the end, which measures the test time of every network the sweep finished
//! alone on the machine ([`crate::latency`]), once nothing else of stkd computes. The stopping
//! signals (Ctrl-C, SIGTERM, SIGHUP) are caught by [`StopSignals`]. A front end (the command
//! line, a test) turns its arguments into a [`SweepRequest`] and renders the [`Notice`]s; every
//! decision is taken here.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::{check_device, DeviceError, DeviceSpec};
use crate::experiment::{ExecutorKind, ExecutorSpec, Experiment};
use crate::latency::{self, RetimeEvent, RetimeOptions, RetimeSummary};
use crate::plan::Plan;
use crate::schedule::slurm::SlurmExecutor;
use crate::schedule::{
    self, Executor, LocalExecutor, ScheduleError, SweepEvent, SweepOptions, SweepSummary,
};
use crate::store::{RunStatus, Store, StoreError, DEFAULT_RETRIES};
use crate::warmup::{self, WarmedUp};

/// When a sweep prepares a device's kernel caches before its runs ([`crate::warmup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmUp {
    /// For a CUDA device with the local executor.
    Auto,
    Always,
    Never,
}

/// Jobs in flight at once on a cluster when neither the file nor the command line says.
pub const DEFAULT_MAX_JOBS: usize = 4;

/// Everything a sweep needs, resolved: the command line's settings (each `None` in
/// `executor` where not given: the experiment file's then apply).
#[derive(Debug, Clone)]
pub struct SweepRequest {
    /// The experiment file, as the store records it.
    pub file: PathBuf,
    pub store: PathBuf,
    pub data_dir: PathBuf,
    /// Device slots of the local executor (the first one alone on a cluster).
    pub devices: Vec<DeviceSpec>,
    /// Runs at once on each device.
    pub per_device: usize,
    pub retry_failed: bool,
    /// Seconds without a heartbeat after which a running run counts as interrupted.
    pub stale_after_s: f64,
    /// The command line's executor settings, over the file's.
    pub executor: ExecutorSpec,
    /// Keep runs worse than predicting the training mean (over the file's `mean_check`).
    pub no_mean_check: bool,
    /// Slurm: on a stopping signal leave the jobs running.
    pub detach: bool,
    pub warm_up: WarmUp,
    /// Time every finished network alone at the end ([`latency`]'s "only missing" mode).
    pub timing: bool,
    /// The stkd binary the run processes (and the warm-up) are started from.
    pub exe: PathBuf,
}

/// What a sweep tells its front end, in order.
#[derive(Debug)]
pub enum Notice<'a> {
    /// The scheduler's events (runs started, their progress, finished).
    Schedule(SweepEvent<'a>),
    /// The warm-up of `device`'s kernel caches starts, for `kinds` kinds of run.
    WarmUpStarted { device: DeviceSpec, kinds: usize },
    /// One kind of run's kernels are compiled.
    WarmedUp { line: WarmedUp, kinds: usize },
    /// The warm-up ended: `Ok` with its seconds and the cache's folder and file count, or why
    /// not (the runs then compile their own kernels).
    WarmUpEnded {
        outcome: Result<(f64, Option<(PathBuf, usize)>), String>,
    },
    /// The timing phase starts: each finished network is timed alone unless measured already.
    TimingStarted { device: DeviceSpec, threads: usize },
    /// One shape of the timing phase.
    Timing(RetimeEvent<'a>),
    /// The timing phase was not done, and why (the runs are unaffected; `stkd retime FILE
    /// --missing` does it later).
    TimingSkipped { why: String },
}

/// How a sweep ended.
#[derive(Debug)]
pub struct SweepOutcome {
    pub summary: SweepSummary,
    /// The stopping signal that interrupted it, if one did.
    pub signal: Option<i32>,
    /// What the timing phase did, when it ran.
    pub timing: Option<RetimeSummary>,
}

/// Why a sweep could not run (failed runs are not errors: they are counted in the summary).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("installing the handler of {signal}: {source}")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
}

/// The signals that stop a sweep cleanly: Ctrl-C, SIGTERM (Slurm, systemd, container runtimes,
/// shutdown) and SIGHUP (a closed terminal). Children are stopped, their runs go back to
/// pending, and the front end exits with 128 + the signal's number.
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The stopping signals caught for this process ([`STOP_SIGNALS`]): a flag the scheduler
/// watches, and which signal set it.
pub struct StopSignals {
    interrupt: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl StopSignals {
    /// Catch [`STOP_SIGNALS`] from now on (for the rest of the process).
    pub fn install() -> Result<StopSignals, SweepError> {
        let interrupt = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in STOP_SIGNALS {
            signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)
                .and_then(|_| signal_hook::flag::register(sig, interrupt.clone()))
                .map_err(|source| SweepError::Signal {
                    signal: stop_signal_name(sig),
                    source,
                })?;
        }
        Ok(StopSignals { interrupt, signal })
    }

    /// Not connected to any signal: stops only through [`StopSignals::stop`] (tests, front
    /// ends with their own handling).
    pub fn none() -> StopSignals {
        StopSignals {
            interrupt: Arc::default(),
            signal: Arc::default(),
        }
    }

    /// Stop the sweep as `signal` would.
    pub fn stop(&self, signal: i32) {
        self.signal.store(signal as usize, Ordering::SeqCst);
        self.interrupt.store(true, Ordering::SeqCst);
    }

    /// The signal received (SIGINT when the flag was set without one).
    pub fn received(&self) -> Option<i32> {
        self.interrupt
            .load(Ordering::SeqCst)
            .then(|| match self.signal.load(Ordering::SeqCst) {
                0 => libc::SIGINT,
                s => s as i32,
            })
    }
}

/// `SIGINT (Ctrl-C)`, `SIGTERM`, …: a stopping signal for the message a sweep ends with.
pub fn stop_signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        s => schedule::signal_name(s).unwrap_or("a signal"),
    }
}

/// Where the runs execute, resolved from the file's `executor:` block and the command line:
/// the executor, its device slots and runs per slot device, and whether it is a cluster.
struct Placement {
    executor: Box<dyn Executor>,
    devices: Vec<DeviceSpec>,
    per_device: usize,
    cluster: bool,
    retries: u32,
}

fn placement(req: &SweepRequest, exp: &Experiment) -> Placement {
    let spec = exp.executor.overridden_by(&req.executor);
    let mean_check = exp.mean_check && !req.no_mean_check;
    let retries = spec.retries.unwrap_or(DEFAULT_RETRIES);
    if spec.kind == Some(ExecutorKind::Slurm) {
        // On a cluster the slots are jobs in flight, each on the device its job is given.
        return Placement {
            executor: Box::new(SlurmExecutor {
                exe: req.exe.clone(),
                store: req.store.clone(),
                data_dir: req.data_dir.clone(),
                options: spec.slurm.clone(),
                mean_check,
            }),
            devices: vec![req.devices[0]],
            per_device: spec.max_jobs.unwrap_or(DEFAULT_MAX_JOBS).max(1),
            cluster: true,
            retries,
        };
    }
    let per_device = req.per_device.max(1);
    let cpu_slots = req
        .devices
        .iter()
        .filter(|d| **d == DeviceSpec::Cpu)
        .count()
        * per_device;
    Placement {
        executor: Box::new(LocalExecutor {
            exe: req.exe.clone(),
            store: req.store.clone(),
            data_dir: req.data_dir.clone(),
            // Runs sharing the CPU share its threads.
            cpu_threads: (cpu_slots > 1).then(|| (rayon::current_num_threads() / cpu_slots).max(1)),
            mean_check,
        }),
        devices: req.devices.clone(),
        per_device,
        cluster: false,
        retries,
    }
}

/// Runs at once: the local executor's device slots times runs per device, or the jobs a
/// cluster keeps in flight (what a display needs a line for).
pub fn slots(req: &SweepRequest, exp: &Experiment) -> usize {
    let p = placement(req, exp);
    p.devices.len() * p.per_device
}

/// Runs the sweep of `exp` (planned as `plan`): registers its runs, executes every one not yet
/// done, then times the finished networks alone (unless `req.timing` is off, the sweep was
/// interrupted or ran on a cluster). Stops early, leaving unfinished runs pending, when one of
/// `signals` arrives.
pub fn run(
    req: &SweepRequest,
    exp: &Experiment,
    plan: &Plan,
    signals: &StopSignals,
    on: &mut dyn FnMut(Notice),
) -> Result<SweepOutcome, SweepError> {
    for d in &req.devices {
        check_device(*d)?;
    }
    let place = placement(req, exp);
    let warm = match req.warm_up {
        WarmUp::Never => None,
        WarmUp::Always => Some(place.devices[0]),
        WarmUp::Auto => place
            .devices
            .iter()
            .find(|d| !place.cluster && **d != DeviceSpec::Cpu)
            .copied(),
    };
    if let Some(device) = warm {
        prepare_caches(plan, &req.store, device, &req.exe, on)?;
    }
    let opts = SweepOptions {
        store: req.store.clone(),
        devices: place.devices.clone(),
        per_device: place.per_device,
        retry_failed: req.retry_failed,
        stale_after_s: req.stale_after_s,
        data_dir: req.data_dir.clone(),
        detach: req.detach,
        retries: place.retries,
    };
    let summary = schedule::run_sweep(
        plan,
        &req.file,
        &exp.text,
        &opts,
        place.executor.as_ref(),
        &signals.interrupt,
        &mut |ev| on(Notice::Schedule(ev)),
    )?;
    let timing = match (req.timing, summary.interrupted, place.cluster) {
        (false, _, _) | (_, true, _) => None,
        (true, false, true) => {
            on(Notice::TimingSkipped {
                why: "the runs ran on the cluster's nodes, not on this machine; time them on \
                      a node with `stkd retime FILE --missing`"
                    .into(),
            });
            None
        }
        (true, false, false) => time_alone(req, plan, place.devices[0], on),
    };
    Ok(SweepOutcome {
        signal: signals.received().filter(|_| summary.interrupted),
        summary,
        timing,
    })
}

/// The timing phase: [`latency::retime`] in "only missing" mode on `device`, over the plan's
/// finished runs. Anything that keeps it from measuring (other stkd work computing, a model
/// that does not load) is a [`Notice::TimingSkipped`], not an error: the runs are done.
fn time_alone(
    req: &SweepRequest,
    plan: &Plan,
    device: DeviceSpec,
    on: &mut dyn FnMut(Notice),
) -> Option<RetimeSummary> {
    let opts = RetimeOptions {
        store: req.store.clone(),
        data_dir: req.data_dir.clone(),
        runs: latency::DEFAULT_RUNS,
        allow_few: false,
        force: false,
        processes: true,
        device,
        only_missing: true,
    };
    on(Notice::TimingStarted {
        device,
        threads: rayon::current_num_threads(),
    });
    let plans = std::slice::from_ref(plan);
    let mut relay = |e: RetimeEvent| on(Notice::Timing(e));
    let result = crate::with_backend!(device, B, dev => latency::retime::<
        <B as burn::tensor::backend::AutodiffBackend>::InnerBackend,
    >(plans, &opts, &dev, &mut relay));
    match result {
        Ok(s) => Some(s),
        Err(e) => {
            on(Notice::TimingSkipped {
                why: format!(
                    "{e}; `stkd retime {} --missing` times them later",
                    req.file.display()
                ),
            });
            None
        }
    }
}

/// Compiles, in one `stkd warm-up` process on `device`, the kernels of every kind of run of
/// `plan` not yet done, so the runs started next find them in the caches. A failed warm-up is
/// reported and the sweep goes on (each run then compiles what it needs itself).
fn prepare_caches(
    plan: &Plan,
    store: &Path,
    device: DeviceSpec,
    exe: &Path,
    on: &mut dyn FnMut(Notice),
) -> Result<(), SweepError> {
    let mut finished = std::collections::HashSet::new();
    if let Some(store) = Store::open_read_only(store)? {
        for job in &plan.jobs {
            if let Some(row) = store.run(&job.hash)? {
                if matches!(row.status, RunStatus::Done | RunStatus::Pruned) {
                    finished.insert(job.hash.clone());
                }
            }
        }
    }
    let shapes = warmup::shapes(&plan.jobs, |j| !finished.contains(&j.hash));
    if shapes.is_empty() {
        return Ok(());
    }
    let kinds = shapes.len();
    on(Notice::WarmUpStarted { device, kinds });
    let started = Instant::now();
    let outcome = (|| -> Result<(), String> {
        let mut child = Command::new(exe)
            .args(["warm-up", "--device", &device.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the warm-up process: {e}"))?;
        let input = serde_json::to_vec(&shapes).expect("shapes serialise");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(&input)
            .map_err(|e| format!("writing the warm-up's shapes: {e}"))?;
        let stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        for line in stdout.lines().map_while(Result::ok) {
            if let Ok(line) = serde_json::from_str::<WarmedUp>(&line) {
                on(Notice::WarmedUp { line, kinds });
            }
        }
        let status = child
            .wait()
            .map_err(|e| format!("waiting for the warm-up process: {e}"))?;
        match status.success() {
            true => Ok(()),
            false => Err(format!("the warm-up on {device} ended with {status}")),
        }
    })();
    on(Notice::WarmUpEnded {
        outcome: outcome.map(|()| {
            let cache =
                crate::backend::gpu_cache_dir().map(|d| (d, crate::backend::gpu_cache_files()));
            (started.elapsed().as_secs_f64(), cache)
        }),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        executor: ExecutorSpec,
        devices: Vec<DeviceSpec>,
        per_device: usize,
    ) -> SweepRequest {
        SweepRequest {
            file: PathBuf::from("t.yaml"),
            store: PathBuf::from("stkd.db"),
            data_dir: PathBuf::from("data"),
            devices,
            per_device,
            retry_failed: false,
            stale_after_s: 60.0,
            executor,
            no_mean_check: false,
            detach: false,
            warm_up: WarmUp::Never,
            timing: true,
            exe: PathBuf::from("stkd"),
        }
    }

    /// The display gets a line per run at once: device slots locally, jobs in flight on a
    /// cluster (from the file, else the command line, else the default).
    #[test]
    fn slots_follow_the_placement() {
        let yaml = "name: t\ndatasets: [pemsd7]\nruns:\n  - {label: a, model: student}\n";
        let exp = crate::experiment::parse_experiment(yaml, Path::new("t.yaml")).unwrap();
        let local = request(ExecutorSpec::default(), vec![DeviceSpec::Cpu], 2);
        assert_eq!(slots(&local, &exp), 2);
        let gpus = request(
            ExecutorSpec::default(),
            vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)],
            3,
        );
        assert_eq!(slots(&gpus, &exp), 6);
        let slurm = ExecutorSpec {
            kind: Some(ExecutorKind::Slurm),
            ..ExecutorSpec::default()
        };
        assert_eq!(
            slots(&request(slurm.clone(), vec![DeviceSpec::Cpu], 1), &exp),
            DEFAULT_MAX_JOBS
        );
        let three = ExecutorSpec {
            max_jobs: Some(3),
            ..slurm
        };
        assert_eq!(slots(&request(three, vec![DeviceSpec::Cpu], 1), &exp), 3);
    }
}
