//! The other side of a report diff (`stkd report FILE --against REF`): a set of finished runs
//! taken from a git revision's committed records, a folder of records or a store file, joined
//! with an experiment's plan as [`super::collect`] joins a store.
//!
//! Runs are matched by hash first, then by configuration with the teacher's and base's hashes
//! left out (a change of `CODE_VERSION` changes every hash but not what was run), so a diff
//! across a code version still pairs each run with its earlier self.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::exec::{RunReport, OUTCOME_FILE};
use crate::experiment::RunConfig;
use crate::plan::Plan;
use crate::store::{RunResult, RunStatus, Store};

use super::collect::{ReportData, RunEntry, RunState};
use super::ReportError;

/// Where the earlier results come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A git revision of the repository holding the store's `records/` folder.
    Git(String),
    /// A folder of records (`records/` itself or a folder holding one).
    Records(PathBuf),
    /// A store file.
    Store(PathBuf),
}

impl Reference {
    /// An existing file is a store, an existing folder holds records, anything else must be a
    /// git revision (checked when it is read).
    pub fn parse(arg: &str) -> Reference {
        let p = Path::new(arg);
        if p.is_file() {
            Reference::Store(p.to_path_buf())
        } else if p.is_dir() {
            Reference::Records(p.to_path_buf())
        } else {
            Reference::Git(arg.to_string())
        }
    }

    /// How reports name it: `git HEAD~1 (0123456789ab)`, a path.
    pub fn describe(&self, resolved: &str) -> String {
        match self {
            Reference::Git(rev) if rev.starts_with(resolved) => format!("git {rev}"),
            Reference::Git(rev) => format!("git {rev} ({resolved})"),
            Reference::Records(p) | Reference::Store(p) => p.display().to_string(),
        }
    }
}

/// A finished run of a result set.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    pub hash: String,
    pub config: RunConfig,
    pub result: RunResult,
    pub device: Option<String>,
    pub finished: Option<f64>,
    /// The commit of the code that computed it (empty when unknown).
    pub code_commit: String,
}

/// Finished runs, whatever their experiment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultSet {
    pub runs: Vec<PastRun>,
}

/// A configuration without the hashes of the runs it depends on.
fn config_key(c: &RunConfig) -> String {
    let mut c = c.clone();
    c.teacher = None;
    c.base = None;
    serde_json::to_string(&c).expect("RunConfig serialises")
}

impl ResultSet {
    fn from_outcome(report: RunReport, hash: &str, finished: Option<f64>) -> PastRun {
        PastRun {
            hash: hash.to_string(),
            result: report.to_store_result(&format!("{}/{hash}", crate::archive::RUNS)),
            device: Some(report.device.to_string()),
            config: report.config,
            finished,
            code_commit: report.code_commit,
        }
    }

    /// The finished runs of a store.
    pub fn from_store(store: &Store) -> Result<ResultSet, ReportError> {
        let mut runs = Vec::new();
        for row in store.runs(None)? {
            if row.status != RunStatus::Done {
                continue;
            }
            let Ok(config) = serde_json::from_str::<RunConfig>(&row.config_json) else {
                continue; // written by another code version's schema: nothing to compare
            };
            if let Some(result) = store.result(&row.hash)? {
                let code_commit =
                    crate::archive::code_commit(store.path(), &row.hash).unwrap_or_default();
                runs.push(PastRun {
                    hash: row.hash,
                    config,
                    result,
                    device: row.device,
                    finished: row.finished,
                    code_commit,
                });
            }
        }
        Ok(ResultSet { runs })
    }

    /// The finished records of a folder (`records/` or a folder holding one).
    pub fn from_records(dir: &Path) -> Result<ResultSet, ReportError> {
        let dir = if dir.join(crate::archive::RECORDS).is_dir() {
            dir.join(crate::archive::RECORDS)
        } else {
            dir.to_path_buf()
        };
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|cause| ReportError::Io {
                path: dir.clone(),
                cause,
            })?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut runs = Vec::new();
        for hash in names {
            let folder = dir.join(&hash);
            if let Some(report) = read_outcome_file(&folder) {
                let finished = std::fs::read(folder.join("stored.json"))
                    .ok()
                    .and_then(|t| finished_of(&t));
                runs.push(Self::from_outcome(report, &hash, finished));
            }
        }
        Ok(ResultSet { runs })
    }

    /// The records committed at git revision `rev` in the `records/` folder next to `store`;
    /// also returns the revision's commit (12 hex digits).
    pub fn from_git(rev: &str, store: &Path) -> Result<(ResultSet, String), ReportError> {
        let folder = store
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let commit = git(
            folder,
            &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
        )
        .map_err(|detail| ReportError::Against {
            reference: rev.to_string(),
            detail: format!(
                "not a file, a folder or a git revision of the repository holding {} ({detail})",
                folder.display()
            ),
        })?;
        let commit: String = commit.trim().chars().take(12).collect();
        let list = git(
            folder,
            &[
                "ls-tree",
                "-r",
                "--name-only",
                &commit,
                "--",
                crate::archive::RECORDS,
            ],
        )
        .map_err(|detail| ReportError::Against {
            reference: rev.to_string(),
            detail,
        })?;
        let mut runs = Vec::new();
        for path in list.lines().filter(|l| l.ends_with("/outcome.json")) {
            let Some(hash) = Path::new(path)
                .parent()
                .and_then(Path::file_name)
                .map(|h| h.to_string_lossy().into_owned())
            else {
                continue;
            };
            let Ok(text) = git(folder, &["show", &format!("{commit}:./{path}")]) else {
                continue;
            };
            let Ok(report) = serde_json::from_str::<RunReport>(&text) else {
                continue; // another schema: nothing to compare
            };
            let stored = path.replace("/outcome.json", "/stored.json");
            let finished = git(folder, &["show", &format!("{commit}:./{stored}")])
                .ok()
                .and_then(|t| finished_of(t.as_bytes()));
            runs.push(Self::from_outcome(report, &hash, finished));
        }
        Ok((ResultSet { runs }, commit))
    }

    /// Adds the runs of `other` this set does not have (by hash).
    pub fn extend_missing(&mut self, other: ResultSet) {
        for r in other.runs {
            if !self.runs.iter().any(|x| x.hash == r.hash) {
                self.runs.push(r);
            }
        }
    }

    /// The run that stands for a planned run: the one with its hash, else the latest finished
    /// one with its configuration (dependencies' hashes aside).
    pub fn find(&self, hash: &str, config: &RunConfig) -> Option<&PastRun> {
        if let Some(r) = self.runs.iter().find(|r| r.hash == hash) {
            return Some(r);
        }
        let key = config_key(config);
        self.runs
            .iter()
            .filter(|r| config_key(&r.config) == key)
            .max_by(|a, b| {
                let t = |r: &PastRun| r.finished.unwrap_or(f64::NEG_INFINITY);
                t(a).total_cmp(&t(b)).then_with(|| b.hash.cmp(&a.hash))
            })
    }

    /// `plan`'s runs joined with this set, as [`super::collect`] joins a store: a run found here
    /// is done (with the found run's hash); others are `not started`. Also returns the code
    /// commit of each found run, by hash.
    pub fn join(
        &self,
        plan: &Plan,
        name: &str,
        description: &str,
        file: &str,
    ) -> (ReportData, BTreeMap<String, String>) {
        let mut commits = BTreeMap::new();
        let runs = plan
            .jobs
            .iter()
            .map(|job| {
                let mut e = RunEntry::planned(
                    &job.hash,
                    &job.label,
                    &job.variant,
                    job.config.clone(),
                    job.deps.clone(),
                );
                if let Some(r) = self.find(&job.hash, &job.config) {
                    e.hash = r.hash.clone();
                    e.state = RunState::Done;
                    e.device = r.device.clone();
                    e.finished = r.finished;
                    e.result = Some(r.result.clone());
                    e.code_commit = Some(r.code_commit.clone()).filter(|c| !c.is_empty());
                    commits.insert(r.hash.clone(), r.code_commit.clone());
                }
                e
            })
            .collect();
        let data = ReportData {
            name: name.to_string(),
            description: description.to_string(),
            file: file.to_string(),
            runs,
        };
        (data, commits)
    }
}

fn finished_of(stored_json: &[u8]) -> Option<f64> {
    serde_json::from_slice::<serde_json::Value>(stored_json)
        .ok()?
        .get("finished")?
        .as_f64()
}

fn read_outcome_file(folder: &Path) -> Option<RunReport> {
    let text = std::fs::read(folder.join(OUTCOME_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// `git -C folder args…`'s standard output, or why it failed.
pub fn git(folder: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(folder)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
