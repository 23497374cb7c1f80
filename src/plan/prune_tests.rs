//! Pruning runs in experiment files: `base`, `prune` and their checks, expansion and plans.

use super::plan;
use crate::experiment::{parse_experiment, Experiment, SpecErrors};
use crate::prune::{FinetuneLoss, Granularity, Interval, PruneMethod, StepRule};
use std::path::Path;

fn parse(text: &str) -> Result<Experiment, SpecErrors> {
    parse_experiment(text, Path::new("exp.yaml"))
}

fn expect_error(text: &str, line: usize, needles: &[&str]) {
    let errs = parse(text).expect_err("file should be rejected");
    let shown = errs.to_string();
    let e = errs
        .errors
        .iter()
        .find(|e| e.line == line)
        .unwrap_or_else(|| panic!("no error on line {line}:\n{shown}"));
    let full = format!("{}: {}", e.path, e.message);
    for n in needles {
        assert!(full.contains(n), "`{n}` not in `{full}`\n{shown}");
    }
}

const TABLE8: &str = "\
name: t8
datasets: [pemsd7, pemsd8]
defaults: {epochs: 50, batch_size: 50}
runs:
  - {label: teacher, model: teacher}
  - {label: base, model: base}
  - label: taylor
    base: base
    prune: {method: taylor, target: [25, 50, 75], interval_epochs: 2, steps: 3}
  - label: kdis-75
    base: base
    teacher: teacher
    loss: stcd
    alpha1: {pemsd7: 0.963, pemsd8: 0.996}
    prune:
      method: kdis
      target: 75
      share_per_step: 25
      interval_steps: 100
      finetune_epochs: 3
      finetune_loss: kd
      granularity: element
";

#[test]
fn a_prune_run_validates_and_plans_with_its_dependencies() {
    let e = parse(TABLE8).unwrap();
    // teacher, base: 2 datasets each; taylor: 3 targets × 2; kdis-75: 2.
    assert_eq!(e.runs.len(), 2 + 2 + 6 + 2);
    let p = plan(&e, |d| Ok::<_, ()>(format!("sum-{d}"))).unwrap();
    let hash = |label: &str, d: &str| {
        p.jobs
            .iter()
            .find(|j| j.label == label && j.config.dataset.to_string() == d)
            .unwrap()
            .hash
            .clone()
    };
    for r in e.runs.iter().filter(|r| r.label == "taylor") {
        let b = &e.runs[r.base.unwrap()];
        assert_eq!(b.label, "base");
        assert_eq!(b.config.dataset, r.config.dataset);
        assert_eq!(r.config.model, b.config.model);
        assert!(r.teacher.is_none());
        let pc = r.config.prune.as_ref().unwrap();
        assert_eq!(pc.method, PruneMethod::Taylor);
        assert_eq!(pc.schedule, StepRule::Steps(3));
        assert_eq!(pc.interval, Interval::Epochs(2));
        assert!(r.variant.starts_with("target="), "{}", r.variant);
    }
    let targets: Vec<f64> = e
        .runs
        .iter()
        .filter(|r| r.label == "taylor" && r.config.dataset.to_string() == "pemsd7")
        .map(|r| r.config.prune.as_ref().unwrap().target_pct)
        .collect();
    assert_eq!(targets, vec![25.0, 50.0, 75.0]);
    for j in p.jobs.iter().filter(|j| j.label == "taylor") {
        let d = j.config.dataset.to_string();
        assert_eq!(j.deps, vec![hash("base", &d)]);
        assert_eq!(j.config.base.as_deref(), Some(hash("base", &d).as_str()));
        assert_eq!(j.config.teacher, None);
    }
    let k = p.jobs.iter().find(|j| j.label == "kdis-75").unwrap();
    let d = k.config.dataset.to_string();
    assert_eq!(k.deps, vec![hash("teacher", &d), hash("base", &d)]);
    let pc = k.config.prune.as_ref().unwrap();
    assert_eq!(pc.schedule, StepRule::SharePerStep(25.0));
    assert_eq!(pc.interval, Interval::Minibatches(100));
    assert_eq!(pc.finetune_loss, FinetuneLoss::Kd);
    assert_eq!(pc.granularity, Granularity::Element);
    assert_eq!(pc.steps(), 3);
    assert_eq!(k.config.train.epochs, 3, "epochs follow finetune_epochs");
    // A plain run's configuration (and hash) has no pruning keys.
    let json = serde_json::to_string(&p.jobs[0].config).unwrap();
    assert!(
        !json.contains("prune") && !json.contains("\"base\""),
        "{json}"
    );
    // Pruning the teacher with its own teacher (Table 7): one dependency.
    let t7 = "name: t7\ndatasets: [pemsd8]\nruns:\n  - {label: teacher, model: teacher}\n  - {label: p, base: teacher, teacher: teacher, loss: stcd, prune: {method: kdis, target: 97}}\n";
    let e = parse(t7).unwrap();
    let p = plan(&e, |d| Ok::<_, ()>(format!("sum-{d}"))).unwrap();
    assert_eq!(p.jobs[1].deps, vec![p.jobs[0].hash.clone()]);
    assert_eq!(p.jobs[1].config.model.param_count(), 296_426);
}

#[test]
fn malformed_prune_runs_give_the_right_line_and_message() {
    let head = "name: x\ndatasets: [pemsd7]\nruns:\n  - {label: b, model: base}\n  - {label: t, model: teacher}\n";
    // 1. share outside (0, 100), line of the value
    expect_error(
        &format!("{head}  - label: p\n    base: b\n    prune:\n      target: 150\n"),
        9,
        &["prune.target", "150", "(0, 100)"],
    );
    // 2. unknown key with a suggestion
    expect_error(
        &format!("{head}  - label: p\n    base: b\n    prune: {{target: 50, step: 2}}\n"),
        8,
        &["unknown key `step`", "did you mean `steps`"],
    );
    // 3. prune without base
    expect_error(
        &format!("{head}  - label: p\n    model: base\n    prune: {{target: 50}}\n"),
        8,
        &["needs `base"],
    );
    // 4. unknown base label
    expect_error(
        &format!("{head}  - label: p\n    base: bse\n    prune: {{target: 50}}\n"),
        7,
        &["no run is labelled `bse`", "did you mean `b`"],
    );
    // 5. kdis with the plain loss
    expect_error(
        &format!(
            "{head}  - label: p\n    base: b\n    prune:\n      method: kdis\n      target: 50\n"
        ),
        9,
        &["prune.method", "loss: stcd"],
    );
    // 6. kdis without a teacher
    expect_error(
            &format!("{head}  - label: p\n    base: b\n    loss: stcd\n    prune: {{method: kdis, target: 50}}\n"),
            8,
            &["teacher", "distils from a teacher"],
        );
    // 7. a model given
    expect_error(
        &format!(
            "{head}  - label: p\n    base: b\n    model: student\n    prune: {{target: 50}}\n"
        ),
        8,
        &["remove `model`"],
    );
    // 8. epochs given
    expect_error(
        &format!("{head}  - label: p\n    base: b\n    epochs: 4\n    prune: {{target: 50}}\n"),
        8,
        &["remove `epochs`"],
    );
    // 9. steps and share_per_step
    expect_error(
            &format!("{head}  - label: p\n    base: b\n    prune:\n      target: 50\n      steps: 2\n      share_per_step: 10\n"),
            11,
            &["either `steps` or `share_per_step`"],
        );
    // 10. missing target
    expect_error(
        &format!("{head}  - label: p\n    base: b\n    prune: {{method: taylor}}\n"),
        8,
        &["prune.target", "missing"],
    );
    // 11. a pruned run as base
    expect_error(
            &format!("{head}  - {{label: p, base: b, prune: {{target: 50}}}}\n  - {{label: q, base: p, prune: {{target: 50}}}}\n"),
            7,
            &["itself a pruning run"],
        );
    // 12. taylor with a distillation loss that nothing reads
    expect_error(
            &format!("{head}  - label: p\n    base: b\n    teacher: t\n    loss: stcd\n    prune: {{target: 50}}\n"),
            9,
            &["reads no distillation loss"],
        );
    // 13. per-dataset share out of range
    expect_error(
        &format!("{head}  - label: p\n    base: b\n    prune:\n      target: {{pemsd7: 0}}\n"),
        9,
        &["prune.target.pemsd7", "out of range"],
    );
    // 14. a dependency cycle through a base edge
    expect_error(
            "name: x\ndatasets: [pemsd7]\nruns:\n  - {label: s, model: student, teacher: p, loss: ord}\n  - {label: p, base: s, prune: {target: 50}}\n",
            4,
            &["dependency cycle", "s -> p -> s"],
        );
    // 15. grids work inside prune, bad types are reported
    expect_error(
        &format!(
            "{head}  - label: p\n    base: b\n    prune: {{target: 50, granularity: filter}}\n"
        ),
        8,
        &["prune.granularity", "unknown value `filter`"],
    );
}
