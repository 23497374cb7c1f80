use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, unique store path under the temp dir (removed with its WAL files on drop).
struct TempDb(PathBuf);

impl TempDb {
    fn new(tag: &str) -> TempDb {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "stkd-store-test-{}-{t}-{n}-{tag}",
            std::process::id()
        ));
        TempDb(dir.join("sub").join("stkd.db"))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap().parent().unwrap());
    }
}

fn exp(name: &str) -> ExperimentInfo {
    ExperimentInfo {
        name: name.to_string(),
        file: format!("experiments/{name}.yaml"),
        yaml_sha256: format!("sha-{name}"),
    }
}

fn new_run(hash: &str, deps: &[&str]) -> NewRun {
    NewRun {
        hash: hash.to_string(),
        label: format!("label-{hash}"),
        dataset: "pemsd7".to_string(),
        config_json: format!("{{\"run\":\"{hash}\"}}"),
        deps: deps.iter().map(|d| d.to_string()).collect(),
    }
}

fn status(store: &Store, hash: &str) -> RunStatus {
    store.run(hash).unwrap().unwrap().status
}

fn sample_result() -> RunResult {
    RunResult {
        epochs: vec![
            EpochRow {
                epoch: 1,
                lr: 1e-3,
                train_loss: 0.5,
                val_mae: 3.25,
                seconds: 12.5,
            },
            EpochRow {
                epoch: 2,
                lr: 7e-4,
                train_loss: 0.25,
                val_mae: 2.875,
                seconds: 11.0,
            },
        ],
        metrics: vec![
            MetricRow {
                split: "val".into(),
                step: 3,
                mape: 5.5,
                mae: 2.25,
                rmse: 4.0,
            },
            MetricRow {
                split: "test".into(),
                step: 9,
                mape: 9.125,
                mae: 3.5,
                rmse: 6.75,
            },
        ],
        profile: Some(Profile {
            parameters: 454_358,
            flops: 12_345_678_901,
            test_time_s: Some(0.0625),
            test_time_runs: Some(10),
            test_time_batch: Some(50),
            device: "cuda:0".into(),
        }),
        attention: Some(Attention {
            picks: 17,
            elements: 1000,
        }),
        pruning: Some(Pruning {
            target_pct: 30.0,
            masked_share: 0.295,
            compact_parameters: 300_000,
            original_parameters: 454_358,
            speedup: Some(1.4),
        }),
        artefacts: vec![
            ("checkpoint".into(), "runs/aa/model.mpk".into()),
            ("log".into(), "runs/aa/train.log".into()),
        ],
        best_epoch: Some(2),
        train_seconds: 23.5,
    }
}

#[test]
fn open_creates_schema_and_reopen_keeps_data() {
    let db = TempDb::new("open");
    {
        let mut store = Store::open(&db.0).unwrap();
        assert_eq!(store.path(), db.0.as_path());
        store.register(&exp("e"), &[new_run("a", &[])]).unwrap();
    }
    assert!(db.0.exists());
    let store = Store::open(&db.0).unwrap();
    let v: i64 = store
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 4);
    let mode: String = store
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = store
        .conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let runs = store.runs(None).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].hash, "a");
    assert_eq!(runs[0].status, RunStatus::Pending);
    assert_eq!(runs[0].attempts, 0);
    assert_eq!(store.experiments().unwrap()[0].info, exp("e"));
}

#[test]
fn newer_schema_version_is_a_clear_error() {
    let db = TempDb::new("newer");
    {
        let store = Store::open(&db.0).unwrap();
        store
            .conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = Store::open(&db.0).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found, .. } if found == SCHEMA_VERSION + 1));
    let msg = err.to_string();
    assert!(msg.contains(&db.0.display().to_string()), "{msg}");
    assert!(msg.contains("newer"), "{msg}");
}

#[test]
fn a_file_that_is_not_sqlite_is_a_clear_error() {
    let db = TempDb::new("garbage");
    std::fs::create_dir_all(db.0.parent().unwrap()).unwrap();
    std::fs::write(&db.0, vec![b'x'; 4096]).unwrap();
    let msg = Store::open(&db.0).unwrap_err().to_string();
    assert!(msg.starts_with(&db.0.display().to_string()), "{msg}");
    assert!(msg.contains("not a database"), "{msg}");
}

#[test]
fn read_only_open_never_creates_or_writes() {
    let db = TempDb::new("read-only");
    let dir = db.0.parent().unwrap();
    // No store yet: nothing is created, not even the folder.
    assert!(Store::open_read_only(&db.0).unwrap().is_none());
    assert!(!dir.exists());
    // An empty file is a store without runs, and stays empty.
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&db.0, b"").unwrap();
    assert!(Store::open_read_only(&db.0).unwrap().is_none());
    assert_eq!(std::fs::metadata(&db.0).unwrap().len(), 0);
    let names = || -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    assert_eq!(names(), ["stkd.db"]);
    // A store: read, never written.
    {
        let mut store = Store::open(&db.0).unwrap();
        store.register(&exp("e"), &[new_run("a", &[])]).unwrap();
    }
    let bytes = std::fs::read(&db.0).unwrap();
    let ro = Store::open_read_only(&db.0).unwrap().unwrap();
    assert_eq!(ro.runs(None).unwrap().len(), 1);
    assert_eq!(ro.experiments().unwrap()[0].info, exp("e"));
    let err = ro.heartbeat("a", "w").unwrap_err().to_string();
    assert!(err.contains("read-only"), "{err}");
    drop(ro);
    assert_eq!(std::fs::read(&db.0).unwrap(), bytes);
    // A folder, a newer schema, an SQLite file that is not a store: clear errors.
    let err = Store::open_read_only(dir).unwrap_err();
    assert!(matches!(err, StoreError::IsAFolder { .. }), "{err}");
    assert!(
        err.to_string().contains("is a folder, not a store file"),
        "{err}"
    );
    Store::open(&db.0)
        .unwrap()
        .conn
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = Store::open_read_only(&db.0).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    let other = dir.join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = Store::open_read_only(&other).unwrap_err().to_string();
    assert!(err.contains("not an stkd store"), "{err}");
}

#[test]
fn a_file_where_the_store_folder_should_be_is_named() {
    let db = TempDb::new("blocked");
    let blocker = db.0.parent().unwrap();
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(blocker, "not a folder").unwrap();
    let want = format!("{} is a file, not a folder", blocker.display());
    let err = Store::open(&db.0).unwrap_err();
    assert!(
        matches!(&err, StoreError::FileInTheWay { file, .. } if file == blocker),
        "{err}"
    );
    assert!(err.to_string().contains(&want), "{err}");
    assert!(!err.to_string().contains("os error"), "{err}");
    let err = Store::open_read_only(&db.0).unwrap_err();
    assert!(err.to_string().contains(&want), "{err}");
}

#[test]
fn immutable_uri_escapes_what_uris_reserve() {
    assert_eq!(
        immutable_uri(Path::new("results/a b?c#d%e.db")),
        "file:results/a%20b%3Fc%23d%25e.db?immutable=1"
    );
    assert_eq!(
        immutable_uri(Path::new("/x/stkd.db")),
        "file:/x/stkd.db?immutable=1"
    );
}

#[test]
fn run_status_text() {
    for s in RunStatus::ALL {
        assert_eq!(s.to_string().parse::<RunStatus>().unwrap(), s);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
    }
    assert_eq!(RunStatus::Skipped.to_string(), "skipped");
    assert!("Done".parse::<RunStatus>().is_err());
}

#[test]
fn register_is_idempotent_and_shares_runs() {
    let db = TempDb::new("register");
    let mut store = Store::open(&db.0).unwrap();
    let t2 = [new_run("teacher", &[]), new_run("s1", &["teacher"])];
    let id = store.register(&exp("table2"), &t2).unwrap();
    assert_eq!(store.register(&exp("table2"), &t2).unwrap(), id);
    // Dependencies may come after their dependants in the list.
    let t4 = [new_run("s2", &["teacher"]), new_run("teacher", &[])];
    let id4 = store.register(&exp("table4"), &t4).unwrap();
    assert_ne!(id, id4);

    let all = store.runs(None).unwrap();
    let hashes: Vec<_> = all.iter().map(|r| r.hash.as_str()).collect();
    assert_eq!(hashes, ["teacher", "s1", "s2"]);
    let t2_runs: Vec<_> = store
        .runs(Some("table2"))
        .unwrap()
        .into_iter()
        .map(|r| r.hash)
        .collect();
    assert_eq!(t2_runs, ["teacher", "s1"]);
    let t4_runs = store.runs(Some("table4")).unwrap();
    assert_eq!(t4_runs[0].hash, "s2");
    assert_eq!(t4_runs[0].deps, ["teacher"]);
    assert_eq!(t4_runs[1].hash, "teacher");
    assert!(store.runs(Some("nope")).unwrap().is_empty());
    assert_eq!(store.experiments().unwrap().len(), 2);

    // A finished run stays finished when registered again.
    let r = store.claim_next(None, "w", "cpu", 60.0).unwrap().unwrap();
    assert_eq!(r.hash, "teacher");
    store.finish("teacher", "w", &RunResult::default()).unwrap();
    store.register(&exp("table2"), &t2).unwrap();
    assert_eq!(status(&store, "teacher"), RunStatus::Done);
    assert_eq!(store.runs(None).unwrap().len(), 3);
}

#[test]
fn register_rejects_unknown_dependencies_and_cycles_atomically() {
    let db = TempDb::new("baddeps");
    let mut store = Store::open(&db.0).unwrap();
    let err = store
        .register(&exp("e"), &[new_run("a", &["ghost"])])
        .unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");
    assert!(store.runs(None).unwrap().is_empty(), "nothing registered");
    let err = store
        .register(&exp("e"), &[new_run("a", &["b"]), new_run("b", &["a"])])
        .unwrap_err();
    assert!(matches!(err, StoreError::Cycle { .. }), "{err}");
    assert!(store.runs(None).unwrap().is_empty());
}

#[test]
fn dependants_wait_for_their_dependencies() {
    let db = TempDb::new("deps");
    let mut store = Store::open(&db.0).unwrap();
    store
        .register(
            &exp("e"),
            &[new_run("student", &["teacher"]), new_run("teacher", &[])],
        )
        .unwrap();
    assert!(!store.claim("student", "w", "cpu", 60.0).unwrap());
    let r = store.claim_next(None, "w", "cpu", 60.0).unwrap().unwrap();
    assert_eq!(r.hash, "teacher");
    assert_eq!(r.status, RunStatus::Running);
    assert_eq!(r.claimed_by.as_deref(), Some("w"));
    assert_eq!(r.device.as_deref(), Some("cpu"));
    assert_eq!(r.attempts, 1);
    assert!(r.heartbeat.is_some() && r.started == r.heartbeat);
    // The teacher is running: nothing else is runnable.
    assert!(store.claim_next(None, "w2", "cpu", 60.0).unwrap().is_none());
    store.heartbeat("teacher", "w").unwrap();
    store.finish("teacher", "w", &sample_result()).unwrap();
    let only = ["student".to_string()];
    let r = store
        .claim_next(Some(&only), "w", "cuda:0", 60.0)
        .unwrap()
        .unwrap();
    assert_eq!(r.hash, "student");
    assert!(store.claim_next(None, "w", "cpu", 60.0).unwrap().is_none());
    assert!(store
        .claim_next(Some(&[]), "w", "cpu", 60.0)
        .unwrap()
        .is_none());
    assert!(matches!(
        store.claim("ghost", "w", "cpu", 60.0),
        Err(StoreError::UnknownRun { .. })
    ));
}

#[test]
fn finish_writes_everything_and_result_reads_it_back() {
    let db = TempDb::new("finish");
    let mut store = Store::open(&db.0).unwrap();
    store.register(&exp("e"), &[new_run("a", &[])]).unwrap();
    assert_eq!(store.result("a").unwrap(), None);
    assert!(store.claim("a", "w", "cuda:0", 60.0).unwrap());
    // Live progress of the attempt; replaced by the final curve.
    store
        .record_epoch(
            "a",
            "w",
            &EpochRow {
                epoch: 7,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(store.result("a").unwrap(), None, "not done yet");
    let result = sample_result();
    store.finish("a", "w", &result).unwrap();
    let run = store.run("a").unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Done);
    assert!(run.finished.is_some());
    assert_eq!(store.result("a").unwrap(), Some(result.clone()));
    // Survives reopening.
    drop(store);
    let store = Store::open(&db.0).unwrap();
    assert_eq!(store.result("a").unwrap(), Some(result));
    assert_eq!(store.result("ghost").unwrap(), None);
}

#[test]
fn nan_values_round_trip() {
    let db = TempDb::new("nan");
    let mut store = Store::open(&db.0).unwrap();
    store.register(&exp("e"), &[new_run("a", &[])]).unwrap();
    assert!(store.claim("a", "w", "cpu", 60.0).unwrap());
    let mut result = RunResult::default();
    result.epochs.push(EpochRow {
        epoch: 1,
        lr: 1e-3,
        train_loss: f64::NAN,
        val_mae: f64::INFINITY,
        seconds: 1.0,
    });
    store.finish("a", "w", &result).unwrap();
    let back = store.result("a").unwrap().unwrap();
    assert!(back.epochs[0].train_loss.is_nan());
    assert_eq!(back.epochs[0].val_mae, f64::INFINITY);
    assert_eq!(back.best_epoch, None);
}

#[test]
fn fail_skips_transitive_dependants_and_retry_requeues() {
    let db = TempDb::new("fail");
    let mut store = Store::open(&db.0).unwrap();
    store
        .register(
            &exp("e"),
            &[
                new_run("teacher", &[]),
                new_run("student", &["teacher"]),
                new_run("pruned", &["student"]),
                new_run("other", &[]),
            ],
        )
        .unwrap();
    assert!(store.claim("teacher", "w", "cpu", 60.0).unwrap());
    let skipped = store.fail("teacher", "w", "out of memory").unwrap();
    assert_eq!(skipped, ["student", "pruned"]);
    let t = store.run("teacher").unwrap().unwrap();
    assert_eq!(t.status, RunStatus::Failed);
    assert_eq!(t.error.as_deref(), Some("out of memory"));
    for h in ["student", "pruned"] {
        let r = store.run(h).unwrap().unwrap();
        assert_eq!(r.status, RunStatus::Skipped);
        assert_eq!(
            r.error.as_deref(),
            Some("dependency label-teacher (teacher) failed")
        );
    }
    assert_eq!(status(&store, "other"), RunStatus::Pending);
    // A run registered later that needs the failed teacher is skipped at once.
    store
        .register(&exp("e2"), &[new_run("late", &["teacher"])])
        .unwrap();
    assert_eq!(status(&store, "late"), RunStatus::Skipped);

    // Re-queueing only a dependant leaves it skipped: its teacher is still failed.
    assert_eq!(store.retry_failed(Some(&["student".into()])).unwrap(), 0);
    assert_eq!(status(&store, "student"), RunStatus::Skipped);

    assert_eq!(store.retry_failed(None).unwrap(), 4);
    for h in ["teacher", "student", "pruned", "late", "other"] {
        let r = store.run(h).unwrap().unwrap();
        assert_eq!(r.status, RunStatus::Pending, "{h}");
        assert_eq!(r.error, None);
    }
    let r = store.claim_next(None, "w", "cpu", 60.0).unwrap().unwrap();
    assert_eq!((r.hash.as_str(), r.attempts), ("teacher", 2));
}

#[test]
fn stale_heartbeat_makes_a_run_claimable_again() {
    let db = TempDb::new("stale");
    let mut store = Store::open(&db.0).unwrap();
    store
        .register(&exp("e"), &[new_run("a", &[]), new_run("b", &[])])
        .unwrap();
    assert!(store.claim("a", "dead", "cpu", 60.0).unwrap());
    assert!(store.claim("b", "alive", "cpu", 60.0).unwrap());
    store
        .conn
        .execute(
            "UPDATE runs SET heartbeat = ?1 WHERE hash = 'a'",
            [now() - 600.0],
        )
        .unwrap();
    let r = store
        .claim_next(None, "new", "cuda:0", 60.0)
        .unwrap()
        .unwrap();
    assert_eq!(r.hash, "a");
    assert_eq!(r.attempts, 2);
    assert_eq!(r.claimed_by.as_deref(), Some("new"));
    // b's heartbeat is fresh: not claimable.
    assert!(store
        .claim_next(None, "new", "cpu", 60.0)
        .unwrap()
        .is_none());
    assert!(!store.claim("b", "new", "cpu", 60.0).unwrap());
    // The dead worker's heartbeat now reports the lost claim.
    let err = store.heartbeat("a", "dead").unwrap_err();
    assert!(
        err.to_string()
            .ends_with("run a is claimed by worker new, not dead"),
        "{err}"
    );
}

#[test]
fn finish_after_losing_the_claim_writes_nothing() {
    let db = TempDb::new("lost");
    let mut store = Store::open(&db.0).unwrap();
    store.register(&exp("e"), &[new_run("a", &[])]).unwrap();
    assert!(store.claim("a", "w1", "cpu", 60.0).unwrap());
    store
        .conn
        .execute("UPDATE runs SET heartbeat = 0 WHERE hash = 'a'", [])
        .unwrap();
    assert!(store.claim("a", "w2", "cpu", 60.0).unwrap());
    let err = store.finish("a", "w1", &sample_result()).unwrap_err();
    match &err {
        StoreError::LostClaim {
            claimed_by, status, ..
        } => {
            assert_eq!(claimed_by.as_deref(), Some("w2"));
            assert_eq!(*status, RunStatus::Running);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(&db.0.display().to_string()));
    let run = store.run("a").unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.claimed_by.as_deref(), Some("w2"));
    for table in [
        "epochs",
        "metrics",
        "profiles",
        "attention",
        "pruning",
        "artefacts",
    ] {
        let n: i64 = store
            .conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    assert!(store.fail("a", "w1", "x").is_err());
    assert!(store.release("a", "w1").is_err());
    assert_eq!(status(&store, "a"), RunStatus::Running);
    // The holder can release (Ctrl-C) and the run is pending again.
    store.release("a", "w2").unwrap();
    let run = store.run("a").unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Pending);
    assert_eq!(run.claimed_by, None);
    // Finishing a done run is also a lost claim.
    assert!(store.claim("a", "w3", "cpu", 60.0).unwrap());
    store.finish("a", "w3", &RunResult::default()).unwrap();
    let err = store.finish("a", "w3", &sample_result()).unwrap_err();
    assert!(err.to_string().contains("run a is done"), "{err}");
    assert_eq!(store.result("a").unwrap(), Some(RunResult::default()));
}

#[test]
fn concurrent_workers_claim_each_run_exactly_once() {
    let db = TempDb::new("concurrent");
    let n = 40;
    // Open concurrently on a fresh file: schema creation must not race.
    let opened: Vec<Store> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| Store::open(&db.0))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    drop(opened);
    {
        let mut store = Store::open(&db.0).unwrap();
        let runs: Vec<NewRun> = (0..n).map(|i| new_run(&format!("r{i:02}"), &[])).collect();
        store.register(&exp("e"), &runs).unwrap();
    }
    let claimed: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let path = db.0.clone();
                s.spawn(move || {
                    let worker = format!("worker{w}");
                    let mut store = Store::open(&path).unwrap();
                    let mut mine = Vec::new();
                    while let Some(run) = store.claim_next(None, &worker, "cpu", 3600.0).unwrap() {
                        assert_eq!(run.claimed_by.as_deref(), Some(worker.as_str()));
                        store.heartbeat(&run.hash, &worker).unwrap();
                        store.finish(&run.hash, &worker, &sample_result()).unwrap();
                        mine.push(run.hash);
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<String> = claimed.concat();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, n, "each run claimed once: {claimed:?}");
    assert_eq!(all.len(), n, "no duplicates");
    let store = Store::open(&db.0).unwrap();
    assert!(store
        .runs(None)
        .unwrap()
        .iter()
        .all(|r| r.status == RunStatus::Done && r.attempts == 1));
}

#[test]
fn trials_are_numbered_within_their_budget_and_a_pruned_trial_keeps_its_curve() {
    let db = TempDb::new("trials");
    let mut store = Store::open(&db.0).unwrap();
    store
        .register(&exp("s"), &[new_run("teacher", &[])])
        .unwrap();
    store.register_study("s/x/pemsd7", "s", "{}").unwrap();
    let mut numbers = Vec::new();
    for (n, h) in [(1, "t1"), (1, "t1b"), (2, "t2"), (3, "t3")] {
        numbers.push(
            store
                .add_trial("s/x/pemsd7", n, 2, "s", &new_run(h, &["teacher"]), "[0.5]")
                .unwrap(),
        );
    }
    // A second trial 1 lost the race; the third is over the budget of 2: neither is added.
    assert_eq!(numbers, vec![true, false, true, false]);
    assert!(store.run("t1b").unwrap().is_none());
    assert!(store.run("t3").unwrap().is_none());
    let trials = store.trials("s/x/pemsd7").unwrap();
    assert_eq!(trials.len(), 2);
    assert_eq!(trials[1].hash, "t2");
    assert_eq!(trials[1].status, RunStatus::Pending);
    assert_eq!(
        store.study_of("t1").unwrap().map(|s| s.0),
        Some("s/x/pemsd7".into())
    );
    assert!(store.study_of("teacher").unwrap().is_none());
    // Trials are runs of the experiment, waiting for their dependency.
    let runs: Vec<String> = store
        .runs(Some("s"))
        .unwrap()
        .into_iter()
        .map(|r| r.hash)
        .collect();
    assert_eq!(runs, vec!["teacher", "t1", "t2"]);
    assert!(store.claim("t1", "w", "cpu", 60.0).is_ok_and(|c| !c));
    store.claim("teacher", "w", "cpu", 60.0).unwrap();
    store.finish("teacher", "w", &sample_result()).unwrap();
    assert!(store.claim("t1", "w", "cpu", 60.0).unwrap());
    let curve: Vec<EpochRow> = (1..=3)
        .map(|e| EpochRow {
            epoch: e,
            val_mae: 5.0 - e as f64 * 0.5,
            ..Default::default()
        })
        .collect();
    store.prune("t1", "w", &curve, 12.0).unwrap();
    assert_eq!(status(&store, "t1"), RunStatus::Pruned);
    assert_eq!(store.val_curve("t1").unwrap(), vec![4.5, 4.0, 3.5]);
    // Not claimable again, and a status outside the list is still refused.
    assert!(!store.claim("t1", "w", "cpu", 0.0).unwrap());
    assert!(store
        .conn
        .execute("UPDATE runs SET status = 'bogus' WHERE hash = 't2'", [])
        .is_err());
}

#[test]
fn a_version_1_store_migrates_with_its_runs() {
    let db = TempDb::new("migrate");
    {
        std::fs::create_dir_all(db.0.parent().unwrap()).unwrap();
        let conn = Connection::open(&db.0).unwrap();
        conn.execute_batch(sql::MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO runs (hash, label, dataset, config_json, status, created) VALUES ('old', 'l', 'pemsd7', '{}', 'done', 0)",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&db.0).unwrap();
    assert_eq!(status(&store, "old"), RunStatus::Done);
    store
        .conn
        .execute("UPDATE runs SET status = 'pruned' WHERE hash = 'old'", [])
        .unwrap();
    assert_eq!(status(&store, "old"), RunStatus::Pruned);
    let ok: String = store
        .conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn infrastructure_faults_are_retried_up_to_the_limit_then_fail_with_every_cause() {
    let db = TempDb::new("faults");
    let mut store = Store::open(&db.0).unwrap();
    store
        .register(&exp("e"), &[new_run("a", &[]), new_run("kid", &["a"])])
        .unwrap();
    store.set_retries(2);
    for k in 1..=2 {
        assert!(store.claim("a", "w", "cpu", 60.0).unwrap());
        let after = store.fault("a", "w", &format!("killed {k}")).unwrap();
        assert_eq!(after, AfterFault::Retried { fault: k, limit: 2 });
        assert_eq!(status(&store, "a"), RunStatus::Pending);
    }
    assert!(
        store.fault("a", "w", "again").is_err(),
        "only the claim's holder records a fault"
    );
    // The third: a lost heartbeat, found by another worker's claim, which gives the run up.
    assert!(store.claim("a", "dead", "cpu", 60.0).unwrap());
    store
        .conn
        .execute(
            "UPDATE runs SET heartbeat = ?1 WHERE hash = 'a'",
            [now() - 600.0],
        )
        .unwrap();
    assert!(store
        .claim_next(None, "new", "cpu", 60.0)
        .unwrap()
        .is_none());
    let row = store.run("a").unwrap().unwrap();
    assert_eq!(
        (row.status, row.attempts, row.claimed_by.as_deref()),
        (RunStatus::Failed, 3, Some("new"))
    );
    let error = row.error.unwrap();
    assert!(
        error.starts_with("gave up after 3 infrastructure faults (2 retries allowed")
            && error.contains("attempt 1: killed 1; attempt 2: killed 2; attempt 3: heartbeat lost: worker dead on cpu"),
        "{error}"
    );
    assert_eq!(status(&store, "kid"), RunStatus::Skipped);
    let faults = store.faults("a").unwrap();
    let attempts: Vec<u32> = faults.iter().map(|f| f.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(
        store.heartbeat("a", "dead").is_err(),
        "the dead worker stops"
    );
    // Re-queued by hand: a fresh limit.
    assert_eq!(store.retry_failed(None).unwrap(), 2);
    assert!(store.faults("a").unwrap().is_empty());
    // Within the limit, a stale claim is one more fault and the run is claimed again.
    assert!(store.claim("a", "dead", "cpu", 60.0).unwrap());
    store
        .conn
        .execute(
            "UPDATE runs SET heartbeat = ?1 WHERE hash = 'a'",
            [now() - 600.0],
        )
        .unwrap();
    let r = store.claim_next(None, "new", "cpu", 60.0).unwrap().unwrap();
    assert_eq!((r.hash.as_str(), r.attempts), ("a", 5));
    assert_eq!(store.faults("a").unwrap()[0].attempt, 4);
    // Over the limit after a fault of the claim's holder: failed, dependants skipped.
    store.set_retries(0);
    match store.fault("a", "new", "killed").unwrap() {
        AfterFault::Failed { error } => assert!(
            error.starts_with("gave up after 2 infrastructure faults (0 retries allowed"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(status(&store, "a"), RunStatus::Failed);
    assert_eq!(status(&store, "kid"), RunStatus::Skipped);
}

#[test]
fn a_version_3_store_is_read_as_one_without_faults() {
    let db = TempDb::new("v3");
    {
        std::fs::create_dir_all(db.0.parent().unwrap()).unwrap();
        let conn = Connection::open(&db.0).unwrap();
        for m in &sql::MIGRATIONS[..3] {
            conn.execute_batch(m).unwrap();
            if m.contains(sql::SCHEMA_TEXT_EDIT) {
                let v: i64 = conn
                    .query_row("PRAGMA schema_version", [], |r| r.get(0))
                    .unwrap();
                conn.pragma_update(None, "schema_version", v + 1).unwrap();
            }
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute(
            "INSERT INTO runs (hash, label, dataset, config_json, status, created) VALUES ('old', 'l', 'pemsd7', '{}', 'done', 0)",
            [],
        )
        .unwrap();
    }
    let ro = Store::open_read_only(&db.0).unwrap().unwrap();
    assert_eq!(status(&ro, "old"), RunStatus::Done);
    assert!(ro.faults("old").unwrap().is_empty());
    drop(ro);
    // A sweep upgrades it.
    let store = Store::open(&db.0).unwrap();
    assert!(store.faults("old").unwrap().is_empty());
    let version: i64 = store
        .conn
        .query_row(sql::USER_VERSION, [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}
