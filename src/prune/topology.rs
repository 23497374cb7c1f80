//! Where every parameter of an [`Stgcn`] lives and which channels its entries belong to.
//!
//! Channel *variables* of the architecture: the input (1 channel, never pruned), `c_t` and
//! `c_out` of each ST-Conv block, and the output channels of the output block's sigmoid conv.
//! (The output block's GLU conv and LayerNorm live on block 2's `c_out`: its residual is the
//! identity.) Variables joined by an identity residual (`c_in = c_out`) are merged into one
//! *space*; every space keeps one set of channels. Each space has at most one residual parent:
//! the space its producing layer's residual reads, by zero padding or by a 1×1 projection.

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::model::{Channels, Stgcn, StgcnConfig, KS, KT};

/// One parameter tensor of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Key {
    /// Block `l`'s first temporal (GLU) conv: weight, bias, residual projection.
    T1Weight(usize),
    T1Bias(usize),
    T1Proj(usize),
    /// Block `l`'s Chebyshev graph conv.
    SpTheta(usize),
    SpBias(usize),
    SpProj(usize),
    /// Block `l`'s second temporal (ReLU) conv.
    T2Weight(usize),
    T2Bias(usize),
    T2Proj(usize),
    /// Block `l`'s LayerNorm.
    LnGamma(usize),
    LnBeta(usize),
    /// Output block: GLU conv, LayerNorm, sigmoid 1×1 conv, fully connected layer.
    OutWeight,
    OutBias,
    OutLnGamma,
    OutLnBeta,
    SigWeight,
    SigBias,
    FcWeight,
    FcBias,
}

impl Key {
    /// Name as in reports, e.g. `block1.temporal1.weight`.
    pub fn name(self) -> String {
        match self {
            Key::T1Weight(l) => format!("block{}.temporal1.weight", l + 1),
            Key::T1Bias(l) => format!("block{}.temporal1.bias", l + 1),
            Key::T1Proj(l) => format!("block{}.temporal1.input_proj", l + 1),
            Key::SpTheta(l) => format!("block{}.spatial.theta", l + 1),
            Key::SpBias(l) => format!("block{}.spatial.bias", l + 1),
            Key::SpProj(l) => format!("block{}.spatial.input_proj", l + 1),
            Key::T2Weight(l) => format!("block{}.temporal2.weight", l + 1),
            Key::T2Bias(l) => format!("block{}.temporal2.bias", l + 1),
            Key::T2Proj(l) => format!("block{}.temporal2.input_proj", l + 1),
            Key::LnGamma(l) => format!("block{}.norm.gamma", l + 1),
            Key::LnBeta(l) => format!("block{}.norm.beta", l + 1),
            Key::OutWeight => "output.temporal.weight".into(),
            Key::OutBias => "output.temporal.bias".into(),
            Key::OutLnGamma => "output.norm.gamma".into(),
            Key::OutLnBeta => "output.norm.beta".into(),
            Key::SigWeight => "output.sigmoid.weight".into(),
            Key::SigBias => "output.sigmoid.bias".into(),
            Key::FcWeight => "output.fc.weight".into(),
            Key::FcBias => "output.fc.bias".into(),
        }
    }

    /// Whether element-granularity pruning may mask it (everything but the final fully
    /// connected layer).
    pub fn prunable(self) -> bool {
        !matches!(self, Key::FcWeight | Key::FcBias)
    }
}

/// Channel variables of the architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Input,
    /// `c_t` of block `l`.
    T(usize),
    /// `c_out` of block `l` (block 2's is also the output block's `c`).
    O(usize),
    /// Output channels of the output block's sigmoid conv.
    Sig,
}

const VARS: [Var; 6] = [
    Var::Input,
    Var::T(0),
    Var::O(0),
    Var::T(1),
    Var::O(1),
    Var::Sig,
];

fn var_index(v: Var) -> usize {
    VARS.iter().position(|&x| x == v).expect("known variable")
}

/// How a space's producing layer adds its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Residual {
    /// `c_in < c_out`: input channel `k` is added to output channel `k`.
    Pad,
    /// `c_in > c_out`: a 1×1 projection.
    Proj,
}

/// A set of channels kept or removed together.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceInfo {
    pub name: String,
    pub size: usize,
    /// Never pruned (the input, or a space merged with it).
    pub fixed: bool,
    /// The space the residual of this space's producing layer reads, and how.
    pub parent: Option<(usize, Residual)>,
}

/// Which channel an axis of a parameter indexes: entry `i` along the axis is channel `i % c`
/// of `space` (time taps, Chebyshev orders, GLU halves and nodes are the outer blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis {
    pub space: usize,
    pub c: usize,
}

/// `(space, channel index)`.
pub type Channel = (usize, usize);

/// One parameter tensor: its shape and the channel axes of its rows and columns (a 1-D tensor
/// has only `cols`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub key: Key,
    /// `[rows, cols]`, or `[len]` for a 1-D tensor.
    pub shape: Vec<usize>,
    pub rows: Option<Axis>,
    pub cols: Option<Axis>,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn ncols(&self) -> usize {
        *self.shape.last().expect("non-scalar")
    }

    /// `(space, channel)` of entry `i`'s row and column (flat row-major index).
    pub fn channels_of(&self, i: usize) -> (Option<Channel>, Option<Channel>) {
        let (r, c) = if self.shape.len() == 2 {
            (i / self.ncols(), i % self.ncols())
        } else {
            (0, i)
        };
        (
            self.rows.map(|a| (a.space, r % a.c)),
            self.cols.map(|a| (a.space, c % a.c)),
        )
    }
}

/// Spaces and parameter layout of one network shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub config: StgcnConfig,
    pub spaces: Vec<SpaceInfo>,
    /// Space of each variable (`Input, T0, O0, T1, O1, Sig`).
    var_space: [usize; 6],
    pub params: Vec<ParamSpec>,
}

impl Topology {
    pub fn new(cfg: &StgcnConfig) -> Self {
        let [[_, ct0, co0], [_, ct1, co1]] = cfg.channels;
        let sizes = [1, ct0, co0, ct1, co1, co1];
        // Union of variables joined by identity residuals (a chain: each variable's residual
        // reads the previous one).
        let mut rep: [usize; 6] = [0, 1, 2, 3, 4, 5];
        let chain = [(0usize, 1usize), (1, 2), (2, 3), (3, 4)];
        for &(a, b) in &chain {
            if sizes[a] == sizes[b] {
                rep[b] = rep[a];
            }
        }
        let mut spaces: Vec<SpaceInfo> = Vec::new();
        let mut var_space = [0usize; 6];
        let mut space_of_rep: Vec<(usize, usize)> = Vec::new();
        let names = ["input", "A1", "B1", "A2", "B2", "S"];
        for v in 0..6 {
            let r = rep[v];
            if let Some(&(_, s)) = space_of_rep.iter().find(|(x, _)| *x == r) {
                var_space[v] = s;
                spaces[s].name = format!("{}={}", spaces[s].name, names[v]);
                continue;
            }
            let s = spaces.len();
            space_of_rep.push((r, s));
            var_space[v] = s;
            let parent = chain.iter().find(|&&(_, b)| b == v).map(|&(a, _)| {
                let kind = if sizes[a] < sizes[v] {
                    Residual::Pad
                } else {
                    Residual::Proj
                };
                (var_space[a], kind)
            });
            spaces.push(SpaceInfo {
                name: names[v].to_string(),
                size: sizes[v],
                fixed: r == 0,
                parent,
            });
        }
        let axis = |v: Var, c: usize| Axis {
            space: var_space[var_index(v)],
            c,
        };
        let n = cfg.nodes;
        let mut params = Vec::new();
        let mut push = |key, shape: Vec<usize>, rows: Option<Axis>, cols: Option<Axis>| {
            params.push(ParamSpec {
                key,
                shape,
                rows,
                cols,
            })
        };
        for (l, &[ci, ct, co]) in cfg.channels.iter().enumerate() {
            let input = if l == 0 { Var::Input } else { Var::O(0) };
            let (a, b) = (Var::T(l), Var::O(l));
            push(
                Key::T1Weight(l),
                vec![KT * ci, 2 * ct],
                Some(axis(input, ci)),
                Some(axis(a, ct)),
            );
            push(Key::T1Bias(l), vec![2 * ct], None, Some(axis(a, ct)));
            if ci > ct {
                push(
                    Key::T1Proj(l),
                    vec![ci, ct],
                    Some(axis(input, ci)),
                    Some(axis(a, ct)),
                );
            }
            push(
                Key::SpTheta(l),
                vec![KS * ct, ct],
                Some(axis(a, ct)),
                Some(axis(a, ct)),
            );
            push(Key::SpBias(l), vec![ct], None, Some(axis(a, ct)));
            push(
                Key::T2Weight(l),
                vec![KT * ct, co],
                Some(axis(a, ct)),
                Some(axis(b, co)),
            );
            push(Key::T2Bias(l), vec![co], None, Some(axis(b, co)));
            if ct > co {
                push(
                    Key::T2Proj(l),
                    vec![ct, co],
                    Some(axis(a, ct)),
                    Some(axis(b, co)),
                );
            }
            push(Key::LnGamma(l), vec![n * co], None, Some(axis(b, co)));
            push(Key::LnBeta(l), vec![n * co], None, Some(axis(b, co)));
        }
        let c = co1;
        let o = Var::O(1);
        push(
            Key::OutWeight,
            vec![cfg.ko() * c, 2 * c],
            Some(axis(o, c)),
            Some(axis(o, c)),
        );
        push(Key::OutBias, vec![2 * c], None, Some(axis(o, c)));
        push(Key::OutLnGamma, vec![n * c], None, Some(axis(o, c)));
        push(Key::OutLnBeta, vec![n * c], None, Some(axis(o, c)));
        push(
            Key::SigWeight,
            vec![c, c],
            Some(axis(o, c)),
            Some(axis(Var::Sig, c)),
        );
        push(Key::SigBias, vec![c], None, Some(axis(Var::Sig, c)));
        push(Key::FcWeight, vec![c, 1], Some(axis(Var::Sig, c)), None);
        push(Key::FcBias, vec![n], None, None);
        Topology {
            config: cfg.clone(),
            spaces,
            var_space,
            params,
        }
    }

    /// Space of the block-2 output channels (also the output block's `c`).
    pub fn out_space(&self) -> usize {
        self.var_space[var_index(Var::O(1))]
    }

    /// Space of the sigmoid conv's output channels.
    pub fn sig_space(&self) -> usize {
        self.var_space[var_index(Var::Sig)]
    }

    /// Space of `c_t` (`out = false`) or `c_out` (`out = true`) of block `l`.
    pub fn block_space(&self, l: usize, out: bool) -> usize {
        self.var_space[var_index(if out { Var::O(l) } else { Var::T(l) })]
    }

    /// Channels of the network whose spaces keep `counts[s]` channels.
    pub fn channels_for(&self, counts: &[usize]) -> Channels {
        let n = |v: Var| counts[self.var_space[var_index(v)]];
        let (t0, o0, t1, o1) = (n(Var::T(0)), n(Var::O(0)), n(Var::T(1)), n(Var::O(1)));
        [[1, t0, o0], [o0, t1, o1]]
    }

    /// Parameters of the dense network with `counts` channels.
    pub fn params_for(&self, counts: &[usize]) -> usize {
        let mut c = self.config.clone();
        c.channels = self.channels_for(counts);
        c.param_count()
    }

    pub fn total_params(&self) -> usize {
        self.params.iter().map(ParamSpec::len).sum()
    }

    pub fn sizes(&self) -> Vec<usize> {
        self.spaces.iter().map(|s| s.size).collect()
    }
}

/// A parameter of a model, read-only.
pub enum PRef<'a, B: Backend> {
    D1(&'a Param<Tensor<B, 1>>),
    D2(&'a Param<Tensor<B, 2>>),
}

/// A parameter of a model, to replace.
pub enum PMut<'a, B: Backend> {
    D1(&'a mut Param<Tensor<B, 1>>),
    D2(&'a mut Param<Tensor<B, 2>>),
}

impl<B: Backend> PRef<'_, B> {
    pub fn id(&self) -> burn::module::ParamId {
        match self {
            PRef::D1(p) => p.id,
            PRef::D2(p) => p.id,
        }
    }

    /// The values, flattened row-major.
    pub fn to_vec(&self) -> Vec<f32> {
        match self {
            PRef::D1(p) => p.val().into_data(),
            PRef::D2(p) => p.val().into_data(),
        }
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 parameter")
    }

    /// The values as a flat tensor.
    pub fn flat(&self) -> Tensor<B, 1> {
        match self {
            PRef::D1(p) => p.val(),
            PRef::D2(p) => p.val().flatten(0, 1),
        }
    }
}

impl<B: Backend> PMut<'_, B> {
    /// Replace the values (keeping the parameter's id, so optimiser state stays attached).
    pub fn set(&mut self, values: Vec<f32>, shape: &[usize], device: &B::Device) {
        match self {
            PMut::D1(p) => {
                let t = Tensor::from_data(TensorData::new(values, [shape[0]]), device);
                **p = Param::initialized(p.id, t.require_grad());
            }
            PMut::D2(p) => {
                let t = Tensor::from_data(TensorData::new(values, [shape[0], shape[1]]), device);
                **p = Param::initialized(p.id, t.require_grad());
            }
        }
    }
}

/// The parameters of `m` in [`Topology::params`] order.
pub fn param_refs<B: Backend>(m: &Stgcn<B>) -> Vec<PRef<'_, B>> {
    let mut out = Vec::with_capacity(32);
    for b in &m.blocks {
        out.push(PRef::D2(&b.temporal1.weight));
        out.push(PRef::D1(&b.temporal1.bias));
        if let Some(p) = &b.temporal1.input_proj {
            out.push(PRef::D2(p));
        }
        out.push(PRef::D2(&b.spatial.theta));
        out.push(PRef::D1(&b.spatial.bias));
        if let Some(p) = &b.spatial.input_proj {
            out.push(PRef::D2(p));
        }
        out.push(PRef::D2(&b.temporal2.weight));
        out.push(PRef::D1(&b.temporal2.bias));
        if let Some(p) = &b.temporal2.input_proj {
            out.push(PRef::D2(p));
        }
        out.push(PRef::D1(&b.norm.gamma));
        out.push(PRef::D1(&b.norm.beta));
    }
    let o = &m.output;
    assert!(
        o.temporal.input_proj.is_none() && o.sigmoid.input_proj.is_none(),
        "the output block maps c → c"
    );
    out.push(PRef::D2(&o.temporal.weight));
    out.push(PRef::D1(&o.temporal.bias));
    out.push(PRef::D1(&o.norm.gamma));
    out.push(PRef::D1(&o.norm.beta));
    out.push(PRef::D2(&o.sigmoid.weight));
    out.push(PRef::D1(&o.sigmoid.bias));
    out.push(PRef::D2(&o.fc_weight));
    out.push(PRef::D1(&o.fc_bias));
    out
}

/// The parameters of `m` in [`Topology::params`] order, to replace.
pub fn param_muts<B: Backend>(m: &mut Stgcn<B>) -> Vec<PMut<'_, B>> {
    let mut out = Vec::with_capacity(32);
    for b in m.blocks.iter_mut() {
        out.push(PMut::D2(&mut b.temporal1.weight));
        out.push(PMut::D1(&mut b.temporal1.bias));
        if let Some(p) = b.temporal1.input_proj.as_mut() {
            out.push(PMut::D2(p));
        }
        out.push(PMut::D2(&mut b.spatial.theta));
        out.push(PMut::D1(&mut b.spatial.bias));
        if let Some(p) = b.spatial.input_proj.as_mut() {
            out.push(PMut::D2(p));
        }
        out.push(PMut::D2(&mut b.temporal2.weight));
        out.push(PMut::D1(&mut b.temporal2.bias));
        if let Some(p) = b.temporal2.input_proj.as_mut() {
            out.push(PMut::D2(p));
        }
        out.push(PMut::D1(&mut b.norm.gamma));
        out.push(PMut::D1(&mut b.norm.beta));
    }
    let o = &mut m.output;
    out.push(PMut::D2(&mut o.temporal.weight));
    out.push(PMut::D1(&mut o.temporal.bias));
    out.push(PMut::D1(&mut o.norm.gamma));
    out.push(PMut::D1(&mut o.norm.beta));
    out.push(PMut::D2(&mut o.sigmoid.weight));
    out.push(PMut::D1(&mut o.sigmoid.bias));
    out.push(PMut::D2(&mut o.fc_weight));
    out.push(PMut::D1(&mut o.fc_bias));
    out
}
