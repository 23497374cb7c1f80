//! Hand-written CPU kernels for inference on burn's `flex` backend.
//!
//! burn builds a temporal convolution from generic tensor ops: an im2col copy (`cat` of `Kt`
//! shifted views), two products, a bias add, a residual (a zero-padding `cat` or a product), and
//! the gate's sigmoid and product, each a separate pass over memory, most of them on one thread.
//! Here the same arithmetic is one fused pass per sample: `Kt` strided products read the input
//! in place (no im2col), and bias, residual and activation are applied while the product is still
//! in cache, with rayon over the samples. Used only where the backend is `flex` without autodiff
//! (teacher inference during distillation, evaluation, test-time prediction); training keeps the
//! generic path and its autodiff. Tests compare the two paths.

use std::any::{Any, TypeId};

use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use crate::model::Act;

/// `tensor` as a flex tensor when `B` is the flex backend, else `None` (and `tensor` back).
pub(crate) fn as_flex<B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
) -> Result<FlexTensor, Tensor<B, D>> {
    if TypeId::of::<B>() != TypeId::of::<Flex>() {
        return Err(tensor);
    }
    let boxed: Box<dyn Any> = Box::new(tensor.into_primitive().tensor());
    Ok(*boxed
        .downcast::<FlexTensor>()
        .expect("B is Flex, so its float primitive is FlexTensor"))
}

/// A flex tensor as a `Tensor<B, D>`; only called where `B` is the flex backend.
pub(crate) fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    let boxed: Box<dyn Any> = Box::new(t);
    let prim = *boxed
        .downcast::<B::FloatTensorPrimitive>()
        .expect("B is Flex, so its float primitive is FlexTensor");
    Tensor::from_primitive(TensorPrimitive::Float(prim))
}

/// The tensor's elements in row-major order (a view when already contiguous, else a copy).
pub(crate) fn contiguous_f32(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    let n = t.layout().num_elements();
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        std::borrow::Cow::Borrowed(&t.storage::<f32>()[..n])
    } else {
        std::borrow::Cow::Owned(t.to_contiguous().storage::<f32>()[..n].to_vec())
    }
}

/// A contiguous flex tensor holding `values` with `shape`.
pub(crate) fn flex_from_vec<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `dst (+)= lhs · rhs` for row-major matrices with the given row strides (column stride 1):
/// `lhs` is `m × k`, `rhs` is `k × n`, `dst` is `m × n`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_rows(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_rs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    // Bounds of every element the product touches: checked here, so the call below is sound.
    assert!(dst.len() >= (m - 1) * dst_rs + n, "gemm: dst too short");
    if k > 0 {
        assert!(lhs.len() >= (m - 1) * lhs_rs + k, "gemm: lhs too short");
        assert!(rhs.len() >= (k - 1) * rhs_rs + n, "gemm: rhs too short");
    }
    let par = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assertions above keep every strided access inside the three slices, and
    // `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            lhs_rs as isize,
            rhs.as_ptr(),
            1,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// The logistic function, computed as burn's CPU backend does (no overflow for large `|x|`).
#[inline]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The shape and weights of one temporal convolution (see [`crate::model::TemporalConv`]).
pub(crate) struct TemporalArgs<'a> {
    pub kt: usize,
    pub c_out: usize,
    pub act: Act,
    /// `[Kt·c_in, c_conv]`, `c_conv = 2·c_out` for the GLU (P then Q), else `c_out`.
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    /// `[c_in, c_out]` 1×1 projection of the residual when `c_in > c_out`.
    pub proj: Option<&'a [f32]>,
}

/// Temporal convolution of `x` (`[B, T, N, c_in]`, row-major) → `[B, T − Kt + 1, N, c_out]`:
/// `Σ_k x[t + k] W_k + b`, then `(P + x_in) ⊙ σ(Q)` (GLU), `relu(conv + x_in)` or `σ(conv)`.
pub(crate) fn temporal_conv(x: &[f32], [b, t, n, c]: [usize; 4], a: &TemporalArgs) -> Vec<f32> {
    let (kt, co) = (a.kt, a.c_out);
    let tp = t + 1 - kt;
    let rows = tp * n;
    let glu = a.act == Act::Glu;
    let cc = if glu { 2 * co } else { co };
    assert_eq!(x.len(), b * t * n * c);
    assert_eq!(a.weight.len(), kt * c * cc);
    assert_eq!(a.bias.len(), cc);
    let mut out = vec![0f32; b * rows * co];
    // Samples in parallel when there are enough of them; else the products themselves.
    let by_sample = b >= rayon::current_num_threads().max(2);
    let one = |xb: &[f32], ob: &mut [f32]| {
        let mut conv = vec![0f32; rows * cc];
        for k in 0..kt {
            gemm_rows(
                (rows, cc, c),
                &mut conv,
                cc,
                &xb[k * n * c..],
                c,
                &a.weight[k * c * cc..],
                cc,
                k > 0,
                !by_sample,
            );
        }
        // STGCN's residual input: the last `tp` input steps, projected or zero-padded.
        let last = &xb[(kt - 1) * n * c..];
        let projected = a.act != Act::Sigmoid && c > co;
        if projected {
            let proj = a.proj.expect("c_in > c_out needs the 1x1 projection");
            gemm_rows((rows, co, c), ob, co, last, c, proj, co, false, !by_sample);
        }
        for r in 0..rows {
            let p = &conv[r * cc..r * cc + cc];
            let o = &mut ob[r * co..(r + 1) * co];
            let xr = &last[r * c..r * c + c.min(co)];
            match a.act {
                Act::Sigmoid => {
                    for j in 0..co {
                        o[j] = sigmoid(p[j] + a.bias[j]);
                    }
                }
                Act::Relu | Act::Glu => {
                    if !projected {
                        o[..xr.len()].copy_from_slice(xr);
                        o[xr.len()..].fill(0.0);
                    }
                    if glu {
                        for j in 0..co {
                            let gate = sigmoid(p[co + j] + a.bias[co + j]);
                            o[j] = (p[j] + a.bias[j] + o[j]) * gate;
                        }
                    } else {
                        for j in 0..co {
                            o[j] = (p[j] + a.bias[j] + o[j]).max(0.0);
                        }
                    }
                }
            }
        }
    };
    let x_chunk = t * n * c;
    if by_sample {
        out.par_chunks_mut(rows * co)
            .zip(x.par_chunks(x_chunk))
            .for_each(|(ob, xb)| one(xb, ob));
    } else {
        for (ob, xb) in out.chunks_mut(rows * co).zip(x.chunks(x_chunk)) {
            one(xb, ob);
        }
    }
    out
}

/// The weights of one Chebyshev graph convolution (see [`crate::model::SpatialConv`]).
pub(crate) struct SpatialArgs<'a> {
    pub c_out: usize,
    /// `[(Ks − 1)·N, N]`: `T_1ᵀ … T_{Ks−1}ᵀ` stacked by rows (`T_0 = I` needs no product).
    pub stacked: &'a [f32],
    /// `[Ks·c_in, c_out]`: `θ_0 … θ_{Ks−1}` stacked by rows.
    pub theta: &'a [f32],
    pub bias: &'a [f32],
    /// `[c_in, c_out]` 1×1 projection of the residual when `c_in > c_out`.
    pub proj: Option<&'a [f32]>,
}

/// Chebyshev graph convolution of `x` (`[B, T, N, c_in]`) → `[B, T, N, c_out]`:
/// `relu(Σ_k T_kᵀ x θ_k + b + x_in)` for every (sample, step) slab.
///
/// Slabs are processed in groups laid side by side (`[N, G·c_in]`), so that the graph product
/// is one wide `[(Ks−1)·N, N] × [N, G·c_in]` product even for the student's 2-channel layers
/// (a product per slab with 2 columns would waste the vector unit); groups run in parallel.
pub(crate) fn spatial_conv(x: &[f32], [b, t, n, c]: [usize; 4], a: &SpatialArgs) -> Vec<f32> {
    let co = a.c_out;
    let terms = a.theta.len() / (c * co);
    assert_eq!(x.len(), b * t * n * c);
    assert_eq!(a.theta.len(), terms * c * co);
    assert_eq!(a.stacked.len(), (terms - 1) * n * n);
    let mut out = vec![0f32; b * t * n * co];
    let slabs = b * t;
    let threads = rayon::current_num_threads().max(2);
    // About 256 columns per graph product, and at least one group per thread.
    let group = (256 / c).clamp(1, slabs.div_ceil(threads).max(1));
    let parallel_products = slabs.div_ceil(group) < threads;
    let projected = c > co;
    let one = |buf: &mut Vec<f32>, xg: &[f32], og: &mut [f32]| {
        let g = xg.len() / (n * c);
        let w = g * c;
        buf.resize(n * w + (terms - 1) * n * w + n * co, 0.0);
        let (xt, rest) = buf.split_at_mut(n * w);
        let (z, res) = rest.split_at_mut((terms - 1) * n * w);
        // xt[node, slab·c + ch] = x[slab, node, ch]
        for (s, xs) in xg.chunks(n * c).enumerate() {
            for r in 0..n {
                xt[r * w + s * c..r * w + s * c + c].copy_from_slice(&xs[r * c..r * c + c]);
            }
        }
        // z = [T_1ᵀ; …] xt: every higher-order term of every slab of the group at once.
        let dims = ((terms - 1) * n, w, n);
        gemm_rows(dims, z, w, a.stacked, n, xt, w, false, parallel_products);
        for (s, (xs, os)) in xg.chunks(n * c).zip(og.chunks_mut(n * co)).enumerate() {
            let dims = (n, co, c);
            gemm_rows(dims, os, co, xs, c, a.theta, co, false, parallel_products);
            for k in 1..terms {
                let zk = &z[(k - 1) * n * w + s * c..];
                let theta_k = &a.theta[k * c * co..];
                gemm_rows(dims, os, co, zk, w, theta_k, co, true, parallel_products);
            }
            if projected {
                let proj = a.proj.expect("c_in > c_out needs the 1x1 projection");
                gemm_rows(dims, res, co, xs, c, proj, co, false, parallel_products);
            }
            for r in 0..n {
                let o = &mut os[r * co..(r + 1) * co];
                for j in 0..co {
                    let x_in = if projected {
                        res[r * co + j]
                    } else if j < c {
                        xs[r * c + j]
                    } else {
                        0.0
                    };
                    o[j] = (o[j] + a.bias[j] + x_in).max(0.0);
                }
            }
        }
    };
    if parallel_products {
        let mut buf = Vec::new();
        for (og, xg) in out.chunks_mut(group * n * co).zip(x.chunks(group * n * c)) {
            one(&mut buf, xg, og);
        }
    } else {
        out.par_chunks_mut(group * n * co)
            .zip(x.par_chunks(group * n * c))
            .for_each_init(Vec::new, |buf, (og, xg)| one(buf, xg, og));
    }
    out
}

#[cfg(test)]
mod tests {
    use burn::module::AutodiffModule;
    use burn::tensor::{Tensor, TensorData};

    use crate::backend::Cpu;
    use crate::model::{Act, TemporalConv};
    use crate::rng::Rng;

    fn random<B: burn::tensor::backend::Backend>(shape: [usize; 4], seed: u64) -> Tensor<B, 4> {
        let mut rng = Rng::new(seed, 3);
        let v: Vec<f32> = (0..shape.iter().product())
            .map(|_| (rng.next_f64() as f32 - 0.5) * 4.0)
            .collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// The fused flex kernel computes what the generic tensor-op path computes (taken here
    /// through the autodiff backend, which never uses the kernel): every activation, residual
    /// kind (zero padding, identity, 1×1 projection), `Kt = 1` and `T = Kt`, one sample and many.
    #[test]
    fn fused_temporal_conv_matches_the_generic_path() {
        let cases = [
            (3, 1, 32, Act::Glu, 12),
            (3, 64, 32, Act::Glu, 8),
            (3, 32, 32, Act::Relu, 10),
            (3, 16, 64, Act::Relu, 6),
            (2, 24, 8, Act::Relu, 5),
            (1, 8, 8, Act::Sigmoid, 1),
            (4, 8, 8, Act::Glu, 4),
        ];
        for (i, &(kt, c_in, c_out, act, t)) in cases.iter().enumerate() {
            for batch in [1, 5] {
                let mut rng = Rng::new(i as u64, 9);
                let conv =
                    TemporalConv::<Cpu>::new(kt, c_in, c_out, act, &mut rng, &Default::default());
                // Non-zero biases so that their placement is checked too.
                let bias_len = conv.bias.val().dims()[0];
                let conv = TemporalConv {
                    bias: burn::module::Param::from_tensor(Tensor::<Cpu, 1>::from_data(
                        TensorData::new(
                            (0..bias_len)
                                .map(|j| 0.1 * j as f32 - 0.5)
                                .collect::<Vec<_>>(),
                            [bias_len],
                        ),
                        &Default::default(),
                    )),
                    ..conv
                };
                let x = random::<Cpu>([batch, t, 7, c_in], i as u64);
                let generic = conv.forward(x.clone()).inner();
                let fused = conv.valid().forward(x.inner());
                assert_eq!(generic.dims(), fused.dims());
                assert_eq!(generic.dims(), [batch, t + 1 - kt, 7, c_out]);
                let (g, f) = (
                    generic.into_data().to_vec::<f32>().unwrap(),
                    fused.into_data().to_vec::<f32>().unwrap(),
                );
                let d = max_rel_diff(&g, &f);
                assert!(d < 1e-5, "case {i} batch {batch}: relative difference {d}");
            }
        }
    }

    /// The fused graph convolution computes what the generic path computes, for a shrinking
    /// (projected), equal and growing (zero-padded) channel count, one slab and many.
    #[test]
    fn fused_spatial_conv_matches_the_generic_path() {
        use crate::model::{GraphKernel, SpatialConv, KS};
        let n = 9;
        let mut rng = Rng::new(4, 4);
        let cheb: Vec<f32> = (0..KS * n * n)
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect();
        let dev = Default::default();
        let g = GraphKernel::<Cpu>::new(&cheb, n, &dev);
        let g_inner = GraphKernel::<crate::backend::CpuInner>::new(&cheb, n, &dev);
        for (i, &(c_in, c_out)) in [(16, 8), (8, 8), (3, 8)].iter().enumerate() {
            for (batch, t) in [(1, 1), (3, 4)] {
                let conv = SpatialConv::<Cpu>::new(c_in, c_out, &mut rng, &dev);
                let conv = SpatialConv {
                    bias: burn::module::Param::from_tensor(Tensor::<Cpu, 1>::from_data(
                        TensorData::new(
                            (0..c_out).map(|j| 0.2 * j as f32 - 0.7).collect::<Vec<_>>(),
                            [c_out],
                        ),
                        &dev,
                    )),
                    ..conv
                };
                let x = random::<Cpu>([batch, t, n, c_in], 10 + i as u64);
                let generic = conv.forward(x.clone(), &g).inner();
                let fused = conv.valid().forward(x.inner(), &g_inner);
                assert_eq!(generic.dims(), [batch, t, n, c_out]);
                assert_eq!(fused.dims(), [batch, t, n, c_out]);
                let (gv, fv) = (
                    generic.into_data().to_vec::<f32>().unwrap(),
                    fused.into_data().to_vec::<f32>().unwrap(),
                );
                let d = max_rel_diff(&gv, &fv);
                assert!(d < 1e-5, "case {i} batch {batch}: relative difference {d}");
            }
        }
    }
}
