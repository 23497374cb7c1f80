//! What `stkd status` shows: the runs of an experiment file (its plan joined with the store as
//! the reports join them, [`crate::report::collect::collect_store`], then the trials its searches proposed so
//! far) or every run of a store, each with its state, attempts and infrastructure faults, its
//! cluster job, its test MAE at 15 minutes and its error.

use serde::Serialize;

use crate::experiment::Experiment;
use crate::plan::Plan;
use crate::report::collect::{collect_store, RunState};
use crate::report::paper::MAE;
use crate::report::runs::test_metric;
use crate::schedule::slurm::job_status;
use crate::store::{FaultRow, RunRow, RunStatus, Store, StoreError};

/// One run as `status` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// `label dataset [variant]` for a planned run; the store's label otherwise.
    pub run: String,
    pub dataset: String,
    /// Its state (`not registered` when the store does not know it; `recorded` or `failed` when
    /// a record finishes a run the store has not taken from it yet, [`PlanState`]).
    pub status: String,
    pub hash: String,
    pub device: Option<String>,
    /// The cluster job of the latest attempt (Slurm job id) and, while it runs, its state.
    pub job: Option<String>,
    pub slurm_state: Option<String>,
    /// Why Slurm keeps the job pending (`scontrol`'s `Reason`).
    pub slurm_reason: Option<String>,
    pub attempts: u32,
    /// Infrastructure faults that ended attempts (each retried from the checkpoint), in order.
    pub faults: Vec<FaultRow>,
    pub test_mae_15min: Option<f64>,
    pub error: Option<String>,
}

/// The row of run `hash` named `run`, from what the store has of it (`row`).
fn row_of(
    store: Option<&Store>,
    run: String,
    hash: String,
    row: Option<RunRow>,
) -> Result<StatusRow, StoreError> {
    let (result, faults) = match (&row, store) {
        (Some(r), Some(s)) => (
            match r.status {
                RunStatus::Done => s.result(&hash)?,
                _ => None,
            },
            s.faults(&hash)?,
        ),
        _ => (None, Vec::new()),
    };
    // A running run's cluster job: ask Slurm how it stands (and why it waits).
    let slurm = row
        .as_ref()
        .filter(|r| r.status == RunStatus::Running)
        .and_then(|r| r.job.as_deref())
        .and_then(|j| job_status(j).ok().flatten());
    Ok(StatusRow {
        run,
        dataset: row.as_ref().map_or(String::new(), |r| r.dataset.clone()),
        status: row
            .as_ref()
            .map_or("not registered".into(), |r| r.status.to_string()),
        device: row.as_ref().and_then(|r| r.device.clone()),
        job: row.as_ref().and_then(|r| r.job.clone()),
        slurm_state: slurm.as_ref().map(|s| s.state.clone()),
        slurm_reason: slurm.and_then(|s| s.reason),
        attempts: row.as_ref().map_or(0, |r| r.attempts),
        faults,
        test_mae_15min: result.as_ref().and_then(|r| test_metric(r, MAE, 0)),
        error: row.and_then(|r| r.error),
        hash,
    })
}

/// The runs of `exp` (planned as `plan`) in plan order, then the trials of its searches in the
/// order they were proposed. `store`: `None` when there is none yet.
pub fn of_experiment(
    exp: &Experiment,
    plan: &Plan,
    store: Option<&Store>,
) -> Result<Vec<StatusRow>, StoreError> {
    let data = collect_store(exp, plan, store)?;
    let mut out = Vec::with_capacity(data.runs.len());
    for entry in &data.runs {
        let row = match store {
            Some(s) => s.run(&entry.hash)?,
            None => None,
        };
        let stored = row.as_ref().map(|r| r.status);
        let state = store.map(|s| plan_state(s.path(), &entry.hash, stored));
        let mut status = row_of(store, entry.display_name(), entry.hash.clone(), row)?;
        // What a record says of a run the store has not taken it from yet.
        if let Some(st) = state.filter(|st| Some(*st) != stored.map(PlanState::Stored)) {
            if st != PlanState::New {
                status.status = st.as_str().to_string();
            }
        }
        out.push(status);
    }
    if let Some(s) = store {
        for st in &plan.studies {
            for t in s.trials(&st.key)? {
                let row = s.run(&t.hash)?;
                let name = row.as_ref().map_or(t.hash.clone(), |r| r.label.clone());
                out.push(row_of(store, name, t.hash, row)?);
            }
        }
    }
    Ok(out)
}

/// Every run of `store`, in the store's order.
pub fn of_store(store: &Store) -> Result<Vec<StatusRow>, StoreError> {
    store
        .runs(None)?
        .into_iter()
        .map(|r| row_of(Some(store), r.label.clone(), r.hash.clone(), Some(r)))
        .collect()
}

/// Where a planned run stands before a sweep starts: what the store says of it, unless a record
/// finishes a run the store does not know or holds as pending (a sweep takes it from there
/// first, [`crate::archive::import`]: done, or failed), else new. The dry run's plan, its
/// machine-time estimate and `stkd status FILE` read runs this one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanState {
    /// What the store says of it (a run not pending stays as it is, whatever the records hold).
    Stored(RunStatus),
    /// Unknown to the store or pending there, finished in its record: done without computing.
    Recorded,
    /// Neither in the store nor recorded.
    New,
}

impl PlanState {
    /// Done in the store or in its record: a sweep computes nothing for it.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            PlanState::Stored(RunStatus::Done) | PlanState::Recorded
        )
    }

    /// Failed or skipped in the store: a sweep keeps it unless `--retry-failed`.
    pub fn is_kept(self) -> bool {
        matches!(self, PlanState::Stored(s) if RunState::from(s).is_kept())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PlanState::Stored(s) => s.as_str(),
            PlanState::Recorded => "recorded",
            PlanState::New => "new",
        }
    }
}

/// The [`PlanState`] of each of `hashes` from the store at `store` and the records beside it,
/// read without creating or writing anything.
pub fn plan_states(
    store: &std::path::Path,
    hashes: &[String],
) -> Result<Vec<PlanState>, StoreError> {
    let rows = stored_rows(store, hashes)?;
    Ok(hashes
        .iter()
        .zip(rows)
        .map(|(hash, row)| plan_state(store, hash, row.map(|r| r.status)))
        .collect())
}

/// As [`crate::archive::import`] decides: a record finishes a run the store does not know or
/// holds as pending; a run done, running, failed or skipped stays as the store has it.
fn plan_state(store: &std::path::Path, hash: &str, stored: Option<RunStatus>) -> PlanState {
    match stored {
        None | Some(RunStatus::Pending) if crate::archive::is_recorded(store, hash) => {
            PlanState::Recorded
        }
        // A recorded failure is taken as failed (and kept) the same way.
        None | Some(RunStatus::Pending) if crate::archive::is_recorded_failed(store, hash) => {
            PlanState::Stored(RunStatus::Failed)
        }
        Some(s) => PlanState::Stored(s),
        None => PlanState::New,
    }
}

/// What the store at `store` has of each of `hashes` (`None` for a run it does not know, and
/// for every run when there is no store yet), read without creating or writing anything.
pub fn stored_rows(
    store: &std::path::Path,
    hashes: &[String],
) -> Result<Vec<Option<RunRow>>, StoreError> {
    let Some(s) = Store::open_read_only(store)? else {
        return Ok(vec![None; hashes.len()]);
    };
    hashes.iter().map(|h| s.run(h)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_finishes_a_run_the_store_has_not_done() {
        let dir = std::env::temp_dir().join(format!("stkd-plan-state-{}", std::process::id()));
        let store = dir.join("stkd.db");
        let record = dir.join("records").join("r");
        std::fs::create_dir_all(&record).unwrap();
        std::fs::write(record.join(crate::exec::OUTCOME_FILE), "{}").unwrap();
        let state = |hash, stored| plan_state(&store, hash, stored);
        // Recorded: a run unknown to the store or pending there; any other stays the store's
        // (the import leaves it alone).
        for stored in [None, Some(RunStatus::Pending)] {
            assert_eq!(state("r", stored), PlanState::Recorded, "{stored:?}");
        }
        for s in [RunStatus::Done, RunStatus::Running, RunStatus::Failed] {
            assert_eq!(state("r", Some(s)), PlanState::Stored(s));
        }
        let done = PlanState::Stored(RunStatus::Done);
        assert!(done.is_done() && PlanState::Recorded.is_done());
        // Not recorded: the store's state, else new.
        let failed = state("x", Some(RunStatus::Failed));
        assert_eq!(failed, PlanState::Stored(RunStatus::Failed));
        assert!(failed.is_kept() && !failed.is_done());
        assert_eq!(state("x", None), PlanState::New);
        // A recorded failure: failed (kept), as the import will take it.
        let failed_record = dir.join("records").join("f");
        std::fs::create_dir_all(&failed_record).unwrap();
        std::fs::write(
            failed_record.join("failed.json"),
            r#"{"error": "diverged", "finished": 1.0}"#,
        )
        .unwrap();
        assert_eq!(state("f", None), PlanState::Stored(RunStatus::Failed));
        assert!(state("f", Some(RunStatus::Pending)).is_kept());
        assert!(!PlanState::New.is_done() && !PlanState::New.is_kept());
        assert_eq!(
            [PlanState::Recorded, PlanState::New, done].map(PlanState::as_str),
            ["recorded", "new", "done"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
