//! The sweep scheduler: fills device slots with runs claimed through the store, each run in its
//! own child process (`stkd run-one`), so a panic, an out-of-memory kill or a diverging run
//! cannot take the sweep down (spec §6).
//!
//! - Claims happen inside store transactions: two sweeps on one store never run the same run.
//! - A failed run is recorded with its error and its dependants are skipped; the rest go on.
//! - Interrupted runs (Ctrl-C, SIGTERM, SIGHUP) go back to pending; after `kill -9` their
//!   heartbeat goes stale and the next sweep claims them again.
//! - A worker refreshes its claim's heartbeat every [`HEARTBEAT_INTERVAL`] ([`Heartbeat`]); a
//!   run counts as interrupted only after `stale_after_s` ≥ [`MIN_STALE_AFTER_S`] without one,
//!   so a live worker is not mistaken for a dead one. Should it happen anyway (a worker frozen
//!   for that long), the worker learns at its next heartbeat that the claim is gone and stops
//!   without writing anything, and [`RunFolderLock`] keeps the new worker out of the run's
//!   folder until the old one has stopped: a run folder is written by one worker at a time.
//! - [`Executor`] is the seam where a cluster executor (e.g. Slurm job arrays) would plug in.
//!
//! Adding an executor: a variant of [`ExecutorKind`](crate::experiment::ExecutorKind) (its name
//! in `ExecutorKind::NAMES` and `ExecutorKind::parse`) with its `executor:` block keys
//! (`EXECUTOR_KEYS`, `parse_executor`, a field of `ExecutorSpec` and its rule in
//! `ExecutorSpec::overridden_by`, all in `experiment/executor.rs`); a type implementing
//! [`Executor`] (its runs as [`RunHandle`]s) next to `schedule/slurm.rs`; and its construction in
//! [`crate::sweep`]'s `placement`, which also gives its slots and whether it is a cluster (no
//! automatic GPU warm-up, no timing phase). The command line takes `--executor`'s values from
//! `ExecutorKind::NAMES` and overrides the block's keys with flags of its own, where it has any
//! (`cli/sweep.rs`, `SweepArgs::executor_spec`). A running run's job id is read as a Slurm job by `status`
//! (`crate::status`, [`slurm::job_state`]).

pub mod slurm;
pub mod trials;
pub mod worker;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::DeviceSpec;
use crate::plan::Plan;
use crate::store::{AfterFault, ExperimentInfo, NewRun, RunStatus, Store, StoreError};

/// How often a running run's worker refreshes its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// Heartbeat intervals a worker may miss before its run counts as interrupted.
pub const MISSED_HEARTBEATS: u32 = 5;

/// The smallest `stale_after_s` a sweep accepts: [`MISSED_HEARTBEATS`] × [`HEARTBEAT_INTERVAL`]
/// (10 s). Below it a live worker whose heartbeat is a little late (a busy disk, a store lock
/// held by another process) would be taken for a dead one and its run executed twice.
pub const MIN_STALE_AFTER_S: f64 = MISSED_HEARTBEATS as f64 * 2.0;

/// Exit code of a `run-one` worker that stopped because its claim was taken over.
pub const EXIT_LOST_CLAIM: i32 = 75;

/// Checks a `stale_after_s` value: finite and at least [`MIN_STALE_AFTER_S`].
pub fn check_stale_after(seconds: f64) -> Result<f64, ScheduleError> {
    if seconds.is_finite() && seconds >= MIN_STALE_AFTER_S {
        Ok(seconds)
    } else {
        Err(ScheduleError::StaleAfter { seconds })
    }
}

/// How a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub store: PathBuf,
    pub devices: Vec<DeviceSpec>,
    pub per_device: usize,
    pub retry_failed: bool,
    /// A running run whose heartbeat is older than this is considered interrupted.
    pub stale_after_s: f64,
    /// Folder with the datasets (passed to the child processes).
    pub data_dir: PathBuf,
    /// On an interruption, leave cluster jobs running (their runs back to pending: a later
    /// sweep re-attaches to them) instead of cancelling them.
    pub detach: bool,
    /// Infrastructure faults of a run retried from its checkpoint before it fails
    /// ([`Store::fault`]).
    pub retries: u32,
}

/// A progress message a run prints on its stdout, one JSON object per line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    Epoch {
        epoch: usize,
        epochs: usize,
        steps: usize,
    },
    Step {
        step: usize,
        loss: f64,
    },
    Validating,
    EpochEnd {
        epoch: usize,
        #[serde(default)]
        lr: f64,
        train_loss: f64,
        val_mae: f64,
        #[serde(default)]
        seconds: f64,
    },
    Testing,
    /// The run's folder is held by another worker (one whose claim was taken over and that has
    /// not stopped yet); the run waits for it.
    WaitingForFolder {
        holder: Option<u32>,
    },
    /// The run continues from its checkpoint after `epoch` of its `epochs` epochs (an earlier
    /// attempt was interrupted).
    Resumed {
        epoch: usize,
        epochs: usize,
    },
    /// Its cluster job is pending for `reason` (Slurm's); with `limit_s`, a reason other than
    /// waiting its turn, which fails the run when it lasts that many seconds.
    Queued {
        job: String,
        reason: String,
        limit_s: Option<u64>,
    },
}

impl From<crate::train::Event<'_>> for RunEvent {
    fn from(e: crate::train::Event) -> Self {
        use crate::train::Event;
        match e {
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
            Event::EpochEnd { record: r, .. } => RunEvent::EpochEnd {
                epoch: r.epoch,
                lr: r.lr,
                train_loss: r.train_loss,
                val_mae: r.val_mae,
                seconds: r.seconds,
            },
        }
    }
}

impl RunEvent {
    /// The event as the one line of JSON a run prints on its stdout.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a run event serialises")
    }
}

/// What the sweep reports to its display.
#[derive(Debug, Clone)]
pub enum SweepEvent<'a> {
    Planned {
        total: usize,
        done: usize,
    },
    Started {
        slot: usize,
        device: DeviceSpec,
        name: &'a str,
        hash: &'a str,
    },
    Progress {
        slot: usize,
        event: RunEvent,
    },
    Finished {
        slot: usize,
        name: &'a str,
        hash: &'a str,
        status: RunStatus,
        detail: Option<&'a str>,
    },
    Waiting {
        running_elsewhere: usize,
    },
    /// Runs taken from the records beside the store ([`crate::archive`]): finished ones recorded
    /// as done, checkpoints of unfinished ones restored.
    Imported {
        finished: usize,
        resumed: usize,
    },
}

/// How a run's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunExit {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that stopped it, when one did.
    pub signal: Option<i32>,
    /// What the executor knows besides (a cluster job's final state).
    pub detail: Option<String>,
    /// Whether something outside the run ended it (its process killed by a signal it did not
    /// raise itself, its cluster node failed, its job preempted): an infrastructure fault,
    /// retried from the run's checkpoint. A run that ended by itself (an error it raised, a
    /// crash of its own) is not retried.
    pub infrastructure: bool,
}

/// Signals a process raises through its own doing (a crash: bad memory access, abort, illegal
/// instruction, arithmetic trap): retrying would crash again. Any other signal came from
/// outside (the OOM killer's or a person's SIGKILL, a SIGTERM).
const CRASH_SIGNALS: [i32; 7] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// `SIGKILL` and the like, for messages.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

impl RunExit {
    fn of(status: ExitStatus) -> Self {
        #[cfg(unix)]
        let signal = std::os::unix::process::ExitStatusExt::signal(&status);
        #[cfg(not(unix))]
        let signal = None;
        RunExit {
            code: status.code(),
            signal,
            detail: None,
            infrastructure: signal.is_some_and(|s| !CRASH_SIGNALS.contains(&s)),
        }
    }
}

impl std::fmt::Display for RunExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(d) = &self.detail {
            return f.write_str(d);
        }
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exited with code {c}"),
            (None, Some(s)) => match signal_name(s) {
                Some(name) => write!(f, "was killed by signal {s} ({name})"),
                None => write!(f, "was killed by signal {s}"),
            },
            (None, None) => f.write_str("ended without an exit code"),
        }
    }
}

/// A run started by an [`Executor`]: somewhere it executes `stkd run-one` (a child process
/// here; a cluster job elsewhere), reporting progress and ending with an exit status.
pub trait RunHandle: Send {
    /// `Some` once the run's process has ended; never blocks.
    fn poll(&mut self) -> std::io::Result<Option<RunExit>>;
    /// Stop it (Ctrl-C, SIGTERM on the sweep); [`RunHandle::poll`] then reports its end.
    fn kill(&mut self);
    /// The last lines it wrote for people (its error, when it failed).
    fn output_tail(&self) -> Vec<String>;
    /// Whether the run keeps its store claim alive itself (a local `run-one` does); otherwise
    /// the sweep beats for it while it is in flight (a cluster job that never opens the store).
    fn beats_for_itself(&self) -> bool {
        true
    }
    /// Once ended: the outcome of a run that does not write to the store, for the sweep to
    /// record (a pruned trial is recorded by the handle's pruner). `None`: nothing in its run
    /// folder, or the run recorded its outcome in the store itself.
    fn ingest(&mut self) -> Option<Ingested> {
        None
    }
}

/// What a run that reports through its folder ended with (see [`RunHandle::ingest`]).
#[derive(Debug)]
pub enum Ingested {
    /// Its `outcome.json`.
    Done(Box<crate::exec::RunReport>),
    /// Its error (`failed.json`).
    Failed(String),
    /// Stopped by its search's pruner after this many epochs; already recorded as pruned.
    Pruned(usize),
}

/// Starts one run somewhere. Progress events the run reports go to `events` with `slot`.
pub trait Executor {
    fn spawn(
        &self,
        hash: &str,
        worker: &str,
        device: DeviceSpec,
        slot: usize,
        events: mpsc::Sender<(usize, RunEvent)>,
    ) -> std::io::Result<Box<dyn RunHandle>>;
    /// What is started, for error messages (e.g. the program's path).
    fn describe(&self) -> String;
}

/// Runs each job as a child process of this binary on this machine.
pub struct LocalExecutor {
    pub exe: PathBuf,
    pub store: PathBuf,
    pub data_dir: PathBuf,
    /// Threads for each CPU run when several share the CPU (`RAYON_NUM_THREADS`).
    pub cpu_threads: Option<usize>,
    /// Fail a run worse than predicting the training mean (`run-one` without
    /// `--no-mean-check`; see [`worker::Assignment::mean_check`]).
    pub mean_check: bool,
}

/// A `stkd run-one` child process: its events read from its stdout, the last lines of its
/// stderr kept.
struct LocalRun {
    child: Child,
    tail: Arc<std::sync::Mutex<Vec<String>>>,
}

/// Lines of a run's stderr kept for its failure message.
pub(crate) const TAIL_LINES: usize = 20;

impl RunHandle for LocalRun {
    fn poll(&mut self) -> std::io::Result<Option<RunExit>> {
        Ok(self.child.try_wait()?.map(RunExit::of))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
    }

    fn output_tail(&self) -> Vec<String> {
        self.tail.lock().expect("tail lock").clone()
    }
}

impl Executor for LocalExecutor {
    fn spawn(
        &self,
        hash: &str,
        worker: &str,
        device: DeviceSpec,
        slot: usize,
        events: mpsc::Sender<(usize, RunEvent)>,
    ) -> std::io::Result<Box<dyn RunHandle>> {
        let mut cmd = Command::new(&self.exe);
        if let (DeviceSpec::Cpu, Some(n)) = (device, self.cpu_threads) {
            cmd.env("RAYON_NUM_THREADS", n.to_string());
        }
        let mut child = cmd
            .arg("run-one")
            .arg(hash)
            .arg("--store")
            .arg(&self.store)
            .arg("--worker")
            .arg(worker)
            .arg("--device")
            .arg(device.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args((!self.mean_check).then_some("--no-mean-check"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(ev) = serde_json::from_str::<RunEvent>(&line) {
                    if events.send((slot, ev)).is_err() {
                        break;
                    }
                }
            }
        });
        let tail = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tail2 = tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut t = tail2.lock().expect("tail lock");
                t.push(line);
                if t.len() > TAIL_LINES {
                    t.remove(0);
                }
            }
        });
        Ok(Box::new(LocalRun { child, tail }))
    }

    fn describe(&self) -> String {
        self.exe.display().to_string()
    }
}

/// Counts at the end of a sweep.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepSummary {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Trials of searches stopped early by their pruner.
    pub pruned: usize,
    pub pending: usize,
    pub ran_now: usize,
    pub interrupted: bool,
}

/// Errors of the scheduler itself (not of runs).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    // Not `source`: the message already holds the cause, which `{:#}` would print again.
    #[error("cannot start a run process ({what}): {cause}")]
    Spawn { what: String, cause: std::io::Error },
    #[error(
        "stale_after = {seconds} s: allowed a number of seconds of at least {MIN_STALE_AFTER_S} \
         ({MISSED_HEARTBEATS} heartbeat intervals of {} s); less would take live runs for \
         interrupted ones and execute them twice",
        HEARTBEAT_INTERVAL.as_secs()
    )]
    StaleAfter { seconds: f64 },
}

struct Active {
    hash: String,
    name: String,
    worker: String,
    handle: Box<dyn RunHandle>,
}

struct Slot {
    device: DeviceSpec,
    active: Option<Active>,
}

/// This process's worker identity for slot `i`.
fn worker_id(slot: usize) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}:{slot}", std::process::id())
}

/// Record an experiment file and its plan's runs in the store (new runs pending; see
/// [`Store::register`]).
pub fn register(
    store: &mut Store,
    plan: &Plan,
    experiment_file: &Path,
    experiment_text: &str,
) -> Result<(), StoreError> {
    let info = ExperimentInfo {
        name: plan.name.clone(),
        file: experiment_file.display().to_string(),
        yaml_sha256: crate::digest::sha256_hex(experiment_text.as_bytes()),
    };
    let new_runs: Vec<NewRun> = plan
        .jobs
        .iter()
        .map(|j| NewRun {
            hash: j.hash.clone(),
            label: j.display_name(),
            dataset: j.config.dataset.to_string(),
            config_json: serde_json::to_string(&j.config).expect("RunConfig serialises"),
            deps: j.deps.clone(),
        })
        .collect();
    store.register(&info, &new_runs)?;
    for st in &plan.studies {
        let spec = serde_json::to_string(&st.study.search).expect("search settings serialise");
        store.register_study(&st.key, &plan.name, &spec)?;
    }
    Ok(())
}

/// Register the plan's runs and execute every runnable one until all are finished, failed or
/// skipped (or `interrupt` is set).
pub fn run_sweep(
    plan: &Plan,
    experiment_file: &Path,
    experiment_text: &str,
    opts: &SweepOptions,
    executor: &dyn Executor,
    interrupt: &AtomicBool,
    on_event: &mut dyn FnMut(SweepEvent),
) -> Result<SweepSummary, ScheduleError> {
    check_stale_after(opts.stale_after_s)?;
    let mut store = Store::open(&opts.store)?;
    register(&mut store, plan, experiment_file, experiment_text)?;
    let mut hashes: Vec<String> = plan.jobs.iter().map(|j| j.hash.clone()).collect();
    new_trials(&store, plan, &mut hashes)?;
    if opts.retry_failed {
        store.retry_failed(Some(&hashes))?;
    }
    // Runs recorded in `<store folder>/records` (committed results) are not computed again.
    let imported = crate::archive::import(plan, &mut store, &opts.store)?;
    if !imported.finished.is_empty() || !imported.resumed.is_empty() {
        on_event(SweepEvent::Imported {
            finished: imported.finished.len(),
            resumed: imported.resumed.len(),
        });
    }
    new_trials(&store, plan, &mut hashes)?;
    let count = |store: &Store, hashes: &[String], s: RunStatus| -> Result<usize, StoreError> {
        Ok(hashes
            .iter()
            .filter_map(|h| store.run(h).ok().flatten())
            .filter(|r| r.status == s)
            .count())
    };
    let trial_budget: usize = plan.studies.iter().map(|s| s.study.search.trials).sum();
    on_event(SweepEvent::Planned {
        total: plan.jobs.len() + trial_budget,
        done: count(&store, &hashes, RunStatus::Done)? + count(&store, &hashes, RunStatus::Pruned)?,
    });

    let mut slots: Vec<Slot> = opts
        .devices
        .iter()
        .flat_map(|&d| (0..opts.per_device.max(1)).map(move |_| d))
        .map(|device| Slot {
            device,
            active: None,
        })
        .collect();
    let (tx, rx) = mpsc::channel::<(usize, RunEvent)>();
    let mut ran_now = 0;
    store.set_retries(opts.retries);
    let mut last_wait_note = Instant::now() - Duration::from_secs(60);
    let mut last_beat = Instant::now();
    loop {
        let interrupted = interrupt.load(Ordering::SeqCst);
        if !interrupted {
            fill_slots(
                &mut slots,
                &mut store,
                plan,
                &mut hashes,
                opts,
                executor,
                &tx,
                on_event,
            )?;
        }
        // Forward progress.
        while let Ok((slot, event)) = rx.try_recv() {
            on_event(SweepEvent::Progress { slot, event });
        }
        if last_beat.elapsed() >= HEARTBEAT_INTERVAL {
            beat_for_jobs(&slots, &store);
            last_beat = Instant::now();
        }
        ran_now += reap(
            &mut slots,
            &mut store,
            interrupted,
            opts.detach,
            interrupt,
            on_event,
        )?;
        let busy = slots.iter().any(|s| s.active.is_some());
        if interrupted && !busy {
            break;
        }
        if !busy {
            // A search may still have trials to propose once its running ones are settled.
            if !interrupted && more_trials(&mut store, plan, &mut hashes)? {
                continue;
            }
            match idle_step(&store, &hashes, &mut last_wait_note, on_event)? {
                Idle::Finished => break,
                Idle::Again => continue,
                Idle::Waited => {}
            }
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    new_trials(&store, plan, &mut hashes)?;
    let summary = SweepSummary {
        total: hashes.len(),
        done: count(&store, &hashes, RunStatus::Done)?,
        failed: count(&store, &hashes, RunStatus::Failed)?,
        skipped: count(&store, &hashes, RunStatus::Skipped)?,
        pruned: count(&store, &hashes, RunStatus::Pruned)?,
        pending: count(&store, &hashes, RunStatus::Pending)?
            + count(&store, &hashes, RunStatus::Running)?,
        ran_now,
        interrupted: interrupt.load(Ordering::SeqCst),
    };
    Ok(summary)
}

/// Adds to `hashes` the trials of the plan's studies that the store holds and `hashes` lacks
/// (proposed by an earlier or another sweep); whether there were any.
fn new_trials(store: &Store, plan: &Plan, hashes: &mut Vec<String>) -> Result<bool, StoreError> {
    let mut added = false;
    for st in &plan.studies {
        for t in store.trials(&st.key)? {
            if !hashes.contains(&t.hash) {
                hashes.push(t.hash);
                added = true;
            }
        }
    }
    Ok(added)
}

/// When nothing is claimable: trials another sweep proposed, else a new trial of the first
/// study that can take one ([`trials::propose`]). Whether `hashes` grew.
fn more_trials(
    store: &mut Store,
    plan: &Plan,
    hashes: &mut Vec<String>,
) -> Result<bool, StoreError> {
    if new_trials(store, plan, hashes)? {
        return Ok(true);
    }
    for st in &plan.studies {
        if let Some(hash) = trials::propose(store, &plan.name, st)? {
            hashes.push(hash);
            return Ok(true);
        }
    }
    Ok(false)
}

/// Claims a run for every free slot (until none is claimable, proposing trials of searches
/// when they can run) and starts it; returns how many were started.
#[allow(clippy::too_many_arguments)]
fn fill_slots(
    slots: &mut [Slot],
    store: &mut Store,
    plan: &Plan,
    hashes: &mut Vec<String>,
    opts: &SweepOptions,
    executor: &dyn Executor,
    tx: &mpsc::Sender<(usize, RunEvent)>,
    on_event: &mut dyn FnMut(SweepEvent),
) -> Result<usize, ScheduleError> {
    let mut started = 0;
    for (i, slot) in slots.iter_mut().enumerate() {
        if slot.active.is_some() {
            continue;
        }
        let worker = worker_id(i);
        let device = slot.device.to_string();
        let mut run = store.claim_next(Some(hashes), &worker, &device, opts.stale_after_s)?;
        while run.is_none() && more_trials(store, plan, hashes)? {
            run = store.claim_next(Some(hashes), &worker, &device, opts.stale_after_s)?;
        }
        let Some(run) = run else {
            break;
        };
        let handle = match executor.spawn(&run.hash, &worker, slot.device, i, tx.clone()) {
            Ok(h) => h,
            Err(e) => {
                // Nothing started (`sbatch` refused the job, the child could not be started):
                // not an attempt.
                store.release_unstarted(&run.hash, &worker)?;
                return Err(ScheduleError::Spawn {
                    what: executor.describe(),
                    cause: e,
                });
            }
        };
        on_event(SweepEvent::Started {
            slot: i,
            device: slot.device,
            name: &run.label,
            hash: &run.hash,
        });
        slot.active = Some(Active {
            hash: run.hash.clone(),
            name: run.label.clone(),
            worker,
            handle,
        });
        started += 1;
    }
    Ok(started)
}

/// Settles every slot whose run has ended (killing them all first when `interrupted`); returns
/// how many of them this sweep executed to their end (done, failed or pruned here: not runs
/// interrupted, retried after a fault, or taken over by another worker).
fn reap(
    slots: &mut [Slot],
    store: &mut Store,
    interrupted: bool,
    detach: bool,
    interrupt: &AtomicBool,
    on_event: &mut dyn FnMut(SweepEvent),
) -> Result<usize, ScheduleError> {
    let mut ended_here = 0;
    for (i, slot) in slots.iter_mut().enumerate() {
        let Some(active) = slot.active.as_mut() else {
            continue;
        };
        if interrupted && detach && !active.handle.beats_for_itself() {
            let active = slot.active.take().expect("active");
            store.release(&active.hash, &active.worker)?;
            on_event(SweepEvent::Finished {
                slot: i,
                name: &active.name,
                hash: &active.hash,
                status: RunStatus::Pending,
                detail: Some("left running (--detach); a later sweep re-attaches to its job"),
            });
            continue;
        }
        if interrupted {
            active.handle.kill();
        }
        let status = match active.handle.poll() {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(_) => continue,
        };
        let mut active = slot.active.take().expect("active");
        let interrupted = interrupted || interrupted_too(&status, interrupt);
        let settled = settle(store, &mut active, status, interrupted)?;
        ended_here += usize::from(settled.ended_here);
        on_event(SweepEvent::Finished {
            slot: i,
            name: &active.name,
            hash: &active.hash,
            status: settled.status,
            detail: settled.detail.as_deref(),
        });
    }
    Ok(ended_here)
}

/// Refreshes the claims of the runs in flight that do not beat for themselves (cluster jobs):
/// the sweep vouches for them while their executor says they are queued or running. A lost
/// claim shows when the run is settled.
fn beat_for_jobs(slots: &[Slot], store: &Store) {
    for a in slots.iter().filter_map(|s| s.active.as_ref()) {
        if !a.handle.beats_for_itself() {
            let _ = store.heartbeat(&a.hash, &a.worker);
        }
    }
}

/// What an idle sweep (none of its runs running here) does next.
enum Idle {
    /// Nothing is left to run here or elsewhere.
    Finished,
    /// A run became claimable: go round again.
    Again,
    /// Runs are executing in another sweep: waited a little.
    Waited,
}

/// One turn of an idle sweep: finished, a run became claimable, or runs are executing in
/// another sweep (a note every 30 s, then a short sleep).
fn idle_step(
    store: &Store,
    hashes: &[String],
    last_wait_note: &mut Instant,
    on_event: &mut dyn FnMut(SweepEvent),
) -> Result<Idle, ScheduleError> {
    // Nothing of ours is running and nothing was claimable: done, or waiting for runs
    // that another sweep is executing.
    let rows: Vec<_> = hashes
        .iter()
        .filter_map(|h| store.run(h).ok().flatten())
        .collect();
    let open = rows
        .iter()
        .filter(|r| matches!(r.status, RunStatus::Pending | RunStatus::Running))
        .count();
    if open == 0 {
        return Ok(Idle::Finished);
    }
    let elsewhere = rows
        .iter()
        .filter(|r| r.status == RunStatus::Running)
        .count();
    if any_claimable(store, hashes)? {
        std::thread::sleep(Duration::from_millis(50));
        return Ok(Idle::Again);
    }
    if elsewhere == 0 {
        // Pending runs whose dependencies can never finish (should not happen: failures
        // skip dependants) — stop rather than spin.
        return Ok(Idle::Finished);
    }
    if last_wait_note.elapsed() > Duration::from_secs(30) {
        on_event(SweepEvent::Waiting {
            running_elsewhere: elsewhere,
        });
        *last_wait_note = Instant::now();
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok(Idle::Waited)
}

/// Whether any of `hashes` is pending with all dependencies done.
fn any_claimable(store: &Store, hashes: &[String]) -> Result<bool, StoreError> {
    for h in hashes {
        if let Some(r) = store.run(h)? {
            if r.status == RunStatus::Pending {
                let deps_done = r.deps.iter().all(|d| {
                    store
                        .run(d)
                        .ok()
                        .flatten()
                        .is_some_and(|x| x.status == RunStatus::Done)
                });
                if deps_done {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Whether a child that a termination signal stopped (SIGINT, SIGTERM, SIGHUP) went with this
/// sweep: such a signal often goes to the whole process group (Ctrl-C, Slurm, a closing
/// terminal) and may reach the sweep a moment after its child died. Waits up to a second for
/// the sweep's own flag before calling the run failed.
fn interrupted_too(status: &RunExit, interrupt: &AtomicBool) -> bool {
    const SIGHUP: i32 = 1;
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    if !matches!(status.signal, Some(SIGHUP | SIGINT | SIGTERM)) {
        return false;
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        if interrupt.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt.load(Ordering::SeqCst)
}

/// What a run's end meant (see [`settle`]).
struct Settled {
    /// The run's status now.
    status: RunStatus,
    /// Why, when it did not end done.
    detail: Option<String>,
    /// Whether this attempt took the run to its end (done, failed or pruned), which makes it
    /// one execution of this sweep.
    ended_here: bool,
}

impl Settled {
    fn new(status: RunStatus, detail: Option<String>) -> Self {
        let ended_here = matches!(
            status,
            RunStatus::Done | RunStatus::Failed | RunStatus::Pruned
        );
        Settled {
            status,
            detail,
            ended_here,
        }
    }
}

/// Decide what a child's exit means for its run: its own outcome (done, pruned, or failed by
/// an error of its own: not retried), an interruption (back to pending), or an infrastructure
/// fault (killed from outside, its node lost: back to pending to resume from its checkpoint,
/// failed past the limit of retries).
fn settle(
    store: &mut Store,
    active: &mut Active,
    status: RunExit,
    interrupted: bool,
) -> Result<Settled, StoreError> {
    let row = store.run(&active.hash)?;
    let still_ours = row.as_ref().is_some_and(|r| {
        r.status == RunStatus::Running && r.claimed_by.as_deref() == Some(active.worker.as_str())
    });
    if !still_ours {
        // The child recorded its own outcome (done, or failed with its error), or its claim was
        // taken over and it stopped.
        let r = row.expect("registered run");
        let by = r.claimed_by.as_deref().unwrap_or("another worker");
        if r.status == RunStatus::Running || by != active.worker {
            let now = match r.status {
                RunStatus::Running => String::new(),
                s => format!("; the run is {s} now"),
            };
            return Ok(Settled {
                status: r.status,
                detail: Some(format!(
                    "claim taken over by worker {by} (this worker's heartbeat was over the \
                     stale limit); this attempt stopped without writing results{now}"
                )),
                ended_here: false,
            });
        }
        return Ok(Settled::new(r.status, r.error));
    }
    match active.handle.ingest() {
        Some(Ingested::Done(report)) => {
            let rel = format!("{}/{}", crate::archive::RUNS, active.hash);
            store.finish(&active.hash, &active.worker, &report.to_store_result(&rel))?;
            return Ok(Settled::new(RunStatus::Done, None));
        }
        Some(Ingested::Pruned(epochs)) => {
            let why = format!("stopped by the search's pruner after epoch {epochs}");
            return Ok(Settled::new(RunStatus::Pruned, Some(why)));
        }
        // An error the run reported is its own, unless its node failed under it.
        Some(Ingested::Failed(msg)) if !interrupted && !status.infrastructure => {
            store.fail(&active.hash, &active.worker, &msg)?;
            return Ok(Settled::new(RunStatus::Failed, Some(msg)));
        }
        _ => {}
    }
    if interrupted {
        store.release(&active.hash, &active.worker)?;
        return Ok(Settled::new(
            RunStatus::Pending,
            Some("interrupted; will run again".into()),
        ));
    }
    let why = format!("run process {status}");
    if status.infrastructure {
        return Ok(match store.fault(&active.hash, &active.worker, &why)? {
            AfterFault::Retried { fault, limit } => Settled::new(
                RunStatus::Pending,
                Some(format!(
                    "{why}: infrastructure fault {fault} of the {limit} retried; it resumes \
                     from its checkpoint"
                )),
            ),
            AfterFault::Failed { error } => Settled::new(RunStatus::Failed, Some(error)),
        });
    }
    let tail = active.handle.output_tail().join("\n");
    let msg = if tail.is_empty() {
        why
    } else {
        format!("{why}; last output:\n{tail}")
    };
    store.fail(&active.hash, &active.worker, &msg)?;
    Ok(Settled::new(RunStatus::Failed, Some(msg)))
}

/// Keeps a worker's claim alive: a heartbeat every `interval` on its own store connection,
/// until dropped. When the store answers that the claim is no longer this worker's (another
/// worker took the run over after the heartbeat went stale, or the run was reset), `on_lost` is
/// called once with the store's error and the heartbeats stop; a worker should then stop at
/// once without writing results (`run-one` exits with [`EXIT_LOST_CLAIM`]). Other store errors
/// (a lock held too long) are retried at the next beat.
pub struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(
        store: &Path,
        hash: &str,
        worker: &str,
        interval: Duration,
        on_lost: impl FnOnce(StoreError) + Send + 'static,
    ) -> Result<Heartbeat, StoreError> {
        let conn = Store::open(store)?;
        let (tx, rx) = mpsc::channel::<()>();
        let (hash, worker) = (hash.to_string(), worker.to_string());
        let thread = std::thread::spawn(move || loop {
            if let Err(e @ (StoreError::LostClaim { .. } | StoreError::UnknownRun { .. })) =
                conn.heartbeat(&hash, &worker)
            {
                on_lost(e);
                return;
            }
            match rx.recv_timeout(interval) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        });
        Ok(Heartbeat {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a run's folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum FolderLockError {
    #[error("run folder {}: cannot create its lock file {}: {cause}", .dir.display(), .file.display())]
    Io {
        dir: PathBuf,
        file: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "run folder {}: still in use by another worker{} after {waited_s:.0} s (a worker whose \
         claim was taken over but that has not stopped, e.g. a suspended process); stop it, \
         then re-queue the run with `stkd sweep --retry-failed`",
        .dir.display(),
        .holder.map(|p| format!(" (process {p})")).unwrap_or_default()
    )]
    Busy {
        dir: PathBuf,
        holder: Option<u32>,
        waited_s: f64,
    },
}

/// Exclusive right to write a run's folder: an advisory lock (`flock`) on `<folder>/.lock`,
/// held until dropped or until the process ends (the kernel releases it, even after
/// `kill -9`). The file holds the holder's process id, for messages.
#[derive(Debug)]
pub struct RunFolderLock {
    _file: std::fs::File,
}

/// How long a worker waits for a run folder that another worker holds. A live worker that lost
/// its claim stops within one [`HEARTBEAT_INTERVAL`]; this is thirty of them.
pub const FOLDER_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Name of the lock file inside a run folder.
pub const LOCK_FILE: &str = ".lock";

impl RunFolderLock {
    /// Takes the lock of `dir` (created if needed), waiting while another process holds it:
    /// `on_wait` is called once, with the holder's process id if known, when the lock is busy.
    /// Gives up after `timeout`.
    pub fn acquire(
        dir: &Path,
        timeout: Duration,
        on_wait: impl FnOnce(Option<u32>),
    ) -> Result<RunFolderLock, FolderLockError> {
        use std::io::{Read, Seek, Write};
        let path = dir.join(LOCK_FILE);
        let io = |cause| FolderLockError::Io {
            dir: dir.to_path_buf(),
            file: path.clone(),
            cause,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let t0 = Instant::now();
        let mut on_wait = Some(on_wait);
        let mut holder = None;
        while !try_lock_exclusive(&file).map_err(io)? {
            if let Some(f) = on_wait.take() {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                holder = text.trim().parse::<u32>().ok();
                f(holder);
            }
            if t0.elapsed() >= timeout {
                return Err(FolderLockError::Busy {
                    dir: dir.to_path_buf(),
                    holder,
                    waited_s: t0.elapsed().as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(RunFolderLock { _file: file })
    }
}

/// Takes an exclusive `flock` on `file` without waiting: `false` when another open file holds it.
#[cfg(unix)]
fn try_lock_exclusive(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    loop {
        // SAFETY: flock only reads the descriptor number, which `file` keeps open.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::WouldBlock => return Ok(false),
            std::io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

/// No advisory locks here: the claim alone guards the folder.
#[cfg(not(unix))]
fn try_lock_exclusive(_file: &std::fs::File) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A fresh folder under the temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "stkd-schedule-test-{}-{}-{tag}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn stale_after_below_five_heartbeats_is_refused() {
        assert_eq!(MIN_STALE_AFTER_S, 5.0 * HEARTBEAT_INTERVAL.as_secs_f64());
        for bad in [0.0, 1.0, 9.5, -3.0, f64::NAN, f64::INFINITY] {
            let err = check_stale_after(bad).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("stale_after = {bad} s")), "{msg}");
            assert!(msg.contains("at least 10"), "{msg}");
        }
        assert_eq!(check_stale_after(10.0).unwrap(), 10.0);
        assert_eq!(check_stale_after(60.0).unwrap(), 60.0);
    }

    fn one_run_store(dir: &Path) -> PathBuf {
        let path = dir.join("stkd.db");
        let mut store = Store::open(&path).unwrap();
        let info = ExperimentInfo {
            name: "e".into(),
            file: "e.yaml".into(),
            yaml_sha256: "x".into(),
        };
        let run = NewRun {
            hash: "h".into(),
            label: "h".into(),
            dataset: "pemsd8".into(),
            config_json: "{}".into(),
            deps: vec![],
        };
        store.register(&info, &[run]).unwrap();
        path
    }

    #[test]
    fn heartbeat_keeps_the_claim_fresh_and_reports_a_takeover() {
        let dir = TempDir::new("heartbeat");
        let path = one_run_store(&dir.0);
        let mut store = Store::open(&path).unwrap();
        assert!(store.claim("h", "w1", "cpu", 60.0).unwrap());
        let first = store.run("h").unwrap().unwrap().heartbeat.unwrap();
        let (tx, rx) = mpsc::channel();
        let beat = Heartbeat::start(&path, "h", "w1", Duration::from_millis(50), move |e| {
            tx.send(e).unwrap()
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let later = store.run("h").unwrap().unwrap().heartbeat.unwrap();
        assert!(later > first, "heartbeats refresh the claim");
        assert!(rx.try_recv().is_err(), "no loss while the claim is held");
        // Another worker takes the run over (a negative limit makes any heartbeat stale).
        assert!(store.claim("h", "w2", "cpu", -1e6).unwrap());
        let lost = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("loss reported");
        match lost {
            StoreError::LostClaim { claimed_by, .. } => {
                assert_eq!(claimed_by.as_deref(), Some("w2"))
            }
            other => panic!("{other}"),
        }
        drop(beat);
        let row = store.run("h").unwrap().unwrap();
        assert_eq!(
            row.claimed_by.as_deref(),
            Some("w2"),
            "w1 wrote nothing more"
        );
    }

    /// A run that has ended as `exit` says, with `ingest` in its folder.
    struct Ended {
        exit: RunExit,
        ingest: Option<Ingested>,
    }

    impl RunHandle for Ended {
        fn poll(&mut self) -> std::io::Result<Option<RunExit>> {
            Ok(Some(self.exit.clone()))
        }
        fn kill(&mut self) {}
        fn output_tail(&self) -> Vec<String> {
            vec!["its last words".into()]
        }
        fn beats_for_itself(&self) -> bool {
            false
        }
        fn ingest(&mut self) -> Option<Ingested> {
            self.ingest.take()
        }
    }

    /// An executor whose every submission is refused, as `sbatch` refuses a job no node can
    /// meet.
    struct Refusing;

    impl Executor for Refusing {
        fn spawn(
            &self,
            hash: &str,
            _: &str,
            _: DeviceSpec,
            _: usize,
            _: mpsc::Sender<(usize, RunEvent)>,
        ) -> std::io::Result<Box<dyn RunHandle>> {
            Err(std::io::Error::other(format!(
                "sbatch refused the job of run {hash}: sbatch: error: Batch job submission \
                 failed: Requested node configuration is not available"
            )))
        }
        fn describe(&self) -> String {
            "sbatch".into()
        }
    }

    #[test]
    fn a_refused_submission_is_not_an_attempt_and_its_message_is_printed_once() {
        let dir = TempDir::new("refused");
        let path = one_run_store(&dir.0);
        let mut store = Store::open(&path).unwrap();
        let plan = Plan {
            name: "e".into(),
            jobs: Vec::new(),
            studies: Vec::new(),
        };
        let opts = SweepOptions {
            store: path.clone(),
            devices: vec![DeviceSpec::Cpu],
            per_device: 1,
            retry_failed: false,
            stale_after_s: 60.0,
            data_dir: dir.0.clone(),
            detach: false,
            retries: 2,
        };
        let (tx, _rx) = mpsc::channel();
        let mut hashes = vec!["h".to_string()];
        for sweep in 1..=3 {
            let mut slots = vec![Slot {
                device: DeviceSpec::Cpu,
                active: None,
            }];
            let e = fill_slots(
                &mut slots,
                &mut store,
                &plan,
                &mut hashes,
                &opts,
                &Refusing,
                &tx,
                &mut |_| {},
            )
            .unwrap_err();
            let shown = format!("{:#}", anyhow::Error::from(e));
            assert_eq!(
                shown.matches("Requested node configuration").count(),
                1,
                "sweep {sweep}: {shown}"
            );
            let row = store.run("h").unwrap().unwrap();
            assert_eq!(
                (row.status, row.attempts, row.claimed_by),
                (RunStatus::Pending, 0, None),
                "sweep {sweep}: back to pending, no attempt counted"
            );
        }
        // A submission that starts is one attempt.
        assert!(store.claim("h", "w", "cpu", 60.0).unwrap());
        assert_eq!(store.run("h").unwrap().unwrap().attempts, 1);
    }

    #[test]
    fn infrastructure_faults_are_retried_and_a_runs_own_failures_are_not() {
        let dir = TempDir::new("faults");
        let path = one_run_store(&dir.0);
        let mut store = Store::open(&path).unwrap();
        store.set_retries(1);
        fn end(
            store: &mut Store,
            exit: RunExit,
            ingest: Option<Ingested>,
        ) -> (RunStatus, String, bool) {
            assert!(store.claim("h", "w", "cpu", 60.0).unwrap());
            let mut active = Active {
                hash: "h".into(),
                name: "h".into(),
                worker: "w".into(),
                handle: Box::new(Ended {
                    exit: exit.clone(),
                    ingest,
                }),
            };
            let s = settle(store, &mut active, exit, false).unwrap();
            (s.status, s.detail.unwrap_or_default(), s.ended_here)
        }
        let own_error = || Some(Ingested::Failed("Slurm job 7: training diverged".into()));
        // A Slurm node failure: back to pending (its job's last words do not matter).
        let (status, detail, ended) =
            end(&mut store, slurm::job_exit("7", "NODE_FAIL"), own_error());
        assert_eq!((status, ended), (RunStatus::Pending, false), "{detail}");
        assert_eq!(
            detail,
            "run process Slurm job 7 ended NODE_FAIL: infrastructure fault 1 of the 1 \
             retried; it resumes from its checkpoint"
        );
        // The run's own error, a cancellation, a time limit, a crash of its own: failed.
        let (status, detail, ended) = end(&mut store, slurm::job_exit("8", "FAILED"), own_error());
        assert_eq!((status, ended), (RunStatus::Failed, true));
        assert_eq!(detail, "Slurm job 7: training diverged");
        for (exit, why) in [
            (
                slurm::job_exit("9", "CANCELLED"),
                "Slurm job 9 ended CANCELLED",
            ),
            (slurm::job_exit("9", "TIMEOUT"), "Slurm job 9 ended TIMEOUT"),
            (
                RunExit {
                    code: None,
                    signal: Some(libc::SIGSEGV),
                    detail: None,
                    infrastructure: false,
                },
                "was killed by signal 11 (SIGSEGV)",
            ),
        ] {
            store.retry_failed(None).unwrap();
            let (status, detail, _) = end(&mut store, exit, None);
            assert_eq!(status, RunStatus::Failed, "{detail}");
            assert!(
                detail.contains(why) && detail.contains("its last words"),
                "{detail}"
            );
        }
        assert_eq!(store.faults("h").unwrap().len(), 0, "cleared by the retry");
        // Preempted twice with a limit of 1: failed with both causes.
        store.retry_failed(None).unwrap();
        let (status, _, _) = end(&mut store, slurm::job_exit("10", "PREEMPTED"), None);
        assert_eq!(status, RunStatus::Pending);
        let (status, detail, ended) = end(&mut store, slurm::job_exit("11", "PREEMPTED"), None);
        assert_eq!((status, ended), (RunStatus::Failed, true));
        assert!(
            detail.starts_with("gave up after 2 infrastructure faults (1 retry allowed")
                && detail.contains("attempt 6: run process Slurm job 10 ended PREEMPTED; attempt 7: run process Slurm job 11 ended PREEMPTED"),
            "{detail}"
        );
        // A local run process killed from outside is a fault; by its own crash, not.
        let of = |signal| RunExit::of(std::os::unix::process::ExitStatusExt::from_raw(signal));
        assert!(of(libc::SIGKILL).infrastructure && of(libc::SIGTERM).infrastructure);
        assert!(!of(libc::SIGSEGV).infrastructure && !of(libc::SIGABRT).infrastructure);
        assert_eq!(
            of(libc::SIGKILL).to_string(),
            "was killed by signal 9 (SIGKILL)"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_run_folder_is_locked_by_one_holder_at_a_time() {
        let dir = TempDir::new("lock");
        let run_dir = dir.0.join("runs").join("h");
        let first = RunFolderLock::acquire(&run_dir, Duration::ZERO, |_| panic!("free")).unwrap();
        let mut waited = None;
        let err =
            RunFolderLock::acquire(&run_dir, Duration::from_millis(200), |p| waited = Some(p))
                .unwrap_err();
        assert_eq!(waited, Some(Some(std::process::id())), "holder named");
        let msg = err.to_string();
        assert!(msg.contains("still in use by another worker"), "{msg}");
        assert!(msg.contains(&run_dir.display().to_string()), "{msg}");
        drop(first);
        let again = RunFolderLock::acquire(&run_dir, Duration::ZERO, |_| panic!("free"));
        assert!(again.is_ok());
    }
}
