//! The one training step of every run kind, picked by loss: plain MSE (no teacher), SKD with
//! its gradient revision, or the run's distillation loss ([`crate::distill::kd_loss`]).
//! Execution ([`crate::exec`]), the GPU warm-up ([`crate::warmup`]) and pruning
//! ([`crate::prune`]) all call [`loss_step`]; they differ only in how the student's forward
//! runs ([`StudentForward`]: plain, or through pruning's masks) and where the teacher's
//! outputs come from (computed per minibatch, or cached before training).

use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use super::{backward_step, LossTally};
use crate::distill::cache::TeacherBatch;
use crate::distill::{kd_loss, mse_loss, skd_grads, DistillError, KdInputs, LossConfig, LossKind};
use crate::model::{Features, GraphKernel, Stgcn};

/// What the teacher gives one minibatch's step: its one-step output and, for the losses that
/// read them, its hidden features, or its side of TCD already computed (the teacher cache,
/// [`crate::distill::cache`]: then the features hold no temporal layers).
pub struct TeacherStep<'a, B: Backend> {
    pub y: Tensor<B, 4>,
    pub features: Option<&'a Features<B>>,
    pub tcd: Option<&'a [Vec<f32>]>,
}

impl<'a, B: Backend> TeacherStep<'a, B> {
    /// A minibatch's teacher side as the cache gives it: the features only for a loss that
    /// reads them.
    pub fn from_cache(c: &'a TeacherBatch<B>, kind: LossKind) -> Self {
        TeacherStep {
            y: c.y.clone(),
            features: kind.needs_features().then_some(&c.features),
            tcd: c.tcd.as_deref(),
        }
    }

    /// A minibatch's teacher side from a teacher forward at this step.
    pub fn from_forward((y, features): &'a (Tensor<B, 4>, Features<B>)) -> Self {
        TeacherStep {
            y: y.clone(),
            features: Some(features),
            tcd: None,
        }
    }
}

/// The student's forward pass of a step: its one-step output, or with its hidden features.
pub trait StudentForward<B: AutodiffBackend> {
    fn output(&self, model: &Stgcn<B>) -> Tensor<B, 4>;
    fn with_features(&self, model: &Stgcn<B>) -> (Tensor<B, 4>, Features<B>);
}

/// The plain forward pass of a minibatch `x` on graph `g`.
pub struct Forward<'a, B: Backend> {
    pub x: &'a Tensor<B, 4>,
    pub g: &'a GraphKernel<B>,
}

impl<B: AutodiffBackend> StudentForward<B> for Forward<'_, B> {
    fn output(&self, model: &Stgcn<B>) -> Tensor<B, 4> {
        model.forward(self.x.clone(), self.g)
    }
    fn with_features(&self, model: &Stgcn<B>) -> (Tensor<B, 4>, Features<B>) {
        model.forward_features(self.x.clone(), self.g)
    }
}

/// Gradients and value of one training step against `target`: without a teacher the plain
/// MSE; with one, `loss` — SKD through [`skd_grads`] (its gradient revision needs each term's
/// gradient separately, so it runs the student's forward itself), every other loss through
/// [`kd_loss`] of the student's outputs and features against the teacher's (Eq. 13 for STCD),
/// its ORD picks added to `tally`.
pub fn loss_step<B: AutodiffBackend>(
    loss: &LossConfig,
    model: &Stgcn<B>,
    target: Tensor<B, 4>,
    teacher: Option<TeacherStep<'_, B::InnerBackend>>,
    student: &impl StudentForward<B>,
    tally: &mut LossTally,
) -> Result<(GradientsParams, f32), DistillError> {
    let Some(teacher) = teacher else {
        return Ok(backward_step(
            mse_loss(student.output(model), target),
            model,
        ));
    };
    if loss.kind == LossKind::Skd {
        let features = teacher.features.ok_or(DistillError::MissingTeacher {
            kind: LossKind::Skd,
            what: "features",
        })?;
        let step = skd_grads(model, loss, target, &teacher.y, features, |m| {
            student.with_features(m)
        })?;
        return Ok((step.grads, step.loss as f32));
    }
    let (student_y, student_f) = student.with_features(model);
    let out = kd_loss(
        loss,
        &KdInputs {
            target,
            student_y,
            student_f: &student_f,
            teacher_y: Some(teacher.y),
            teacher_f: teacher.features,
            teacher_tcd: teacher.tcd,
        },
    )?;
    tally.picks += out.ord_picks;
    tally.elements += out.ord_elements;
    Ok(backward_step(out.loss, model))
}
