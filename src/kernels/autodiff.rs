//! The kernels inside burn: on `Flex` they replace the layer's forward; on `Autodiff<Flex>`
//! (training on the CPU) they become one autodiff node each, whose backward is the hand-written
//! one, so neither the forward's intermediate tensors nor their generic backward steps exist.
//! Any other backend (CUDA) keeps the generic tensor-op path: the `*_forward` functions hand
//! the input back.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::Tensor;

use super::norm::{layer_norm, layer_norm_backward};
use super::spatial::{spatial_conv, spatial_conv_backward, HostGraph, SpatialArgs};
use super::temporal::{temporal_conv, temporal_conv_backward, TemporalArgs};
use super::Act;
use super::{contiguous_f32, downcast, flex_from_vec, upcast, LayerGrads};

/// A tensor of the CPU training backend (`Autodiff<Flex>`).
type AdTensor = FloatTensor<burn::backend::Autodiff<Flex>>;

/// A layer's tensors on one of the two CPU backends.
enum Cpu<const D: usize> {
    Flex(FlexTensor),
    Ad(AdTensor),
}

impl<const D: usize> Cpu<D> {
    fn of<B: Backend>(t: Tensor<B, D>) -> Result<Self, Tensor<B, D>> {
        match downcast::<B, FlexTensor, D>(t) {
            Ok(f) => Ok(Cpu::Flex(f)),
            Err(t) => downcast::<B, AdTensor, D>(t).map(Cpu::Ad),
        }
    }
    /// A parameter of a layer whose input is on the same backend.
    fn param<B: Backend>(p: &Param<Tensor<B, D>>) -> Self {
        Self::of(p.val()).unwrap_or_else(|_| unreachable!("the input's backend is a CPU one"))
    }
    fn flex(&self) -> &FlexTensor {
        match self {
            Cpu::Flex(f) => f,
            Cpu::Ad(a) => &a.primitive,
        }
    }
    fn ad(&self) -> &AdTensor {
        match self {
            Cpu::Ad(a) => a,
            Cpu::Flex(_) => unreachable!("all tensors of a layer share a backend"),
        }
    }
}

/// Finish an autodiff node with parents `nodes`, keeping `state` when a gradient is needed.
macro_rules! finish {
    ($op:expr, [$($node:expr),+], $state:expr, $out:expr) => {
        match $op
            .prepare::<NoCheckpointing>([$($node.node.clone()),+])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish($state, $out),
            OpsKind::UnTracked(prep) => prep.finish($out),
        }
    };
}

/// A layer computed by a kernel: its fixed configuration, the forward and the backward on host
/// slices. Parameters are a weight (LayerNorm: `γ`), a bias (`β`) and, when channels shrink, a
/// residual projection.
trait FusedLayer: Clone + std::fmt::Debug + Send + 'static {
    /// Output `[B, T', N, c_out]` and what the backward needs besides the output.
    fn forward(&self, x: &[f32], dims: [usize; 4], p: &Weights, save: bool)
        -> (Vec<f32>, Vec<f32>);
    fn out_dims(&self, dims: [usize; 4]) -> [usize; 4];
    /// Gradients of input, weight, bias and projection from the output gradient.
    fn backward(&self, s: &Saved<Self>, p: &Weights, grad: &[f32]) -> LayerGrads;
}

/// A layer's parameters as host slices.
struct Weights<'a> {
    weight: &'a [f32],
    bias: &'a [f32],
    proj: Option<&'a [f32]>,
}

#[derive(Debug, Clone)]
struct TemporalLayer {
    kt: usize,
    c_out: usize,
    act: Act,
}

impl TemporalLayer {
    fn args<'a>(&self, p: &Weights<'a>) -> TemporalArgs<'a> {
        TemporalArgs {
            kt: self.kt,
            c_out: self.c_out,
            act: self.act,
            weight: p.weight,
            bias: p.bias,
            proj: p.proj,
        }
    }
}

impl FusedLayer for TemporalLayer {
    fn forward(
        &self,
        x: &[f32],
        dims: [usize; 4],
        p: &Weights,
        save: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        temporal_conv(x, dims, &self.args(p), save)
    }
    fn out_dims(&self, [b, t, n, _]: [usize; 4]) -> [usize; 4] {
        [b, t + 1 - self.kt, n, self.c_out]
    }
    fn backward(&self, s: &Saved<Self>, p: &Weights, grad: &[f32]) -> LayerGrads {
        let (x, out) = (contiguous_f32(&s.x), contiguous_f32(&s.out));
        temporal_conv_backward(&x, s.dims, &self.args(p), &out, &s.extra, grad)
    }
}

#[derive(Debug, Clone)]
struct SpatialLayer {
    c_out: usize,
    graph: Arc<HostGraph>,
}

impl SpatialLayer {
    fn run<R>(&self, p: &Weights, f: impl FnOnce(&SpatialArgs) -> R) -> R {
        f(&SpatialArgs {
            c_out: self.c_out,
            graph: &self.graph,
            theta: p.weight,
            bias: p.bias,
            proj: p.proj,
        })
    }
}

impl FusedLayer for SpatialLayer {
    fn forward(
        &self,
        x: &[f32],
        dims: [usize; 4],
        p: &Weights,
        save: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        self.run(p, |a| spatial_conv(x, dims, a, save))
    }
    fn out_dims(&self, [b, t, n, _]: [usize; 4]) -> [usize; 4] {
        [b, t, n, self.c_out]
    }
    fn backward(&self, s: &Saved<Self>, p: &Weights, grad: &[f32]) -> LayerGrads {
        let (x, out) = (contiguous_f32(&s.x), contiguous_f32(&s.out));
        self.run(p, |a| {
            spatial_conv_backward(&x, s.dims, a, &out, &s.extra, grad)
        })
    }
}

#[derive(Debug, Clone)]
struct NormLayer;

impl FusedLayer for NormLayer {
    fn forward(
        &self,
        x: &[f32],
        [_, _, n, c]: [usize; 4],
        p: &Weights,
        save: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        layer_norm(x, n * c, p.weight, p.bias, save)
    }
    fn out_dims(&self, dims: [usize; 4]) -> [usize; 4] {
        dims
    }
    fn backward(&self, s: &Saved<Self>, p: &Weights, grad: &[f32]) -> LayerGrads {
        let [_, _, n, c] = s.dims;
        layer_norm_backward(&contiguous_f32(&s.x), n * c, p.weight, &s.extra, grad)
    }
}

/// What a layer's backward needs: input, parameters, output and the layer's extra state.
#[derive(Debug, Clone)]
struct Saved<L> {
    layer: L,
    x: FlexTensor,
    dims: [usize; 4],
    weight: FlexTensor,
    bias: FlexTensor,
    proj: Option<FlexTensor>,
    out: FlexTensor,
    /// GLU pre-activations (temporal), graph products (spatial) or row statistics (LayerNorm);
    /// empty when not needed.
    extra: Vec<f32>,
}

/// Run `layer` with its parameters on a CPU backend; `Err(x)` on any other.
fn fused<B: Backend, L: FusedLayer, const DW: usize>(
    layer: L,
    x: Tensor<B, 4>,
    weight: &Param<Tensor<B, DW>>,
    bias: &Param<Tensor<B, 1>>,
    proj: Option<&Param<Tensor<B, 2>>>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let dims = x.dims();
    let x = Cpu::<4>::of(x)?;
    let (weight, bias) = (Cpu::<DW>::param(weight), Cpu::<1>::param(bias));
    let proj = proj.map(Cpu::<2>::param);
    let (w, b) = (contiguous_f32(weight.flex()), contiguous_f32(bias.flex()));
    let p = proj.as_ref().map(|p| contiguous_f32(p.flex()));
    let params = Weights {
        weight: &w,
        bias: &b,
        proj: p.as_deref(),
    };
    let training = matches!(x, Cpu::Ad(_));
    let (out, extra) = layer.forward(&contiguous_f32(x.flex()), dims, &params, training);
    let out = flex_from_vec(out, layer.out_dims(dims));
    let x = match x {
        Cpu::Flex(_) => return Ok(upcast::<B, FlexTensor, 4>(out)),
        Cpu::Ad(x) => x,
    };
    let saved = Saved {
        layer,
        x: x.primitive.clone(),
        dims,
        weight: weight.flex().clone(),
        bias: bias.flex().clone(),
        proj: proj.as_ref().map(|p| p.flex().clone()),
        out: out.clone(),
        extra,
    };
    let (w, b) = (weight.ad(), bias.ad());
    let y: AdTensor = match &proj {
        Some(p) => finish!(
            LayerBackward::<L>(Default::default()),
            [x, w, b, p.ad()],
            saved,
            out
        ),
        None => finish!(
            LayerBackward::<L>(Default::default()),
            [x, w, b],
            saved,
            out
        ),
    };
    Ok(upcast::<B, AdTensor, 4>(y))
}

/// The autodiff node of a fused layer; parents are input, weight, bias (and projection).
#[derive(Debug)]
struct LayerBackward<L>(std::marker::PhantomData<L>);

impl<L: FusedLayer, const N: usize> Backward<Flex, N> for LayerBackward<L> {
    type State = Saved<L>;

    fn backward(self, ops: Ops<Saved<L>, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = &ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let (w, b) = (contiguous_f32(&s.weight), contiguous_f32(&s.bias));
        let p = s.proj.as_ref().map(contiguous_f32);
        let params = Weights {
            weight: &w,
            bias: &b,
            proj: p.as_deref(),
        };
        let g = s.layer.backward(s, &params, &contiguous_f32(&grad));
        let like = |v: Vec<f32>, t: &FlexTensor| {
            FlexTensor::from_data(burn::tensor::TensorData::new(v, t.layout().shape().clone()))
        };
        let values = [
            Some(flex_from_vec(g.x, s.dims)),
            Some(like(g.weight, &s.weight)),
            Some(like(g.bias, &s.bias)),
            g.proj.zip(s.proj.as_ref()).map(|(v, p)| like(v, p)),
        ];
        for (parent, value) in ops.parents.iter().zip(values) {
            if let (Some(node), Some(v)) = (parent, value) {
                grads.register::<Flex>(node.id, v);
            }
        }
    }
}

/// The temporal convolution (`kt` taps to `c_out` channels, `act`) on a CPU backend, or
/// `Err(x)` on any other.
pub(crate) fn temporal_forward<B: Backend>(
    kt: usize,
    c_out: usize,
    act: Act,
    weight: &Param<Tensor<B, 2>>,
    bias: &Param<Tensor<B, 1>>,
    proj: Option<&Param<Tensor<B, 2>>>,
    x: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    fused(TemporalLayer { kt, c_out, act }, x, weight, bias, proj)
}

/// The graph convolution (`c_out` channels on `graph`) on a CPU backend, or `Err(x)` on any
/// other.
pub(crate) fn spatial_forward<B: Backend>(
    c_out: usize,
    graph: &Arc<HostGraph>,
    theta: &Param<Tensor<B, 2>>,
    bias: &Param<Tensor<B, 1>>,
    proj: Option<&Param<Tensor<B, 2>>>,
    x: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let layer = SpatialLayer {
        c_out,
        graph: graph.clone(),
    };
    fused(layer, x, theta, bias, proj)
}

/// STGCN's LayerNorm (`γ`, `β`) on a CPU backend, or `Err(x)` on any other.
pub(crate) fn norm_forward<B: Backend>(
    gamma: &Param<Tensor<B, 1>>,
    beta: &Param<Tensor<B, 1>>,
    x: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    fused(NormLayer, x, gamma, beta, None)
}
