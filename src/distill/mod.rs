//! The distillation losses of the paper (spec §4) as pure tensor functions, plus SKD's gradient
//! revision.
//!
//! Conventions (spec [I-6]): predictions `y` are `[B, 1, N, 1]` one-step outputs, read as
//! `[B, N]`; hidden features `F` are `[B, T', N, C]`. The paper's `‖a − b‖₂` of a scalar
//! difference is the squared difference (`Norm::Squared`, default) or, as an option, the
//! absolute difference (`Norm::Abs`); it is applied where the paper writes `‖·‖₂`: Eqs. 2–3, 6,
//! 8, 10 (and so 11). The baseline W/O KD (`mse`) and SKD's task/response terms are defined by the
//! spec as squared differences and stay squared. Sums over `b, i` are means.
//!
//! Teacher tensors may live on any backend (typically the autodiff backend's inner backend):
//! they are constants, read to the host. The student side keeps its autodiff graph.
//!
//! The pairwise terms (TCD, SCD, SKD's structural term) are computed on the host by fused
//! kernels (see `pairwise`) that never materialise a `pairs × C` tensor; their exact gradient
//! with respect to the student features `F_s` is injected into the graph with a surrogate:
//! `loss = Σ(F_s ⊙ G) − detach(Σ(F_s ⊙ G)) + value`, whose value is `value` and whose gradient
//! with respect to `F_s` is exactly `G`. On a backend without autodiff no gradient is computed.
//! Cost at B = 50, N = 228 (teacher `[[1,32,64],[64,32,128]]`, student `[[1,2,4],[4,2,8]]`):
//! TCD + SCD loss and student gradient ≈ 0.2 s of one core (see [`bench_pairwise`]).
//!
//! Usage in a training step: run the teacher (inner backend, no graph) and the student with
//! `forward_features`, build [`KdInputs`], call [`kd_loss`], `backward()` the returned loss. For
//! SKD with gradient revision call [`skd_grads`] instead, which runs the student's forward itself
//! (once per term, see `skd`) and returns the update direction as `GradientsParams`.
//!
//! Interpretations beyond the spec, documented here:
//! - `tcd` and `scd` as loss kinds are the ablations of Table 5 / Table 3 (which reports ORD
//!   pick shares for them): STCD with only one feature term, `ORD + α3·L_TCD` and
//!   `ORD + α3·L_SCD`.
//! - RD-KL: the KL term of Eq. 1 is a divergence between two distributions over the N nodes of
//!   a sample (`p = softmax over the nodes of y/τ`, [I-7]): `Σ_i p^t_bi·log(p^t_bi / p^s_bi)`
//!   summed over the nodes and averaged over the batch (PyTorch's `batchmean`, the true KL), not
//!   divided further by `N`. The task term is averaged over `b, i` as everywhere. No `τ²` factor.
//! - SKD structural term: mean of smooth-L1 (β = 1) over all `B·P²` entries of the normalised
//!   `P × P` distance matrices (`P = T'·N`), as `F.smooth_l1_loss` on the full matrices does.
//!
//! Adding a loss:
//! 1. One line in the `loss_kinds!` list below: the variant, its canonical name (experiment
//!    files, `--loss`, stored records), its title in the paper's tables, any aliases. The enum,
//!    [`LossKind::ALL`], [`LossKind::NAMES`] (the experiment file's allowed values), parsing,
//!    serde and the titles come from that line; `every_loss_kind_parses_back_and_has_a_title`
//!    checks them.
//! 2. Its value in [`kd_loss`] (an exhaustive `match`: the compiler points there), and whether
//!    it reads features or contains ORD ([`LossKind::needs_features`], [`LossKind::uses_ord`]).
//!    [`crate::train::loss_step`] then trains with it in every run kind (plain, pruning's KDIS
//!    and KD fine-tuning, the GPU warm-up).
//! 3. Its hyperparameters: which of [`LossConfig`]'s it reads in [`LossConfig::canonical`] (a
//!    run's hash must not change with one it does not read), and how reports print them
//!    (`report::runs::hyperparameters`, exhaustive). A new hyperparameter is a field of
//!    [`LossConfig`] and of [`LossSettings`], an entry of the experiment file's field table
//!    (`experiment/schema.rs`, read in `experiment/expand.rs`) and a flag of `stkd train`
//!    (`cli/run.rs`).
//! 4. If it reads the teacher's hidden features: which of them the teacher cache keeps for it
//!    ([`cache::Tap::of`]; `each_feature_loss_reads_only_its_taps` fails until it is there).

pub mod cache;
mod pairwise;
mod skd;

use std::fmt;
use std::str::FromStr;

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::model::Features;

pub use pairwise::{
    scd_layer, skd_structural, tcd_layer, tcd_layer_given, tcd_teacher, tcd_teacher_len,
    LayerKernel, PairSum,
};
pub use skd::{skd_grads, skd_revised_grads, Revision, SkdStep};

/// Declares [`LossKind`] from one list: each variant with its canonical name (configs,
/// experiment files, stored records, `--loss`), its title in the paper's tables and the other
/// names it is read under. The enum, [`LossKind::ALL`], [`LossKind::NAMES`], [`LossKind::name`],
/// [`LossKind::title`], parsing and serde all come from the list, so a new loss is one line
/// here (see the module docs).
macro_rules! loss_kinds {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $title:literal $(, aliases [$($alias:literal),+])?;
    )+) => {
        /// The losses compared in the paper (Tables 2, 4, 5).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum LossKind {
            $(
                $(#[$doc])*
                #[serde(rename = $name $($(, alias = $alias)+)?)]
                $variant,
            )+
        }

        impl LossKind {
            /// Every loss, in the order of the list.
            pub const ALL: [LossKind; [$(LossKind::$variant),+].len()] = [$(LossKind::$variant),+];

            /// Every loss's canonical name, in the order of [`LossKind::ALL`].
            pub const NAMES: [&'static str; LossKind::ALL.len()] = [$($name),+];

            /// Canonical name (as in configs and reports).
            pub fn name(self) -> &'static str {
                match self {
                    $(LossKind::$variant => $name,)+
                }
            }

            /// The paper's name of the loss in its tables (`W/O KD`, `RD-L2`, `STCD`, …).
            pub fn title(self) -> &'static str {
                match self {
                    $(LossKind::$variant => $title,)+
                }
            }

            /// The loss a normalised name (lower case, `-` for `_`) or alias names.
            fn from_name(name: &str) -> Option<LossKind> {
                match name {
                    $($name $($(| $alias)+)? => Some(LossKind::$variant),)+
                    _ => None,
                }
            }

            /// The other names the loss is read under (`wo-kd` for `mse`).
            pub fn aliases(self) -> &'static [&'static str] {
                match self {
                    $(LossKind::$variant => &[$($($alias),+)?],)+
                }
            }
        }
    };
}

loss_kinds! {
    /// W/O KD: `mean (ys − T)²`.
    Mse = "mse", "W/O KD", aliases ["wo-kd", "w/o-kd"];
    /// RD-L2, Eq. 3.
    RdL2 = "rd-l2", "RD-L2";
    /// RD-KL, Eqs. 1–2 (softmax over nodes, spec [I-7]).
    RdKl = "rd-kl", "RD-KL";
    /// SKD (Bian et al.), spec [I-8].
    Skd = "skd", "SKD";
    /// ORD, Eqs. 4–6.
    Ord = "ord", "ORD";
    /// Ablation: `ORD + α3·L_TCD` (Eqs. 7–8).
    Tcd = "tcd", "TCD";
    /// Ablation: `ORD + α3·L_SCD` (Eqs. 9–10).
    Scd = "scd", "SCD";
    /// STCD, Eq. 11.
    Stcd = "stcd", "STCD";
}

impl LossKind {
    /// Whether the loss reads a teacher (everything but W/O KD).
    pub fn needs_teacher(self) -> bool {
        self != LossKind::Mse
    }

    /// Whether the loss reads hidden features (student's and teacher's).
    pub fn needs_features(self) -> bool {
        matches!(
            self,
            LossKind::Skd | LossKind::Tcd | LossKind::Scd | LossKind::Stcd
        )
    }

    /// Whether the loss contains ORD (and so reports teacher picks, Table 3).
    pub fn uses_ord(self) -> bool {
        matches!(
            self,
            LossKind::Ord | LossKind::Tcd | LossKind::Scd | LossKind::Stcd
        )
    }
}

impl fmt::Display for LossKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl LossKind {
    /// `mse (wo-kd), rd-l2, …`: each name with its first alias, for messages.
    fn expected() -> String {
        let named = LossKind::ALL.map(|k| match k.aliases().first() {
            Some(a) => format!("{} ({a})", k.name()),
            None => k.name().to_string(),
        });
        named.join(", ")
    }
}

impl FromStr for LossKind {
    type Err = DistillError;
    fn from_str(s: &str) -> Result<Self, DistillError> {
        LossKind::from_name(&s.trim().to_ascii_lowercase().replace('_', "-"))
            .ok_or_else(|| DistillError::UnknownLoss(s.to_string()))
    }
}

/// How a scalar difference is penalised where the paper writes `‖·‖₂` (spec [I-6]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// `(a − b)²` (default: "summing the squared differences").
    #[default]
    Squared,
    /// `|a − b|`.
    Abs,
}

/// How ORD's per-element terms are reduced (Eq. 6 writes a sum; default mean, spec §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    #[default]
    Mean,
    Sum,
}

/// Why a loss cannot be computed.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    #[error("invalid loss configuration: {field} = {value} is out of range, expected {range}")]
    OutOfRange {
        field: &'static str,
        value: f64,
        range: &'static str,
    },
    #[error("loss `{kind}` needs the teacher's {what}, but none was given")]
    MissingTeacher { kind: LossKind, what: &'static str },
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error("unknown loss `{0}`: expected one of {}", LossKind::expected())]
    UnknownLoss(String),
}

fn d_half() -> f64 {
    0.5
}
fn d_tau() -> f64 {
    1.0
}
fn d_true() -> bool {
    true
}

/// A loss and its hyperparameters (paper Table 6 names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    pub kind: LossKind,
    /// RD-L2 / RD-KL weight of the teacher term (Eqs. 2–3).
    #[serde(default = "d_half")]
    pub beta: f64,
    /// SKD weight of the KD terms.
    #[serde(default = "d_half")]
    pub alpha: f64,
    /// ORD threshold on the normalised teacher error (Eq. 6).
    #[serde(default = "d_half")]
    pub alpha1: f64,
    /// STCD weight of SCD vs TCD (Eq. 11).
    #[serde(default = "d_half")]
    pub alpha2: f64,
    /// STCD weight of the feature terms (Eq. 11).
    #[serde(default = "d_half")]
    pub alpha3: f64,
    /// RD-KL softmax temperature (spec [I-7]).
    #[serde(default = "d_tau")]
    pub tau: f64,
    #[serde(default)]
    pub norm: Norm,
    #[serde(default)]
    pub ord_reduction: Reduction,
    /// SKD: project conflicting KD gradients (spec [I-8]); `false` = plain weighted sum.
    #[serde(default = "d_true")]
    pub gradient_revision: bool,
}

impl LossConfig {
    /// The same loss with every hyperparameter it does not read reset to its default, so that
    /// two configurations that train identically also compare (and hash) equal.
    pub fn canonical(&self) -> Self {
        use LossKind::{Mse, RdKl, RdL2, Scd, Skd, Stcd, Tcd};
        let d = LossConfig::new(self.kind);
        let k = self.kind;
        let uses = |kinds: &[LossKind]| kinds.contains(&k);
        LossConfig {
            kind: k,
            beta: if uses(&[RdL2, RdKl]) {
                self.beta
            } else {
                d.beta
            },
            alpha: if uses(&[Skd]) { self.alpha } else { d.alpha },
            alpha1: if k.uses_ord() { self.alpha1 } else { d.alpha1 },
            alpha2: if uses(&[Stcd]) { self.alpha2 } else { d.alpha2 },
            alpha3: if uses(&[Tcd, Scd, Stcd]) {
                self.alpha3
            } else {
                d.alpha3
            },
            tau: if uses(&[RdKl]) { self.tau } else { d.tau },
            norm: if uses(&[Mse, Skd]) { d.norm } else { self.norm },
            ord_reduction: if k.uses_ord() {
                self.ord_reduction
            } else {
                d.ord_reduction
            },
            gradient_revision: if uses(&[Skd]) {
                self.gradient_revision
            } else {
                d.gradient_revision
            },
        }
    }

    /// Defaults: every weight 0.5 (β, α, α1, α2, α3), τ = 1, squared norm, ORD mean, SKD
    /// gradient revision on. The paper's per-dataset values are in Table 6.
    pub fn new(kind: LossKind) -> Self {
        LossConfig {
            kind,
            beta: 0.5,
            alpha: 0.5,
            alpha1: 0.5,
            alpha2: 0.5,
            alpha3: 0.5,
            tau: 1.0,
            norm: Norm::Squared,
            ord_reduction: Reduction::Mean,
            gradient_revision: true,
        }
    }

    /// β, α, α1, α2, α3 in `[0, 1]`; τ finite and `> 0`.
    pub fn validate(&self) -> Result<(), DistillError> {
        for (field, value) in [
            ("beta", self.beta),
            ("alpha", self.alpha),
            ("alpha1", self.alpha1),
            ("alpha2", self.alpha2),
            ("alpha3", self.alpha3),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(DistillError::OutOfRange {
                    field,
                    value,
                    range: "[0, 1]",
                });
            }
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(DistillError::OutOfRange {
                field: "tau",
                value: self.tau,
                range: "(0, ∞)",
            });
        }
        Ok(())
    }
}

/// The hyperparameters a run sets for its loss; those left `None` keep [`LossConfig::new`]'s
/// defaults. Every front end (experiment file, `stkd train`, `stkd prune`) gives its settings
/// this way and [`LossSettings::config`] makes the loss.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossSettings {
    pub beta: Option<f64>,
    pub alpha: Option<f64>,
    pub alpha1: Option<f64>,
    pub alpha2: Option<f64>,
    pub alpha3: Option<f64>,
    pub tau: Option<f64>,
    pub norm: Option<Norm>,
    pub ord_reduction: Option<Reduction>,
    pub gradient_revision: Option<bool>,
}

impl LossSettings {
    /// Loss `kind` with these settings over its defaults, [`LossConfig::canonical`].
    pub fn config(&self, kind: LossKind) -> LossConfig {
        let d = LossConfig::new(kind);
        LossConfig {
            kind,
            beta: self.beta.unwrap_or(d.beta),
            alpha: self.alpha.unwrap_or(d.alpha),
            alpha1: self.alpha1.unwrap_or(d.alpha1),
            alpha2: self.alpha2.unwrap_or(d.alpha2),
            alpha3: self.alpha3.unwrap_or(d.alpha3),
            tau: self.tau.unwrap_or(d.tau),
            norm: self.norm.unwrap_or(d.norm),
            ord_reduction: self.ord_reduction.unwrap_or(d.ord_reduction),
            gradient_revision: self.gradient_revision.unwrap_or(d.gradient_revision),
        }
        .canonical()
    }
}

/// Student side (with autodiff) and teacher side (constants, no gradient) of one minibatch.
pub struct KdInputs<'a, B: AutodiffBackend> {
    /// `[B, 1, N, 1]` z-scored one-step target.
    pub target: Tensor<B, 4>,
    pub student_y: Tensor<B, 4>,
    pub student_f: &'a Features<B>,
    pub teacher_y: Option<Tensor<B::InnerBackend, 4>>,
    pub teacher_f: Option<&'a Features<B::InnerBackend>>,
    /// The teacher's side of TCD already computed ([`tcd_teacher`] of each temporal layer, in
    /// order: a [`cache`] of it): then `teacher_f`'s temporal layers are not read.
    pub teacher_tcd: Option<&'a [Vec<f32>]>,
}

/// A loss to minimise, and ORD's teacher picks for Table 3.
pub struct KdLoss<B: AutodiffBackend> {
    pub loss: Tensor<B, 1>,
    /// Elements `(b, i)` that used the teacher (`D > α1`); 0 for losses without ORD.
    pub ord_picks: u64,
    /// Elements ORD decided over (`B·N`); 0 for losses without ORD.
    pub ord_elements: u64,
}

/// ORD's selection counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrdStats {
    /// Elements that used the teacher's prediction.
    pub picks: u64,
    /// All elements (`B·N`).
    pub elements: u64,
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Row-major host copy of a tensor as `f32`.
pub(crate) fn host<BB: Backend, const D: usize>(t: &Tensor<BB, D>) -> Vec<f32> {
    t.to_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float tensor data")
}

/// Calls `f` with the row-major `f32` contents of `t`: borrowed without a copy when `t` is a
/// contiguous `f32` tensor of burn's Flex CPU backend (the teacher on CPU: ~100 ms of copies per
/// STCD step saved at the paper's size), otherwise read through `to_data`.
pub(crate) fn with_host<BB: Backend, const D: usize, R>(
    t: &Tensor<BB, D>,
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    use burn::backend::flex::FlexTensor;
    use burn::tensor::TensorPrimitive;
    if let TensorPrimitive::Float(p) = t.clone().into_primitive() {
        if let Some(ft) = (&p as &dyn std::any::Any).downcast_ref::<FlexTensor>() {
            if let Some(s) = ft.as_slice::<f32>() {
                return f(s);
            }
        }
    }
    f(&host(t))
}

fn constant<B: Backend, const D: usize>(
    v: Vec<f32>,
    dims: [usize; D],
    d: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v, dims), d)
}

fn scalar<B: Backend>(v: f64, d: &B::Device) -> Tensor<B, 1> {
    constant(vec![v as f32], [1], d)
}

/// A zero-valued term whose gradient with respect to `x` is exactly `g`.
fn surrogate<B: Backend, const D: usize>(x: &Tensor<B, D>, g: Vec<f32>) -> Tensor<B, 1> {
    let gt = constant::<B, D>(g, x.dims(), &x.device());
    let s = (x.clone() * gt).sum();
    s.clone() - s.detach()
}

fn penalty<B: Backend, const D: usize>(diff: Tensor<B, D>, norm: Norm) -> Tensor<B, D> {
    match norm {
        Norm::Squared => diff.clone() * diff,
        Norm::Abs => diff.abs(),
    }
}

fn same_dims(what: &str, a: &[usize], b: &[usize]) -> Result<(), DistillError> {
    if a == b {
        Ok(())
    } else {
        Err(DistillError::Shape(format!("{what}: {a:?} vs {b:?}")))
    }
}

/// The student's prediction dimensions, checked against the target's and the teacher's.
fn prediction_dims<B: Backend, BT: Backend>(
    student_y: &Tensor<B, 4>,
    teacher_y: &Tensor<BT, 4>,
    target: &Tensor<B, 4>,
) -> Result<[usize; 4], DistillError> {
    let dims = student_y.dims();
    same_dims("student vs target prediction", &dims, &target.dims())?;
    same_dims("student vs teacher prediction", &dims, &teacher_y.dims())?;
    Ok(dims)
}

/// `[B, …]` prediction as `(B, N)` with `N` the product of the other axes.
fn rows_of(dims: [usize; 4]) -> (usize, usize) {
    (dims[0], dims[1] * dims[2] * dims[3])
}

// ---------------------------------------------------------------------------------------------
// Response losses
// ---------------------------------------------------------------------------------------------

/// W/O KD: `mean_{b,i} (ys_bi − T_bi)²` (STGCN's plain L2 training loss).
pub fn mse_loss<B: Backend>(student_y: Tensor<B, 4>, target: Tensor<B, 4>) -> Tensor<B, 1> {
    penalty(student_y - target, Norm::Squared).mean()
}

/// RD-L2, Eq. 3: `mean_{b,i} [β·‖ys − yt‖ + (1 − β)·‖ys − T‖]` with `‖·‖` the squared (or
/// absolute) difference, spec [I-6].
pub fn rd_l2_loss<B: Backend, BT: Backend>(
    student_y: Tensor<B, 4>,
    teacher_y: &Tensor<BT, 4>,
    target: Tensor<B, 4>,
    beta: f64,
    norm: Norm,
) -> Result<Tensor<B, 1>, DistillError> {
    let dims = prediction_dims(&student_y, teacher_y, &target)?;
    let yt = constant::<B, 4>(host(teacher_y), dims, &student_y.device());
    let teacher = penalty(student_y.clone() - yt, norm).mean();
    let task = penalty(student_y - target, norm).mean();
    Ok(teacher.mul_scalar(beta) + task.mul_scalar(1.0 - beta))
}

/// RD-KL, Eqs. 1–2: `β·mean_b KL(p^t_b ‖ p^s_b) + (1 − β)·mean_{b,i} ‖ys_bi − T_bi‖` with
/// `p_b = softmax(y_b / τ)` over the `N` nodes of each sample (spec [I-7]), so that z-scored
/// (negative) outputs are fine. The KL is summed over the nodes and averaged over the batch
/// (`batchmean`): the true divergence between the two distributions of a sample.
pub fn rd_kl_loss<B: Backend, BT: Backend>(
    student_y: Tensor<B, 4>,
    teacher_y: &Tensor<BT, 4>,
    target: Tensor<B, 4>,
    beta: f64,
    tau: f64,
    norm: Norm,
) -> Result<Tensor<B, 1>, DistillError> {
    let dims = prediction_dims(&student_y, teacher_y, &target)?;
    let (b, n) = rows_of(dims);
    let device = student_y.device();
    // Teacher distribution on the host in f64: p^t and the constant Σ p^t·log p^t.
    let yt = host(teacher_y);
    let mut pt = vec![0f32; b * n];
    let mut neg_entropy = 0f64;
    for (row, out) in yt.chunks_exact(n).zip(pt.chunks_exact_mut(n)) {
        let m = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 / tau));
        let z: f64 = row.iter().map(|&v| (v as f64 / tau - m).exp()).sum();
        for (o, &v) in out.iter_mut().zip(row) {
            let logp = v as f64 / tau - m - z.ln();
            let p = logp.exp();
            *o = p as f32;
            if p > 0.0 {
                neg_entropy += p * logp;
            }
        }
    }
    let count = b as f64;
    let pt = constant::<B, 2>(pt, [b, n], &device);
    let log_ps = log_softmax(student_y.clone().reshape([b, n]).div_scalar(tau), 1);
    let kl = (pt * log_ps)
        .sum()
        .mul_scalar(-1.0 / count)
        .add_scalar(neg_entropy / count);
    let task = penalty(student_y - target, norm).mean();
    Ok(kl.mul_scalar(beta) + task.mul_scalar(1.0 - beta))
}

/// ORD's selection, Eqs. 4–5 and the condition of Eq. 6: for each sample (row of `n`),
/// `D = |yt − T|` min-max normalised over the nodes (a row with `max = min` gives `D = 0`);
/// `true` (use the teacher) where `D > α1`, `false` (use the target, ties included) otherwise.
pub fn ord_select(teacher_y: &[f32], target: &[f32], n: usize, alpha1: f64) -> Vec<bool> {
    assert_eq!(
        teacher_y.len(),
        target.len(),
        "ORD: teacher vs target length"
    );
    let mut out = Vec::with_capacity(target.len());
    if n == 0 {
        return out;
    }
    for (yt, t) in teacher_y.chunks_exact(n).zip(target.chunks_exact(n)) {
        let d: Vec<f64> = yt
            .iter()
            .zip(t)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .collect();
        let lo = d.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let range = hi - lo;
        out.extend(d.iter().map(|&v| {
            let norm = if range > 0.0 { (v - lo) / range } else { 0.0 };
            norm > alpha1
        }));
    }
    out
}

/// ORD, Eqs. 4–6: per element `‖ys − T‖` where the normalised teacher error `D ≤ α1` (ties go
/// to the target), `‖ys − yt‖` where `D > α1`; reduced by mean (default) or sum over `b, i`.
/// The selection carries no gradient. Returns the loss and the pick counts.
pub fn ord_loss<B: Backend, BT: Backend>(
    student_y: Tensor<B, 4>,
    teacher_y: &Tensor<BT, 4>,
    target: Tensor<B, 4>,
    alpha1: f64,
    norm: Norm,
    reduction: Reduction,
) -> Result<(Tensor<B, 1>, OrdStats), DistillError> {
    let dims = prediction_dims(&student_y, teacher_y, &target)?;
    let (_, n) = rows_of(dims);
    let yt = host(teacher_y);
    let t = host(&target);
    let pick = ord_select(&yt, &t, n, alpha1);
    let picks = pick.iter().filter(|&&p| p).count() as u64;
    let reference: Vec<f32> = pick
        .iter()
        .zip(yt.iter().zip(&t))
        .map(|(&p, (&a, &b))| if p { a } else { b })
        .collect();
    let reference = constant::<B, 4>(reference, dims, &student_y.device());
    let per = penalty(student_y - reference, norm);
    let loss = match reduction {
        Reduction::Mean => per.mean(),
        Reduction::Sum => per.sum(),
    };
    Ok((
        loss,
        OrdStats {
            picks,
            elements: pick.len() as u64,
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// Feature losses (TCD, SCD)
// ---------------------------------------------------------------------------------------------

/// Which axis the pairs of a feature term run over.
#[derive(Clone, Copy)]
enum PairAxis {
    /// TCD: pairs of time steps for each (b, n).
    Time,
    /// SCD: pairs of nodes for each (b, t).
    Node,
}

impl PairAxis {
    fn name(self) -> &'static str {
        match self {
            PairAxis::Time => "TCD",
            PairAxis::Node => "SCD",
        }
    }

    /// Pairs per sample of a `[T, N]` layer.
    fn pairs(self, t: usize, n: usize) -> usize {
        match self {
            PairAxis::Time => n * (t * t.saturating_sub(1) / 2),
            PairAxis::Node => t * (n * n.saturating_sub(1) / 2),
        }
    }

    fn kernel(self) -> LayerKernel {
        match self {
            PairAxis::Time => tcd_layer,
            PairAxis::Node => scd_layer,
        }
    }
}

/// The teacher's side of a feature term: its layers, or (TCD) its pair distances per layer.
#[derive(Clone, Copy)]
enum TeacherLayers<'a, BT: Backend> {
    Features(&'a [Tensor<BT, 4>]),
    TcdDistances(&'a [Vec<f32>]),
}

impl<BT: Backend> TeacherLayers<'_, BT> {
    fn len(&self) -> usize {
        match self {
            TeacherLayers::Features(f) => f.len(),
            TeacherLayers::TcdDistances(d) => d.len(),
        }
    }
}

/// Mean over layers of the per-layer mean pair penalty, with the gradient injected.
fn pairwise_loss<B: Backend, BT: Backend>(
    axis: PairAxis,
    student: &[Tensor<B, 4>],
    teacher: TeacherLayers<'_, BT>,
    norm: Norm,
) -> Result<Tensor<B, 1>, DistillError> {
    let what = axis.name();
    if student.len() != teacher.len() || student.is_empty() {
        return Err(DistillError::Shape(format!(
            "{what}: student has {} layers, teacher {}",
            student.len(),
            teacher.len()
        )));
    }
    let device = student[0].device();
    let grad = B::ad_enabled(&device);
    let kernel = axis.kernel();
    let layers = student.len() as f64;
    let mut value = 0f64;
    let mut total: Option<Tensor<B, 1>> = None;
    for (l, fs) in student.iter().enumerate() {
        let [b, t, n, cs] = fs.dims();
        let count = (b * axis.pairs(t, n)) as f64;
        let scale = if count > 0.0 {
            1.0 / (layers * count)
        } else {
            0.0
        };
        let dims = [b, t, n, cs];
        // The kernel on the student's host copy, with the gradient injected when asked.
        let mut apply =
            |s: &[f32], run: &mut dyn FnMut(&[f32], Option<(&mut [f32], f32)>) -> PairSum| -> f64 {
                if grad {
                    let mut g = vec![0f32; s.len()];
                    let r = run(s, Some((&mut g, scale as f32)));
                    let term = surrogate(fs, g);
                    total = Some(match total.take() {
                        Some(acc) => acc + term,
                        None => term,
                    });
                    r.sum
                } else {
                    run(s, None).sum
                }
            };
        let sum = match teacher {
            TeacherLayers::Features(f) => {
                let ft = &f[l];
                let [bt, tt, nt, ct] = ft.dims();
                same_dims(
                    &format!("{what} layer {l} [B, T, N]"),
                    &[b, t, n],
                    &[bt, tt, nt],
                )?;
                with_host(ft, |th| {
                    with_host(fs, |s| {
                        apply(s, &mut |s, g| kernel(s, th, dims, ct, norm, g))
                    })
                })
            }
            TeacherLayers::TcdDistances(d) => {
                let dt = &d[l];
                if dt.len() != b * tcd_teacher_len(t, n) {
                    return Err(DistillError::Shape(format!(
                        "{what} layer {l}: {} teacher distances for [B, T, N] = [{b}, {t}, {n}]",
                        dt.len()
                    )));
                }
                with_host(fs, |s| {
                    apply(s, &mut |s, g| tcd_layer_given(s, dt, dims, norm, g))
                })
            }
        };
        value += sum * scale;
    }
    Ok(match total {
        Some(t) => t.add_scalar(value),
        None => scalar(value, &device),
    })
}

/// TCD, Eqs. 7–8: `TCD_bnij = mean_c |F_binc − F_bjnc|` over pairs of time steps `j > i`;
/// `L_TCD = mean_{b, n, j>i} ‖TCD^s − TCD^t‖`, averaged over the temporal layers. Student and
/// teacher layers must agree in `[B, T, N]`; channel counts may differ.
pub fn tcd_loss<B: Backend, BT: Backend>(
    student: &[Tensor<B, 4>],
    teacher: &[Tensor<BT, 4>],
    norm: Norm,
) -> Result<Tensor<B, 1>, DistillError> {
    pairwise_loss(
        PairAxis::Time,
        student,
        TeacherLayers::Features(teacher),
        norm,
    )
}

/// SCD, Eqs. 9–10: `SCD_btij = mean_c |F_btic − F_btjc|` over node pairs `j > i`;
/// `L_SCD = mean_{b, t, j>i} ‖SCD^s − SCD^t‖`, averaged over the spatial layers. Student and
/// teacher layers must agree in `[B, T, N]`; channel counts may differ.
pub fn scd_loss<B: Backend, BT: Backend>(
    student: &[Tensor<B, 4>],
    teacher: &[Tensor<BT, 4>],
    norm: Norm,
) -> Result<Tensor<B, 1>, DistillError> {
    pairwise_loss(
        PairAxis::Node,
        student,
        TeacherLayers::Features(teacher),
        norm,
    )
}

/// `ORD + w_scd·L_SCD + w_tcd·L_TCD`; a feature term with weight 0 is not computed.
#[allow(clippy::too_many_arguments)]
fn ord_with_features<B: Backend, BT: Backend>(
    cfg: &LossConfig,
    student_y: Tensor<B, 4>,
    teacher_y: &Tensor<BT, 4>,
    target: Tensor<B, 4>,
    student_f: &Features<B>,
    teacher_f: &Features<BT>,
    teacher_tcd: Option<&[Vec<f32>]>,
    w_scd: f64,
    w_tcd: f64,
) -> Result<(Tensor<B, 1>, OrdStats), DistillError> {
    let (mut loss, stats) = ord_loss(
        student_y,
        teacher_y,
        target,
        cfg.alpha1,
        cfg.norm,
        cfg.ord_reduction,
    )?;
    if w_scd != 0.0 {
        loss = loss + scd_loss(&student_f.spatial, &teacher_f.spatial, cfg.norm)?.mul_scalar(w_scd);
    }
    if w_tcd != 0.0 {
        let teacher = match teacher_tcd {
            Some(d) => TeacherLayers::TcdDistances(d),
            None => TeacherLayers::Features(&teacher_f.temporal),
        };
        loss = loss
            + pairwise_loss(PairAxis::Time, &student_f.temporal, teacher, cfg.norm)?
                .mul_scalar(w_tcd);
    }
    Ok((loss, stats))
}

/// STCD, Eq. 11: `L_ORD + α3·(α2·L_SCD + (1 − α2)·L_TCD)` with ORD's `α1`, norm and reduction
/// from `cfg`. Returns the loss and ORD's pick counts.
pub fn stcd_loss<B: Backend, BT: Backend>(
    cfg: &LossConfig,
    student_y: Tensor<B, 4>,
    teacher_y: &Tensor<BT, 4>,
    target: Tensor<B, 4>,
    student_f: &Features<B>,
    teacher_f: &Features<BT>,
) -> Result<(Tensor<B, 1>, OrdStats), DistillError> {
    let (a2, a3) = (cfg.alpha2, cfg.alpha3);
    ord_with_features(
        cfg,
        student_y,
        teacher_y,
        target,
        student_f,
        teacher_f,
        None,
        a3 * a2,
        a3 * (1.0 - a2),
    )
}

// ---------------------------------------------------------------------------------------------
// SKD terms
// ---------------------------------------------------------------------------------------------

/// The three SKD terms (spec [I-8]), unweighted.
pub struct SkdTerms<B: Backend> {
    /// `mean (ys − T)²`.
    pub task: Tensor<B, 1>,
    /// `mean (ys − yt)²`.
    pub response: Tensor<B, 1>,
    /// Smooth-L1 between the normalised distance matrices of the last ST-Conv block's outputs.
    pub structural: Tensor<B, 1>,
}

/// SKD's structural term from the student's `[B, T, N, C_s]` last-block output and the
/// teacher's host copy `[B, T, N, C_t]` (see [`skd_structural`]).
pub(crate) fn structural_term<B: Backend>(
    student_last: &Tensor<B, 4>,
    teacher_last: &[f32],
    teacher_dims: [usize; 4],
) -> Result<Tensor<B, 1>, DistillError> {
    let [b, t, n, cs] = student_last.dims();
    let [bt, tt, nt, ct] = teacher_dims;
    same_dims("SKD last block [B, T, N]", &[b, t, n], &[bt, tt, nt])?;
    let s = host(student_last);
    let device = student_last.device();
    let dims = [b, t * n, cs];
    Ok(if B::ad_enabled(&device) {
        let mut g = vec![0f32; s.len()];
        let v = skd_structural(&s, teacher_last, dims, ct, Some((&mut g, 1.0)));
        surrogate(student_last, g).add_scalar(v)
    } else {
        scalar(skd_structural(&s, teacher_last, dims, ct, None), &device)
    })
}

/// SKD task, response and structural terms (spec [I-8]). The loss without gradient revision is
/// `(1 − α)·task + α·(response + structural)`.
pub fn skd_terms<B: Backend, BT: Backend>(
    student_y: Tensor<B, 4>,
    teacher_y: &Tensor<BT, 4>,
    target: Tensor<B, 4>,
    student_last: &Tensor<B, 4>,
    teacher_last: &Tensor<BT, 4>,
) -> Result<SkdTerms<B>, DistillError> {
    let dims = prediction_dims(&student_y, teacher_y, &target)?;
    let yt = constant::<B, 4>(host(teacher_y), dims, &student_y.device());
    Ok(SkdTerms {
        task: mse_loss(student_y.clone(), target),
        response: mse_loss(student_y, yt),
        structural: with_host(teacher_last, |tl| {
            structural_term(student_last, tl, teacher_last.dims())
        })?,
    })
}

// ---------------------------------------------------------------------------------------------
// The dispatcher
// ---------------------------------------------------------------------------------------------

/// The loss `cfg.kind` for one minibatch. For SKD this is the plain weighted sum
/// `(1 − α)·task + α·(response + structural)`; the gradient revision needs separate gradients
/// and is done by [`skd_grads`].
pub fn kd_loss<B: AutodiffBackend>(
    cfg: &LossConfig,
    inp: &KdInputs<B>,
) -> Result<KdLoss<B>, DistillError> {
    cfg.validate()?;
    let kind = cfg.kind;
    let (ys, target) = (inp.student_y.clone(), inp.target.clone());
    same_dims("student vs target prediction", &ys.dims(), &target.dims())?;
    let teacher_y = || {
        inp.teacher_y.as_ref().ok_or(DistillError::MissingTeacher {
            kind,
            what: "prediction",
        })
    };
    let teacher_f = || {
        inp.teacher_f.ok_or(DistillError::MissingTeacher {
            kind,
            what: "hidden features",
        })
    };
    let plain = |loss| KdLoss {
        loss,
        ord_picks: 0,
        ord_elements: 0,
    };
    let with_ord = |(loss, s): (Tensor<B, 1>, OrdStats)| KdLoss {
        loss,
        ord_picks: s.picks,
        ord_elements: s.elements,
    };
    let (a2, a3) = (cfg.alpha2, cfg.alpha3);
    Ok(match kind {
        LossKind::Mse => plain(mse_loss(ys, target)),
        LossKind::RdL2 => plain(rd_l2_loss(ys, teacher_y()?, target, cfg.beta, cfg.norm)?),
        LossKind::RdKl => plain(rd_kl_loss(
            ys,
            teacher_y()?,
            target,
            cfg.beta,
            cfg.tau,
            cfg.norm,
        )?),
        LossKind::Ord => with_ord(ord_loss(
            ys,
            teacher_y()?,
            target,
            cfg.alpha1,
            cfg.norm,
            cfg.ord_reduction,
        )?),
        LossKind::Stcd | LossKind::Tcd | LossKind::Scd => {
            let (w_scd, w_tcd) = match kind {
                LossKind::Stcd => (a3 * a2, a3 * (1.0 - a2)),
                LossKind::Scd => (a3, 0.0),
                _ => (0.0, a3),
            };
            with_ord(ord_with_features(
                cfg,
                ys,
                teacher_y()?,
                target,
                inp.student_f,
                teacher_f()?,
                inp.teacher_tcd,
                w_scd,
                w_tcd,
            )?)
        }
        LossKind::Skd => {
            let tf = teacher_f()?;
            let t = skd_terms(
                ys,
                teacher_y()?,
                target,
                &inp.student_f.last_block,
                &tf.last_block,
            )?;
            let a = cfg.alpha;
            plain(t.task.mul_scalar(1.0 - a) + (t.response + t.structural).mul_scalar(a))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------------

/// Median seconds of the TCD + SCD work of one STCD step, from [`bench_pairwise`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PairwiseBench {
    pub batch: usize,
    pub nodes: usize,
    /// Host kernels alone (loss and student gradient) over the 4 temporal + 2 spatial layers.
    pub kernels_s: f64,
    /// `tcd_loss + scd_loss` on autodiff tensors: host reads, kernels, surrogate graph.
    pub loss_s: f64,
    /// `backward()` of that loss (through the surrogates to the student features).
    pub backward_s: f64,
    /// `loss_s + backward_s`.
    pub total_s: f64,
}

/// Time the STCD feature terms at teacher channels `[[1,32,64],[64,32,128]]` and student
/// `[[1,2,4],[4,2,8]]`: random features of the shapes the models produce (`T' = 10, 8, 6, 4`
/// temporal, `10, 6` spatial), median of `reps` runs after one warm-up, on [`crate::backend::Cpu`].
pub fn bench_pairwise(batch: usize, nodes: usize, reps: usize) -> PairwiseBench {
    use crate::backend::{Cpu, CpuInner};
    use crate::rng::Rng;
    use std::time::Instant;

    let dev = Default::default();
    let mut rng = Rng::new(42, 42);
    let mut rand = |dims: [usize; 4]| -> Vec<f32> {
        (0..dims.iter().product::<usize>())
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect()
    };
    // (T', C_teacher, C_student) of each tap.
    let temporal = [(10, 32, 2), (8, 64, 4), (6, 32, 2), (4, 128, 8)];
    let spatial = [(10, 32, 2), (6, 32, 2)];
    let mk = |taps: &[(usize, usize, usize)], rand: &mut dyn FnMut([usize; 4]) -> Vec<f32>| {
        let mut s = Vec::new();
        let mut t = Vec::new();
        for &(tp, ct, cs) in taps {
            let (ds, dt) = ([batch, tp, nodes, cs], [batch, tp, nodes, ct]);
            s.push((rand(ds), ds));
            t.push((rand(dt), dt));
        }
        (s, t)
    };
    let (ts, tt) = mk(&temporal, &mut rand);
    let (ss, st) = mk(&spatial, &mut rand);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let reps = reps.max(1);

    // Kernels alone.
    let mut kt = Vec::new();
    for r in 0..=reps {
        let t0 = Instant::now();
        for ((s, ds), (t, dt)) in ts.iter().zip(&tt) {
            let mut g = vec![0f32; s.len()];
            tcd_layer(s, t, *ds, dt[3], Norm::Squared, Some((&mut g, 1.0)));
        }
        for ((s, ds), (t, dt)) in ss.iter().zip(&st) {
            let mut g = vec![0f32; s.len()];
            scd_layer(s, t, *ds, dt[3], Norm::Squared, Some((&mut g, 1.0)));
        }
        if r > 0 {
            kt.push(t0.elapsed().as_secs_f64());
        }
    }

    let student = |v: &[(Vec<f32>, [usize; 4])]| -> Vec<Tensor<Cpu, 4>> {
        v.iter()
            .map(|(x, d)| constant::<Cpu, 4>(x.clone(), *d, &dev).require_grad())
            .collect()
    };
    let teacher = |v: &[(Vec<f32>, [usize; 4])]| -> Vec<Tensor<CpuInner, 4>> {
        v.iter()
            .map(|(x, d)| constant::<CpuInner, 4>(x.clone(), *d, &dev))
            .collect()
    };
    let (tst, tte, sst, ste) = (student(&ts), teacher(&tt), student(&ss), teacher(&st));
    let (mut lt, mut bt) = (Vec::new(), Vec::new());
    for r in 0..=reps {
        let t0 = Instant::now();
        let loss = tcd_loss(&tst, &tte, Norm::Squared).unwrap().mul_scalar(0.5)
            + scd_loss(&sst, &ste, Norm::Squared).unwrap().mul_scalar(0.5);
        let t1 = Instant::now();
        let grads = loss.backward();
        let _ = tst[0].grad(&grads);
        let t2 = Instant::now();
        if r > 0 {
            lt.push((t1 - t0).as_secs_f64());
            bt.push((t2 - t1).as_secs_f64());
        }
    }
    let (loss_s, backward_s) = (median(lt), median(bt));
    PairwiseBench {
        batch,
        nodes,
        kernels_s: median(kt),
        loss_s,
        backward_s,
        total_s: loss_s + backward_s,
    }
}

#[cfg(test)]
pub(crate) mod tests;
