//! The Slurm executor: each run the sweep claims becomes one batch job (`sbatch --parsable`)
//! whose script calls `stkd run-one --detached` on a node. The store stays with the sweep (it
//! is SQLite, whose locks a network file system does not honour); the job reports through its
//! run folder on the shared file system ([`super::worker::run_detached`]: `outcome.json` or
//! `failed.json`, a heartbeat file, its progress on stdout in Slurm's output file), and the sweep
//! records what it finds there. The job id is stored with the run.
//!
//! Dependants are submitted when their dependencies are done, by the scheduler as for local
//! runs, not with `--dependency=afterok`: the store stays the one place that decides what may
//! run, a failed dependency skips its dependants at once (Slurm would leave them pending unless
//! `kill_invalid_depend` is set), and a run finished in an earlier sweep needs no job at all.
//!
//! Faults: a job whose node failed (`NODE_FAIL`, `BOOT_FAIL`) or that was preempted without a
//! requeue (`PREEMPTED`) met an infrastructure fault: the run goes back to pending and a new job
//! resumes it from its last epoch checkpoint, up to the sweep's limit of retries (then it fails
//! with every cause listed). A job that fails by the run's own error (its `failed.json`), is
//! cancelled or times out ends with Slurm's state recorded as the run's error, not retried
//! (`--retry-failed` submits it again; it resumes from its last epoch checkpoint). A requeued job (preemption, `scontrol requeue`) is still in flight: it
//! starts again and resumes from its checkpoint. Ctrl-C on the sweep cancels its jobs. A sweep
//! that died while its jobs ran re-attaches to a job still queued or running when it (or
//! another sweep) claims the run again, instead of submitting a second one.
//!
//! A pending job's reason (`scontrol`'s `Reason`) is shown on the run's line and by `stkd
//! status`. Waiting its turn (`Priority`, `Resources`, a dependency, a limit of the user's or
//! account's running jobs: [`waits_its_turn`]) is a queue's ordinary business and has no limit;
//! any other reason (a request no node can meet, a partition's limit, the nodes it needs down or
//! drained, a held job) that lasts [`SlurmOptions::pending_limit_s`] seconds without a break
//! cancels the job and fails the run with Slurm's reason: a run that can never start does not
//! leave the sweep waiting silently. A submission that `sbatch` refuses is not an attempt: the
//! run goes back to pending as it was, and the sweep stops with `sbatch`'s message.

use std::io::{BufRead, Read, Seek};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::worker::{write_atomic, JobSpec, TrialPruner, Verdict, FAILURE, JOB_SPEC, VERDICT};
use super::{Executor, Ingested, RunEvent, RunExit, RunHandle};
use crate::archive::{beside, RUNS};
use crate::backend::DeviceSpec;
use crate::exec::RunReport;
use crate::experiment::RunConfig;
use crate::store::{EpochRow, Store};

pub use crate::experiment::SlurmOptions;

impl SlurmOptions {
    fn sbatch_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        let mut opt = |flag: &str, v: &Option<String>| {
            if let Some(v) = v {
                a.push(format!("--{flag}={v}"));
            }
        };
        opt("partition", &self.partition);
        opt("time", &self.time);
        opt("cpus-per-task", &self.cpus.map(|c| c.to_string()));
        opt("mem", &self.mem);
        opt("gres", &self.gres);
        opt("account", &self.account);
        opt("qos", &self.qos);
        a.extend(self.extra.iter().cloned());
        a
    }
}

impl SlurmExecutor {
    fn pending_limit(&self) -> Duration {
        let s = self.options.pending_limit_s;
        Duration::from_secs(s.unwrap_or(crate::experiment::DEFAULT_PENDING_LIMIT_S))
    }
}

/// Submits runs as Slurm jobs (see the module's documentation).
pub struct SlurmExecutor {
    /// The `stkd` binary the nodes run (on the shared file system, or installed alike).
    pub exe: PathBuf,
    pub store: PathBuf,
    pub data_dir: PathBuf,
    pub options: SlurmOptions,
    /// Fail a run worse than predicting the training mean ([`JobSpec::mean_check`]).
    pub mean_check: bool,
}

/// Slurm's final states of a job that something outside the run ended: retried.
const INFRASTRUCTURE_FAULTS: &[&str] = &["NODE_FAIL", "BOOT_FAIL", "PREEMPTED"];

/// Slurm's states of a job that is not over.
const IN_FLIGHT: &[&str] = &[
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
];

/// Reasons of a pending job that is waiting its turn: no limit on how long (see the module's
/// documentation). Limits on a user's, account's or QoS's jobs in all (`…Grp…`, `…PerUser`,
/// `…PerAccount`) clear as other jobs end; limits on one job (`…PerJob…`, `…MaxWall…`) do not.
pub fn waits_its_turn(reason: &str) -> bool {
    const QUEUE: &[&str] = &[
        "None",
        "Priority",
        "Resources",
        "Dependency",
        "BeginTime",
        "JobArrayTaskLimit",
        "Licenses",
        "Prolog",
        "Reservation",
        "Cleaning",
        "Scheduling",
        "PowerUpNodeNotAvail",
    ];
    // `ReqNodeNotAvail,_UnavailableNodes:n1` and the like: the reason is the first word.
    let base = reason.split([',', ' ']).next().unwrap_or(reason);
    QUEUE.contains(&base)
        || ((base.starts_with("Assoc") || base.starts_with("QOS"))
            && (base.contains("Grp") || base.ends_with("PerUser") || base.ends_with("PerAccount")))
}

/// A job as `scontrol show job -o` shows it: its state and, while it is pending, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub state: String,
    /// `Reason`, `None` when Slurm gives none (`Reason=None`).
    pub reason: Option<String>,
}

impl JobStatus {
    /// From one line of `scontrol show job <id> -o`.
    pub fn parse(line: &str) -> Option<JobStatus> {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .map(str::to_string)
        };
        Some(JobStatus {
            state: field("JobState=")?,
            reason: field("Reason=").filter(|r| r != "None" && r != "(null)"),
        })
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            Some(r) => write!(f, "{}: {r}", self.state),
            None => f.write_str(&self.state),
        }
    }
}

/// How often a job's state is asked of `scontrol`.
const POLL_EVERY: Duration = Duration::from_secs(1);

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `scontrol show job <id>`'s `JobState`, `None` when Slurm no longer knows the job.
pub fn job_state(job: &str) -> std::io::Result<Option<String>> {
    Ok(job_status(job)?.map(|s| s.state))
}

/// `scontrol show job <id>`'s `JobState` and `Reason`, `None` when Slurm no longer knows the job.
pub fn job_status(job: &str) -> std::io::Result<Option<JobStatus>> {
    let out = Command::new("scontrol")
        .args(["show", "job", job, "-o"])
        .output()?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(JobStatus::parse(&String::from_utf8_lossy(&out.stdout)))
}

fn io_other(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

impl Executor for SlurmExecutor {
    fn spawn(
        &self,
        hash: &str,
        worker: &str,
        device: DeviceSpec,
        slot: usize,
        events: mpsc::Sender<(usize, RunEvent)>,
    ) -> std::io::Result<Box<dyn RunHandle>> {
        let err = |e: crate::store::StoreError| io_other(e.to_string());
        let mut store = Store::open(&self.store).map_err(err)?;
        let row = store
            .run(hash)
            .map_err(err)?
            .ok_or_else(|| io_other(format!("run {hash} is not in the store")))?;
        let runs = absolute(&beside(&self.store, RUNS));
        let run_dir = runs.join(hash);
        std::fs::create_dir_all(&run_dir)?;
        // A trial of a search with a pruner: the sweep judges the epochs the job reports.
        let pruner =
            TrialPruner::of(&self.store, hash, worker).map_err(|e| io_other(e.to_string()))?;
        // A job of an earlier attempt still queued or running (its sweep died): attach to it.
        if let Some(job) = &row.job {
            if job_state(job)?.is_some_and(|s| IN_FLIGHT.contains(&s.as_str())) {
                store.set_job(hash, worker, job).map_err(err)?;
                let run = SlurmRun::new(job.clone(), run_dir, slot, events, pruner)
                    .pending_limit(self.pending_limit());
                return Ok(Box::new(run));
            }
        }
        let config: RunConfig =
            serde_json::from_str(&row.config_json).map_err(|e| io_other(e.to_string()))?;
        let spec = JobSpec {
            hash: hash.to_string(),
            teacher_dir: config.teacher.as_ref().map(|t| runs.join(t)),
            base_dir: config.base.as_ref().map(|b| runs.join(b)),
            config,
            data_dir: absolute(&self.data_dir),
            judged: pruner.is_some(),
            mean_check: self.mean_check,
        };
        let json = serde_json::to_string_pretty(&spec).expect("job spec serialises");
        write_atomic(&run_dir.join(JOB_SPEC), &json)?;
        let _ = std::fs::remove_file(run_dir.join(FAILURE));
        let _ = std::fs::remove_file(run_dir.join(VERDICT));
        let script = run_dir.join("job.sh");
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        let text = format!(
            "#!/bin/sh\n# stkd run {hash}, submitted by `stkd sweep` ({worker})\nexec {} run-one {hash} --detached --store {} --worker {worker} --device {device} --data-dir {}\n",
            quote(&absolute(&self.exe)),
            quote(&absolute(&self.store)),
            quote(&absolute(&self.data_dir)),
        );
        write_atomic(&script, &text)?;
        let out = Command::new("sbatch")
            .arg("--parsable")
            .arg(format!("--job-name=stkd-{}", &hash[..hash.len().min(8)]))
            .arg(format!(
                "--output={}",
                run_dir.join("slurm-%j.out").display()
            ))
            .arg("--requeue")
            .args(self.options.sbatch_args())
            .arg(&script)
            .output()?;
        if !out.status.success() {
            return Err(io_other(format!(
                "sbatch refused the job of run {hash}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let job = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        if job.is_empty() {
            return Err(io_other("sbatch printed no job id".into()));
        }
        store.set_job(hash, worker, &job).map_err(err)?;
        let run = SlurmRun::new(job, run_dir, slot, events, pruner);
        Ok(Box::new(run.pending_limit(self.pending_limit())))
    }

    fn describe(&self) -> String {
        format!("sbatch (stkd at {})", self.exe.display())
    }
}

/// How job `job`, over in Slurm's `state`, ended: `COMPLETED` is success; a node failure or a
/// preemption is an infrastructure fault (retried); any other state is the run's end.
pub(super) fn job_exit(job: &str, state: &str) -> RunExit {
    RunExit {
        code: (state == "COMPLETED").then_some(0),
        signal: None,
        detail: Some(format!("Slurm job {job} ended {state}")),
        infrastructure: INFRASTRUCTURE_FAULTS.contains(&state),
    }
}

/// A submitted job: its state from `scontrol`, its progress from Slurm's output file.
struct SlurmRun {
    job: String,
    run_dir: PathBuf,
    slot: usize,
    events: mpsc::Sender<(usize, RunEvent)>,
    /// Bytes of the output file already forwarded.
    read: u64,
    last_poll: Option<Instant>,
    tail: Vec<String>,
    cancelled: bool,
    /// The search's pruner when the run is a trial of one.
    pruner: Option<TrialPruner>,
    /// How long the job may stay pending for a reason other than its turn.
    pending_limit: Duration,
    /// The pending reason last shown, and since when the job has been pending for reasons
    /// other than its turn (without a break).
    reason: Option<String>,
    stuck_since: Option<Instant>,
}

impl SlurmRun {
    fn new(
        job: String,
        run_dir: PathBuf,
        slot: usize,
        events: mpsc::Sender<(usize, RunEvent)>,
        pruner: Option<TrialPruner>,
    ) -> Self {
        SlurmRun {
            job,
            run_dir,
            slot,
            events,
            read: 0,
            last_poll: None,
            tail: Vec::new(),
            cancelled: false,
            pruner,
            pending_limit: Duration::from_secs(crate::experiment::DEFAULT_PENDING_LIMIT_S),
            reason: None,
            stuck_since: None,
        }
    }

    fn pending_limit(mut self, limit: Duration) -> Self {
        self.pending_limit = limit;
        self
    }

    /// The job is in `status` at `now`: shows a new pending reason on the run's line, and
    /// returns why the job must be given up when it has been pending past the limit for
    /// reasons other than its turn.
    fn watch(&mut self, status: &JobStatus, now: Instant) -> Option<String> {
        let pending = status.state == "PENDING";
        let reason = status.reason.clone().filter(|_| pending);
        let stuck = reason.as_deref().is_some_and(|r| !waits_its_turn(r));
        if !stuck {
            self.stuck_since = None;
        }
        let since = match stuck {
            true => Some(*self.stuck_since.get_or_insert(now)),
            false => None,
        };
        if reason != self.reason {
            self.reason = reason.clone();
            if let Some(reason) = reason {
                let limit_s = stuck.then(|| self.pending_limit.as_secs());
                let ev = RunEvent::Queued {
                    job: self.job.clone(),
                    reason,
                    limit_s,
                };
                let _ = self.events.send((self.slot, ev));
            }
        }
        let waited = now.duration_since(since?);
        (waited >= self.pending_limit).then(|| {
            format!(
                "Slurm job {} could not start: pending for {} s with reason {} (not its turn \
                 in the queue; the limit is {} s: executor `pending_limit`, \
                 --slurm-pending-limit); cancelled",
                self.job,
                waited.as_secs(),
                self.reason.as_deref().unwrap_or("?"),
                self.pending_limit.as_secs()
            )
        })
    }

    fn output_file(&self) -> PathBuf {
        self.run_dir.join(format!("slurm-{}.out", self.job))
    }

    /// Forward the progress lines the job wrote since the last call; keep the others.
    fn forward(&mut self) {
        let Ok(mut f) = std::fs::File::open(self.output_file()) else {
            return;
        };
        // A requeued job starts its output file again.
        if f.metadata().is_ok_and(|m| m.len() < self.read) {
            self.read = 0;
        }
        if f.seek(std::io::SeekFrom::Start(self.read)).is_err() {
            return;
        }
        let mut buf = String::new();
        if f.read_to_string(&mut buf).is_err() {
            return;
        }
        // Only whole lines; a partial last line waits for the next call.
        let whole = buf.rfind('\n').map_or(0, |i| i + 1);
        self.read += whole as u64;
        for line in buf[..whole].lines() {
            match serde_json::from_str::<RunEvent>(line) {
                Ok(ev) => {
                    self.judge(&ev);
                    let _ = self.events.send((self.slot, ev));
                }
                Err(_) => {
                    self.tail.push(line.to_string());
                    if self.tail.len() > super::TAIL_LINES {
                        self.tail.remove(0);
                    }
                }
            }
        }
    }
}

impl SlurmRun {
    /// A trial's epoch ended: record it and tell the job (which waits for it) whether to stop.
    fn judge(&mut self, ev: &RunEvent) {
        let (
            Some(p),
            RunEvent::EpochEnd {
                epoch,
                lr,
                train_loss,
                val_mae,
                seconds,
            },
        ) = (self.pruner.as_mut(), ev)
        else {
            return;
        };
        if p.stopped {
            return;
        }
        let row = EpochRow {
            epoch: *epoch as u32,
            lr: *lr,
            train_loss: *train_loss,
            val_mae: *val_mae,
            seconds: *seconds,
        };
        let stop = p.judge(&[row]).unwrap_or_else(|e| {
            eprintln!("warning: the search's pruner could not judge this epoch: {e}");
            false
        });
        let verdict = serde_json::to_string(&Verdict {
            epoch: *epoch,
            stop,
        })
        .expect("serialises");
        if let Err(e) = write_atomic(&self.run_dir.join(VERDICT), &verdict) {
            eprintln!(
                "warning: writing the pruner's verdict for job {}: {e}",
                self.job
            );
        }
    }
}

impl RunHandle for SlurmRun {
    fn poll(&mut self) -> std::io::Result<Option<RunExit>> {
        if self.last_poll.is_some_and(|t| t.elapsed() < POLL_EVERY) {
            return Ok(None);
        }
        self.last_poll = Some(Instant::now());
        self.forward();
        let state = match job_status(&self.job)? {
            Some(s) if IN_FLIGHT.contains(&s.state.as_str()) => {
                if let Some(why) = self.watch(&s, Instant::now()) {
                    self.kill();
                    if !self.cancelled {
                        // Not cancelled (it may have started meanwhile): asked again next time.
                        return Ok(None);
                    }
                    return Ok(Some(RunExit {
                        code: None,
                        signal: None,
                        detail: Some(why),
                        infrastructure: false,
                    }));
                }
                return Ok(None);
            }
            Some(s) => s.state,
            // Slurm forgot the job (older than `MinJobAge`): its folder tells how it ended.
            None => "ENDED".to_string(),
        };
        self.forward();
        Ok(Some(job_exit(&self.job, &state)))
    }

    fn kill(&mut self) {
        if !self.cancelled {
            self.cancelled = Command::new("scancel")
                .arg(&self.job)
                .status()
                .is_ok_and(|s| s.success());
        }
    }

    fn output_tail(&self) -> Vec<String> {
        let mut t = self.tail.clone();
        if let Ok(f) = std::fs::File::open(self.output_file()) {
            t = std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter(|l| serde_json::from_str::<RunEvent>(l).is_err())
                .collect();
            let n = t.len().saturating_sub(super::TAIL_LINES);
            t.drain(..n);
        }
        t
    }

    fn beats_for_itself(&self) -> bool {
        false
    }

    fn ingest(&mut self) -> Option<Ingested> {
        // The job's error, written after its outcome when the run failed the rule that it
        // beat predicting the mean (no earlier attempt's error is left: removed on submission).
        if let Ok(failure) = std::fs::read(self.run_dir.join(FAILURE)) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&failure) {
                return Some(Ingested::Failed(format!(
                    "Slurm job {}: {}",
                    self.job,
                    v["error"].as_str().unwrap_or("failed")
                )));
            }
        }
        // A trial that finished before its cancellation took effect is done, not pruned.
        let outcome = self.run_dir.join(crate::exec::OUTCOME_FILE);
        if let Ok(text) = std::fs::read(&outcome) {
            if let Ok(report) = serde_json::from_slice::<RunReport>(&text) {
                return Some(Ingested::Done(Box::new(report)));
            }
        }
        if let Some(p) = self.pruner.as_mut().filter(|p| p.stopped) {
            match p.record_pruned() {
                Ok(epochs) => return Some(Ingested::Pruned(epochs)),
                Err(e) => {
                    return Some(Ingested::Failed(format!("recording the pruned trial: {e}")))
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as `scontrol show job <id> -o` prints them (Slurm 22–23), shortened.
    const PENDING_IMPOSSIBLE: &str =
        "JobId=12 JobName=stkd-ab12cd34 UserId=root(0) GroupId=root(0) \
        Priority=1 Nice=0 Account=(null) QOS=(null) JobState=PENDING \
        Reason=ReqNodeNotAvail,_UnavailableNodes:node1 Dependency=(null) Requeue=1 Restarts=0 \
        BatchFlag=1 RunTime=00:00:00 TimeLimit=UNLIMITED NumCPUs=999 ReqB:S:C:T=0:0:*:*";
    const RUNNING: &str = "JobId=13 JobName=stkd-ff00 JobState=RUNNING Reason=None \
        Dependency=(null) RunTime=00:00:07";

    #[test]
    fn a_jobs_state_and_pending_reason_are_read_from_scontrol() {
        let s = JobStatus::parse(PENDING_IMPOSSIBLE).unwrap();
        assert_eq!(s.state, "PENDING");
        assert_eq!(
            s.reason.as_deref(),
            Some("ReqNodeNotAvail,_UnavailableNodes:node1")
        );
        assert_eq!(
            s.to_string(),
            "PENDING: ReqNodeNotAvail,_UnavailableNodes:node1"
        );
        // What Slurm 22 shows for more CPUs than any node has (`.ci/slurm-test`'s cluster).
        let cpus = "JobId=1 JobName=wrap JobState=PENDING Reason=PartitionConfig Dependency=(null)";
        let s = JobStatus::parse(cpus).unwrap();
        assert_eq!(s.to_string(), "PENDING: PartitionConfig");
        assert!(!waits_its_turn(s.reason.as_deref().unwrap()));
        let s = JobStatus::parse(RUNNING).unwrap();
        assert_eq!((s.state.as_str(), s.reason), ("RUNNING", None));
        assert_eq!(
            JobStatus::parse("slurm_load_jobs error: Invalid job id"),
            None
        );
        // A pending job's `Reason=` precedes `Dependency=`: neither is taken for the other.
        let dep = "JobId=3 JobState=PENDING Reason=Dependency Dependency=afterok:2_*(unfulfilled)";
        let s = JobStatus::parse(dep).unwrap();
        assert_eq!(s.reason.as_deref(), Some("Dependency"));
    }

    #[test]
    fn waiting_its_turn_is_told_from_a_job_that_cannot_start() {
        for r in [
            "None",
            "Priority",
            "Resources",
            "Dependency",
            "BeginTime",
            "QOSGrpCpuLimit",
            "AssocGrpNodeLimit",
            "QOSMaxJobsPerUser",
            "AssocMaxJobsPerAccount",
        ] {
            assert!(waits_its_turn(r), "{r}");
        }
        for r in [
            "ReqNodeNotAvail,_UnavailableNodes:node1",
            "NodeDown",
            "BadConstraints",
            "PartitionConfig",
            "PartitionNodeLimit",
            "PartitionTimeLimit",
            "PartitionDown",
            "JobHeldAdmin",
            "JobHeldUser",
            "QOSMaxCpuPerJobLimit",
            "AssocMaxWallDurationPerJobLimit",
            "InvalidAccount",
            "DependencyNeverSatisfied",
        ] {
            assert!(!waits_its_turn(r), "{r}");
        }
    }

    #[test]
    fn a_job_pending_past_the_limit_for_a_reason_other_than_its_turn_is_given_up() {
        let (tx, rx) = mpsc::channel();
        let dir = std::env::temp_dir();
        let mut run =
            SlurmRun::new("12".into(), dir, 3, tx, None).pending_limit(Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let status = |state: &str, reason: Option<&str>| JobStatus {
            state: state.into(),
            reason: reason.map(str::to_string),
        };
        // Waiting its turn: shown once, never given up.
        assert_eq!(run.watch(&status("PENDING", Some("Priority")), at(0)), None);
        assert_eq!(
            run.watch(&status("PENDING", Some("Priority")), at(5000)),
            None
        );
        // Cannot start: shown with the limit; the clock runs from the first sight of it.
        let stuck = status("PENDING", Some("BadConstraints"));
        assert_eq!(run.watch(&stuck, at(5010)), None);
        assert_eq!(run.watch(&stuck, at(5069)), None);
        // Back in the queue (an administrator fixed the node): the clock starts again.
        assert_eq!(
            run.watch(&status("PENDING", Some("Resources")), at(5070)),
            None
        );
        assert_eq!(run.watch(&stuck, at(5080)), None);
        assert_eq!(run.watch(&stuck, at(5139)), None);
        let why = run.watch(&stuck, at(5140)).expect("given up after 60 s");
        assert!(
            why.contains("Slurm job 12 could not start")
                && why.contains("pending for 60 s with reason BadConstraints")
                && why.contains("the limit is 60 s"),
            "{why}"
        );
        // A running job is never given up.
        assert_eq!(run.watch(&status("RUNNING", None), at(9000)), None);
        let shown: Vec<_> = rx
            .try_iter()
            .map(|(slot, ev)| match ev {
                RunEvent::Queued {
                    job,
                    reason,
                    limit_s,
                } => (slot, job, reason, limit_s),
                other => panic!("{other:?}"),
            })
            .collect();
        let ev = |r: &str, l: Option<u64>| (3, "12".to_string(), r.to_string(), l);
        assert_eq!(
            shown,
            [
                ev("Priority", None),
                ev("BadConstraints", Some(60)),
                ev("Resources", None),
                ev("BadConstraints", Some(60)),
            ],
            "each new reason once, on the run's line"
        );
    }
}
