//! Every SQL statement of the store.

/// Ordered schema migrations: entry *i* takes `user_version` from *i* to *i + 1*. Append new
/// versions; never edit a released one.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

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

/// Version 2: hyperparameter searches. A run may end `pruned` (stopped early by a search's
/// pruner); studies and their numbered trials. SQLite cannot alter a CHECK constraint, so the
/// status list is extended in the schema text (the documented procedure for loosening a
/// constraint that no row can violate); the migration then bumps `schema_version`
/// ([`SCHEMA_TEXT_EDIT`]).
const V2: &str = "
PRAGMA writable_schema = ON;
UPDATE sqlite_master SET sql = replace(sql, '''skipped'')', '''skipped'', ''pruned'')')
WHERE type = 'table' AND name = 'runs';
PRAGMA writable_schema = OFF;
CREATE TABLE studies (
    key        TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    spec_json  TEXT NOT NULL
);
CREATE TABLE trials (
    study       TEXT NOT NULL REFERENCES studies(key),
    number      INTEGER NOT NULL,
    run_hash    TEXT NOT NULL REFERENCES runs(hash),
    values_json TEXT NOT NULL,
    PRIMARY KEY (study, number)
);
CREATE INDEX trials_run ON trials(run_hash);
";

/// Version 3: the cluster job (e.g. a Slurm job id) that executes a run's latest attempt.
const V3: &str = "ALTER TABLE runs ADD COLUMN job TEXT;";

/// Version 4: the infrastructure faults of a run's attempts (its process killed by a signal, its
/// heartbeat lost, its cluster node failed), each retried from the run's checkpoint up to the
/// sweep's limit; `attempt` is the run's attempt that the fault ended.
const V4: &str = "
CREATE TABLE faults (
    run_hash TEXT NOT NULL REFERENCES runs(hash),
    attempt  INTEGER NOT NULL,
    at       REAL NOT NULL,
    cause    TEXT NOT NULL
);
CREATE INDEX faults_run ON faults(run_hash);
";

/// Marks a migration that edits the schema's text: after it the schema version is bumped so
/// that every connection reads the new text.
pub const SCHEMA_TEXT_EDIT: &str = "writable_schema";

pub const USER_VERSION: &str = "PRAGMA user_version";

pub const UPSERT_STUDY: &str = "
INSERT INTO studies (key, experiment, spec_json) VALUES (?1, ?2, ?3)
ON CONFLICT (key) DO UPDATE SET experiment = excluded.experiment, spec_json = excluded.spec_json";
/// ?1 hash, ?2 worker, ?3 job.
pub const SET_JOB: &str =
    "UPDATE runs SET job = ?3 WHERE hash = ?1 AND claimed_by = ?2 AND status = 'running'";
pub const COUNT_TRIALS: &str = "SELECT COUNT(*) FROM trials WHERE study = ?1";
pub const INSERT_TRIAL: &str = "
INSERT INTO trials (study, number, run_hash, values_json) VALUES (?1, ?2, ?3, ?4)";
pub const EXPERIMENT_ID: &str = "SELECT id FROM experiments WHERE name = ?1";
pub const NEXT_POSITION: &str = "
SELECT COALESCE(MAX(position), -1) + 1 FROM experiment_runs WHERE experiment_id = ?1";
pub const TRIALS: &str = "
SELECT t.number, t.run_hash, t.values_json, r.status FROM trials t JOIN runs r ON r.hash = t.run_hash
WHERE t.study = ?1 ORDER BY t.number";
pub const STUDY_OF: &str = "
SELECT s.key, s.spec_json FROM trials t JOIN studies s ON s.key = t.study
WHERE t.run_hash = ?1 ORDER BY t.number LIMIT 1";
pub const VAL_CURVE: &str = "SELECT val_mae FROM epochs WHERE run_hash = ?1 ORDER BY epoch";
/// ?1 hash, ?2 best epoch, ?3 train seconds, ?4 now.
pub const PRUNED: &str = "
UPDATE runs SET status = 'pruned', error = NULL, best_epoch = ?2, train_seconds = ?3,
                finished = ?4, heartbeat = ?4
WHERE hash = ?1";

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
pub const INSERT_DEP: &str = "INSERT OR IGNORE INTO run_deps (run_hash, dep_hash) VALUES (?1, ?2)";
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
             r.heartbeat, r.started, r.finished, r.error, r.attempts, r.job"
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
/// ?1 hash: the claim's attempt did not start.
pub const UNCOUNT_ATTEMPT: &str =
    "UPDATE runs SET attempts = attempts - 1 WHERE hash = ?1 AND attempts > 0";
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
/// ?1 hash, ?2 now, ?3 cause: a fault of the run's current attempt.
pub const INSERT_FAULT: &str = "
INSERT INTO faults (run_hash, attempt, at, cause) SELECT hash, attempts, ?2, ?3 FROM runs WHERE hash = ?1";
pub const FAULTS_OF: &str =
    "SELECT attempt, at, cause FROM faults WHERE run_hash = ?1 ORDER BY rowid";
pub const CLEAR_FAULTS: &str = "DELETE FROM faults WHERE run_hash = ?1";
/// ?1 hash, ?2 error, ?3 now, ?4 the worker that gave the run up (over its limit of faults,
/// found with a lost heartbeat): its former worker no longer holds the claim.
pub const FAIL_STALE: &str = "
UPDATE runs SET status = 'failed', error = ?2, finished = ?3, heartbeat = ?3, claimed_by = ?4
WHERE hash = ?1";
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

pub const RESULT_HEAD: &str = "SELECT status, best_epoch, train_seconds FROM runs WHERE hash = ?1";
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
