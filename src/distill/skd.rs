//! SKD's gradient revision (spec [I-8]).
//!
//! The update is `(1 − α)·g_task + α·Σ_k g'_k`, where `g'_k` is the gradient of KD term `k`
//! (response, structural), projected onto the plane normal to `g_task` when the two conflict
//! (`⟨g_k, g_task⟩ < 0`, dot products over all parameters): `g'_k = g_k − (⟨g_k, g_task⟩ /
//! ‖g_task‖²)·g_task`. Without revision `g'_k = g_k`, i.e. the gradient of the plain weighted
//! sum.
//!
//! burn's `backward()` consumes the autodiff graph, so one graph yields one gradient. With
//! revision on, [`skd_grads`] therefore runs the student's forward pass three times (one graph per
//! term: task, response, structural) and backpropagates each term separately; the teacher's host
//! data is read once and shared. With revision off it runs one forward and one backward of the
//! weighted sum. SKD's student is small (the paper uses batch 16/60), so the three passes cost
//! about three plain student steps.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

use super::{constant, host, mse_loss, same_dims, structural_term, DistillError, LossConfig};
use crate::model::Features;

/// What the revision did, per KD term (response, structural).
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// `⟨g_k, g_task⟩ / (‖g_k‖·‖g_task‖)` before revision (0 where a norm is 0).
    pub cosine: Vec<f64>,
    /// Whether term `k` conflicted with the task gradient and was projected.
    pub projected: Vec<bool>,
}

/// Gradients and loss values of one SKD step.
#[derive(Debug)]
pub struct SkdStep {
    /// The update direction for the optimiser.
    pub grads: GradientsParams,
    /// `(1 − α)·task + α·(response + structural)`.
    pub loss: f64,
    pub task: f64,
    pub response: f64,
    pub structural: f64,
    /// `None` when `gradient_revision` is off.
    pub revision: Option<Revision>,
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Pass 1: `‖g_task‖²`, `⟨g_k, g_task⟩`, `‖g_k‖²` over all float parameters of the module.
struct Dots<'a> {
    task: &'a GradientsParams,
    kd: &'a [GradientsParams],
    tt: f64,
    tk: Vec<f64>,
    kk: Vec<f64>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Dots<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let gt = self
            .task
            .get::<B::InnerBackend, D>(param.id)
            .map(|g| host(&g));
        if let Some(gt) = &gt {
            self.tt += dot(gt, gt);
        }
        for (k, gp) in self.kd.iter().enumerate() {
            if let Some(g) = gp.get::<B::InnerBackend, D>(param.id) {
                let g = host(&g);
                self.kk[k] += dot(&g, &g);
                if let Some(gt) = &gt {
                    self.tk[k] += dot(&g, gt);
                }
            }
        }
    }
}

/// Pass 2: `w_task·g_task + w_kd·Σ_k g_k` per parameter (a missing gradient counts as zero).
struct Combine<'a> {
    task: &'a GradientsParams,
    kd: &'a [GradientsParams],
    w_task: f64,
    w_kd: f64,
    out: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Combine<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let mut acc = self
            .task
            .get::<B::InnerBackend, D>(param.id)
            .map(|g| g.mul_scalar(self.w_task));
        for gp in self.kd {
            if let Some(g) = gp.get::<B::InnerBackend, D>(param.id) {
                let g = g.mul_scalar(self.w_kd);
                acc = Some(match acc {
                    Some(a) => a + g,
                    None => g,
                });
            }
        }
        if let Some(a) = acc {
            self.out.register::<B::InnerBackend, D>(param.id, a);
        }
    }
}

/// SKD update direction from separately computed gradients: `(1 − α)·g_task + α·Σ_k g'_k`, with
/// `g'_k` the projection of `g_k` onto the plane normal to `g_task` when `revise` and
/// `⟨g_k, g_task⟩ < 0` (over all parameters of `model`), else `g_k`. Since the projection is
/// linear, the result is `(1 − α − α·Σ_k c_k)·g_task + α·Σ_k g_k` with `c_k` the projection
/// coefficients; that is how it is computed.
pub fn skd_revised_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    task: &GradientsParams,
    kd: &[GradientsParams],
    alpha: f64,
    revise: bool,
) -> (GradientsParams, Revision) {
    let mut dots = Dots {
        task,
        kd,
        tt: 0.0,
        tk: vec![0.0; kd.len()],
        kk: vec![0.0; kd.len()],
    };
    model.visit(&mut dots);
    let mut cosine = Vec::with_capacity(kd.len());
    let mut projected = Vec::with_capacity(kd.len());
    let mut sum_c = 0.0;
    for k in 0..kd.len() {
        let denom = (dots.kk[k] * dots.tt).sqrt();
        cosine.push(if denom > 0.0 { dots.tk[k] / denom } else { 0.0 });
        let conflict = revise && dots.tk[k] < 0.0 && dots.tt > 0.0;
        if conflict {
            sum_c += dots.tk[k] / dots.tt;
        }
        projected.push(conflict);
    }
    let mut combine = Combine {
        task,
        kd,
        w_task: (1.0 - alpha) - alpha * sum_c,
        w_kd: alpha,
        out: GradientsParams::new(),
    };
    model.visit(&mut combine);
    (combine.out, Revision { cosine, projected })
}

/// One SKD step's gradients (spec [I-8]). `forward` runs the student on the minibatch and
/// returns its prediction `[B, 1, N, 1]` and hidden features; the teacher's prediction and
/// features are constants. With `cfg.gradient_revision` the student forward runs three times
/// (see the module docs); otherwise once. `cfg.alpha` weighs the KD terms.
pub fn skd_grads<B, M, F>(
    model: &M,
    cfg: &LossConfig,
    target: Tensor<B, 4>,
    teacher_y: &Tensor<B::InnerBackend, 4>,
    teacher_f: &Features<B::InnerBackend>,
    forward: F,
) -> Result<SkdStep, DistillError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: Fn(&M) -> (Tensor<B, 4>, Features<B>),
{
    cfg.validate()?;
    let a = cfg.alpha;
    let dims = target.dims();
    same_dims("teacher vs target prediction", &teacher_y.dims(), &dims)?;
    let yt = constant::<B, 4>(host(teacher_y), dims, &target.device());
    let tl_dims = teacher_f.last_block.dims();
    let tl = host(&teacher_f.last_block);
    let value = |t: &Tensor<B, 1>| t.clone().into_scalar().elem::<f64>();
    let run = || -> Result<(Tensor<B, 4>, Features<B>), DistillError> {
        let (ys, f) = forward(model);
        same_dims("student vs target prediction", &ys.dims(), &dims)?;
        Ok((ys, f))
    };
    if !cfg.gradient_revision {
        let (ys, f) = run()?;
        let task = mse_loss(ys.clone(), target);
        let response = mse_loss(ys, yt);
        let structural = structural_term(&f.last_block, &tl, tl_dims)?;
        let (vt, vr, vs) = (value(&task), value(&response), value(&structural));
        let loss = task.mul_scalar(1.0 - a) + (response + structural).mul_scalar(a);
        let grads = GradientsParams::from_grads(loss.backward(), model);
        return Ok(SkdStep {
            grads,
            loss: (1.0 - a) * vt + a * (vr + vs),
            task: vt,
            response: vr,
            structural: vs,
            revision: None,
        });
    }
    let pass = |term: usize| -> Result<(f64, GradientsParams), DistillError> {
        let (ys, f) = run()?;
        let loss = match term {
            0 => mse_loss(ys, target.clone()),
            1 => mse_loss(ys, yt.clone()),
            _ => structural_term(&f.last_block, &tl, tl_dims)?,
        };
        let v = value(&loss);
        Ok((v, GradientsParams::from_grads(loss.backward(), model)))
    };
    let (vt, gt) = pass(0)?;
    let (vr, gr) = pass(1)?;
    let (vs, gs) = pass(2)?;
    let (grads, revision) = skd_revised_grads(model, &gt, &[gr, gs], a, true);
    Ok(SkdStep {
        grads,
        loss: (1.0 - a) * vt + a * (vr + vs),
        task: vt,
        response: vr,
        structural: vs,
        revision: Some(revision),
    })
}
