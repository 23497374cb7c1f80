//! Preparing a device's kernel caches before a sweep starts its runs (GPU path).
//!
//! burn's CUDA backend compiles each kernel the first time a process uses it; what it compiled
//! is kept on disk ([`crate::backend::gpu_cache_dir`]). Without a warm-up every run of a sweep
//! that starts on a cold machine compiles the same kernels at the same time. The sweep instead
//! runs one process first that does, for each kind of run it is about to start, what that run
//! does once: a training step with the run's loss (teacher forward included), a validation
//! forward at the evaluation batch and the 9-step prediction. Shapes and the kinds of operation
//! decide which kernels are compiled, not the values, so weights and inputs are random.
//!
//! Not covered: pruning's importance pass and the model compaction between pruning steps
//! (they compile when a pruning run first reaches them).

use crate::bench::{random_cheb, random_tensor};
use crate::distill::LossConfig;
use crate::model::{GraphKernel, Stgcn, StgcnConfig};
use crate::plan::Job;
use crate::rng::Rng;
use crate::train::{loss_step, Forward, TeacherStep};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// One line of `stkd warm-up`'s output (JSON): a kind of run whose kernels are compiled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmedUp {
    /// Its position among the kinds given on stdin.
    pub index: usize,
    /// [`WarmShape::describe`].
    pub shape: String,
    pub seconds: f64,
}

/// What one kind of run computes, as far as compiled kernels go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmShape {
    pub model: StgcnConfig,
    pub batch_size: usize,
    pub eval_batch: usize,
    pub loss: LossConfig,
    /// The teacher's network when the run distils.
    pub teacher: Option<StgcnConfig>,
    /// Steps of the test-time prediction (the dataset's).
    pub horizon: usize,
}

impl WarmShape {
    /// One line for a progress display, e.g. `[1,2,4][4,2,8] N=228 b=50 stcd from
    /// [1,32,64][64,32,128]`.
    pub fn describe(&self) -> String {
        let net = |m: &StgcnConfig| {
            m.channels
                .iter()
                .map(|c| format!("{c:?}").replace(' ', ""))
                .collect::<String>()
        };
        let teacher = self
            .teacher
            .as_ref()
            .map(|t| format!(" from {}", net(t)))
            .unwrap_or_default();
        format!(
            "{} N={} b={} {}{teacher}",
            net(&self.model),
            self.model.nodes,
            self.batch_size,
            self.loss.kind.name()
        )
    }
}

/// The distinct shapes of the jobs `wanted` accepts (e.g. those not yet done), in plan order.
/// A distilling job's teacher network is read from the plan's job of its teacher run; a job
/// whose teacher is not in the plan is left out (nothing to take the teacher's shape from).
pub fn shapes(jobs: &[Job], wanted: impl Fn(&Job) -> bool) -> Vec<WarmShape> {
    let mut out: Vec<WarmShape> = Vec::new();
    for job in jobs.iter().filter(|j| wanted(j)) {
        let c = &job.config;
        let teacher = match &c.teacher {
            Some(hash) if c.distils() => match jobs.iter().find(|j| &j.hash == hash) {
                Some(t) => Some(t.config.model.clone()),
                None => continue,
            },
            _ => None,
        };
        let shape = WarmShape {
            model: c.model.clone(),
            batch_size: c.train.batch_size,
            eval_batch: c.train.eval_batch,
            loss: c.loss.clone(),
            teacher,
            horizon: crate::data::DataConfig::new(c.dataset).n_pred,
        };
        if !out.contains(&shape) {
            out.push(shape);
        }
    }
    out
}

/// Runs `shape`'s training step, validation forward and 9-step predictions once on `device`
/// (see the module docs), reading a value back so asynchronous backends finish.
pub fn warm_up<B: AutodiffBackend>(
    shape: &WarmShape,
    device: &B::Device,
) -> Result<(), WarmUpError> {
    let n = shape.model.nodes;
    let m = shape.model.n_his;
    let mut rng = Rng::new(11, 0);
    let cheb = random_cheb(&mut rng, n);
    let g = GraphKernel::<B>::new(&cheb, n, device);
    let g_inner = GraphKernel::<B::InnerBackend>::new(&cheb, n, device);
    let mut model = Stgcn::<B>::new(&shape.model, 1, device)?;
    let x = random_tensor::<B, 4>(&mut rng, [shape.batch_size, m, n, 1], device);
    let y = random_tensor::<B, 4>(&mut rng, [shape.batch_size, 1, n, 1], device);
    let teacher = shape
        .teacher
        .as_ref()
        .map(|t| Stgcn::<B::InnerBackend>::new(t, 2, device))
        .transpose()?;
    let teacher_out = teacher
        .as_ref()
        .map(|t| t.forward_features(x.clone().inner(), &g_inner));
    let teacher_step = teacher_out.as_ref().map(|(y, f)| TeacherStep {
        y: y.clone(),
        features: shape.loss.kind.needs_features().then_some(f),
        tcd: None,
    });
    let student = Forward { x: &x, g: &g };
    let (grads, _) = loss_step(
        &shape.loss,
        &model,
        y,
        teacher_step,
        &student,
        &mut Default::default(),
    )?;
    model = AdamConfig::new()
        .init::<B, Stgcn<B>>()
        .step(1e-3, model, grads);
    let inner = model.valid();
    let xe = random_tensor::<B::InnerBackend, 4>(&mut rng, [shape.eval_batch, m, n, 1], device);
    let _ = inner.forward(xe.clone(), &g_inner).into_data();
    let xp = xe.reshape([shape.eval_batch, m, n]);
    let _ = inner
        .predict_cached(xp.clone(), &g_inner, shape.horizon)
        .into_data();
    let _ = inner.predict(xp, &g_inner, shape.horizon).into_data();
    Ok(())
}

/// Why a warm-up step failed.
#[derive(Debug, thiserror::Error)]
pub enum WarmUpError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Loss(#[from] crate::distill::DistillError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::LossKind;
    use crate::experiment::RunConfig;

    fn job(hash: &str, cfg: RunConfig) -> Job {
        Job {
            hash: hash.into(),
            label: hash.into(),
            variant: String::new(),
            config: cfg,
            deps: Vec::new(),
        }
    }

    fn cfg(channels: crate::model::Channels, kind: LossKind, teacher: Option<&str>) -> RunConfig {
        let mut c: RunConfig = serde_json::from_value(serde_json::json!({
            "dataset": "pemsd7", "split_days": null, "preset": null,
            "model": {"channels": [[1, 2, 4], [4, 2, 8]], "nodes": 12, "n_his": 12},
            "train": {"epochs": 1, "batch_size": 4, "lr": 0.001, "lr_decay": 0.7,
                      "decay_every": 5, "optimizer": "adam", "seed": 1, "eval_batch": 6,
                      "max_steps_per_epoch": null},
            "loss": {"kind": "mse"}, "teacher": null, "test_runs": null
        }))
        .expect("a run configuration");
        c.model.channels = channels;
        c.loss = LossConfig::new(kind);
        c.teacher = teacher.map(String::from);
        c
    }

    #[test]
    fn one_shape_per_kind_of_run_with_its_teachers_network() {
        let t = [[1, 4, 8], [8, 4, 16]];
        let s = [[1, 2, 4], [4, 2, 8]];
        let jobs = vec![
            job("t", cfg(t, LossKind::Mse, None)),
            job("a", cfg(s, LossKind::Stcd, Some("t"))),
            job("b", cfg(s, LossKind::Stcd, Some("t"))),
            job("c", cfg(s, LossKind::Mse, None)),
            job("d", cfg(s, LossKind::Skd, Some("t"))),
            job("e", cfg(s, LossKind::Ord, Some("missing"))),
        ];
        let got = shapes(&jobs, |j| j.hash != "c");
        let kinds: Vec<_> = got.iter().map(|s| s.loss.kind).collect();
        assert_eq!(kinds, [LossKind::Mse, LossKind::Stcd, LossKind::Skd]);
        assert_eq!(got[0].teacher, None);
        assert_eq!(got[1].teacher.as_ref().unwrap().channels, t);
        assert_eq!(got[1].model.channels, s);
        assert!(
            got[1].describe().contains("stcd from [1,4,8][8,4,16]"),
            "{}",
            got[1].describe()
        );
    }

    #[test]
    fn every_kind_of_step_runs_on_the_cpu() {
        let t = [[1, 4, 8], [8, 4, 16]];
        let s = [[1, 2, 4], [4, 2, 8]];
        let mut jobs = vec![job("t", cfg(t, LossKind::Mse, None))];
        for (i, kind) in LossKind::ALL.iter().enumerate() {
            let teacher = kind.needs_teacher().then_some("t");
            jobs.push(job(&format!("s{i}"), cfg(s, *kind, teacher)));
        }
        let all = shapes(&jobs, |_| true);
        assert_eq!(
            all.len(),
            1 + LossKind::ALL.len(),
            "the teacher and one per loss"
        );
        for shape in &all {
            warm_up::<crate::backend::Cpu>(shape, &Default::default())
                .unwrap_or_else(|e| panic!("{}: {e}", shape.describe()));
        }
    }
}
