//! Sweeps through a real Slurm cluster (`--executor slurm`): `.ci/slurm-test` starts a one-node
//! cluster (munged, slurmctld, slurmd) on the machine and runs these with `STKD_SLURM=1`.
//! Without a cluster they are ignored (`cargo test` cannot start daemons as root), not passed:
//! CI runs them through the script.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn cluster() {
    assert_eq!(
        std::env::var("STKD_SLURM").as_deref(),
        Ok("1"),
        "run through .ci/slurm-test, which starts the cluster"
    );
}

fn slurm_sweep(file: &Path, store: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--executor", "slurm", "--max-jobs", "2"];
    args.extend_from_slice(extra);
    sweep(file, store, &args)
}

/// The test metrics a run recorded in its folder.
fn test_metrics(store: &Path, hash: &str) -> serde_json::Value {
    let p = store
        .parent()
        .unwrap()
        .join("runs")
        .join(hash)
        .join("outcome.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["outcome"]["test"].clone()
}

fn job_of(file: &Path, store: &Path, hash: &str) -> Option<String> {
    let out = stkd(&[
        "status",
        file.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?
        .iter()
        .find(|r| r["hash"] == hash)
        .and_then(|r| r["job"].as_str().map(str::to_string))
}

#[test]
#[ignore = "needs a Slurm cluster: .ci/slurm-test"]
fn a_sweep_through_slurm_equals_the_local_one() {
    cluster();
    let runs = "  - {label: teacher, model: student}\n  - {label: ord, model: student, teacher: teacher, loss: ord, alpha1: 0.5}\n  - {label: plain2, model: student, seeds: [2]}\n";
    // The file's `executor:` block sends the runs to Slurm (no flag) with its settings.
    let a = tmp("slurm-a");
    let file_a = write_exp(
        &a,
        &format!("{runs}executor: {{kind: slurm, max_jobs: 2, time: \"20\", sbatch_args: [\"--comment=from-the-file\"]}}\n"),
    );
    let store_a = a.join("stkd.db");
    let out = sweep(&file_a, &store_a, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(executed_now(&out), 3);
    let rows = status_rows(&file_a, &store_a);
    assert!(
        rows.iter().all(|r| r.status == "done" && r.attempts == 1),
        "{rows:?}"
    );
    for r in &rows {
        let job = job_of(&file_a, &store_a, &r.hash);
        let job = job.unwrap_or_else(|| panic!("{} has no job id", r.run));
        let shown = scontrol_job(&job);
        assert!(shown.contains("TimeLimit=00:20:00"), "{shown}");
        assert!(shown.contains("Comment=from-the-file"), "{shown}");
    }
    // The same runs on the local executor (a file without the block: the same hashes, since
    // where a run executes is not part of it): the same numbers.
    let b = tmp("slurm-b");
    let file_b = write_exp(&b, runs);
    let store_b = b.join("stkd.db");
    assert!(sweep(&file_b, &store_b, &[]).status.success());
    for r in &rows {
        assert_eq!(
            test_metrics(&store_a, &r.hash),
            test_metrics(&store_b, &r.hash),
            "{}",
            r.run
        );
    }
    // Nothing left to submit.
    let again = slurm_sweep(&file_a, &store_a, &[]);
    assert_eq!(executed_now(&again), 0);
}

/// Starts a Slurm sweep of one longer run, waits for its first checkpoint, and returns the
/// sweep process, the run's hash and its job id.
fn long_run(
    dir: &Path,
    seed: u64,
    extra: &[&str],
) -> (std::process::Child, std::path::PathBuf, String, String) {
    let file = write_exp(
        dir,
        &format!("  - {{label: long, model: student, epochs: 8, max_steps_per_epoch: 40, seeds: [{seed}]}}\n"),
    );
    let store = dir.join("stkd.db");
    let child = Command::new(BIN)
        .args([
            "sweep",
            file.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ])
        .args(["--executor", "slurm"])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut hash = String::new();
    wait_for(Duration::from_secs(120), "the run's registration", || {
        if !store.exists() {
            return false;
        }
        hash = status_rows(&file, &store)[0].hash.clone();
        !hash.is_empty()
    });
    let state = dir.join("runs").join(&hash).join("resume/state.json");
    wait_for(Duration::from_secs(120), "a checkpoint", || state.exists());
    let job = job_of(&file, &store, &hash).expect("a job id");
    (child, file, hash, job)
}

fn reference_metrics(seed: u64) -> serde_json::Value {
    let d = tmp(&format!("slurm-ref-{seed}"));
    let file = write_exp(
        &d,
        &format!("  - {{label: long, model: student, epochs: 8, max_steps_per_epoch: 40, seeds: [{seed}]}}\n"),
    );
    let store = d.join("stkd.db");
    assert!(sweep(&file, &store, &[]).status.success());
    let hash = status_rows(&file, &store)[0].hash.clone();
    test_metrics(&store, &hash)
}

#[test]
#[ignore = "needs a Slurm cluster: .ci/slurm-test"]
fn a_cancelled_job_fails_and_resumes_on_retry_and_a_requeued_one_resumes_by_itself() {
    cluster();
    // Cancelled (scancel) after its first checkpoint: recorded failed with Slurm's state.
    let a = tmp("slurm-cancel");
    let (child, file, hash, job) = long_run(&a, 1, &[]);
    let store = a.join("stkd.db");
    assert!(Command::new("scancel")
        .arg(&job)
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    failed_with(&out, &file, &store, "CANCELLED");
    // Submitted again: a new job resumes from the checkpoint and ends as an uninterrupted run.
    let out = slurm_sweep(&file, &store, &["--retry-failed"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = &status_rows(&file, &store)[0];
    assert_eq!((row.status.as_str(), row.attempts), ("done", 2), "{row:?}");
    let job2 = job_of(&file, &store, &hash).unwrap();
    assert_ne!(job2, job);
    let log = std::fs::read_to_string(a.join("runs").join(&hash).join(format!("slurm-{job2}.out")))
        .unwrap();
    assert!(log.contains("resuming after epoch"), "{log}");
    assert_eq!(test_metrics(&store, &hash), reference_metrics(1));

    // Requeued (as on preemption): the same job starts again, resumes, and the sweep records
    // it done in its one attempt.
    let b = tmp("slurm-requeue");
    let (child, file, hash, job) = long_run(&b, 2, &[]);
    let store = b.join("stkd.db");
    let ok = Command::new("scontrol")
        .args(["requeue", &job])
        .status()
        .unwrap()
        .success();
    assert!(ok, "scontrol requeue {job}");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = &status_rows(&file, &store)[0];
    assert_eq!((row.status.as_str(), row.attempts), ("done", 1), "{row:?}");
    assert_eq!(job_of(&file, &store, &hash).unwrap(), job);
    let log = std::fs::read_to_string(b.join("runs").join(&hash).join(format!("slurm-{job}.out")))
        .unwrap();
    assert!(log.contains("resuming after epoch"), "{log}");
    assert_eq!(test_metrics(&store, &hash), reference_metrics(2));
}

#[test]
#[ignore = "needs a Slurm cluster: .ci/slurm-test"]
fn a_job_out_of_time_is_recorded_as_such_and_resumes_on_retry() {
    cluster();
    // A run far longer than its 1-minute limit: Slurm ends the job (TIMEOUT) within about
    // 30 s after the minute plus KillWait.
    let a = tmp("slurm-timeout");
    let file = write_exp(
        &a,
        "  - {label: slow, model: student, epochs: 100000, max_steps_per_epoch: 40}\n",
    );
    let store = a.join("stkd.db");
    let out = slurm_sweep(&file, &store, &["--slurm-time", "1"]);
    let row = &failed_with(&out, &file, &store, "TIMEOUT");
    let hash = row.hash.clone();
    let job = job_of(&file, &store, &hash).expect("the first job's id");
    // Submitted again without the limit: the new job resumes from the last epoch checkpoint.
    let mut child = Command::new(BIN)
        .args(["sweep", file.to_str().unwrap(), "--store"])
        .arg(&store)
        .args(["--executor", "slurm", "--retry-failed"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut job2 = None;
    wait_for(Duration::from_secs(120), "the resumed job", || {
        job2 = job_of(&file, &store, &hash).filter(|j| *j != job);
        job2.as_ref().is_some_and(|j| {
            let log = a.join("runs").join(&hash).join(format!("slurm-{j}.out"));
            std::fs::read_to_string(log).is_ok_and(|l| l.contains("resuming after epoch"))
        })
    });
    interrupt(&child);
    wait_exit(&mut child, Duration::from_secs(60));
    let job2 = job2.unwrap();
    wait_for(Duration::from_secs(60), "the job's end", || {
        job_state(&job2) != "RUNNING"
    });
}

#[test]
#[ignore = "needs a Slurm cluster: .ci/slurm-test"]
fn an_impossible_job_fails_with_slurms_reason_and_a_refused_one_is_not_an_attempt() {
    cluster();
    // More CPUs than any node has: Slurm takes the job and keeps it pending (PartitionConfig
    // on the CI's cluster). The file's `pending_limit` gives it 8 s once its reason shows.
    let a = tmp("slurm-impossible");
    let file = write_exp(
        &a,
        "  - {label: huge, model: student, epochs: 1, max_steps_per_epoch: 2}\n\
         executor: {kind: slurm, cpus: 9999, pending_limit: 8}\n",
    );
    let store = a.join("stkd.db");
    let mut child = sweep_cmd(&file, &store, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = capture_stderr(&mut child);
    // While it waits, `status` shows the job's state and Slurm's reason.
    let mut reason = None;
    wait_for(
        Duration::from_secs(30),
        "the pending reason in status",
        || {
            // Before the sweep creates the store, `status` has nothing to show.
            let out = stkd(&[
                "status",
                file.to_str().unwrap(),
                "--store",
                store.to_str().unwrap(),
                "--json",
            ]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            reason = v[0]["slurm_reason"].as_str().map(str::to_string);
            reason.is_some()
        },
    );
    let reason = reason.unwrap();
    let v = status_json(&file, &store);
    assert_eq!(v[0]["slurm_state"], "PENDING", "{v}");
    let exit = wait_exit(&mut child, Duration::from_secs(60));
    let err = err.lock().unwrap().clone();
    assert_eq!(exit.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("pending: {reason} (not its turn in the queue; cancelled and failed if still so after 8 s)")),
        "the sweep's line shows the reason and the wait:\n{err}"
    );
    let row = status_rows(&file, &store).remove(0);
    let error = row.error.clone().unwrap_or_default();
    assert!(
        row.status == "failed"
            && row.attempts == 1
            && error.contains("could not start")
            && error.contains(&format!("with reason {reason}")),
        "{row:?}"
    );
    let job = job_of(&file, &store, &row.hash).expect("its job id");
    wait_for(Duration::from_secs(30), "the job's cancellation", || {
        job_state(&job) == "CANCELLED"
    });

    // A job `sbatch` refuses (more memory than any node has): the sweep stops with sbatch's
    // message, printed once; the run stays pending with no attempt counted, however often.
    let b = tmp("slurm-refused");
    let file = write_exp(
        &b,
        "  - {label: greedy, model: student, epochs: 1, max_steps_per_epoch: 2}\n",
    );
    let store = b.join("stkd.db");
    for _ in 0..2 {
        let out = slurm_sweep(&file, &store, &["--slurm-mem", "100000000G"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert_eq!(err.matches("sbatch refused the job").count(), 1, "{err}");
        assert_eq!(
            err.matches("Batch job submission failed").count(),
            1,
            "{err}"
        );
    }
    let row = status_rows(&file, &store).remove(0);
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("pending", 0),
        "{row:?}"
    );
}

/// The sweep `out` ended with status 1 and the file's one run is recorded failed with Slurm's
/// `state` in its error.
fn failed_with(out: &std::process::Output, file: &Path, store: &Path, state: &str) -> StatusRow {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = status_rows(file, store).remove(0);
    assert_eq!(row.status, "failed");
    assert!(
        row.error.as_deref().unwrap_or("").contains(state),
        "{row:?}"
    );
    row
}

/// `scontrol show job -o`: the job's settings and state on one line.
fn scontrol_job(job: &str) -> String {
    let out = Command::new("scontrol")
        .args(["show", "job", job, "-o"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn job_state(job: &str) -> String {
    scontrol_job(job)
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("JobState="))
        .unwrap_or("UNKNOWN")
        .to_string()
}

fn interrupt(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
#[ignore = "needs a Slurm cluster: .ci/slurm-test"]
fn ctrl_c_cancels_the_jobs_and_detach_leaves_them_to_a_later_sweep() {
    cluster();
    // Ctrl-C: the job is cancelled, the run is pending again.
    let a = tmp("slurm-int");
    let (child, file, _, job) = long_run(&a, 3, &[]);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status_rows(&file, &a.join("stkd.db"))[0].status, "pending");
    wait_for(Duration::from_secs(30), "the job's cancellation", || {
        job_state(&job) == "CANCELLED"
    });

    // --detach: the job runs on; the next sweep re-attaches to it instead of submitting another.
    let b = tmp("slurm-detach");
    let (child, file, hash, job) = long_run(&b, 4, &["--detach"]);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = b.join("stkd.db");
    assert_eq!(status_rows(&file, &store)[0].status, "pending");
    let state = job_state(&job);
    assert!(
        ["PENDING", "RUNNING", "COMPLETING", "COMPLETED"].contains(&state.as_str()),
        "{state}"
    );
    let out = slurm_sweep(&file, &store, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = &status_rows(&file, &store)[0];
    assert_eq!(row.status, "done", "{row:?}");
    assert_eq!(job_of(&file, &store, &hash).unwrap(), job);
    // One job ran the whole run: one output file, no resumption.
    let runs = b.join("runs").join(&hash);
    let outs: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("slurm-"))
        .collect();
    assert_eq!(outs.len(), 1);
    let log = std::fs::read_to_string(outs[0].path()).unwrap();
    assert!(!log.contains("resuming"), "{log}");
    assert_eq!(test_metrics(&store, &hash), reference_metrics(4));
}

/// The trials of a search as its report lists them (trial, hash, status, values, objective,
/// best validation MAE, epochs run), without the training times.
fn trials_csv(file: &Path, store: &Path, out: &Path) -> Vec<String> {
    let name = report_into(file, store, out, "csv");
    let text = std::fs::read_to_string(out.join(format!("{name}-trials.csv"))).unwrap();
    text.lines()
        .map(|l| {
            l.rsplit_once(',')
                .map_or(l, |(head, _seconds)| head)
                .to_string()
        })
        .collect()
}

#[test]
#[ignore = "needs a Slurm cluster: .ci/slurm-test"]
fn a_search_through_slurm_is_judged_by_its_pruner_like_a_local_one() {
    cluster();
    let runs = "  - {label: s, model: student, epochs: 3, lr: {log_uniform: [1.0e-6, 1.0e-2]}}\n\
                search: {sampler: tpe, trials: 6, seed: 3, pruner: {kind: median, warmup_epochs: 0, startup_trials: 1}}\n";
    // Both experiments are named `search` (the name seeds the sampler).
    let a = tmp("slurm-search-a").join("search");
    std::fs::create_dir_all(&a).unwrap();
    let file_a = write_exp(&a, runs);
    let store_a = a.join("stkd.db");
    // One job at a time, as the local sweep runs one trial at a time: the same proposals.
    let out = sweep(
        &file_a,
        &store_a,
        &["--executor", "slurm", "--max-jobs", "1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = tmp("slurm-search-b").join("search");
    std::fs::create_dir_all(&b).unwrap();
    let file_b = write_exp(&b, runs);
    let store_b = b.join("stkd.db");
    assert!(sweep(&file_b, &store_b, &[]).status.success());

    let rows = status_rows(&file_a, &store_a);
    assert!(rows.iter().any(|r| r.status == "pruned"), "{rows:?}");
    assert!(rows.iter().all(|r| r.attempts == 1), "{rows:?}");
    // The same trials, stopped after the same epochs, with the same numbers.
    let trials_a = trials_csv(&file_a, &store_a, &a.join("rep"));
    let trials_b = trials_csv(&file_b, &store_b, &b.join("rep"));
    assert!(
        trials_a.iter().any(|l| l.contains(",pruned,")),
        "{trials_a:?}"
    );
    assert_eq!(trials_a, trials_b);
}
