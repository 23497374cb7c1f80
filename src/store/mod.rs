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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, Transaction,
    TransactionBehavior,
};

/// Where the store lives unless `--store PATH` says otherwise.
pub const DEFAULT_PATH: &str = "results/stkd.db";

/// How long a statement waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema version this code writes (the number of migrations).
pub const SCHEMA_VERSION: i64 = sql::MIGRATIONS.len() as i64;

pub mod sql;

mod error;
mod results;
mod types;

use error::Ctx;
pub use error::StoreError;
use results::{insert_epoch, read_result, write_result};
pub use types::{
    faults_error, AfterFault, Attention, EpochRow, ExperimentInfo, ExperimentRow, FaultRow,
    MetricRow, NewRun, ParseRunStatusError, Profile, Pruning, RunResult, RunRow, RunStatus,
    TrialRow,
};

/// The oldest schema version read-only commands read: version 3 lacks only the faults of
/// version 4 and reads as a store where no run had one.
pub const OLDEST_READABLE_VERSION: i64 = 3;

/// Infrastructure faults of a run retried by default before it fails ([`Store::set_retries`]).
pub const DEFAULT_RETRIES: u32 = 2;

/// An open store (one SQLite connection). Open one per thread or process.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The file's schema version ([`SCHEMA_VERSION`] unless opened read-only).
    version: i64,
    /// Infrastructure faults of a run retried before it fails (see [`Store::fault`]).
    retries: u32,
    /// A read-only open's lock that keeps writers from checkpointing into the file while it is
    /// read as `immutable` (see [`Store::open_read_only`]); dropped after the connection.
    _guard: Option<std::fs::File>,
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
        job: row.get(12)?,
    })
}

fn fill_deps(conn: &Connection, run: &mut RunRow) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql::DEPS_OF)?;
    run.deps = stmt
        .query_map([&run.hash], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(())
}

fn read_faults(conn: &Connection, hash: &str) -> rusqlite::Result<Vec<FaultRow>> {
    let mut stmt = conn.prepare_cached(sql::FAULTS_OF)?;
    let rows = stmt.query_map([hash], |r| {
        Ok(FaultRow {
            attempt: r.get(0)?,
            at: r.get(1)?,
            cause: r.get(2)?,
        })
    })?;
    rows.collect()
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
    match e.sqlite_error_code() {
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
            "cannot write to the store (the file or its folder is read-only; read-only commands \
             such as `stkd status` still work)"
        }
        Some(ErrorCode::CannotOpen) => {
            "cannot open the store (is the file or its folder read-only, or not accessible to \
             this user?)"
        }
        Some(ErrorCode::NotADatabase) => "cannot read the store: it is not an SQLite file",
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
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::PermissionDenied
                | ErrorCode::SystemIoFailure
        )
    )
}

/// `path` with `suffix` appended to its file name (SQLite's `-wal` and `-shm` files).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Where SQLite's unix VFS locks a database file: readers hold a shared lock on the 510 bytes
/// from `PENDING_BYTE + 2`; a writer that closes the store last takes them exclusively before it
/// checkpoints its WAL into the file and deletes the WAL.
const SQLITE_SHARED_FIRST: i64 = 0x4000_0000 + 2;
const SQLITE_SHARED_SIZE: i64 = 510;

/// How long a read-only open waits for a writer's exclusive lock (its closing checkpoint, a
/// moment) before it reads through the WAL instead.
const READERS_LOCK_WAIT: Duration = Duration::from_secs(5);

/// A shared lock on SQLite's readers' bytes of `path`, as a reader connection holds it, kept
/// until the returned file is dropped: while held, no writer checkpoints into the file on
/// closing. An open-file-description lock, so that it neither replaces nor releases the locks
/// that SQLite connections of this process hold. `None` where it cannot be taken.
#[cfg(target_os = "linux")]
fn hold_readers_lock(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::io::AsRawFd;
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: a plain C struct, for which all-zero bytes are a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_RDLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = SQLITE_SHARED_FIRST as libc::off_t;
    lock.l_len = SQLITE_SHARED_SIZE as libc::off_t;
    let deadline = std::time::Instant::now() + READERS_LOCK_WAIT;
    loop {
        // SAFETY: fcntl reads `lock`, which outlives the call, for a descriptor `file` keeps open.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) } == 0 {
            return Some(file);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES | libc::EINTR)
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => return None,
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn hold_readers_lock(_path: &Path) -> Option<std::fs::File> {
    None
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
            version: SCHEMA_VERSION,
            retries: DEFAULT_RETRIES,
            _guard: None,
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
    /// Nothing is created beside the file either. SQLite reads a WAL-mode file through a `-wal`
    /// and a shared-memory `-shm` file beside it, and a reader that finds none creates both and
    /// leaves them (only a writer removes them). So when no writer has the store open (no
    /// `-wal` file), the file is read as `immutable` under the shared lock that SQLite's readers
    /// take, which keeps a writer that opens it meanwhile from checkpointing into it; while a
    /// writer has it open, through the writer's files. Where the `-shm` file neither exists nor
    /// can be created (a read-only folder), the store is read as `immutable` too, which is exact
    /// because then no process can be writing to it. A store of schema version
    /// [`OLDEST_READABLE_VERSION`] or newer is read.
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
        let open_immutable = || {
            let uri = immutable_uri(path);
            Connection::open_with_flags(&uri, plain | OpenFlags::SQLITE_OPEN_URI)
                .and_then(|c| probe(&c).map(|v| (c, v)))
        };
        let read_failure = |cause: rusqlite::Error| StoreError::Sqlite {
            path: path.to_path_buf(),
            context: open_failure(&cause, "cannot read the store").to_string(),
            cause,
        };
        // No writer has the store open when there is no `-wal` file beside it (a writer keeps
        // one while it has the store open; the last to close removes it), and the readers' lock
        // keeps a writer that opens it meanwhile from checkpointing into the file until this
        // store is dropped: the file is read as it is, as `immutable`, and nothing (no `-wal`,
        // no `-shm`) is created beside it. A writer that opens the store meanwhile writes to
        // its `-wal` file, which this read does not see: it reads the store as it was.
        let guard = hold_readers_lock(path).filter(|_| !sidecar(path, "-wal").exists());
        let (conn, (version, tables)) = if guard.is_some() {
            open_immutable().map_err(read_failure)?
        } else {
            // A writer has (or had, if it crashed) the store open: read through its WAL.
            let first =
                Connection::open_with_flags(path, plain).and_then(|c| probe(&c).map(|v| (c, v)));
            match first {
                Ok(x) => x,
                Err(e) if can_retry_immutable(&e) => {
                    open_immutable().map_err(|_| e).map_err(read_failure)?
                }
                Err(cause) => return Err(read_failure(cause)),
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
            v if v < OLDEST_READABLE_VERSION => Err(StoreError::TooOld {
                path,
                found: v,
                known: SCHEMA_VERSION,
            }),
            version => {
                conn.busy_timeout(BUSY_TIMEOUT)
                    .ctx(&path, "cannot read the store")?;
                Ok(Some(Store {
                    conn,
                    path,
                    version,
                    retries: DEFAULT_RETRIES,
                    _guard: guard,
                }))
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
            let what = format!("migrating the schema to version {}", i + 1);
            tx.execute_batch(migration).ctx(&path, &what)?;
            if migration.contains(sql::SCHEMA_TEXT_EDIT) {
                let v: i64 = tx
                    .query_row("PRAGMA schema_version", [], |r| r.get(0))
                    .ctx(&path, &what)?;
                tx.pragma_update(None, "schema_version", v + 1)
                    .ctx(&path, &what)?;
            }
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
    /// older than `stale_after_s` seconds (an interrupted attempt: recorded as an
    /// infrastructure fault, and a run with more faults than [`Store::set_retries`] allows is
    /// failed instead, its dependants skipped, and the next runnable run claimed). The run becomes running,
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
        let limit = self.retries;
        let tx = self.begin()?;
        let t = now();
        let hash = loop {
            let hash: Option<String> = tx
                .query_row(
                    sql::CLAIMABLE,
                    params![filter.clone(), t - stale_after_s],
                    |r| r.get(0),
                )
                .optional()
                .ctx(p, ctx)?;
            let Some(hash) = hash else {
                // Keeps the runs given up below failed.
                tx.commit().ctx(p, ctx)?;
                return Ok(None);
            };
            let run = read_run(&tx, &hash).ctx(p, ctx)?.expect("claimable run");
            if run.status != RunStatus::Running {
                break hash;
            }
            // An attempt whose heartbeat went stale: its worker, or its machine, stopped.
            let cause = format!(
                "heartbeat lost: worker {} on {} last sent one {:.0} s before (its process or \
                 machine stopped)",
                run.claimed_by.as_deref().unwrap_or("?"),
                run.device.as_deref().unwrap_or("?"),
                t - run.heartbeat.unwrap_or(0.0)
            );
            tx.execute(sql::INSERT_FAULT, params![hash, t, cause])
                .ctx(p, ctx)?;
            let faults = read_faults(&tx, &hash).ctx(p, ctx)?;
            if faults.len() <= limit as usize {
                break hash;
            }
            let error = faults_error(&faults, limit);
            tx.execute(sql::FAIL_STALE, params![hash, error, t, worker])
                .ctx(p, ctx)?;
            propagate_skips(&tx, p)?;
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
        self.fail_at(hash, worker, error, now())
    }

    /// [`Store::fail`] with the time it failed (unix seconds): a recorded failure taken back.
    pub fn fail_at(
        &mut self,
        hash: &str,
        worker: &str,
        error: &str,
        finished: f64,
    ) -> Result<Vec<String>, StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "recording a failed run";
        let tx = self.begin()?;
        check_claim(&tx, p, hash, worker)?;
        tx.execute(sql::FAIL, params![hash, error, finished])
            .ctx(p, ctx)?;
        let skipped = propagate_skips(&tx, p)?;
        tx.commit().ctx(p, ctx)?;
        Ok(skipped)
    }

    /// How many infrastructure faults of a run are retried before it fails (default
    /// [`DEFAULT_RETRIES`]): [`Store::fault`], and the stale claims of [`Store::claim_next`].
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    /// Records an infrastructure fault that ended the claimed attempt of `hash` (`cause`: what
    /// happened, e.g. its process killed by a signal). Within the limit of
    /// [`Store::set_retries`] the run goes back to pending (it resumes from its checkpoint);
    /// past it, it fails with every fault's cause listed and its dependants are skipped. Only
    /// while `worker` holds the claim.
    pub fn fault(
        &mut self,
        hash: &str,
        worker: &str,
        cause: &str,
    ) -> Result<AfterFault, StoreError> {
        let limit = self.retries;
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "recording an infrastructure fault";
        let tx = self.begin()?;
        check_claim(&tx, p, hash, worker)?;
        let t = now();
        tx.execute(sql::INSERT_FAULT, params![hash, t, cause])
            .ctx(p, ctx)?;
        let faults = read_faults(&tx, hash).ctx(p, ctx)?;
        let after = if faults.len() <= limit as usize {
            tx.execute(sql::RELEASE, [hash]).ctx(p, ctx)?;
            AfterFault::Retried {
                fault: faults.len(),
                limit,
            }
        } else {
            let error = faults_error(&faults, limit);
            tx.execute(sql::FAIL, params![hash, error, t]).ctx(p, ctx)?;
            propagate_skips(&tx, p)?;
            AfterFault::Failed { error }
        };
        tx.commit().ctx(p, ctx)?;
        Ok(after)
    }

    /// The infrastructure faults recorded for `hash` since it was last re-queued by
    /// [`Store::retry_failed`], in order (none in a store older than schema version 4).
    pub fn faults(&self, hash: &str) -> Result<Vec<FaultRow>, StoreError> {
        if self.version < 4 {
            return Ok(Vec::new());
        }
        read_faults(&self.conn, hash).ctx(&self.path, "reading a run's faults")
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

    /// Puts a claimed run whose attempt never started (its cluster job refused by `sbatch`, its
    /// process not started) back to pending, and takes back the attempt its claim counted. Only
    /// while `worker` holds the claim.
    pub fn release_unstarted(&mut self, hash: &str, worker: &str) -> Result<(), StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "releasing a run that did not start";
        let tx = self.begin()?;
        check_claim(&tx, p, hash, worker)?;
        tx.execute(sql::RELEASE, [hash]).ctx(p, ctx)?;
        tx.execute(sql::UNCOUNT_ATTEMPT, [hash]).ctx(p, ctx)?;
        tx.commit().ctx(p, ctx)
    }

    /// Puts failed and skipped runs among `hashes` (all if `None`) back to pending, errors and
    /// infrastructure faults cleared (a fresh limit of retries). A re-queued run whose dependency is still failed or skipped (not re-queued) is
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
        for hash in &requeued {
            tx.execute(sql::CLEAR_FAULTS, [hash]).ctx(p, ctx)?;
        }
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

    /// Records study `key` of `experiment` (its settings as JSON); idempotent.
    pub fn register_study(
        &mut self,
        key: &str,
        experiment: &str,
        spec_json: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(sql::UPSERT_STUDY, params![key, experiment, spec_json])
            .ctx(&self.path, "registering a study")?;
        Ok(())
    }

    /// Adds trial `number` of `study` as run `run` of `experiment` (pending, with its
    /// dependencies) if the study has `number − 1` trials and `number` is within `budget`: one
    /// transaction, so two sweeps on one store number their trials without gaps or repeats
    /// (the one that lost the race proposes again from the trials it now sees). `values_json`
    /// are the trial's values. `false` when the trial was not added.
    pub fn add_trial(
        &mut self,
        study: &str,
        number: usize,
        budget: usize,
        experiment: &str,
        run: &NewRun,
        values_json: &str,
    ) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "adding a trial";
        let tx = self.begin()?;
        let count: i64 = tx
            .query_row(sql::COUNT_TRIALS, [study], |r| r.get(0))
            .ctx(p, ctx)?;
        if count as usize + 1 != number || number > budget {
            return Ok(false);
        }
        let id: i64 = tx
            .query_row(sql::EXPERIMENT_ID, [experiment], |r| r.get(0))
            .ctx(p, ctx)?;
        let position: i64 = tx
            .query_row(sql::NEXT_POSITION, [id], |r| r.get(0))
            .ctx(p, ctx)?;
        tx.execute(
            sql::INSERT_RUN,
            params![run.hash, run.label, run.dataset, run.config_json, now()],
        )
        .ctx(p, ctx)?;
        tx.execute(sql::LINK_RUN, params![id, run.hash, position])
            .ctx(p, ctx)?;
        for dep in &run.deps {
            tx.execute(sql::INSERT_DEP, params![run.hash, dep])
                .ctx(p, ctx)?;
        }
        tx.execute(
            sql::INSERT_TRIAL,
            params![study, number as i64, run.hash, values_json],
        )
        .ctx(p, ctx)?;
        propagate_skips(&tx, p)?;
        tx.commit().ctx(p, ctx)?;
        Ok(true)
    }

    /// The trials of `study` in order.
    pub fn trials(&self, study: &str) -> Result<Vec<TrialRow>, StoreError> {
        let ctx = "listing a study's trials";
        let mut stmt = self.conn.prepare_cached(sql::TRIALS).ctx(&self.path, ctx)?;
        let rows = stmt
            .query_map([study], |r| {
                Ok(TrialRow {
                    number: r.get::<_, i64>(0)? as usize,
                    hash: r.get(1)?,
                    values_json: r.get(2)?,
                    status: r.get(3)?,
                })
            })
            .ctx(&self.path, ctx)?;
        rows.collect::<rusqlite::Result<_>>().ctx(&self.path, ctx)
    }

    /// The study run `hash` is a trial of (its key and settings as JSON), if any.
    pub fn study_of(&self, hash: &str) -> Result<Option<(String, String)>, StoreError> {
        self.conn
            .query_row(sql::STUDY_OF, [hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .ctx(&self.path, "reading a trial's study")
    }

    /// The validation MAE of every recorded epoch of `hash` (finished, pruned, or live).
    pub fn val_curve(&self, hash: &str) -> Result<Vec<f64>, StoreError> {
        let ctx = "reading a validation curve";
        let mut stmt = self
            .conn
            .prepare_cached(sql::VAL_CURVE)
            .ctx(&self.path, ctx)?;
        let rows = stmt
            .query_map([hash], |r| real(r, 0))
            .ctx(&self.path, ctx)?;
        rows.collect::<rusqlite::Result<_>>().ctx(&self.path, ctx)
    }

    /// Records the cluster job executing `hash`'s attempt (only while `worker` holds the claim).
    pub fn set_job(&mut self, hash: &str, worker: &str, job: &str) -> Result<(), StoreError> {
        let changed = self
            .conn
            .execute(sql::SET_JOB, params![hash, worker, job])
            .ctx(&self.path, "recording a run's job")?;
        if changed == 0 {
            check_claim(&self.conn, &self.path, hash, worker)?;
        }
        Ok(())
    }

    /// Every recorded epoch of `hash` (finished, pruned, or live), in order.
    pub fn epochs(&self, hash: &str) -> Result<Vec<EpochRow>, StoreError> {
        results::read_epochs(&self.conn, hash).ctx(&self.path, "reading a run's epochs")
    }

    /// Marks `hash` pruned (stopped early by its search's pruner) with its `curve`, in one
    /// transaction. Only while `worker` holds the claim.
    pub fn prune(
        &mut self,
        hash: &str,
        worker: &str,
        curve: &[EpochRow],
        train_seconds: f64,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let ctx = "recording a pruned trial";
        let tx = self.begin()?;
        check_claim(&tx, p, hash, worker)?;
        tx.execute(sql::CLEAR_EPOCHS, [hash]).ctx(p, ctx)?;
        for e in curve {
            insert_epoch(&tx, hash, e).ctx(p, ctx)?;
        }
        let best = curve
            .iter()
            .min_by(|a, b| a.val_mae.total_cmp(&b.val_mae))
            .map(|e| e.epoch);
        tx.execute(sql::PRUNED, params![hash, best, train_seconds, now()])
            .ctx(p, ctx)?;
        tx.commit().ctx(p, ctx)
    }

    /// What [`Store::finish`] wrote for `hash`; `None` unless the run is done.
    pub fn result(&self, hash: &str) -> Result<Option<RunResult>, StoreError> {
        read_result(&self.conn, hash).ctx(&self.path, "reading a run's result")
    }
}

#[cfg(test)]
mod tests;
