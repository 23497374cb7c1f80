//! The one epoch loop of every run kind: plain training, distillation, pruning and pruning's
//! fine-tuning. [`Fit`] owns what they share (the shuffled order of the training windows and
//! its replay on resume, the minibatches, validation, the divergence check, the curve, the
//! best-validation network and the per-epoch checkpoint); what differs comes in as the
//! minibatch step (`step`: the loss, the optimiser, pruning's masks and importance) and the
//! network that is validated (compacted, for a channel-pruned one).

use std::time::Instant;

use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::Serialize;

use super::{Batch, Batcher, EpochRecord, Event, Metrics, Opt, TrainConfig, TrainError};
use crate::data::{Dataset, Split};
use crate::model::{GraphKernel, Stgcn};
use crate::resume::ResumeDir;
use crate::rng::Rng;

/// Where an epoch stands in a run: 0-based `epoch` of `epochs`, at learning rate `lr`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EpochPos {
    pub epoch: usize,
    pub epochs: usize,
    pub lr: f64,
}

/// The best-validation network of a phase so far.
pub(crate) struct Best<B: Backend> {
    pub val_mae: f64,
    /// 1-based epoch.
    pub epoch: usize,
    pub model: Stgcn<B>,
    pub val: Metrics,
}

/// An epoch whose minibatches are done, waiting for its validation.
pub(crate) struct EpochRun {
    t0: Instant,
    pos: EpochPos,
    mean_loss: f64,
}

/// The shared training driver (see the module's documentation).
pub(crate) struct Fit<'a, B: AutodiffBackend> {
    data: &'a Dataset,
    cfg: &'a TrainConfig,
    device: &'a B::Device,
    g_eval: GraphKernel<B::InnerBackend>,
    order: Vec<usize>,
    batcher: Batcher,
    steps_per_epoch: usize,
    /// Every finished epoch of the run, over all its phases.
    pub curve: Vec<EpochRecord>,
    /// Index in `curve` of the current phase's first epoch: the divergence check compares an
    /// epoch's loss with that one's (fine-tuning's loss is not pruning's).
    phase_start: usize,
    /// The current phase's best-validation network, when it keeps one.
    pub best: Option<Best<B::InnerBackend>>,
    /// The checkpoint piece holding `best`, rewritten only when it changes.
    best_stem: Option<String>,
}

impl<'a, B: AutodiffBackend> Fit<'a, B> {
    /// A driver over `data`'s training split with `cfg`'s batch size, seed and schedule.
    pub(crate) fn new(
        data: &'a Dataset,
        cfg: &'a TrainConfig,
        device: &'a B::Device,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        let n_train = data.windows(Split::Train);
        if n_train == 0 {
            return Err(TrainError::EmptySplit(Split::Train));
        }
        if data.windows(Split::Val) == 0 {
            return Err(TrainError::EmptySplit(Split::Val));
        }
        let mut steps_per_epoch = n_train.div_ceil(cfg.batch_size);
        if let Some(max) = cfg.max_steps_per_epoch {
            steps_per_epoch = steps_per_epoch.min(max.max(1));
        }
        Ok(Fit {
            data,
            cfg,
            device,
            g_eval: GraphKernel::new(&data.cheb, data.nodes, device),
            order: (0..n_train).collect(),
            batcher: Batcher::default(),
            steps_per_epoch,
            curve: Vec::with_capacity(cfg.epochs),
            phase_start: 0,
            best: None,
            best_stem: None,
        })
    }

    pub(crate) fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    /// Continue a resumed run after its checkpoint's `curve`, replaying the cumulative
    /// shuffles of the finished epochs.
    pub(crate) fn resume(&mut self, curve: Vec<EpochRecord>) {
        for epoch in 0..curve.len() {
            self.shuffle(epoch);
        }
        self.curve = curve;
    }

    /// The resumed phase's best network and its checkpoint piece; the phase began at curve
    /// index `phase_start`.
    pub(crate) fn resume_phase(
        &mut self,
        phase_start: usize,
        best: Option<Best<B::InnerBackend>>,
        best_stem: Option<String>,
    ) {
        self.phase_start = phase_start;
        self.best = best;
        self.best_stem = best_stem;
    }

    /// Start a new phase at the current end of the curve: no best network yet, the divergence
    /// check counts from here.
    pub(crate) fn begin_phase(&mut self) {
        self.phase_start = self.curve.len();
        self.best = None;
        self.best_stem = None;
    }

    fn shuffle(&mut self, epoch: usize) {
        Rng::new(self.cfg.seed, 1 + epoch as u64).shuffle(&mut self.order);
    }

    /// The position of 0-based `epoch` of `epochs`, with its learning rate.
    pub(crate) fn pos(&self, epoch: usize, epochs: usize) -> EpochPos {
        EpochPos {
            epoch,
            epochs,
            lr: self.cfg.lr_at(epoch),
        }
    }

    /// One epoch's minibatches: the order shuffled for the epoch, every minibatch through
    /// `step` (the network in, the updated network and the loss value out; a value that is not
    /// finite stops the run). The caller validates the result with [`Fit::end_epoch`].
    pub(crate) fn train_epoch<E: From<TrainError>>(
        &mut self,
        pos: EpochPos,
        mut model: Stgcn<B>,
        on_event: &mut dyn FnMut(Event),
        mut step: impl FnMut(Stgcn<B>, Batch<B>) -> Result<(Stgcn<B>, f32), E>,
    ) -> Result<(Stgcn<B>, EpochRun), E> {
        let t0 = Instant::now();
        self.shuffle(pos.epoch);
        let epoch = pos.epoch + 1;
        let n = self.steps_per_epoch;
        on_event(Event::EpochStart {
            epoch,
            epochs: pos.epochs,
            steps: n,
        });
        let mut loss_sum = 0.0;
        let stop = std::cell::Cell::new(false);
        for (i, idx) in self.order.chunks(self.cfg.batch_size).take(n).enumerate() {
            let batch = self
                .batcher
                .batch::<B>(self.data, Split::Train, idx, self.device);
            let (updated, loss) = step(model, batch)?;
            model = updated;
            if !loss.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    step: i + 1,
                    loss,
                }
                .into());
            }
            loss_sum += loss as f64;
            on_event(Event::Step {
                epoch,
                step: i + 1,
                loss: loss as f64,
                stop: &stop,
            });
            if stop.get() {
                return Err(TrainError::Abandoned { epoch, step: i + 1 }.into());
            }
        }
        on_event(Event::Evaluating { epoch });
        let run = EpochRun {
            t0,
            pos,
            mean_loss: loss_sum / n.max(1) as f64,
        };
        Ok((model, run))
    }

    /// Validate `validated` (the network the epoch produced, as it is delivered), record the
    /// epoch (emits `EpochEnd`), check it for divergence and, with `keep_best`, keep the network
    /// when its validation MAE is the phase's best. Returns whether it was.
    pub(crate) fn end_epoch(
        &mut self,
        run: EpochRun,
        validated: Stgcn<B::InnerBackend>,
        keep_best: bool,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<bool, TrainError> {
        let val = self.evaluate(&validated, Split::Val);
        let record = EpochRecord {
            epoch: run.pos.epoch + 1,
            lr: run.pos.lr,
            train_loss: run.mean_loss,
            val_mae: val.mean_mae(),
            seconds: run.t0.elapsed().as_secs_f64(),
        };
        let first_loss = self
            .curve
            .get(self.phase_start)
            .map_or(record.train_loss, |r| r.train_loss);
        let (epoch, val_mae, train_loss) = (record.epoch, record.val_mae, record.train_loss);
        self.curve.push(record);
        let stop = std::cell::Cell::new(false);
        on_event(Event::EpochEnd {
            record: self.curve.last().expect("pushed"),
            curve: &self.curve,
            stop: &stop,
        });
        crate::divergence::check_epoch(epoch, first_loss, train_loss, val_mae)?;
        if stop.get() {
            return Err(TrainError::Stopped { epoch });
        }
        let improved = keep_best && self.best.as_ref().is_none_or(|b| val_mae < b.val_mae);
        if improved {
            self.best = Some(Best {
                val_mae,
                epoch,
                model: validated,
                val,
            });
        }
        Ok(improved)
    }

    /// The metrics of `model` on `split`.
    pub(crate) fn evaluate(&self, model: &Stgcn<B::InnerBackend>, split: Split) -> Metrics {
        super::evaluate(
            model,
            &self.g_eval,
            self.data,
            split,
            self.cfg.eval_batch,
            self.device,
        )
    }

    /// Write the checkpoint after the curve's last epoch: the network being trained, the
    /// optimiser, the phase's best network (rewritten only when `improved`, else carried over)
    /// and the caller's `state`, under `key`.
    pub(crate) fn checkpoint<S: Serialize>(
        &mut self,
        resume: &ResumeDir,
        key: &str,
        model: &Stgcn<B>,
        opt: &Opt<B>,
        improved: bool,
        state: &S,
    ) -> Result<(), TrainError> {
        let epoch = self.curve.len();
        let mut snap = resume.begin(epoch)?;
        snap.module::<B, _>("model", model)?;
        opt.save(&mut snap, "optim", model)?;
        if let Some(best) = &self.best {
            match (&self.best_stem, improved) {
                (Some(stem), false) => snap.keep("best", stem),
                _ => {
                    snap.module::<B::InnerBackend, _>("best", &best.model)?;
                    self.best_stem = Some(format!("best-{epoch}"));
                }
            }
        }
        snap.commit(key, state)?;
        Ok(())
    }
}
