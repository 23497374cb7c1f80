//! The sweep scheduler: fills device slots with runs claimed through the store, each run in its
//! own child process (`stkd run-one`), so a panic, an out-of-memory kill or a diverging run
//! cannot take the sweep down (spec §6).
//!
//! - Claims happen inside store transactions: two sweeps on one store never run the same run.
//! - A failed run is recorded with its error and its dependants are skipped; the rest go on.
//! - Interrupted runs (Ctrl-C) go back to pending; after `kill -9` their heartbeat goes stale
//!   and the next sweep claims them again.
//! - [`Executor`] is the seam where a cluster executor (e.g. Slurm job arrays) would plug in.

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
use crate::store::{ExperimentInfo, NewRun, RunStatus, Store, StoreError};

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
        train_loss: f64,
        val_mae: f64,
    },
    Testing,
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
}

/// Starts one run somewhere. The local implementation spawns `stkd run-one`.
pub trait Executor {
    fn spawn(&self, hash: &str, worker: &str, device: DeviceSpec) -> std::io::Result<Child>;
}

/// Runs each job as a child process of this binary on this machine.
pub struct LocalExecutor {
    pub exe: PathBuf,
    pub store: PathBuf,
    pub data_dir: PathBuf,
    /// Threads for each CPU run when several share the CPU (`RAYON_NUM_THREADS`).
    pub cpu_threads: Option<usize>,
}

impl Executor for LocalExecutor {
    fn spawn(&self, hash: &str, worker: &str, device: DeviceSpec) -> std::io::Result<Child> {
        let mut cmd = Command::new(&self.exe);
        if let (DeviceSpec::Cpu, Some(n)) = (device, self.cpu_threads) {
            cmd.env("RAYON_NUM_THREADS", n.to_string());
        }
        cmd.arg("run-one")
            .arg(hash)
            .arg("--store")
            .arg(&self.store)
            .arg("--worker")
            .arg(worker)
            .arg("--device")
            .arg(device.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }
}

/// Counts at the end of a sweep.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepSummary {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
    pub pending: usize,
    pub ran_now: usize,
    pub interrupted: bool,
}

/// Errors of the scheduler itself (not of runs).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start a run process ({exe}): {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
}

struct Active {
    hash: String,
    name: String,
    worker: String,
    child: Child,
    stderr_tail: Arc<std::sync::Mutex<Vec<String>>>,
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
    let mut store = Store::open(&opts.store)?;
    let info = ExperimentInfo {
        name: plan.name.clone(),
        file: experiment_file.display().to_string(),
        yaml_sha256: sha256_hex(experiment_text.as_bytes()),
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
    let hashes: Vec<String> = plan.jobs.iter().map(|j| j.hash.clone()).collect();
    if opts.retry_failed {
        store.retry_failed(Some(&hashes))?;
    }
    let count = |store: &Store, s: RunStatus| -> Result<usize, StoreError> {
        Ok(hashes
            .iter()
            .filter_map(|h| store.run(h).ok().flatten())
            .filter(|r| r.status == s)
            .count())
    };
    on_event(SweepEvent::Planned {
        total: hashes.len(),
        done: count(&store, RunStatus::Done)?,
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
    let mut last_wait_note = Instant::now() - Duration::from_secs(60);
    loop {
        let interrupted = interrupt.load(Ordering::SeqCst);
        // Fill free slots.
        if !interrupted {
            for (i, slot) in slots.iter_mut().enumerate() {
                if slot.active.is_some() {
                    continue;
                }
                let worker = worker_id(i);
                let Some(run) = store.claim_next(
                    Some(&hashes),
                    &worker,
                    &slot.device.to_string(),
                    opts.stale_after_s,
                )?
                else {
                    break;
                };
                let mut child = match executor.spawn(&run.hash, &worker, slot.device) {
                    Ok(c) => c,
                    Err(e) => {
                        store.release(&run.hash, &worker)?;
                        return Err(ScheduleError::Spawn {
                            exe: PathBuf::from("stkd"),
                            source: e,
                        });
                    }
                };
                let stdout = child.stdout.take().expect("piped stdout");
                let stderr = child.stderr.take().expect("piped stderr");
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                        if let Ok(ev) = serde_json::from_str::<RunEvent>(&line) {
                            if tx.send((i, ev)).is_err() {
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
                        if t.len() > 20 {
                            t.remove(0);
                        }
                    }
                });
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
                    child,
                    stderr_tail: tail,
                });
                ran_now += 1;
            }
        }
        // Forward progress.
        while let Ok((slot, event)) = rx.try_recv() {
            on_event(SweepEvent::Progress { slot, event });
        }
        // Reap finished children.
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(active) = slot.active.as_mut() else {
                continue;
            };
            if interrupted {
                let _ = active.child.kill();
            }
            let status = match active.child.try_wait() {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(_) => continue,
            };
            let active = slot.active.take().expect("active");
            let (final_status, detail) = settle(&mut store, &active, status, interrupted)?;
            on_event(SweepEvent::Finished {
                slot: i,
                name: &active.name,
                hash: &active.hash,
                status: final_status,
                detail: detail.as_deref(),
            });
        }
        let busy = slots.iter().any(|s| s.active.is_some());
        if interrupted && !busy {
            break;
        }
        if !busy {
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
                break;
            }
            let elsewhere = rows
                .iter()
                .filter(|r| r.status == RunStatus::Running)
                .count();
            if any_claimable(&store, &hashes)? {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            if elsewhere == 0 {
                // Pending runs whose dependencies can never finish (should not happen: failures
                // skip dependants) — stop rather than spin.
                break;
            }
            if last_wait_note.elapsed() > Duration::from_secs(30) {
                on_event(SweepEvent::Waiting {
                    running_elsewhere: elsewhere,
                });
                last_wait_note = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(500));
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let summary = SweepSummary {
        total: hashes.len(),
        done: count(&store, RunStatus::Done)?,
        failed: count(&store, RunStatus::Failed)?,
        skipped: count(&store, RunStatus::Skipped)?,
        pending: count(&store, RunStatus::Pending)? + count(&store, RunStatus::Running)?,
        ran_now,
        interrupted: interrupt.load(Ordering::SeqCst),
    };
    Ok(summary)
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

/// Decide what a child's exit means for its run.
fn settle(
    store: &mut Store,
    active: &Active,
    status: ExitStatus,
    interrupted: bool,
) -> Result<(RunStatus, Option<String>), StoreError> {
    let row = store.run(&active.hash)?;
    let still_ours = row.as_ref().is_some_and(|r| {
        r.status == RunStatus::Running && r.claimed_by.as_deref() == Some(active.worker.as_str())
    });
    if !still_ours {
        // The child recorded its own outcome (done, or failed with its error).
        let r = row.expect("registered run");
        return Ok((r.status, r.error));
    }
    if interrupted {
        store.release(&active.hash, &active.worker)?;
        return Ok((
            RunStatus::Pending,
            Some("interrupted; will run again".into()),
        ));
    }
    let tail = active.stderr_tail.lock().expect("tail lock").join("\n");
    let why = match status.code() {
        Some(c) => format!("run process exited with code {c}"),
        None => format!("run process was killed ({status})"),
    };
    let msg = if tail.is_empty() {
        why
    } else {
        format!("{why}; last output:\n{tail}")
    };
    store.fail(&active.hash, &active.worker, &msg)?;
    Ok((RunStatus::Failed, Some(msg)))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
