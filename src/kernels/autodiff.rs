//! The kernels inside burn: on `Flex` they replace the layer's forward; on `Autodiff<Flex>`
//! (training on the CPU) they become one autodiff node each, whose backward is the hand-written
//! one, so neither the forward's intermediate tensors nor their generic backward steps exist.
//! Any other backend (CUDA) keeps the generic tensor-op path: the `*_forward` functions hand
//! the input back.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::Tensor;

use super::spatial::{spatial_conv, spatial_conv_backward, SpatialArgs};
use super::temporal::{temporal_conv, temporal_conv_backward, TemporalArgs};
use super::{contiguous_f32, downcast, flex_from_vec, upcast};
use crate::model::{Act, GraphKernel, SpatialConv, TemporalConv};

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

/// Register the gradients of a layer's parents (input, weight, bias, projection), each shaped
/// as the tensor it belongs to, where that parent needs one.
fn register<const N: usize>(
    ops: &Ops<Saved, N>,
    grads: &mut Gradients,
    [x, weight, bias]: [Vec<f32>; 3],
    proj: Option<Vec<f32>>,
) {
    let s = &ops.state;
    let like = |v: Vec<f32>, t: &FlexTensor| {
        FlexTensor::from_data(burn::tensor::TensorData::new(v, t.layout().shape().clone()))
    };
    let values = [
        Some(flex_from_vec(x, s.dims)),
        Some(like(weight, &s.weight)),
        Some(like(bias, &s.bias)),
        proj.zip(s.proj.as_ref()).map(|(v, p)| like(v, p)),
    ];
    for (parent, value) in ops.parents.iter().zip(values) {
        if let (Some(node), Some(v)) = (parent, value) {
            grads.register::<Flex>(node.id, v);
        }
    }
}

/// A layer's fixed shape and weights, kept for its backward.
#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    dims: [usize; 4],
    weight: FlexTensor,
    bias: FlexTensor,
    proj: Option<FlexTensor>,
    out: FlexTensor,
    /// GLU pre-activations (temporal) or graph products (spatial); empty when not needed.
    extra: Vec<f32>,
    c_out: usize,
    /// Temporal only.
    kt: usize,
    act: Act,
    /// Spatial only: the stacked graph.
    stacked: Option<FlexTensor>,
}

/// The temporal convolution on a CPU backend, or `Err(x)` on any other.
pub(crate) fn temporal_forward<B: Backend>(
    conv: &TemporalConv<B>,
    x: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let dims = x.dims();
    let x = Cpu::<4>::of(x)?;
    let weight = Cpu::<2>::param(&conv.weight);
    let bias = Cpu::<1>::param(&conv.bias);
    let proj = conv.input_proj.as_ref().map(Cpu::<2>::param);
    let (w, b) = (contiguous_f32(weight.flex()), contiguous_f32(bias.flex()));
    let p = proj.as_ref().map(|p| contiguous_f32(p.flex()));
    let args = TemporalArgs {
        kt: conv.kt,
        c_out: conv.c_out,
        act: conv.act,
        weight: &w,
        bias: &b,
        proj: p.as_deref(),
    };
    let training = matches!(x, Cpu::Ad(_));
    let (out, extra) = temporal_conv(&contiguous_f32(x.flex()), dims, &args, training);
    let [bs, t, n, _] = dims;
    let out = flex_from_vec(out, [bs, t + 1 - conv.kt, n, conv.c_out]);
    let x = match x {
        Cpu::Flex(_) => return Ok(upcast::<B, FlexTensor, 4>(out)),
        Cpu::Ad(x) => x,
    };
    let saved = Saved {
        x: x.primitive.clone(),
        dims,
        weight: weight.flex().clone(),
        bias: bias.flex().clone(),
        proj: proj.as_ref().map(|p| p.flex().clone()),
        out: out.clone(),
        extra,
        c_out: conv.c_out,
        kt: conv.kt,
        act: conv.act,
        stacked: None,
    };
    let y: AdTensor = match &proj {
        Some(p) => finish!(
            TemporalBackward,
            [x, weight.ad(), bias.ad(), p.ad()],
            saved,
            out
        ),
        None => finish!(TemporalBackward, [x, weight.ad(), bias.ad()], saved, out),
    };
    Ok(upcast::<B, AdTensor, 4>(y))
}

#[derive(Debug)]
struct TemporalBackward;

impl<const N: usize> Backward<Flex, N> for TemporalBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = &ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let (w, b) = (contiguous_f32(&s.weight), contiguous_f32(&s.bias));
        let p = s.proj.as_ref().map(contiguous_f32);
        let args = TemporalArgs {
            kt: s.kt,
            c_out: s.c_out,
            act: s.act,
            weight: &w,
            bias: &b,
            proj: p.as_deref(),
        };
        let g = temporal_conv_backward(
            &contiguous_f32(&s.x),
            s.dims,
            &args,
            &contiguous_f32(&s.out),
            &s.extra,
            &contiguous_f32(&grad),
        );
        register(&ops, grads, [g.x, g.weight, g.bias], g.proj);
    }
}

/// The graph convolution on a CPU backend, or `Err(x)` on any other.
pub(crate) fn spatial_forward<B: Backend>(
    conv: &SpatialConv<B>,
    x: Tensor<B, 4>,
    g: &GraphKernel<B>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let dims = x.dims();
    let x = Cpu::<4>::of(x)?;
    let stacked = Cpu::<2>::of(g.stacked()).unwrap_or_else(|_| unreachable!("same backend"));
    let theta = Cpu::<2>::param(&conv.theta);
    let bias = Cpu::<1>::param(&conv.bias);
    let proj = conv.input_proj.as_ref().map(Cpu::<2>::param);
    let (st, th, b) = (
        contiguous_f32(stacked.flex()),
        contiguous_f32(theta.flex()),
        contiguous_f32(bias.flex()),
    );
    let p = proj.as_ref().map(|p| contiguous_f32(p.flex()));
    let args = SpatialArgs {
        c_out: conv.c_out,
        stacked: &st,
        theta: &th,
        bias: &b,
        proj: p.as_deref(),
    };
    let training = matches!(x, Cpu::Ad(_));
    let (out, extra) = spatial_conv(&contiguous_f32(x.flex()), dims, &args, training);
    let [bs, t, n, _] = dims;
    let out = flex_from_vec(out, [bs, t, n, conv.c_out]);
    let x = match x {
        Cpu::Flex(_) => return Ok(upcast::<B, FlexTensor, 4>(out)),
        Cpu::Ad(x) => x,
    };
    let saved = Saved {
        x: x.primitive.clone(),
        dims,
        weight: theta.flex().clone(),
        bias: bias.flex().clone(),
        proj: proj.as_ref().map(|p| p.flex().clone()),
        out: out.clone(),
        extra,
        c_out: conv.c_out,
        kt: 1,
        act: Act::Relu,
        stacked: Some(stacked.flex().clone()),
    };
    let y: AdTensor = match &proj {
        Some(p) => finish!(
            SpatialBackward,
            [x, theta.ad(), bias.ad(), p.ad()],
            saved,
            out
        ),
        None => finish!(SpatialBackward, [x, theta.ad(), bias.ad()], saved, out),
    };
    Ok(upcast::<B, AdTensor, 4>(y))
}

#[derive(Debug)]
struct SpatialBackward;

impl<const N: usize> Backward<Flex, N> for SpatialBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = &ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let stacked = s.stacked.as_ref().expect("spatial state keeps the graph");
        let (st, th, b) = (
            contiguous_f32(stacked),
            contiguous_f32(&s.weight),
            contiguous_f32(&s.bias),
        );
        let p = s.proj.as_ref().map(contiguous_f32);
        let args = SpatialArgs {
            c_out: s.c_out,
            stacked: &st,
            theta: &th,
            bias: &b,
            proj: p.as_deref(),
        };
        let g = spatial_conv_backward(
            &contiguous_f32(&s.x),
            s.dims,
            &args,
            &contiguous_f32(&s.out),
            &s.extra,
            &contiguous_f32(&grad),
        );
        register(&ops, grads, [g.x, g.theta, g.bias], g.proj);
    }
}
