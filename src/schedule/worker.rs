//! The worker side of a sweep: execute one run that the sweep claimed for this worker
//! (`stkd run-one`). It checks the claim, keeps it alive with a [`Heartbeat`] (which reports a
//! lost claim at once), holds the run folder's [`RunFolderLock`] so that one process writes a
//! folder, executes the run, and records the outcome as done or failed. A failed run never
//! touches other runs or the store beyond its own row.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::archive::RUNS;
use crate::backend::DeviceSpec;
use crate::data::Dataset;
use crate::exec::{self, ExecError, RunPaths, RunReport};
use crate::experiment::RunConfig;
use crate::experiment::SearchSpec;
use crate::search::Pruner;
use crate::store::{EpochRow, RunStatus, Store, StoreError};
use crate::train::{EpochRecord, Event};

use super::{FolderLockError, Heartbeat, RunEvent, RunFolderLock, FOLDER_LOCK_TIMEOUT};

/// Which run a worker executes, where, and how it names itself in the store.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub store: PathBuf,
    pub hash: String,
    pub worker: String,
    pub device: DeviceSpec,
    pub data_dir: PathBuf,
    /// Fail the run when its best validation MAE is worse than predicting the training mean
    /// everywhere ([`check_beats_mean`]); off for deliberate experiments.
    pub mean_check: bool,
}

/// Why a worker could not execute its run (the run is recorded as failed when it got as far as
/// holding it).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("run {hash} is not in {}", .store.display())]
    UnknownRun { hash: String, store: PathBuf },
    #[error("run {hash} is {status} and not claimed by {worker}; refusing to execute it")]
    NotClaimed {
        hash: String,
        status: RunStatus,
        worker: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Folder(#[from] FolderLockError),
    #[error("reading the run's configuration: {0}")]
    Config(serde_json::Error),
    #[error(transparent)]
    Device(#[from] crate::backend::DeviceError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("{}: {detail} (the executor writes it before starting the job)", .path.display())]
    JobSpec { path: PathBuf, detail: String },
    /// Not a failure: the run is a trial its search's pruner stopped; the store has it as
    /// `pruned` with its curve.
    #[error("trial stopped by the search's pruner after epoch {epoch}")]
    Pruned { epoch: usize },
    /// The heartbeat found the run claimed by another worker: this one stopped without
    /// writing results.
    #[error("lost the claim on the run ({detail}); stopped without writing results")]
    LostClaim { detail: String },
    #[error(
        "worse than predicting the mean: best validation MAE {val_mae:.3} mph, against \
         {mean_mae:.3} mph for the training split's mean speed ({mean:.2} mph) predicted \
         everywhere on the validation split; `mean_check: false` in the experiment file (or \
         `stkd sweep --no-mean-check`) keeps such a run for a deliberate experiment"
    )]
    WorseThanMean {
        val_mae: f64,
        mean_mae: f64,
        mean: f64,
    },
}

/// The result sanity rule: a run whose best validation MAE is worse than the trivial
/// predictor's on the same split (the training split's mean speed predicted everywhere,
/// [`Dataset::mean_predictor_mae`]) has learnt nothing and fails, with both numbers.
pub fn check_beats_mean(report: &RunReport, data: &Dataset) -> Result<(), WorkerError> {
    let val_mae = report.outcome.val.mean_mae();
    let mean_mae = data.mean_predictor_mae(crate::data::Split::Val);
    if val_mae > mean_mae {
        return Err(WorkerError::WorseThanMean {
            val_mae,
            mean_mae,
            mean: data.mean,
        });
    }
    Ok(())
}

/// Notes, from a run's first event, that it continues an interrupted attempt from its
/// checkpoint: [`RunEvent::Resumed`] before the event (an epoch after the first, or testing
/// with no epoch left).
struct ResumeNote {
    seen: bool,
    /// The run's epochs when known without running it (not for a pruning run, whose schedule
    /// sets them).
    epochs: Option<usize>,
}

impl ResumeNote {
    fn of(cfg: &RunConfig) -> Self {
        ResumeNote {
            seen: false,
            epochs: cfg.prune.is_none().then_some(cfg.train.epochs),
        }
    }

    fn note(&mut self, e: &Event) -> Option<RunEvent> {
        if self.seen {
            return None;
        }
        match *e {
            Event::EpochStart { epoch, epochs, .. } => {
                self.seen = true;
                (epoch > 1).then_some(RunEvent::Resumed {
                    epoch: epoch - 1,
                    epochs,
                })
            }
            Event::Testing => {
                self.seen = true;
                self.epochs.map(|epochs| RunEvent::Resumed {
                    epoch: epochs,
                    epochs,
                })
            }
            _ => None,
        }
    }
}

/// The pruner of the search a run is a trial of, judging each epoch against the other trials'
/// curves in the store (the trial's own epochs are written there as they finish, for theirs).
/// The local worker judges its own run; for a Slurm job, whose node has no store, the sweep
/// judges the epochs the job reports ([`super::slurm`]).
pub(super) struct TrialPruner {
    store: Store,
    study: String,
    pruner: Pruner,
    hash: String,
    worker: String,
    /// The trial's curve so far (from the store at the start: a resumed trial's earlier epochs).
    curve: Vec<EpochRow>,
    /// Whether the pruner stopped the trial (its curve is then final).
    pub(super) stopped: bool,
}

impl TrialPruner {
    /// `None` unless run `hash` of `store` is a trial of a search with a pruner.
    pub(super) fn of(
        store: &std::path::Path,
        hash: &str,
        worker: &str,
    ) -> Result<Option<TrialPruner>, WorkerError> {
        let store = Store::open(store)?;
        let Some((study, spec)) = store.study_of(hash)? else {
            return Ok(None);
        };
        let spec: SearchSpec = serde_json::from_str(&spec).map_err(WorkerError::Config)?;
        if spec.pruner == Pruner::None {
            return Ok(None);
        }
        let curve = store.epochs(hash)?;
        Ok(Some(TrialPruner {
            store,
            study,
            pruner: spec.pruner,
            hash: hash.to_string(),
            worker: worker.to_string(),
            curve,
            stopped: false,
        }))
    }

    /// Records epochs that ended (each replaces the curve from its epoch on: a resumed trial
    /// repeats the epochs after its checkpoint); whether the trial should stop after the last.
    pub(super) fn judge(&mut self, epochs: &[EpochRow]) -> Result<bool, StoreError> {
        let Some(last) = epochs.last() else {
            return Ok(false);
        };
        for e in epochs {
            self.curve.retain(|c| c.epoch < e.epoch);
            self.curve.push(e.clone());
        }
        self.store.record_epoch(&self.hash, &self.worker, last)?;
        let mut others = Vec::new();
        for t in self.store.trials(&self.study)? {
            if t.hash != self.hash {
                others.push(self.store.val_curve(&t.hash)?);
            }
        }
        let others: Vec<&[f64]> = others.iter().map(Vec::as_slice).collect();
        let mine: Vec<f64> = self.curve.iter().map(|r| r.val_mae).collect();
        self.stopped = self.pruner.should_stop(&mine, &others);
        Ok(self.stopped)
    }

    /// Records the stopped trial as pruned with its curve.
    pub(super) fn record_pruned(&mut self) -> Result<usize, StoreError> {
        let seconds = self.curve.iter().map(|r| r.seconds).sum();
        self.store
            .prune(&self.hash, &self.worker, &self.curve, seconds)?;
        Ok(self.curve.len())
    }
}

fn epoch_row(r: &EpochRecord) -> EpochRow {
    EpochRow {
        epoch: r.epoch as u32,
        lr: r.lr,
        train_loss: r.train_loss,
        val_mae: r.val_mae,
        seconds: r.seconds,
    }
}

/// What executes one run's configuration on its data and reports its progress
/// (e.g. [`exec::execute`] on the run's device), for [`run_claimed`] and [`run_detached`].
pub trait Execute:
    FnOnce(&RunConfig, &Dataset, &RunPaths, &mut dyn FnMut(Event)) -> Result<RunReport, ExecError>
{
}

impl<F> Execute for F where
    F: FnOnce(
        &RunConfig,
        &Dataset,
        &RunPaths,
        &mut dyn FnMut(Event),
    ) -> Result<RunReport, ExecError>
{
}

/// Runs the claimed run of `a`: `execute` computes it (on the backend of `a.device`) and
/// reports its events, each of which also goes to `emit`. When the heartbeat finds the claim
/// no longer this worker's (another worker took the run over), `on_lost` is told from the
/// heartbeat's thread and the training stops at its next minibatch (a flag its step events
/// carry); nothing more is written to the store and the result is [`WorkerError::LostClaim`].
/// Returns the run's report once the store has it as done; an error once the store has it as
/// failed (or when the run was not this worker's to execute).
pub fn run_claimed(
    a: &Assignment,
    execute: impl Execute,
    mut emit: impl FnMut(RunEvent),
    on_lost: impl FnOnce(&StoreError) + Send + 'static,
) -> Result<RunReport, WorkerError> {
    let mut store = Store::open(&a.store)?;
    let row = store.run(&a.hash)?.ok_or_else(|| WorkerError::UnknownRun {
        hash: a.hash.clone(),
        store: a.store.clone(),
    })?;
    if row.status != RunStatus::Running || row.claimed_by.as_deref() != Some(a.worker.as_str()) {
        return Err(WorkerError::NotClaimed {
            hash: a.hash.clone(),
            status: row.status,
            worker: a.worker.clone(),
        });
    }
    let runs_dir = crate::archive::beside(&a.store, RUNS);
    let run_dir = runs_dir.join(&a.hash);
    let lost: Arc<Mutex<Option<StoreError>>> = Arc::default();
    let heartbeat = {
        let lost = lost.clone();
        Heartbeat::start(
            &a.store,
            &a.hash,
            &a.worker,
            super::HEARTBEAT_INTERVAL,
            move |e| {
                on_lost(&e);
                *lost.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
            },
        )?
    };
    let lost_claim = || {
        lost.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(ToString::to_string)
    };
    // One writer per run folder: wait while a worker that lost this run has not stopped yet.
    let lock = RunFolderLock::acquire(&run_dir, FOLDER_LOCK_TIMEOUT, |holder| {
        emit(RunEvent::WaitingForFolder { holder })
    });
    let lock = match lock {
        Ok(l) => l,
        Err(e) => {
            drop(heartbeat);
            let e = WorkerError::from(e);
            store.fail(&a.hash, &a.worker, &e.to_string())?;
            return Err(e);
        }
    };
    let mut pruner = TrialPruner::of(&a.store, &a.hash, &a.worker)?;
    let result = (|| -> Result<RunReport, WorkerError> {
        let cfg: RunConfig = serde_json::from_str(&row.config_json).map_err(WorkerError::Config)?;
        crate::backend::check_device(a.device)?;
        let data = exec::load_data(&cfg, &a.data_dir)?;
        let paths = RunPaths {
            run_dir: run_dir.clone(),
            teacher_dir: cfg.teacher.as_ref().map(|t| runs_dir.join(t)),
            base_dir: cfg.base.as_ref().map(|b| runs_dir.join(b)),
            data_dir: a.data_dir.clone(),
        };
        let mut resumed = ResumeNote::of(&cfg);
        let mut on_event = |e: Event| {
            if let Event::Step { stop, .. } = &e {
                if lost_claim().is_some() {
                    stop.set(true);
                }
            }
            if let Some(note) = resumed.note(&e) {
                emit(note);
            }
            if let (Event::EpochEnd { curve, stop, .. }, Some(p)) = (&e, pruner.as_mut()) {
                let rows: Vec<EpochRow> = curve.iter().map(epoch_row).collect();
                match p.judge(&rows) {
                    Ok(s) => stop.set(s),
                    Err(err) => {
                        eprintln!("warning: the search's pruner could not judge this epoch: {err}")
                    }
                }
            }
            emit(RunEvent::from(e))
        };
        let report = execute(&cfg, &data, &paths, &mut on_event);
        if let Some(detail) = lost_claim() {
            // The run is another worker's now: neither its outcome nor a failure is ours to
            // write.
            return Err(WorkerError::LostClaim { detail });
        }
        let report = report?;
        // The outcome is kept in the folder either way: a run failed by the rule below is done
        // at once when re-queued with the rule off.
        exec::write_report(&report, &paths.run_dir)?;
        if a.mean_check {
            check_beats_mean(&report, &data)?;
        }
        Ok(report)
    })();
    drop(heartbeat);
    let _lock = lock; // held until the store has the outcome
    if let Err(e @ WorkerError::LostClaim { .. }) = result {
        return Err(e);
    }
    match result {
        Ok(report) => {
            let rel = format!("{RUNS}/{}", a.hash);
            store.finish(&a.hash, &a.worker, &report.to_store_result(&rel))?;
            Ok(report)
        }
        Err(e) => match pruner.filter(|p| p.stopped) {
            Some(mut p) => {
                let epoch = p.record_pruned()?;
                Err(WorkerError::Pruned { epoch })
            }
            None => {
                store.fail(&a.hash, &a.worker, &error_chain(&e))?;
                Err(e)
            }
        },
    }
}

/// An error and its causes on one line, as the store keeps it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

/// A run as a detached worker receives it ([`run_detached`]): written by the executor into
/// the run's folder as [`JOB_SPEC`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobSpec {
    pub hash: String,
    pub config: RunConfig,
    pub teacher_dir: Option<PathBuf>,
    pub base_dir: Option<PathBuf>,
    pub data_dir: PathBuf,
    /// A trial of a search with a pruner: after each epoch the job waits for the sweep's
    /// [`Verdict`] (the sweep holds the other trials' curves).
    #[serde(default)]
    pub judged: bool,
    /// Fail the run when it is worse than predicting the training mean ([`check_beats_mean`]).
    #[serde(default = "yes")]
    pub mean_check: bool,
}

fn yes() -> bool {
    true
}

/// The sweep's verdict on a detached trial's latest epoch, in [`VERDICT`].
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    pub epoch: usize,
    pub stop: bool,
}

/// The sweep's latest verdict in a judged job's folder.
pub const VERDICT: &str = "verdict.json";
/// How long a judged job waits for the verdict on an epoch before it goes on without one (the
/// sweep may be gone: `--detach`); after a missed verdict it waits only [`VERDICT_WAIT_MISSED`]
/// until verdicts come again.
const VERDICT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const VERDICT_WAIT_MISSED: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for the sweep's verdict on `epoch`; whether the trial stops there.
fn await_verdict(
    run_dir: &std::path::Path,
    epoch: usize,
    patience: &mut std::time::Duration,
) -> bool {
    let t0 = std::time::Instant::now();
    loop {
        let verdict = std::fs::read(run_dir.join(VERDICT))
            .ok()
            .and_then(|t| serde_json::from_slice::<Verdict>(&t).ok());
        if let Some(v) = verdict.filter(|v| v.epoch >= epoch) {
            *patience = VERDICT_WAIT;
            return v.stop && v.epoch == epoch;
        }
        if t0.elapsed() >= *patience {
            if *patience == VERDICT_WAIT {
                eprintln!(
                    "no verdict of the search's pruner on epoch {epoch} after {} s (is the sweep \
                     gone?); going on",
                    VERDICT_WAIT.as_secs()
                );
            }
            *patience = VERDICT_WAIT_MISSED;
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The job description in a detached run's folder.
pub const JOB_SPEC: &str = "job.json";
/// A detached run's error, when it failed (`{"error": "..."}`).
pub const FAILURE: &str = "failed.json";
/// A detached run's sign of life: Unix seconds, rewritten every [`super::HEARTBEAT_INTERVAL`].
pub const BEAT: &str = "heartbeat";

/// Write `text` to `path` atomically (a temporary file renamed over it), as a shared file
/// system needs: a reader sees the old file or the new one, never half of one.
pub fn write_atomic(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Rewrites a run folder's [`BEAT`] file until dropped.
struct BeatFile {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BeatFile {
    fn start(dir: &std::path::Path) -> BeatFile {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let path = dir.join(BEAT);
        let thread = std::thread::spawn(move || loop {
            let _ = write_atomic(&path, &format!("{:.3}\n", crate::store::now()));
            match rx.recv_timeout(super::HEARTBEAT_INTERVAL) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                _ => return,
            }
        });
        BeatFile {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for BeatFile {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs the run described by `run_dir`'s [`JOB_SPEC`] without opening the store: a cluster
/// job on a node whose shared file system cannot be trusted with SQLite's locks. It holds the
/// run folder's lock, keeps a [`BEAT`] file fresh, executes the run (resuming from its
/// checkpoint, as after a requeue) and leaves its outcome in the folder: `outcome.json`, or
/// [`FAILURE`] with the error. The sweep that submitted it records what it finds there.
pub fn run_detached(
    run_dir: &std::path::Path,
    device: DeviceSpec,
    execute: impl Execute,
    mut emit: impl FnMut(RunEvent),
) -> Result<RunReport, WorkerError> {
    let spec_path = run_dir.join(JOB_SPEC);
    let text = std::fs::read(&spec_path).map_err(|e| WorkerError::JobSpec {
        path: spec_path.clone(),
        detail: e.to_string(),
    })?;
    let spec: JobSpec = serde_json::from_slice(&text).map_err(WorkerError::Config)?;
    let lock = RunFolderLock::acquire(run_dir, FOLDER_LOCK_TIMEOUT, |holder| {
        emit(RunEvent::WaitingForFolder { holder })
    })?;
    let _ = std::fs::remove_file(run_dir.join(FAILURE));
    let beat = BeatFile::start(run_dir);
    let mut stopped_at = None;
    let result = (|| -> Result<RunReport, WorkerError> {
        crate::backend::check_device(device)?;
        let data = exec::load_data(&spec.config, &spec.data_dir)?;
        let paths = RunPaths {
            run_dir: run_dir.to_path_buf(),
            teacher_dir: spec.teacher_dir.clone(),
            base_dir: spec.base_dir.clone(),
            data_dir: spec.data_dir.clone(),
        };
        let mut patience = VERDICT_WAIT;
        let mut resumed = ResumeNote::of(&spec.config);
        let mut on_event = |e: Event| {
            if let Some(note) = resumed.note(&e) {
                emit(note);
            }
            let judged = match &e {
                Event::EpochEnd { record, stop, .. } if spec.judged => Some((record.epoch, *stop)),
                _ => None,
            };
            emit(RunEvent::from(e));
            if let Some((epoch, stop)) = judged {
                if await_verdict(run_dir, epoch, &mut patience) {
                    stopped_at = Some(epoch);
                    stop.set(true);
                }
            }
        };
        let report = execute(&spec.config, &data, &paths, &mut on_event)?;
        exec::write_report(&report, run_dir)?;
        if spec.mean_check {
            check_beats_mean(&report, &data)?;
        }
        Ok(report)
    })();
    drop(beat);
    // Stopped by the pruner: not a failure; the sweep records the trial as pruned.
    let result = match (result, stopped_at) {
        (Err(_), Some(epoch)) => Err(WorkerError::Pruned { epoch }),
        (r, _) => r,
    };
    match &result {
        Ok(_) | Err(WorkerError::Pruned { .. }) => {}
        Err(e) => {
            let json = serde_json::json!({ "error": error_chain(e) }).to_string();
            let _ = write_atomic(&run_dir.join(FAILURE), &json);
        }
    }
    drop(lock);
    result
}

/// Asks the kernel to kill this process when its parent (the sweep) dies, so that after a
/// `kill -9` of the sweep no orphan keeps a run's heartbeat alive (Linux; elsewhere nothing).
pub fn die_with_parent() {
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
