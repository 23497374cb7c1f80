use super::*;
use crate::backend::CpuInner;
use crate::model::{Preset, Stgcn};

const YAML: &str = "name: t\ndatasets: [pemsd7]\nruns:\n  - {label: teacher, model: teacher}\n  \
                    - {label: student, model: student, seeds: [1, 2]}\n  \
                    - {label: base, model: base}\n";
const NODES: usize = 6;

fn data() -> Dataset {
    Dataset::synthetic(NODES, 6, 48, 11)
}

/// A store with the teacher done (model and outcome in its run folder), both students recorded
/// (model and outcome in their records, pending in the store) and the base model pending.
fn setup(name: &str) -> (PathBuf, PathBuf, Plan) {
    let dir = std::env::temp_dir().join(format!("stkd-retime-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store_path = dir.join("stkd.db");
    let exp = crate::experiment::parse_experiment(YAML, Path::new("t.yaml")).unwrap();
    let plan = crate::plan::plan(&exp, |d| Ok::<_, ()>(format!("sum-{d}"))).unwrap();
    let mut store = Store::open(&store_path).unwrap();
    crate::schedule::register(&mut store, &plan, Path::new("t.yaml"), YAML).unwrap();
    let dev = Default::default();
    let save = |preset: Preset, folder: &Path, seed: u64| {
        let cfg = StgcnConfig::new(preset.channels(), NODES, 12);
        let m = Stgcn::<CpuInner>::new(&cfg, seed, &dev).unwrap();
        train::save_model(&m, &cfg, folder).unwrap();
        std::fs::write(folder.join(OUTCOME_FILE), "{}").unwrap();
    };
    let hash = |label: &str, seed: u64| {
        plan.jobs
            .iter()
            .find(|j| j.label == label && j.config.train.seed == seed)
            .unwrap()
            .hash
            .clone()
    };
    let teacher = hash("teacher", 1);
    assert!(store.claim(&teacher, "w", "cpu", 60.0).unwrap());
    store
        .finish(&teacher, "w", &crate::store::RunResult::default())
        .unwrap();
    save(Preset::Teacher, &dir.join(RUNS).join(&teacher), 1);
    for seed in [1, 2] {
        save(
            Preset::Student,
            &dir.join(RECORDS).join(hash("student", seed)),
            seed,
        );
    }
    (dir, store_path, plan)
}

fn options(store: &Path, runs: usize) -> RetimeOptions {
    RetimeOptions {
        store: store.to_path_buf(),
        data_dir: PathBuf::from("data"),
        runs,
        allow_few: true,
        force: false,
        processes: false,
        device: DeviceSpec::Cpu,
        only_missing: false,
    }
}

/// A clock whose k-th reading (warm-up included) is k ms.
fn fake_clock() -> impl FnMut(&mut dyn FnMut()) -> f64 {
    let mut k = 0u32;
    move |f: &mut dyn FnMut()| {
        f();
        k += 1;
        f64::from(k) * 1e-3
    }
}

fn run(plan: &Plan, opts: &RetimeOptions) -> Result<RetimeSummary, RetimeError> {
    retime_with::<CpuInner>(
        std::slice::from_ref(plan),
        opts,
        &Default::default(),
        &mut |_| Ok(data()),
        &mut fake_clock(),
        &mut |_| {},
    )
}

fn files(paths: &[PathBuf]) -> Vec<(PathBuf, Vec<u8>)> {
    paths
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect()
}

#[test]
fn quartiles_interpolate_between_order_statistics() {
    assert_eq!(quartiles(&[3.0, 1.0, 2.0]), (2.0, 1.5, 2.5));
    assert_eq!(quartiles(&[4.0, 1.0, 3.0, 2.0]), (2.5, 1.75, 3.25));
    assert_eq!(quartiles(&[7.0]), (7.0, 7.0, 7.0));
    let v: Vec<f64> = (1..=20).map(f64::from).collect();
    assert_eq!(quantile(&v, 0.5), 10.5);
    assert_eq!(quantile(&v, 0.25), 5.75);
    assert_eq!(quantile(&v, 0.75), 15.25);
}

#[test]
fn retime_writes_each_finished_run_once_per_shape_and_the_same_bytes_twice() {
    let (dir, store, plan) = setup("bytes");
    let opts = options(&store, 3);
    let mut starts = Vec::new();
    let first = retime_with::<CpuInner>(
        std::slice::from_ref(&plan),
        &opts,
        &Default::default(),
        &mut |_| Ok(data()),
        &mut fake_clock(),
        &mut |e| {
            if let RetimeEvent::Start { group, .. } = e {
                starts.push(group.describe());
            }
        },
    )
    .unwrap();
    // Two shapes (the students share one); the base model never finished.
    assert_eq!(
        starts,
        [
            "pemsd7 [1,2,4][4,2,8] N=6",
            "pemsd7 [1,32,64][64,32,128] N=6"
        ]
    );
    assert_eq!(first.timed.len(), 2);
    assert_eq!(first.skipped.len(), 1);
    assert_eq!(first.skipped[0].why, "not finished");
    assert!(first.skipped[0].name.starts_with("base"));
    assert_eq!(first.written.len(), 3);
    let mut sorted = first.written.clone();
    sorted.sort();
    assert_eq!(first.written, sorted);
    // The readings: warm-up 1 ms (dropped), then 2, 3, 4 ms.
    let (_, l) = &first.timed[0];
    assert_eq!((l.median_s, l.q1_s, l.q3_s), (0.003, 0.0025, 0.0035));
    assert!((l.iqr_s - 0.001).abs() < 1e-15);
    assert_eq!((l.min_s, l.max_s, l.runs, l.warm_up), (0.002, 0.004, 3, 1));
    assert_eq!(l.samples_s, [0.002, 0.003, 0.004]);
    assert!(l.alone);
    assert!(!l.is_measurement(), "3 repetitions are not a measurement");
    assert_eq!(l.device, "cpu");
    assert_eq!(l.commit, crate::plan::CODE_COMMIT);
    assert!(l.batch > 0 && l.threads > 0);
    // Every run of the shape reads the figure, from its record or its run folder.
    for (g, l) in &first.timed {
        for t in &g.runs {
            assert_eq!(read(&store, &t.hash).as_ref(), Some(l));
        }
    }
    // Both students share the figure, timed on the first of them by hash.
    let students = &first.timed[0].0.runs;
    assert_eq!(students.len(), 2);
    assert!(students[0].hash < students[1].hash);
    assert_eq!(first.timed[0].1.timed_run, students[0].hash);
    let bytes = files(&first.written);
    let second = run(&plan, &opts).unwrap();
    assert_eq!(second.written, first.written);
    assert_eq!(
        files(&second.written),
        bytes,
        "the same timings give the same bytes"
    );
    let text = String::from_utf8(bytes[0].1.clone()).unwrap();
    assert!(
        text.starts_with("{\n  \"measure\": ") && text.ends_with("}\n"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retime_refuses_beside_a_live_run_unless_forced() {
    let (dir, store, plan) = setup("busy");
    let base = plan.jobs.iter().find(|j| j.label == "base").unwrap();
    let mut st = Store::open(&store).unwrap();
    assert!(st.claim(&base.hash, "other", "cpu", 60.0).unwrap());
    drop(st);
    let live = live_runs(&store).unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].hash, base.hash);
    let err = run(&plan, &options(&store, 3)).unwrap_err();
    match &err {
        RetimeError::Busy { runs, processes } => {
            assert!(processes.is_empty(), "not looked for");
            let hashes: Vec<&str> = runs.iter().map(|r| r.hash.as_str()).collect();
            assert_eq!(hashes, [base.hash.as_str()]);
            assert_eq!(runs[0].worker.as_deref(), Some("other"));
        }
        e => panic!("expected a refusal, got {e}"),
    }
    assert!(err.to_string().contains(&base.hash), "{err}");
    assert!(err.to_string().contains("force"), "{err}");
    assert!(!beside(&store, RECORDS)
        .join(&plan.jobs[1].hash)
        .join(LATENCY_FILE)
        .exists());
    // Forced: timed, and recorded as not alone.
    let forced = RetimeOptions {
        force: true,
        ..options(&store, 3)
    };
    let s = run(&plan, &forced).unwrap();
    assert_eq!(s.timed.len(), 2);
    assert!(s.timed.iter().all(|(_, l)| !l.alone));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn too_few_repetitions_are_refused_unless_allowed() {
    let (dir, store, plan) = setup("few");
    let strict = RetimeOptions {
        allow_few: false,
        ..options(&store, 19)
    };
    assert!(matches!(
        run(&plan, &strict),
        Err(RetimeError::TooFew { runs: 19 })
    ));
    assert!(matches!(
        run(&plan, &options(&store, 0)),
        Err(RetimeError::TooFew { runs: 0 })
    ));
    // The real clock on the tiny networks: positive, ordered figures.
    let s = retime_with::<CpuInner>(
        std::slice::from_ref(&plan),
        &options(&store, 2),
        &Default::default(),
        &mut |_| Ok(data()),
        &mut |f| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        },
        &mut |_| {},
    )
    .unwrap();
    for (_, l) in &s.timed {
        assert!(l.min_s > 0.0 && l.q1_s <= l.median_s && l.median_s <= l.q3_s);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_report_reads_the_re_timed_figure_and_marks_the_recorded_one() {
    let (dir, store, plan) = setup("report");
    let exp = crate::experiment::parse_experiment(YAML, Path::new("t.yaml")).unwrap();
    let collect = || {
        let st = Store::open_read_only(&store).unwrap();
        let mut data = crate::report::collect(&exp, &plan, st.as_ref()).unwrap();
        data.name = "table1".into();
        data
    };
    let teacher_cell = |data: &crate::report::ReportData| {
        let t = crate::report::tables::networks_table(data);
        let row = t.blocks[0]
            .rows
            .iter()
            .find(|r| r.model == "Teacher")
            .unwrap()
            .clone();
        (row.test_time_kind, row.latency)
    };
    // Before: the teacher's recorded figure (none here: its outcome is empty) and no file.
    let (kind, latency) = teacher_cell(&collect());
    assert_eq!(kind, crate::report::timing::TimeKind::Recorded);
    assert!(latency.is_none());
    run(&plan, &options(&store, 3)).unwrap();
    let data = collect();
    let (kind, latency) = teacher_cell(&data);
    // Three repetitions: re-timed, but not a measurement the report judges.
    assert_eq!(kind, crate::report::timing::TimeKind::Retimed);
    assert_eq!(latency.unwrap().runs, 3);
    let md = crate::report::render_markdown(&crate::report::build_report(&data, "0"));
    assert!(
        md.contains("R = 3, re-timed beside other runs or with fewer than 20"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stkd_workloads_are_told_from_other_processes() {
    let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    assert!(is_workload(&args(
        "/opt/bin/stkd-6491a18 run-one abc --store x.db"
    )));
    assert!(is_workload(&args(
        "target/release/stkd sweep experiments/table8.yaml"
    )));
    assert!(is_workload(&args("stkd retime experiments/table1.yaml")));
    assert!(!is_workload(&args("stkd status")));
    assert!(!is_workload(&args("stkd report experiments/table1.yaml")));
    assert!(!is_workload(&args("cargo test --release retime")));
    assert!(!is_workload(&[]));
    // This test process is not an stkd workload and never lists itself.
    let me = std::process::id();
    assert!(other_processes().iter().all(|p| p.pid != me));
    assert_eq!(
        stat_fields("12 (stkd run-one) S 7 12 12 0").unwrap()[..2],
        ["S", "7"]
    );
}

/// A sweep's timing phase ([`RetimeOptions::only_missing`]): times what no run has measured,
/// keeps every measurement there is, gives a shape's earlier measurement to runs that lack
/// one, and is not refused beside live runs when there is nothing to time.
#[test]
fn the_timing_phase_times_only_what_lacks_a_measurement() {
    let (dir, store, plan) = setup("missing");
    let opts = RetimeOptions {
        only_missing: true,
        ..options(&store, MIN_RUNS)
    };
    let starts = std::cell::Cell::new(0);
    let time = |opts: &RetimeOptions| {
        retime_with::<CpuInner>(
            std::slice::from_ref(&plan),
            opts,
            &Default::default(),
            &mut |_| Ok(data()),
            &mut fake_clock(),
            &mut |e| {
                if let RetimeEvent::Start { .. } = e {
                    starts.set(starts.get() + 1);
                }
            },
        )
    };
    let first = time(&opts).unwrap();
    assert_eq!(
        (first.timed.len(), first.reused.len(), first.kept),
        (2, 0, 0)
    );
    assert!(first.timed.iter().all(|(_, l)| l.is_measurement()));
    let bytes = files(&first.written);
    // Everything measured: nothing timed, nothing written, even beside a live run.
    let base = plan.jobs.iter().find(|j| j.label == "base").unwrap();
    let mut st = Store::open(&store).unwrap();
    assert!(st.claim(&base.hash, "other", "cpu", 60.0).unwrap());
    let again = time(&opts).unwrap();
    assert_eq!(
        (again.timed.len(), again.reused.len(), again.kept),
        (0, 0, 2)
    );
    assert!(again.written.is_empty());
    assert_eq!(
        files(&first.written),
        bytes,
        "measurements are kept as they are"
    );
    // One student lost its figure: it gets the other student's (same shape), untimed.
    let students: Vec<String> = first.timed[0]
        .0
        .runs
        .iter()
        .map(|t| t.hash.clone())
        .collect();
    let file = |hash: &str| beside(&store, RECORDS).join(hash).join(LATENCY_FILE);
    std::fs::remove_file(file(&students[1])).unwrap();
    let reused = time(&opts).unwrap();
    assert_eq!(
        (reused.timed.len(), reused.reused.len(), reused.kept),
        (0, 1, 1)
    );
    assert_eq!(reused.written, [file(&students[1])]);
    assert_eq!(
        std::fs::read(file(&students[1])).unwrap(),
        std::fs::read(file(&students[0])).unwrap()
    );
    // Neither student has one, but a record of another experiment holds the shape's
    // measurement: both get it.
    let elsewhere = beside(&store, RECORDS).join("0000other");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::rename(file(&students[0]), elsewhere.join(LATENCY_FILE)).unwrap();
    std::fs::remove_file(file(&students[1])).unwrap();
    let known = time(&opts).unwrap();
    assert_eq!((known.timed.len(), known.reused.len()), (0, 1));
    assert_eq!(known.written.len(), 2);
    // A quick look (too few repetitions) is no measurement: the shape is timed again, and
    // that needs the machine alone.
    let quick = RetimeOptions {
        allow_few: true,
        ..options(&store, 3)
    };
    std::fs::remove_file(elsewhere.join(LATENCY_FILE)).unwrap();
    for s in &students {
        std::fs::remove_file(file(s)).unwrap();
    }
    // (The quick look re-times the teacher too: neither shape has a measurement now.)
    run(
        &plan,
        &RetimeOptions {
            force: true,
            ..quick
        },
    )
    .unwrap();
    assert!(matches!(time(&opts), Err(RetimeError::Busy { .. })));
    st.fail(&base.hash, "other", "test").unwrap();
    let starts_before = starts.get();
    let timed = time(&opts).unwrap();
    assert_eq!(
        (timed.timed.len(), timed.reused.len(), timed.kept),
        (2, 0, 0)
    );
    assert_eq!(starts.get(), starts_before + 2);
    let _ = std::fs::remove_dir_all(&dir);
}
