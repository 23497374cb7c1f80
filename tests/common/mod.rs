//! Helpers shared by the end-to-end tests (`tests/sweep.rs`, `tests/chaos.rs`): temporary
//! folders, small experiment files and the `stkd` binary run as a real child process.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_stkd");

/// A fresh, empty folder for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("sweep-tests")
        .join(name);
    if d.exists() {
        // A read-only folder left by an interrupted run of a test.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwx")
            .arg(&d)
            .status();
    }
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An experiment file on PeMSD8's four available days (2/1/1), one epoch of two minibatches
/// per run unless a run says otherwise. Runs this short learn next to nothing, so the file
/// turns off the rule that a run must beat predicting the mean (`mean_check: false`, in no
/// run's hash; the rule is tested in `tests/faults.rs`).
pub fn write_exp(dir: &Path, runs: &str) -> PathBuf {
    let text = format!(
        "name: {}\ndatasets: [pemsd8]\ndata: {{split_days: {{pemsd8: [2, 1, 1]}}}}\n\
         defaults: {{epochs: 1, batch_size: 16, max_steps_per_epoch: 2, test_runs: 0}}\nruns:\n{runs}\
         mean_check: false\n",
        dir.file_name().unwrap().to_str().unwrap()
    );
    let p = dir.join("exp.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn stkd(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

pub fn sweep_cmd(file: &Path, store: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("sweep")
        .arg(file)
        .arg("--store")
        .arg(store)
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

pub fn sweep(file: &Path, store: &Path, extra: &[&str]) -> Output {
    sweep_cmd(file, store, extra).output().unwrap()
}

/// One row of `stkd status --json`.
#[derive(Debug, Clone)]
pub struct StatusRow {
    pub run: String,
    pub status: String,
    pub attempts: u64,
    pub hash: String,
    pub error: Option<String>,
}

/// `stkd status FILE --json` as JSON.
pub fn status_json(file: &Path, store: &Path) -> serde_json::Value {
    let out = stkd(&[
        "status",
        file.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn status_rows(file: &Path, store: &Path) -> Vec<StatusRow> {
    let v = status_json(file, store);
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| StatusRow {
            run: r["run"].as_str().unwrap().to_string(),
            status: r["status"].as_str().unwrap().to_string(),
            attempts: r["attempts"].as_u64().unwrap(),
            hash: r["hash"].as_str().unwrap().to_string(),
            error: r["error"].as_str().map(str::to_string),
        })
        .collect()
}

/// `stkd status --json` rows: (run, status, attempts).
pub fn status(file: &Path, store: &Path) -> Vec<(String, String, u64)> {
    status_rows(file, store)
        .into_iter()
        .map(|r| (r.run, r.status, r.attempts))
        .collect()
}

/// The "N executed now" figure of a sweep's summary line.
pub fn executed_now(out: &Output) -> usize {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("executed now"))
        .unwrap_or_else(|| panic!("no summary:\n{err}"));
    let before = line.split(" executed now").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Collects a child's stderr in the background (the child must have a piped stderr).
pub fn capture_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let err = child.stderr.take().expect("piped stderr");
    let t = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut t = t.lock().unwrap();
            t.push_str(&line);
            t.push('\n');
        }
    });
    text
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Process ids of the `stkd run-one` workers executing runs of `store`.
pub fn run_one_workers(store: &Path) -> Vec<u32> {
    let store = store.to_str().unwrap();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            args.contains(&b"run-one".as_slice()) && args.contains(&store.as_bytes())
        })
        .collect()
}

/// Waits for `child` to exit, at most `limit` (then kills it and panics).
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `stkd report FILE --format FORMAT` into `out` (asserted to succeed); the experiment's name,
/// which prefixes the files written (`write_exp` names the experiment after its folder).
pub fn report_into(file: &Path, store: &Path, out: &Path, format: &str) -> String {
    let o = stkd(&[
        "report",
        file.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        format,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    file.parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}
