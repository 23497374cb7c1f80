//! The masked network: forward pass with LayerNorm statistics over the kept channels only,
//! masks applied to weights and gradients during training, and the Taylor importance
//! accumulator.

use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};

use super::mask::{ChannelState, Masks};
use super::topology::{param_muts, param_refs, PMut, PRef, Topology};
use crate::model::{Features, GraphKernel, NodeLayerNorm, Stgcn, LN_EPS};

/// What the forward pass of a channel-pruned (masked, full-size) network needs beyond its
/// weights: which LayerNorm entries count in the statistics, and which channels the hidden
/// feature taps keep (the distillation losses average over channels, so removed channels must
/// not dilute them).
#[derive(Debug, Clone)]
pub struct MaskedView<B: Backend> {
    /// Per LayerNorm (block 1, block 2, output): kept entries `[N·C]` (1/0) and their number;
    /// `None` when every channel is kept.
    pub norms: [Option<(Tensor<B, 1>, usize)>; 3],
    /// Kept channels of each block's `c_t` and `c_out` (`[A1, B1, A2, B2]`); `None`: all.
    pub taps: [Option<Tensor<B, 1, Int>>; 4],
}

impl<B: Backend> MaskedView<B> {
    pub fn new(t: &Topology, st: &ChannelState, device: &B::Device) -> Self {
        let n = t.config.nodes;
        let norm = |s: usize| {
            let keep = &st.keep[s];
            if keep.iter().all(|&k| k) {
                return None;
            }
            let c = keep.len();
            let m: Vec<f32> = (0..n * c)
                .map(|i| if keep[i % c] { 1.0 } else { 0.0 })
                .collect();
            let count = m.iter().filter(|&&v| v > 0.0).count();
            Some((
                Tensor::from_data(TensorData::new(m, [n * c]), device),
                count,
            ))
        };
        let tap = |s: usize| {
            let keep = &st.keep[s];
            if keep.iter().all(|&k| k) {
                return None;
            }
            let idx: Vec<i64> = (0..keep.len())
                .filter(|&k| keep[k])
                .map(|k| k as i64)
                .collect();
            let len = idx.len();
            Some(Tensor::<B, 1, Int>::from_data(
                TensorData::new(idx, [len]),
                device,
            ))
        };
        let out = t.out_space();
        MaskedView {
            norms: [
                norm(t.block_space(0, true)),
                norm(t.block_space(1, true)),
                norm(out),
            ],
            taps: [
                tap(t.block_space(0, false)),
                tap(t.block_space(0, true)),
                tap(t.block_space(1, false)),
                tap(t.block_space(1, true)),
            ],
        }
    }
}

/// LayerNorm jointly over `[N, C]` whose mean and (biased) variance are taken over the kept
/// entries only; removed entries come out as `β = 0` (their `γ, β` are masked).
fn masked_norm<B: Backend>(
    norm: &NodeLayerNorm<B>,
    x: Tensor<B, 4>,
    keep: &Tensor<B, 1>,
    count: usize,
) -> Tensor<B, 4> {
    let [b, t, n, c] = x.dims();
    let flat = x.reshape([b, t, n * c]);
    let m = keep.clone().reshape([1, 1, n * c]);
    let cnt = count.max(1) as f64;
    let mean = (flat.clone() * m.clone()).sum_dim(2).div_scalar(cnt);
    let d = (flat - mean) * m;
    let var = (d.clone() * d.clone()).sum_dim(2).div_scalar(cnt);
    let y = d / var.add_scalar(LN_EPS).sqrt();
    let gamma = norm.gamma.val().reshape([1, 1, n * c]);
    let beta = norm.beta.val().reshape([1, 1, n * c]);
    (y * gamma + beta).reshape([b, t, n, c])
}

fn norm_fwd<B: Backend>(
    norm: &NodeLayerNorm<B>,
    x: Tensor<B, 4>,
    view: Option<&(Tensor<B, 1>, usize)>,
) -> Tensor<B, 4> {
    match view {
        Some((keep, count)) => masked_norm(norm, x, keep, *count),
        None => norm.forward(x),
    }
}

fn tap<B: Backend>(x: Tensor<B, 4>, keep: &Option<Tensor<B, 1, Int>>) -> Tensor<B, 4> {
    match keep {
        Some(idx) => x.select(3, idx.clone()),
        None => x,
    }
}

/// One forward step of a masked network (`view = None`: the ordinary forward pass, as for an
/// element-pruned or compacted network): `[B, M, N, 1]` → `[B, 1, N, 1]`.
pub fn forward_masked<B: Backend>(
    m: &Stgcn<B>,
    x: Tensor<B, 4>,
    g: &GraphKernel<B>,
    view: Option<&MaskedView<B>>,
) -> Tensor<B, 4> {
    forward_inner(m, x, g, view, None)
}

/// [`forward_masked`] that also returns the hidden features, restricted to the kept channels.
pub fn forward_masked_features<B: Backend>(
    m: &Stgcn<B>,
    x: Tensor<B, 4>,
    g: &GraphKernel<B>,
    view: Option<&MaskedView<B>>,
) -> (Tensor<B, 4>, Features<B>) {
    let mut f = Features {
        temporal: Vec::with_capacity(4),
        spatial: Vec::with_capacity(2),
        last_block: x.clone(),
    };
    let y = forward_inner(m, x, g, view, Some(&mut f));
    (y, f)
}

fn forward_inner<B: Backend>(
    m: &Stgcn<B>,
    mut x: Tensor<B, 4>,
    g: &GraphKernel<B>,
    view: Option<&MaskedView<B>>,
    mut taps: Option<&mut Features<B>>,
) -> Tensor<B, 4> {
    let none = [None, None, None, None];
    let sel = view.map_or(&none, |v| &v.taps);
    for (l, block) in m.blocks.iter().enumerate() {
        let t1 = block.temporal1.forward(x);
        let s = block.spatial.forward(t1.clone(), g);
        let t2 = block.temporal2.forward(s.clone());
        if let Some(f) = taps.as_deref_mut() {
            f.temporal.push(tap(t1, &sel[2 * l]));
            f.temporal.push(tap(t2.clone(), &sel[2 * l + 1]));
            f.spatial.push(tap(s, &sel[2 * l]));
        }
        let nv = view.and_then(|v| v.norms[l].as_ref());
        x = block.dropout.forward(norm_fwd(&block.norm, t2, nv));
    }
    if let Some(f) = taps {
        f.last_block = tap(x.clone(), &sel[3]);
    }
    let out = &m.output;
    let nv = view.and_then(|v| v.norms[2].as_ref());
    out.fully_connected(
        out.sigmoid
            .forward(norm_fwd(&out.norm, out.temporal.forward(x), nv)),
    )
}

/// The masks of a network as tensors, for use on every training step.
#[derive(Clone)]
pub struct DeviceMasks<B: Backend> {
    /// Flat masks per parameter ([`Topology::params`] order) with their shapes.
    masks: Vec<Option<(Tensor<B, 1>, Vec<usize>)>>,
}

impl<B: Backend> DeviceMasks<B> {
    pub fn new(t: &Topology, masks: &Masks, device: &B::Device) -> Self {
        DeviceMasks {
            masks: masks
                .masks
                .iter()
                .zip(&t.params)
                .map(|(m, spec)| {
                    m.as_ref().map(|m| {
                        (
                            Tensor::from_data(TensorData::new(m.clone(), [m.len()]), device),
                            spec.shape.clone(),
                        )
                    })
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.masks.iter().all(Option::is_none)
    }
}

/// Multiply every masked parameter by its mask (after each optimiser step and each pruning
/// step): masked entries become exactly zero; parameter ids (and so the optimiser's state) are
/// kept.
pub fn apply_masks<B: AutodiffBackend>(
    mut model: Stgcn<B>,
    masks: &DeviceMasks<B::InnerBackend>,
) -> Stgcn<B> {
    if masks.is_empty() {
        return model;
    }
    for (p, m) in param_muts(&mut model).into_iter().zip(&masks.masks) {
        let Some((mask, shape)) = m else { continue };
        match p {
            PMut::D1(p) => {
                let mask = mask.clone();
                *p = p
                    .clone()
                    .map(|w| Tensor::from_inner(w.inner() * mask).require_grad());
            }
            PMut::D2(p) => {
                let mask = mask.clone().reshape([shape[0], shape[1]]);
                *p = p
                    .clone()
                    .map(|w| Tensor::from_inner(w.inner() * mask).require_grad());
            }
        }
    }
    model
}

/// Multiply the gradients of masked parameters by their masks (so the optimiser's moments of
/// removed entries stay at zero).
pub fn mask_grads<B: AutodiffBackend>(
    grads: &mut GradientsParams,
    model: &Stgcn<B>,
    masks: &DeviceMasks<B::InnerBackend>,
) {
    if masks.is_empty() {
        return;
    }
    for (p, m) in param_refs(model).iter().zip(&masks.masks) {
        let Some((mask, shape)) = m else { continue };
        let id = p.id();
        match p {
            PRef::D1(_) => {
                if let Some(g) = grads.remove::<B::InnerBackend, 1>(id) {
                    grads.register(id, g * mask.clone());
                }
            }
            PRef::D2(_) => {
                if let Some(g) = grads.remove::<B::InnerBackend, 2>(id) {
                    grads.register(id, g * mask.clone().reshape([shape[0], shape[1]]));
                }
            }
        }
    }
}

/// First-order Taylor importance `Σ_b (g·w)²` of every parameter entry over the minibatches
/// since the last [`Importance::take_mean`] (Eq. 13), on the device.
pub struct Importance<B: Backend> {
    acc: Vec<Tensor<B, 1>>,
    pub batches: usize,
}

impl<B: Backend> Importance<B> {
    pub fn new(t: &Topology, device: &B::Device) -> Self {
        Importance {
            acc: t
                .params
                .iter()
                .map(|p| Tensor::zeros([p.len()], device))
                .collect(),
            batches: 0,
        }
    }

    /// Add `(g·w)²` of one minibatch; `w` are the weights the gradients were taken at.
    pub fn add<BA: AutodiffBackend<InnerBackend = B>>(
        &mut self,
        model: &Stgcn<BA>,
        grads: &GradientsParams,
    ) {
        for (acc, p) in self.acc.iter_mut().zip(param_refs(model)) {
            let id = p.id();
            let g: Option<Tensor<B, 1>> = match &p {
                PRef::D1(_) => grads.get::<B, 1>(id),
                PRef::D2(_) => grads.get::<B, 2>(id).map(|g| g.flatten(0, 1)),
            };
            if let Some(g) = g {
                let gw = g * p.flat().inner();
                *acc = acc.clone() + gw.clone() * gw;
            }
        }
        self.batches += 1;
    }

    /// The accumulated sums on the host (for a resume checkpoint), with the minibatch count.
    pub fn to_host(&self) -> (Vec<Vec<f32>>, usize) {
        let sums = self
            .acc
            .iter()
            .map(|a| a.to_data().to_vec::<f32>().expect("f32 scores"))
            .collect();
        (sums, self.batches)
    }

    /// An accumulator holding `sums` of `batches` minibatches (see [`Importance::to_host`]).
    pub fn from_host(sums: &[Vec<f32>], batches: usize, device: &B::Device) -> Self {
        Importance {
            acc: sums
                .iter()
                .map(|v| {
                    Tensor::from_data(burn::tensor::TensorData::new(v.clone(), [v.len()]), device)
                })
                .collect(),
            batches,
        }
    }

    /// The accumulated scores divided by the number of minibatches (Algorithm 1 line 15), on
    /// the host; the accumulator restarts from zero.
    pub fn take_mean(&mut self) -> Vec<Vec<f32>> {
        let k = self.batches.max(1) as f64;
        let out = self
            .acc
            .iter_mut()
            .map(|a| {
                let v = a
                    .clone()
                    .div_scalar(k)
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .expect("f32 scores");
                *a = a.zeros_like();
                v
            })
            .collect();
        self.batches = 0;
        out
    }
}
