//! Distillation through real batches (`Batcher`): SKD's revised gradients against autodiff
//! of the weighted sum, and a short STCD distillation that lowers the student's loss.

use burn::optim::{AdamConfig, GradientsParams, Optimizer};

use super::Batcher;
use crate::backend::{Cpu, CpuInner};
use crate::data::{Dataset, Split};
use crate::distill::tests::{close, val};
use crate::distill::*;
use crate::model::{GraphKernel, Preset, Stgcn, StgcnConfig};

fn dev() -> burn::tensor::Device<Cpu> {
    Default::default()
}

fn tiny_data() -> (Dataset, GraphKernel<Cpu>, GraphKernel<CpuInner>) {
    let data = Dataset::synthetic(6, 6, 48, 11);
    let d = dev();
    let ga = GraphKernel::<Cpu>::new(&data.cheb, data.nodes, &d);
    let gi = GraphKernel::<CpuInner>::new(&data.cheb, data.nodes, &d);
    (data, ga, gi)
}

#[test]
fn skd_grads_match_autodiff_of_the_weighted_sum_and_revise_consistently() {
    let (data, ga, gi) = tiny_data();
    let d = dev();
    let teacher = Stgcn::<CpuInner>::new(
        &StgcnConfig::new(Preset::Base.channels(), data.nodes, data.n_his),
        1,
        &d,
    )
    .unwrap();
    let student = Stgcn::<Cpu>::new(
        &StgcnConfig::new(Preset::Student.channels(), data.nodes, data.n_his),
        2,
        &d,
    )
    .unwrap();
    let idx: Vec<usize> = (0..8).collect();
    let batch = Batcher::default().batch::<Cpu>(&data, Split::Train, &idx, &d);
    let (ty, tf) = teacher.forward_features(batch.x.clone().inner(), &gi);
    let fwd = |m: &Stgcn<Cpu>| m.forward_features(batch.x.clone(), &ga);
    let cfg = LossConfig {
        alpha: 0.4,
        gradient_revision: false,
        ..LossConfig::new(LossKind::Skd)
    };
    let step = skd_grads(&student, &cfg, batch.y1.clone(), &ty, &tf, fwd).unwrap();
    assert!(step.revision.is_none());
    // Reference: backward of kd_loss(Skd).
    let (ys, fs) = fwd(&student);
    let inp = KdInputs {
        target: batch.y1.clone(),
        student_y: ys,
        student_f: &fs,
        teacher_y: Some(ty.clone()),
        teacher_f: Some(&tf),
        teacher_tcd: None,
    };
    let l = kd_loss(&cfg, &inp).unwrap().loss;
    assert!(close(val(l.clone()), step.loss, 1e-5));
    let reference = GradientsParams::from_grads(l.backward(), &student);
    let w = student.blocks[0].temporal1.weight.id;
    let (a, b) = (
        host(&step.grads.get::<CpuInner, 2>(w).unwrap()),
        host(&reference.get::<CpuInner, 2>(w).unwrap()),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5 * y.abs().max(1e-2), "{x} vs {y}");
    }
    assert!(step.structural > 0.0 && step.task > 0.0 && step.response > 0.0);

    // With revision: same loss value; the update equals the revision of the separate gradients.
    let cfg = LossConfig {
        gradient_revision: true,
        ..cfg
    };
    let rev = skd_grads(&student, &cfg, batch.y1.clone(), &ty, &tf, fwd).unwrap();
    assert!(close(rev.loss, step.loss, 1e-6));
    let r = rev.revision.as_ref().unwrap();
    assert_eq!(r.projected.len(), 2);
    for (c, p) in r.cosine.iter().zip(&r.projected) {
        assert_eq!(
            *p,
            *c < 0.0,
            "projected exactly when the cosine is negative"
        );
    }
    let g = host(&rev.grads.get::<CpuInner, 2>(w).unwrap());
    assert!(g.iter().all(|v| v.is_finite()));
    if !r.projected.iter().any(|&p| p) {
        for (x, y) in g.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5 * y.abs().max(1e-2));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// End to end
// ---------------------------------------------------------------------------------------------

#[test]
fn short_stcd_distillation_lowers_the_student_loss() {
    let (data, ga, gi) = tiny_data();
    let d = dev();
    // A teacher of other widths than the student (fresh weights: only the shapes matter here).
    let teacher = Stgcn::<CpuInner>::new(
        &StgcnConfig::new(Preset::Base.channels(), data.nodes, data.n_his),
        1,
        &d,
    )
    .unwrap();
    let mut student = Stgcn::<Cpu>::new(
        &StgcnConfig::new([[1, 2, 4], [4, 2, 8]], data.nodes, data.n_his),
        2,
        &d,
    )
    .unwrap();
    let cfg = LossConfig {
        alpha1: 0.5,
        alpha2: 0.5,
        alpha3: 0.5,
        ..LossConfig::new(LossKind::Stcd)
    };
    let mut batcher = Batcher::default();
    let windows = data.windows(Split::Train);
    let bs = 16;
    let eval_idx: Vec<usize> = (0..bs.min(windows)).collect();
    let eval_batch = batcher.batch::<Cpu>(&data, Split::Train, &eval_idx, &d);
    let (eval_ty, eval_tf) = teacher.forward_features(eval_batch.x.clone().inner(), &gi);
    let eval = |m: &Stgcn<Cpu>| -> (f64, u64) {
        let (ys, fs) = m.forward_features(eval_batch.x.clone(), &ga);
        let out = kd_loss(
            &cfg,
            &KdInputs {
                target: eval_batch.y1.clone(),
                student_y: ys,
                student_f: &fs,
                teacher_y: Some(eval_ty.clone()),
                teacher_f: Some(&eval_tf),
                teacher_tcd: None,
            },
        )
        .unwrap();
        (val(out.loss), out.ord_elements)
    };
    let (before, elements) = eval(&student);
    assert_eq!(elements as usize, eval_idx.len() * data.nodes);
    let mut opt = AdamConfig::new().init::<Cpu, Stgcn<Cpu>>();
    let mut picks = 0;
    for step in 0..30 {
        let idx: Vec<usize> = (0..bs).map(|i| (step * bs + i) % windows).collect();
        let batch = batcher.batch::<Cpu>(&data, Split::Train, &idx, &d);
        let (ty, tf) = teacher.forward_features(batch.x.clone().inner(), &gi);
        let (ys, fs) = student.forward_features(batch.x, &ga);
        let out = kd_loss(
            &cfg,
            &KdInputs {
                target: batch.y1,
                student_y: ys,
                student_f: &fs,
                teacher_y: Some(ty),
                teacher_f: Some(&tf),
                teacher_tcd: None,
            },
        )
        .unwrap();
        picks += out.ord_picks;
        let grads = GradientsParams::from_grads(out.loss.backward(), &student);
        student = opt.step(1e-2, student, grads);
    }
    let (after, _) = eval(&student);
    assert!(
        after < 0.8 * before,
        "STCD loss should fall: {before} -> {after}"
    );
    assert!(picks > 0, "a fresh teacher is often far from the target");
}
