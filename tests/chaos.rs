//! End-to-end checks of the faults an outside chaos test of the sweep runner found (issue 18):
//! one run executed by several workers at once, finite divergence reported as a result,
//! SIGTERM/SIGHUP, read-only commands that wrote to the store, and unclear messages. Every test
//! runs the real `stkd` binary with real child processes on PeMSD8's small slice.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use stkd::store::{RunStatus, Store};

mod common;
use common::*;

/// One student run far longer than any test waits for (about 0.2 s per epoch here): a worker
/// that goes on training instead of stopping is seen still running.
const LONG_RUN: &str = "  - {label: long, model: student, epochs: 400}\n";

/// Starts a sweep of `file` with a piped stderr and waits until its run is executing (its
/// worker process exists and the store says running). Returns the sweep, its stderr and the
/// run's hash.
fn start_long_sweep(
    file: &Path,
    store: &Path,
) -> (
    std::process::Child,
    std::sync::Arc<std::sync::Mutex<String>>,
    String,
) {
    let mut child = sweep_cmd(file, store, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = capture_stderr(&mut child);
    wait_for(Duration::from_secs(60), "the run to start", || {
        // "train loss": an epoch has ended (not necessarily the first: runs resume).
        err.lock().unwrap().contains(" train loss ") && !run_one_workers(store).is_empty()
    });
    let rows = status_rows(file, store);
    assert_eq!(rows[0].status, "running", "{rows:?}");
    (child, err, rows[0].hash.clone())
}

#[test]
fn stale_after_below_the_safe_margin_is_refused() {
    let dir = tmp("chaos-stale-limit");
    let file = write_exp(&dir, "  - {label: a, model: student}\n");
    let store = dir.join("stkd.db");
    for value in ["1", "0", "9.5"] {
        let out = sweep(&file, &store, &["--stale-after", value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("'{value}' for '--stale-after"))
                && err.contains("heartbeat every 2 s")
                && err.contains("allowed: 10 or more seconds"),
            "{err}"
        );
        assert!(!store.exists(), "nothing was run or written");
    }
    // Not a number of seconds at all: said so, with what is allowed.
    for value in ["inf", "nan", "1e999"] {
        let out = sweep(&file, &store, &["--stale-after", value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("'{value}' for '--stale-after"))
                && err.contains(&format!("`{value}` is not a finite number of seconds"))
                && err.contains("allowed: a number of seconds, 10 or more")
                && !err.contains("below the safe minimum"),
            "{err}"
        );
        assert!(!store.exists(), "nothing was run or written");
    }
}

#[test]
fn a_worker_whose_claim_is_taken_over_stops_at_once_and_writes_nothing() {
    let dir = tmp("chaos-takeover");
    let file = write_exp(&dir, LONG_RUN);
    let store = dir.join("stkd.db");
    let (mut sweep, err, hash) = start_long_sweep(&file, &store);
    let workers = run_one_workers(&store);
    assert_eq!(workers.len(), 1);
    // Another worker takes the live run over, as a sweep with a stale limit shorter than the
    // heartbeat interval did (a negative limit makes any heartbeat stale).
    let mut s = Store::open(&store).unwrap();
    assert!(s.claim(&hash, "intruder", "cpu", -1e9).unwrap());
    let t0 = Instant::now();
    wait_for(
        Duration::from_secs(8),
        "the worker that lost its claim to stop",
        || run_one_workers(&store).is_empty(),
    );
    let stopped_after = t0.elapsed();
    wait_for(Duration::from_secs(5), "the sweep to report it", || {
        err.lock()
            .unwrap()
            .contains("claim taken over by worker intruder")
    });
    let row = s.run(&hash).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Running);
    assert_eq!(
        row.claimed_by.as_deref(),
        Some("intruder"),
        "the old worker wrote no outcome"
    );
    assert_eq!(row.attempts, 2);
    assert!(
        !dir.join("runs").join(&hash).join("outcome.json").exists(),
        "no result written to the run folder"
    );
    sweep.kill().unwrap();
    sweep.wait().unwrap();
    eprintln!("worker stopped {stopped_after:?} after the takeover");
}

#[test]
fn a_run_folder_is_written_by_one_worker_at_a_time() {
    let dir = tmp("chaos-folder-lock");
    let file = write_exp(&dir, "  - {label: a, model: student}\n");
    let store = dir.join("stkd.db");
    let plan = sweep(&file, &store, &["--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let hash = v["runs"][0]["hash"].as_str().unwrap().to_string();
    let run_dir = dir.join("runs").join(&hash);
    std::fs::create_dir_all(&run_dir).unwrap();
    let lock = run_dir.join(".lock");
    // Another worker holds the folder (flock(1) standing in for a worker that lost its claim
    // and has not stopped yet) for 4 s.
    let hold = Duration::from_secs(4);
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .arg("sleep")
        .arg(hold.as_secs().to_string())
        .spawn()
        .unwrap();
    let held_at = Instant::now();
    wait_for(Duration::from_secs(5), "flock to take the lock", || {
        let probe = std::process::Command::new("flock")
            .args(["-n", "-E", "99"])
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap();
        probe.code() == Some(99)
    });
    let mut child = sweep_cmd(&file, &store, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = capture_stderr(&mut child);
    wait_for(
        Duration::from_secs(5),
        "the worker to wait for the folder",
        || err.lock().unwrap().contains("is locked by another worker"),
    );
    // While the folder is held the worker writes nothing into it (the run alone takes under a
    // second).
    while held_at.elapsed() + Duration::from_millis(300) < hold {
        let written: Vec<_> = std::fs::read_dir(&run_dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n != ".lock")
            .collect();
        assert!(written.is_empty(), "written while locked: {written:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    holder.wait().unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert!(status.success(), "{}", err.lock().unwrap());
    let rows = status_rows(&file, &store);
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("done", 1));
    assert!(run_dir.join("outcome.json").exists());
}

#[test]
fn sigterm_and_sighup_stop_a_sweep_like_ctrl_c() {
    let dir = tmp("chaos-signals");
    let file = write_exp(&dir, LONG_RUN);
    let store = dir.join("stkd.db");
    for (attempt, (sig, number)) in [("TERM", 15), ("HUP", 1), ("INT", 2)].iter().enumerate() {
        let (mut sweep, err, _) = start_long_sweep(&file, &store);
        let t0 = Instant::now();
        let kill = std::process::Command::new("kill")
            .args(["-s", sig, &sweep.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = wait_exit(&mut sweep, Duration::from_secs(20));
        let err = err.lock().unwrap().clone();
        assert_eq!(
            status.code(),
            Some(128 + number),
            "SIG{sig}: {status:?}\n{err}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "SIG{sig} took {:?}",
            t0.elapsed()
        );
        assert!(err.contains(&format!("interrupted by SIG{sig}")), "{err}");
        // Back to pending at once (not left running until its heartbeat goes stale), and no
        // worker left behind.
        let rows = status_rows(&file, &store);
        assert_eq!(rows[0].status, "pending", "SIG{sig}: {rows:?}");
        assert_eq!(rows[0].attempts, attempt as u64 + 1);
        assert!(
            run_one_workers(&store).is_empty(),
            "SIG{sig}: a worker was left"
        );
    }
}

#[test]
fn a_run_diverging_to_finite_nonsense_fails_and_its_dependants_are_skipped() {
    let dir = tmp("chaos-divergence");
    // lr = 1e6: Adam's first step moves every weight by about 1e6; losses and predictions stay
    // finite (validation MAE of millions of mph) but mean nothing.
    let runs = "  - {label: wild, model: student, lr: 1.0e+6, epochs: 2}\n  - {label: kid, model: student, teacher: wild, loss: ord}\n  - {label: good, model: student}\n";
    let file = write_exp(&dir, runs);
    let store = dir.join("stkd.db");
    let out = sweep(&file, &store, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let rows = status_rows(&file, &store);
    let get = |l: &str| rows.iter().find(|r| r.run.starts_with(l)).unwrap().clone();
    let wild = get("wild");
    assert_eq!(wild.status, "failed", "{rows:?}");
    let why = wild.error.unwrap_or_default();
    assert!(
        why.starts_with("training diverged at epoch 1: validation MAE")
            && why.contains("above 200 mph"),
        "{why}"
    );
    assert_eq!(get("kid").status, "skipped");
    assert_eq!(get("good").status, "done");
    assert_eq!(executed_now(&out), 2, "the dependant never ran");
}

/// Runs `stkd` as an unprivileged user when the tests run as root (whom file permissions do
/// not stop), so that a read-only folder is read-only for it.
fn stkd_unprivileged(args: &[&str], probe: &Path) -> std::process::Output {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let mut c = std::process::Command::new(BIN);
    c.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    if std::fs::metadata(probe).unwrap().uid() == 0 {
        c.uid(65534).gid(65534);
    }
    c.output().unwrap()
}

#[test]
fn read_only_commands_never_write_and_work_on_a_read_only_store() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp("chaos-read-only");
    let file = write_exp(&dir, "  - {label: a, model: student}\n");
    let f = file.to_str().unwrap();
    let out_dir = dir.join("reports");
    std::fs::create_dir_all(&out_dir).unwrap();
    let o = out_dir.to_str().unwrap();
    // Where the unprivileged user may write its reports.
    let out_any = dir.join("reports-any");
    std::fs::create_dir_all(&out_any).unwrap();
    std::fs::set_permissions(&out_any, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o_any = out_any.to_str().unwrap();

    // 1. An empty (0-byte) store: read, never given a schema.
    let empty = dir.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let e = empty.to_str().unwrap();
    for args in [
        vec!["status", "--store", e],
        vec!["status", f, "--store", e, "--json"],
        vec!["report", f, "--store", e, "--out", o],
        vec!["sweep", f, "--store", e, "--dry-run"],
    ] {
        let out = stkd(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::metadata(&empty).unwrap().len(),
            0,
            "{args:?} wrote"
        );
    }
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("empty.db-")),
        "{names:?}"
    );

    // 2. A real store in a read-only folder.
    let ro = dir.join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    let store = ro.join("stkd.db");
    let s = store.to_str().unwrap();
    let made = sweep(&file, &store, &[]);
    assert!(made.status.success());
    let bytes = std::fs::read(&store).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let outputs: Vec<_> = [
        vec!["status", "--store", s],
        vec!["status", f, "--store", s, "--json"],
        vec!["report", f, "--store", s, "--out", o_any],
        vec!["sweep", f, "--store", s, "--dry-run", "--json"],
        vec!["sweep", f, "--store", s],
    ]
    .into_iter()
    .map(|args| (args.clone(), stkd_unprivileged(&args, &file)))
    .collect();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (status_args, status_out) = &outputs[1];
    let v: serde_json::Value = serde_json::from_slice(&status_out.stdout).unwrap_or_else(|_| {
        panic!(
            "{status_args:?}: {}",
            String::from_utf8_lossy(&status_out.stderr)
        )
    });
    assert_eq!(v[0]["status"], "done");
    for (args, out) in &outputs[..4] {
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let plan: serde_json::Value = serde_json::from_slice(&outputs[3].1.stdout).unwrap();
    assert_eq!(plan["runs"][0]["status"], "done");
    // A sweep (which writes) on a read-only store says so; here it has nothing to run, so it
    // only needs to register the experiment.
    let (_, sweep_out) = &outputs[4];
    let err = String::from_utf8_lossy(&sweep_out.stderr);
    assert!(!sweep_out.status.success());
    assert!(
        err.contains("read-only") && !err.contains("is it an SQLite file"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&store).unwrap(),
        bytes,
        "the store is unchanged"
    );
}

#[test]
fn error_messages_name_the_problem_without_debug_formatting() {
    let dir = tmp("chaos-messages");
    // An unknown dataset is shown as written.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\ndatasets: [pemsd9]\nruns:\n  - {label: a, model: student}\n",
    )
    .unwrap();
    let out = sweep(&bad, &dir.join("stkd.db"), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("unknown dataset `pemsd9`"), "{err}");
    assert!(!err.contains("Str("), "{err}");

    // A store whose folder is in fact a file.
    let file = write_exp(&dir, "  - {label: a, model: student}\n");
    let blocker = dir.join("results");
    std::fs::write(&blocker, "not a folder").unwrap();
    let store = blocker.join("stkd.db");
    let out = sweep(&file, &store, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{} is a file, not a folder", blocker.display())),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
}
