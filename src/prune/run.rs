//! A pruning run (Algorithm 1): importance-accumulating training with pruning steps, then
//! fine-tuning, evaluation, compaction, timing and the checkpoint.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};

use super::forward::{
    apply_masks, forward_masked, forward_masked_features, mask_grads, DeviceMasks, Importance,
    MaskedView,
};
use super::mask::{
    compact, counts_for_goal, group_scores, select_channels, select_elements, ChannelState,
    ElementState, Masks,
};
use super::topology::Topology;
use super::{
    FinetuneLoss, Granularity, Interval, PruneConfig, PruneError, PruneMethod, PruneStep,
    PruneSummary,
};
use crate::data::{Dataset, Split};
use crate::distill::cache::TeacherCache;
use crate::distill::LossConfig;
use crate::model::{Features, GraphKernel, Stgcn, StgcnConfig};
use crate::resume::{Checkpoint, ResumeDir};
use crate::train::{
    loss_step, Batch, Batcher, Best, EpochRecord, Event, Fit, LossTally, Metrics, Opt,
    StudentForward, TeacherStep, TrainConfig, TrainError,
};

/// What [`prune_model`] produced.
pub struct PruneOutput<B: Backend> {
    /// The delivered network (compacted for channel granularity, masked otherwise): the
    /// fine-tuning epoch with the best validation MAE, or the last pruned state without
    /// fine-tuning.
    pub model: Stgcn<B>,
    pub model_config: StgcnConfig,
    pub epochs: Vec<EpochRecord>,
    /// 1-based epoch of `model`.
    pub best_epoch: usize,
    pub val: Metrics,
    /// Without timings (see [`execute_prune`]).
    pub summary: PruneSummary,
    /// ORD's teacher picks over all distillation steps (Table 3), when the loss has ORD.
    pub attention: Option<(u64, u64)>,
    /// Training seconds of earlier sessions of a resumed run.
    pub seconds_before: f64,
}

/// What a pruning run's per-epoch checkpoint holds besides its pieces (`model`: the network
/// being pruned, or in fine-tuning the compacted one; `optim`; `best`: fine-tuning's best).
#[derive(Serialize, Deserialize)]
struct PruneState {
    curve: Vec<EpochRecord>,
    /// Pruning steps taken, minibatches trained in the pruning phase.
    done: usize,
    minibatches: usize,
    steps: Vec<PruneStep>,
    channel_keep: Vec<Vec<bool>>,
    element_keep: Vec<Vec<bool>>,
    /// Importance sums since the last pruning step, and their minibatch count.
    importance: Vec<Vec<f32>>,
    importance_batches: usize,
    picks: u64,
    elements: u64,
    /// Fine-tuning: the compacted network's shape, the compaction check, the best epoch.
    ft_config: Option<StgcnConfig>,
    compaction_diff: Option<f64>,
    best: Option<(f64, usize, Metrics)>,
    seconds: f64,
}

fn resume_key(
    base_cfg: &StgcnConfig,
    train: &TrainConfig,
    loss: &LossConfig,
    pc: &PruneConfig,
) -> String {
    serde_json::to_string(&(base_cfg, train, loss, pc)).expect("configuration serialises")
}

/// What every epoch of both phases needs: the data, the loss and its teacher, the graph.
struct Loop<'a, B: AutodiffBackend> {
    data: &'a Dataset,
    train: &'a TrainConfig,
    loss: &'a LossConfig,
    device: &'a B::Device,
    teacher: Option<&'a Stgcn<B::InnerBackend>>,
    /// What the loss reads of the teacher, computed once ([`TeacherCache`]); the teacher's
    /// forward at every step without it (or after a read error).
    cache: Option<&'a TeacherCache>,
    g: GraphKernel<B>,
    g_eval: GraphKernel<B::InnerBackend>,
    picks: u64,
    elements: u64,
}

impl<B: AutodiffBackend> Loop<'_, B> {
    /// Gradients and value of the plain loss (`kd = false`) or of the run's distillation
    /// loss against the frozen teacher.
    fn grads(
        &mut self,
        model: &Stgcn<B>,
        view: Option<&MaskedView<B>>,
        batch: &Batch<B>,
        kd: bool,
    ) -> Result<(GradientsParams, f32), PruneError> {
        let student = Masked {
            x: &batch.x,
            g: &self.g,
            view,
        };
        if !kd {
            let mut unused = LossTally::default();
            return Ok(loss_step(
                self.loss,
                model,
                batch.y1.clone(),
                None,
                &student,
                &mut unused,
            )?);
        }
        let teacher = self.teacher.ok_or(PruneError::NoTeacher {
            loss: self.loss.kind,
        })?;
        let cached = self.cache.and_then(|c| {
            let got = c.batch_or_warn::<B::InnerBackend>(&batch.idx, self.device);
            if got.is_none() {
                self.cache = None;
            }
            got
        });
        let fresh = cached
            .is_none()
            .then(|| teacher.forward_features(batch.x.clone().inner(), &self.g_eval));
        let teacher_step = match (&cached, &fresh) {
            (Some(c), _) => TeacherStep::from_cache(c, self.loss.kind),
            (None, Some(f)) => TeacherStep::from_forward(f),
            (None, None) => unreachable!("computed when not cached"),
        };
        let mut tally = LossTally::default();
        let step = loss_step(
            self.loss,
            model,
            batch.y1.clone(),
            Some(teacher_step),
            &student,
            &mut tally,
        )?;
        self.picks += tally.picks;
        self.elements += tally.elements;
        Ok(step)
    }
}

/// The student's forward through the pruning masks (`view`; none before the first pruning
/// step and in fine-tuning).
struct Masked<'a, B: AutodiffBackend> {
    x: &'a Tensor<B, 4>,
    g: &'a GraphKernel<B>,
    view: Option<&'a MaskedView<B>>,
}

impl<B: AutodiffBackend> StudentForward<B> for Masked<'_, B> {
    fn output(&self, model: &Stgcn<B>) -> Tensor<B, 4> {
        forward_masked(model, self.x.clone(), self.g, self.view)
    }
    fn with_features(&self, model: &Stgcn<B>) -> (Tensor<B, 4>, Features<B>) {
        forward_masked_features(model, self.x.clone(), self.g, self.view)
    }
}

/// The pruning phase's state (Algorithm 1 lines 3–23): which channels or elements are kept,
/// the importance accumulated since the last pruning step, the schedule's position.
struct Pruning<'a, B: AutodiffBackend> {
    pc: &'a PruneConfig,
    topo: Topology,
    device: &'a B::Device,
    channel: bool,
    /// Minibatches between pruning steps, number of steps.
    interval: usize,
    n_steps: usize,
    cstate: ChannelState,
    estate: ElementState,
    masks: Masks,
    dmasks: DeviceMasks<B::InnerBackend>,
    view: Option<MaskedView<B>>,
    importance: Importance<B::InnerBackend>,
    /// Pruning steps taken, minibatches trained in the phase.
    done: usize,
    minibatches: usize,
    steps: Vec<PruneStep>,
}

impl<'a, B: AutodiffBackend> Pruning<'a, B> {
    fn new(pc: &'a PruneConfig, topo: Topology, interval: usize, device: &'a B::Device) -> Self {
        let masks = Masks::none(&topo);
        Pruning {
            pc,
            channel: pc.granularity == Granularity::Channel,
            interval,
            n_steps: pc.steps(),
            cstate: ChannelState::full(&topo),
            estate: ElementState::full(&topo),
            dmasks: DeviceMasks::new(&topo, &masks, device),
            masks,
            view: None,
            importance: Importance::new(&topo, device),
            done: 0,
            minibatches: 0,
            steps: Vec::with_capacity(pc.steps()),
            topo,
            device,
        }
    }

    /// The state of a checkpoint (`PruneState`'s pruning fields).
    fn restore(&mut self, st: &PruneState) {
        self.done = st.done;
        self.minibatches = st.minibatches;
        self.steps = st.steps.clone();
        self.cstate = ChannelState {
            keep: st.channel_keep.clone(),
        };
        self.estate = ElementState {
            keep: st.element_keep.clone(),
        };
        if self.done > 0 {
            self.masks = if self.channel {
                self.view = Some(MaskedView::new(&self.topo, &self.cstate, self.device));
                self.cstate.masks(&self.topo)
            } else {
                self.estate.masks(&self.topo)
            };
            self.dmasks = DeviceMasks::new(&self.topo, &self.masks, self.device);
        }
        self.importance = Importance::from_host(&st.importance, st.importance_batches, self.device);
    }

    /// The checkpoint state of the pruning phase (fine-tuning fills its own fields).
    fn state(&self, curve: &[EpochRecord], lp: &Loop<B>, seconds: f64) -> PruneState {
        let (sums, batches) = self.importance.to_host();
        PruneState {
            curve: curve.to_vec(),
            done: self.done,
            minibatches: self.minibatches,
            steps: self.steps.clone(),
            channel_keep: self.cstate.keep.clone(),
            element_keep: self.estate.keep.clone(),
            importance: sums,
            importance_batches: batches,
            picks: lp.picks,
            elements: lp.elements,
            ft_config: None,
            compaction_diff: None,
            best: None,
            seconds,
        }
    }

    /// One minibatch's update from its gradients: importance accumulated (until the last
    /// step), pruned weights' gradients zeroed, the optimiser's step, the masks re-applied and,
    /// every `interval` minibatches, a pruning step (1-based `epoch`, `minibatch` in it).
    fn update(
        &mut self,
        model: Stgcn<B>,
        mut grads: GradientsParams,
        opt: &mut Opt<B>,
        lr: f64,
        epoch: usize,
        minibatch: usize,
    ) -> Stgcn<B> {
        if self.done < self.n_steps {
            self.importance.add(&model, &grads);
        }
        mask_grads(&mut grads, &model, &self.dmasks);
        let model = apply_masks(opt.step(lr, model, grads), &self.dmasks);
        self.minibatches += 1;
        if self.done < self.n_steps && self.minibatches.is_multiple_of(self.interval) {
            self.prune_step(model, epoch, minibatch)
        } else {
            model
        }
    }

    /// Algorithm 1 lines 14–21: the mean importance since the last step ranks the channels (or
    /// elements); the lowest go until the step's share of the goal is masked.
    fn prune_step(&mut self, model: Stgcn<B>, epoch: usize, minibatch: usize) -> Stgcn<B> {
        self.done += 1;
        let topo = &self.topo;
        let scores = self.importance.take_mean();
        let goal = self.pc.goal(self.done);
        let channel_share = if self.channel {
            let (counts, q, _) = counts_for_goal(topo, &self.cstate.counts(), goal);
            let groups = group_scores(topo, &scores);
            select_channels(topo, &mut self.cstate, &counts, &groups);
            self.masks = self.cstate.masks(topo);
            self.view = Some(MaskedView::new(topo, &self.cstate, self.device));
            Some(q)
        } else {
            select_elements(topo, &mut self.estate, &scores, goal);
            self.masks = self.estate.masks(topo);
            None
        };
        self.dmasks = DeviceMasks::new(topo, &self.masks, self.device);
        self.steps.push(PruneStep {
            step: self.done,
            epoch,
            minibatch,
            goal_share: goal,
            masked_share: self.masks.masked() as f64 / topo.total_params() as f64,
            channel_share,
            channels: self.channel.then(|| self.cstate.channels(topo)),
        });
        apply_masks(model, &self.dmasks)
    }

    /// What the pruning did, for the run's report (the delivered network's shape `ft_cfg`).
    fn summary(self, ft_cfg: &StgcnConfig, compaction_diff: Option<f64>) -> PruneSummary {
        let total = self.topo.total_params();
        let masked = self.masks.masked();
        PruneSummary {
            method: self.pc.method,
            granularity: self.pc.granularity,
            target_pct: self.pc.target_pct,
            masked_share: masked as f64 / total as f64,
            original_parameters: total,
            remaining_parameters: total - masked,
            compact_parameters: self.channel.then(|| ft_cfg.param_count()),
            compact_channels: self.channel.then_some(ft_cfg.channels),
            compaction_max_abs_diff: compaction_diff,
            base_test_time: None,
            pruned_test_time: None,
            speedup: None,
            steps: self.steps,
        }
    }

    /// The network as evaluated: compacted (channel) or masked (element).
    fn delivered(&self, model: &Stgcn<B>) -> Result<Stgcn<B::InnerBackend>, TrainError> {
        let inner = model.valid();
        Ok(if self.channel {
            compact(&inner, &self.topo, &self.cstate, self.device)?.0
        } else {
            inner
        })
    }
}

/// Prune `base` (its configuration `base_cfg`) as `pc` says, training with `train`'s optimiser,
/// batch size and learning-rate schedule (epochs counted across both phases); `loss` is the
/// distillation loss of KDIS importance and of KD fine-tuning, against `teacher` (what the loss
/// reads of it from `teacher_cache` where given: the same values).
///
/// With `resume`, a checkpoint is written after every epoch of both phases (network, optimiser,
/// channel or element masks, the importance accumulated since the last pruning step, the
/// schedule's position, fine-tuning's best network) and a checkpoint found there is resumed
/// from, with the result of an uninterrupted run.
#[allow(clippy::too_many_arguments)]
pub fn prune_model<B: AutodiffBackend>(
    base: Stgcn<B>,
    base_cfg: &StgcnConfig,
    teacher: Option<&Stgcn<B::InnerBackend>>,
    teacher_cache: Option<&TeacherCache>,
    data: &Dataset,
    train: &TrainConfig,
    loss: &LossConfig,
    pc: &PruneConfig,
    device: &B::Device,
    resume: Option<&ResumeDir>,
    on_event: &mut dyn FnMut(Event),
) -> Result<PruneOutput<B::InnerBackend>, PruneError> {
    pc.validate()?;
    let started = Instant::now();
    // The phases' lengths come from `pc`: `train.epochs` only has to be valid.
    let mut tc = train.clone();
    tc.epochs = tc.epochs.max(1);
    let mut fit = Fit::<B>::new(data, &tc, device)?;
    let mut lp = Loop::<B> {
        data,
        train,
        loss,
        device,
        teacher,
        cache: teacher_cache,
        g: GraphKernel::new(&data.cheb, data.nodes, device),
        g_eval: GraphKernel::new(&data.cheb, data.nodes, device),
        picks: 0,
        elements: 0,
    };
    let topo = Topology::new(base_cfg);
    let steps_per_epoch = fit.steps_per_epoch();
    let interval = match pc.interval {
        Interval::Epochs(e) => e * steps_per_epoch,
        Interval::Minibatches(m) => m,
    };
    let prune_epochs = (pc.steps() * interval).div_ceil(steps_per_epoch);
    let epochs_total = prune_epochs + pc.finetune_epochs;
    let kd_importance = pc.method == PruneMethod::Kdis;
    let mut pr = Pruning::<B>::new(pc, topo, interval, device);

    let mut model = base;
    let mut opt = Opt::<B>::new(train.optimizer);
    let key = resume_key(base_cfg, train, loss, pc);
    let ck = match resume {
        Some(r) => r.load::<PruneState>(&key).map_err(TrainError::from)?,
        None => None,
    };
    let mut seconds_before = 0.0;
    if let Some(ck) = &ck {
        let st = &ck.state;
        eprintln!(
            "resuming the pruning run after epoch {} of {epochs_total}",
            ck.epoch.min(epochs_total)
        );
        pr.restore(st);
        (lp.picks, lp.elements) = (st.picks, st.elements);
        seconds_before = st.seconds;
        if ck.epoch <= prune_epochs {
            let ids;
            (model, ids) = ck
                .module::<B, _>("model", model, device)
                .map_err(TrainError::from)?;
            opt = opt
                .load(ck, "optim", &ids, device)
                .map_err(TrainError::from)?;
        }
        fit.resume(st.curve.clone());
    }
    let seconds = |started: Instant| seconds_before + started.elapsed().as_secs_f64();

    for epoch in fit.curve.len()..prune_epochs {
        let pos = fit.pos(epoch, epochs_total);
        let mut minibatch = 0;
        let run;
        (model, run) = fit.train_epoch::<PruneError>(pos, model, on_event, |model, batch| {
            let (grads, value) = lp.grads(&model, pr.view.as_ref(), &batch, kd_importance)?;
            if !value.is_finite() {
                return Ok((model, value));
            }
            minibatch += 1;
            Ok((
                pr.update(model, grads, &mut opt, pos.lr, epoch + 1, minibatch),
                value,
            ))
        })?;
        fit.end_epoch(run, pr.delivered(&model)?, false, on_event)?;
        if let Some(r) = resume {
            let st = pr.state(&fit.curve, &lp, seconds(started));
            fit.checkpoint(r, &key, &model, &opt, false, &st)?;
        }
    }

    // Fine-tuning (Algorithm 1 lines 24–26): channel-pruned networks in compacted form.
    let resumed_ft = ck.filter(|ck| ck.epoch > prune_epochs);
    let FinetuneStart {
        model: mut ft,
        config: ft_cfg,
        compaction_diff,
        masks: ft_masks,
        mut opt,
    } = finetune_start(
        model,
        base_cfg,
        &pr,
        &lp,
        &mut fit,
        resumed_ft.as_ref(),
        prune_epochs,
    )?;
    let kd_finetune = pc.finetune_loss == FinetuneLoss::Kd;
    for epoch in fit.curve.len()..epochs_total {
        let pos = fit.pos(epoch, epochs_total);
        let run;
        (ft, run) = fit.train_epoch::<PruneError>(pos, ft, on_event, |ft, batch| {
            let (mut grads, value) = lp.grads(&ft, None, &batch, kd_finetune)?;
            mask_grads(&mut grads, &ft, &ft_masks);
            Ok((apply_masks(opt.step(pos.lr, ft, grads), &ft_masks), value))
        })?;
        let improved = fit.end_epoch(run, ft.valid(), true, on_event)?;
        if let Some(r) = resume {
            let best = fit.best.as_ref().expect("kept above");
            let mut st = pr.state(&fit.curve, &lp, seconds(started));
            st.ft_config = Some(ft_cfg.clone());
            st.compaction_diff = compaction_diff;
            st.best = Some((best.val_mae, best.epoch, best.val.clone()));
            fit.checkpoint(r, &key, &ft, &opt, improved, &st)?;
        }
    }
    let (best_epoch, model, val) = match fit.best.take() {
        Some(b) => (b.epoch, b.model, b.val),
        None => {
            let m = ft.valid();
            let v = fit.evaluate(&m, Split::Val);
            (prune_epochs, m, v)
        }
    };
    let summary = pr.summary(&ft_cfg, compaction_diff);
    let uses_ord = (kd_importance || kd_finetune) && loss.kind.uses_ord();
    Ok(PruneOutput {
        model,
        model_config: ft_cfg,
        epochs: fit.curve,
        best_epoch,
        val,
        summary,
        attention: uses_ord.then_some((lp.picks, lp.elements)),
        seconds_before,
    })
}

/// Where fine-tuning starts: the network (compacted for channel granularity), its shape, the
/// compaction check, the masks it keeps and a fresh optimiser, or all of them as a checkpoint
/// `resumed` in fine-tuning left them (its best network restored into `fit`).
struct FinetuneStart<B: AutodiffBackend> {
    model: Stgcn<B>,
    config: StgcnConfig,
    compaction_diff: Option<f64>,
    masks: DeviceMasks<B::InnerBackend>,
    opt: Opt<B>,
}

fn finetune_start<B: AutodiffBackend>(
    pruned: Stgcn<B>,
    base_cfg: &StgcnConfig,
    pr: &Pruning<B>,
    lp: &Loop<B>,
    fit: &mut Fit<B>,
    resumed: Option<&Checkpoint<PruneState>>,
    prune_epochs: usize,
) -> Result<FinetuneStart<B>, TrainError> {
    let (device, seed) = (lp.device, lp.train.seed);
    let masks = if pr.channel {
        DeviceMasks::new(&pr.topo, &Masks::none(&pr.topo), device)
    } else {
        pr.dmasks.clone()
    };
    let opt = Opt::<B>::new(lp.train.optimizer);
    fit.begin_phase();
    let Some(ck) = resumed else {
        let (model, config, compaction_diff) = if pr.channel {
            let (c, cfg) = compact(&pruned, &pr.topo, &pr.cstate, device)?;
            let diff = compaction_gap(&pruned, &c, &pr.topo, &pr.cstate, lp);
            (c, cfg, Some(diff))
        } else {
            (pruned, base_cfg.clone(), None)
        };
        return Ok(FinetuneStart {
            model,
            config,
            compaction_diff,
            masks,
            opt,
        });
    };
    let config = ck
        .state
        .ft_config
        .clone()
        .unwrap_or_else(|| base_cfg.clone());
    let (model, ids) =
        ck.module::<B, _>("model", Stgcn::<B>::new(&config, seed, device)?, device)?;
    let best = match &ck.state.best {
        Some((mae, epoch, val)) => Some(Best {
            val_mae: *mae,
            epoch: *epoch,
            model: ck
                .module::<B::InnerBackend, _>(
                    "best",
                    Stgcn::<B::InnerBackend>::new(&config, seed, device)?,
                    device,
                )?
                .0,
            val: val.clone(),
        }),
        None => None,
    };
    fit.resume_phase(prune_epochs, best, ck.stem("best").map(str::to_string));
    Ok(FinetuneStart {
        model,
        config,
        compaction_diff: ck.state.compaction_diff,
        masks,
        opt: opt.load(ck, "optim", &ids, device)?,
    })
}

/// Largest |masked − compacted| one-step output over the first validation batch.
fn compaction_gap<B: AutodiffBackend>(
    masked: &Stgcn<B>,
    compacted: &Stgcn<B>,
    topo: &Topology,
    cstate: &ChannelState,
    lp: &Loop<B>,
) -> f64 {
    let device = lp.device;
    let n = lp.data.windows(Split::Val).min(lp.train.eval_batch.max(1));
    let idx: Vec<usize> = (0..n).collect();
    let x = Batcher::default()
        .batch::<B::InnerBackend>(lp.data, Split::Val, &idx, device)
        .x;
    let view = MaskedView::new(topo, cstate, device);
    let a = forward_masked(&masked.valid(), x.clone(), &lp.g_eval, Some(&view));
    let b = compacted.valid().forward(x, &lp.g_eval);
    let d: f32 = (a - b).abs().max().into_scalar().elem();
    d as f64
}
