//! A pruning run (Algorithm 1): importance-accumulating training with pruning steps, then
//! fine-tuning, evaluation, compaction, timing and the checkpoint.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use burn::module::{AutodiffModule, Module};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ElementConversion;

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
use crate::distill::{mse_loss, LossConfig};
use crate::model::{GraphKernel, Stgcn, StgcnConfig};
use crate::resume::ResumeDir;
use crate::rng::Rng;
use crate::train::{
    self, backward_step, run_epoch, Batch, Batcher, EpochPos, EpochRecord, Event, LossTally,
    Metrics, Opt, TrainConfig, TrainError,
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

/// Shared state of the training loops.
struct Loop<'a, B: AutodiffBackend> {
    data: &'a Dataset,
    train: &'a TrainConfig,
    loss: &'a LossConfig,
    device: &'a B::Device,
    teacher: Option<&'a Stgcn<B::InnerBackend>>,
    g: GraphKernel<B>,
    g_eval: GraphKernel<B::InnerBackend>,
    order: Vec<usize>,
    batcher: Batcher,
    steps_per_epoch: usize,
    picks: u64,
    elements: u64,
}

impl<'a, B: AutodiffBackend> Loop<'a, B> {
    fn batches(&mut self, epoch: usize) -> Vec<Vec<usize>> {
        Rng::new(self.train.seed, 1 + epoch as u64).shuffle(&mut self.order);
        self.order
            .chunks(self.train.batch_size)
            .take(self.steps_per_epoch)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Gradients and value of the plain loss (`kd = false`) or of the run's distillation
    /// loss against the frozen teacher.
    fn grads(
        &mut self,
        model: &Stgcn<B>,
        view: Option<&MaskedView<B>>,
        batch: &Batch<B>,
        kd: bool,
    ) -> Result<(GradientsParams, f32), PruneError> {
        if !kd {
            let y = forward_masked(model, batch.x.clone(), &self.g, view);
            return Ok(backward_step(mse_loss(y, batch.y1.clone()), model));
        }
        let teacher = self.teacher.ok_or(PruneError::NoTeacher {
            loss: self.loss.kind,
        })?;
        let (yt, ft) = teacher.forward_features(batch.x.clone().inner(), &self.g_eval);
        let student = forward_masked_features(model, batch.x.clone(), &self.g, view);
        let mut tally = LossTally::default();
        let step = train::kd_step(
            self.loss,
            model,
            batch.y1.clone(),
            student,
            yt,
            Some(&ft),
            &mut tally,
        )?;
        self.picks += tally.picks;
        self.elements += tally.elements;
        Ok(step)
    }

    fn evaluate(&self, model: &Stgcn<B::InnerBackend>, split: Split) -> Metrics {
        train::evaluate(
            model,
            &self.g_eval,
            self.data,
            split,
            self.train.eval_batch,
            self.device,
        )
    }
}

/// Prune `base` (its configuration `base_cfg`) as `pc` says, training with `train`'s optimiser,
/// batch size and learning-rate schedule (epochs counted across both phases); `loss` is the
/// distillation loss of KDIS importance and of KD fine-tuning, against `teacher`.
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
    let mut tc = train.clone();
    tc.epochs = tc.epochs.max(1);
    tc.validate()?;
    let n_train = data.windows(Split::Train);
    if n_train == 0 {
        return Err(TrainError::EmptySplit(Split::Train).into());
    }
    if data.windows(Split::Val) == 0 {
        return Err(TrainError::EmptySplit(Split::Val).into());
    }
    let mut steps_per_epoch = n_train.div_ceil(train.batch_size);
    if let Some(max) = train.max_steps_per_epoch {
        steps_per_epoch = steps_per_epoch.min(max.max(1));
    }
    let mut lp = Loop::<B> {
        data,
        train,
        loss,
        device,
        teacher,
        g: GraphKernel::new(&data.cheb, data.nodes, device),
        g_eval: GraphKernel::new(&data.cheb, data.nodes, device),
        order: (0..n_train).collect(),
        batcher: Batcher::default(),
        steps_per_epoch,
        picks: 0,
        elements: 0,
    };
    let topo = Topology::new(base_cfg);
    let total = topo.total_params();
    let interval = match pc.interval {
        Interval::Epochs(e) => e * steps_per_epoch,
        Interval::Minibatches(m) => m,
    };
    let n_steps = pc.steps();
    let prune_epochs = (n_steps * interval).div_ceil(steps_per_epoch);
    let epochs_total = prune_epochs + pc.finetune_epochs;
    let channel = pc.granularity == Granularity::Channel;
    let kd_importance = pc.method == PruneMethod::Kdis;

    let mut model = base;
    let mut opt = Opt::<B>::new(train.optimizer);
    let mut cstate = ChannelState::full(&topo);
    let mut estate = ElementState::full(&topo);
    let mut masks = Masks::none(&topo);
    let mut dmasks = DeviceMasks::<B::InnerBackend>::new(&topo, &masks, device);
    let mut view: Option<MaskedView<B>> = None;
    let mut importance = Importance::<B::InnerBackend>::new(&topo, device);
    let mut done = 0usize;
    let mut minibatches = 0usize;
    let mut steps: Vec<PruneStep> = Vec::with_capacity(n_steps);
    let mut curve: Vec<EpochRecord> = Vec::with_capacity(epochs_total);
    let key = resume_key(base_cfg, train, loss, pc);
    let ck = match resume {
        Some(r) => r.load::<PruneState>(&key).map_err(TrainError::from)?,
        None => None,
    };
    let mut first_epoch = 0;
    let mut seconds_before = 0.0;
    if let Some(ck) = &ck {
        let st = &ck.state;
        first_epoch = ck.epoch.min(epochs_total);
        eprintln!("resuming the pruning run after epoch {first_epoch} of {epochs_total}");
        curve = st.curve.clone();
        done = st.done;
        minibatches = st.minibatches;
        steps = st.steps.clone();
        cstate = ChannelState {
            keep: st.channel_keep.clone(),
        };
        estate = ElementState {
            keep: st.element_keep.clone(),
        };
        if done > 0 {
            masks = if channel {
                view = Some(MaskedView::new(&topo, &cstate, device));
                cstate.masks(&topo)
            } else {
                estate.masks(&topo)
            };
            dmasks = DeviceMasks::new(&topo, &masks, device);
        }
        importance = Importance::from_host(&st.importance, st.importance_batches, device);
        (lp.picks, lp.elements) = (st.picks, st.elements);
        seconds_before = st.seconds;
        if first_epoch <= prune_epochs {
            model = model.load_record(
                ck.record::<B, _>("model", device)
                    .map_err(TrainError::from)?,
            );
            opt = opt.load(ck, "optim", device).map_err(TrainError::from)?;
        }
        // The shuffles are cumulative: replay those of the finished epochs.
        for epoch in 0..first_epoch {
            lp.batches(epoch);
        }
    }
    let state = |curve: &[EpochRecord],
                 done: usize,
                 minibatches: usize,
                 steps: &[PruneStep],
                 cstate: &ChannelState,
                 estate: &ElementState,
                 importance: &Importance<B::InnerBackend>,
                 lp: &Loop<B>| {
        let (sums, batches) = importance.to_host();
        PruneState {
            curve: curve.to_vec(),
            done,
            minibatches,
            steps: steps.to_vec(),
            channel_keep: cstate.keep.clone(),
            element_keep: estate.keep.clone(),
            importance: sums,
            importance_batches: batches,
            picks: lp.picks,
            elements: lp.elements,
            ft_config: None,
            compaction_diff: None,
            best: None,
            seconds: seconds_before + started.elapsed().as_secs_f64(),
        }
    };

    // The network as evaluated: compacted (channel) or masked (element).
    let delivered = |model: &Stgcn<B>, cstate: &ChannelState| -> Result<_, PruneError> {
        let inner = model.valid();
        Ok(if channel {
            compact(&inner, &topo, cstate, device)
                .map_err(TrainError::from)?
                .0
        } else {
            inner
        })
    };

    for epoch in first_epoch..prune_epochs {
        let pos = EpochPos {
            epoch,
            epochs: epochs_total,
            lr: train.lr_at(epoch),
        };
        let batches = lp.batches(epoch);
        let batches: Vec<&[usize]> = batches.iter().map(Vec::as_slice).collect();
        let mut batcher = std::mem::take(&mut lp.batcher);
        let mut minibatch = 0;
        let run;
        (model, run) = run_epoch::<B, PruneError, _>(
            data,
            device,
            &mut batcher,
            pos,
            &batches,
            on_event,
            model,
            |model, batch| {
                let (mut grads, value) = lp.grads(&model, view.as_ref(), &batch, kd_importance)?;
                if !value.is_finite() {
                    return Ok((model, value));
                }
                if done < n_steps {
                    importance.add(&model, &grads);
                }
                mask_grads(&mut grads, &model, &dmasks);
                let mut model = apply_masks(opt.step(pos.lr, model, grads), &dmasks);
                minibatches += 1;
                minibatch += 1;
                if done < n_steps && minibatches.is_multiple_of(interval) {
                    done += 1;
                    let scores = importance.take_mean();
                    let goal = pc.goal(done);
                    let channel_share = if channel {
                        let (counts, q, _) = counts_for_goal(&topo, &cstate.counts(), goal);
                        let groups = group_scores(&topo, &scores);
                        select_channels(&topo, &mut cstate, &counts, &groups);
                        masks = cstate.masks(&topo);
                        view = Some(MaskedView::new(&topo, &cstate, device));
                        Some(q)
                    } else {
                        select_elements(&topo, &mut estate, &scores, goal);
                        masks = estate.masks(&topo);
                        None
                    };
                    dmasks = DeviceMasks::new(&topo, &masks, device);
                    model = apply_masks(model, &dmasks);
                    steps.push(PruneStep {
                        step: done,
                        epoch: epoch + 1,
                        minibatch,
                        goal_share: goal,
                        masked_share: masks.masked() as f64 / total as f64,
                        channel_share,
                        channels: channel.then(|| cstate.channels(&topo)),
                    });
                }
                Ok((model, value))
            },
        )?;
        lp.batcher = batcher;
        let val = lp.evaluate(&delivered(&model, &cstate)?, Split::Val);
        let record = run.finish(&val, on_event);
        let first_loss = curve.first().map_or(record.train_loss, |r| r.train_loss);
        crate::divergence::check_epoch(record.epoch, first_loss, record.train_loss, record.val_mae)
            .map_err(TrainError::from)?;
        curve.push(record);
        if let Some(r) = resume {
            let st = state(
                &curve,
                done,
                minibatches,
                &steps,
                &cstate,
                &estate,
                &importance,
                &lp,
            );
            let mut snap = r.begin(epoch + 1).map_err(TrainError::from)?;
            snap.record::<B, _>("model", model.clone().into_record())
                .map_err(TrainError::from)?;
            opt.save(&mut snap, "optim").map_err(TrainError::from)?;
            snap.commit(&key, &st).map_err(TrainError::from)?;
        }
    }

    // Fine-tuning (Algorithm 1 lines 24–26): channel-pruned networks in compacted form.
    let resumed_ft = ck.filter(|ck| ck.epoch > prune_epochs);
    let (mut ft, ft_cfg, compaction_diff) = match &resumed_ft {
        Some(ck) => {
            let cfg = ck
                .state
                .ft_config
                .clone()
                .unwrap_or_else(|| base_cfg.clone());
            let ft = Stgcn::<B>::new(&cfg, train.seed, device)
                .map_err(TrainError::from)?
                .load_record(
                    ck.record::<B, _>("model", device)
                        .map_err(TrainError::from)?,
                );
            (ft, cfg, ck.state.compaction_diff)
        }
        None if channel => {
            let (c, cfg) = compact(&model, &topo, &cstate, device).map_err(TrainError::from)?;
            let diff = compaction_gap(&model, &c, &topo, &cstate, &lp);
            (c, cfg, Some(diff))
        }
        None => (model, base_cfg.clone(), None),
    };
    let ft_masks = if channel {
        DeviceMasks::new(&topo, &Masks::none(&topo), device)
    } else {
        dmasks
    };
    let mut opt = Opt::<B>::new(train.optimizer);
    let kd_finetune = pc.finetune_loss == FinetuneLoss::Kd;
    let mut best: Option<(f64, usize, Stgcn<B::InnerBackend>, Metrics)> = None;
    let mut best_stem: Option<String> = None;
    let mut ft_first = 0;
    if let Some(ck) = &resumed_ft {
        opt = opt.load(ck, "optim", device).map_err(TrainError::from)?;
        if let Some((mae, epoch, val)) = &ck.state.best {
            let m = Stgcn::<B::InnerBackend>::new(&ft_cfg, train.seed, device)
                .map_err(TrainError::from)?
                .load_record(
                    ck.record::<B::InnerBackend, _>("best", device)
                        .map_err(TrainError::from)?,
                );
            best = Some((*mae, *epoch, m, val.clone()));
            best_stem = ck.stem("best").map(str::to_string);
        }
        ft_first = ck.epoch - prune_epochs;
    }
    for e in ft_first..pc.finetune_epochs {
        let epoch = prune_epochs + e;
        let pos = EpochPos {
            epoch,
            epochs: epochs_total,
            lr: train.lr_at(epoch),
        };
        let batches = lp.batches(epoch);
        let batches: Vec<&[usize]> = batches.iter().map(Vec::as_slice).collect();
        let mut batcher = std::mem::take(&mut lp.batcher);
        let run;
        (ft, run) = run_epoch::<B, PruneError, _>(
            data,
            device,
            &mut batcher,
            pos,
            &batches,
            on_event,
            ft,
            |ft, batch| {
                let (mut grads, value) = lp.grads(&ft, None, &batch, kd_finetune)?;
                mask_grads(&mut grads, &ft, &ft_masks);
                Ok((apply_masks(opt.step(pos.lr, ft, grads), &ft_masks), value))
            },
        )?;
        lp.batcher = batcher;
        let inner = ft.valid();
        let val = lp.evaluate(&inner, Split::Val);
        let record = run.finish(&val, on_event);
        // Fine-tuning's loss (plain or KD) is compared with its own first epoch.
        let first_loss = curve
            .get(prune_epochs)
            .map_or(record.train_loss, |r| r.train_loss);
        crate::divergence::check_epoch(record.epoch, first_loss, record.train_loss, record.val_mae)
            .map_err(TrainError::from)?;
        let improved = best.as_ref().is_none_or(|b| record.val_mae < b.0);
        if improved {
            best = Some((record.val_mae, epoch + 1, inner, val));
        }
        curve.push(record);
        if let Some(r) = resume {
            let (mae, best_epoch, best_model, best_val) = best.as_ref().expect("set above");
            let mut st = state(
                &curve,
                done,
                minibatches,
                &steps,
                &cstate,
                &estate,
                &importance,
                &lp,
            );
            st.ft_config = Some(ft_cfg.clone());
            st.compaction_diff = compaction_diff;
            st.best = Some((*mae, *best_epoch, best_val.clone()));
            let mut snap = r.begin(epoch + 1).map_err(TrainError::from)?;
            snap.record::<B, _>("model", ft.clone().into_record())
                .map_err(TrainError::from)?;
            opt.save(&mut snap, "optim").map_err(TrainError::from)?;
            match (&best_stem, improved) {
                (Some(stem), false) => snap.keep("best", stem),
                _ => {
                    snap.record::<B::InnerBackend, _>("best", best_model.clone().into_record())
                        .map_err(TrainError::from)?;
                    best_stem = Some(format!("best-{}", epoch + 1));
                }
            }
            snap.commit(&key, &st).map_err(TrainError::from)?;
        }
    }
    let (best_epoch, model, val) = match best {
        Some((_, e, m, v)) => (e, m, v),
        None => {
            let m = ft.valid();
            let v = lp.evaluate(&m, Split::Val);
            (prune_epochs, m, v)
        }
    };
    let masked = masks.masked();
    let summary = PruneSummary {
        method: pc.method,
        granularity: pc.granularity,
        target_pct: pc.target_pct,
        masked_share: masked as f64 / total as f64,
        original_parameters: total,
        remaining_parameters: total - masked,
        compact_parameters: channel.then(|| ft_cfg.param_count()),
        compact_channels: channel.then_some(ft_cfg.channels),
        compaction_max_abs_diff: compaction_diff,
        base_test_time: None,
        pruned_test_time: None,
        speedup: None,
        steps,
    };
    let uses_ord = (kd_importance || kd_finetune) && loss.kind.uses_ord();
    Ok(PruneOutput {
        model,
        model_config: ft_cfg,
        epochs: curve,
        best_epoch,
        val,
        summary,
        attention: uses_ord.then_some((lp.picks, lp.elements)),
        seconds_before,
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
