//! Results that outlive the machine (`stkd store export`, records imported by `sweep`): a fresh
//! clone holding only the committed records recomputes nothing finished, reports the same
//! bytes, and resumes a run killed mid-training from its recorded checkpoint with the metrics
//! of an uninterrupted run.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -r {} {}", from.display(), to.display());
}

fn export(file: &Path, store: &Path) {
    let out = stkd(&[
        "store",
        "export",
        file.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn report(file: &Path, store: &Path, out: &Path) -> String {
    let name = report_into(file, store, out, "md");
    std::fs::read_to_string(out.join(format!("{name}.md"))).unwrap()
}

fn outcome(store_dir: &Path, hash: &str) -> serde_json::Value {
    let p = store_dir.join("runs").join(hash).join("outcome.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

#[test]
fn a_fresh_clone_with_the_records_recomputes_nothing_and_reports_the_same_bytes() {
    let a = tmp("archive-a");
    let file = write_exp(
        &a,
        "  - {label: t, model: student, loss: mse}\n  - {label: s, model: student, teacher: t, loss: rd-l2, beta: 0.5}\n",
    );
    let store_a = a.join("stkd.db");
    let out = sweep(&file, &store_a, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(executed_now(&out), 2);
    export(&file, &store_a);

    // The "fresh clone": the records folder and nothing else.
    let b = tmp("archive-b");
    copy_tree(&a.join("records"), &b.join("records"));
    let store_b = b.join("stkd.db");
    // Its dry run already counts the recorded runs as done, in the plan and in the estimate, and
    // creates nothing.
    let out = sweep(&file, &store_b, &["--dry-run"]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{plan}");
    assert!(
        plan.contains("2 runs, 2 already done (2 in the records only"),
        "{plan}"
    );
    assert!(plan.contains("| recorded |"), "{plan}");
    assert!(plan.contains("2 finished runs took"), "{plan}");
    assert!(plan.contains("0 runs left"), "{plan}");
    assert!(!store_b.exists());
    let out = sweep(&file, &store_b, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(executed_now(&out), 0, "{err}");
    assert!(err.contains("2 finished runs"), "{err}");
    let rows = status_rows(&file, &store_b);
    assert!(rows.iter().all(|r| r.status == "done"), "{rows:?}");
    // The teacher's model is where its dependants look for it.
    let teacher = &rows.iter().find(|r| r.run.starts_with("t ")).unwrap().hash;
    assert!(b.join("runs").join(teacher).join("model.bin").is_file());
    // Same results, finish times included: the same report.
    assert_eq!(
        report(&file, &store_a, &a.join("rep")),
        report(&file, &store_b, &b.join("rep"))
    );
    // A second sweep has nothing left to import or run.
    let out = sweep(&file, &store_b, &[]);
    assert_eq!(executed_now(&out), 0);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("from the committed records"));
}

#[test]
fn a_run_killed_mid_training_resumes_from_its_recorded_checkpoint() {
    let runs = "  - {label: s, model: student, loss: mse, epochs: 4, max_steps_per_epoch: 25}\n";
    // Uninterrupted reference.
    let c = tmp("archive-ref");
    let file_c = write_exp(&c, runs);
    let out = sweep(&file_c, &c.join("stkd.db"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = status_rows(&file_c, &c.join("stkd.db"))[0].hash.clone();

    // Killed (-9, sweep and worker) at a random moment after its first checkpoint.
    let a = tmp("archive-killed");
    let file = write_exp(&a, runs);
    let store_a = a.join("stkd.db");
    let mut child = sweep_cmd(&file, &store_a, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = a.join("runs").join(&hash).join("resume/state.json");
    wait_for(Duration::from_secs(120), "a checkpoint", || state.exists());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::thread::sleep(Duration::from_millis(u64::from(nanos % 400)));
    let workers = run_one_workers(&store_a);
    let _ = child.kill();
    for pid in workers {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
    let _ = child.wait();
    let ck: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let done = ck["epoch"].as_u64().unwrap();
    assert!((1..4).contains(&done), "checkpoint after epoch {done}");
    export(&file, &store_a);
    assert!(a
        .join("records")
        .join(&hash)
        .join("resume/state.json")
        .is_file());

    // A fresh clone with the records resumes the run after its checkpoint's epoch.
    let b = tmp("archive-resumed");
    copy_tree(&a.join("records"), &b.join("records"));
    let out = sweep(&file, &b.join("stkd.db"), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("1 checkpoints of unfinished runs"), "{err}");
    let (resumed, reference) = (outcome(&b, &hash), outcome(&c, &hash));
    assert_eq!(resumed["test"], reference["test"]);
    assert_eq!(resumed["val"], reference["val"]);
    assert_eq!(resumed["best_epoch"], reference["best_epoch"]);
    let curve = |o: &serde_json::Value| -> Vec<(f64, f64)> {
        o["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["train_loss"].as_f64().unwrap(),
                    e["val_mae"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(curve(&resumed), curve(&reference));
    // The recorded epochs were not trained again: their timings are the killed run's.
    let seconds = |v: &serde_json::Value| v["seconds"].as_f64().unwrap();
    for k in 0..done as usize {
        assert_eq!(
            seconds(&resumed["epochs"][k]),
            seconds(&ck["state"]["curve"][k]),
            "epoch {}",
            k + 1
        );
    }
}

#[test]
fn a_run_whose_result_missed_the_store_is_taken_from_its_folder_not_trained_again() {
    // The window of a kill after a run's outcome is written but before the store records it:
    // here the whole store is lost and the run folders stay.
    let a = tmp("archive-lost-store");
    let file = write_exp(&a, "  - {label: s, model: student, loss: mse, epochs: 3}\n");
    let store = a.join("stkd.db");
    let out = sweep(&file, &store, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seconds = |store: &Path, dir: &str| -> String {
        let name = report_into(&file, store, &a.join(dir), "csv");
        let csv = std::fs::read_to_string(a.join(dir).join(format!("{name}-runs.csv"))).unwrap();
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let col = header.iter().position(|h| *h == "train_seconds").unwrap();
        csv.lines()
            .nth(1)
            .unwrap()
            .split(',')
            .nth(col)
            .unwrap()
            .to_string()
    };
    let before = seconds(&store, "before");
    for f in ["stkd.db", "stkd.db-wal", "stkd.db-shm"] {
        let _ = std::fs::remove_file(a.join(f));
    }
    let out = sweep(&file, &store, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Recorded as done with the first execution's training time: nothing was trained again.
    assert_eq!(status(&file, &store)[0].1, "done");
    assert_eq!(seconds(&store, "after"), before);
}

#[test]
fn a_recorded_search_is_whole_on_a_fresh_clone() {
    let a = tmp("archive-search-a");
    let file = write_exp(
        &a,
        "  - {label: s, model: student, epochs: 3, lr: {log_uniform: [1.0e-6, 1.0e-2]}}\n\
         search: {sampler: tpe, trials: 4, seed: 3, pruner: {kind: median, warmup_epochs: 0, startup_trials: 1}}\n",
    );
    let store_a = a.join("stkd.db");
    let out = sweep(&file, &store_a, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(executed_now(&out), 4);
    export(&file, &store_a);
    let before = status(&file, &store_a);
    assert!(before.iter().any(|r| r.1 == "pruned"), "{before:?}");
    // A pruned trial is final: its record is its trial.json, without a resume checkpoint.
    for e in std::fs::read_dir(a.join("records")).unwrap().flatten() {
        let trial = std::fs::read_to_string(e.path().join("trial.json")).unwrap_or_default();
        if trial.contains("\"pruned\": true") {
            assert!(!e.path().join("resume").exists(), "{:?}", e.path());
        }
    }

    let b = tmp("archive-search-b");
    copy_tree(&a.join("records"), &b.join("records"));
    let store_b = b.join("stkd.db");
    let out = sweep(&file, &store_b, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Every trial, finished or pruned, came back with its number: nothing ran, none was added.
    assert_eq!(executed_now(&out), 0, "{err}");
    let after = status(&file, &store_b);
    let key = |v: &[(String, String, u64)]| -> Vec<(String, String)> {
        v.iter().map(|r| (r.0.clone(), r.1.clone())).collect()
    };
    assert_eq!(key(&after), key(&before));
    assert_eq!(
        report(&file, &store_a, &a.join("rep")),
        report(&file, &store_b, &b.join("rep"))
    );
}
