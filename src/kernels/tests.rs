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
