//! What can go wrong with the store; every message starts with the store's path.

use std::path::{Path, PathBuf};

use super::types::RunStatus;

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

pub(super) fn lost_claim(
    hash: &str,
    worker: &str,
    status: RunStatus,
    claimed_by: Option<&str>,
) -> String {
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
pub(super) trait Ctx<T> {
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
