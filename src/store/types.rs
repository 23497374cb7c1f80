//! The plain data the store keeps: run states, experiments, runs, results and their parts.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// Life cycle of a run: `pending` → `running` → `done` | `failed`; `pending` → `skipped` when a
/// dependency failed. Written lowercase (Display, FromStr, serde, SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Pending,
    Running,
    Done,
    Failed,
    Skipped,
    /// Stopped early by its search's pruner: its curve is kept, it has no test metrics.
    Pruned,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Done,
        RunStatus::Failed,
        RunStatus::Skipped,
        RunStatus::Pruned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
            RunStatus::Pruned => "pruned",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is none of `pending running done failed skipped`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run status {0:?}: expected pending, running, done, failed or skipped")]
pub struct ParseRunStatusError(pub String);

impl FromStr for RunStatus {
    type Err = ParseRunStatusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| ParseRunStatusError(s.to_string()))
    }
}

impl ToSql for RunStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RunStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// An experiment file as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentInfo {
    /// Unique name (e.g. the file stem `table8`); registering the same name again replaces the
    /// experiment's file, hash and run list (runs themselves are never deleted).
    pub name: String,
    /// Path of the YAML file, as given.
    pub file: String,
    /// SHA-256 (hex) of the YAML text.
    pub yaml_sha256: String,
}

/// A registered experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRow {
    pub id: i64,
    pub info: ExperimentInfo,
    /// Unix seconds of the latest registration.
    pub registered: f64,
}

/// A run to register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRun {
    /// Identity: hash of the resolved configuration, data and code version.
    pub hash: String,
    /// Human-readable name (e.g. `teacher/pemsd7/seed0`).
    pub label: String,
    pub dataset: String,
    /// The resolved configuration, as JSON.
    pub config_json: String,
    /// Hashes of the runs this one waits for (e.g. its teacher); each must be registered
    /// already or be among the runs registered together with it.
    pub deps: Vec<String>,
}

/// A run as stored. For a run shared by several experiments, `label`, `dataset` and
/// `config_json` are those of its first registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub hash: String,
    pub label: String,
    pub dataset: String,
    pub status: RunStatus,
    pub config_json: String,
    /// Hashes this run waits for, in registration order.
    pub deps: Vec<String>,
    /// Device of the latest claim (`cpu`, `cuda:0`, …).
    pub device: Option<String>,
    /// Worker id of the latest claim.
    pub claimed_by: Option<String>,
    /// Unix seconds of the latest sign of life of the claiming worker.
    pub heartbeat: Option<f64>,
    /// Unix seconds when the latest claim started.
    pub started: Option<f64>,
    /// Unix seconds when the run became done or failed.
    pub finished: Option<f64>,
    /// Why the run failed or was skipped.
    pub error: Option<String>,
    /// How many times the run has been claimed (a stale re-claim counts as a new attempt).
    pub attempts: u32,
    /// The cluster job of the latest attempt (a Slurm job id), if a cluster executed it.
    pub job: Option<String>,
}

/// One epoch of a training curve.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EpochRow {
    /// 1-based.
    pub epoch: u32,
    pub lr: f64,
    pub train_loss: f64,
    pub val_mae: f64,
    pub seconds: f64,
}

/// Final metrics of one predicted step of a split (`val`, `test`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricRow {
    pub split: String,
    /// 1-based; step k is 5·k minutes ahead.
    pub step: u32,
    pub mape: f64,
    pub mae: f64,
    pub rmse: f64,
}

/// Size and speed of a trained model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Profile {
    pub parameters: u64,
    pub flops: u64,
    /// Mean wall time (s) of a full test prediction of one batch.
    pub test_time_s: Option<f64>,
    pub test_time_runs: Option<u32>,
    pub test_time_batch: Option<u32>,
    pub device: String,
}

/// Attention-ratio figures of a KD run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Attention {
    pub picks: u64,
    pub elements: u64,
}

/// Pruning figures of a pruned run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Pruning {
    pub target_pct: f64,
    pub masked_share: f64,
    pub compact_parameters: u64,
    pub original_parameters: u64,
    pub speedup: Option<f64>,
}

/// Everything a finished run stores, written in one transaction with its status change.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunResult {
    pub epochs: Vec<EpochRow>,
    pub metrics: Vec<MetricRow>,
    pub profile: Option<Profile>,
    pub attention: Option<Attention>,
    pub pruning: Option<Pruning>,
    /// `(kind, path relative to the results directory)`, e.g. `("checkpoint", "runs/ab12/model.mpk")`.
    pub artefacts: Vec<(String, String)>,
    pub best_epoch: Option<u32>,
    pub train_seconds: f64,
}

/// One trial of a study ([`crate::store::Store::trials`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRow {
    /// 1-based, in the order the trials were proposed.
    pub number: usize,
    pub hash: String,
    pub values_json: String,
    pub status: RunStatus,
}

/// One infrastructure fault of a run: something outside the run ended one of its attempts (its
/// process killed by a signal, its heartbeat lost, its cluster node failed). Such attempts are
/// retried from the run's checkpoint up to a limit ([`Store::fault`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRow {
    /// The attempt the fault ended (1-based, as [`RunRow::attempts`] counts them).
    pub attempt: u32,
    /// Unix seconds when it was recorded.
    pub at: f64,
    pub cause: String,
}

/// What became of a run after an infrastructure fault ([`Store::fault`]).
#[derive(Debug, Clone, PartialEq)]
pub enum AfterFault {
    /// Back to pending, to resume from its checkpoint: this was fault `fault` of the `limit`
    /// retried.
    Retried { fault: usize, limit: u32 },
    /// Over the limit: failed with `error`, which lists every fault's cause.
    Failed { error: String },
}

/// The error of a run given up after `faults` (more than `limit`): every cause, one per attempt.
pub fn faults_error(faults: &[FaultRow], limit: u32) -> String {
    let causes: Vec<String> = faults
        .iter()
        .map(|f| format!("attempt {}: {}", f.attempt, f.cause))
        .collect();
    format!(
        "gave up after {} infrastructure faults ({limit} retr{} allowed; more with \
         `executor: {{retries: N}}` or `stkd sweep --retries N`, or re-queue it with \
         --retry-failed): {}",
        faults.len(),
        if limit == 1 { "y" } else { "ies" },
        causes.join("; ")
    )
}
