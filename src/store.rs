//! The results store: one SQLite file (default [`DEFAULT_PATH`], `--store PATH`) holding
//! experiments, runs and everything a finished run produced (per-epoch curves, final metrics,
//! profiles, attention ratios, pruning figures, artefact paths).
//!
//! The store knows nothing about models or tensors: a run's resolved configuration arrives as a
//! JSON string, identified by its hash, and results are the plain structs of this module
//! ([`RunResult`] and its parts).
//!
//! Safety under interruption and concurrency:
//! - the file is in WAL mode with a 30 s busy timeout, foreign keys on, and every multi-statement
//!   change runs in one `BEGIN IMMEDIATE` transaction, so a crash (even `kill -9`) leaves either
//!   the old or the new state, never half a result;
//! - runs are *claimed* inside such a transaction ([`Store::claim_next`], [`Store::claim`]), so two
//!   `sweep` processes on one store never run the same run;
//! - a claimed run carries its worker id and a heartbeat ([`Store::heartbeat`]); a `running` run
//!   whose heartbeat is older than the caller's `stale_after_s` was interrupted and can be claimed
//!   again (its `attempts` counter grows);
//! - writes on behalf of a run ([`Store::finish`], [`Store::fail`], …) check that the worker still
//!   holds the claim, and write nothing otherwise ([`StoreError::LostClaim`]).
//!
//! Invariant kept by every write: a `pending` run never depends on a `failed` or `skipped` run
//! (such runs are marked `skipped`, with the root cause as their error).
//!
//! The schema is versioned by `PRAGMA user_version`; [`sql::MIGRATIONS`] is the ordered list of
//! migrations (version *n* = the first *n* applied). All SQL lives in [`sql`].

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior,
};
use serde::{Deserialize, Serialize};

/// Where the store lives unless `--store PATH` says otherwise.
pub const DEFAULT_PATH: &str = "results/stkd.db";

/// How long a statement waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema version this code writes (the number of migrations).
pub const SCHEMA_VERSION: i64 = sql::MIGRATIONS.len() as i64;

/// Every SQL statement of the store.
pub mod sql {
    /// Ordered schema migrations: entry *i* takes `user_version` from *i* to *i + 1*. Append new
    /// versions; never edit a released one.
    pub const MIGRATIONS: &[&str] = &[V1];

    /// Version 1: the initial schema. Reals that a run may legitimately produce as NaN
    /// (losses, metrics) are nullable: SQLite stores NaN as NULL, read back as NaN.
    const V1: &str = "
CREATE TABLE experiments (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    file        TEXT NOT NULL,
    yaml_sha256 TEXT NOT NULL,
    registered  REAL NOT NULL
);
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    hash          TEXT NOT NULL UNIQUE,
    label         TEXT NOT NULL,
    dataset       TEXT NOT NULL,
    config_json   TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'done', 'failed', 'skipped')),
    device        TEXT,
    claimed_by    TEXT,
    heartbeat     REAL,
    started       REAL,
    finished      REAL,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    best_epoch    INTEGER,
    train_seconds REAL,
    created       REAL NOT NULL
);
CREATE INDEX runs_status ON runs(status);
CREATE TABLE experiment_runs (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    run_hash      TEXT NOT NULL REFERENCES runs(hash),
    position      INTEGER NOT NULL,
    PRIMARY KEY (experiment_id, run_hash)
);
CREATE INDEX experiment_runs_run ON experiment_runs(run_hash);
CREATE TABLE run_deps (
    run_hash TEXT NOT NULL REFERENCES runs(hash),
    dep_hash TEXT NOT NULL REFERENCES runs(hash),
    PRIMARY KEY (run_hash, dep_hash)
);
CREATE INDEX run_deps_dep ON run_deps(dep_hash);
CREATE TABLE epochs (
    run_hash   TEXT NOT NULL REFERENCES runs(hash),
    epoch      INTEGER NOT NULL,
    lr         REAL,
    train_loss REAL,
    val_mae    REAL,
    seconds    REAL,
    PRIMARY KEY (run_hash, epoch)
);
CREATE TABLE metrics (
    run_hash TEXT NOT NULL REFERENCES runs(hash),
    split    TEXT NOT NULL,
    step     INTEGER NOT NULL,
    mape     REAL,
    mae      REAL,
    rmse     REAL,
    PRIMARY KEY (run_hash, split, step)
);
CREATE TABLE profiles (
    run_hash        TEXT PRIMARY KEY REFERENCES runs(hash),
    parameters      INTEGER NOT NULL,
    flops           INTEGER NOT NULL,
    test_time_s     REAL,
    test_time_runs  INTEGER,
    test_time_batch INTEGER,
    device          TEXT NOT NULL
);
CREATE TABLE attention (
    run_hash TEXT PRIMARY KEY REFERENCES runs(hash),
    picks    INTEGER NOT NULL,
    elements INTEGER NOT NULL
);
CREATE TABLE pruning (
    run_hash            TEXT PRIMARY KEY REFERENCES runs(hash),
    target_pct          REAL,
    masked_share        REAL,
    compact_parameters  INTEGER NOT NULL,
    original_parameters INTEGER NOT NULL,
    speedup             REAL
);
CREATE TABLE artefacts (
    run_hash TEXT NOT NULL REFERENCES runs(hash),
    position INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    path     TEXT NOT NULL,
    PRIMARY KEY (run_hash, position)
);
";

    pub const USER_VERSION: &str = "PRAGMA user_version";

    pub const UPSERT_EXPERIMENT: &str = "
INSERT INTO experiments (name, file, yaml_sha256, registered) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (name) DO UPDATE
    SET file = excluded.file, yaml_sha256 = excluded.yaml_sha256, registered = excluded.registered
RETURNING id";
    pub const UNLINK_EXPERIMENT: &str = "DELETE FROM experiment_runs WHERE experiment_id = ?1";
    pub const INSERT_RUN: &str = "
INSERT OR IGNORE INTO runs (hash, label, dataset, config_json, status, attempts, created)
VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5)";
    pub const LINK_RUN: &str = "
INSERT OR IGNORE INTO experiment_runs (experiment_id, run_hash, position) VALUES (?1, ?2, ?3)";
    pub const RUN_EXISTS: &str = "SELECT 1 FROM runs WHERE hash = ?1";
    pub const INSERT_DEP: &str =
        "INSERT OR IGNORE INTO run_deps (run_hash, dep_hash) VALUES (?1, ?2)";
    /// A run that reaches itself through its dependencies.
    pub const FIND_CYCLE: &str = "
WITH RECURSIVE reach (start, node) AS (
    SELECT run_hash, dep_hash FROM run_deps
    UNION
    SELECT reach.start, d.dep_hash FROM reach JOIN run_deps d ON d.run_hash = reach.node
)
SELECT start FROM reach WHERE start = node LIMIT 1";

    pub const EXPERIMENTS: &str =
        "SELECT id, name, file, yaml_sha256, registered FROM experiments ORDER BY id";

    /// Columns of [`super::RunRow`] (without deps), in the order `run_row` reads them.
    macro_rules! run_columns {
        () => {
            "r.hash, r.label, r.dataset, r.status, r.config_json, r.device, r.claimed_by, \
             r.heartbeat, r.started, r.finished, r.error, r.attempts"
        };
    }
    pub const RUN: &str = concat!("SELECT ", run_columns!(), " FROM runs r WHERE r.hash = ?1");
    pub const RUNS_ALL: &str = concat!("SELECT ", run_columns!(), " FROM runs r ORDER BY r.id");
    pub const RUNS_OF_EXPERIMENT: &str = concat!(
        "SELECT ",
        run_columns!(),
        " FROM experiment_runs er JOIN experiments e ON e.id = er.experiment_id \
         JOIN runs r ON r.hash = er.run_hash WHERE e.name = ?1 ORDER BY er.position"
    );
    pub const DEPS_OF: &str = "SELECT dep_hash FROM run_deps WHERE run_hash = ?1 ORDER BY rowid";

    /// Runnable runs, in registration order. ?1: JSON array of hashes to choose from, or NULL
    /// for any; ?2: heartbeats older than this (unix seconds) are stale.
    pub const CLAIMABLE: &str = "
SELECT r.hash FROM runs r
WHERE (?1 IS NULL OR r.hash IN (SELECT value FROM json_each(?1)))
  AND ((r.status = 'pending'
        AND NOT EXISTS (SELECT 1 FROM run_deps d JOIN runs p ON p.hash = d.dep_hash
                        WHERE d.run_hash = r.hash AND p.status <> 'done'))
    OR (r.status = 'running' AND COALESCE(r.heartbeat, 0) < ?2))
ORDER BY r.id LIMIT 1";
    /// ?1 hash, ?2 worker, ?3 device, ?4 now.
    pub const CLAIM: &str = "
UPDATE runs SET status = 'running', claimed_by = ?2, device = ?3, heartbeat = ?4, started = ?4,
                finished = NULL, error = NULL, attempts = attempts + 1
WHERE hash = ?1";
    pub const CLAIM_HOLDER: &str = "SELECT status, claimed_by FROM runs WHERE hash = ?1";
    pub const HEARTBEAT: &str = "
UPDATE runs SET heartbeat = ?3 WHERE hash = ?1 AND status = 'running' AND claimed_by = ?2";
    pub const RELEASE: &str = "
UPDATE runs SET status = 'pending', claimed_by = NULL, device = NULL, heartbeat = NULL,
                started = NULL
WHERE hash = ?1";
    /// ?1 hash, ?2 error, ?3 now.
    pub const FAIL: &str = "
UPDATE runs SET status = 'failed', error = ?2, finished = ?3, heartbeat = ?3 WHERE hash = ?1";
    /// ?1 hash, ?2 best epoch, ?3 train seconds, ?4 now.
    pub const DONE: &str = "
UPDATE runs SET status = 'done', error = NULL, best_epoch = ?2, train_seconds = ?3,
                finished = ?4, heartbeat = ?4
WHERE hash = ?1";
    /// ?1: JSON array of hashes, or NULL for all.
    pub const RETRY_FAILED: &str = "
UPDATE runs SET status = 'pending', error = NULL, claimed_by = NULL, device = NULL,
                heartbeat = NULL, started = NULL, finished = NULL
WHERE status IN ('failed', 'skipped')
  AND (?1 IS NULL OR hash IN (SELECT value FROM json_each(?1)))
RETURNING hash";
    /// Pending runs with a failed or skipped dependency (one row per such run: its first such
    /// dependency, with that dependency's label, status and error).
    pub const BLOCKED: &str = "
SELECT r.hash, p.hash, p.label, p.status, p.error
FROM runs r JOIN run_deps d ON d.run_hash = r.hash JOIN runs p ON p.hash = d.dep_hash
WHERE r.status = 'pending' AND p.status IN ('failed', 'skipped')
ORDER BY r.id, d.rowid";
    pub const SKIP: &str = "
UPDATE runs SET status = 'skipped', error = ?2 WHERE hash = ?1 AND status = 'pending'";
    pub const STATUS_OF: &str = "SELECT status FROM runs WHERE hash = ?1";

    /// Result tables a run's attempt writes, cleared before each write of a result.
    pub const CLEAR_RESULT: &[&str] = &[
        "DELETE FROM epochs WHERE run_hash = ?1",
        "DELETE FROM metrics WHERE run_hash = ?1",
        "DELETE FROM profiles WHERE run_hash = ?1",
        "DELETE FROM attention WHERE run_hash = ?1",
        "DELETE FROM pruning WHERE run_hash = ?1",
        "DELETE FROM artefacts WHERE run_hash = ?1",
    ];
    pub const CLEAR_EPOCHS: &str = "DELETE FROM epochs WHERE run_hash = ?1";
    pub const INSERT_EPOCH: &str = "
INSERT OR REPLACE INTO epochs (run_hash, epoch, lr, train_loss, val_mae, seconds)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    pub const INSERT_METRIC: &str = "
INSERT INTO metrics (run_hash, split, step, mape, mae, rmse) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    pub const INSERT_PROFILE: &str = "
INSERT INTO profiles (run_hash, parameters, flops, test_time_s, test_time_runs, test_time_batch,
                      device)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    pub const INSERT_ATTENTION: &str =
        "INSERT INTO attention (run_hash, picks, elements) VALUES (?1, ?2, ?3)";
    pub const INSERT_PRUNING: &str = "
INSERT INTO pruning (run_hash, target_pct, masked_share, compact_parameters, original_parameters,
                     speedup)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    pub const INSERT_ARTEFACT: &str =
        "INSERT INTO artefacts (run_hash, position, kind, path) VALUES (?1, ?2, ?3, ?4)";

    pub const RESULT_HEAD: &str =
        "SELECT status, best_epoch, train_seconds FROM runs WHERE hash = ?1";
    pub const SELECT_EPOCHS: &str = "
SELECT epoch, lr, train_loss, val_mae, seconds FROM epochs WHERE run_hash = ?1 ORDER BY rowid";
    pub const SELECT_METRICS: &str = "
SELECT split, step, mape, mae, rmse FROM metrics WHERE run_hash = ?1 ORDER BY rowid";
    pub const SELECT_PROFILE: &str = "
SELECT parameters, flops, test_time_s, test_time_runs, test_time_batch, device
FROM profiles WHERE run_hash = ?1";
    pub const SELECT_ATTENTION: &str = "SELECT picks, elements FROM attention WHERE run_hash = ?1";
    pub const SELECT_PRUNING: &str = "
SELECT target_pct, masked_share, compact_parameters, original_parameters, speedup
FROM pruning WHERE run_hash = ?1";
    pub const SELECT_ARTEFACTS: &str =
        "SELECT kind, path FROM artefacts WHERE run_hash = ?1 ORDER BY position";
}

// ---------------------------------------------------------------------------------------------
// Plain data

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
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Done,
        RunStatus::Failed,
        RunStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
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

// ---------------------------------------------------------------------------------------------
// Errors

/// Store errors; every message starts with the store's path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: cannot create the store's folder {}: {cause}", .path.display(), .dir.display())]
    CreateDir {
        path: PathBuf,
        dir: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{}: {} is a file, not a folder; pass a --store path whose folders are folders",
        .path.display(), .file.display()
    )]
    FileInTheWay { path: PathBuf, file: PathBuf },
    #[error("{}: is a folder, not a store file; pass the path of a store file (e.g. {})", .path.display(), .example.display())]
    IsAFolder { path: PathBuf, example: PathBuf },
    #[error("{}: cannot read the store: {cause}", .path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: {context}: {cause}", .path.display())]
    Sqlite {
        path: PathBuf,
        /// What the store was doing.
        context: String,
        cause: rusqlite::Error,
    },
    #[error(
        "{}: the store has schema version {found}, newer than this stkd knows (up to {known}); \
         use a newer stkd or another --store",
        .path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "{}: the store has schema version {found}, older than this stkd's {known}; a `stkd sweep` \
         on it upgrades it (read-only commands never change a store)",
        .path.display()
    )]
    TooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{}: unknown run {hash}", .path.display())]
    UnknownRun { path: PathBuf, hash: String },
    #[error(
        "{}: run {label} ({hash}) depends on {dep}, which is neither registered nor among the \
         runs being registered",
        .path.display()
    )]
    UnknownDependency {
        path: PathBuf,
        hash: String,
        label: String,
        dep: String,
    },
    #[error("{}: dependency cycle through run {hash}", .path.display())]
    Cycle { path: PathBuf, hash: String },
    #[error("{}: {}", .path.display(), lost_claim(.hash, .worker, *.status, .claimed_by.as_deref()))]
    LostClaim {
        path: PathBuf,
        hash: String,
        worker: String,
        status: RunStatus,
        claimed_by: Option<String>,
    },
    #[error("{}: invalid data in the store: {detail}", .path.display())]
    Corrupt { path: PathBuf, detail: String },
}

fn lost_claim(hash: &str, worker: &str, status: RunStatus, claimed_by: Option<&str>) -> String {
    match (status, claimed_by) {
        (RunStatus::Running, Some(other)) => {
            format!("run {hash} is claimed by worker {other}, not {worker}")
        }
        (_, Some(other)) => format!(
            "run {hash} is {status} (last claimed by worker {other}), not claimed by worker {worker}"
        ),
        (_, None) => format!("run {hash} is {status}, not claimed by worker {worker}"),
    }
}

/// Attaches the store path and a description of the operation to SQLite errors.
trait Ctx<T> {
    fn ctx(self, path: &Path, context: &str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, path: &Path, context: &str) -> Result<T, StoreError> {
        self.map_err(|cause| {
            let context = match cause.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ReadOnly) => {
                    format!("{context} (the store or its folder is read-only)")
                }
                _ => context.to_string(),
            };
            StoreError::Sqlite {
                path: path.to_path_buf(),
                context,
                cause,
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The store

/// An open store (one SQLite connection). Open one per thread or process.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Current time, unix seconds.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn hashes_json(hashes: Option<&[String]>) -> Option<String> {
    hashes.map(|h| serde_json::to_string(h).expect("a list of strings serialises"))
}

/// A nullable REAL column holding a value that may be NaN (stored as NULL).
fn real(row: &Row<'_>, idx: usize) -> rusqlite::Result<f64> {
    Ok(row.get::<_, Option<f64>>(idx)?.unwrap_or(f64::NAN))
}

fn run_row(row: &Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        hash: row.get(0)?,
        label: row.get(1)?,
        dataset: row.get(2)?,
        status: row.get(3)?,
        config_json: row.get(4)?,
        deps: Vec::new(),
        device: row.get(5)?,
        claimed_by: row.get(6)?,
        heartbeat: row.get(7)?,
        started: row.get(8)?,
        finished: row.get(9)?,
        error: row.get(10)?,
        attempts: row.get(11)?,
    })
}

fn fill_deps(conn: &Connection, run: &mut RunRow) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql::DEPS_OF)?;
    run.deps = stmt
        .query_map([&run.hash], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(())
}

fn read_run(conn: &Connection, hash: &str) -> rusqlite::Result<Option<RunRow>> {
    let run = conn.query_row(sql::RUN, [hash], run_row).optional()?;
    match run {
        Some(mut run) => {
            fill_deps(conn, &mut run)?;
            Ok(Some(run))
        }
        None => Ok(None),
    }
}

/// Fails unless `hash` is running and claimed by `worker`.
fn check_claim(conn: &Connection, path: &Path, hash: &str, worker: &str) -> Result<(), StoreError> {
    let holder: Option<(RunStatus, Option<String>)> = conn
        .query_row(sql::CLAIM_HOLDER, [hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .ctx(path, "checking a claim")?;
    match holder {
        None => Err(StoreError::UnknownRun {
            path: path.to_path_buf(),
            hash: hash.to_string(),
        }),
        Some((RunStatus::Running, Some(w))) if w == worker => Ok(()),
        Some((status, claimed_by)) => Err(StoreError::LostClaim {
            path: path.to_path_buf(),
            hash: hash.to_string(),
            worker: worker.to_string(),
            status,
            claimed_by,
        }),
    }
}

/// Marks `skipped` every pending run that depends on a failed or skipped run, until none is
/// left; returns the hashes newly skipped. The error names the root failed run.
fn propagate_skips(tx: &Transaction<'_>, path: &Path) -> Result<Vec<String>, StoreError> {
    let mut skipped = Vec::new();
    loop {
        let blocked: Vec<(String, String, String, RunStatus, Option<String>)> = {
            let mut stmt = tx
                .prepare_cached(sql::BLOCKED)
                .ctx(path, "finding blocked runs")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .ctx(path, "finding blocked runs")?;
            rows.collect::<rusqlite::Result<_>>()
                .ctx(path, "finding blocked runs")?
        };
        if blocked.is_empty() {
            return Ok(skipped);
        }
        let mut seen = HashSet::new();
        for (hash, dep, dep_label, dep_status, dep_error) in blocked {
            if !seen.insert(hash.clone()) {
                continue; // one message per run: its first blocked dependency
            }
            let error = match (dep_status, dep_error) {
                (RunStatus::Skipped, Some(inherited)) => inherited,
                (RunStatus::Skipped, None) => format!("dependency {dep_label} ({dep}) was skipped"),
                _ => format!("dependency {dep_label} ({dep}) failed"),
            };
            tx.execute(sql::SKIP, params![hash, error])
                .ctx(path, "skipping a dependant run")?;
            skipped.push(hash);
        }
    }
}

/// The first existing ancestor folder of `path` (not `path` itself) that is in fact a file.
fn file_in_the_way(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| std::fs::metadata(a).is_ok_and(|m| !m.is_dir()))
        .map(Path::to_path_buf)
}

/// What to say when SQLite cannot open or set up a store: the hint that fits the error.
fn open_failure(e: &rusqlite::Error, otherwise: &'static str) -> &'static str {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(ReadOnly | PermissionDenied) => {
            "cannot write to the store (the file or its folder is read-only; read-only commands \
             such as `stkd status` still work)"
        }
        Some(CannotOpen) => {
            "cannot open the store (is the file or its folder read-only, or not accessible to \
             this user?)"
        }
        Some(NotADatabase) => "cannot read the store: it is not an SQLite file",
        _ => otherwise,
    }
}

/// Schema version and number of tables of a freshly opened connection.
fn probe(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let version = conn.query_row(sql::USER_VERSION, [], |r| r.get(0))?;
    let tables = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok((version, tables))
}

/// Errors of a plain read-only open that an `immutable` open may avoid (no `-shm` file and no
/// right to create one).
fn can_retry_immutable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(CannotOpen | ReadOnly | PermissionDenied | SystemIoFailure)
    )
}

/// `file:` URI of `path` with `immutable=1`, every byte outside the unreserved set escaped.
fn immutable_uri(path: &Path) -> String {
    let bytes = path.as_os_str().as_encoded_bytes();
    let mut uri = String::from("file:");
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

impl Store {
    /// Opens (creating if needed, with parent directories) the store at `path`: WAL mode,
    /// busy timeout [`BUSY_TIMEOUT`], foreign keys on, schema migrated to [`SCHEMA_VERSION`].
    /// For commands that write (a sweep, a run); read-only commands use
    /// [`Store::open_read_only`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if path.is_dir() {
            return Err(StoreError::IsAFolder {
                path: path.to_path_buf(),
                example: path.join("stkd.db"),
            });
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|cause| match file_in_the_way(path) {
                Some(file) => StoreError::FileInTheWay {
                    path: path.to_path_buf(),
                    file,
                },
                None => StoreError::CreateDir {
                    path: path.to_path_buf(),
                    dir: parent.to_path_buf(),
                    cause,
                },
            })?;
        }
        let conn = Connection::open(path).map_err(|cause| StoreError::Sqlite {
            path: path.to_path_buf(),
            context: open_failure(&cause, "cannot open the store").to_string(),
            cause,
        })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing store for reading only (`status`, `report`, `sweep --dry-run`): it
    /// never creates, configures or migrates the file, and works on a store that is read-only or
    /// sits in a read-only folder. `None` when there is no store yet: no file, or an empty file
    /// without a schema (a store nothing was ever written to).
    ///
    /// SQLite reads a WAL-mode file through a shared-memory file beside it (`-shm`); where that
    /// file neither exists nor can be created (a read-only folder after the last writer closed
    /// the store), the store is read as `immutable`, which is exact because then no process can
    /// be writing to it.
    pub fn open_read_only(path: &Path) -> Result<Option<Store>, StoreError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => {
                return Err(match file_in_the_way(path) {
                    Some(file) => StoreError::FileInTheWay {
                        path: path.to_path_buf(),
                        file,
                    },
                    None => StoreError::Read {
                        path: path.to_path_buf(),
                        cause,
                    },
                })
            }
        };
        if meta.is_dir() {
            return Err(StoreError::IsAFolder {
                path: path.to_path_buf(),
                example: path.join("stkd.db"),
            });
        }
        let plain = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let first =
            Connection::open_with_flags(path, plain).and_then(|c| probe(&c).map(|v| (c, v)));
        let (conn, (version, tables)) = match first {
            Ok(x) => x,
            Err(e) if can_retry_immutable(&e) => {
                let uri = immutable_uri(path);
                Connection::open_with_flags(&uri, plain | OpenFlags::SQLITE_OPEN_URI)
                    .and_then(|c| probe(&c).map(|v| (c, v)))
                    .map_err(|_| e)
                    .map_err(|cause| StoreError::Sqlite {
                        path: path.to_path_buf(),
                        context: open_failure(&cause, "cannot read the store").to_string(),
                        cause,
                    })?
            }
            Err(cause) => {
                return Err(StoreError::Sqlite {
                    path: path.to_path_buf(),
                    context: open_failure(&cause, "cannot read the store").to_string(),
                    cause,
                })
            }
        };
        let path = path.to_path_buf();
        match version {
            0 if tables == 0 => Ok(None),
            0 => Err(StoreError::Corrupt {
                path,
                detail: format!(
                    "an SQLite file with {tables} table(s) but no stkd schema version; \
                     not an stkd store"
                ),
            }),
            v if v > SCHEMA_VERSION => Err(StoreError::TooNew {
                path,
                found: v,
                known: SCHEMA_VERSION,
            }),
            v if v < SCHEMA_VERSION => Err(StoreError::TooOld {
                path,
                found: v,
                known: SCHEMA_VERSION,
            }),
            _ => {
                conn.busy_timeout(BUSY_TIMEOUT)
                    .ctx(&path, "cannot read the store")?;
                Ok(Some(Store { conn, path }))
            }
        }
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        let path = &self.path;
        let ctx = |cause: rusqlite::Error| StoreError::Sqlite {
            path: path.clone(),
            context: open_failure(&cause, "cannot configure the store (is it an SQLite file?)")
                .to_string(),
            cause,
        };
        self.conn.busy_timeout(BUSY_TIMEOUT).map_err(ctx)?;
        // Switching to WAL needs a moment of exclusive access: retry while another process
        // holds the file (the busy handler does not cover this pragma everywhere).
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            let mode = self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0));
            match mode {
                Ok(_) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(ctx(e)),
            }
        }
        self.conn
            .pragma_update(None, "foreign_keys", true)
            .map_err(ctx)?;
        Ok(())
    }

    fn user_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
        conn.query_row(sql::USER_VERSION, [], |r| r.get(0)).ctx(
            path,
            "cannot read the schema version (is it an SQLite file?)",
        )
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let too_new = |found| StoreError::TooNew {
            path: path.clone(),
            found,
            known: SCHEMA_VERSION,
        };
        let found = Self::user_version(&self.conn, &path)?;
        if found > SCHEMA_VERSION {
            return Err(too_new(found));
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(&path, "cannot lock the store to migrate its schema")?;
        // Another process may have migrated in between.
        let found = Self::user_version(&tx, &path)?;
        if found > SCHEMA_VERSION {
            return Err(too_new(found));
        }
        for (i, migration) in sql::MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.execute_batch(migration)
                .ctx(&path, &format!("migrating the schema to version {}", i + 1))?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .ctx(&path, "setting the schema version")?;
        tx.commit().ctx(&path, "committing the schema migration")
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn begin(&mut self) -> Result<Transaction<'_>, StoreError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(&self.path, "cannot start a write transaction")
    }

    /// Records an experiment file and its runs, in one transaction: runs not yet known are
    /// inserted as pending (known runs, finished or not, are kept as they are), the experiment's
    /// run list is set to `runs` in that order (a run may belong to several experiments), and the
    /// dependencies are stored. Pending runs whose dependency failed are marked skipped.
    /// Idempotent. Returns the experiment id.
    pub fn register(
        &mut self,
        experiment: &ExperimentInfo,
        runs: &[NewRun],
    ) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "registering an experiment";
        let tx = self.begin()?;
        let t = now();
        let id: i64 = tx
            .query_row(
                sql::UPSERT_EXPERIMENT,
                params![experiment.name, experiment.file, experiment.yaml_sha256, t],
                |r| r.get(0),
            )
            .ctx(p, ctx)?;
        tx.execute(sql::UNLINK_EXPERIMENT, [id]).ctx(p, ctx)?;
        for (position, run) in runs.iter().enumerate() {
            tx.execute(
                sql::INSERT_RUN,
                params![run.hash, run.label, run.dataset, run.config_json, t],
            )
            .ctx(p, ctx)?;
            tx.execute(sql::LINK_RUN, params![id, run.hash, position as i64])
                .ctx(p, ctx)?;
        }
        for run in runs {
            for dep in &run.deps {
                let known = tx
                    .query_row(sql::RUN_EXISTS, [dep], |_| Ok(()))
                    .optional()
                    .ctx(p, ctx)?
                    .is_some();
                if !known {
                    return Err(StoreError::UnknownDependency {
                        path,
                        hash: run.hash.clone(),
                        label: run.label.clone(),
                        dep: dep.clone(),
                    });
                }
                tx.execute(sql::INSERT_DEP, params![run.hash, dep])
                    .ctx(p, ctx)?;
            }
        }
        let cycle: Option<String> = tx
            .query_row(sql::FIND_CYCLE, [], |r| r.get(0))
            .optional()
            .ctx(p, ctx)?;
        if let Some(hash) = cycle {
            return Err(StoreError::Cycle { path, hash });
        }
        propagate_skips(&tx, p)?;
        tx.commit().ctx(p, ctx)?;
        Ok(id)
    }

    /// All registered experiments, in order of first registration.
    pub fn experiments(&self) -> Result<Vec<ExperimentRow>, StoreError> {
        let ctx = "listing experiments";
        let mut stmt = self
            .conn
            .prepare_cached(sql::EXPERIMENTS)
            .ctx(&self.path, ctx)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ExperimentRow {
                    id: r.get(0)?,
                    info: ExperimentInfo {
                        name: r.get(1)?,
                        file: r.get(2)?,
                        yaml_sha256: r.get(3)?,
                    },
                    registered: r.get(4)?,
                })
            })
            .ctx(&self.path, ctx)?;
        rows.collect::<rusqlite::Result<_>>().ctx(&self.path, ctx)
    }

    /// Claims one runnable run among `hashes` (any run if `None`), the first in registration
    /// order: a pending run whose dependencies are all done, or a running run whose heartbeat is
    /// older than `stale_after_s` seconds (an interrupted attempt). The run becomes running,
    /// claimed by `worker` on `device`, with heartbeat = started = now and one more attempt;
    /// curves of an earlier attempt are dropped. Atomic across processes. `None` when nothing
    /// is runnable now.
    pub fn claim_next(
        &mut self,
        hashes: Option<&[String]>,
        worker: &str,
        device: &str,
        stale_after_s: f64,
    ) -> Result<Option<RunRow>, StoreError> {
        let filter = hashes_json(hashes);
        self.claim_where(filter, worker, device, stale_after_s)
    }

    /// Claims the run `hash` if it is runnable now (see [`Store::claim_next`]); `false` if not.
    pub fn claim(
        &mut self,
        hash: &str,
        worker: &str,
        device: &str,
        stale_after_s: f64,
    ) -> Result<bool, StoreError> {
        let filter = hashes_json(Some(&[hash.to_string()]));
        match self.claim_where(filter, worker, device, stale_after_s)? {
            Some(_) => Ok(true),
            None if self.run(hash)?.is_none() => Err(StoreError::UnknownRun {
                path: self.path.clone(),
                hash: hash.to_string(),
            }),
            None => Ok(false),
        }
    }

    fn claim_where(
        &mut self,
        filter: Option<String>,
        worker: &str,
        device: &str,
        stale_after_s: f64,
    ) -> Result<Option<RunRow>, StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "claiming a run";
        let tx = self.begin()?;
        let t = now();
        let hash: Option<String> = tx
            .query_row(sql::CLAIMABLE, params![filter, t - stale_after_s], |r| {
                r.get(0)
            })
            .optional()
            .ctx(p, ctx)?;
        let Some(hash) = hash else {
            return Ok(None); // dropping the transaction rolls it back
        };
        tx.execute(sql::CLAIM, params![hash, worker, device, t])
            .ctx(p, ctx)?;
        tx.execute(sql::CLEAR_EPOCHS, [&hash]).ctx(p, ctx)?;
        let run = read_run(&tx, &hash).ctx(p, ctx)?;
        tx.commit().ctx(p, ctx)?;
        Ok(run)
    }

    /// Refreshes the heartbeat of `hash`, only while `worker` holds its claim
    /// ([`StoreError::LostClaim`] otherwise: the worker should stop).
    pub fn heartbeat(&self, hash: &str, worker: &str) -> Result<(), StoreError> {
        let changed = self
            .conn
            .execute(sql::HEARTBEAT, params![hash, worker, now()])
            .ctx(&self.path, "updating a heartbeat")?;
        if changed == 0 {
            check_claim(&self.conn, &self.path, hash, worker)?;
        }
        Ok(())
    }

    /// Records one epoch of the running attempt (live progress; [`Store::finish`] replaces the
    /// curve with the final one) and refreshes the heartbeat. Only while `worker` holds the claim.
    pub fn record_epoch(
        &mut self,
        hash: &str,
        worker: &str,
        epoch: &EpochRow,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "recording an epoch";
        let tx = self.begin()?;
        check_claim(&tx, p, hash, worker)?;
        insert_epoch(&tx, hash, epoch).ctx(p, ctx)?;
        tx.execute(sql::HEARTBEAT, params![hash, worker, now()])
            .ctx(p, ctx)?;
        tx.commit().ctx(p, ctx)
    }

    /// Marks `hash` done and stores `result`, in one transaction, replacing any rows of earlier
    /// attempts. Only while `worker` holds the claim; otherwise nothing is written and the error
    /// is [`StoreError::LostClaim`].
    pub fn finish(
        &mut self,
        hash: &str,
        worker: &str,
        result: &RunResult,
    ) -> Result<(), StoreError> {
        self.finish_at(hash, worker, result, now())
    }

    /// [`Store::finish`] with the finish time given (Unix seconds): a run taken from a record
    /// keeps the time it was computed at.
    pub fn finish_at(
        &mut self,
        hash: &str,
        worker: &str,
        result: &RunResult,
        finished: f64,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "storing a run's result";
        let tx = self.begin()?;
        check_claim(&tx, p, hash, worker)?;
        write_result(&tx, hash, result).ctx(p, ctx)?;
        tx.execute(
            sql::DONE,
            params![hash, result.best_epoch, result.train_seconds, finished],
        )
        .ctx(p, ctx)?;
        tx.commit().ctx(p, ctx)
    }

    /// Marks `hash` failed with `error` (only while `worker` holds the claim) and every pending
    /// transitive dependant skipped, with error `dependency <label> (<hash>) failed`. Returns the
    /// hashes skipped. Other runs are untouched.
    pub fn fail(
        &mut self,
        hash: &str,
        worker: &str,
        error: &str,
    ) -> Result<Vec<String>, StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "recording a failed run";
        let tx = self.begin()?;
        check_claim(&tx, p, hash, worker)?;
        tx.execute(sql::FAIL, params![hash, error, now()])
            .ctx(p, ctx)?;
        let skipped = propagate_skips(&tx, p)?;
        tx.commit().ctx(p, ctx)?;
        Ok(skipped)
    }

    /// Puts a claimed run back to pending (clean interruption, e.g. Ctrl-C). Only while
    /// `worker` holds the claim. The attempt stays counted.
    pub fn release(&mut self, hash: &str, worker: &str) -> Result<(), StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "releasing a run";
        let tx = self.begin()?;
        check_claim(&tx, p, hash, worker)?;
        tx.execute(sql::RELEASE, [hash]).ctx(p, ctx)?;
        tx.commit().ctx(p, ctx)
    }

    /// Puts failed and skipped runs among `hashes` (all if `None`) back to pending, errors
    /// cleared. A re-queued run whose dependency is still failed or skipped (not re-queued) is
    /// skipped again. Returns how many runs are pending again.
    pub fn retry_failed(&mut self, hashes: Option<&[String]>) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "re-queueing failed runs";
        let filter = hashes_json(hashes);
        let tx = self.begin()?;
        let requeued: Vec<String> = {
            let mut stmt = tx.prepare(sql::RETRY_FAILED).ctx(p, ctx)?;
            let rows = stmt.query_map([filter], |r| r.get(0)).ctx(p, ctx)?;
            rows.collect::<rusqlite::Result<_>>().ctx(p, ctx)?
        };
        let reskipped: HashSet<String> = propagate_skips(&tx, p)?.into_iter().collect();
        tx.commit().ctx(p, ctx)?;
        Ok(requeued.iter().filter(|h| !reskipped.contains(*h)).count())
    }

    /// The run `hash`, if registered.
    pub fn run(&self, hash: &str) -> Result<Option<RunRow>, StoreError> {
        read_run(&self.conn, hash).ctx(&self.path, "reading a run")
    }

    /// The runs of experiment `name` in its order (empty if no such experiment), or all runs in
    /// registration order.
    pub fn runs(&self, experiment: Option<&str>) -> Result<Vec<RunRow>, StoreError> {
        let ctx = "listing runs";
        let p = self.path.as_path();
        let mut runs: Vec<RunRow> = match experiment {
            Some(name) => {
                let mut stmt = self
                    .conn
                    .prepare_cached(sql::RUNS_OF_EXPERIMENT)
                    .ctx(p, ctx)?;
                let rows = stmt.query_map([name], run_row).ctx(p, ctx)?;
                rows.collect::<rusqlite::Result<_>>().ctx(p, ctx)?
            }
            None => {
                let mut stmt = self.conn.prepare_cached(sql::RUNS_ALL).ctx(p, ctx)?;
                let rows = stmt.query_map([], run_row).ctx(p, ctx)?;
                rows.collect::<rusqlite::Result<_>>().ctx(p, ctx)?
            }
        };
        for run in &mut runs {
            fill_deps(&self.conn, run).ctx(p, ctx)?;
        }
        Ok(runs)
    }

    /// What [`Store::finish`] wrote for `hash`; `None` unless the run is done.
    pub fn result(&self, hash: &str) -> Result<Option<RunResult>, StoreError> {
        read_result(&self.conn, hash).ctx(&self.path, "reading a run's result")
    }
}

fn insert_epoch(conn: &Connection, hash: &str, e: &EpochRow) -> rusqlite::Result<()> {
    conn.prepare_cached(sql::INSERT_EPOCH)?.execute(params![
        hash,
        e.epoch,
        e.lr,
        e.train_loss,
        e.val_mae,
        e.seconds
    ])?;
    Ok(())
}

fn write_result(tx: &Transaction<'_>, hash: &str, r: &RunResult) -> rusqlite::Result<()> {
    for clear in sql::CLEAR_RESULT {
        tx.execute(clear, [hash])?;
    }
    for e in &r.epochs {
        insert_epoch(tx, hash, e)?;
    }
    for m in &r.metrics {
        tx.prepare_cached(sql::INSERT_METRIC)?
            .execute(params![hash, m.split, m.step, m.mape, m.mae, m.rmse])?;
    }
    if let Some(pr) = &r.profile {
        tx.execute(
            sql::INSERT_PROFILE,
            params![
                hash,
                pr.parameters,
                pr.flops,
                pr.test_time_s,
                pr.test_time_runs,
                pr.test_time_batch,
                pr.device
            ],
        )?;
    }
    if let Some(a) = &r.attention {
        tx.execute(sql::INSERT_ATTENTION, params![hash, a.picks, a.elements])?;
    }
    if let Some(pr) = &r.pruning {
        tx.execute(
            sql::INSERT_PRUNING,
            params![
                hash,
                pr.target_pct,
                pr.masked_share,
                pr.compact_parameters,
                pr.original_parameters,
                pr.speedup
            ],
        )?;
    }
    for (position, (kind, path)) in r.artefacts.iter().enumerate() {
        tx.prepare_cached(sql::INSERT_ARTEFACT)?.execute(params![
            hash,
            position as i64,
            kind,
            path
        ])?;
    }
    Ok(())
}

fn read_result(conn: &Connection, hash: &str) -> rusqlite::Result<Option<RunResult>> {
    let head: Option<(RunStatus, Option<u32>, Option<f64>)> = conn
        .query_row(sql::RESULT_HEAD, [hash], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((RunStatus::Done, best_epoch, train_seconds)) = head else {
        return Ok(None);
    };
    let epochs = conn
        .prepare_cached(sql::SELECT_EPOCHS)?
        .query_map([hash], |r| {
            Ok(EpochRow {
                epoch: r.get(0)?,
                lr: real(r, 1)?,
                train_loss: real(r, 2)?,
                val_mae: real(r, 3)?,
                seconds: real(r, 4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let metrics = conn
        .prepare_cached(sql::SELECT_METRICS)?
        .query_map([hash], |r| {
            Ok(MetricRow {
                split: r.get(0)?,
                step: r.get(1)?,
                mape: real(r, 2)?,
                mae: real(r, 3)?,
                rmse: real(r, 4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let profile = conn
        .query_row(sql::SELECT_PROFILE, [hash], |r| {
            Ok(Profile {
                parameters: r.get(0)?,
                flops: r.get(1)?,
                test_time_s: r.get(2)?,
                test_time_runs: r.get(3)?,
                test_time_batch: r.get(4)?,
                device: r.get(5)?,
            })
        })
        .optional()?;
    let attention = conn
        .query_row(sql::SELECT_ATTENTION, [hash], |r| {
            Ok(Attention {
                picks: r.get(0)?,
                elements: r.get(1)?,
            })
        })
        .optional()?;
    let pruning = conn
        .query_row(sql::SELECT_PRUNING, [hash], |r| {
            Ok(Pruning {
                target_pct: real(r, 0)?,
                masked_share: real(r, 1)?,
                compact_parameters: r.get(2)?,
                original_parameters: r.get(3)?,
                speedup: r.get(4)?,
            })
        })
        .optional()?;
    let artefacts = conn
        .prepare_cached(sql::SELECT_ARTEFACTS)?
        .query_map([hash], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(RunResult {
        epochs,
        metrics,
        profile,
        attention,
        pruning,
        artefacts,
        best_epoch,
        train_seconds: train_seconds.unwrap_or(f64::NAN),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh, unique store path under the temp dir (removed with its WAL files on drop).
    struct TempDb(PathBuf);

    impl TempDb {
        fn new(tag: &str) -> TempDb {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::SeqCst);
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir().join(format!(
                "stkd-store-test-{}-{t}-{n}-{tag}",
                std::process::id()
            ));
            TempDb(dir.join("sub").join("stkd.db"))
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap().parent().unwrap());
        }
    }

    fn exp(name: &str) -> ExperimentInfo {
        ExperimentInfo {
            name: name.to_string(),
            file: format!("experiments/{name}.yaml"),
            yaml_sha256: format!("sha-{name}"),
        }
    }

    fn new_run(hash: &str, deps: &[&str]) -> NewRun {
        NewRun {
            hash: hash.to_string(),
            label: format!("label-{hash}"),
            dataset: "pemsd7".to_string(),
            config_json: format!("{{\"run\":\"{hash}\"}}"),
            deps: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn status(store: &Store, hash: &str) -> RunStatus {
        store.run(hash).unwrap().unwrap().status
    }

    fn sample_result() -> RunResult {
        RunResult {
            epochs: vec![
                EpochRow {
                    epoch: 1,
                    lr: 1e-3,
                    train_loss: 0.5,
                    val_mae: 3.25,
                    seconds: 12.5,
                },
                EpochRow {
                    epoch: 2,
                    lr: 7e-4,
                    train_loss: 0.25,
                    val_mae: 2.875,
                    seconds: 11.0,
                },
            ],
            metrics: vec![
                MetricRow {
                    split: "val".into(),
                    step: 3,
                    mape: 5.5,
                    mae: 2.25,
                    rmse: 4.0,
                },
                MetricRow {
                    split: "test".into(),
                    step: 9,
                    mape: 9.125,
                    mae: 3.5,
                    rmse: 6.75,
                },
            ],
            profile: Some(Profile {
                parameters: 454_358,
                flops: 12_345_678_901,
                test_time_s: Some(0.0625),
                test_time_runs: Some(10),
                test_time_batch: Some(50),
                device: "cuda:0".into(),
            }),
            attention: Some(Attention {
                picks: 17,
                elements: 1000,
            }),
            pruning: Some(Pruning {
                target_pct: 30.0,
                masked_share: 0.295,
                compact_parameters: 300_000,
                original_parameters: 454_358,
                speedup: Some(1.4),
            }),
            artefacts: vec![
                ("checkpoint".into(), "runs/aa/model.mpk".into()),
                ("log".into(), "runs/aa/train.log".into()),
            ],
            best_epoch: Some(2),
            train_seconds: 23.5,
        }
    }

    #[test]
    fn open_creates_schema_and_reopen_keeps_data() {
        let db = TempDb::new("open");
        {
            let mut store = Store::open(&db.0).unwrap();
            assert_eq!(store.path(), db.0.as_path());
            store.register(&exp("e"), &[new_run("a", &[])]).unwrap();
        }
        assert!(db.0.exists());
        let store = Store::open(&db.0).unwrap();
        let v: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 1);
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let runs = store.runs(None).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].hash, "a");
        assert_eq!(runs[0].status, RunStatus::Pending);
        assert_eq!(runs[0].attempts, 0);
        assert_eq!(store.experiments().unwrap()[0].info, exp("e"));
    }

    #[test]
    fn newer_schema_version_is_a_clear_error() {
        let db = TempDb::new("newer");
        {
            let store = Store::open(&db.0).unwrap();
            store
                .conn
                .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = Store::open(&db.0).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found, .. } if found == SCHEMA_VERSION + 1));
        let msg = err.to_string();
        assert!(msg.contains(&db.0.display().to_string()), "{msg}");
        assert!(msg.contains("newer"), "{msg}");
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_a_clear_error() {
        let db = TempDb::new("garbage");
        std::fs::create_dir_all(db.0.parent().unwrap()).unwrap();
        std::fs::write(&db.0, vec![b'x'; 4096]).unwrap();
        let msg = Store::open(&db.0).unwrap_err().to_string();
        assert!(msg.starts_with(&db.0.display().to_string()), "{msg}");
        assert!(msg.contains("not a database"), "{msg}");
    }

    #[test]
    fn read_only_open_never_creates_or_writes() {
        let db = TempDb::new("read-only");
        let dir = db.0.parent().unwrap();
        // No store yet: nothing is created, not even the folder.
        assert!(Store::open_read_only(&db.0).unwrap().is_none());
        assert!(!dir.exists());
        // An empty file is a store without runs, and stays empty.
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&db.0, b"").unwrap();
        assert!(Store::open_read_only(&db.0).unwrap().is_none());
        assert_eq!(std::fs::metadata(&db.0).unwrap().len(), 0);
        let names = || -> Vec<String> {
            std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        };
        assert_eq!(names(), ["stkd.db"]);
        // A store: read, never written.
        {
            let mut store = Store::open(&db.0).unwrap();
            store.register(&exp("e"), &[new_run("a", &[])]).unwrap();
        }
        let bytes = std::fs::read(&db.0).unwrap();
        let ro = Store::open_read_only(&db.0).unwrap().unwrap();
        assert_eq!(ro.runs(None).unwrap().len(), 1);
        assert_eq!(ro.experiments().unwrap()[0].info, exp("e"));
        let err = ro.heartbeat("a", "w").unwrap_err().to_string();
        assert!(err.contains("read-only"), "{err}");
        drop(ro);
        assert_eq!(std::fs::read(&db.0).unwrap(), bytes);
        // A folder, a newer schema, an SQLite file that is not a store: clear errors.
        let err = Store::open_read_only(dir).unwrap_err();
        assert!(matches!(err, StoreError::IsAFolder { .. }), "{err}");
        assert!(
            err.to_string().contains("is a folder, not a store file"),
            "{err}"
        );
        Store::open(&db.0)
            .unwrap()
            .conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = Store::open_read_only(&db.0).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
        let other = dir.join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = Store::open_read_only(&other).unwrap_err().to_string();
        assert!(err.contains("not an stkd store"), "{err}");
    }

    #[test]
    fn a_file_where_the_store_folder_should_be_is_named() {
        let db = TempDb::new("blocked");
        let blocker = db.0.parent().unwrap();
        std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
        std::fs::write(blocker, "not a folder").unwrap();
        let want = format!("{} is a file, not a folder", blocker.display());
        let err = Store::open(&db.0).unwrap_err();
        assert!(
            matches!(&err, StoreError::FileInTheWay { file, .. } if file == blocker),
            "{err}"
        );
        assert!(err.to_string().contains(&want), "{err}");
        assert!(!err.to_string().contains("os error"), "{err}");
        let err = Store::open_read_only(&db.0).unwrap_err();
        assert!(err.to_string().contains(&want), "{err}");
    }

    #[test]
    fn immutable_uri_escapes_what_uris_reserve() {
        assert_eq!(
            immutable_uri(Path::new("results/a b?c#d%e.db")),
            "file:results/a%20b%3Fc%23d%25e.db?immutable=1"
        );
        assert_eq!(
            immutable_uri(Path::new("/x/stkd.db")),
            "file:/x/stkd.db?immutable=1"
        );
    }

    #[test]
    fn run_status_text() {
        for s in RunStatus::ALL {
            assert_eq!(s.to_string().parse::<RunStatus>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(RunStatus::Skipped.to_string(), "skipped");
        assert!("Done".parse::<RunStatus>().is_err());
    }

    #[test]
    fn register_is_idempotent_and_shares_runs() {
        let db = TempDb::new("register");
        let mut store = Store::open(&db.0).unwrap();
        let t2 = [new_run("teacher", &[]), new_run("s1", &["teacher"])];
        let id = store.register(&exp("table2"), &t2).unwrap();
        assert_eq!(store.register(&exp("table2"), &t2).unwrap(), id);
        // Dependencies may come after their dependants in the list.
        let t4 = [new_run("s2", &["teacher"]), new_run("teacher", &[])];
        let id4 = store.register(&exp("table4"), &t4).unwrap();
        assert_ne!(id, id4);

        let all = store.runs(None).unwrap();
        let hashes: Vec<_> = all.iter().map(|r| r.hash.as_str()).collect();
        assert_eq!(hashes, ["teacher", "s1", "s2"]);
        let t2_runs: Vec<_> = store
            .runs(Some("table2"))
            .unwrap()
            .into_iter()
            .map(|r| r.hash)
            .collect();
        assert_eq!(t2_runs, ["teacher", "s1"]);
        let t4_runs = store.runs(Some("table4")).unwrap();
        assert_eq!(t4_runs[0].hash, "s2");
        assert_eq!(t4_runs[0].deps, ["teacher"]);
        assert_eq!(t4_runs[1].hash, "teacher");
        assert!(store.runs(Some("nope")).unwrap().is_empty());
        assert_eq!(store.experiments().unwrap().len(), 2);

        // A finished run stays finished when registered again.
        let r = store.claim_next(None, "w", "cpu", 60.0).unwrap().unwrap();
        assert_eq!(r.hash, "teacher");
        store.finish("teacher", "w", &RunResult::default()).unwrap();
        store.register(&exp("table2"), &t2).unwrap();
        assert_eq!(status(&store, "teacher"), RunStatus::Done);
        assert_eq!(store.runs(None).unwrap().len(), 3);
    }

    #[test]
    fn register_rejects_unknown_dependencies_and_cycles_atomically() {
        let db = TempDb::new("baddeps");
        let mut store = Store::open(&db.0).unwrap();
        let err = store
            .register(&exp("e"), &[new_run("a", &["ghost"])])
            .unwrap_err();
        assert!(err.to_string().contains("ghost"), "{err}");
        assert!(store.runs(None).unwrap().is_empty(), "nothing registered");
        let err = store
            .register(&exp("e"), &[new_run("a", &["b"]), new_run("b", &["a"])])
            .unwrap_err();
        assert!(matches!(err, StoreError::Cycle { .. }), "{err}");
        assert!(store.runs(None).unwrap().is_empty());
    }

    #[test]
    fn dependants_wait_for_their_dependencies() {
        let db = TempDb::new("deps");
        let mut store = Store::open(&db.0).unwrap();
        store
            .register(
                &exp("e"),
                &[new_run("student", &["teacher"]), new_run("teacher", &[])],
            )
            .unwrap();
        assert!(!store.claim("student", "w", "cpu", 60.0).unwrap());
        let r = store.claim_next(None, "w", "cpu", 60.0).unwrap().unwrap();
        assert_eq!(r.hash, "teacher");
        assert_eq!(r.status, RunStatus::Running);
        assert_eq!(r.claimed_by.as_deref(), Some("w"));
        assert_eq!(r.device.as_deref(), Some("cpu"));
        assert_eq!(r.attempts, 1);
        assert!(r.heartbeat.is_some() && r.started == r.heartbeat);
        // The teacher is running: nothing else is runnable.
        assert!(store.claim_next(None, "w2", "cpu", 60.0).unwrap().is_none());
        store.heartbeat("teacher", "w").unwrap();
        store.finish("teacher", "w", &sample_result()).unwrap();
        let only = ["student".to_string()];
        let r = store
            .claim_next(Some(&only), "w", "cuda:0", 60.0)
            .unwrap()
            .unwrap();
        assert_eq!(r.hash, "student");
        assert!(store.claim_next(None, "w", "cpu", 60.0).unwrap().is_none());
        assert!(store
            .claim_next(Some(&[]), "w", "cpu", 60.0)
            .unwrap()
            .is_none());
        assert!(matches!(
            store.claim("ghost", "w", "cpu", 60.0),
            Err(StoreError::UnknownRun { .. })
        ));
    }

    #[test]
    fn finish_writes_everything_and_result_reads_it_back() {
        let db = TempDb::new("finish");
        let mut store = Store::open(&db.0).unwrap();
        store.register(&exp("e"), &[new_run("a", &[])]).unwrap();
        assert_eq!(store.result("a").unwrap(), None);
        assert!(store.claim("a", "w", "cuda:0", 60.0).unwrap());
        // Live progress of the attempt; replaced by the final curve.
        store
            .record_epoch(
                "a",
                "w",
                &EpochRow {
                    epoch: 7,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(store.result("a").unwrap(), None, "not done yet");
        let result = sample_result();
        store.finish("a", "w", &result).unwrap();
        let run = store.run("a").unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Done);
        assert!(run.finished.is_some());
        assert_eq!(store.result("a").unwrap(), Some(result.clone()));
        // Survives reopening.
        drop(store);
        let store = Store::open(&db.0).unwrap();
        assert_eq!(store.result("a").unwrap(), Some(result));
        assert_eq!(store.result("ghost").unwrap(), None);
    }

    #[test]
    fn nan_values_round_trip() {
        let db = TempDb::new("nan");
        let mut store = Store::open(&db.0).unwrap();
        store.register(&exp("e"), &[new_run("a", &[])]).unwrap();
        assert!(store.claim("a", "w", "cpu", 60.0).unwrap());
        let mut result = RunResult::default();
        result.epochs.push(EpochRow {
            epoch: 1,
            lr: 1e-3,
            train_loss: f64::NAN,
            val_mae: f64::INFINITY,
            seconds: 1.0,
        });
        store.finish("a", "w", &result).unwrap();
        let back = store.result("a").unwrap().unwrap();
        assert!(back.epochs[0].train_loss.is_nan());
        assert_eq!(back.epochs[0].val_mae, f64::INFINITY);
        assert_eq!(back.best_epoch, None);
    }

    #[test]
    fn fail_skips_transitive_dependants_and_retry_requeues() {
        let db = TempDb::new("fail");
        let mut store = Store::open(&db.0).unwrap();
        store
            .register(
                &exp("e"),
                &[
                    new_run("teacher", &[]),
                    new_run("student", &["teacher"]),
                    new_run("pruned", &["student"]),
                    new_run("other", &[]),
                ],
            )
            .unwrap();
        assert!(store.claim("teacher", "w", "cpu", 60.0).unwrap());
        let skipped = store.fail("teacher", "w", "out of memory").unwrap();
        assert_eq!(skipped, ["student", "pruned"]);
        let t = store.run("teacher").unwrap().unwrap();
        assert_eq!(t.status, RunStatus::Failed);
        assert_eq!(t.error.as_deref(), Some("out of memory"));
        for h in ["student", "pruned"] {
            let r = store.run(h).unwrap().unwrap();
            assert_eq!(r.status, RunStatus::Skipped);
            assert_eq!(
                r.error.as_deref(),
                Some("dependency label-teacher (teacher) failed")
            );
        }
        assert_eq!(status(&store, "other"), RunStatus::Pending);
        // A run registered later that needs the failed teacher is skipped at once.
        store
            .register(&exp("e2"), &[new_run("late", &["teacher"])])
            .unwrap();
        assert_eq!(status(&store, "late"), RunStatus::Skipped);

        // Re-queueing only a dependant leaves it skipped: its teacher is still failed.
        assert_eq!(store.retry_failed(Some(&["student".into()])).unwrap(), 0);
        assert_eq!(status(&store, "student"), RunStatus::Skipped);

        assert_eq!(store.retry_failed(None).unwrap(), 4);
        for h in ["teacher", "student", "pruned", "late", "other"] {
            let r = store.run(h).unwrap().unwrap();
            assert_eq!(r.status, RunStatus::Pending, "{h}");
            assert_eq!(r.error, None);
        }
        let r = store.claim_next(None, "w", "cpu", 60.0).unwrap().unwrap();
        assert_eq!((r.hash.as_str(), r.attempts), ("teacher", 2));
    }

    #[test]
    fn stale_heartbeat_makes_a_run_claimable_again() {
        let db = TempDb::new("stale");
        let mut store = Store::open(&db.0).unwrap();
        store
            .register(&exp("e"), &[new_run("a", &[]), new_run("b", &[])])
            .unwrap();
        assert!(store.claim("a", "dead", "cpu", 60.0).unwrap());
        assert!(store.claim("b", "alive", "cpu", 60.0).unwrap());
        store
            .conn
            .execute(
                "UPDATE runs SET heartbeat = ?1 WHERE hash = 'a'",
                [now() - 600.0],
            )
            .unwrap();
        let r = store
            .claim_next(None, "new", "cuda:0", 60.0)
            .unwrap()
            .unwrap();
        assert_eq!(r.hash, "a");
        assert_eq!(r.attempts, 2);
        assert_eq!(r.claimed_by.as_deref(), Some("new"));
        // b's heartbeat is fresh: not claimable.
        assert!(store
            .claim_next(None, "new", "cpu", 60.0)
            .unwrap()
            .is_none());
        assert!(!store.claim("b", "new", "cpu", 60.0).unwrap());
        // The dead worker's heartbeat now reports the lost claim.
        let err = store.heartbeat("a", "dead").unwrap_err();
        assert!(
            err.to_string()
                .ends_with("run a is claimed by worker new, not dead"),
            "{err}"
        );
    }

    #[test]
    fn finish_after_losing_the_claim_writes_nothing() {
        let db = TempDb::new("lost");
        let mut store = Store::open(&db.0).unwrap();
        store.register(&exp("e"), &[new_run("a", &[])]).unwrap();
        assert!(store.claim("a", "w1", "cpu", 60.0).unwrap());
        store
            .conn
            .execute("UPDATE runs SET heartbeat = 0 WHERE hash = 'a'", [])
            .unwrap();
        assert!(store.claim("a", "w2", "cpu", 60.0).unwrap());
        let err = store.finish("a", "w1", &sample_result()).unwrap_err();
        match &err {
            StoreError::LostClaim {
                claimed_by, status, ..
            } => {
                assert_eq!(claimed_by.as_deref(), Some("w2"));
                assert_eq!(*status, RunStatus::Running);
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains(&db.0.display().to_string()));
        let run = store.run("a").unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(run.claimed_by.as_deref(), Some("w2"));
        for table in [
            "epochs",
            "metrics",
            "profiles",
            "attention",
            "pruning",
            "artefacts",
        ] {
            let n: i64 = store
                .conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table}");
        }
        assert!(store.fail("a", "w1", "x").is_err());
        assert!(store.release("a", "w1").is_err());
        assert_eq!(status(&store, "a"), RunStatus::Running);
        // The holder can release (Ctrl-C) and the run is pending again.
        store.release("a", "w2").unwrap();
        let run = store.run("a").unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Pending);
        assert_eq!(run.claimed_by, None);
        // Finishing a done run is also a lost claim.
        assert!(store.claim("a", "w3", "cpu", 60.0).unwrap());
        store.finish("a", "w3", &RunResult::default()).unwrap();
        let err = store.finish("a", "w3", &sample_result()).unwrap_err();
        assert!(err.to_string().contains("run a is done"), "{err}");
        assert_eq!(store.result("a").unwrap(), Some(RunResult::default()));
    }

    #[test]
    fn concurrent_workers_claim_each_run_exactly_once() {
        let db = TempDb::new("concurrent");
        let n = 40;
        // Open concurrently on a fresh file: schema creation must not race.
        let opened: Vec<Store> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| Store::open(&db.0))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        drop(opened);
        {
            let mut store = Store::open(&db.0).unwrap();
            let runs: Vec<NewRun> = (0..n).map(|i| new_run(&format!("r{i:02}"), &[])).collect();
            store.register(&exp("e"), &runs).unwrap();
        }
        let claimed: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|w| {
                    let path = db.0.clone();
                    s.spawn(move || {
                        let worker = format!("worker{w}");
                        let mut store = Store::open(&path).unwrap();
                        let mut mine = Vec::new();
                        while let Some(run) =
                            store.claim_next(None, &worker, "cpu", 3600.0).unwrap()
                        {
                            assert_eq!(run.claimed_by.as_deref(), Some(worker.as_str()));
                            store.heartbeat(&run.hash, &worker).unwrap();
                            store.finish(&run.hash, &worker, &sample_result()).unwrap();
                            mine.push(run.hash);
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<String> = claimed.concat();
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!(total, n, "each run claimed once: {claimed:?}");
        assert_eq!(all.len(), n, "no duplicates");
        let store = Store::open(&db.0).unwrap();
        assert!(store
            .runs(None)
            .unwrap()
            .iter()
            .all(|r| r.status == RunStatus::Done && r.attempts == 1));
    }
}
