//! The worker side of a sweep: execute one run that the sweep claimed for this worker
//! (`stkd run-one`). It checks the claim, keeps it alive with a [`Heartbeat`] (which reports a
//! lost claim at once), holds the run folder's [`RunFolderLock`] so that one process writes a
//! folder, executes the run, and records the outcome as done or failed. A failed run never
//! touches other runs or the store beyond its own row.

use std::path::PathBuf;

use crate::archive::RUNS;
use crate::backend::DeviceSpec;
use crate::data::Dataset;
use crate::exec::{self, ExecError, RunPaths, RunReport};
use crate::search::Pruner;
use crate::spec::RunConfig;
use crate::spec::SearchSpec;
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
    /// Not a failure: the run is a trial its search's pruner stopped; the store has it as
    /// `pruned` with its curve.
    #[error("trial stopped by the search's pruner after epoch {epoch}")]
    Pruned { epoch: usize },
}

/// The pruner of the search a run is a trial of, judging each epoch against the other trials'
/// curves in the store (its own epochs are written there as they finish, for theirs).
struct TrialPruner {
    store: Store,
    study: String,
    pruner: Pruner,
    /// The curve when the pruner stopped the run.
    stopped: Option<Vec<EpochRecord>>,
}

impl TrialPruner {
    /// `None` unless run `hash` is a trial of a search with a pruner.
    fn of(a: &Assignment, store: &Store) -> Result<Option<TrialPruner>, WorkerError> {
        let Some((study, spec)) = store.study_of(&a.hash)? else {
            return Ok(None);
        };
        let spec: SearchSpec = serde_json::from_str(&spec).map_err(WorkerError::Config)?;
        if spec.pruner == Pruner::None {
            return Ok(None);
        }
        Ok(Some(TrialPruner {
            store: Store::open(&a.store)?,
            study,
            pruner: spec.pruner,
            stopped: None,
        }))
    }

    /// Records the epoch; whether the trial should stop after it.
    fn judge(&mut self, a: &Assignment, curve: &[EpochRecord]) -> Result<bool, StoreError> {
        let last = curve.last().expect("an epoch ended");
        self.store
            .record_epoch(&a.hash, &a.worker, &epoch_row(last))?;
        let mut others = Vec::new();
        for t in self.store.trials(&self.study)? {
            if t.hash != a.hash {
                others.push(self.store.val_curve(&t.hash)?);
            }
        }
        let others: Vec<&[f64]> = others.iter().map(Vec::as_slice).collect();
        let mine: Vec<f64> = curve.iter().map(|r| r.val_mae).collect();
        let stop = self.pruner.should_stop(&mine, &others);
        if stop {
            self.stopped = Some(curve.to_vec());
        }
        Ok(stop)
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

/// Runs the claimed run of `a`: `execute` computes it (on the backend of `a.device`) and
/// reports its events, each of which also goes to `emit`; `on_lost` is called from the
/// heartbeat's thread when the claim is no longer this worker's, and must stop the run at once
/// (the run is another worker's now: nothing may be written). Returns the run's report once
/// the store has it as done; an error once the store has it as failed (or when the run was
/// not this worker's to execute).
pub fn run_claimed(
    a: &Assignment,
    execute: impl FnOnce(
        &RunConfig,
        &Dataset,
        &RunPaths,
        &mut dyn FnMut(Event),
    ) -> Result<RunReport, ExecError>,
    mut emit: impl FnMut(RunEvent),
    on_lost: impl FnOnce(StoreError) + Send + 'static,
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
    let heartbeat = Heartbeat::start(
        &a.store,
        &a.hash,
        &a.worker,
        super::HEARTBEAT_INTERVAL,
        on_lost,
    )?;
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
    let mut pruner = TrialPruner::of(a, &store)?;
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
        let mut on_event = |e: Event| {
            if let (Event::EpochEnd { curve, stop, .. }, Some(p)) = (&e, pruner.as_mut()) {
                match p.judge(a, curve) {
                    Ok(s) => stop.set(s),
                    Err(err) => {
                        eprintln!("warning: the search's pruner could not judge this epoch: {err}")
                    }
                }
            }
            emit(RunEvent::from(e))
        };
        let report = execute(&cfg, &data, &paths, &mut on_event)?;
        exec::write_report(&report, &paths.run_dir)?;
        Ok(report)
    })();
    drop(heartbeat);
    let _lock = lock; // held until the store has the outcome
    match result {
        Ok(report) => {
            let rel = format!("{RUNS}/{}", a.hash);
            store.finish(&a.hash, &a.worker, &report.to_store_result(&rel))?;
            Ok(report)
        }
        Err(e) => match pruner.and_then(|p| p.stopped) {
            Some(curve) => {
                let rows: Vec<EpochRow> = curve.iter().map(epoch_row).collect();
                let seconds = curve.iter().map(|r| r.seconds).sum();
                store.prune(&a.hash, &a.worker, &rows, seconds)?;
                Err(WorkerError::Pruned { epoch: curve.len() })
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
