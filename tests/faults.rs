//! End-to-end checks of how a sweep tells faults apart (issue 30): a run whose process is
//! killed from outside resumes from its checkpoint up to a limit of retries, then fails with
//! every cause listed; a run worse than predicting the mean fails unless the file says it is
//! deliberate; a resumed run says so and a run taken over by another sweep is counted as
//! executed once; read-only commands leave nothing beside the store. Every test runs the real
//! `stkd` binary with real child processes.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::*;

/// One student run of many short epochs (about 0.3 s each here): long enough to be killed
/// twice, short enough to finish soon after.
const RUN: &str = "  - {label: long, model: student, epochs: 40}\n";

/// Sends `signal` (e.g. `KILL`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -s {signal} {pid}");
}

/// The one `run-one` worker of `store`, once its attempt has ended an epoch (so that its
/// checkpoint holds one): the first epoch after `from` bytes of the sweep's stderr `err`, or,
/// with `resumed`, the first after the note that the attempt resumed.
fn worker_after_an_epoch(
    store: &Path,
    err: &Arc<Mutex<String>>,
    from: usize,
    resumed: bool,
) -> u32 {
    wait_for(Duration::from_secs(60), "an epoch of the attempt", || {
        let text = err.lock().unwrap();
        let start = match resumed {
            true => match text[from..].find("resumed at epoch ") {
                Some(i) => from + i,
                None => return false,
            },
            false => from,
        };
        text[start..].contains(" train loss ")
    });
    let mut workers = Vec::new();
    wait_for(Duration::from_secs(10), "one worker", || {
        workers = run_one_workers(store);
        workers.len() == 1
    });
    workers[0]
}

/// Kills the sweep's run process (only it, not the sweep) with SIGKILL `kills` times, each
/// time after an epoch of the attempt, and waits for the sweep to end.
fn sweep_killing_its_worker(
    file: &Path,
    store: &Path,
    kills: usize,
) -> (std::process::ExitStatus, String) {
    let mut sweep = sweep_cmd(file, store, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = capture_stderr(&mut sweep);
    let mut from = 0;
    for k in 1..=kills {
        let pid = worker_after_an_epoch(store, &err, from, k > 1);
        signal(pid, "KILL");
        // The sweep settles the kill; a retried run is claimed again and resumes.
        wait_for(
            Duration::from_secs(30),
            "the sweep to settle the kill",
            || {
                err.lock().unwrap().contains(&format!(
                    "killed by signal 9 (SIGKILL): infrastructure fault {k}"
                )) || err.lock().unwrap().contains("gave up after")
            },
        );
        from = err.lock().unwrap().len();
    }
    let status = wait_exit(&mut sweep, Duration::from_secs(120));
    let text = err.lock().unwrap().clone();
    (status, text)
}

#[test]
fn a_killed_run_process_resumes_from_its_checkpoint_and_a_third_kill_fails_it() {
    // Twice killed: retried both times, resumed from its checkpoint, and the same result as a
    // run never killed.
    let dir = tmp("faults-retried");
    let file = write_exp(&dir, RUN);
    let store = dir.join("stkd.db");
    let (status, err) = sweep_killing_its_worker(&file, &store, 2);
    assert!(status.success(), "{err}");
    assert_eq!(err.matches("resumed at epoch ").count(), 2, "{err}");
    assert!(
        err.contains("1 executed now"),
        "one execution, counted once: {err}"
    );
    let v = status_json(&file, &store);
    let row = &v[0];
    assert_eq!(row["status"], "done", "{v}");
    assert_eq!(row["attempts"], 3, "{v}");
    let faults = row["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{v}");
    for (i, f) in faults.iter().enumerate() {
        assert_eq!(f["attempt"], i + 1);
        assert_eq!(f["cause"], "run process was killed by signal 9 (SIGKILL)");
    }
    let table = stkd(&[
        "status",
        file.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("3 (2 faults)")
            && table.contains("infrastructure faults")
            && table.contains("attempt 2: run process was killed by signal 9 (SIGKILL)"),
        "{table}"
    );
    let plain = tmp("faults-never-killed");
    let plain_file = write_exp(&plain, RUN);
    let out = sweep(&plain_file, &plain.join("stkd.db"), &[]);
    assert!(out.status.success());
    let w = status_json(&plain_file, &plain.join("stkd.db"));
    assert_eq!(w[0]["hash"], row["hash"]);
    assert_eq!(
        w[0]["test_mae_15min"], row["test_mae_15min"],
        "resumed exactly: the metrics of a run never killed"
    );

    // A third kill is past the limit of 2 retries: the run fails with every cause listed.
    let dir = tmp("faults-limit");
    let file = write_exp(&dir, RUN);
    let store = dir.join("stkd.db");
    let (status, err) = sweep_killing_its_worker(&file, &store, 3);
    assert_eq!(status.code(), Some(1), "{err}");
    let v = status_json(&file, &store);
    let row = &v[0];
    assert_eq!(row["status"], "failed", "{v}");
    assert_eq!(row["attempts"], 3, "{v}");
    let error = row["error"].as_str().unwrap();
    assert!(
        error.starts_with("gave up after 3 infrastructure faults (2 retries allowed"),
        "{error}"
    );
    for k in 1..=3 {
        assert!(
            error.contains(&format!(
                "attempt {k}: run process was killed by signal 9 (SIGKILL)"
            )),
            "{error}"
        );
    }
    assert!(
        err.contains("1 failed") && err.contains("1 executed now"),
        "{err}"
    );
}

#[test]
fn the_limit_of_retries_comes_from_the_file_and_the_command_line() {
    // `executor: {retries: 0}`: the first kill fails the run.
    let dir = tmp("faults-no-retry");
    let file = write_exp(&dir, RUN);
    let text = std::fs::read_to_string(&file).unwrap() + "executor: {retries: 0}\n";
    std::fs::write(&file, text).unwrap();
    let store = dir.join("stkd.db");
    let (status, err) = sweep_killing_its_worker(&file, &store, 1);
    assert_eq!(status.code(), Some(1), "{err}");
    let v = status_json(&file, &store);
    assert_eq!(v[0]["status"], "failed", "{v}");
    let error = v[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("gave up after 1 infrastructure faults (0 retries allowed"),
        "{error}"
    );
    // The limit is in no run's hash: the file without the block plans the same run. With
    // `--retry-failed` (a fresh limit) and `--retries 1` it finishes.
    let plain = tmp("faults-no-retry-plain");
    let plain_file = write_exp(&plain, RUN);
    let plan = |f: &Path| {
        let out = sweep(f, &store, &["--dry-run", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["runs"][0]["hash"].clone()
    };
    assert_eq!(plan(&file), plan(&plain_file));
    let out = sweep(&file, &store, &["--retry-failed", "--retries", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = status_json(&file, &store);
    assert_eq!(v[0]["status"], "done", "{v}");
    assert_eq!(
        v[0]["faults"].as_array().unwrap().len(),
        0,
        "cleared on retry"
    );
}

#[test]
fn a_run_worse_than_predicting_the_mean_fails_unless_the_file_says_it_is_deliberate() {
    // The trivial predictor's validation MAE, shown by `data info`.
    let info = stkd(&["data", "info", "pemsd7", "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let trivial = info["val_mae_of_train_mean"].as_f64().unwrap();
    assert!((trivial - 9.929).abs() < 1e-3, "{info}");
    // A student at lr 10 on PeMSD7: finite numbers (not diverged), but far worse than the
    // training mean predicted everywhere.
    let dir = tmp("mean-check");
    let text = "name: lr10\ndatasets: [pemsd7]\n\
                defaults: {epochs: 1, max_steps_per_epoch: 30, test_runs: 0}\n\
                runs:\n  - {label: wild, model: student, lr: 10}\n  \
                - {label: kid, model: student, teacher: wild, loss: ord}\n";
    let file = dir.join("lr10.yaml");
    std::fs::write(&file, text).unwrap();
    let store = dir.join("stkd.db");
    let out = sweep(&file, &store, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let v = status_json(&file, &store);
    let wild = &v[0];
    assert_eq!(wild["status"], "failed", "{v}");
    assert_eq!(wild["attempts"], 1, "a run's own failure is not retried");
    let error = wild["error"].as_str().unwrap();
    assert!(
        error.starts_with("worse than predicting the mean: best validation MAE ")
            && error.contains(&format!("against {trivial:.3} mph")),
        "{error}"
    );
    let val: f64 = error["worse than predicting the mean: best validation MAE ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(val > trivial && val < 200.0, "{val}");
    assert_eq!(v[1]["status"], "skipped", "its dependants are skipped");
    // Turned off in the file for a deliberate experiment: the same runs (no hash changes),
    // and the failed run is done at once from the outcome it left.
    let deliberate = dir.join("deliberate.yaml");
    std::fs::write(&deliberate, format!("{text}mean_check: false\n")).unwrap();
    let plan = |f: &Path| {
        let out = sweep(f, &store, &["--dry-run", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["runs"].clone()
    };
    let hashes = |p: serde_json::Value| -> Vec<String> {
        p.as_array()
            .unwrap()
            .iter()
            .map(|r| r["hash"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(hashes(plan(&file)), hashes(plan(&deliberate)));
    let out = sweep(&deliberate, &store, &["--retry-failed"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v = status_json(&deliberate, &store);
    assert_eq!(v[0]["status"], "done", "{v}");
    assert_eq!(v[1]["status"], "done", "{v}");
}

#[test]
fn a_run_taken_over_from_a_frozen_worker_is_resumed_and_counted_once() {
    let dir = tmp("faults-takeover");
    let file = write_exp(&dir, "  - {label: long, model: student, epochs: 30}\n");
    let store = dir.join("stkd.db");
    let mut a = sweep_cmd(&file, &store, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err_a = capture_stderr(&mut a);
    let frozen = worker_after_an_epoch(&store, &err_a, 0, false);
    signal(frozen, "STOP");
    // Another sweep takes the run over once its heartbeat is 10 s old, and waits for the
    // frozen worker's folder.
    let mut b = sweep_cmd(&file, &store, &["--stale-after", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err_b = capture_stderr(&mut b);
    wait_for(Duration::from_secs(40), "the takeover", || {
        err_b
            .lock()
            .unwrap()
            .contains("is locked by another worker")
    });
    // The frozen worker wakes, learns that its claim is gone and stops without a result.
    signal(frozen, "CONT");
    let (sa, sb) = (
        wait_exit(&mut a, Duration::from_secs(120)),
        wait_exit(&mut b, Duration::from_secs(120)),
    );
    let (ea, eb) = (err_a.lock().unwrap().clone(), err_b.lock().unwrap().clone());
    assert!(sa.success() && sb.success(), "{ea}\n{eb}");
    assert!(ea.contains("claim taken over by worker"), "{ea}");
    assert!(ea.contains("0 executed now"), "{ea}");
    assert!(eb.contains("1 executed now"), "{eb}");
    assert!(eb.contains(": resumed at epoch "), "{eb}");
    let v = status_json(&file, &store);
    assert_eq!(v[0]["status"], "done", "{v}");
    assert_eq!(v[0]["attempts"], 2, "{v}");
    let cause = v[0]["faults"][0]["cause"].as_str().unwrap();
    assert!(cause.starts_with("heartbeat lost: worker "), "{cause}");
}

#[test]
fn read_only_commands_leave_nothing_beside_a_writable_store() {
    let dir = tmp("read-only-files");
    let file = write_exp(&dir, "  - {label: a, model: student}\n");
    let store = dir.join("stkd.db");
    assert!(sweep(&file, &store, &[]).status.success());
    let beside = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("stkd.db"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(beside(), ["stkd.db"], "the sweep closed the store");
    let (f, s) = (file.to_str().unwrap(), store.to_str().unwrap());
    let out_dir = dir.join("reports");
    let o = out_dir.to_str().unwrap();
    for args in [
        vec!["status", "--store", s],
        vec!["status", f, "--store", s, "--json"],
        vec!["report", f, "--store", s, "--out", o],
        vec!["sweep", f, "--store", s, "--dry-run"],
    ] {
        let out = stkd(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            beside(),
            ["stkd.db"],
            "{args:?} left files beside the store"
        );
    }
    assert_eq!(status_json(&file, &store)[0]["status"], "done");
    // While a writer has the store open, a reader sees what it wrote through its WAL.
    let mut writer = stkd::store::Store::open(&store).unwrap();
    let info = stkd::store::ExperimentInfo {
        name: "other".into(),
        file: "other.yaml".into(),
        yaml_sha256: "x".into(),
    };
    let run = stkd::store::NewRun {
        hash: "h".into(),
        label: "written meanwhile".into(),
        dataset: "pemsd8".into(),
        config_json: "{}".into(),
        deps: vec![],
    };
    writer.register(&info, &[run]).unwrap();
    let out = stkd(&["status", "--store", s, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[1]["run"], "written meanwhile", "{v}");
    drop(writer);
    assert_eq!(beside(), ["stkd.db"], "the writer's files went with it");
}
