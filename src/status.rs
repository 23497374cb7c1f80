//! What `stkd status` shows: the runs of an experiment file (its plan joined with the store as
//! the reports join them, [`crate::report::collect`], then the trials its searches proposed so
//! far) or every run of a store, each with its state, attempts and infrastructure faults, its
//! cluster job, its test MAE at 15 minutes and its error.

use serde::Serialize;

use crate::experiment::Experiment;
use crate::plan::Plan;
use crate::report::collect::collect;
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
    /// Its state (`not registered` when the store does not know it).
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
    let data = collect(exp, plan, store)?;
    let mut out = Vec::with_capacity(data.runs.len());
    for entry in &data.runs {
        let row = match store {
            Some(s) => s.run(&entry.hash)?,
            None => None,
        };
        out.push(row_of(
            store,
            entry.display_name(),
            entry.hash.clone(),
            row,
        )?);
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
