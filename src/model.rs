//! STGCN (Yu, Yin, Zhu 2018) exactly as the original TensorFlow code builds it, in burn.
//!
//! Activations use the TensorFlow layout `[batch, time, node, channel]` throughout, so the hidden
//! features the distillation losses read (spec §2, §4) come out as `[B, T', N, C]` with no copy.
//! Every convolution is written as one matrix product (im2col over the `Kt` time taps; all
//! Chebyshev terms stacked into one `[Ks·N, N]` kernel), which is both the cheapest formulation on
//! burn's CPU backend and easy to check against hand-computed cases.
//!
//! Parameter layout (same counts as the TensorFlow variables, paper Table 1):
//! - temporal conv `wt` `[Kt·c_in, c_conv]` (rows time-tap-major), `bt` `[c_conv]`,
//!   `wt_input` `[c_in, c_out]` only when `c_in > c_out` (bottleneck residual, no bias);
//! - Chebyshev graph conv `ws` `[Ks·c_in, c_out]` (rows order-major), `bs` `[c_out]`;
//! - LayerNorm `γ, β` `[N·C]` (jointly over nodes and channels);
//! - output: GLU conv with `Ko = T − 4(Kt − 1)`, LayerNorm, 1×1 sigmoid conv, then the fully
//!   connected 1×1 conv `[C, 1]` with a per-node bias `[N]`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use serde::{Deserialize, Serialize};

use crate::kernels;
pub use crate::kernels::{Act, LN_EPS};
use crate::rng::Rng;

/// Temporal kernel size `Kt` of the ST-Conv blocks.
pub const KT: usize = 3;
/// Chebyshev order `Ks` of the spatial graph convolution.
pub const KS: usize = 3;

/// The three networks of the paper's Table 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// `[1,32,64] [64,32,128]`: the STGCN of Yu et al.
    Teacher,
    /// `[1,8,16] [16,8,32]`: the pruning base model.
    Base,
    /// `[1,2,4] [4,2,8]`: the student.
    Student,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Teacher, Preset::Base, Preset::Student];

    /// Channels `[[c_in, c_t, c_out]; 2]` of the two ST-Conv blocks.
    pub fn channels(self) -> Channels {
        match self {
            Preset::Teacher => [[1, 32, 64], [64, 32, 128]],
            Preset::Base => [[1, 8, 16], [16, 8, 32]],
            Preset::Student => [[1, 2, 4], [4, 2, 8]],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Teacher => "teacher",
            Preset::Base => "base",
            Preset::Student => "student",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "teacher" => Ok(Preset::Teacher),
            "base" => Ok(Preset::Base),
            "student" => Ok(Preset::Student),
            _ => Err(format!(
                "unknown model `{s}`: expected one of teacher, base, student"
            )),
        }
    }
}

/// Channels `[[c_in, c_t, c_out]; 2]` of the two ST-Conv blocks.
pub type Channels = [[usize; 3]; 2];

/// Everything that fixes the shape of an STGCN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StgcnConfig {
    pub channels: Channels,
    pub nodes: usize,
    /// Input steps `M` (12).
    pub n_his: usize,
    /// Dropout probability after each ST-Conv block (the original runs with it off).
    #[serde(default)]
    pub dropout: f64,
}

/// Why a model configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model configuration: {0}")]
    Invalid(String),
}

impl StgcnConfig {
    pub fn new(channels: Channels, nodes: usize, n_his: usize) -> Self {
        StgcnConfig {
            channels,
            nodes,
            n_his,
            dropout: 0.0,
        }
    }

    /// Output-block temporal kernel `Ko = M − 4(Kt − 1)`.
    pub fn ko(&self) -> usize {
        self.n_his.saturating_sub(4 * (KT - 1))
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        if self.ko() == 0 {
            return Err(ModelError::Invalid(format!(
                "n_his = {} leaves no time steps for the output block (needs > {})",
                self.n_his,
                4 * (KT - 1)
            )));
        }
        if self.channels.iter().flatten().any(|&c| c == 0) {
            return Err(ModelError::Invalid(format!(
                "channels {:?} must all be positive",
                self.channels
            )));
        }
        if self.channels[0][0] != 1 {
            return Err(ModelError::Invalid(format!(
                "the first block's input channels must be 1 (speed), got {}",
                self.channels[0][0]
            )));
        }
        if self.channels[1][0] != self.channels[0][2] {
            return Err(ModelError::Invalid(format!(
                "block 2 input channels ({}) must equal block 1 output channels ({})",
                self.channels[1][0], self.channels[0][2]
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::Invalid(format!(
                "dropout {} must be in [0, 1)",
                self.dropout
            )));
        }
        if self.nodes == 0 {
            return Err(ModelError::Invalid("nodes must be positive".into()));
        }
        Ok(())
    }

    /// Exact parameter count, from the architecture alone (paper Table 1).
    pub fn param_count(&self) -> usize {
        let n = self.nodes;
        let temporal = |kt: usize, ci: usize, co: usize, glu: bool| {
            let conv = if glu { 2 * co } else { co };
            kt * ci * conv + conv + if ci > co { ci * co } else { 0 }
        };
        let mut total = 0;
        for [ci, ct, co] in self.channels {
            total += temporal(KT, ci, ct, true);
            total += KS * ct * ct + ct;
            total += temporal(KT, ct, co, false);
            total += 2 * n * co;
        }
        let c = self.channels[1][2];
        total += temporal(self.ko(), c, c, true) + 2 * n * c + c * c + c + c + n;
        total
    }

    /// Floating-point operations of one forward step (12 steps in → 1 step out) for one sample:
    /// 2 × multiply–accumulates of every convolution, of the Chebyshev graph convolution (node
    /// mixing with the dense `N × N` polynomials and channel mixing with θ), of the bottleneck
    /// 1×1 residual convolutions and of the fully connected output. Elementwise work (biases,
    /// gates, ReLU, sigmoid, LayerNorm, residual adds) is not counted.
    pub fn flops_per_sample(&self) -> u64 {
        let n = self.nodes as u64;
        let mut t = self.n_his as u64;
        let kt = KT as u64;
        let ks = KS as u64;
        // Multiply–accumulates of a temporal conv, and its output length.
        let temporal = |t_in: u64, k: u64, ci: u64, co: u64, glu: bool| -> (u64, u64) {
            let t_out = t_in - k + 1;
            let conv = if glu { 2 * co } else { co };
            let proj = if ci > co { t_out * n * ci * co } else { 0 };
            (t_out, t_out * n * k * ci * conv + proj)
        };
        let mut macs: u64 = 0;
        let mut add = |(t_out, m): (u64, u64)| {
            macs += m;
            t_out
        };
        for [ci, ct, co] in self.channels {
            let (ci, ct, co) = (ci as u64, ct as u64, co as u64);
            t = add(temporal(t, kt, ci, ct, true));
            // Node mixing with Ks dense N×N matrices, then θ over Ks·c_t inputs.
            add((t, t * ks * n * n * ct + t * n * ks * ct * ct));
            t = add(temporal(t, kt, ct, co, false));
        }
        let c = self.channels[1][2] as u64;
        t = add(temporal(t, self.ko() as u64, c, c, true));
        t = add(temporal(t, 1, c, c, false));
        add((t, t * n * c));
        2 * macs
    }
}

/// The Chebyshev graph kernel for `k ≥ 1`, `[T_1ᵀ; T_2ᵀ; …]` stacked as one `[(Ks−1)·N, N]`
/// matrix, so that a single product computes every `x_k = T_kᵀ x` for the whole batch
/// (spec §1, §2). `T_0 = I` needs no product: `x_0 = x`.
#[derive(Debug, Clone)]
pub struct GraphKernel<B: Backend> {
    stacked: Tensor<B, 2>,
    nodes: usize,
    /// The same terms on the host for the CPU kernels, prepared once.
    host: Arc<kernels::HostGraph>,
}

impl<B: Backend> GraphKernel<B> {
    /// `cheb` is `[Ks, N, N]` row-major, `cheb[k][i][j] = T_k[i, j]`, with `T_0 = I`.
    pub fn new(cheb: &[f32], nodes: usize, device: &B::Device) -> Self {
        assert_eq!(
            cheb.len(),
            KS * nodes * nodes,
            "Chebyshev stack must be [Ks, N, N]"
        );
        debug_assert!(
            (0..nodes * nodes).all(|e| cheb[e] == f32::from(u8::from(e % (nodes + 1) == 0))),
            "T_0 must be the identity"
        );
        let mut t = vec![0f32; (KS - 1) * nodes * nodes];
        for k in 1..KS {
            let src = k * nodes * nodes;
            let dst = (k - 1) * nodes * nodes;
            for i in 0..nodes {
                for j in 0..nodes {
                    t[dst + j * nodes + i] = cheb[src + i * nodes + j];
                }
            }
        }
        let host = Arc::new(kernels::HostGraph::new(t.clone(), nodes));
        let stacked = Tensor::from_data(TensorData::new(t, [(KS - 1) * nodes, nodes]), device);
        GraphKernel {
            stacked,
            nodes,
            host,
        }
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    pub(crate) fn host(&self) -> &Arc<kernels::HostGraph> {
        &self.host
    }
}

fn xavier<B: Backend>(
    rng: &mut Rng,
    shape: [usize; 2],
    fan_in: usize,
    fan_out: usize,
    device: &B::Device,
) -> Param<Tensor<B, 2>> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    let v: Vec<f32> = (0..shape[0] * shape[1])
        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * limit) as f32)
        .collect();
    Param::from_data(TensorData::new(v, shape), device)
}

fn filled<B: Backend>(len: usize, value: f32, device: &B::Device) -> Param<Tensor<B, 1>> {
    Param::from_data(TensorData::new(vec![value; len], [len]), device)
}

/// Temporal convolution over `Kt` steps with STGCN's residual input (1×1 bottleneck when
/// `c_in > c_out`, zero channel padding when `c_in < c_out`), cropped to the last `T − Kt + 1`
/// steps.
#[derive(Module, Debug)]
pub struct TemporalConv<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Param<Tensor<B, 1>>,
    pub input_proj: Option<Param<Tensor<B, 2>>>,
    #[module(skip)]
    pub act: Act,
    pub kt: usize,
    pub c_in: usize,
    pub c_out: usize,
}

impl<B: Backend> TemporalConv<B> {
    pub fn new(
        kt: usize,
        c_in: usize,
        c_out: usize,
        act: Act,
        rng: &mut Rng,
        d: &B::Device,
    ) -> Self {
        let c_conv = if act == Act::Glu { 2 * c_out } else { c_out };
        let weight = xavier(rng, [kt * c_in, c_conv], kt * c_in, kt * c_conv, d);
        let input_proj = (act != Act::Sigmoid && c_in > c_out)
            .then(|| xavier(rng, [c_in, c_out], c_in, c_out, d));
        TemporalConv {
            weight,
            bias: filled(c_conv, 0.0, d),
            input_proj,
            act,
            kt,
            c_in,
            c_out,
        }
    }

    /// `[B, T, N, c_in]` → `[B, T − Kt + 1, N, c_out]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, t, n, c] = x.dims();
        // On the CPU backends: one fused kernel (same arithmetic, see `kernels`).
        let fused = kernels::temporal_forward(
            self.kt,
            self.c_out,
            self.act,
            &self.weight,
            &self.bias,
            self.input_proj.as_ref(),
            x,
        );
        let x = match fused {
            Ok(y) => return y,
            Err(x) => x,
        };
        let tp = t + 1 - self.kt;
        let cols = if self.kt == 1 {
            x.clone()
        } else {
            Tensor::cat(
                (0..self.kt).map(|k| x.clone().narrow(1, k, tp)).collect(),
                3,
            )
        };
        let cols = cols.reshape([b * tp * n, self.kt * c]);
        // One product per output half, so that P and Q come out contiguous (the GLU's
        // elementwise work is then on dense tensors, not strided views).
        let conv = |from: usize, len: usize| {
            (cols.clone().matmul(self.weight.val().narrow(1, from, len))
                + self.bias.val().narrow(0, from, len).unsqueeze::<2>())
            .reshape([b, tp, n, len])
        };
        match self.act {
            Act::Sigmoid => sigmoid(conv(0, self.c_out)),
            Act::Relu => relu(conv(0, self.c_out) + self.residual(x, tp)),
            Act::Glu => {
                (conv(0, self.c_out) + self.residual(x, tp)) * sigmoid(conv(self.c_out, self.c_out))
            }
        }
    }

    fn residual(&self, x: Tensor<B, 4>, tp: usize) -> Tensor<B, 4> {
        let [b, t, n, c] = x.dims();
        let x = x.narrow(1, t - tp, tp);
        input_residual(x, self.input_proj.as_ref(), c, self.c_out, [b, tp, n])
    }
}

/// STGCN's residual input: 1×1 conv without bias when shrinking, zero padding when growing.
fn input_residual<B: Backend>(
    x: Tensor<B, 4>,
    proj: Option<&Param<Tensor<B, 2>>>,
    c_in: usize,
    c_out: usize,
    [b, t, n]: [usize; 3],
) -> Tensor<B, 4> {
    match (c_in.cmp(&c_out), proj) {
        (std::cmp::Ordering::Greater, Some(w)) => x
            .reshape([b * t * n, c_in])
            .matmul(w.val())
            .reshape([b, t, n, c_out]),
        (std::cmp::Ordering::Less, _) => {
            let zeros = Tensor::zeros([b, t, n, c_out - c_in], &x.device());
            Tensor::cat(vec![x, zeros], 3)
        }
        _ => x,
    }
}

/// Chebyshev spectral graph convolution `Σ_k θ_k T_k(L̃) x` with residual and ReLU
/// (STGCN `spatio_conv_layer`).
#[derive(Module, Debug)]
pub struct SpatialConv<B: Backend> {
    pub theta: Param<Tensor<B, 2>>,
    pub bias: Param<Tensor<B, 1>>,
    pub input_proj: Option<Param<Tensor<B, 2>>>,
    pub c_in: usize,
    pub c_out: usize,
}

impl<B: Backend> SpatialConv<B> {
    pub fn new(c_in: usize, c_out: usize, rng: &mut Rng, d: &B::Device) -> Self {
        let theta = xavier(rng, [KS * c_in, c_out], KS * c_in, c_out, d);
        let input_proj = (c_in > c_out).then(|| xavier(rng, [c_in, c_out], c_in, c_out, d));
        SpatialConv {
            theta,
            bias: filled(c_out, 0.0, d),
            input_proj,
            c_in,
            c_out,
        }
    }

    /// `[B, T, N, c_in]` → `[B, T, N, c_out]`.
    pub fn forward(&self, x: Tensor<B, 4>, g: &GraphKernel<B>) -> Tensor<B, 4> {
        let [b, t, n, c] = x.dims();
        // On the CPU backends: one fused kernel (same arithmetic, see `kernels`).
        let fused = kernels::spatial_forward(
            self.c_out,
            g.host(),
            &self.theta,
            &self.bias,
            self.input_proj.as_ref(),
            x,
        );
        let x = match fused {
            Ok(y) => return y,
            Err(x) => x,
        };
        // z = [T_1ᵀ; T_2ᵀ] x for every (sample, step): [1, (Ks−1)·N, N] × [B·T, N, C]. Then
        // Σ_k x_k θ_k reads each x_k as a strided view, so nothing is permuted or copied.
        let xs = x.clone().reshape([b * t, n, c]);
        let z = g.stacked.clone().unsqueeze::<3>().matmul(xs.clone());
        let theta = self.theta.val();
        let theta_k = |k: usize| theta.clone().narrow(0, k * c, c).unsqueeze::<3>();
        let gc = (1..KS)
            .map(|k| z.clone().narrow(1, (k - 1) * n, n).matmul(theta_k(k)))
            .fold(xs.matmul(theta_k(0)), |a, b| a + b);
        let gc = (gc + self.bias.val().unsqueeze::<3>()).reshape([b, t, n, self.c_out]);
        relu(gc + input_residual(x, self.input_proj.as_ref(), c, self.c_out, [b, t, n]))
    }
}

/// LayerNorm jointly over `[N, C]` for each (sample, time step), biased variance, `ε = 1e-6`
/// inside the square root, learnable `γ, β` of shape `[N, C]`.
#[derive(Module, Debug)]
pub struct NodeLayerNorm<B: Backend> {
    pub gamma: Param<Tensor<B, 1>>,
    pub beta: Param<Tensor<B, 1>>,
}

impl<B: Backend> NodeLayerNorm<B> {
    pub fn new(nodes: usize, c: usize, d: &B::Device) -> Self {
        NodeLayerNorm {
            gamma: filled(nodes * c, 1.0, d),
            beta: filled(nodes * c, 0.0, d),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, t, n, c] = x.dims();
        // On the CPU backends: one fused kernel (same arithmetic, see `kernels`).
        let x = match kernels::norm_forward(&self.gamma, &self.beta, x) {
            Ok(y) => return y,
            Err(x) => x,
        };
        let flat = x.reshape([b, t, n * c]);
        let out = B::layer_norm(
            flat.into_primitive().tensor(),
            self.gamma.val().into_primitive().tensor(),
            Some(self.beta.val().into_primitive().tensor()),
            LN_EPS,
        );
        Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(out)).reshape([b, t, n, c])
    }
}

/// ST-Conv block: temporal GLU conv → Chebyshev graph conv → temporal ReLU conv → LayerNorm
/// (→ dropout, off by default).
#[derive(Module, Debug)]
pub struct StConvBlock<B: Backend> {
    pub temporal1: TemporalConv<B>,
    pub spatial: SpatialConv<B>,
    pub temporal2: TemporalConv<B>,
    pub norm: NodeLayerNorm<B>,
    pub dropout: Dropout,
}

/// Output block: temporal GLU conv over the remaining `Ko` steps, LayerNorm, 1×1 sigmoid conv,
/// fully connected 1×1 conv to one channel with a per-node bias.
#[derive(Module, Debug)]
pub struct OutputBlock<B: Backend> {
    pub temporal: TemporalConv<B>,
    pub norm: NodeLayerNorm<B>,
    pub sigmoid: TemporalConv<B>,
    pub fc_weight: Param<Tensor<B, 2>>,
    pub fc_bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> OutputBlock<B> {
    /// The output block's last layer: `[B, T, N, C]` → `[B, T, N, 1]`, one linear map of the
    /// channels per node and step.
    pub fn fully_connected(&self, h: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, t, n, c] = h.dims();
        let y = h
            .reshape([b * t * n, c])
            .matmul(self.fc_weight.val())
            .reshape([b, t, n, 1]);
        y + self.fc_bias.val().reshape([1, t, n, 1])
    }
}

/// Hidden features tapped during a forward step, for distillation and plots.
#[derive(Debug, Clone)]
pub struct Features<B: Backend> {
    /// Output of every temporal conv of the ST-Conv blocks, in order: `[B, 10|8|6|4, N, C]`.
    pub temporal: Vec<Tensor<B, 4>>,
    /// Output of every spatial conv of the ST-Conv blocks: `[B, 10|6, N, C]`.
    pub spatial: Vec<Tensor<B, 4>>,
    /// The output block's input (the last ST-Conv block's output): `[B, Ko, N, C]`.
    pub last_block: Tensor<B, 4>,
}

/// STGCN: two ST-Conv blocks and an output block.
#[derive(Module, Debug)]
pub struct Stgcn<B: Backend> {
    pub blocks: Vec<StConvBlock<B>>,
    pub output: OutputBlock<B>,
}

impl<B: Backend> Stgcn<B> {
    /// A freshly initialised network (Xavier-uniform weights as TensorFlow's default initialiser,
    /// zero biases, LayerNorm γ = 1, β = 0), deterministic for a given `seed`.
    pub fn new(cfg: &StgcnConfig, seed: u64, d: &B::Device) -> Result<Self, ModelError> {
        cfg.validate()?;
        let mut rng = Rng::new(seed, 0x5747_434E);
        let n = cfg.nodes;
        let blocks = cfg
            .channels
            .iter()
            .map(|&[ci, ct, co]| StConvBlock {
                temporal1: TemporalConv::new(KT, ci, ct, Act::Glu, &mut rng, d),
                spatial: SpatialConv::new(ct, ct, &mut rng, d),
                temporal2: TemporalConv::new(KT, ct, co, Act::Relu, &mut rng, d),
                norm: NodeLayerNorm::new(n, co, d),
                dropout: DropoutConfig::new(cfg.dropout).init(),
            })
            .collect();
        let c = cfg.channels[1][2];
        let output = OutputBlock {
            temporal: TemporalConv::new(cfg.ko(), c, c, Act::Glu, &mut rng, d),
            norm: NodeLayerNorm::new(n, c, d),
            sigmoid: TemporalConv::new(1, c, c, Act::Sigmoid, &mut rng, d),
            fc_weight: xavier(&mut rng, [c, 1], c, 1, d),
            fc_bias: filled(n, 0.0, d),
        };
        Ok(Stgcn { blocks, output })
    }

    /// One forward step: `[B, M, N, 1]` (z-scored speeds) → `[B, 1, N, 1]`.
    pub fn forward(&self, x: Tensor<B, 4>, g: &GraphKernel<B>) -> Tensor<B, 4> {
        let b = x.dims()[0];
        match kernels::inference_slice::<B>() {
            Some(slice) if b > slice => {
                let parts = (0..b).step_by(slice).map(|from| {
                    let part = x.clone().narrow(0, from, slice.min(b - from));
                    self.forward_inner(part, g, None)
                });
                Tensor::cat(parts.collect(), 0)
            }
            _ => self.forward_inner(x, g, None),
        }
    }

    /// One forward step that also returns the hidden features (TCD/SCD taps).
    pub fn forward_features(
        &self,
        x: Tensor<B, 4>,
        g: &GraphKernel<B>,
    ) -> (Tensor<B, 4>, Features<B>) {
        let mut f = Features {
            temporal: Vec::with_capacity(4),
            spatial: Vec::with_capacity(2),
            last_block: x.clone(),
        };
        let y = self.forward_inner(x, g, Some(&mut f));
        (y, f)
    }

    fn forward_inner(
        &self,
        mut x: Tensor<B, 4>,
        g: &GraphKernel<B>,
        mut taps: Option<&mut Features<B>>,
    ) -> Tensor<B, 4> {
        for block in &self.blocks {
            let t1 = block.temporal1.forward(x);
            let s = block.spatial.forward(t1.clone(), g);
            let t2 = block.temporal2.forward(s.clone());
            if let Some(f) = taps.as_deref_mut() {
                f.temporal.push(t1);
                f.temporal.push(t2.clone());
                f.spatial.push(s);
            }
            x = block.dropout.forward(block.norm.forward(t2));
        }
        if let Some(f) = taps {
            f.last_block = x.clone();
        }
        self.output_forward(x)
    }

    /// The output block on the last ST-Conv block's output `[B, Ko, N, C]` → `[B, 1, N, 1]`.
    fn output_forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let out = &self.output;
        out.fully_connected(
            out.sigmoid
                .forward(out.norm.forward(out.temporal.forward(x))),
        )
    }

    /// The same prediction as [`Stgcn::predict`], computing each hidden step once.
    ///
    /// Every layer of STGCN is local in time: a temporal convolution sees `Kt` consecutive steps,
    /// a graph convolution and a LayerNorm one. When the input window moves on by one step, every
    /// hidden sequence moves on by one and only its newest step is new. So this keeps the input
    /// sequence of each temporal convolution and pushes one new step through the layers per
    /// predicted step (the output block still sees its whole `Ko`-step input). Same arithmetic
    /// as `predict`; used for the metrics, while the test time measures `predict` (the paper's
    /// algorithm).
    pub fn predict_cached(
        &self,
        x: Tensor<B, 3>,
        g: &GraphKernel<B>,
        horizon: usize,
    ) -> Tensor<B, 3> {
        let [b, m, n] = x.dims();
        // Per block: the inputs of its first and of its second temporal convolution; last, the
        // output block's input.
        let mut seqs: Vec<Tensor<B, 4>> = Vec::with_capacity(2 * self.blocks.len() + 1);
        let mut h = x.reshape([b, m, n, 1]);
        for block in &self.blocks {
            seqs.push(h.clone());
            let s = block.spatial.forward(block.temporal1.forward(h), g);
            seqs.push(s.clone());
            h = block
                .dropout
                .forward(block.norm.forward(block.temporal2.forward(s)));
        }
        seqs.push(h.clone());
        let mut y = self.output_forward(h);
        let mut steps = vec![y.clone()];
        // The last `kt` steps of `seq` after appending `new` (and dropping the oldest step).
        fn advance<B: Backend>(
            seq: &mut Tensor<B, 4>,
            new: Tensor<B, 4>,
            kt: usize,
        ) -> Tensor<B, 4> {
            let t = seq.dims()[1];
            *seq = Tensor::cat(vec![seq.clone().narrow(1, 1, t - 1), new], 1);
            seq.clone().narrow(1, t - kt, kt)
        }
        for _ in 1..horizon {
            let mut new = y;
            for (i, block) in self.blocks.iter().enumerate() {
                let window = advance(&mut seqs[2 * i], new, block.temporal1.kt);
                let s = block.spatial.forward(block.temporal1.forward(window), g);
                let window = advance(&mut seqs[2 * i + 1], s, block.temporal2.kt);
                new = block
                    .dropout
                    .forward(block.norm.forward(block.temporal2.forward(window)));
            }
            let last = seqs.len() - 1;
            let ko = seqs[last].dims()[1];
            y = self.output_forward(advance(&mut seqs[last], new, ko));
            steps.push(y.clone());
        }
        Tensor::cat(steps, 1).reshape([b, horizon, n])
    }

    /// Autoregressive `horizon`-step prediction (paper Figure 2): `[B, M, N]` → `[B, H, N]`.
    /// Each predicted step becomes the newest input step and the oldest is dropped.
    pub fn predict(&self, x: Tensor<B, 3>, g: &GraphKernel<B>, horizon: usize) -> Tensor<B, 3> {
        let [b, m, n] = x.dims();
        let mut window = x;
        let mut steps = Vec::with_capacity(horizon);
        for _ in 0..horizon {
            let y = self
                .forward(window.clone().reshape([b, m, n, 1]), g)
                .reshape([b, 1, n]);
            window = Tensor::cat(vec![window.narrow(1, 1, m - 1), y.clone()], 1);
            steps.push(y);
        }
        Tensor::cat(steps, 1)
    }
}

#[cfg(test)]
mod fused_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuInner as TB;

    fn dev() -> burn::tensor::Device<TB> {
        Default::default()
    }

    #[test]
    fn parameter_counts_equal_table1_for_all_six_cases() {
        // Paper Table 1 (and ../paper/table1_networks.csv).
        let cases = [
            (Preset::Teacher, 228, 333_604),
            (Preset::Teacher, 170, 296_426),
            (Preset::Base, 228, 48_628),
            (Preset::Base, 170, 39_290),
            (Preset::Student, 228, 10_144),
            (Preset::Student, 170, 7_766),
        ];
        for (p, n, want) in cases {
            let cfg = StgcnConfig::new(p.channels(), n, 12);
            assert_eq!(cfg.param_count(), want, "analytic count {p} N={n}");
            let m = Stgcn::<TB>::new(&cfg, 1, &dev()).unwrap();
            assert_eq!(m.num_params(), want, "burn module count {p} N={n}");
        }
    }

    #[test]
    fn shapes_and_feature_taps() {
        let n = 5;
        let cfg = StgcnConfig::new(Preset::Student.channels(), n, 12);
        let m = Stgcn::<TB>::new(&cfg, 3, &dev()).unwrap();
        let cheb = identity_cheb(n);
        let g = GraphKernel::<TB>::new(&cheb, n, &dev());
        let x = Tensor::<TB, 4>::ones([2, 12, n, 1], &dev());
        let (y, f) = m.forward_features(x, &g);
        assert_eq!(y.dims(), [2, 1, n, 1]);
        let t: Vec<_> = f.temporal.iter().map(|t| t.dims()).collect();
        assert_eq!(
            t,
            vec![[2, 10, n, 2], [2, 8, n, 4], [2, 6, n, 2], [2, 4, n, 8]]
        );
        let s: Vec<_> = f.spatial.iter().map(|t| t.dims()).collect();
        assert_eq!(s, vec![[2, 10, n, 2], [2, 6, n, 2]]);
        assert_eq!(f.last_block.dims(), [2, 4, n, 8]);
        let p = m.predict(Tensor::<TB, 3>::zeros([2, 12, n], &dev()), &g, 9);
        assert_eq!(p.dims(), [2, 9, n]);
    }

    /// Caching the hidden sequences changes nothing: the cached prediction equals the paper's
    /// recomputing one, for the teacher and the student, over 1, 2 and 9 steps.
    /// A batch larger than the inference slice gives what one pass over the whole batch gives
    /// (here the whole batch in one pass is `forward_features`, which never slices).
    #[test]
    fn sliced_inference_equals_one_pass() {
        let n = 6;
        let cfg = StgcnConfig::new(Preset::Student.channels(), n, 12);
        let model = Stgcn::<TB>::new(&cfg, 3, &dev()).unwrap();
        let g = GraphKernel::<TB>::new(&identity_cheb(n), n, &dev());
        let b = 2 * crate::kernels::inference_slice::<TB>().expect("flex slices") + 5;
        let v: Vec<f32> = (0..b * 12 * n)
            .map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0)
            .collect();
        let x = Tensor::<TB, 4>::from_data(TensorData::new(v, [b, 12, n, 1]), &dev());
        let sliced = to_vec(model.forward(x.clone(), &g));
        let whole = to_vec(model.forward_features(x, &g).0);
        assert_eq!(sliced.len(), b * n);
        // Equal up to rounding: a different batch size groups the graph products differently.
        let worst = sliced
            .iter()
            .zip(&whole)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-5, "sliced and whole differ by {worst}");
    }

    #[test]
    fn cached_prediction_equals_recomputed_prediction() {
        let n = 11;
        let mut rng = Rng::new(5, 5);
        let cheb: Vec<f32> = (0..KS * n * n)
            .map(|_| (rng.next_f64() as f32 - 0.5) / n as f32)
            .collect();
        let g = GraphKernel::<TB>::new(&cheb, n, &dev());
        let x: Vec<f32> = (0..3 * 12 * n)
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect();
        let x = Tensor::<TB, 3>::from_data(TensorData::new(x, [3, 12, n]), &dev());
        for preset in [Preset::Teacher, Preset::Student] {
            let m =
                Stgcn::<TB>::new(&StgcnConfig::new(preset.channels(), n, 12), 3, &dev()).unwrap();
            for horizon in [1, 2, 9] {
                let a = to_vec(m.predict(x.clone(), &g, horizon));
                let b = to_vec(m.predict_cached(x.clone(), &g, horizon));
                assert_eq!(a.len(), 3 * horizon * n);
                let scale = a.iter().fold(0f32, |s, v| s.max(v.abs()));
                let diff = a
                    .iter()
                    .zip(&b)
                    .fold(0f32, |s, (p, q)| s.max((p - q).abs()));
                assert!(
                    diff <= 1e-5 * scale.max(1.0),
                    "{preset} horizon {horizon}: {diff}"
                );
            }
        }
    }

    fn identity_cheb(n: usize) -> Vec<f32> {
        let mut c = vec![0f32; KS * n * n];
        for k in 0..KS {
            for i in 0..n {
                c[k * n * n + i * n + i] = 1.0;
            }
        }
        c
    }

    fn to_vec<const D: usize>(t: Tensor<TB, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn temporal_conv_matches_direct_sum() {
        // GLU conv with c_in = 3 > c_out = 2 (bottleneck residual), checked against the
        // definition computed element by element.
        let mut rng = Rng::new(9, 9);
        let conv = TemporalConv::<TB>::new(3, 3, 2, Act::Glu, &mut rng, &dev());
        let (b, t, n, c) = (2, 5, 4, 3);
        let xs: Vec<f32> = (0..b * t * n * c)
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect();
        let x = Tensor::<TB, 4>::from_data(TensorData::new(xs.clone(), [b, t, n, c]), &dev());
        let got = to_vec(conv.forward(x));
        let w = to_vec(conv.weight.val());
        let bias = to_vec(conv.bias.val());
        let proj = to_vec(conv.input_proj.as_ref().unwrap().val());
        let xi = |bb: usize, tt: usize, nn: usize, cc: usize| xs[((bb * t + tt) * n + nn) * c + cc];
        let tp = t - 2;
        for bb in 0..b {
            for tt in 0..tp {
                for nn in 0..n {
                    for o in 0..2 {
                        let conv_at = |oc: usize| {
                            let mut s = bias[oc];
                            for k in 0..3 {
                                for ci in 0..c {
                                    s += w[(k * c + ci) * 4 + oc] * xi(bb, tt + k, nn, ci);
                                }
                            }
                            s
                        };
                        let res: f32 = (0..c)
                            .map(|ci| proj[ci * 2 + o] * xi(bb, tt + 2, nn, ci))
                            .sum();
                        let want = (conv_at(o) + res) / (1.0 + (-conv_at(o + 2)).exp());
                        let g = got[((bb * tp + tt) * n + nn) * 2 + o];
                        assert!((g - want).abs() < 1e-5, "{g} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn spatial_conv_matches_chebyshev_definition() {
        // Non-symmetric T_k to check the orientation x_k = T_kᵀ x.
        let (b, t, n, c) = (1, 2, 3, 2);
        let mut rng = Rng::new(4, 4);
        let mut cheb: Vec<f32> = (0..KS * n * n).map(|_| rng.next_f64() as f32).collect();
        for (e, v) in cheb.iter_mut().enumerate().take(n * n) {
            *v = if e % (n + 1) == 0 { 1.0 } else { 0.0 }; // T_0 = I
        }
        let g = GraphKernel::<TB>::new(&cheb, n, &dev());
        let sc = SpatialConv::<TB>::new(c, c, &mut rng, &dev());
        let xs: Vec<f32> = (0..b * t * n * c)
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect();
        let x = Tensor::<TB, 4>::from_data(TensorData::new(xs.clone(), [b, t, n, c]), &dev());
        let got = to_vec(sc.forward(x, &g));
        let theta = to_vec(sc.theta.val());
        let bias = to_vec(sc.bias.val());
        for tt in 0..t {
            for j in 0..n {
                for o in 0..c {
                    let mut s = bias[o];
                    for k in 0..KS {
                        for ci in 0..c {
                            let xk: f32 = (0..n)
                                .map(|i| cheb[k * n * n + i * n + j] * xs[(tt * n + i) * c + ci])
                                .sum();
                            s += theta[(k * c + ci) * c + o] * xk;
                        }
                    }
                    let want = (s + xs[(tt * n + j) * c + o]).max(0.0);
                    let g = got[(tt * n + j) * c + o];
                    assert!((g - want).abs() < 1e-5, "{g} vs {want}");
                }
            }
        }
    }

    #[test]
    fn layer_norm_is_joint_over_nodes_and_channels() {
        let ln = NodeLayerNorm::<TB>::new(2, 2, &dev());
        let x = Tensor::<TB, 4>::from_data(
            TensorData::new(vec![1f32, 2., 3., 6.], [1, 1, 2, 2]),
            &dev(),
        );
        let got = to_vec(ln.forward(x));
        let (m, v) = (3.0f32, (4.0f32 + 1.0 + 0.0 + 9.0) / 4.0);
        for (g, x) in got.iter().zip([1f32, 2., 3., 6.]) {
            assert!((g - (x - m) / (v + 1e-6).sqrt()).abs() < 1e-5);
        }
    }

    #[test]
    fn flops_are_positive_and_ordered() {
        let f: Vec<u64> = Preset::ALL
            .iter()
            .map(|p| StgcnConfig::new(p.channels(), 228, 12).flops_per_sample())
            .collect();
        assert!(f[0] > f[1] && f[1] > f[2] && f[2] > 0, "{f:?}");
    }

    #[test]
    fn invalid_configs_are_rejected() {
        assert!(StgcnConfig::new(Preset::Student.channels(), 10, 8)
            .validate()
            .is_err());
        assert!(StgcnConfig::new([[1, 2, 4], [5, 2, 8]], 10, 12)
            .validate()
            .is_err());
        assert!(StgcnConfig::new([[2, 2, 4], [4, 2, 8]], 10, 12)
            .validate()
            .is_err());
        assert!("teach".parse::<Preset>().is_err());
        assert_eq!("Student".parse::<Preset>().unwrap(), Preset::Student);
    }
}
