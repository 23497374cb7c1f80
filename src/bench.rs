//! `stkd bench`: one training step at batch 50 and one 1-step forward at batch 1140 for the
//! teacher, base and student networks at N = 228, timed on the chosen backend.
//!
//! Inputs and weights are random (the cost of dense products does not depend on the values);
//! the graph is PeMSD7(M)'s, since the CPU kernels skip the zeros of a sparse graph (a random
//! dense graph where the data is missing or N differs). Also the CPU-against-device check.

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
    /// Seconds of the untimed first training step and first forward (on a GPU: kernel
    /// compilation and autotuning, unless an earlier process cached them).
    pub warmup_train_s: f64,
    pub warmup_forward_s: f64,
    pub reps: usize,
    pub pytorch_train_step_s: f64,
    pub pytorch_forward_s: f64,
}

/// This machine's speed at the moment: GFLOP/s of a 1024³ f32 product on all rayon threads
/// (the `gemm` crate the CPU kernels use; median of 5). Shared and virtual machines change
/// speed with their neighbours' load (on the 2-core machine of BENCHMARKS.md the teacher's step
/// took 0.39–0.47 s within one hour with the same binary), so `stkd bench` prints this beside
/// its figures.
pub fn cpu_probe_gflops() -> f64 {
    let n = 1024;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 * 0.1).collect();
    let mut c = vec![0f32; n * n];
    let times = (0..5)
        .map(|_| {
            let t = Instant::now();
            let a_ = crate::kernels::Mat::rows(&a, n);
            crate::kernels::gemm((n, n, n), &mut c, n, a_, a_, false, true);
            t.elapsed().as_secs_f64()
        })
        .collect();
    2.0 * (n * n * n) as f64 / median(times) / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub(crate) fn random_tensor<B: burn::tensor::backend::Backend, const D: usize>(
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
pub(crate) fn random_cheb(rng: &mut Rng, nodes: usize) -> Vec<f32> {
    let mut cheb: Vec<f32> = (0..KS * nodes * nodes)
        .map(|_| (rng.next_f64() as f32 - 0.5) / nodes as f32)
        .collect();
    for (e, v) in cheb[..nodes * nodes].iter_mut().enumerate() {
        *v = if e % (nodes + 1) == 0 { 1.0 } else { 0.0 };
    }
    cheb
}

/// The graph the benchmark runs on: PeMSD7(M)'s Chebyshev stack (`[Ks, N, N]`) when
/// `nodes` is its 228 and the data is in `data_dir` (the graph's sparsity matters to the CPU
/// kernels), else a dense random one; with a label saying which.
pub fn graph(nodes: usize, data_dir: &std::path::Path) -> (Vec<f32>, &'static str) {
    use crate::data::{DataConfig, Dataset, DatasetName};
    if nodes == 228 {
        let mut cfg = DataConfig::new(DatasetName::Pemsd7);
        cfg.data_dir = data_dir.to_path_buf();
        if let Ok(data) = Dataset::load(&cfg) {
            return (data.cheb, "PeMSD7(M) road graph");
        }
    }
    (
        random_cheb(&mut Rng::new(42, 0), nodes),
        "random dense graph",
    )
}

/// Time the three presets on the Chebyshev stack `cheb` (`[Ks, N, N]`). `reps` timed
/// repetitions after one warm-up; medians are reported.
pub fn run<B: AutodiffBackend>(
    cheb: &[f32],
    nodes: usize,
    train_batch: usize,
    forward_batch: usize,
    reps: usize,
    device: &B::Device,
    mut on_row: impl FnMut(&BenchRow),
) -> Vec<BenchRow> {
    let mut rng = Rng::new(42, 0);
    let g = GraphKernel::<B>::new(cheb, nodes, device);
    let g_inner = GraphKernel::<B::InnerBackend>::new(cheb, nodes, device);
    let mut rows = Vec::new();
    for (preset, pt_train, pt_fwd) in PYTORCH_REFERENCE {
        let cfg = StgcnConfig::new(preset.channels(), nodes, 12);
        let mut model = Stgcn::<B>::new(&cfg, 1, device).expect("preset is valid");
        let mut opt = AdamConfig::new().init::<B, Stgcn<B>>();
        let x = random_tensor::<B, 4>(&mut rng, [train_batch, 12, nodes, 1], device);
        let y = random_tensor::<B, 4>(&mut rng, [train_batch, 1, nodes, 1], device);
        let mut train_times = Vec::new();
        let mut warmup_train_s = 0.0;
        for rep in 0..=reps {
            let t = Instant::now();
            let loss = crate::distill::mse_loss(model.forward(x.clone(), &g), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(1e-3, model, grads);
            // Read one parameter back so asynchronous backends finish the step.
            let _ = model.output.fc_bias.val().into_data();
            if rep > 0 {
                train_times.push(t.elapsed().as_secs_f64());
            } else {
                warmup_train_s = t.elapsed().as_secs_f64();
            }
        }
        let inner = model.valid();
        let xf =
            random_tensor::<B::InnerBackend, 4>(&mut rng, [forward_batch, 12, nodes, 1], device);
        let mut fwd_times = Vec::new();
        let mut warmup_forward_s = 0.0;
        for rep in 0..=reps {
            let t = Instant::now();
            let _ = inner.forward(xf.clone(), &g_inner).into_data();
            if rep > 0 {
                fwd_times.push(t.elapsed().as_secs_f64());
            } else {
                warmup_forward_s = t.elapsed().as_secs_f64();
            }
        }
        let row = BenchRow {
            model: preset,
            nodes,
            train_step_s: median(train_times),
            train_batch,
            forward_s: median(fwd_times),
            forward_batch,
            warmup_train_s,
            warmup_forward_s,
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

/// The STCD benchmark's fixture: a frozen teacher, a student, the Table 6 PeMSD7 weights and one
/// random batch. Built from host-side random numbers only, so the same seeds give the same
/// weights and inputs on every backend (the device check relies on this).
struct StcdFixture<B: AutodiffBackend> {
    g: GraphKernel<B>,
    g_t: GraphKernel<B::InnerBackend>,
    teacher: Stgcn<B::InnerBackend>,
    student: Stgcn<B>,
    loss_cfg: crate::distill::LossConfig,
    x: Tensor<B, 4>,
    y: Tensor<B, 4>,
}

impl<B: AutodiffBackend> StcdFixture<B> {
    fn new(cheb: &[f32], nodes: usize, batch: usize, device: &B::Device) -> Self {
        use crate::distill::{LossConfig, LossKind};
        let mut rng = Rng::new(7, 0);
        let cfg = |p: Preset| StgcnConfig::new(p.channels(), nodes, 12);
        let mut loss_cfg = LossConfig::new(LossKind::Stcd);
        (loss_cfg.alpha1, loss_cfg.alpha2, loss_cfg.alpha3) = (0.170, 0.047, 0.313);
        Self {
            g: GraphKernel::new(cheb, nodes, device),
            g_t: GraphKernel::new(cheb, nodes, device),
            teacher: Stgcn::new(&cfg(Preset::Teacher), 1, device).expect("preset is valid"),
            student: Stgcn::new(&cfg(Preset::Student), 2, device).expect("preset is valid"),
            loss_cfg,
            x: random_tensor::<B, 4>(&mut rng, [batch, 12, nodes, 1], device),
            y: random_tensor::<B, 4>(&mut rng, [batch, 1, nodes, 1], device),
        }
    }

    /// Teacher forward (no autodiff), student forward, STCD loss (Eq. 13).
    fn loss(&self) -> Tensor<B, 1> {
        use crate::distill::{kd_loss, KdInputs};
        let (yt, ft) = self
            .teacher
            .forward_features(self.x.clone().inner(), &self.g_t);
        let (ys, fs) = self.student.forward_features(self.x.clone(), &self.g);
        kd_loss(
            &self.loss_cfg,
            &KdInputs {
                target: self.y.clone(),
                student_y: ys,
                student_f: &fs,
                teacher_y: Some(yt),
                teacher_f: Some(&ft),
                teacher_tcd: None,
            },
        )
        .expect("valid STCD configuration")
        .loss
    }
}

/// Median seconds of one STCD training step, teacher → student, at `batch` (Table 6 weights
/// for PeMSD7) on the Chebyshev stack `cheb`, with random inputs and weights.
pub fn stcd_step<B: AutodiffBackend>(
    cheb: &[f32],
    nodes: usize,
    batch: usize,
    reps: usize,
    device: &B::Device,
) -> f64 {
    let mut fx = StcdFixture::<B>::new(cheb, nodes, batch, device);
    let mut opt = AdamConfig::new().init::<B, Stgcn<B>>();
    let mut times = Vec::new();
    for rep in 0..=reps {
        let t = Instant::now();
        let grads = GradientsParams::from_grads(fx.loss().backward(), &fx.student);
        fx.student = opt.step(1e-3, fx.student, grads);
        let _ = fx.student.output.fc_bias.val().into_data();
        if rep > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    median(times)
}

/// One quantity compared between two backends by [`parity`].
#[derive(Debug, Clone, Serialize)]
pub struct ParityRow {
    pub quantity: &'static str,
    pub elements: usize,
    /// Largest absolute difference over the elements.
    pub max_abs_diff: f64,
    /// Largest absolute value on the reference backend (the scale of the quantity).
    pub max_abs_ref: f64,
}

impl ParityRow {
    /// `max_abs_diff / max_abs_ref`: the difference relative to the quantity's scale.
    pub fn relative(&self) -> f64 {
        self.max_abs_diff / self.max_abs_ref.max(f64::MIN_POSITIVE)
    }
}

/// The quantities compared by [`parity`], computed on one backend.
fn parity_values<B: AutodiffBackend>(
    nodes: usize,
    batch: usize,
    device: &B::Device,
) -> Vec<(&'static str, Vec<f32>)> {
    use crate::distill::host;
    let cheb = random_cheb(&mut Rng::new(7, 0), nodes);
    let mut fx = StcdFixture::<B>::new(&cheb, nodes, batch, device);
    let mut out = Vec::new();
    let (yt, _) = fx.teacher.forward_features(fx.x.clone().inner(), &fx.g_t);
    out.push(("teacher output (1 step)", host(&yt)));
    let hist = fx.x.clone().inner().reshape([batch, 12, nodes]);
    out.push((
        "teacher prediction (9 steps)",
        host(&fx.teacher.predict(hist, &fx.g_t, 9)),
    ));
    let loss = fx.loss();
    out.push(("STCD loss", host(&loss)));
    let grads = GradientsParams::from_grads(loss.backward(), &fx.student);
    let mut flat = FlatGrads {
        grads: &grads,
        values: Vec::new(),
    };
    fx.student.visit(&mut flat);
    out.push(("student gradients (STCD)", flat.values));
    let mut opt = AdamConfig::new().init::<B, Stgcn<B>>();
    fx.student = opt.step(1e-3, fx.student, grads);
    for _ in 0..2 {
        let grads = GradientsParams::from_grads(fx.loss().backward(), &fx.student);
        fx.student = opt.step(1e-3, fx.student, grads);
    }
    let (ys, _) = fx
        .student
        .valid()
        .forward_features(fx.x.clone().inner(), &fx.g_t);
    out.push(("student output after 3 Adam steps", host(&ys)));
    out
}

/// Concatenates every float parameter's gradient, in the module's visiting order.
struct FlatGrads<'a> {
    grads: &'a GradientsParams,
    values: Vec<f32>,
}

impl<B: AutodiffBackend> burn::module::ModuleVisitor<B> for FlatGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.values.extend(crate::distill::host(&g));
        }
    }
}

/// Compare backend `D` on `device` against the reference backend `R` on `ref_device`: the same
/// weights and inputs (host-generated from fixed seeds) through teacher inference, the 9-step
/// prediction, the STCD loss, the student's gradients and three Adam steps.
pub fn parity<R: AutodiffBackend, D: AutodiffBackend>(
    nodes: usize,
    batch: usize,
    ref_device: &R::Device,
    device: &D::Device,
) -> Vec<ParityRow> {
    let reference = parity_values::<R>(nodes, batch, ref_device);
    let other = parity_values::<D>(nodes, batch, device);
    reference
        .into_iter()
        .zip(other)
        .map(|((quantity, a), (_, b))| {
            assert_eq!(a.len(), b.len(), "{quantity}: element counts differ");
            let max_abs_diff = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| (x as f64 - y as f64).abs())
                .fold(0.0, f64::max);
            let max_abs_ref = a.iter().map(|&x| (x as f64).abs()).fold(0.0, f64::max);
            ParityRow {
                quantity,
                elements: a.len(),
                max_abs_diff,
                max_abs_ref,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;

    #[test]
    fn parity_of_a_backend_with_itself_is_exact_and_covers_every_quantity() {
        let dev = Default::default();
        let rows = parity::<Cpu, Cpu>(12, 3, &dev, &dev);
        assert_eq!(rows.len(), 5);
        for r in &rows {
            assert!(r.elements > 0 && r.max_abs_ref > 0.0, "{r:?}");
            assert_eq!(r.max_abs_diff, 0.0, "{r:?}");
        }
        // The gradient row spans every student parameter.
        let cfg = StgcnConfig::new(Preset::Student.channels(), 12, 12);
        assert_eq!(rows[3].elements, cfg.param_count());
    }
}
