//! Reports from a small store built here (no training): golden files for the Markdown, CSV and
//! curve SVGs (`STKD_BLESS=1` rewrites them), byte-identical output from the same store, runs
//! that failed, are running, pending or were never started shown as such, and the figures made
//! from checkpoints (fresh, untrained networks saved on the real PeMSD8 graph).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stkd::data::DatasetName;
use stkd::distill::LossKind;
use stkd::experiment::{parse_experiment, Experiment};
use stkd::model::{Preset, Stgcn};
use stkd::plan::{plan, Plan};
use stkd::report::{self, Format, Options};
use stkd::store::{
    Attention, EpochRow, ExperimentInfo, MetricRow, NewRun, Profile, RunResult, Store,
};

/// The commit the test store's outcomes name as the code that computed most runs (the teacher on
/// PeMSD8 names [`OTHER_COMMIT`]): the header counts runs per commit.
const COMMIT: &str = "0123456789ab";
const OTHER_COMMIT: &str = "fedcba987654-dirty";

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("report-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// A Table 4-like file: teacher, W/O KD, RD-L2 and STCD students on both data sets, two seeds.
const TABLE4: &str = "\
name: table4
description: KD losses, teacher -> student (a small test store)
datasets: [pemsd7, pemsd8]
defaults: {epochs: 3, batch_size: 50, lr: 1.0e-3, seeds: [1, 2]}
runs:
  - {label: teacher, model: teacher, loss: mse}
  - {label: student-wo-kd, model: student, loss: mse}
  - {label: student-rd-l2, model: student, teacher: teacher, loss: rd-l2, beta: {pemsd7: 0.045, pemsd8: 0.905}}
  - label: student-stcd
    model: student
    teacher: teacher
    loss: stcd
    alpha1: {pemsd7: 0.170, pemsd8: 0.846}
    alpha2: {pemsd7: 0.047, pemsd8: 0.465}
    alpha3: {pemsd7: 0.313, pemsd8: 0.504}
";

/// The experiment and its plan, with run hashes renamed `hash01`, `hash02`, … so that golden
/// files do not change with the hashing (code version, configuration fields).
fn planned(text: &str) -> (Experiment, Plan) {
    planned_as(text, "hash")
}

/// [`planned`] with hashes named `<prefix>01`, … (another prefix: as if another code version).
fn planned_as(text: &str, prefix: &str) -> (Experiment, Plan) {
    let exp = parse_experiment(text, Path::new("experiments/table4.yaml")).unwrap();
    let mut p = plan(&exp, |d| Ok::<_, ()>(format!("test-data-{d}"))).unwrap();
    let names: BTreeMap<String, String> = p
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.hash.clone(), format!("{prefix}{:02}", i + 1)))
        .collect();
    for j in &mut p.jobs {
        j.hash = names[&j.hash].clone();
        j.deps = j.deps.iter().map(|d| names[d].clone()).collect();
        j.config.teacher = j.config.teacher.as_ref().map(|t| names[t].clone());
    }
    (exp, p)
}

fn register(store: &mut Store, exp: &Experiment, p: &Plan) {
    let runs: Vec<NewRun> = p
        .jobs
        .iter()
        .map(|j| NewRun {
            hash: j.hash.clone(),
            label: j.display_name(),
            dataset: j.config.dataset.to_string(),
            config_json: serde_json::to_string(&j.config).unwrap(),
            deps: j.deps.clone(),
        })
        .collect();
    let info = ExperimentInfo {
        name: exp.name.clone(),
        file: "experiments/table4.yaml".into(),
        yaml_sha256: "test".into(),
    };
    store.register(&info, &runs).unwrap();
}

/// Made-up but plausible results: the teacher best, STCD next, errors growing with the horizon,
/// a little spread between seeds.
fn result_for(job: &stkd::plan::Job) -> RunResult {
    let c = &job.config;
    let base = match (c.preset, c.loss.kind) {
        (Some(Preset::Teacher), _) => 2.20,
        (_, LossKind::Mse) => 2.70,
        (_, LossKind::RdL2) => 2.75,
        _ => 2.60,
    };
    let ds = match c.dataset {
        DatasetName::Pemsd7 => 1.0,
        DatasetName::Pemsd8 => 0.55,
    };
    let seed = c.train.seed as f64;
    let metric = |split: &str, step: u32| {
        let mae = base * ds * (1.0 + 0.13 * (step as f64 - 1.0)) + 0.011 * seed;
        MetricRow {
            split: split.into(),
            step,
            mape: mae * 2.31,
            mae,
            rmse: mae * 1.74 + 0.002 * seed,
        }
    };
    let metrics = ["val", "test"]
        .iter()
        .flat_map(|s| (1..=9).map(move |k| metric(s, k)))
        .collect();
    let epochs = (1..=3)
        .map(|e| EpochRow {
            epoch: e,
            lr: 1e-3,
            train_loss: base * 0.25f64.powi(e as i32 - 1) + 0.001 * seed,
            val_mae: base * ds * (1.5 - 0.1 * e as f64),
            seconds: 10.0 * e as f64,
        })
        .collect();
    let attention = c.loss.kind.uses_ord().then(|| Attention {
        picks: 1_584 + 100 * c.train.seed,
        elements: 10_000,
    });
    RunResult {
        epochs,
        metrics,
        profile: Some(Profile {
            parameters: c.model.param_count() as u64,
            flops: c.model.flops_per_sample(),
            test_time_s: Some(base / 10.0 + 0.001 * seed),
            test_time_runs: Some(20),
            test_time_batch: Some(1140),
            device: "cpu".into(),
        }),
        attention,
        pruning: None,
        artefacts: vec![("checkpoint".into(), format!("runs/{}", job.hash))],
        best_epoch: Some(3),
        train_seconds: 30.0 + seed,
    }
}

/// The store: every run done except `student-rd-l2 pemsd8 [seed=2]` (failed),
/// `student-stcd pemsd7 [seed=2]` (running) and `student-stcd pemsd8 [seed=2]` (pending).
/// Finish times are fixed afterwards so that golden files do not depend on the clock. Each done
/// run's folder holds an `outcome.json` naming the commit that computed it (only that field).
fn build_store(dir: &Path) -> (Experiment, Plan, PathBuf) {
    build_store_with(dir, "hash", |_, _| {})
}

/// [`build_store`] with hashes named by `prefix` and each result passed through `tweak`.
fn build_store_with(
    dir: &Path,
    prefix: &str,
    tweak: impl Fn(&str, &mut RunResult),
) -> (Experiment, Plan, PathBuf) {
    let (exp, p) = planned_as(TABLE4, prefix);
    let path = dir.join("stkd.db");
    let mut store = Store::open(&path).unwrap();
    register(&mut store, &exp, &p);
    for job in &p.jobs {
        let name = job.display_name();
        if name == "student-stcd pemsd8 [seed=2]" {
            continue;
        }
        assert!(
            store.claim(&job.hash, "w", "cpu", 3600.0).unwrap(),
            "{name}"
        );
        match name.as_str() {
            "student-rd-l2 pemsd8 [seed=2]" => {
                store
                    .fail(
                        &job.hash,
                        "w",
                        "out of memory | allocating 4 GiB\nstack backtrace: …",
                    )
                    .unwrap();
            }
            "student-stcd pemsd7 [seed=2]" => {}
            _ => {
                let mut r = result_for(job);
                tweak(&name, &mut r);
                store.finish(&job.hash, "w", &r).unwrap();
                let commit = if name.starts_with("teacher pemsd8") {
                    OTHER_COMMIT
                } else {
                    COMMIT
                };
                let folder = dir.join("runs").join(&job.hash);
                std::fs::create_dir_all(&folder).unwrap();
                let outcome = format!("{{\"code_commit\": \"{commit}\"}}");
                std::fs::write(folder.join("outcome.json"), outcome).unwrap();
            }
        }
    }
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE runs SET finished = 1717243200.5 + 600 * id WHERE finished IS NOT NULL",
        [],
    )
    .unwrap();
    (exp, p, path)
}

fn options(formats: &[Format]) -> Options {
    Options {
        formats: formats.to_vec(),
        model_figures: true,
        pareto_horizon: 15,
    }
}

/// Every file under `dir`, by path relative to it.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Compares `text` with `tests/golden/<name>`, or writes it there with `STKD_BLESS=1`.
fn golden(name: &str, text: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var("STKD_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with STKD_BLESS=1 to create it",
            path.display()
        )
    });
    if want != text {
        let got = path.with_extension("actual");
        let _ = std::fs::write(&got, text);
        panic!(
            "{} differs from the output (written to {}); if the change is intended, \
             re-bless with STKD_BLESS=1",
            path.display(),
            got.display()
        );
    }
}

#[test]
fn table4_report_matches_golden_files() {
    let dir = tmp("golden");
    let (exp, p, store) = build_store(&dir);
    let out = dir.join("reports");
    let files = report::write_plan_reports(
        &exp,
        &p,
        &store,
        &data_dir(),
        &out,
        &options(&[Format::Markdown, Format::Csv]),
    )
    .unwrap();
    let written = tree(&out);
    let names: Vec<&str> = written.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "table4-claims.csv",
            "table4-pareto.csv",
            "table4-runs.csv",
            "table4.csv",
            "table4.md",
            "table4/curves-pemsd7.svg",
            "table4/curves-pemsd8.svg",
            "table4/pareto-pemsd7.svg",
            "table4/pareto-pemsd8.svg",
        ]
    );
    assert_eq!(files.len(), written.len());
    for (name, bytes) in &written {
        golden(name, bytes);
    }
}

#[test]
fn table1_table3_and_generic_layouts_match_golden_files() {
    let dir = tmp("layouts");
    let (exp, p, store) = build_store(&dir);
    let s = Store::open(&store).unwrap();
    let data = report::collect(&exp, &p, Some(&s)).unwrap();
    for name in ["table1", "table3", "quickstart"] {
        let mut d = data.clone();
        d.name = name.into();
        let r = report::build_report(&d, "0.0.0");
        golden(
            &format!("layouts/{name}.md"),
            render_markdown_bytes(&r).as_slice(),
        );
        for (suffix, text) in report::render_csv(&r) {
            golden(&format!("layouts/{name}{suffix}.csv"), text.as_bytes());
        }
    }
}

/// Every CSV file a report writes reads back (quoted fields, line breaks in them) into records
/// of as many fields as its header.
#[test]
fn every_csv_file_has_as_many_fields_in_each_record_as_its_header() {
    let check = |name: &str, text: &str| {
        let records = report::format::read_csv(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(records.len() >= 2, "{name}: no records\n{text}");
        let header = records[0].len();
        for (i, r) in records.iter().enumerate() {
            assert_eq!(
                r.len(),
                header,
                "{name}, record {i}: {r:?} against the header {:?}",
                records[0]
            );
        }
    };
    let dir = tmp("csv-fields");
    let (exp, p, store) = build_store(&dir);
    let out = dir.join("reports");
    report::write_plan_reports(&exp, &p, &store, &data_dir(), &out, &options(&Format::ALL))
        .unwrap();
    let csvs: Vec<(String, Vec<u8>)> = tree(&out)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".csv"))
        .collect();
    let names: Vec<&str> = csvs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "table4-claims.csv",
            "table4-pareto.csv",
            "table4-runs.csv",
            "table4.csv"
        ]
    );
    for (name, bytes) in &csvs {
        check(name, std::str::from_utf8(bytes).unwrap());
    }
    // The other layouts' tables (networks, attention) from the same store.
    let s = Store::open(&store).unwrap();
    let data = report::collect(&exp, &p, Some(&s)).unwrap();
    let mut suffixes = Vec::new();
    for name in ["table1", "table3", "quickstart"] {
        let mut d = data.clone();
        d.name = name.into();
        let r = report::build_report(&d, "0.0.0");
        for (suffix, text) in report::render_csv(&r) {
            check(&format!("{name}{suffix}.csv"), &text);
            suffixes.push(suffix);
        }
    }
    for s in ["-networks", "-attention", "-pareto", "-runs", ""] {
        assert!(
            suffixes.iter().any(|x| x == s),
            "no {s}.csv in {suffixes:?}"
        );
    }
}

fn render_markdown_bytes(r: &report::Report) -> Vec<u8> {
    report::render_markdown(r).into_bytes()
}

#[test]
fn same_store_twice_gives_the_same_bytes() {
    let dir = tmp("twice");
    let (exp, p, store) = build_store(&dir);
    let opts = options(&Format::ALL);
    let (a, b) = (dir.join("a"), dir.join("b"));
    report::write_plan_reports(&exp, &p, &store, &data_dir(), &a, &opts).unwrap();
    report::write_plan_reports(&exp, &p, &store, &data_dir(), &b, &opts).unwrap();
    let (ta, tb) = (tree(&a), tree(&b));
    assert!(!ta.is_empty());
    assert_eq!(ta, tb);
    // Rendering again into the same folder changes nothing either.
    report::write_plan_reports(&exp, &p, &store, &data_dir(), &a, &opts).unwrap();
    assert_eq!(tree(&a), tb);
}

#[test]
fn failed_running_pending_and_unregistered_runs_are_shown_as_such() {
    let dir = tmp("states");
    let (exp, p, store) = build_store(&dir);
    let out = dir.join("out");
    report::write_plan_reports(&exp, &p, &store, &data_dir(), &out, &options(&Format::ALL))
        .unwrap();
    let md = std::fs::read_to_string(out.join("table4.md")).unwrap();
    assert!(
        md.contains("- **Runs:** 16 planned: 13 done, 1 running, 1 pending, 1 failed"),
        "{md}"
    );
    // Rows keep their finished seeds and say what the others are doing.
    assert!(
        md.contains("| Student RD-L2 | ours | 1 done, 1 failed |"),
        "{md}"
    );
    assert!(
        md.contains("| Student STCD | ours | 1 done, 1 running |"),
        "{md}"
    );
    assert!(
        md.contains("| Student STCD | ours | 1 done, 1 pending |"),
        "{md}"
    );
    // Rows of the paper's table that the experiment lacks are kept, marked.
    assert!(
        md.contains("| Student SKD | ours | not in experiment | — |"),
        "{md}"
    );
    // Each unfinished run is listed under its table, with the first line of its error.
    assert!(
        md.contains("): failed: out of memory \\| allocating 4 GiB…\n"),
        "{md}"
    );
    assert!(md.contains("- `student-stcd pemsd7 [seed=2]` ("), "{md}");
    assert!(md.contains("): running\n"), "{md}");
    assert!(md.contains("- `student-stcd pemsd8 [seed=2]` ("), "{md}");
    assert!(md.contains("): pending\n"), "{md}");
    let runs = std::fs::read_to_string(out.join("table4-runs.csv")).unwrap();
    // One record per run (the failed run's error spans two lines, quoted).
    let records = runs.lines().filter(|l| l.contains(" pemsd")).count();
    assert_eq!(records, 16, "{runs}");
    assert!(runs.contains(",failed,"), "{runs}");
    assert!(runs.contains(",running,"), "{runs}");
    assert!(runs.contains(",pending,"), "{runs}");
    let csv = std::fs::read_to_string(out.join("table4.csv")).unwrap();
    assert!(
        csv.contains("pemsd8,Student RD-L2,,\"1 done, 1 failed\",1,"),
        "{csv}"
    );

    // A store that does not exist: every run is "not started", and no store is created.
    let missing = dir.join("no-store.db");
    let out2 = dir.join("out2");
    report::write_plan_reports(
        &exp,
        &p,
        &missing,
        &data_dir(),
        &out2,
        &options(&Format::ALL),
    )
    .unwrap();
    assert!(!missing.exists());
    let md = std::fs::read_to_string(out2.join("table4.md")).unwrap();
    assert!(md.contains("16 planned: 16 not started"), "{md}");
    assert!(
        md.contains("| Teacher | ours | 2 not started | — |"),
        "{md}"
    );
    assert!(md.contains("PeMSD7(M): no finished run yet."), "{md}");
}

#[test]
fn metrics_are_mean_and_sample_std_over_seeds_beside_the_paper() {
    let dir = tmp("numbers");
    let (exp, p, store) = build_store(&dir);
    let s = Store::open(&store).unwrap();
    let data = report::collect(&exp, &p, Some(&s)).unwrap();
    let t = &report::tables::metrics_table(&data, report::runs::paper_table(&data.name));
    assert_eq!(t.table, Some(4));
    let b7 = &t.blocks[0];
    assert_eq!(b7.dataset, DatasetName::Pemsd7);
    let names: Vec<&str> = b7.rows.iter().map(|r| r.model.as_str()).collect();
    // The paper's row order, its rows missing here included.
    assert_eq!(
        names,
        [
            "Teacher",
            "Student W/O KD",
            "Student RD-L2",
            "Student RD-KL",
            "Student SKD",
            "Student STCD"
        ]
    );
    let teacher = &b7.rows[0];
    // MAE at 15 min (step 3): 2.2·1.26 + 0.011·seed over seeds 1, 2.
    let mae15 = teacher.ours[report::paper::column(1, 0)].unwrap();
    let (a, b) = (2.2 * 1.26 + 0.011, 2.2 * 1.26 + 0.022);
    assert_eq!(mae15.n, 2);
    assert!((mae15.mean - (a + b) / 2.0).abs() < 1e-12);
    assert!((mae15.std.unwrap() - (b - a) / 2f64.sqrt()).abs() < 1e-12);
    assert_eq!(teacher.paper.unwrap()[report::paper::column(1, 0)], 2.230);
    // Best marks go to the students, not to the reference teacher.
    assert!(!teacher.best.iter().any(|&x| x));
    let stcd = &b7.rows[5];
    assert!(stcd.best.iter().all(|&x| x), "{stcd:?}");
    assert_eq!(
        stcd.ours[0].unwrap().n,
        1,
        "only seed 1 of STCD is done on PeMSD7"
    );
}

/// Saves an untrained network of `preset` for PeMSD8 where the store keeps `hash`'s checkpoint.
fn save_checkpoint(store_dir: &Path, hash: &str, cfg: &stkd::model::StgcnConfig) {
    let m = Stgcn::<stkd::backend::CpuInner>::new(cfg, 7, &Default::default()).unwrap();
    stkd::train::save_model(&m, cfg, &store_dir.join("runs").join(hash)).unwrap();
}

#[test]
fn figures_from_checkpoints_are_made_linked_and_byte_stable() {
    let dir = tmp("figures");
    let text = "\
name: quickstart
description: figures from checkpoints
datasets: [pemsd8]
data: {split_days: {pemsd8: [2, 1, 1]}}
defaults: {epochs: 2}
runs:
  - {label: teacher, model: teacher, loss: mse}
  - {label: student-stcd, model: student, teacher: teacher, loss: stcd}
  - {label: student-ord, model: student, teacher: teacher, loss: ord}
";
    let (exp, p) = planned(text);
    let store_path = dir.join("stkd.db");
    let mut store = Store::open(&store_path).unwrap();
    register(&mut store, &exp, &p);
    for job in &p.jobs {
        assert!(store.claim(&job.hash, "w", "cpu", 3600.0).unwrap());
        store.finish(&job.hash, "w", &result_for(job)).unwrap();
        if job.label != "student-ord" {
            save_checkpoint(&dir, &job.hash, &job.config.model);
        }
    }
    drop(store);
    let opts = options(&[Format::Markdown]);
    let (a, b) = (dir.join("a"), dir.join("b"));
    report::write_plan_reports(&exp, &p, &store_path, &data_dir(), &a, &opts).unwrap();
    report::write_plan_reports(&exp, &p, &store_path, &data_dir(), &b, &opts).unwrap();
    let ta = tree(&a);
    assert_eq!(ta, tree(&b), "same store, same bytes");
    let names: Vec<&str> = ta.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "quickstart.md",
            "quickstart/curves-pemsd8.svg",
            "quickstart/pareto-pemsd8.svg",
            "quickstart/prediction-pemsd8.svg",
            "quickstart/tsne-pemsd8.svg",
        ]
    );
    let md = String::from_utf8(ta["quickstart.md"].clone()).unwrap();
    for f in ["curves", "prediction", "tsne"] {
        assert!(
            md.contains(&format!("](quickstart/{f}-pemsd8.svg)")),
            "{md}"
        );
    }
    assert!(
        md.contains("Not plotted (no finished run with a checkpoint): Student ORD."),
        "{md}"
    );
    assert!(
        md.contains("Student ORD (no finished run with a checkpoint)"),
        "{md}"
    );
    let tsne = String::from_utf8(ta["quickstart/tsne-pemsd8.svg"].clone()).unwrap();
    assert!(tsne.contains("Student STCD vs Teacher"), "{tsne}");
    assert_eq!(
        tsne.matches("<circle").count(),
        2 * 50 + 2,
        "50 + 50 points and 2 legend marks"
    );
    let pred = String::from_utf8(ta["quickstart/prediction-pemsd8.svg"].clone()).unwrap();
    assert!(pred.contains("true speed") && pred.contains("Student STCD"));
}

#[test]
fn every_experiment_file_reports_before_any_run() {
    let dir = tmp("files");
    let store = dir.join("absent.db");
    let mut names = Vec::new();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
    files.sort();
    for f in &files {
        let out = dir.join("out");
        let written =
            report::write_reports(f, &store, &data_dir(), &out, &Format::ALL, 15).unwrap();
        let md = written
            .iter()
            .find(|p| p.extension().is_some_and(|x| x == "md"))
            .unwrap();
        let text = std::fs::read_to_string(md).unwrap();
        assert!(
            text.contains("planned: ") && text.contains(" not started"),
            "{text}"
        );
        assert!(!text.contains(" done"), "{text}");
        names.push(md.file_name().unwrap().to_string_lossy().to_string());
    }
    assert!(!store.exists());
    assert!(names.contains(&"table4.md".to_string()), "{names:?}");
    let t4 = std::fs::read_to_string(dir.join("out/table4.md")).unwrap();
    assert!(t4.contains("## Table 4: Performance comparison"), "{t4}");
    let t1 = std::fs::read_to_string(dir.join("out/table1.md")).unwrap();
    assert!(
        t1.contains("| Pruning Base Model | ours | 1 not started | 48,628 |"),
        "{t1}"
    );
}

// ---------------------------------------------------------------------------------------------
// Diff against earlier results (`stkd report --against`)

fn shift_test_mae(r: &mut RunResult, by: f64) {
    for m in r.metrics.iter_mut().filter(|m| m.split == "test") {
        m.mae += by;
    }
}

/// Both sides of a diff between two stores of the small Table 4.
fn diff_of(now: &Path, before: &Path, now_prefix: &str) -> report::diff::ReportDiff {
    use report::against::ResultSet;
    let (exp, p) = planned_as(TABLE4, now_prefix);
    let set = |path: &Path| ResultSet::from_store(&Store::open(path).unwrap()).unwrap();
    let (a, ca) = set(now).join(&p, &exp.name, &exp.description, "experiments/table4.yaml");
    let (b, cb) = set(before).join(&p, &exp.name, &exp.description, "experiments/table4.yaml");
    report::diff::diff(
        &exp.name,
        &report::diff::Side {
            label: "now",
            data: &a,
            commits: &ca,
        },
        &report::diff::Side {
            label: "before",
            data: &b,
            commits: &cb,
        },
    )
}

#[test]
fn a_cell_worse_at_95_percent_alone_is_not_a_regression() {
    let dir = tmp("diff-correction");
    let (_, _, before) = build_store_with(&dir.join("before"), "hash", |_, _| {});
    let (_, _, now) = build_store_with(&dir.join("now"), "hash", |name, r| match name {
        // Per-seed changes +0.30 and +0.28 on W/O KD's 3 MAE cells (paired, 1 degree of
        // freedom): mean / se = 29, beyond t(0.975, 1) = 12.7 but not t(1 − 0.05 / 6, 1) = 38.2,
        // the correction for the 3 judged cells.
        "student-wo-kd pemsd7 [seed=1]" => shift_test_mae(r, 0.30),
        "student-wo-kd pemsd7 [seed=2]" => shift_test_mae(r, 0.28),
        _ => {}
    });
    let d = diff_of(&now, &before, "hash");
    assert_eq!(
        (d.summary.worse, d.summary.judged),
        (3, 3),
        "{:?}",
        d.summary
    );
    assert_eq!(d.summary.worse_beyond_correction, 0);
    assert_eq!(d.regressions(), 0);
    let md = report::diff::render_diff_markdown(&d);
    assert!(
        md.contains("3 worse (0 beyond the correction for 3 judged cells)"),
        "{md}"
    );
    // Marked worse at 95 %, not as a regression (the legend names the mark once).
    assert!(
        md.contains(" ❌)") && md.matches("❌‼").count() == 1,
        "{md}"
    );
}

#[test]
fn a_diff_marks_changes_beyond_noise_and_matches_golden_files() {
    use report::diff::{render_diff_json, render_diff_markdown, Change};
    let dir = tmp("diff");
    let (_, _, before) = build_store_with(&dir.join("before"), "hash", |_, _| {});
    let (_, _, now) = build_store_with(&dir.join("now"), "hash", |name, r| {
        match name {
            // Two seeds each side, spread 0.008: +0.3 is far beyond noise, −0.005 is not.
            n if n.starts_with("student-wo-kd pemsd7") => shift_test_mae(r, 0.3),
            // −0.005 on average, by seed −0.012 and +0.002: within noise (paired, 2 seeds).
            "student-rd-l2 pemsd7 [seed=1]" => shift_test_mae(r, -0.012),
            "student-rd-l2 pemsd7 [seed=2]" => shift_test_mae(r, 0.002),
            // One seed both sides (seed 2 failed): a change without a noise estimate.
            "student-rd-l2 pemsd8 [seed=1]" => shift_test_mae(r, -0.2),
            n if n.starts_with("teacher pemsd8") => r.train_seconds *= 2.0,
            _ => {}
        }
    });
    let d = diff_of(&now, &before, "hash");
    let s = &d.summary;
    assert_eq!(
        (s.better, s.worse, s.within_noise, s.no_noise_estimate),
        (0, 3, 3, 3),
        "{s:?}"
    );
    assert_eq!(s.new + s.gone, 0);
    assert_eq!(
        s.unchanged,
        8 * 9 - 9,
        "every other cell of the 8 rows with values"
    );
    let wo = &d.blocks[0]
        .rows
        .iter()
        .find(|r| r.model == "Student W/O KD")
        .unwrap();
    let mae15 = wo
        .cells
        .iter()
        .find(|c| c.metric == "MAE" && c.horizon_min == 15)
        .unwrap();
    assert_eq!(mae15.verdict, Change::Worse);
    assert!((mae15.change.unwrap() - 0.3).abs() < 1e-9);
    // 6 judged cells (3 worse, 3 within noise); the 3 worse ones stay worse beyond the
    // correction for 6 cells, so all 3 are regressions.
    assert_eq!(d.summary.judged, 6);
    assert_eq!(d.regressions(), 3);
    assert!(mae15.worse_beyond_correction);
    // The teacher's training time doubled on PeMSD8; its metrics did not move.
    assert_eq!(d.timings.len(), 1, "{:?}", d.timings);
    assert_eq!(d.timings[0].model, "Teacher");
    let md = render_diff_markdown(&d);
    assert!(
        md.contains("**0 cells better beyond noise, 3 worse (3 beyond the correction for 6 judged cells), 3 within noise, 3 changed with a single seed on a side"),
        "{md}"
    );
    assert_eq!(
        md,
        render_diff_markdown(&diff_of(&now, &before, "hash")),
        "same bytes"
    );
    golden("diff/table4.md", md.as_bytes());
    golden("diff/table4.json", render_diff_json(&d).as_bytes());

    // Against itself: nothing changed.
    let same = diff_of(&now, &now, "hash");
    assert_eq!(same.summary.unchanged, 8 * 9);
    assert!(same.timings.is_empty() && same.runs.recomputed.is_empty());
}

#[test]
fn a_diff_pairs_runs_across_a_code_version_by_configuration() {
    let dir = tmp("diff-code");
    // Before: the same runs under other hashes, as another CODE_VERSION would hash them.
    let (_, _, before) = build_store_with(&dir.join("before"), "old", |_, _| {});
    let (_, _, now) = build_store_with(&dir.join("now"), "hash", |_, _| {});
    let d = diff_of(&now, &before, "hash");
    assert_eq!(d.summary.unchanged, 8 * 9, "{:?}", d.summary);
    // Every run done on both sides is listed as recomputed, with both hashes.
    assert_eq!(d.runs.recomputed.len(), 13, "{:?}", d.runs);
    assert!(d
        .runs
        .recomputed
        .iter()
        .all(|r| r.hash_before.starts_with("old") && r.hash_now.starts_with("hash")));
    assert!(d.runs.added.is_empty() && d.runs.removed.is_empty() && d.runs.reconfigured.is_empty());
}

/// Runs `git` in `dir` (a throwaway repository of the test).
fn git(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=stkd-test",
            "-c",
            "user.email=test@stkd.invalid",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn report_against_a_git_revision_reads_its_committed_records() {
    let dir = tmp("against-git");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = dir.join("repo");
    let records = repo.join("results/records");
    std::fs::create_dir_all(repo.join("experiments")).unwrap();
    std::fs::copy(
        root.join("experiments/table4.yaml"),
        repo.join("experiments/table4.yaml"),
    )
    .unwrap();
    // This repository's finished records (outcome and finish time; no models needed).
    let mut kinds: BTreeMap<String, (String, String)> = BTreeMap::new();
    for e in std::fs::read_dir(root.join("results/records"))
        .unwrap()
        .flatten()
    {
        let outcome = e.path().join("outcome.json");
        let Ok(text) = std::fs::read_to_string(&outcome) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let hash = e.file_name().to_string_lossy().into_owned();
        let kind = (
            v["config"]["preset"].as_str().unwrap_or("").to_string(),
            v["config"]["loss"]["kind"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
        let to = records.join(&hash);
        std::fs::create_dir_all(&to).unwrap();
        std::fs::write(to.join("outcome.json"), text).unwrap();
        let _ = std::fs::copy(e.path().join("stored.json"), to.join("stored.json"));
        kinds.insert(hash, kind);
    }
    let wo_kd: Vec<&String> = kinds
        .iter()
        .filter(|(_, k)| k.0 == "student" && k.1 == "mse")
        .map(|(h, _)| h)
        .collect();
    assert!(!wo_kd.is_empty(), "the repository records W/O KD students");
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "records"]);
    let snapshot = dir.join("snapshot");
    std::fs::create_dir_all(&snapshot).unwrap();
    for h in kinds.keys() {
        std::fs::create_dir_all(snapshot.join(h)).unwrap();
        std::fs::copy(
            records.join(h).join("outcome.json"),
            snapshot.join(h).join("outcome.json"),
        )
        .unwrap();
    }
    // Now: every W/O KD student 1 mph worse at every test step.
    for h in &wo_kd {
        let path = records.join(h).join("outcome.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for s in v["test"]["steps"].as_array_mut().unwrap() {
            s["mae"] = serde_json::json!(s["mae"].as_f64().unwrap() + 1.0);
        }
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
    let run = |against: &str, extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stkd"))
            .current_dir(&repo)
            .args([
                "report",
                "experiments/table4.yaml",
                "--against",
                against,
                "--data-dir",
            ])
            .arg(data_dir())
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, json, err) = run("HEAD", &["--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let s = &v["summary"];
    let moved = s["worse"].as_u64().unwrap() + s["no_noise_estimate"].as_u64().unwrap();
    let datasets: std::collections::BTreeSet<String> = wo_kd
        .iter()
        .map(|h| {
            let t = std::fs::read_to_string(records.join(h).join("outcome.json")).unwrap();
            serde_json::from_str::<serde_json::Value>(&t).unwrap()["dataset"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // Table 4 has several W/O KD rows per data set (the plain student, SKD's control, the tuned
    // one): the three MAE cells of each row moved.
    let wo_rows = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["rows"].as_array().unwrap())
        .filter(|r| r["model"] == "Student W/O KD")
        .count() as u64;
    assert!(wo_rows >= datasets.len() as u64, "{v}");
    assert_eq!(moved, 3 * wo_rows, "the MAE cells of each W/O KD row: {s}");
    assert_eq!(s["better"], 0);
    assert!(
        v["before"].as_str().unwrap().starts_with("git HEAD ("),
        "{}",
        v["before"]
    );
    // The same comparison against a folder of records; and the exit status for CI.
    let (_, md_git, _) = run("HEAD", &[]);
    let (_, md_dir, _) = run(snapshot.to_str().unwrap(), &[]);
    let summary = |md: &str| {
        md.lines()
            .find(|l| l.starts_with("**"))
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(summary(&md_git), summary(&md_dir));
    let (code, _, err) = run("HEAD", &["--fail-on-regression"]);
    let worse = s["worse"].as_u64().unwrap();
    assert_eq!(code, Some(if worse > 0 { 3 } else { 0 }), "{err}");
    // A revision that does not exist is a clear error.
    let (code, _, err) = run("no-such-revision", &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--against no-such-revision: not a file, a folder or a git revision"),
        "{err}"
    );
}
