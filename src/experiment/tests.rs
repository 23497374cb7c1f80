use super::*;
use std::collections::HashSet;

fn parse(text: &str) -> Result<Experiment, SpecErrors> {
    parse_experiment(text, Path::new("exp.yaml"))
}

/// The single error of a malformed file: (line, message contains each of `needles`).
fn expect_error(text: &str, line: usize, needles: &[&str]) {
    let errs = parse(text).expect_err("file should be rejected");
    let shown = errs.to_string();
    let hit = errs.errors.iter().find(|e| e.line == line);
    let e = hit.unwrap_or_else(|| panic!("no error on line {line}:\n{shown}"));
    let full = format!("{}: {}", e.path, e.message);
    for n in needles {
        assert!(full.contains(n), "`{n}` not in `{full}`\n{shown}");
    }
    assert!(shown.contains(&format!("exp.yaml:{line}:")), "{shown}");
}

const TABLE4: &str = "\
name: table4
description: KD losses, teacher -> student (paper Table 4)
datasets: [pemsd7, pemsd8]
defaults: {epochs: 50, batch_size: 50, lr: 1.0e-3, seeds: [1, 2, 3]}
runs:
  - {label: teacher, model: teacher, loss: mse}
  - {label: student-wo-kd, model: student, loss: mse}
  - label: student-stcd
    model: student
    teacher: teacher
    loss: stcd
    alpha1: {pemsd7: 0.170, pemsd8: 0.846}
    alpha2: {pemsd7: 0.047, pemsd8: 0.465}
    alpha3: {pemsd7: 0.313, pemsd8: 0.504}
";

#[test]
fn the_issue_sketch_expands_with_per_dataset_values_and_seeds() {
    let e = parse(TABLE4).unwrap();
    assert_eq!(e.name, "table4");
    // 3 runs × 2 datasets × 3 seeds.
    assert_eq!(e.runs.len(), 18);
    let stcd: Vec<&ExpandedRun> = e
        .runs
        .iter()
        .filter(|r| r.label == "student-stcd")
        .collect();
    assert_eq!(stcd.len(), 6);
    for r in &stcd {
        let want = if r.config.dataset == DatasetName::Pemsd7 {
            0.170
        } else {
            0.846
        };
        assert_eq!(r.config.loss.alpha1, want);
        assert_eq!(r.config.loss.kind, LossKind::Stcd);
        let t = &e.runs[r.teacher.unwrap()];
        assert_eq!(t.label, "teacher");
        assert_eq!(t.config.dataset, r.config.dataset);
        assert_eq!(t.config.train.seed, r.config.train.seed);
    }
    let t = e.runs.iter().find(|r| r.label == "teacher").unwrap();
    assert_eq!(t.config.model.param_count(), 333_604);
    assert_eq!(t.config.train.epochs, 50);
}

#[test]
fn grids_and_random_search_expand_deterministically() {
    let text = "\
name: search
datasets: [pemsd7]
runs:
  - {label: t, model: teacher}
  - label: s
    model: student
    teacher: t
    loss: stcd
    alpha1: [0.1, 0.2]
    alpha2: {uniform: [0.0, 1.0]}
    alpha3: {log_uniform: [0.01, 1.0]}
    batch_size: {choice: [25, 50]}
    samples: 4
    search_seed: 7
";
    let a = parse(text).unwrap();
    let b = parse(text).unwrap();
    let s: Vec<&ExpandedRun> = a.runs.iter().filter(|r| r.label == "s").collect();
    assert_eq!(s.len(), 2 * 4);
    for (x, y) in s.iter().zip(b.runs.iter().filter(|r| r.label == "s")) {
        assert_eq!(x.config, y.config);
        assert!((0.0..=1.0).contains(&x.config.loss.alpha2));
        assert!((0.01..=1.0).contains(&x.config.loss.alpha3));
        assert!([25, 50].contains(&x.config.train.batch_size));
    }
    let distinct: HashSet<String> = s.iter().map(|r| format!("{:?}", r.config.loss)).collect();
    assert_eq!(distinct.len(), 8, "draws differ");
    assert!(s[0].variant.contains("alpha1=0.1000"), "{}", s[0].variant);
}

#[test]
fn malformed_files_give_the_right_line_and_message() {
    let head = "name: x\ndatasets: [pemsd7]\nruns:\n";
    // 1. unknown key with a suggestion
    expect_error(
        &format!("{head}  - {{label: a, model: teacher, epoch: 3}}\n"),
        4,
        &["unknown key `epoch`", "did you mean `epochs`"],
    );
    // 2. wrong type
    expect_error(
        &format!("{head}  - label: a\n    model: teacher\n    epochs: many\n"),
        6,
        &["epochs", "expected an integer"],
    );
    // 3. alpha out of [0, 1]
    expect_error(&format!("{head}  - {{label: t, model: teacher}}\n  - label: s\n    model: student\n    teacher: t\n    loss: stcd\n    alpha1: 1.5\n"), 9, &["alpha1", "1.5", "[0, 1]"]);
    // 4. beta negative inside a per-dataset map
    expect_error(&format!("{head}  - {{label: t, model: teacher}}\n  - label: s\n    model: student\n    teacher: t\n    loss: rd-l2\n    beta: {{pemsd7: -0.1}}\n"), 9, &["beta.pemsd7", "out of range"]);
    // 5. unknown dataset at the top
    expect_error(
        "name: x\ndatasets: [pemsd7, pems08]\nruns:\n  - {label: a, model: teacher}\n",
        2,
        &["unknown dataset `pems08`", "did you mean `pemsd8`"],
    );
    // 6. unknown loss
    expect_error(
        &format!("{head}  - {{label: a, model: teacher, loss: stdc}}\n"),
        4,
        &["unknown value `stdc`", "did you mean `stcd`"],
    );
    // 7. unknown model
    expect_error(
        &format!("{head}  - {{label: a, model: teachr}}\n"),
        4,
        &["unknown model `teachr`"],
    );
    // 8. KD run without a teacher
    expect_error(
        &format!("{head}  - label: s\n    model: student\n    loss: ord\n"),
        6,
        &["teacher", "distils from a teacher"],
    );
    // 9. reference to a missing label
    expect_error(&format!("{head}  - {{label: t1, model: teacher}}\n  - label: s\n    model: student\n    teacher: t2\n    loss: ord\n"), 7, &["no run is labelled `t2`", "did you mean `t1`"]);
    // 10. dependency cycle
    expect_error(&format!("{head}  - label: a\n    model: student\n    teacher: b\n    loss: ord\n  - label: b\n    model: student\n    teacher: a\n    loss: ord\n"), 6, &["dependency cycle"]);
    // 11. duplicate label
    expect_error(
        &format!("{head}  - {{label: a, model: teacher}}\n  - {{label: a, model: base}}\n"),
        5,
        &["label `a` is already used", "line 4"],
    );
    // 12. random search without samples
    expect_error(
        &format!(
            "{head}  - label: a\n    model: teacher\n    lr: {{log_uniform: [1.0e-4, 1.0e-2]}}\n"
        ),
        4,
        &["samples"],
    );
    // 13. unknown distribution
    expect_error(
        &format!("{head}  - label: a\n    model: teacher\n    lr: {{gaussian: [0, 1]}}\n"),
        6,
        &["expected a value, a grid list"],
    );
    // 14. unknown top-level key
    expect_error(
        "name: x\ndatasets: [pemsd7]\nrunz: []\n",
        3,
        &["unknown key `runz`", "did you mean `runs`"],
    );
    // 15. YAML syntax error
    let errs = parse("name: x\ndatasets: [pemsd7\nruns: []\n").unwrap_err();
    assert!(errs.to_string().contains("YAML syntax error"), "{errs}");
    // 16. pruning share outside (0, 100)
    expect_error(
        &format!("{head}  - {{label: b, model: base}}\n  - label: a\n    base: b\n    prune: {{target: [25, 150]}}\n"),
        7,
        &["prune.target[1]", "150", "(0, 100)"],
    );
    // 17. missing model
    expect_error(
        &format!("{head}  - {{label: a, loss: mse}}\n"),
        4,
        &["missing `model`"],
    );
    // 18. teacher given for a plain run
    expect_error(&format!("{head}  - {{label: t, model: teacher}}\n  - {{label: s, model: student, teacher: t}}\n"), 5, &["teacher", "does not distil from it", "remove `teacher`"]);
    // 19. bad channels
    expect_error(
        &format!("{head}  - label: a\n    model: {{channels: [[1, 2, 4], [5, 2, 8]]}}\n"),
        5,
        &["channels", "block 2 input channels"],
    );
}

#[test]
fn bad_values_are_named_with_what_is_allowed() {
    let head = "name: x\ndatasets: [pemsd7]\nruns:\n";
    // The one error of a file, in full (`exp.yaml:LINE: PATH: MESSAGE`).
    let only_error = |text: &str| {
        let errs = parse(text).expect_err("file should be rejected");
        assert_eq!(errs.errors.len(), 1, "one error only:\n{errs}");
        errs.to_string()
    };
    // A mapping given as a dataset: what was given, and the datasets allowed.
    let e =
        only_error("name: x\ndatasets: [pemsd7, {a: 1}]\nruns:\n  - {label: a, model: teacher}\n");
    assert!(
        e.contains("exp.yaml:2:")
            && e.contains("datasets[1]")
            && e.contains("expected a dataset name, got a mapping `{a: 1}`")
            && e.contains("allowed: pemsd7, pemsd8")
            && !e.contains("unknown dataset a mapping"),
        "{e}"
    );
    let e = only_error("name: x\ndatasets: {a: 1}\nruns:\n  - {label: a, model: teacher}\n");
    assert!(
        e.contains("got a mapping `{a: 1}`") && e.contains("allowed: pemsd7, pemsd8"),
        "{e}"
    );
    // An unknown model: one error naming the value and the presets, no "missing `model`".
    let e = only_error(&format!("{head}  - {{label: a, model: teachr}}\n"));
    assert!(
        e.contains("exp.yaml:4:")
            && e.contains("model")
            && e.contains("unknown model `teachr` (did you mean `teacher`?)")
            && e.contains("teacher, base, student")
            && !e.contains("missing"),
        "{e}"
    );
    let e = only_error(&format!(
        "name: x\ndatasets: [pemsd7]\ndefaults: {{model: big}}\nruns:\n  - {{label: a}}\n"
    ));
    assert!(
        e.contains("unknown model `big`") && !e.contains("missing"),
        "{e}"
    );
    // A misspelt sampler: the value and the choices.
    let run = "  - {label: s, model: student, lr: {log_uniform: [1.0e-4, 1.0e-2]}}\n";
    let e = only_error(&format!(
        "{head}{run}search: {{sampler: tpee, trials: 3}}\n"
    ));
    assert!(
        e.contains("exp.yaml:5:")
            && e.contains("search.sampler")
            && e.contains("unknown sampler `tpee` (did you mean `tpe`?)")
            && e.contains("allowed: grid, random, tpe")
            && !e.contains("got a string"),
        "{e}"
    );
    // A value of the wrong type or out of range: the value and what is allowed.
    let e = only_error(&format!(
        "{head}  - {{label: a, model: teacher, epochs: many}}\n"
    ));
    assert!(
        e.contains("epochs") && e.contains("got `many`") && e.contains("an integer"),
        "{e}"
    );
    let e = only_error(&format!(
        "{head}  - {{label: a, model: teacher, optimizer: sgd}}\n"
    ));
    assert!(
        e.contains("`sgd`") && e.contains("allowed: adam, rmsprop"),
        "{e}"
    );
    let e = only_error(&format!(
        "{head}  - {{label: a, model: teacher, seeds: [-1]}}\n"
    ));
    assert!(e.contains("seeds[0]") && e.contains("got `-1`"), "{e}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = "name: x\ndatasets: [pemsd7]\nruns:\n  - {label: a, model: teacher, epochs: 0}\n  - {label: b, model: student, lr: -1, optimiser: adam}\n";
    let errs = parse(text).unwrap_err();
    assert_eq!(errs.errors.len(), 3, "{errs}");
    let lines: Vec<usize> = errs.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![4, 5, 5]);
}

#[test]
fn teacher_with_a_grid_is_rejected_for_its_students() {
    let text = "\
name: x
datasets: [pemsd7]
runs:
  - {label: t, model: teacher, lr: [1.0e-3, 1.0e-2]}
  - {label: s, model: student, teacher: t, loss: ord}
";
    expect_error(text, 5, &["expands to 2 runs"]);
}

#[test]
fn a_search_block_makes_studies_and_its_mistakes_are_named() {
    let head = "name: x\ndatasets: [pemsd7, pemsd8]\nruns:\n  - {label: t, model: teacher}\n";
    let exp = parse(&format!(
        "{head}  - label: s\n    model: student\n    teacher: t\n    loss: stcd\n    alpha1: {{uniform: [0.0, 1.0]}}\n    alpha2: {{pemsd7: 0.5, pemsd8: {{log_uniform: [0.01, 1.0]}}}}\n\
         search: {{sampler: tpe, trials: 7, seed: 2, objective: test_mae_15, pruner: {{kind: asha, min_epochs: 2, reduction: 3}}}}\n"
    ))
    .unwrap();
    // The searched run is a study per dataset, not runs; the teacher is a run.
    assert_eq!(exp.runs.len(), 2);
    assert_eq!(exp.studies.len(), 2);
    let (s7, s8) = (&exp.studies[0], &exp.studies[1]);
    assert_eq!(s7.fields, vec!["alpha1"]);
    assert_eq!(s8.fields, vec!["alpha1", "alpha2"]);
    assert_eq!(s7.search.trials, 7);
    assert_eq!(
        s7.search.pruner,
        crate::search::Pruner::Asha {
            min_epochs: 2,
            reduction: 3
        }
    );
    assert!(s7.teacher.is_some());
    use crate::search::Value;
    let cfg = s8.config(&[Value::Number(0.25), Value::Number(0.5)]);
    assert_eq!((cfg.loss.alpha1, cfg.loss.alpha2), (0.25, 0.5));
    assert_eq!(
        s8.describe(&[Value::Number(0.25), Value::Number(0.005)]),
        "alpha1=0.2500 alpha2=5.000e-3"
    );
    // Mistakes, each at its line.
    let run = "  - {label: s, model: student, lr: {log_uniform: [1.0e-4, 1.0e-2]}}\n";
    expect_error(
        &format!("{head}{run}search: {{sampler: bayes, trials: 3}}\n"),
        6,
        &[
            "search.sampler",
            "unknown sampler `bayes`",
            "allowed: grid, random, tpe",
        ],
    );
    expect_error(
        &format!("{head}{run}search: {{sampler: tpe}}\n"),
        6,
        &["search.trials", "missing"],
    );
    expect_error(
        &format!("{head}{run}search:\n  trials: 3\n  objective: val_rmse\n"),
        8,
        &["search.objective", "val_mae"],
    );
    expect_error(
        &format!("{head}{run}search:\n  trials: 3\n  pruner: {{kind: median, reduction: 2}}\n"),
        8,
        &[
            "search.pruner.reduction",
            "not a setting of the median pruner",
        ],
    );
    expect_error(
        &format!("{head}  - {{label: s, model: student, samples: 4, lr: {{log_uniform: [1.0e-4, 1.0e-2]}}}}\nsearch: {{trials: 3}}\n"),
        5,
        &["remove `samples`"],
    );
    expect_error(
        &format!("{head}  - {{label: s, model: student, lr: [1.0e-3, 1.0e-2], dropout: {{uniform: [0.0, 0.5]}}}}\nsearch: {{trials: 3}}\n"),
        5,
        &["cannot also have grid lists"],
    );
    expect_error(
        &format!("{head}  - {{label: s, model: student, dropout: {{uniform: [0.0, 0.5]}}}}\nsearch: {{sampler: grid, trials: 3}}\n"),
        5,
        &["grid sampler enumerates"],
    );
}

#[test]
fn an_executor_block_sets_where_runs_go_and_the_command_line_overrides_it() {
    let text = format!(
        "{TABLE4}executor:\n  kind: slurm\n  max_jobs: 8\n  partition: gpu\n  time: \"1-02:00:00\"\n  \
         cpus: 4\n  mem: 16G\n  gres: \"gpu:1\"\n  sbatch_args: [\"--constraint=a100\"]\n"
    );
    let e = parse(&text).unwrap();
    let x = &e.executor;
    assert_eq!(x.kind, Some(ExecutorKind::Slurm));
    assert_eq!(x.max_jobs, Some(8));
    assert_eq!(x.slurm.time.as_deref(), Some("1-02:00:00"));
    assert_eq!(x.slurm.cpus, Some(4));
    assert_eq!(x.slurm.mem.as_deref(), Some("16G"));
    assert_eq!(x.slurm.gres.as_deref(), Some("gpu:1"));
    // Where runs execute is not part of what they compute: same runs, same configurations.
    let plain = parse(TABLE4).unwrap();
    assert_eq!(plain.executor, ExecutorSpec::default());
    let configs = |e: &Experiment| e.runs.iter().map(|r| r.config.clone()).collect::<Vec<_>>();
    assert_eq!(configs(&e), configs(&plain));

    let cli = ExecutorSpec {
        kind: Some(ExecutorKind::Local),
        slurm: SlurmOptions {
            time: Some("30".into()),
            extra: vec!["--constraint=h100".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let m = x.overridden_by(&cli);
    assert_eq!(m.kind, Some(ExecutorKind::Local));
    assert_eq!(m.max_jobs, Some(8));
    assert_eq!(m.slurm.time.as_deref(), Some("30"));
    assert_eq!(m.slurm.partition.as_deref(), Some("gpu"));
    assert_eq!(m.slurm.extra, ["--constraint=a100", "--constraint=h100"]);
}

#[test]
fn a_slurm_pending_limit_is_set_in_the_executor_block_and_overridden_by_the_command_line() {
    let plain = parse(TABLE4).unwrap();
    assert_eq!(
        plain.executor.slurm.pending_limit_s, None,
        "the default applies"
    );
    let e = parse(&format!("{TABLE4}executor:\n  pending_limit: 90\n")).unwrap();
    assert_eq!(e.executor.slurm.pending_limit_s, Some(90));
    let configs = |e: &Experiment| e.runs.iter().map(|r| r.config.clone()).collect::<Vec<_>>();
    assert_eq!(configs(&e), configs(&plain), "in no run's configuration");
    let cli = ExecutorSpec {
        slurm: SlurmOptions {
            pending_limit_s: Some(30),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        e.executor.overridden_by(&cli).slurm.pending_limit_s,
        Some(30)
    );
    assert_eq!(
        e.executor
            .overridden_by(&ExecutorSpec::default())
            .slurm
            .pending_limit_s,
        Some(90)
    );
    for bad in ["0", "-5", "ten", "1.5"] {
        expect_error(
            &format!("{TABLE4}executor:\n  pending_limit: {bad}\n"),
            16,
            &["executor.pending_limit", "seconds ≥ 1", bad],
        );
    }
}

#[test]
fn retries_and_the_mean_check_are_settings_of_the_sweep_not_of_the_runs() {
    let plain = parse(TABLE4).unwrap();
    assert_eq!(plain.executor.retries, None);
    assert!(plain.mean_check, "on unless the file turns it off");
    let e = parse(&format!(
        "{TABLE4}executor:\n  retries: 0\nmean_check: false\n"
    ))
    .unwrap();
    assert_eq!(e.executor.retries, Some(0));
    assert!(!e.mean_check);
    let configs = |e: &Experiment| e.runs.iter().map(|r| r.config.clone()).collect::<Vec<_>>();
    assert_eq!(configs(&e), configs(&plain), "in no run's configuration");
    let cli = ExecutorSpec {
        retries: Some(5),
        ..Default::default()
    };
    assert_eq!(e.executor.overridden_by(&cli).retries, Some(5));
    assert_eq!(
        e.executor.overridden_by(&ExecutorSpec::default()).retries,
        Some(0)
    );
    expect_error(
        &format!("{TABLE4}executor:\n  retries: -1\n"),
        16,
        &["executor.retries", "≥ 0"],
    );
    expect_error(
        &format!("{TABLE4}mean_check: maybe\n"),
        15,
        &["mean_check", "true or false"],
    );
}

#[test]
fn a_bad_executor_block_names_the_line_field_and_what_is_allowed() {
    let at = |block: &str| format!("{TABLE4}executor:\n{block}");
    expect_error(
        &at("  kind: k8s\n"),
        16,
        &["executor.kind", "local or slurm", "k8s"],
    );
    expect_error(
        &at("  time: 4h\n"),
        16,
        &["executor.time", "hours:minutes:seconds"],
    );
    expect_error(&at("  mem: lots\n"), 16, &["executor.mem", "16G"]);
    expect_error(&at("  max_jobs: 0\n"), 16, &["executor.max_jobs", "≥ 1"]);
    expect_error(
        &at("  sbatch_args: [constraint=a100]\n"),
        16,
        &["executor.sbatch_args[0]", "starting with -"],
    );
    expect_error(&at("  partion: gpu\n"), 16, &["partition"]);
    for ok in [
        "90",
        "1:30",
        "4:00:00",
        "2-0",
        "2-12:00",
        "2-12:00:00",
        "infinite",
    ] {
        assert!(is_slurm_time(ok), "{ok}");
    }
    for bad in ["", "4h", "1:2:3:4", "-1", "2-", "a-1"] {
        assert!(!is_slurm_time(bad), "{bad}");
    }
    assert!(is_slurm_mem("512") && is_slurm_mem("8G") && !is_slurm_mem("8GB"));
}
