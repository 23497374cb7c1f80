//! `stkd bench`: one training step at batch 50 and one 1-step forward at batch 1140 for the
//! teacher, base and student networks at N = 228, timed on the chosen backend.
//!
//! Inputs and graph are random (the cost of dense products does not depend on the values), so
//! the benchmark needs no dataset.

use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use crate::model::{GraphKernel, Preset, Stgcn, StgcnConfig, KS};
use crate::rng::Rng;

/// Reference figures to meet or beat: PyTorch on the same 2-core machine (2 threads), from
/// issue #2: training step at batch 50 and 1-step forward at batch 1140, seconds.
pub const PYTORCH_REFERENCE: [(Preset, f64, f64); 3] = [
    (Preset::Teacher, 0.43, 4.0),
    (Preset::Base, 0.085, 0.90),
    (Preset::Student, 0.023, 0.23),
];

/// One row of the benchmark table.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub model: Preset,
    pub nodes: usize,
    /// Median seconds of one training step (forward, backward, Adam update) at `train_batch`.
    pub train_step_s: f64,
    pub train_batch: usize,
    /// Median seconds of one forward step (no autodiff) at `forward_batch`.
    pub forward_s: f64,
    pub forward_batch: usize,
    pub reps: usize,
    pub pytorch_train_step_s: f64,
    pub pytorch_forward_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn random_tensor<B: burn::tensor::backend::Backend, const D: usize>(
    rng: &mut Rng,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    let len = shape.iter().product();
    let v: Vec<f32> = (0..len).map(|_| rng.next_f64() as f32 - 0.5).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// A Chebyshev stack with `T_0 = I` and small random higher terms (dense products cost the
/// same whatever the values).
fn random_cheb(rng: &mut Rng, nodes: usize) -> Vec<f32> {
    let mut cheb: Vec<f32> = (0..KS * nodes * nodes)
        .map(|_| (rng.next_f64() as f32 - 0.5) / nodes as f32)
        .collect();
    for (e, v) in cheb[..nodes * nodes].iter_mut().enumerate() {
        *v = if e % (nodes + 1) == 0 { 1.0 } else { 0.0 };
    }
    cheb
}

/// Time the three presets. `reps` timed repetitions after one warm-up; medians are reported.
pub fn run<B: AutodiffBackend>(
    nodes: usize,
    train_batch: usize,
    forward_batch: usize,
    reps: usize,
    device: &B::Device,
    mut on_row: impl FnMut(&BenchRow),
) -> Vec<BenchRow> {
    let mut rng = Rng::new(42, 0);
    let cheb = random_cheb(&mut rng, nodes);
    let g = GraphKernel::<B>::new(&cheb, nodes, device);
    let g_inner = GraphKernel::<B::InnerBackend>::new(&cheb, nodes, device);
    let mut rows = Vec::new();
    for (preset, pt_train, pt_fwd) in PYTORCH_REFERENCE {
        let cfg = StgcnConfig::new(preset.channels(), nodes, 12);
        let mut model = Stgcn::<B>::new(&cfg, 1, device).expect("preset is valid");
        let mut opt = AdamConfig::new().init::<B, Stgcn<B>>();
        let x = random_tensor::<B, 4>(&mut rng, [train_batch, 12, nodes, 1], device);
        let y = random_tensor::<B, 4>(&mut rng, [train_batch, 1, nodes, 1], device);
        let mut train_times = Vec::new();
        for rep in 0..=reps {
            let t = Instant::now();
            let loss = crate::distill::mse_loss(model.forward(x.clone(), &g), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(1e-3, model, grads);
            // Read one parameter back so asynchronous backends finish the step.
            let _ = model.output.fc_bias.val().into_data();
            if rep > 0 {
                train_times.push(t.elapsed().as_secs_f64());
            }
        }
        let inner = model.valid();
        let xf =
            random_tensor::<B::InnerBackend, 4>(&mut rng, [forward_batch, 12, nodes, 1], device);
        let mut fwd_times = Vec::new();
        for rep in 0..=reps {
            let t = Instant::now();
            let _ = inner.forward(xf.clone(), &g_inner).into_data();
            if rep > 0 {
                fwd_times.push(t.elapsed().as_secs_f64());
            }
        }
        let row = BenchRow {
            model: preset,
            nodes,
            train_step_s: median(train_times),
            train_batch,
            forward_s: median(fwd_times),
            forward_batch,
            reps,
            pytorch_train_step_s: pt_train,
            pytorch_forward_s: pt_fwd,
        };
        on_row(&row);
        let _ = inner.num_params();
        rows.push(row);
    }
    rows
}

/// Target for a whole STCD distillation step (teacher forward + student forward/backward +
/// loss + update) at batch 50, N = 228, from issue #3.
pub const STCD_STEP_TARGET_S: f64 = 0.65;

/// Median seconds of one STCD training step, teacher → student, at `batch` (Table 6 weights
/// for PeMSD7), with random inputs and weights.
pub fn stcd_step<B: AutodiffBackend>(
    nodes: usize,
    batch: usize,
    reps: usize,
    device: &B::Device,
) -> f64 {
    use crate::distill::{kd_loss, KdInputs, LossConfig, LossKind};
    let mut rng = Rng::new(7, 0);
    let cheb = random_cheb(&mut rng, nodes);
    let g = GraphKernel::<B>::new(&cheb, nodes, device);
    let g_t = GraphKernel::<B::InnerBackend>::new(&cheb, nodes, device);
    let teacher = Stgcn::<B::InnerBackend>::new(
        &StgcnConfig::new(Preset::Teacher.channels(), nodes, 12),
        1,
        device,
    )
    .expect("preset is valid");
    let mut student = Stgcn::<B>::new(
        &StgcnConfig::new(Preset::Student.channels(), nodes, 12),
        2,
        device,
    )
    .expect("preset is valid");
    let mut opt = AdamConfig::new().init::<B, Stgcn<B>>();
    let mut loss_cfg = LossConfig::new(LossKind::Stcd);
    (loss_cfg.alpha1, loss_cfg.alpha2, loss_cfg.alpha3) = (0.170, 0.047, 0.313);
    let x = random_tensor::<B, 4>(&mut rng, [batch, 12, nodes, 1], device);
    let y = random_tensor::<B, 4>(&mut rng, [batch, 1, nodes, 1], device);
    let mut times = Vec::new();
    for rep in 0..=reps {
        let t = Instant::now();
        let (yt, ft) = teacher.forward_features(x.clone().inner(), &g_t);
        let (ys, fs) = student.forward_features(x.clone(), &g);
        let out = kd_loss(
            &loss_cfg,
            &KdInputs {
                target: y.clone(),
                student_y: ys,
                student_f: &fs,
                teacher_y: Some(yt),
                teacher_f: Some(&ft),
            },
        )
        .expect("valid STCD configuration");
        let grads = GradientsParams::from_grads(out.loss.backward(), &student);
        student = opt.step(1e-3, student, grads);
        let _ = student.output.fc_bias.val().into_data();
        if rep > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    median(times)
}
