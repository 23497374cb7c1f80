//! Pruning runs end to end through [`super::execute`]: prune, fine-tune, compact, time and
//! save; a missing base is a clear error.

use std::path::Path;

use super::*;
use crate::backend::Cpu;
use crate::distill::LossConfig;
use crate::model::Preset;
use crate::prune::tests::{cfg, quick_train, tiny, trained_base};
use crate::prune::topology::param_refs;
use crate::prune::{Interval, PruneConfig, PruneMethod, StepRule};

type TB = crate::backend::CpuInner;

#[test]
fn a_pruning_run_prunes_fine_tunes_compacts_and_saves() {
    let root = std::env::temp_dir().join(format!("stkd-prune-test-{}", std::process::id()));
    let (data, c, base_dir) = trained_base(&root);
    let device = Default::default();
    for (method, gran, target) in [
        (PruneMethod::Kdis, Granularity::Channel, 75.0),
        (PruneMethod::Taylor, Granularity::Channel, 50.0),
        (PruneMethod::Taylor, Granularity::Element, 50.0),
    ] {
        let mut pc = PruneConfig::new(method, target);
        pc.granularity = gran;
        pc.schedule = StepRule::Steps(3);
        pc.interval = Interval::Minibatches(2);
        pc.finetune_epochs = 1;
        let mut loss = LossConfig::new(if method == PruneMethod::Kdis {
            LossKind::Stcd
        } else {
            LossKind::Mse
        });
        loss.alpha1 = 0.5;
        let run = crate::experiment::RunConfig {
            dataset: data.name,
            split_days: None,
            preset: None,
            model: c.clone(),
            train: quick_train(),
            loss,
            teacher: pc
                .uses_teacher()
                .then(|| "the base, as teacher".to_string()),
            test_runs: Some(1),
            prune: Some(pc.clone()),
            base: None,
        };
        let run_dir = root.join(format!("{method}-{gran}"));
        let paths = RunPaths {
            run_dir: run_dir.clone(),
            teacher_dir: Some(base_dir.clone()),
            base_dir: Some(base_dir.clone()),
            data_dir: root.clone(),
        };
        let mut events = 0;
        let report = execute::<Cpu>(
            &run,
            &data,
            &paths,
            crate::backend::DeviceSpec::Cpu,
            &device,
            &mut |_| events += 1,
        )
        .unwrap();
        assert!(events > 0);
        let s = report.pruning.as_ref().expect("pruning summary");
        assert_eq!(s.steps.len(), 3);
        assert!(s
            .steps
            .windows(2)
            .all(|w| w[0].masked_share <= w[1].masked_share));
        assert!(
            (s.masked_share - target / 100.0).abs() < 0.1,
            "{method} {gran}: masked {}",
            s.masked_share
        );
        assert_eq!(
            s.remaining_parameters,
            s.original_parameters
                - (s.masked_share * s.original_parameters as f64).round() as usize
        );
        let (loaded, lcfg) = train::load_model::<TB>(&run_dir, &device).unwrap();
        let g = GraphKernel::<TB>::new(&data.cheb, data.nodes, &device);
        let again = train::evaluate(&loaded, &g, &data, Split::Test, 64, &device);
        for (a, b) in again.steps.iter().zip(&report.outcome.test.steps) {
            assert!((a.mae - b.mae).abs() < 1e-6);
        }
        match gran {
            Granularity::Channel => {
                assert_eq!(Some(lcfg.param_count()), s.compact_parameters);
                assert_eq!(s.compact_parameters, Some(s.remaining_parameters));
                assert!(lcfg.param_count() < c.param_count());
                assert!(
                    s.compaction_max_abs_diff.unwrap() < 1e-5,
                    "{:?}",
                    s.compaction_max_abs_diff
                );
                assert!(s.speedup.is_some_and(|v| v > 0.0));
                assert_eq!(report.outcome.parameters, lcfg.param_count());
            }
            Granularity::Element => {
                assert_eq!(lcfg, c);
                assert!(s.compact_parameters.is_none() && s.speedup.is_none());
                let zeros = param_refs(&loaded)
                    .iter()
                    .map(|p| p.to_vec().iter().filter(|&&v| v == 0.0).count())
                    .sum::<usize>();
                assert!(zeros >= s.original_parameters - s.remaining_parameters);
            }
        }
        let stored = report.to_store_result("runs/x");
        let p = stored.pruning.unwrap();
        assert_eq!(p.target_pct, target);
        assert_eq!(p.original_parameters as usize, c.param_count());
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_missing_base_is_a_clear_error() {
    let data = tiny();
    let c = cfg(Preset::Student.channels(), data.nodes);
    let run = crate::experiment::RunConfig {
        dataset: data.name,
        split_days: None,
        preset: None,
        model: c,
        train: quick_train(),
        loss: LossConfig::new(LossKind::Mse),
        teacher: None,
        test_runs: Some(0),
        prune: Some(PruneConfig::new(PruneMethod::Taylor, 50.0)),
        base: None,
    };
    let paths = RunPaths {
        run_dir: Path::new("unused").into(),
        teacher_dir: None,
        base_dir: None,
        data_dir: Path::new("unused").into(),
    };
    let e = execute::<Cpu>(
        &run,
        &data,
        &paths,
        crate::backend::DeviceSpec::Cpu,
        &Default::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("base"), "{e}");
}
