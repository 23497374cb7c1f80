//! End-to-end sweeps of the `stkd` binary on a small slice of the real data (PeMSD8's four
//! available days, 2/1/1, the student network, two minibatches per epoch): completion and reuse,
//! kill/resume, two concurrent sweeps on one store, failure isolation, validation errors.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

const THREE_RUNS: &str = "  - {label: teacher, model: student}\n  - {label: ord, model: student, teacher: teacher, loss: ord, alpha1: 0.5}\n  - {label: plain2, model: student, seeds: [2]}\n";

#[test]
fn sweep_completes_then_reuses_everything() {
    let dir = tmp("complete");
    let file = write_exp(&dir, THREE_RUNS);
    let store = dir.join("stkd.db");
    let out = sweep(&file, &store, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(executed_now(&out), 3);
    let st = status(&file, &store);
    assert_eq!(st.len(), 3);
    assert!(st.iter().all(|(_, s, a)| s == "done" && *a == 1), "{st:?}");
    // Checkpoints sit next to the store.
    let runs = std::fs::read_dir(dir.join("runs")).unwrap().count();
    assert_eq!(runs, 3);
    // A second sweep of the same file does nothing.
    let again = sweep(&file, &store, &[]);
    assert!(again.status.success());
    assert_eq!(executed_now(&again), 0);
    // The dry run shows the teacher shared by the student and everything done.
    let plan = sweep(&file, &store, &["--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert!(runs.iter().all(|r| r["status"] == "done"));
    assert_eq!(runs[1]["waits_for"][0], runs[0]["hash"]);
}

#[test]
fn killed_sweep_resumes_without_losing_or_repeating_runs() {
    let dir = tmp("kill");
    let file = write_exp(&dir, THREE_RUNS);
    let store = dir.join("stkd.db");
    let mut child: Child = sweep_cmd(&file, &store, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until one run is done and another is running, then kill -9 the sweep (its run
    // process dies with it).
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "sweep made no progress"
        );
        if store.exists() {
            let st = status(&file, &store);
            let done = st.iter().filter(|r| r.1 == "done").count();
            let running = st.iter().filter(|r| r.1 == "running").count();
            if done >= 1 && running == 1 {
                break;
            }
            assert!(done < 3, "sweep finished before it could be killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = status(&file, &store);
    let done_before: Vec<String> = before
        .iter()
        .filter(|r| r.1 == "done")
        .map(|r| r.0.clone())
        .collect();
    assert!(before.iter().any(|r| r.1 == "running"), "{before:?}");
    // Resume: the interrupted run's heartbeat goes stale after 10 s (the smallest limit
    // allowed); the new sweep waits for that, then claims it.
    let out = sweep(&file, &store, &["--stale-after", "10"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        executed_now(&out),
        3 - done_before.len(),
        "finished runs are not repeated"
    );
    let after = status(&file, &store);
    assert!(after.iter().all(|r| r.1 == "done"), "{after:?}");
    for (name, _, attempts) in &after {
        if done_before.contains(name) {
            assert_eq!(*attempts, 1, "{name} finished before the kill and ran once");
        }
    }
    assert!(
        after.iter().any(|r| r.2 == 2),
        "the interrupted run was claimed again: {after:?}"
    );
}

#[test]
fn two_concurrent_sweeps_run_each_run_once() {
    let dir = tmp("concurrent");
    let runs: String = (1..=4)
        .map(|s| format!("  - {{label: s{s}, model: student, seeds: [{s}]}}\n"))
        .collect();
    let file = write_exp(&dir, &runs);
    let store = dir.join("stkd.db");
    let a = sweep_cmd(&file, &store, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = sweep_cmd(&file, &store, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(oa.status.success() && ob.status.success());
    assert_eq!(
        executed_now(&oa) + executed_now(&ob),
        4,
        "each run executed exactly once"
    );
    let st = status(&file, &store);
    assert!(st.iter().all(|r| r.1 == "done" && r.2 == 1), "{st:?}");
}

#[test]
fn a_failing_run_skips_its_dependants_and_the_rest_go_on() {
    let dir = tmp("failure");
    // lr = 1e30: Adam's first step moves every weight by ~1e30, the next loss overflows and
    // the run stops as diverged.
    let runs = "  - {label: bad, model: student, lr: 1.0e+30, max_steps_per_epoch: 3}\n  - {label: child, model: student, teacher: bad, loss: ord}\n  - {label: good, model: student}\n";
    let file = write_exp(&dir, runs);
    let store = dir.join("stkd.db");
    let out = sweep(&file, &store, &[]);
    assert_eq!(out.status.code(), Some(1), "a sweep with failures exits 1");
    let st = status(&file, &store);
    let get = |l: &str| st.iter().find(|r| r.0.starts_with(l)).unwrap().1.clone();
    assert_eq!(get("bad"), "failed");
    assert_eq!(get("child"), "skipped");
    assert_eq!(get("good"), "done");
    let json = stkd(&[
        "status",
        file.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--json",
    ]);
    let text = String::from_utf8_lossy(&json.stdout);
    assert!(text.contains("diverged"), "the error is recorded: {text}");
    // --retry-failed re-queues them (and they fail the same way).
    let retry = sweep(&file, &store, &["--retry-failed"]);
    assert_eq!(executed_now(&retry), 1);
}

#[test]
fn invalid_files_write_nothing() {
    let dir = tmp("invalid");
    let file = write_exp(
        &dir,
        "  - {label: a, model: student, alpha1: 2}\n  - {label: b, modle: base}\n",
    );
    let store = dir.join("stkd.db");
    let out = sweep(&file, &store, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exp.yaml:6:") && err.contains("alpha1"),
        "{err}"
    );
    assert!(
        err.contains("exp.yaml:7:") && err.contains("did you mean `model`"),
        "{err}"
    );
    assert!(!store.exists(), "nothing written to the store");
}

/// A TPE search with median pruning: trials are proposed from the store one at a time, the
/// pruner stops some of them (`pruned`, with their curve), a sweep killed mid-search resumes
/// without repeating a finished trial, and the budget is never exceeded.
#[test]
fn a_killed_search_resumes_without_repeating_trials_and_prunes_hopeless_ones() {
    let dir = tmp("search");
    let file = write_exp(
        &dir,
        "  - {label: s, model: student, epochs: 3, lr: {log_uniform: [1.0e-6, 1.0e-2]}}\n\
         search: {sampler: tpe, trials: 6, seed: 3, pruner: {kind: median, warmup_epochs: 0, startup_trials: 1}}\n",
    );
    let store = dir.join("stkd.db");
    let mut child: Child = sweep_cmd(&file, &store, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let finished = |st: &[(String, String, u64)]| {
        st.iter()
            .filter(|r| r.1 == "done" || r.1 == "pruned")
            .count()
    };
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "search made no progress"
        );
        if store.exists() && finished(&status(&file, &store)) >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = status(&file, &store);
    let out = sweep(&file, &store, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = status(&file, &store);
    assert_eq!(after.len(), 6, "{after:?}");
    for (i, r) in after.iter().enumerate() {
        assert!(r.0.contains(&format!("trial={} ", i + 1)), "{after:?}");
        assert!(r.1 == "done" || r.1 == "pruned", "{after:?}");
    }
    // Trials finished before the kill were not run again.
    for (run, st, attempts) in &before {
        if st == "done" || st == "pruned" {
            let now = after.iter().find(|r| &r.0 == run).unwrap();
            assert_eq!((&now.1, now.2), (st, *attempts), "{run}");
        }
    }
    assert!(after.iter().any(|r| r.1 == "pruned"), "{after:?}");
    assert!(after.iter().any(|r| r.1 == "done"), "{after:?}");
    // Nothing left: the budget is spent.
    let again = sweep(&file, &store, &[]);
    assert!(again.status.success());
    assert_eq!(executed_now(&again), 0);
    assert_eq!(status(&file, &store).len(), 6);
}

/// Two sweeps on one store share a search: one numbering, one budget, each trial run once;
/// the grid sampler proposes every combination exactly once.
#[test]
fn two_sweeps_share_one_search() {
    let dir = tmp("search-shared");
    let file = write_exp(
        &dir,
        "  - {label: s, model: student, lr: {choice: [1.0e-3, 2.0e-3]}, dropout: {choice: [0.0, 0.1, 0.2]}}\n\
         search: {sampler: grid, trials: 10}\n",
    );
    let store = dir.join("stkd.db");
    let spawn = || {
        sweep_cmd(&file, &store, &["--per-device", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        oa.status.success(),
        "{}",
        String::from_utf8_lossy(&oa.stderr)
    );
    assert!(
        ob.status.success(),
        "{}",
        String::from_utf8_lossy(&ob.stderr)
    );
    // The grid has 6 combinations: the budget of 10 stops there.
    assert_eq!(executed_now(&oa) + executed_now(&ob), 6);
    let st = status(&file, &store);
    assert_eq!(st.len(), 6, "{st:?}");
    let mut combos: Vec<String> = Vec::new();
    for (i, (run, state, attempts)) in st.iter().enumerate() {
        assert!(run.contains(&format!("trial={} ", i + 1)), "{st:?}");
        assert_eq!((state.as_str(), *attempts), ("done", 1), "{st:?}");
        let combo = run
            .split_once(&format!("trial={} ", i + 1))
            .unwrap()
            .1
            .to_string();
        assert!(!combos.contains(&combo), "{st:?}");
        combos.push(combo);
    }
}

#[test]
fn warm_up_runs_each_kind_of_run_once_before_the_runs() {
    let dir = tmp("warmup");
    let file = write_exp(&dir, THREE_RUNS);
    let store = dir.join("stkd.db");
    // On the CPU only when asked (`auto` warms CUDA devices); the two plain students share one
    // shape, the ORD student is the other.
    let out = sweep(&file, &store, &["--warm-up", "always"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("for 2 kind(s) of run"), "{err}");
    assert!(
        err.contains("warm-up 1/2: [1,2,4][4,2,8] N=170 b="),
        "{err}"
    );
    assert!(
        err.contains("warm-up 2/2:") && err.contains("ord from [1,2,4][4,2,8]"),
        "{err}"
    );
    let ready = err.find("kernel caches ready").expect("the warm-up ended");
    assert!(
        ready < err.find("start ").expect("runs started"),
        "warm-up first: {err}"
    );
    assert_eq!(executed_now(&out), 3);
    // Nothing left to run: nothing to warm up.
    let again = sweep(&file, &store, &["--warm-up", "always"]);
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("warm-up"));
}
