//! Results that outlive the machine: finished runs (and the resume checkpoints of runs in
//! progress) as files that can be committed, and the store rebuilt from them on a fresh clone.
//!
//! Next to a store `results/stkd.db`, run folders live in `results/runs/<hash>/` (ignored by git)
//! and records in `results/records/<hash>/` (committed). A record is a finished run's folder
//! without its resume checkpoint: `outcome.json` (pretty JSON, one file per run: its hash,
//! resolved configuration, data checksum, curve, metrics, profile, timings and the code commit
//! that computed it) and the model it produced (`model.bin`, `model.json`), which dependants
//! (students of a teacher, pruning runs of a base) load. A run still in progress is recorded
//! by its last per-epoch checkpoint (`resume/`) alone; a failed run by its error and failure
//! time (`failed.json`), since a sweep keeps a failed run as it is and a fresh clone must too.
//!
//! [`export`] writes the records of an experiment's runs; [`import`] (run by every sweep before
//! it schedules anything) copies records into run folders and marks the runs they finish as done
//! in the store (failed ones as failed), so a fresh clone recomputes nothing already recorded
//! and resumes what was in progress. A record is trusted only if its configuration and data
//! checksum hash to its run's hash ([`crate::plan::run_hash`], which includes the code
//! version).

use std::path::{Path, PathBuf};

use crate::exec::{RunReport, OUTCOME_FILE};
use crate::plan::{run_hash, Plan};
use crate::resume::{ResumeDir, DIR as RESUME};
use crate::store::{RunStatus, Store, StoreError};

/// The folder of records next to a store.
pub const RECORDS: &str = "records";
/// The folder of run folders next to a store.
pub const RUNS: &str = "runs";
/// What the store knew of a finished run besides its outcome (its finish time).
const STORED: &str = "stored.json";
/// A failed run's record: its error and when it failed ([`Failed`]).
const FAILED: &str = "failed.json";
/// A search trial's numbering (and a pruned trial's curve) in its record.
const TRIAL: &str = "trial.json";
/// The worker name under which imported runs are recorded.
pub const IMPORT_WORKER: &str = "import";
/// Heartbeat age (s) passed to claims made by the import: no live run is ever taken over.
const NEVER_STALE: f64 = 1e12;

/// Why records could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {detail}", .path.display())]
    Io { path: PathBuf, detail: String },
    #[error(
        "{}: the record does not belong to run {hash} (its configuration and data hash to {found}); \
         delete the folder or export it again",
        .path.display()
    )]
    Mismatch {
        path: PathBuf,
        hash: String,
        found: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ArchiveError + '_ {
    move |e| ArchiveError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// The folder next to the store `store` called `name` (`runs`, `records`).
pub fn beside(store: &Path, name: &str) -> PathBuf {
    store
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join(name)
}

/// The record folder of run `hash` beside the store `store`.
fn record_of(store: &Path, hash: &str) -> PathBuf {
    beside(store, RECORDS).join(hash)
}

/// What `read` finds in run `hash`'s folders beside the store `store`: its record's, else its
/// run folder's (the record is what every clone has). `None` when neither gives anything.
pub fn from_run_folders<T>(
    store: &Path,
    hash: &str,
    read: impl Fn(&Path) -> Option<T>,
) -> Option<T> {
    [RECORDS, RUNS]
        .iter()
        .find_map(|folder| read(&beside(store, folder).join(hash)))
}

/// The file `name` of run `hash` beside the store `store`, read by `parse` (record first,
/// [`from_run_folders`]). `None` when neither reads or parses.
pub fn read_run_file<T>(
    store: &Path,
    hash: &str,
    name: &str,
    parse: impl Fn(&[u8]) -> Option<T>,
) -> Option<T> {
    from_run_folders(store, hash, |dir| {
        parse(&std::fs::read(dir.join(name)).ok()?)
    })
}

/// Whether run `hash` has a finished record beside the store `store` (its `outcome.json` in
/// `records/<hash>/`): a sweep takes it from there ([`import`]) instead of computing it.
pub fn is_recorded(store: &Path, hash: &str) -> bool {
    record_of(store, hash).join(OUTCOME_FILE).is_file()
}

/// The curve so far of run `hash`'s resume checkpoint ([`ResumeDir::curve`], record first):
/// what an unfinished run has trained, the same on every clone of the records.
pub fn checkpoint_curve(store: &Path, hash: &str) -> Option<Vec<crate::store::EpochRow>> {
    from_run_folders(store, hash, |dir| ResumeDir::new(dir).curve())
}

/// The commit of the code that computed run `hash` (its outcome's `code_commit`, as the binary
/// recorded it: a short hash, `-dirty` when its source differed from that commit), from its
/// record, else its run folder. `None` for a run without an outcome or with an empty commit.
pub fn code_commit(store: &Path, hash: &str) -> Option<String> {
    read_run_file(store, hash, OUTCOME_FILE, |text| {
        let outcome: serde_json::Value = serde_json::from_slice(text).ok()?;
        let commit = outcome.get("code_commit")?.as_str()?;
        (!commit.is_empty()).then(|| commit.to_string())
    })
}

/// Copy the regular files of `from` (not its sub-folders, hidden files such as the run lock, or
/// `*.tmp`) into `to`, replacing
/// files of the same name. Returns the bytes copied.
fn copy_files(from: &Path, to: &Path) -> Result<u64, ArchiveError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    let mut bytes = 0;
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .map_err(io(from))?
        .collect::<Result<_, _>>()
        .map_err(io(from))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let src = e.path();
        let text = name.to_string_lossy();
        if !src.is_file() || text.ends_with(".tmp") || text.starts_with('.') {
            continue;
        }
        let dst = to.join(&name);
        let tmp = to.join(format!("{}.tmp", name.to_string_lossy()));
        bytes += std::fs::copy(&src, &tmp).map_err(io(&src))?;
        std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    }
    Ok(bytes)
}

/// Replace folder `to` by a copy of the files of `from`.
fn replace_dir(from: &Path, to: &Path) -> Result<u64, ArchiveError> {
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(io(to))?;
    }
    copy_files(from, to)
}

/// A record's outcome, checked against the run it claims to be.
fn read_outcome(dir: &Path, hash: &str) -> Result<Option<RunReport>, ArchiveError> {
    let path = dir.join(OUTCOME_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let report: RunReport = serde_json::from_slice(&text).map_err(|e| ArchiveError::Io {
        path: path.clone(),
        detail: format!("not a run outcome: {e}"),
    })?;
    let found = run_hash(&report.config, &report.data_checksum);
    if found != hash {
        return Err(ArchiveError::Mismatch {
            path,
            hash: hash.to_string(),
            found,
        });
    }
    Ok(Some(report))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    /// Unix seconds when the run became done.
    finished: Option<f64>,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Finished runs recorded.
    pub finished: usize,
    /// Runs in progress recorded by their resume checkpoint.
    pub in_progress: usize,
    /// Failed runs recorded by their error (`failed.json`).
    pub failed: usize,
    /// Trials of searches whose numbering was recorded.
    pub trials: usize,
    pub bytes: u64,
}

/// Write the records of every run of `plan` that is done in `store` (its folder's files) or
/// has a resume checkpoint (that checkpoint), into `<store folder>/records/<hash>/`. A done
/// run's stale checkpoint record is removed.
pub fn export(
    plan: &Plan,
    store: &Store,
    store_path: &Path,
) -> Result<ExportSummary, ArchiveError> {
    let (runs, records) = (beside(store_path, RUNS), beside(store_path, RECORDS));
    let mut sum = ExportSummary::default();
    for job in &plan.jobs {
        export_run(&job.hash, store, &runs, &records, &mut sum)?;
    }
    // The trials of searches: each also gets its `trial.json` (pruned ones their curve).
    for st in &plan.studies {
        for t in store.trials(&st.key)? {
            export_run(&t.hash, store, &runs, &records, &mut sum)?;
            let Some(row) = store.run(&t.hash)? else {
                continue;
            };
            let pruned = t.status == RunStatus::Pruned;
            let curve = if pruned {
                store.epochs(&t.hash)?
            } else {
                Vec::new()
            };
            let rec = TrialRecord {
                study: st.key.clone(),
                number: t.number,
                values: serde_json::from_str(&t.values_json).unwrap_or_default(),
                label: row.label,
                config: serde_json::from_str(&row.config_json).map_err(|e| ArchiveError::Io {
                    path: records.join(&t.hash),
                    detail: format!("the store's configuration of the run: {e}"),
                })?,
                data_checksum: st.data_checksum.clone(),
                deps: row.deps,
                pruned,
                train_seconds: curve.iter().map(|e| e.seconds).sum(),
                curve,
            };
            let dir = records.join(&t.hash);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let path = dir.join(TRIAL);
            let json = serde_json::to_vec_pretty(&rec).expect("serialises");
            std::fs::write(&path, json).map_err(io(&path))?;
            sum.trials += 1;
        }
    }
    Ok(sum)
}

/// Record run `hash`: its folder's files when it is done, else its resume checkpoint if any
/// (none for a pruned trial).
fn export_run(
    hash: &str,
    store: &Store,
    runs: &Path,
    records: &Path,
    sum: &mut ExportSummary,
) -> Result<(), ArchiveError> {
    let (run_dir, record) = (runs.join(hash), records.join(hash));
    let row = store.run(hash)?;
    let status = row.as_ref().map(|r| r.status);
    if status == Some(RunStatus::Pruned) {
        // A pruned trial is final: its `trial.json` has its curve, it never resumes.
        let stale = record.join(RESUME);
        if stale.exists() {
            std::fs::remove_dir_all(&stale).map_err(io(&stale))?;
        }
    } else if status == Some(RunStatus::Done) && read_outcome(&run_dir, hash)?.is_some() {
        sum.bytes += copy_files(&run_dir, &record)?;
        let finished = row.as_ref().and_then(|r| r.finished);
        let path = record.join(STORED);
        let json = serde_json::to_vec_pretty(&Stored { finished }).expect("serialises");
        std::fs::write(&path, json).map_err(io(&path))?;
        let stale = record.join(RESUME);
        if stale.exists() {
            std::fs::remove_dir_all(&stale).map_err(io(&stale))?;
        }
        let failed = record.join(FAILED);
        if failed.exists() {
            std::fs::remove_file(&failed).map_err(io(&failed))?;
        }
        sum.finished += 1;
    } else if run_dir.join(RESUME).join(crate::resume::STATE).exists() {
        sum.bytes += replace_dir(&run_dir.join(RESUME), &record.join(RESUME))?;
        sum.in_progress += 1;
    }
    if let Some(row) = row.filter(|r| r.status == RunStatus::Failed) {
        let rec = Failed {
            error: row.error.unwrap_or_default(),
            device: row.device,
            finished: row.finished,
        };
        std::fs::create_dir_all(&record).map_err(io(&record))?;
        let path = record.join(FAILED);
        let json = serde_json::to_vec_pretty(&rec).expect("serialises");
        std::fs::write(&path, json).map_err(io(&path))?;
        sum.failed += 1;
    }
    Ok(())
}

/// A failed run as recorded (`failed.json`): a sweep keeps a failed run as it is (unless
/// `--retry-failed`), so a fresh clone must know it failed, and why, to do the same.
#[derive(serde::Serialize, serde::Deserialize)]
struct Failed {
    error: String,
    /// The device of its last attempt.
    device: Option<String>,
    finished: Option<f64>,
}

/// The recorded failure of run `hash` beside the store `store`, if its record holds one.
fn recorded_failure(store: &Path, hash: &str) -> Option<Failed> {
    let text = std::fs::read(record_of(store, hash).join(FAILED)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Whether run `hash`'s record says it failed (and no outcome finishes it).
pub fn is_recorded_failed(store: &Path, hash: &str) -> bool {
    !is_recorded(store, hash) && recorded_failure(store, hash).is_some()
}

/// A trial of a search as recorded (`trial.json` in its record): enough to number it again in
/// a fresh store, and for a pruned trial (which has no outcome) its curve.
#[derive(serde::Serialize, serde::Deserialize)]
struct TrialRecord {
    study: String,
    number: usize,
    values: serde_json::Value,
    label: String,
    config: crate::experiment::RunConfig,
    data_checksum: String,
    deps: Vec<String>,
    pruned: bool,
    curve: Vec<crate::store::EpochRow>,
    train_seconds: f64,
}

/// The trial records of study `key` in `records`, in trial order, each checked against its
/// folder's run hash.
fn trial_records(records: &Path, key: &str) -> Result<Vec<(String, TrialRecord)>, ArchiveError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(records).map_err(io(records))?.flatten() {
        let path = e.path().join(TRIAL);
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        let rec: TrialRecord = serde_json::from_slice(&text).map_err(|e| ArchiveError::Io {
            path: path.clone(),
            detail: format!("not a trial record: {e}"),
        })?;
        if rec.study != key {
            continue;
        }
        let hash = e.file_name().to_string_lossy().to_string();
        let found = run_hash(&rec.config, &rec.data_checksum);
        if found != hash {
            return Err(ArchiveError::Mismatch { path, hash, found });
        }
        out.push((hash, rec));
    }
    out.sort_by_key(|(_, r)| r.number);
    Ok(out)
}

/// Number the recorded trials of `plan`'s studies again in `store` (those it lacks), record
/// pruned ones as pruned; returns the hashes of every trial of the studies.
fn import_trials(
    plan: &Plan,
    store: &mut Store,
    records: &Path,
    sum: &mut ImportSummary,
) -> Result<Vec<String>, ArchiveError> {
    let mut hashes = Vec::new();
    for st in &plan.studies {
        let known = store.trials(&st.key)?.len();
        for (hash, rec) in trial_records(records, &st.key)? {
            if rec.number > known {
                let run = crate::store::NewRun {
                    hash: hash.clone(),
                    label: rec.label.clone(),
                    dataset: rec.config.dataset.to_string(),
                    config_json: serde_json::to_string(&rec.config).expect("serialises"),
                    deps: rec.deps.clone(),
                };
                let budget = st.study.search.trials.max(rec.number);
                let values = rec.values.to_string();
                store.add_trial(&st.key, rec.number, budget, &plan.name, &run, &values)?;
            }
            let pending = store
                .run(&hash)?
                .is_some_and(|r| r.status == RunStatus::Pending);
            if rec.pruned && pending && store.claim(&hash, IMPORT_WORKER, "cpu", NEVER_STALE)? {
                store.prune(&hash, IMPORT_WORKER, &rec.curve, rec.train_seconds)?;
                sum.pruned.push(hash.clone());
            }
        }
        hashes.extend(store.trials(&st.key)?.into_iter().map(|t| t.hash));
    }
    Ok(hashes)
}

/// What [`import`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Runs recorded as done from their records.
    pub finished: Vec<String>,
    /// Runs whose resume checkpoint was restored from a record.
    pub resumed: Vec<String>,
    /// Trials of searches recorded as pruned.
    pub pruned: Vec<String>,
    /// Runs recorded as failed from their records (a sweep keeps them as they are).
    pub failed: Vec<String>,
}

/// Bring the records of `plan`'s runs into `store`: each pending run with a finished record gets
/// the record's files in its run folder and is marked done with the record's result (claimed and
/// finished as worker [`IMPORT_WORKER`], so a concurrent sweep never sees it half-imported);
/// each pending run with only a checkpoint record gets the checkpoint, unless its run folder has
/// one already. Runs are imported once their dependencies are done (records of a teacher before
/// its students). Runs not pending (done, running, failed, skipped) are left alone.
pub fn import(
    plan: &Plan,
    store: &mut Store,
    store_path: &Path,
) -> Result<ImportSummary, ArchiveError> {
    let (runs, records) = (beside(store_path, RUNS), beside(store_path, RECORDS));
    let mut sum = ImportSummary::default();
    if !records.is_dir() {
        return Ok(sum);
    }
    let pending = |store: &Store, hash: &str| -> Result<bool, ArchiveError> {
        Ok(store
            .run(hash)?
            .is_some_and(|r| r.status == RunStatus::Pending))
    };
    let mut hashes: Vec<String> = plan.jobs.iter().map(|j| j.hash.clone()).collect();
    hashes.extend(import_trials(plan, store, &records, &mut sum)?);
    // Finished records, in passes until none more can be claimed (dependencies first).
    loop {
        let mut progress = false;
        for hash in &hashes {
            let record = records.join(hash);
            if sum.finished.contains(hash) || !pending(store, hash)? {
                continue;
            }
            let Some(report) = read_outcome(&record, hash)? else {
                if let Some(f) = recorded_failure(store_path, hash) {
                    let device = f.device.as_deref().unwrap_or("unknown");
                    if store.claim(hash, IMPORT_WORKER, device, NEVER_STALE)? {
                        match f.finished {
                            Some(at) => store.fail_at(hash, IMPORT_WORKER, &f.error, at)?,
                            None => store.fail(hash, IMPORT_WORKER, &f.error)?,
                        };
                        sum.failed.push(hash.clone());
                        progress = true;
                    }
                }
                continue;
            };
            let device = report.device.to_string();
            if !store.claim(hash, IMPORT_WORKER, &device, NEVER_STALE)? {
                continue; // a dependency is not done yet, or another sweep took it
            }
            let run_dir = runs.join(hash);
            let copied = copy_files(&record, &run_dir);
            let rel = format!("{RUNS}/{hash}");
            match copied {
                Ok(_) => {
                    let stored: Option<Stored> = std::fs::read(record.join(STORED))
                        .ok()
                        .and_then(|t| serde_json::from_slice(&t).ok());
                    let result = report.to_store_result(&rel);
                    match stored.and_then(|s| s.finished) {
                        Some(t) => store.finish_at(hash, IMPORT_WORKER, &result, t)?,
                        None => store.finish(hash, IMPORT_WORKER, &result)?,
                    }
                    ResumeDir::new(&run_dir).remove();
                }
                Err(e) => {
                    store.release(hash, IMPORT_WORKER)?;
                    return Err(e);
                }
            }
            sum.finished.push(hash.clone());
            progress = true;
        }
        if !progress {
            break;
        }
    }
    // Checkpoints of runs in progress.
    for hash in &hashes {
        let ck = records.join(hash).join(RESUME);
        let here = runs.join(hash).join(RESUME);
        if pending(store, hash)?
            && ck.join("state.json").is_file()
            && !here.join("state.json").exists()
        {
            replace_dir(&ck, &here)?;
            sum.resumed.push(hash.clone());
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_files_are_read_from_its_record_first_then_its_run_folder() {
        let dir = std::env::temp_dir().join(format!("stkd-archive-files-{}", std::process::id()));
        let store = dir.join("stkd.db");
        let write = |folder: &str, hash: &str, text: &str| {
            let d = beside(&store, folder).join(hash);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(OUTCOME_FILE), text).unwrap();
        };
        write(RUNS, "a", r#"{"code_commit": "run-folder"}"#);
        assert_eq!(code_commit(&store, "a").as_deref(), Some("run-folder"));
        write(RECORDS, "a", r#"{"code_commit": "record"}"#);
        assert_eq!(code_commit(&store, "a").as_deref(), Some("record"));
        // An empty commit, no field, unreadable JSON or no file: none.
        write(RECORDS, "b", r#"{"code_commit": ""}"#);
        write(RUNS, "c", r#"{"config": {}}"#);
        write(RUNS, "d", "not json");
        for hash in ["b", "c", "d", "e"] {
            assert_eq!(code_commit(&store, hash), None, "{hash}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_run_is_recorded_and_taken_back_as_failed() {
        let dir = std::env::temp_dir().join(format!("stkd-archive-failed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let yaml = "name: t\ndatasets: [pemsd7]\nruns:\n  - {label: s, model: student}\n";
        let exp = crate::experiment::parse_experiment(yaml, Path::new("t.yaml")).unwrap();
        let plan = crate::plan::plan(&exp, |d| Ok::<_, ()>(format!("sum-{d}"))).unwrap();
        let hash = plan.jobs[0].hash.clone();
        let open = |name: &str| {
            let path = dir.join(name).join("stkd.db");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut store = Store::open(&path).unwrap();
            crate::schedule::register(&mut store, &plan, Path::new("t.yaml"), yaml).unwrap();
            (store, path)
        };
        let (mut a, path_a) = open("a");
        assert!(a.claim(&hash, "w", "cpu", 60.0).unwrap());
        a.fail_at(&hash, "w", "worse than predicting the mean", 1234.5)
            .unwrap();
        let sum = export(&plan, &a, &path_a).unwrap();
        assert_eq!((sum.finished, sum.failed), (0, 1));
        // A fresh clone: the records alone.
        let (mut b, path_b) = open("b");
        copy_files(
            &beside(&path_a, RECORDS).join(&hash),
            &beside(&path_b, RECORDS).join(&hash),
        )
        .unwrap();
        assert!(is_recorded_failed(&path_b, &hash) && !is_recorded(&path_b, &hash));
        let got = import(&plan, &mut b, &path_b).unwrap();
        assert_eq!(got.failed, vec![hash.clone()]);
        let row = b.run(&hash).unwrap().unwrap();
        assert_eq!(row.status, RunStatus::Failed);
        assert_eq!(row.error.as_deref(), Some("worse than predicting the mean"));
        assert_eq!(row.finished, Some(1234.5));
        // Imported once: a second import leaves it alone.
        assert!(import(&plan, &mut b, &path_b).unwrap().failed.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unfinished_runs_curve_is_its_recorded_checkpoints() {
        let dir = std::env::temp_dir().join(format!("stkd-archive-curve-{}", std::process::id()));
        let store = dir.join("stkd.db");
        let write = |folder: &str, epochs: u32| {
            let d = beside(&store, folder).join("t").join(RESUME);
            std::fs::create_dir_all(&d).unwrap();
            let curve: Vec<serde_json::Value> = (1..=epochs)
                .map(|e| {
                    serde_json::json!({"epoch": e, "lr": 1e-3, "train_loss": 0.1,
                                       "val_mae": 3.0, "seconds": 2.0})
                })
                .collect();
            let manifest = serde_json::json!({"key": "k", "epoch": epochs, "files": {},
                                              "state": {"curve": curve, "seconds": 9.0}});
            std::fs::write(d.join(crate::resume::STATE), manifest.to_string()).unwrap();
        };
        assert_eq!(checkpoint_curve(&store, "t"), None);
        write(RUNS, 7);
        assert_eq!(checkpoint_curve(&store, "t").unwrap().len(), 7);
        // The record's checkpoint wins over a run folder that went on since the export.
        write(RECORDS, 5);
        let curve = checkpoint_curve(&store, "t").unwrap();
        assert_eq!(curve.len(), 5);
        assert_eq!(curve.iter().map(|e| e.seconds).sum::<f64>(), 10.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
