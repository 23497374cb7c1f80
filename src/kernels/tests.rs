//! The kernels' own arithmetic: the fast `exp` and `sigmoid`, the fixed summation tree. (The
//! layers against burn's generic path are tested beside the model, `model/fused_tests.rs`.)

/// The vectorisable `exp` and `sigmoid` against the standard library over the range the
/// activations see, at the clamps and beyond, and for NaN.
#[test]
fn fast_exp_and_sigmoid_are_accurate() {
    let mut worst = 0f64;
    for i in -870_000..=880_000 {
        let x = i as f32 * 1e-4;
        let (fast, exact) = (super::exp(x) as f64, (x as f64).exp());
        worst = worst.max((fast - exact).abs() / exact);
    }
    assert!(worst < 3e-7, "exp: worst relative error {worst}");
    assert!(super::exp(-1000.0) > 0.0 && super::exp(1000.0).is_finite());
    assert!(super::exp(f32::NAN).is_nan() && super::sigmoid(f32::NAN).is_nan());
    for x in [-200.0f32, -20.0, -1.5, 0.0, 0.3, 7.0, 200.0] {
        let exact = 1.0 / (1.0 + (-(x as f64)).exp());
        let d = (super::sigmoid(x) as f64 - exact).abs();
        // Far left the clamped exponent leaves about 6e-39 where the exact value is smaller.
        assert!(d <= 3e-7 * exact + 1e-38, "sigmoid({x}) off by {d}");
    }
}

#[test]
fn partial_sums_add_up_in_a_fixed_tree_whatever_the_scheduling() {
    // Values whose sum depends on the order of the additions in f32.
    let part = |i: usize| -> Vec<f32> {
        (0..257)
            .map(|j| match (i + j) % 3 {
                0 => 1.0e8,
                1 => 1.0 + j as f32 * 1e-3,
                _ => -1.0e8,
            })
            .collect()
    };
    fn reference(parts: &[Vec<f32>]) -> Vec<f32> {
        if parts.len() == 1 {
            return parts[0].clone();
        }
        let (l, r) = parts.split_at(parts.len() / 2);
        let (mut a, b) = (reference(l), reference(r));
        for (x, y) in a.iter_mut().zip(&b) {
            *x += y;
        }
        a
    }
    for n in [1usize, 2, 3, 5, 8, 13, 50] {
        let parts: Vec<Vec<f32>> = (0..n).map(part).collect();
        let want = reference(&parts);
        for _ in 0..20 {
            let got = super::sum_parts(parts.clone());
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{n} parts: the sum depends on scheduling"
            );
        }
    }
}

/// The dense products give the same bits whatever the pool's size and whether they use it:
/// `gemm` splits its work between threads by blocks of output values, and each value's sum runs
/// over the terms in the same order (blocks of the inner dimension fixed by the shape). So the
/// kernels may let a product use the pool or not without changing a run's numbers. Shapes of the
/// teacher's and the student's layers on PeMSD7's graph (228 nodes), both operand layouts.
#[test]
fn dense_products_give_the_same_bits_at_any_thread_count() {
    let value = |i: usize| ((i * 7919 % 1013) as f32 - 506.0) * 1e-3 + (i % 7) as f32 * 1e-7;
    let shapes = [
        (2280, 64, 64),
        (2280, 128, 32),
        (456, 1280, 228),
        (456, 8, 228),
        (64, 128, 2280),
        (32, 64, 9120),
        (912, 32, 96),
        (228, 3, 1140),
    ];
    for (m, n, k) in shapes {
        let lhs: Vec<f32> = (0..m * k).map(value).collect();
        let rhs: Vec<f32> = (0..k * n).map(|i| value(i + 17)).collect();
        let start: Vec<f32> = (0..m * n).map(|i| value(i + 3)).collect();
        for transposed in [false, true] {
            let product = |parallel: bool| {
                let mut dst = start.clone();
                let l = if transposed {
                    super::Mat::t(&lhs, m)
                } else {
                    super::Mat::rows(&lhs, k)
                };
                super::gemm(
                    (m, n, k),
                    &mut dst,
                    n,
                    l,
                    super::Mat::rows(&rhs, n),
                    true,
                    parallel,
                );
                dst
            };
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            let want = bits(product(false));
            for threads in [1, 2, 3, 4] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = bits(pool.install(|| product(true)));
                assert!(
                    got == want,
                    "({m}, {n}, {k}), transposed {transposed}: {threads} threads differ"
                );
            }
        }
    }
}
