//! Training loop, learning-rate schedule, best-validation checkpoint, autoregressive evaluation
//! and the paper's metrics (spec §3).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer, RmsProp, RmsPropConfig};
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Split};
use crate::distill::{LossConfig, LossKind};
use crate::model::{GraphKernel, Stgcn, StgcnConfig};
use crate::resume::{
    param_ids, positional, with_param_ids, Checkpoint, IdMap, ResumeDir, ResumeError, Snapshot,
};

mod fit;
mod step;
pub(crate) use fit::{Best, Fit};
pub use step::{loss_step, Forward, StudentForward, TeacherStep};

/// Optimiser of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (β1 0.9, β2 0.999, ε 1e-8), the paper's choice.
    Adam,
    /// RMSProp (decay 0.9, no momentum, ε 1e-10), STGCN's alternative.
    Rmsprop,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "adam" => Ok(OptimizerKind::Adam),
            "rmsprop" => Ok(OptimizerKind::Rmsprop),
            _ => Err(format!("unknown optimizer `{s}`: expected adam or rmsprop")),
        }
    }
}

/// Everything the training loop needs besides data and model shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Multiplicative decay of the learning rate (0.7) applied every `decay_every` epochs (5).
    pub lr_decay: f64,
    pub decay_every: usize,
    pub optimizer: OptimizerKind,
    pub seed: u64,
    /// Batch size of validation/test prediction (does not change the metrics; smaller batches
    /// are faster per window on the CPU backend).
    pub eval_batch: usize,
    /// Stop each epoch after this many minibatches (smoke runs); `None` = the whole split.
    #[serde(default)]
    pub max_steps_per_epoch: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 50,
            batch_size: 50,
            lr: 1e-3,
            lr_decay: 0.7,
            decay_every: 5,
            optimizer: OptimizerKind::Adam,
            seed: 1,
            eval_batch: 100,
            max_steps_per_epoch: None,
        }
    }
}

impl TrainConfig {
    /// Learning rate of a (0-based) epoch: `lr · decay^⌊epoch / decay_every⌋`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        self.lr * self.lr_decay.powi((epoch / self.decay_every.max(1)) as i32)
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |f: &str, v: String, allowed: &str| {
            Err(TrainError::Config(format!("{f} = {v}: allowed {allowed}")))
        };
        if self.epochs == 0 {
            return bad("epochs", "0".into(), "≥ 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0".into(), "≥ 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", self.lr.to_string(), "a positive finite number");
        }
        if !(self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return bad("lr_decay", self.lr_decay.to_string(), "(0, 1]");
        }
        if self.eval_batch == 0 {
            return bad("eval_batch", "0".into(), "≥ 1");
        }
        Ok(())
    }
}

/// Errors of training and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("training diverged at epoch {epoch}, step {step}: loss is {loss}")]
    Diverged {
        epoch: usize,
        step: usize,
        loss: f32,
    },
    /// Finite but meaningless numbers (see [`crate::divergence`]).
    #[error(transparent)]
    Divergence(#[from] crate::divergence::Divergence),
    #[error("checkpoint {path}: {detail}")]
    Checkpoint { path: PathBuf, detail: String },
    #[error(transparent)]
    Resume(#[from] ResumeError),
    #[error("the {0} split has no windows; use more days or a different split")]
    EmptySplit(Split),
    /// A listener of the progress events asked the run to stop (a search's pruner).
    #[error("stopped after epoch {epoch} (asked to stop early)")]
    Stopped { epoch: usize },
    /// A listener asked the run to stop at once, mid-epoch (its worker lost the claim on it).
    #[error("stopped at step {step} of epoch {epoch} (asked to stop at once)")]
    Abandoned { epoch: usize, step: usize },
}

/// MAPE (%), MAE and RMSE of one predicted step on de-normalised speeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based step; step k is `5·k` minutes ahead.
    pub step: usize,
    pub mape: f64,
    pub mae: f64,
    pub rmse: f64,
}

impl StepMetrics {
    pub fn minutes(&self) -> usize {
        5 * self.step
    }
}

/// Metrics of every predicted step of a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub split: Split,
    pub windows: usize,
    pub steps: Vec<StepMetrics>,
}

impl Metrics {
    /// The paper's horizons: steps 3, 6, 9 (15, 30, 45 minutes), where present.
    pub fn paper_horizons(&self) -> Vec<StepMetrics> {
        self.steps
            .iter()
            .copied()
            .filter(|s| s.step % 3 == 0)
            .collect()
    }

    /// Mean MAE over all predicted steps (the model-selection criterion).
    pub fn mean_mae(&self) -> f64 {
        self.steps.iter().map(|s| s.mae).sum::<f64>() / self.steps.len().max(1) as f64
    }
}

/// One epoch of the training curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub lr: f64,
    /// Mean training loss over the epoch's minibatches (normalised units).
    pub train_loss: f64,
    /// Validation MAE (mph), mean over the predicted steps.
    pub val_mae: f64,
    pub seconds: f64,
}

/// Mean wall time of the full `H`-step prediction for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestTime {
    pub seconds: f64,
    pub runs: usize,
    pub batch: usize,
}

/// What a finished training run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub epochs: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub val: Metrics,
    pub test: Metrics,
    pub parameters: usize,
    /// Training time, summed over the sessions of a resumed run.
    pub train_seconds: f64,
    /// The loss's counters over the whole run (not part of the stored outcome).
    #[serde(skip)]
    pub tally: LossTally,
}

/// Counters a loss keeps over a run (ORD's teacher picks, Table 3), carried across resumes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossTally {
    pub picks: u64,
    pub elements: u64,
}

/// Progress events, for bars and logs.
#[derive(Debug)]
pub enum Event<'a> {
    EpochStart {
        epoch: usize,
        epochs: usize,
        steps: usize,
    },
    /// A minibatch's optimiser step is done. A listener may set `stop` to end the run at once
    /// ([`TrainError::Abandoned`]): a worker that lost its claim on the run does so.
    Step {
        epoch: usize,
        step: usize,
        loss: f64,
        stop: &'a std::cell::Cell<bool>,
    },
    Evaluating {
        epoch: usize,
    },
    /// An epoch's record, with the run's whole `curve` so far (ending with it). A listener may
    /// set `stop` to end the run after this epoch ([`TrainError::Stopped`]): a search's pruner
    /// does so for a hopeless trial.
    EpochEnd {
        record: &'a EpochRecord,
        curve: &'a [EpochRecord],
        stop: &'a std::cell::Cell<bool>,
    },
    /// Training is over; the best model is being evaluated on the test split.
    Testing,
}

/// The optimiser of a run (shared by training and pruning's fine-tuning).
pub(crate) enum Opt<B: AutodiffBackend> {
    Adam(OptimizerAdaptor<Adam, Stgcn<B>, B>),
    Rms(OptimizerAdaptor<RmsProp, Stgcn<B>, B>),
}

impl<B: AutodiffBackend> Opt<B> {
    pub(crate) fn new(kind: OptimizerKind) -> Self {
        match kind {
            OptimizerKind::Adam => Opt::Adam(AdamConfig::new().with_epsilon(1e-8).init()),
            OptimizerKind::Rmsprop => Opt::Rms(
                RmsPropConfig::new()
                    .with_alpha(0.9)
                    .with_momentum(0.0)
                    .with_epsilon(1e-10)
                    .init(),
            ),
        }
    }

    pub(crate) fn step(&mut self, lr: f64, model: Stgcn<B>, grads: GradientsParams) -> Stgcn<B> {
        match self {
            Opt::Adam(o) => o.step(lr, model, grads),
            Opt::Rms(o) => o.step(lr, model, grads),
        }
    }

    /// Write the optimiser's state (moments, step counts) as piece `name` of a checkpoint,
    /// keyed by the parameters of `model` (the network it steps) as [`Snapshot::module`] writes
    /// them.
    pub(crate) fn save(
        &self,
        snap: &mut Snapshot,
        name: &str,
        model: &Stgcn<B>,
    ) -> Result<(), ResumeError> {
        let ids = param_ids(model);
        match self {
            Opt::Adam(o) => snap.param_map::<B, _>(name, o.to_record(), &ids),
            Opt::Rms(o) => snap.param_map::<B, _>(name, o.to_record(), &ids),
        }
    }

    /// The optimiser with its state read from piece `name` of a checkpoint, its keys
    /// translated by `ids` (from [`Checkpoint::module`] of the network it steps).
    pub(crate) fn load<S>(
        self,
        ck: &Checkpoint<S>,
        name: &str,
        ids: &IdMap,
        device: &B::Device,
    ) -> Result<Self, ResumeError> {
        Ok(match self {
            Opt::Adam(o) => Opt::Adam(o.load_record(ck.param_map::<B, _, _>(name, ids, device)?)),
            Opt::Rms(o) => Opt::Rms(o.load_record(ck.param_map::<B, _, _>(name, ids, device)?)),
        })
    }
}

/// A minibatch as tensors: inputs `[B, M, N, 1]` and the one-step target `[B, 1, N, 1]`
/// (training uses the one-step target, spec [I-4]), plus the full `[B, H, N]` target.
pub struct Batch<B: Backend> {
    pub x: Tensor<B, 4>,
    pub y1: Tensor<B, 4>,
    pub y: Tensor<B, 3>,
    /// The windows of the batch (indices into its split).
    pub idx: Vec<usize>,
}

/// Reusable host buffers for building batches.
#[derive(Default)]
pub struct Batcher {
    x: Vec<f32>,
    y: Vec<f32>,
}

impl Batcher {
    pub fn batch<B: Backend>(
        &mut self,
        data: &Dataset,
        split: Split,
        idx: &[usize],
        device: &B::Device,
    ) -> Batch<B> {
        let (b, m, h, n) = (idx.len(), data.n_his, data.n_pred, data.nodes);
        data.batch(split, idx, &mut self.x, &mut self.y);
        let x = Tensor::<B, 4>::from_data(TensorData::new(self.x.clone(), [b, m, n, 1]), device);
        let y = Tensor::<B, 3>::from_data(TensorData::new(self.y.clone(), [b, h, n]), device);
        let y1 = y.clone().narrow(1, 0, 1).reshape([b, 1, n, 1]);
        Batch {
            x,
            y1,
            y,
            idx: idx.to_vec(),
        }
    }
}

/// Train an STGCN on `data` with the plain MSE loss. See [`train_with_loss`].
pub fn train<B: AutodiffBackend>(
    data: &Dataset,
    model_cfg: &StgcnConfig,
    cfg: &TrainConfig,
    device: &B::Device,
    checkpoint: Option<&Path>,
    on_event: &mut dyn FnMut(Event),
) -> Result<(Stgcn<B::InnerBackend>, TrainOutcome), TrainError> {
    train_with_loss::<B, _>(
        data,
        model_cfg,
        cfg,
        device,
        checkpoint,
        on_event,
        |m, b, g, tally| {
            let student = Forward { x: &b.x, g };
            loss_step(
                &LossConfig::new(LossKind::Mse),
                m,
                b.y1.clone(),
                None,
                &student,
                tally,
            )
            .expect("the plain loss has nothing to validate")
        },
    )
}

/// Gradients and value of a scalar loss.
pub fn backward_step<B: AutodiffBackend>(
    loss: Tensor<B, 1>,
    model: &Stgcn<B>,
) -> (GradientsParams, f32) {
    let value: f32 = loss.clone().into_scalar().elem();
    (GradientsParams::from_grads(loss.backward(), model), value)
}

/// What a per-epoch checkpoint of [`train_with_loss`] holds besides the weights (`model`, the
/// current network; `best`, the best-validation one; `optim`, the optimiser's state).
#[derive(Serialize, Deserialize)]
struct TrainState {
    curve: Vec<EpochRecord>,
    best_epoch: usize,
    best_val: Metrics,
    tally: LossTally,
    /// Training seconds of the sessions so far.
    seconds: f64,
}

/// The identity of a training run inside its folder: a checkpoint of another identity is not
/// resumed.
fn resume_key(model_cfg: &StgcnConfig, cfg: &TrainConfig) -> String {
    serde_json::to_string(&(model_cfg, cfg)).expect("configuration serialises")
}

/// Train with a caller-supplied step of (model, batch, graph, counters) → (gradients, loss
/// value). Keeps the model with the best validation MAE, evaluates it on the test split, and
/// saves it to `checkpoint` (a directory) if given. Same seed, same data and same backend →
/// same curve and metrics, whatever the thread count (`kernels`: fixed partitions of every sum).
///
/// With a `checkpoint` folder the run is resumable: after every epoch the network, the
/// optimiser's state, the best-validation network and the curve so far are written to
/// `<checkpoint>/resume/` ([`ResumeDir`]), and a later call with the same configuration
/// continues after the last finished epoch (shuffling is replayed from the seed, the learning
/// rate follows from the epoch), ending with the metrics of an uninterrupted run. The folder is
/// left in place when the run ends (a run whose record was lost is then only tested again); the
/// caller removes it once the result is safe ([`crate::exec::write_report`]).
pub fn train_with_loss<B, L>(
    data: &Dataset,
    model_cfg: &StgcnConfig,
    cfg: &TrainConfig,
    device: &B::Device,
    checkpoint: Option<&Path>,
    on_event: &mut dyn FnMut(Event),
    mut loss_fn: L,
) -> Result<(Stgcn<B::InnerBackend>, TrainOutcome), TrainError>
where
    B: AutodiffBackend,
    L: FnMut(&Stgcn<B>, &Batch<B>, &GraphKernel<B>, &mut LossTally) -> (GradientsParams, f32),
{
    let started = Instant::now();
    let mut fit = Fit::<B>::new(data, cfg, device)?;
    let mut model = Stgcn::<B>::new(model_cfg, cfg.seed, device)?;
    let parameters = model.num_params();
    let g = GraphKernel::<B>::new(&data.cheb, data.nodes, device);
    let mut opt = Opt::<B>::new(cfg.optimizer);

    let resume = checkpoint.map(ResumeDir::new);
    let key = resume_key(model_cfg, cfg);
    let mut tally = LossTally::default();
    let mut prior_seconds = 0.0;
    if let Some(ck) = match &resume {
        Some(r) => r.load::<TrainState>(&key)?,
        None => None,
    } {
        eprintln!(
            "resuming after epoch {} of {} from {}",
            ck.epoch.min(cfg.epochs),
            cfg.epochs,
            resume
                .as_ref()
                .map_or(String::new(), |r| r.path().display().to_string())
        );
        let ids;
        (model, ids) = ck.module::<B, _>("model", model, device)?;
        opt = opt.load(&ck, "optim", &ids, device)?;
        let (best_model, _) = ck.module::<B::InnerBackend, _>(
            "best",
            Stgcn::<B::InnerBackend>::new(model_cfg, cfg.seed, device)?,
            device,
        )?;
        let best_stem = ck.stem("best").map(str::to_string);
        let st = ck.state;
        let best = Best {
            val_mae: st
                .curve
                .iter()
                .find(|r| r.epoch == st.best_epoch)
                .map_or(st.best_val.mean_mae(), |r| r.val_mae),
            epoch: st.best_epoch,
            model: best_model,
            val: st.best_val,
        };
        fit.resume(st.curve);
        fit.resume_phase(0, Some(best), best_stem);
        tally = st.tally;
        prior_seconds = st.seconds;
    }
    for epoch in fit.curve.len()..cfg.epochs {
        let pos = fit.pos(epoch, cfg.epochs);
        let run;
        (model, run) = fit.train_epoch::<TrainError>(pos, model, on_event, |model, batch| {
            let (grads, loss) = loss_fn(&model, &batch, &g, &mut tally);
            Ok((opt.step(pos.lr, model, grads), loss))
        })?;
        let improved = fit.end_epoch(run, model.valid(), true, on_event)?;
        if let Some(r) = &resume {
            let best = fit.best.as_ref().expect("kept above");
            let state = TrainState {
                curve: fit.curve.clone(),
                best_epoch: best.epoch,
                best_val: best.val.clone(),
                tally,
                seconds: prior_seconds + started.elapsed().as_secs_f64(),
            };
            fit.checkpoint(r, &key, &model, &opt, improved, &state)?;
        }
    }
    let Best {
        epoch: best_epoch,
        model: best_model,
        val,
        ..
    } = fit.best.take().expect("at least one epoch");
    on_event(Event::Testing);
    let test = fit.evaluate(&best_model, Split::Test);
    if let Some(dir) = checkpoint {
        save_model(&best_model, model_cfg, dir)?;
    }
    let outcome = TrainOutcome {
        epochs: std::mem::take(&mut fit.curve),
        best_epoch,
        val,
        test,
        parameters,
        train_seconds: prior_seconds + started.elapsed().as_secs_f64(),
        tally,
    };
    Ok((best_model, outcome))
}

/// Predict `H` steps autoregressively for every window of `split` and compute the metrics of
/// each step on de-normalised speeds (STGCN's MAPE: `|ŷ − y| / y`, speeds are positive after gap
/// filling).
pub fn evaluate<B: Backend>(
    model: &Stgcn<B>,
    g: &GraphKernel<B>,
    data: &Dataset,
    split: Split,
    eval_batch: usize,
    device: &B::Device,
) -> Metrics {
    let windows = data.windows(split);
    let h = data.n_pred;
    let (mean, std) = (data.mean, data.std);
    let mut abs = vec![0f64; h];
    let mut sq = vec![0f64; h];
    let mut pct = vec![0f64; h];
    let mut batcher = Batcher::default();
    let all: Vec<usize> = (0..windows).collect();
    for idx in all.chunks(eval_batch.max(1)) {
        let batch = batcher.batch::<B>(data, split, idx, device);
        let x = batch.x.reshape([idx.len(), data.n_his, data.nodes]);
        let pred = model.predict_cached(x, g, h);
        let pred = pred.into_data().to_vec::<f32>().expect("f32 predictions");
        let n = data.nodes;
        for (i, (p, y)) in pred.iter().zip(&batcher.y).enumerate() {
            let step = (i / n) % h;
            let p = *p as f64 * std + mean;
            let y = *y as f64 * std + mean;
            let e = p - y;
            abs[step] += e.abs();
            sq[step] += e * e;
            pct[step] += e.abs() / y.abs().max(1e-5);
        }
    }
    let count = (windows * data.nodes).max(1) as f64;
    let steps = (0..h)
        .map(|s| StepMetrics {
            step: s + 1,
            mape: 100.0 * pct[s] / count,
            mae: abs[s] / count,
            rmse: (sq[s] / count).sqrt(),
        })
        .collect();
    Metrics {
        split,
        windows,
        steps,
    }
}

/// The split every test timing predicts from: the test split, or the training split where the
/// test split has no windows.
fn timing_split(data: &Dataset) -> Split {
    if data.windows(Split::Test) > 0 {
        Split::Test
    } else {
        Split::Train
    }
}

/// Windows of the split test timings predict from ([`timing_batch`] takes at most this many).
pub fn timing_split_windows(data: &Dataset) -> usize {
    data.windows(timing_split(data))
}

/// The input every test timing predicts from: the first `batch` test windows (training windows
/// where a split has no test windows), `[b, n_his, N]`, and `b`.
pub fn timing_batch<B: Backend>(
    data: &Dataset,
    batch: usize,
    device: &B::Device,
) -> (Tensor<B, 3>, usize) {
    let split = timing_split(data);
    let b = batch.min(data.windows(split)).max(1);
    let idx: Vec<usize> = (0..b).collect();
    let x = Batcher::default()
        .batch::<B>(data, split, &idx, device)
        .x
        .reshape([b, data.n_his, data.nodes]);
    (x, b)
}
/// Mean wall time of the `H`-step prediction for a batch of up to `batch` test windows over
/// `runs` runs (after one warm-up run). With `runs = None`, picks the count that keeps the whole
/// measurement near `budget_s` seconds (at least 1, at most 100); if the warm-up run alone takes
/// half the budget it is reported as the single run.
pub fn measure_test_time<B: Backend>(
    model: &Stgcn<B>,
    g: &GraphKernel<B>,
    data: &Dataset,
    batch: usize,
    runs: Option<usize>,
    budget_s: f64,
    device: &B::Device,
) -> TestTime {
    let (x, b) = timing_batch::<B>(data, batch, device);
    let once = || {
        let t = Instant::now();
        let p = model.predict(x.clone(), g, data.n_pred);
        let _ = p.into_data(); // forces completion on asynchronous backends
        t.elapsed().as_secs_f64()
    };
    let warm = once();
    // When no count is given and one run already takes half the budget (a teacher at batch
    // 1140 on the CPU), the warm-up run is the measurement: R = 1.
    if runs.is_none() && warm >= budget_s / 2.0 {
        return TestTime {
            seconds: warm,
            runs: 1,
            batch: b,
        };
    }
    let runs = runs
        .unwrap_or_else(|| ((budget_s / warm.max(1e-6)) as usize).clamp(1, 100))
        .max(1);
    let total: f64 = (0..runs).map(|_| once()).sum();
    TestTime {
        seconds: total / runs as f64,
        runs,
        batch: b,
    }
}

const MODEL_FILE: &str = "model";
const CONFIG_FILE: &str = "model.json";

/// Save a model and its shape to `dir` (`model.bin`, `model.json`). `model.bin` is burn's
/// record with every parameter's id replaced by its position in the network (see
/// [`crate::resume`]): the same weights give the same bytes.
pub fn save_model<B: Backend>(
    model: &Stgcn<B>,
    cfg: &StgcnConfig,
    dir: &Path,
) -> Result<(), TrainError> {
    let err = |detail: String| TrainError::Checkpoint {
        path: dir.to_path_buf(),
        detail,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let json = serde_json::to_string_pretty(cfg).map_err(|e| err(e.to_string()))?;
    std::fs::write(dir.join(CONFIG_FILE), json).map_err(|e| err(e.to_string()))?;
    positional(model.clone())
        .save_file(
            dir.join(MODEL_FILE),
            &BinFileRecorder::<FullPrecisionSettings>::new(),
        )
        .map_err(|e| err(e.to_string()))
}

/// Load a model saved by [`save_model`] from `dir` (a run's checkpoint directory).
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(Stgcn<B>, StgcnConfig), TrainError> {
    let err = |detail: String| TrainError::Checkpoint {
        path: dir.to_path_buf(),
        detail,
    };
    let json = std::fs::read_to_string(dir.join(CONFIG_FILE)).map_err(|e| {
        err(format!(
            "cannot read {CONFIG_FILE}: {e} (is this a run's checkpoint directory?)"
        ))
    })?;
    let cfg: StgcnConfig =
        serde_json::from_str(&json).map_err(|e| err(format!("{CONFIG_FILE}: {e}")))?;
    // The file's ids (positions, or random ids in files written before) are replaced by the
    // fresh network's, so that two networks loaded from checkpoints never share an id.
    let fresh = Stgcn::<B>::new(&cfg, 0, device)?;
    let ids = param_ids(&fresh);
    let model = fresh
        .load_file(
            dir.join(MODEL_FILE),
            &BinFileRecorder::<FullPrecisionSettings>::new(),
            device,
        )
        .map_err(|e| err(e.to_string()))?;
    Ok((with_param_ids(model, &ids), cfg))
}

#[cfg(test)]
mod distill_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuInner};
    use crate::distill::mse_loss;
    use crate::model::Preset;

    fn tiny() -> Dataset {
        Dataset::synthetic(6, 6, 48, 11)
    }

    fn quick_cfg() -> TrainConfig {
        TrainConfig {
            epochs: 2,
            batch_size: 16,
            eval_batch: 64,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn lr_schedule_decays_every_five_epochs() {
        let c = TrainConfig::default();
        assert_eq!(c.lr_at(0), 1e-3);
        assert_eq!(c.lr_at(4), 1e-3);
        assert!((c.lr_at(5) - 7e-4).abs() < 1e-12);
        assert!((c.lr_at(12) - 1e-3 * 0.49).abs() < 1e-12);
    }

    #[test]
    fn training_lowers_loss_is_deterministic_and_checkpoints_round_trip() {
        let data = tiny();
        let mcfg = StgcnConfig::new(Preset::Student.channels(), data.nodes, data.n_his);
        let dev = Default::default();
        let cfg = TrainConfig {
            epochs: 4,
            ..quick_cfg()
        };
        let dir = std::env::temp_dir().join(format!("stkd-train-test-{}", std::process::id()));
        let (m1, o1) = train::<Cpu>(&data, &mcfg, &cfg, &dev, Some(&dir), &mut |_| {}).unwrap();
        let (_, o2) = train::<Cpu>(&data, &mcfg, &cfg, &dev, None, &mut |_| {}).unwrap();
        assert_eq!(o1.test, o2.test, "same seed must give the same metrics");
        let first = o1.epochs.first().unwrap().train_loss;
        let last = o1.epochs.last().unwrap().train_loss;
        assert!(last < first, "loss should fall: {first} -> {last}");
        assert_eq!(o1.test.steps.len(), data.n_pred);
        assert!(o1
            .test
            .steps
            .iter()
            .all(|s| s.mae.is_finite() && s.rmse >= s.mae));
        // The saved best model reproduces the test metrics.
        let (loaded, lcfg) = load_model::<CpuInner>(&dir, &dev).unwrap();
        assert_eq!(lcfg, mcfg);
        let g = GraphKernel::<CpuInner>::new(&data.cheb, data.nodes, &dev);
        let again = evaluate(&loaded, &g, &data, Split::Test, 64, &dev);
        let direct = evaluate(&m1, &g, &data, Split::Test, 7, &dev);
        for ((a, b), c) in again.steps.iter().zip(&o1.test.steps).zip(&direct.steps) {
            assert!((a.mae - b.mae).abs() < 1e-9 && (c.mae - b.mae).abs() < 1e-4);
        }
        let other = TrainConfig { seed: 2, ..cfg };
        let (_, o3) = train::<Cpu>(&data, &mcfg, &other, &dev, None, &mut |_| {}).unwrap();
        assert_ne!(o1.test, o3.test, "another seed gives another model");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_run_stopped_mid_epoch_resumes_after_its_last_epoch_with_the_same_metrics() {
        let data = tiny();
        let mcfg = StgcnConfig::new(Preset::Student.channels(), data.nodes, data.n_his);
        let dev = Default::default();
        let cfg = TrainConfig {
            epochs: 4,
            ..quick_cfg()
        };
        let (_, whole) = train::<Cpu>(&data, &mcfg, &cfg, &dev, None, &mut |_| {}).unwrap();
        let dir = std::env::temp_dir().join(format!("stkd-resume-train-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let steps = data.windows(Split::Train).div_ceil(cfg.batch_size);
        // Stop (as a kill would) in the middle of the third epoch, after two checkpoints.
        let stop_at = 2 * steps + steps / 2;
        let mut taken = 0;
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            train_with_loss::<Cpu, _>(
                &data,
                &mcfg,
                &cfg,
                &dev,
                Some(&dir),
                &mut |_| {},
                |m, b, g, _| {
                    taken += 1;
                    assert!(taken <= stop_at, "stopped");
                    backward_step(mse_loss(m.forward(b.x.clone(), g), b.y1.clone()), m)
                },
            )
        }));
        assert!(stopped.is_err());
        let ck = ResumeDir::new(&dir).load::<TrainState>(&resume_key(&mcfg, &cfg));
        assert_eq!(ck.unwrap().unwrap().epoch, 2, "checkpoint after epoch 2");
        let mut epochs_run = Vec::new();
        let (_, resumed) = train::<Cpu>(&data, &mcfg, &cfg, &dev, Some(&dir), &mut |e| {
            if let Event::EpochStart { epoch, .. } = e {
                epochs_run.push(epoch)
            }
        })
        .unwrap();
        assert_eq!(
            epochs_run,
            [3, 4],
            "only the epochs after the checkpoint run"
        );
        let curve = |o: &TrainOutcome| {
            o.epochs
                .iter()
                .map(|e| (e.epoch, e.lr, e.train_loss, e.val_mae))
                .collect::<Vec<_>>()
        };
        assert_eq!(curve(&resumed), curve(&whole));
        assert_eq!(resumed.best_epoch, whole.best_epoch);
        assert_eq!(resumed.val, whole.val);
        assert_eq!(resumed.test, whole.test);
        // A finished run's checkpoint is only tested again: no epoch runs.
        epochs_run.clear();
        let (_, again) = train::<Cpu>(&data, &mcfg, &cfg, &dev, Some(&dir), &mut |e| {
            if let Event::EpochStart { epoch, .. } = e {
                epochs_run.push(epoch)
            }
        })
        .unwrap();
        assert!(epochs_run.is_empty());
        assert_eq!(again.test, whole.test);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The SHA-256 of every `.bin` file under `dir`, by path relative to it.
    fn bin_digests(dir: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for sub in ["", "resume"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.ends_with(".bin") {
                    let bytes = std::fs::read(e.path()).unwrap();
                    out.push((format!("{sub}/{name}"), crate::digest::sha256_hex(&bytes)));
                }
            }
        }
        out.sort();
        out
    }

    fn weights_of<B: Backend>(m: &Stgcn<B>) -> Vec<Vec<u32>> {
        struct W(Vec<Vec<u32>>);
        impl<B: Backend> burn::module::ModuleVisitor<B> for W {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
                let v = p.val().into_data().to_vec::<f32>().unwrap();
                self.0.push(v.iter().map(|x| x.to_bits()).collect());
            }
        }
        let mut w = W(Vec::new());
        m.visit(&mut w);
        w.0
    }

    /// A run's numbers do not depend on how many threads computed them (issue #30): the same
    /// training in rayon pools of 1, 2 and 3 threads ends with the same weights, curve and
    /// metrics, bit for bit. Every kernel splits its sums by the shapes alone: LayerNorm's
    /// parameter gradients and the graph convolution's groups used to follow the pool's size
    /// (1 and 2 threads differed in the first, 2 and 3 in the second). A graph of 40 nodes,
    /// batch 20, the student and the base model (2 to 16 channels): every kernel path.
    #[test]
    fn a_run_gives_the_same_bits_at_any_thread_count() {
        let data = Dataset::synthetic(40, 4, 40, 5);
        let dev = Default::default();
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 20,
            eval_batch: 50,
            ..TrainConfig::default()
        };
        for preset in [Preset::Student, Preset::Base] {
            let mcfg = StgcnConfig::new(preset.channels(), data.nodes, data.n_his);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let (m, o) = train::<Cpu>(&data, &mcfg, &cfg, &dev, None, &mut |_| {}).unwrap();
                    let curve: Vec<_> = o
                        .epochs
                        .iter()
                        .map(|e| (e.train_loss.to_bits(), e.val_mae.to_bits()))
                        .collect();
                    (weights_of(&m), curve, o.val, o.test)
                })
            };
            let one = run(1);
            for threads in [2, 3] {
                let other = run(threads);
                assert!(
                    other.0 == one.0,
                    "{preset:?}: weights at {threads} threads differ from 1 thread's"
                );
                assert_eq!(other.1, one.1, "{preset:?}: curve at {threads} threads");
                assert_eq!(
                    (&other.2, &other.3),
                    (&one.2, &one.3),
                    "{preset:?}: metrics"
                );
            }
        }
    }

    #[test]
    fn the_same_weights_give_the_same_checkpoint_files() {
        let data = tiny();
        let mcfg = StgcnConfig::new(Preset::Student.channels(), data.nodes, data.n_his);
        let dev = Default::default();
        let cfg = quick_cfg();
        let tmp = std::env::temp_dir().join(format!("stkd-same-bytes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        // Two identical training runs: the same model.bin and the same resume pieces (model,
        // optimiser state, best model), byte for byte.
        let (a, b) = (tmp.join("a"), tmp.join("b"));
        train::<Cpu>(&data, &mcfg, &cfg, &dev, Some(&a), &mut |_| {}).unwrap();
        train::<Cpu>(&data, &mcfg, &cfg, &dev, Some(&b), &mut |_| {}).unwrap();
        let (da, db) = (bin_digests(&a), bin_digests(&b));
        let names: Vec<&str> = da.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"/model.bin"), "{names:?}");
        assert!(names.contains(&"resume/optim-2.bin"), "{names:?}");
        assert!(
            names.iter().any(|n| n.starts_with("resume/best-")),
            "{names:?}"
        );
        assert_eq!(da, db, "identical runs write identical checkpoint files");
        // Loading a model.bin and saving it again through a fresh network writes the same file;
        // so do two fresh networks (different random ids) with the same weights.
        let (loaded, _) = load_model::<CpuInner>(&a, &dev).unwrap();
        save_model(&loaded, &mcfg, &tmp.join("c")).unwrap();
        let m1 = Stgcn::<CpuInner>::new(&mcfg, 3, &dev).unwrap();
        let m2 = Stgcn::<CpuInner>::new(&mcfg, 3, &dev).unwrap();
        assert_ne!(param_ids(&m1), param_ids(&m2));
        save_model(&m1, &mcfg, &tmp.join("d")).unwrap();
        save_model(&m2, &mcfg, &tmp.join("e")).unwrap();
        let digest = |d: &str| bin_digests(&tmp.join(d));
        assert_eq!(digest("c")[0], da[0]);
        assert_eq!(digest("d"), digest("e"));
        // Networks loaded from one file do not share parameter ids.
        let (again, _) = load_model::<CpuInner>(&a, &dev).unwrap();
        assert_eq!(weights_of(&again), weights_of(&loaded));
        assert!(param_ids(&again)
            .iter()
            .all(|id| !param_ids(&loaded).contains(id)));
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn model_files_with_random_ids_still_load_bit_for_bit() {
        let data = tiny();
        let mcfg = StgcnConfig::new(Preset::Student.channels(), data.nodes, data.n_his);
        let dev = Default::default();
        let dir = std::env::temp_dir().join(format!("stkd-old-model-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // A model.bin as written before: burn's record of the network with its random ids.
        let m = Stgcn::<CpuInner>::new(&mcfg, 4, &dev).unwrap();
        save_model(&m, &mcfg, &dir).unwrap();
        let new_bytes = std::fs::read(dir.join("model.bin")).unwrap();
        m.clone()
            .save_file(
                dir.join(MODEL_FILE),
                &BinFileRecorder::<FullPrecisionSettings>::new(),
            )
            .unwrap();
        let old_bytes = std::fs::read(dir.join("model.bin")).unwrap();
        assert_eq!(old_bytes.len(), new_bytes.len(), "the same layout");
        assert_ne!(old_bytes, new_bytes, "only the ids differ");
        let (loaded, _) = load_model::<CpuInner>(&dir, &dev).unwrap();
        assert_eq!(weights_of(&loaded), weights_of(&m));
        let g = GraphKernel::<CpuInner>::new(&data.cheb, data.nodes, &dev);
        let idx: Vec<usize> = (0..8).collect();
        let b = Batcher::default().batch::<CpuInner>(&data, Split::Test, &idx, &dev);
        let x = b.x.reshape([8, data.n_his, data.nodes]);
        let bits = |m: &Stgcn<CpuInner>| {
            let p = m.predict(x.clone(), &g, data.n_pred).into_data();
            p.to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&loaded), bits(&m));
        // Saved again, it is the file save_model writes for those weights.
        save_model(&loaded, &mcfg, &dir).unwrap();
        assert_eq!(std::fs::read(dir.join("model.bin")).unwrap(), new_bytes);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn committed_model_files_load_and_save_again_to_the_same_weights() {
        let records = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/records");
        let Ok(entries) = std::fs::read_dir(&records) else {
            return; // no committed results in this checkout
        };
        let dev = Default::default();
        let tmp = std::env::temp_dir().join(format!("stkd-committed-{}", std::process::id()));
        let mut n = 0;
        for e in entries.flatten() {
            let dir = e.path();
            if !dir.join("model.bin").exists() {
                continue;
            }
            let (m, cfg) = load_model::<CpuInner>(&dir, &dev)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            save_model(&m, &cfg, &tmp).unwrap();
            let (again, _) = load_model::<CpuInner>(&tmp, &dev).unwrap();
            assert_eq!(weights_of(&again), weights_of(&m), "{}", dir.display());
            n += 1;
        }
        assert!(n > 0, "no model.bin under {}", records.display());
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn optimiser_state_resumes_from_new_and_old_checkpoint_files() {
        let data = tiny();
        let mcfg = StgcnConfig::new(Preset::Student.channels(), data.nodes, data.n_his);
        let dev = Default::default();
        let g = GraphKernel::<Cpu>::new(&data.cheb, data.nodes, &dev);
        let idx: Vec<usize> = (0..16).collect();
        let batch = Batcher::default().batch::<Cpu>(&data, Split::Train, &idx, &dev);
        let step = |m: Stgcn<Cpu>, opt: &mut Opt<Cpu>| {
            let (grads, _) = backward_step(
                mse_loss(m.forward(batch.x.clone(), &g), batch.y1.clone()),
                &m,
            );
            opt.step(1e-3, m, grads)
        };
        let mut opt = Opt::<Cpu>::new(OptimizerKind::Adam);
        let mut model = Stgcn::<Cpu>::new(&mcfg, 1, &dev).unwrap();
        for _ in 0..2 {
            model = step(model, &mut opt);
        }
        let run = std::env::temp_dir().join(format!("stkd-opt-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        let r = ResumeDir::new(&run);
        // Written as now (positions), then as before (random ids, the optimiser's hash map).
        let mut s = r.begin(1).unwrap();
        s.module::<Cpu, _>("model", &model).unwrap();
        opt.save(&mut s, "optim", &model).unwrap();
        s.record::<Cpu, _>("old-model", model.clone().into_record())
            .unwrap();
        match &opt {
            Opt::Adam(o) => s.record::<Cpu, _>("old-optim", o.to_record()).unwrap(),
            Opt::Rms(_) => unreachable!(),
        }
        s.commit("k", &0u32).unwrap();
        let ck = r.load::<u32>("k").unwrap().unwrap();
        let expected = weights_of(&step(model.clone(), &mut opt).valid());
        for (m, o) in [("model", "optim"), ("old-model", "old-optim")] {
            let fresh = Stgcn::<Cpu>::new(&mcfg, 9, &dev).unwrap();
            let own = param_ids(&fresh);
            let (loaded, ids) = ck.module::<Cpu, _>(m, fresh, &dev).unwrap();
            assert_eq!(param_ids(&loaded), own, "{m}: the network keeps its ids");
            let mut opt2 = Opt::<Cpu>::new(OptimizerKind::Adam)
                .load(&ck, o, &ids, &dev)
                .unwrap();
            let next = step(loaded, &mut opt2).valid();
            assert_eq!(
                weights_of(&next),
                expected,
                "{m}: the next step is the same"
            );
        }
        let _ = std::fs::remove_dir_all(&run);
    }

    #[test]
    fn metrics_match_hand_computation() {
        // A model whose prediction is known: evaluate compares de-normalised values.
        let data = tiny();
        let dev = Default::default();
        let mcfg = StgcnConfig::new(Preset::Student.channels(), data.nodes, data.n_his);
        let m = Stgcn::<CpuInner>::new(&mcfg, 5, &dev).unwrap();
        let g = GraphKernel::<CpuInner>::new(&data.cheb, data.nodes, &dev);
        let got = evaluate(&m, &g, &data, Split::Val, 10, &dev);
        // Recompute step 1 by hand.
        let w = data.windows(Split::Val);
        let idx: Vec<usize> = (0..w).collect();
        let b = Batcher::default().batch::<CpuInner>(&data, Split::Val, &idx, &dev);
        let pred = m.predict(b.x.reshape([w, data.n_his, data.nodes]), &g, data.n_pred);
        let p = pred.into_data().to_vec::<f32>().unwrap();
        let y = b.y.into_data().to_vec::<f32>().unwrap();
        let (mut ae, mut se, mut pe, mut c) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..w {
            for n in 0..data.nodes {
                let k = i * data.n_pred * data.nodes + n; // step 1
                let pv = p[k] as f64 * data.std + data.mean;
                let yv = y[k] as f64 * data.std + data.mean;
                ae += (pv - yv).abs();
                se += (pv - yv).powi(2);
                pe += (pv - yv).abs() / yv;
                c += 1.0;
            }
        }
        let s1 = got.steps[0];
        assert!((s1.mae - ae / c).abs() < 1e-6);
        assert!((s1.rmse - (se / c).sqrt()).abs() < 1e-6);
        assert!((s1.mape - 100.0 * pe / c).abs() < 1e-6);
        assert_eq!(
            got.paper_horizons()
                .iter()
                .map(|s| s.minutes())
                .collect::<Vec<_>>(),
            vec![15, 30, 45]
        );
    }

    #[test]
    fn bad_config_and_missing_checkpoint_are_clear_errors() {
        let c = TrainConfig {
            batch_size: 0,
            ..TrainConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("batch_size"));
        let e = load_model::<CpuInner>(Path::new("no/such/run"), &Default::default()).unwrap_err();
        assert!(e.to_string().contains("no/such/run"), "{e}");
    }
}
