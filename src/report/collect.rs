//! What a report is made of: every planned run of the experiment file (resolved through the
//! planner, so its hash is the one a sweep would use) joined with what the store knows about it.
//! Runs that the store does not have, or has not finished, stay in the list with their state.

use std::fmt;

use crate::experiment::{Experiment, RunConfig};
use crate::plan::Plan;
use crate::store::{RunResult, RunStatus, Store, StoreError};

/// Where a planned run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunState {
    Done,
    Running,
    Pending,
    Failed,
    Skipped,
    /// Stopped early by a search's pruner.
    Pruned,
    /// Not in the store: the experiment has not been swept (with this data and code version).
    NotRegistered,
}

impl RunState {
    /// Every state, in the order reports list them.
    pub const ALL: [RunState; 7] = [
        RunState::Done,
        RunState::Running,
        RunState::Pending,
        RunState::Failed,
        RunState::Skipped,
        RunState::Pruned,
        RunState::NotRegistered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Done => "done",
            RunState::Running => "running",
            RunState::Pending => "pending",
            RunState::Failed => "failed",
            RunState::Skipped => "skipped",
            RunState::Pruned => "pruned",
            RunState::NotRegistered => "not started",
        }
    }

    /// A failed or skipped run: a sweep keeps it as it is (it is not run again) unless asked
    /// to with `--retry-failed`.
    pub fn is_kept(self) -> bool {
        matches!(self, RunState::Failed | RunState::Skipped)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<RunStatus> for RunState {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Done => RunState::Done,
            RunStatus::Running => RunState::Running,
            RunStatus::Pending => RunState::Pending,
            RunStatus::Failed => RunState::Failed,
            RunStatus::Skipped => RunState::Skipped,
            RunStatus::Pruned => RunState::Pruned,
        }
    }
}

/// One planned run and what the store holds for it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub hash: String,
    /// The run's label in the experiment file.
    pub label: String,
    /// Grid/random/seed values of this variant, e.g. `alpha1=0.1000 seed=2` (may be empty).
    pub variant: String,
    pub config: RunConfig,
    /// Hashes of the runs it needs (its teacher).
    pub deps: Vec<String>,
    pub state: RunState,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// Device of the latest attempt.
    pub device: Option<String>,
    /// Unix seconds when it became done or failed.
    pub finished: Option<f64>,
    /// Everything a done run stored.
    pub result: Option<RunResult>,
    /// Its test time re-timed alone (`stkd retime`, [`crate::latency`]), if it was.
    pub latency: Option<crate::latency::Latency>,
    /// The commit of the code that computed a done run, as its outcome records it.
    pub code_commit: Option<String>,
}

impl RunEntry {
    /// A planned run the store does not know.
    pub fn planned(
        hash: &str,
        label: &str,
        variant: &str,
        config: RunConfig,
        deps: Vec<String>,
    ) -> Self {
        RunEntry {
            hash: hash.to_string(),
            label: label.to_string(),
            variant: variant.to_string(),
            config,
            deps,
            state: RunState::NotRegistered,
            error: None,
            device: None,
            finished: None,
            result: None,
            latency: None,
            code_commit: None,
        }
    }

    /// `label dataset [variant]`, as the CLI names runs.
    pub fn display_name(&self) -> String {
        if self.variant.is_empty() {
            format!("{} {}", self.label, self.config.dataset)
        } else {
            format!("{} {} [{}]", self.label, self.config.dataset, self.variant)
        }
    }

    /// The variant without its `seed=N` part: runs that differ only by seed share it.
    pub fn variant_without_seed(&self) -> String {
        self.variant
            .split_whitespace()
            .filter(|t| !t.starts_with("seed="))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn seed(&self) -> u64 {
        self.config.train.seed
    }

    /// The re-timed test time of a done run.
    pub fn latency(&self) -> Option<&crate::latency::Latency> {
        self.done().and(self.latency.as_ref())
    }

    /// The stored result of a done run.
    pub fn done(&self) -> Option<&RunResult> {
        match self.state {
            RunState::Done => self.result.as_ref(),
            _ => None,
        }
    }
}

/// Everything a report is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    /// The experiment's `name` (`table4`, `quickstart`, …).
    pub name: String,
    pub description: String,
    /// The experiment file as given on the command line.
    pub file: String,
    /// Every planned run, in plan order (teachers first, as the file lists them).
    pub runs: Vec<RunEntry>,
}

impl ReportData {
    pub fn run(&self, hash: &str) -> Option<&RunEntry> {
        self.runs.iter().find(|r| r.hash == hash)
    }

    /// Tests: every run of the experiment `yaml` planned (data checksums made up), none run.
    #[cfg(test)]
    pub fn planned_for_tests(yaml: &str) -> ReportData {
        let exp =
            crate::experiment::parse_experiment(yaml, std::path::Path::new("t.yaml")).unwrap();
        let p = crate::plan::plan(&exp, |d| Ok::<_, ()>(format!("sum-{d}"))).unwrap();
        let runs = p
            .jobs
            .iter()
            .map(|j| {
                RunEntry::planned(
                    &j.hash,
                    &j.label,
                    &j.variant,
                    j.config.clone(),
                    j.deps.clone(),
                )
            })
            .collect();
        ReportData {
            name: exp.name.clone(),
            description: String::new(),
            file: "t.yaml".into(),
            runs,
        }
    }
}

/// What a report is built from: [`collect_store`], and each done run given what its files
/// beside the store hold ([`attach_run_files`]).
pub fn collect(
    exp: &Experiment,
    plan: &Plan,
    store: Option<&Store>,
) -> Result<ReportData, StoreError> {
    let mut data = collect_store(exp, plan, store)?;
    if let Some(s) = store {
        attach_run_files(&mut data, s.path());
    }
    Ok(data)
}

/// Joins the plan of `exp` with the store alone (`None`: no store yet, every run is not
/// started): what `status` and a sweep's closing table need, no run files read.
pub fn collect_store(
    exp: &Experiment,
    plan: &Plan,
    store: Option<&Store>,
) -> Result<ReportData, StoreError> {
    let mut runs = Vec::with_capacity(plan.jobs.len());
    for job in &plan.jobs {
        let mut entry = RunEntry::planned(
            &job.hash,
            &job.label,
            &job.variant,
            job.config.clone(),
            job.deps.clone(),
        );
        if let Some(row) = store.map(|s| s.run(&job.hash)).transpose()?.flatten() {
            entry.state = row.status.into();
            entry.error = row.error;
            entry.device = row.device;
            entry.finished = row.finished;
            if entry.state == RunState::Done {
                entry.result = store.map(|s| s.result(&job.hash)).transpose()?.flatten();
            }
        }
        runs.push(entry);
    }
    Ok(ReportData {
        name: exp.name.clone(),
        description: exp.description.clone(),
        file: exp.file.display().to_string(),
        runs,
    })
}

/// Gives each done run of `data` what its files beside the store `store` hold (its record's,
/// else its run folder's): its re-timed test time ([`crate::latency::read`]) and the commit of
/// the code that computed it ([`crate::archive::code_commit`]).
fn attach_run_files(data: &mut ReportData, store: &std::path::Path) {
    for r in &mut data.runs {
        if r.state == RunState::Done {
            r.latency = crate::latency::read(store, &r.hash);
            r.code_commit = crate::archive::code_commit(store, &r.hash);
        }
    }
}
