//! Pruning of a trained STGCN (paper §3.3, Algorithm 1; spec §5): first-order Taylor importance
//! `(g·w)²` accumulated over minibatches (Eqs. 13–14) from the gradients of the plain loss
//! (`taylor`, Molchanov et al., the paper's "Pruned W/O KD") or of a distillation loss against a
//! frozen teacher (`kdis`, Algorithm 1), masks that remove the lowest-scoring share of every
//! prunable layer at each pruning step, fine-tuning, and — for whole-channel pruning —
//! **compaction** into a smaller dense STGCN with the same outputs.
//!
//! # What a "channel" is, and what is pruned together
//!
//! The network has five channel *spaces* (see [`topology`]): `A_l` = the `c_t` channels of block
//! `l` (output of its first temporal GLU conv *and* of its spatial conv: the spatial conv maps
//! `c_t → c_t` with an identity residual, so both share one channel set), `B_l` = the `c_out`
//! channels of block `l` (second temporal conv and the block's LayerNorm; `B_1` also covers the
//! output block's GLU conv and LayerNorm, whose residual is the identity), and `S` = the output
//! channels of the output block's 1×1 sigmoid conv. Removing channel `k` of a space removes, in
//! every layer, everything that produces it (weight columns — both GLU halves `P` and `Q` —,
//! bias, residual-projection column, LayerNorm `γ, β` of every node) and everything that reads
//! it (weight rows of every time tap / Chebyshev order, projection rows, and for `S` the row of
//! the final fully connected layer, which is otherwise not pruned). A channel's importance is
//! the sum of the Taylor scores of all those parameters (Eq. 14 with the group = what is removed).
//!
//! Residual paths couple spaces:
//! - **identity** (`c_in = c_out`): the two sides become one space (e.g. `A_l` with the spatial
//!   conv; `B_1` with the output GLU conv; also `A_l`/`B_l` for configurations such as `[16, 16]`).
//! - **zero padding** (`c_in < c_out`, input channel `k` is added to output channel `k`): the
//!   input side's kept channels must stay kept on the output side (an output channel `k` may be
//!   removed only once input channel `k` is), and the input `x` (one channel, never pruned)
//!   protects channel 0 of `A_0`. A kept output channel whose input channel was removed receives
//!   an exactly-zero residual; compaction orders each space as "channels fed by the residual, in
//!   the parent's order" followed by the others, which is what the compacted network's padding
//!   does.
//! - **1×1 projection** (`c_in > c_out`): free on both sides, but the compacted sizes must keep
//!   `c_in' > c_out'` (otherwise the compacted STGCN would pad instead of project), which the
//!   per-step channel counts enforce.
//! - The sigmoid conv's output count must equal `B_1`'s (the model's output block is `c → c`).
//!
//! # Exactness of compaction (masked LayerNorm)
//!
//! STGCN's LayerNorm is joint over `N × C`: a removed channel that were merely zero would still
//! count in the mean and variance. In the masked (channel-pruned, full-size) network the
//! LayerNorm statistics are therefore taken over the *kept* channels only, and the removed
//! entries output exactly 0 (their `γ, β` are masked). With that definition every removed
//! channel is exactly zero, or is never read, and the compacted dense network computes the same
//! function (checked to 1e-5 in the tests and reported as `compaction_max_abs_diff` on each run).
//! Element-granularity pruning uses the ordinary LayerNorm (nothing is compacted).
//!
//! # Schedule
//!
//! The target is the share of the base network's **parameters** removed (the paper's "Pruned %",
//! Table 9: 97 % leaves 3 %). Step `i` of `n` aims at `target·i/n` (or `i·share_per_step`, capped
//! at the target). Channel granularity: one channel share `q` is applied to every space (at
//! least one channel stays, plus the residual constraints above), and `q` is the smallest share
//! whose removed parameters reach the step's aim; already removed channels stay removed and the
//! lowest-scoring remaining channels of each space go. Element granularity: every prunable
//! tensor (all parameters but the final fully connected layer) loses the same share of its
//! entries, scaled so that the whole network reaches the aim. Importance is averaged over the
//! minibatches of each interval and reset after every pruning step (Algorithm 1 divides the
//! accumulator by the interval and keeps accumulating; resetting is Molchanov's practice).
//!
//! A pruning run (Algorithm 1): load the base checkpoint → train with the importance loss (plain
//! MSE for `taylor`, the run's distillation loss, STCD in the paper, for `kdis`) while
//! accumulating importance; after every interval prune → once the target is reached, fine-tune
//! `finetune_epochs` with `finetune_loss` (plain by default, Algorithm 1 line 25) → keep the
//! fine-tuning epoch with the best validation MAE → test metrics → compact → time the base and
//! the compacted network → save the compacted network as the run's checkpoint (loadable with
//! [`crate::train::load_model`]). The speed-up is `base / pruned` mean wall time of the full
//! 9-step prediction of one batch of `min(1140, test windows)` windows
//! ([`crate::train::measure_test_time`]), both in the same process on the same device, each
//! after one warm-up run, 2 timed runs on the CPU and 100 on a GPU (or `test_runs`).
//! Channel-pruned networks are fine-tuned in compacted form (the same function, faster; the
//! optimiser restarts there), element-pruned ones with their masks re-applied after every step.

pub mod forward;
pub mod mask;
pub mod run;
pub mod topology;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::Channels;
use crate::train::TestTime;

pub use forward::{forward_masked, MaskedView};
pub use mask::{compact, ChannelState, ElementState, Masks};
pub use run::{prune_model, PruneOutput};
pub use topology::{Key, Topology};

/// Where importance scores come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PruneMethod {
    /// Gradients of the plain loss (Molchanov et al. 2019; Table 8 "Pruned W/O KD").
    Taylor,
    /// Gradients of the run's distillation loss against its teacher (Algorithm 1, "KDIS").
    Kdis,
}

/// What one score and one mask entry cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Whole channels (default): the network can be compacted.
    #[default]
    Channel,
    /// Single weights.
    Element,
}

/// The loss of the fine-tuning phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinetuneLoss {
    /// Plain MSE (Algorithm 1 line 25; default).
    #[default]
    Mse,
    /// The run's distillation loss against its teacher.
    Kd,
}

/// How often a pruning step happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    /// Every this many epochs (Table 8: 2).
    Epochs(usize),
    /// Every this many minibatches (Algorithm 1's `pruning_minibatch`).
    Minibatches(usize),
}

/// How far each pruning step goes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepRule {
    /// This many equal steps reach the target.
    Steps(usize),
    /// Each step removes this many more percent of the parameters (the last step stops at the
    /// target).
    SharePerStep(f64),
}

/// Default number of pruning steps (the paper does not say).
pub const DEFAULT_STEPS: usize = 4;
/// Default interval: every 2 epochs (paper §4.5, Table 8).
pub const DEFAULT_INTERVAL_EPOCHS: usize = 2;
/// Default fine-tuning epochs after the last pruning step (the paper does not say).
pub const DEFAULT_FINETUNE_EPOCHS: usize = 2;

/// A pruning run's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneConfig {
    pub method: PruneMethod,
    #[serde(default)]
    pub granularity: Granularity,
    /// Share of the base network's parameters to remove, in percent, in (0, 100).
    pub target_pct: f64,
    pub schedule: StepRule,
    pub interval: Interval,
    pub finetune_epochs: usize,
    #[serde(default)]
    pub finetune_loss: FinetuneLoss,
}

/// Why a pruning configuration or run is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("invalid pruning configuration: {0}")]
    Config(String),
    #[error("pruning run without a base checkpoint (`base`)")]
    NoBase,
    #[error("base checkpoint {dir} was trained on {base_nodes} nodes, the data has {nodes}")]
    BaseMismatch {
        dir: std::path::PathBuf,
        base_nodes: usize,
        nodes: usize,
    },
    #[error("loss {loss} needs a teacher checkpoint, but none was given")]
    NoTeacher { loss: crate::distill::LossKind },
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Distill(#[from] crate::distill::DistillError),
}

impl PruneConfig {
    /// `method` to `target_pct` % with the defaults: channel granularity, 4 steps, every 2
    /// epochs, 2 fine-tuning epochs with the plain loss.
    pub fn new(method: PruneMethod, target_pct: f64) -> Self {
        PruneConfig {
            method,
            granularity: Granularity::Channel,
            target_pct,
            schedule: StepRule::Steps(DEFAULT_STEPS),
            interval: Interval::Epochs(DEFAULT_INTERVAL_EPOCHS),
            finetune_epochs: DEFAULT_FINETUNE_EPOCHS,
            finetune_loss: FinetuneLoss::Mse,
        }
    }

    pub fn validate(&self) -> Result<(), PruneError> {
        let bad = |m: String| Err(PruneError::Config(m));
        if !(self.target_pct.is_finite() && self.target_pct > 0.0 && self.target_pct < 100.0) {
            return bad(format!(
                "target = {} %: allowed a share in (0, 100)",
                self.target_pct
            ));
        }
        match self.schedule {
            StepRule::Steps(0) => return bad("steps = 0: allowed an integer ≥ 1".into()),
            StepRule::SharePerStep(s) if !(s.is_finite() && s > 0.0 && s < 100.0) => {
                return bad(format!(
                    "share_per_step = {s} %: allowed a share in (0, 100)"
                ))
            }
            _ => {}
        }
        match self.interval {
            Interval::Epochs(0) => bad("interval_epochs = 0: allowed an integer ≥ 1".into()),
            Interval::Minibatches(0) => bad("interval_steps = 0: allowed an integer ≥ 1".into()),
            _ => Ok(()),
        }
    }

    /// Number of pruning steps.
    pub fn steps(&self) -> usize {
        match self.schedule {
            StepRule::Steps(n) => n.max(1),
            StepRule::SharePerStep(s) => ((self.target_pct / s) - 1e-9).ceil().max(1.0) as usize,
        }
    }

    /// Share of the parameters (a fraction) removed after pruning step `step` (1-based).
    pub fn goal(&self, step: usize) -> f64 {
        let pct = match self.schedule {
            StepRule::Steps(n) => self.target_pct * step.min(n) as f64 / n.max(1) as f64,
            StepRule::SharePerStep(s) => (s * step as f64).min(self.target_pct),
        };
        pct / 100.0
    }

    /// Whether the run reads a teacher (KDIS importance or KD fine-tuning).
    pub fn uses_teacher(&self) -> bool {
        self.method == PruneMethod::Kdis || self.finetune_loss == FinetuneLoss::Kd
    }
}

/// One pruning step as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneStep {
    /// 1-based.
    pub step: usize,
    /// 1-based epoch and minibatch (within the epoch) after which it happened.
    pub epoch: usize,
    pub minibatch: usize,
    /// Aimed share of removed parameters (fraction).
    pub goal_share: f64,
    /// Reached share of removed parameters (fraction).
    pub masked_share: f64,
    /// Channel share removed from every space (channel granularity).
    pub channel_share: Option<f64>,
    /// Channels of the network a compaction would give now (channel granularity).
    pub channels: Option<Channels>,
}

/// The pruning figures of a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneSummary {
    pub method: PruneMethod,
    pub granularity: Granularity,
    pub target_pct: f64,
    /// Removed (masked) parameters / parameters of the base network.
    pub masked_share: f64,
    pub original_parameters: usize,
    /// Parameters not masked.
    pub remaining_parameters: usize,
    /// Parameters of the compacted dense network (channel granularity; equals
    /// `remaining_parameters`).
    pub compact_parameters: Option<usize>,
    pub compact_channels: Option<Channels>,
    /// Largest |masked − compacted| one-step output over a validation batch (channel
    /// granularity), normalised units.
    pub compaction_max_abs_diff: Option<f64>,
    /// Test time (9-step prediction, same batch and device) of the base network and of the
    /// pruned network (compacted; element-pruned networks are not timed).
    pub base_test_time: Option<TestTime>,
    pub pruned_test_time: Option<TestTime>,
    /// `base_test_time / pruned_test_time`.
    pub speedup: Option<f64>,
    pub steps: Vec<PruneStep>,
}

impl PruneSummary {
    /// Parameters of the network the run delivers, as a share of the base network's.
    pub fn kept_share(&self) -> f64 {
        self.compact_parameters.unwrap_or(self.remaining_parameters) as f64
            / self.original_parameters.max(1) as f64
    }

    /// The store's row.
    pub fn to_store(&self) -> crate::store::Pruning {
        crate::store::Pruning {
            target_pct: self.target_pct,
            masked_share: self.masked_share,
            compact_parameters: self.compact_parameters.unwrap_or(self.remaining_parameters) as u64,
            original_parameters: self.original_parameters as u64,
            speedup: self.speedup,
        }
    }
}

macro_rules! name_enum {
    ($t:ty, $($v:ident = $s:literal),+) => {
        impl $t {
            pub fn name(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $($s => Ok(Self::$v),)+
                    _ => Err(format!(
                        "unknown value `{s}`: expected one of {}",
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
    };
}
name_enum!(PruneMethod, Taylor = "taylor", Kdis = "kdis");
name_enum!(Granularity, Channel = "channel", Element = "element");
name_enum!(FinetuneLoss, Mse = "mse", Kd = "kd");
