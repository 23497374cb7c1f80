//! The fused CPU kernels ([`crate::kernels`]) against burn's generic tensor-op path, layer by
//! layer: inference values on `Flex`, and values and every gradient (input, weight, bias,
//! projection) on `Autodiff<Flex>`.

use burn::module::{AutodiffModule, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::{Act, GraphKernel, NodeLayerNorm, SpatialConv, TemporalConv, KS};
use crate::backend::{Cpu, CpuInner};
use crate::kernels::without_fused;
use crate::rng::Rng;

fn random<B: Backend, const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    let mut rng = Rng::new(seed, 3);
    let v: Vec<f32> = (0..shape.iter().product())
        .map(|_| (rng.next_f64() as f32 - 0.5) * 4.0)
        .collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

/// A bias with distinct non-zero entries, so that its placement is checked too.
fn bias(len: usize) -> Param<Tensor<Cpu, 1>> {
    let v: Vec<f32> = (0..len).map(|j| 0.1 * j as f32 - 0.5).collect();
    Param::from_tensor(Tensor::from_data(
        TensorData::new(v, [len]),
        &Default::default(),
    ))
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// `max |a − b| / max |a|`.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Output and gradients of `Σ out ⊙ r` with respect to the input and each parameter, weight
/// first and bias last.
fn value_and_grads<const D: usize>(
    forward: impl Fn(Tensor<Cpu, 4>) -> Tensor<Cpu, 4>,
    params: &[&Param<Tensor<Cpu, D>>],
    bias: &Param<Tensor<Cpu, 1>>,
    x: &Tensor<Cpu, 4>,
    seed: u64,
) -> Vec<Vec<f32>> {
    let x = x.clone().detach().require_grad();
    let out = forward(x.clone());
    let r = random::<Cpu, 4>(out.dims(), seed);
    let grads = (out.clone() * r).sum().backward();
    let mut all = vec![host(out.inner()), host(x.grad(&grads).expect("input grad"))];
    for p in params {
        all.push(host(p.val().grad(&grads).expect("weight grad")));
    }
    all.push(host(bias.val().grad(&grads).expect("bias grad")));
    all
}

fn assert_close(what: &str, generic: &[Vec<f32>], fused: &[Vec<f32>]) {
    let names = ["output", "d input", "d weight", "d projection"];
    for (i, (g, f)) in generic.iter().zip(fused).enumerate() {
        let d = rel_diff(g, f);
        let name = if i == generic.len() - 1 {
            "d bias"
        } else {
            names[i.min(3)]
        };
        assert!(d < 2e-5, "{what}: {name} differs by {d} (relative)");
    }
}

/// Every activation, residual kind (zero padding, identity, 1×1 projection), `Kt = 1`,
/// `T = Kt`, one sample and several (the parallel split differs); `Kt = 3` with 2+ input
/// channels goes through minimal filtering: F(4, 3) when the output steps are a multiple of 4
/// (cases 2, 3, 8), F(3, 3) for a multiple of 3 (cases 1, 10), F(2, 3) when even (case 9); 7
/// steps (case 7) or one channel (case 0) through the direct products.
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
        (3, 8, 16, Act::Glu, 9),
        (3, 16, 8, Act::Glu, 10),
        (3, 8, 8, Act::Relu, 12),
        (3, 8, 16, Act::Glu, 11),
    ];
    for (i, &(kt, c_in, c_out, act, t)) in cases.iter().enumerate() {
        for batch in [1, 5] {
            let what = format!("case {i} ({kt}, {c_in}->{c_out}, {act:?}), batch {batch}");
            let mut rng = Rng::new(i as u64, 9);
            let conv =
                TemporalConv::<Cpu>::new(kt, c_in, c_out, act, &mut rng, &Default::default());
            let conv = TemporalConv {
                bias: bias(conv.bias.val().dims()[0]),
                ..conv
            };
            let x = random::<Cpu, 4>([batch, t, 7, c_in], i as u64);
            let mut params = vec![&conv.weight];
            params.extend(conv.input_proj.as_ref());
            let run = || value_and_grads(|x| conv.forward(x), &params, &conv.bias, &x, 77);
            let generic = without_fused(run);
            let fused = run();
            assert_close(&what, &generic, &fused);
            // Inference (the flex backend without autodiff) gives the same output.
            let inference = host(conv.valid().forward(x.clone().inner()));
            assert!(
                rel_diff(&generic[0], &inference) < 2e-5,
                "{what}: inference"
            );
            assert_eq!(
                conv.valid().forward(x.inner()).dims(),
                [batch, t + 1 - kt, 7, c_out]
            );
        }
    }
}

/// A shrinking (projected), equal and growing (zero-padded) channel count; one slab, several
/// slabs in one group, and several groups.
#[test]
fn fused_spatial_conv_matches_the_generic_path() {
    let n = 9;
    let mut rng = Rng::new(4, 4);
    let dense: Vec<f32> = (0..KS * n * n)
        .map(|_| rng.next_f64() as f32 - 0.5)
        .collect();
    // A graph sparse enough for the compressed-row products (about 1 entry in 10).
    let sparse: Vec<f32> = dense
        .iter()
        .map(|&v| if v.abs() < 0.05 { v * 10.0 } else { 0.0 })
        .collect();
    let dev = Default::default();
    for (graph, cheb) in [("dense", dense), ("sparse", sparse)] {
        let g = GraphKernel::<Cpu>::new(&cheb, n, &dev);
        let g_inner = GraphKernel::<CpuInner>::new(&cheb, n, &dev);
        for (i, &(c_in, c_out)) in [(16, 8), (8, 8), (3, 8), (64, 2)].iter().enumerate() {
            for (batch, t) in [(1, 1), (3, 4), (40, 3)] {
                let what =
                    format!("{graph} graph, case {i} ({c_in}->{c_out}), batch {batch}, steps {t}");
                let conv = SpatialConv::<Cpu>::new(c_in, c_out, &mut rng, &dev);
                let conv = SpatialConv {
                    bias: bias(c_out),
                    ..conv
                };
                let x = random::<Cpu, 4>([batch, t, n, c_in], 10 + i as u64);
                let mut params = vec![&conv.theta];
                params.extend(conv.input_proj.as_ref());
                let run = || value_and_grads(|x| conv.forward(x, &g), &params, &conv.bias, &x, 78);
                let generic = without_fused(run);
                let fused = run();
                assert_close(&what, &generic, &fused);
                let inference = host(conv.valid().forward(x.inner(), &g_inner));
                assert!(
                    rel_diff(&generic[0], &inference) < 2e-5,
                    "{what}: inference"
                );
            }
        }
    }
}

/// LayerNorm over `[N, C]` with non-trivial `γ, β`, one row and several (parallel tasks), rows
/// with a large offset (the centring must happen before the variance).
#[test]
fn fused_layer_norm_matches_the_generic_path() {
    for (batch, t, n, c) in [(1, 1, 5, 3), (3, 4, 7, 8), (40, 2, 9, 16)] {
        let what = format!("layer norm [{batch}, {t}, {n}, {c}]");
        let norm = NodeLayerNorm::<Cpu> {
            gamma: Param::from_tensor(random::<Cpu, 1>([n * c], 5).add_scalar(1.0)),
            beta: bias(n * c),
        };
        let x = random::<Cpu, 4>([batch, t, n, c], 6).add_scalar(50.0);
        let run = || value_and_grads(|x| norm.forward(x), &[&norm.gamma], &norm.beta, &x, 79);
        let generic = without_fused(run);
        let fused = run();
        assert_close(&what, &generic, &fused);
        let inference = host(norm.valid().forward(x.inner()));
        assert!(
            rel_diff(&generic[0], &inference) < 2e-5,
            "{what}: inference"
        );
    }
}

/// A NaN input stays visible through the fused ReLU layers (as through burn's `relu`), so a
/// diverged run reports NaN instead of a number.
#[test]
fn nan_passes_through_the_fused_relu_layers() {
    let dev = Default::default();
    let mut rng = Rng::new(8, 8);
    let conv = TemporalConv::<CpuInner>::new(3, 4, 4, Act::Relu, &mut rng, &dev);
    let mut v = vec![0.5f32; 5 * 3 * 4];
    v[4 * 3 * 4 - 1] = f32::NAN;
    let x = Tensor::<CpuInner, 4>::from_data(TensorData::new(v, [1, 5, 3, 4]), &dev);
    let n = 3;
    let g = GraphKernel::<CpuInner>::new(
        &(0..KS * n * n)
            .map(|e| f32::from(u8::from(e < n * n && e % (n + 1) == 0)))
            .collect::<Vec<_>>(),
        n,
        &dev,
    );
    let spatial = SpatialConv::<CpuInner>::new(4, 4, &mut rng, &dev);
    for (what, out) in [
        ("temporal", host(conv.forward(x.clone()))),
        ("spatial", host(spatial.forward(x, &g))),
    ] {
        assert!(out.iter().any(|v| v.is_nan()), "{what}: the NaN was lost");
    }
}
