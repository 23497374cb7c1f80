//! Winograd's minimal filtering F(2, 3) (Lavin & Gray 2016) for the `Kt = 3` temporal
//! convolutions: two output steps from four input steps take four channel products instead of
//! six, so the forward, the input gradient and the weight gradient each do 2/3 of the direct
//! method's multiply–adds. The transforms are additions along time, done on whole `[N, C]` slabs
//! of one sample:
//!
//! - weights `U = G g`: `U_0 = W_0`, `U_1 = (W_0 + W_1 + W_2)/2`, `U_2 = (W_0 − W_1 + W_2)/2`,
//!   `U_3 = W_2` (each `[c_in, c_conv]`);
//! - input tile `τ` (steps `2τ … 2τ+3`), `V = Bᵀ d`: `V_0 = d_0 − d_2`, `V_1 = d_1 + d_2`,
//!   `V_2 = d_2 − d_1`, `V_3 = d_1 − d_3`;
//! - `M_j = V_j U_j`, then the outputs `y_{2τ} = M_0 + M_1 + M_2`, `y_{2τ+1} = M_1 − M_2 − M_3`.
//!
//! The backward is the transpose of each step. f32 rounding stays at the direct method's level
//! (the transforms only add, and halve).

use super::Fresh;

/// Whether a temporal convolution with `kt` taps, `t_out` output steps and `c_in` input
/// channels goes through F(2, 3). The 1-channel first layer stays direct: its products are
/// rank-one updates whose cost the transforms would match (measured: no gain).
pub(crate) fn applies(kt: usize, t_out: usize, c_in: usize) -> bool {
    kt == 3 && t_out >= 2 && t_out.is_multiple_of(2) && c_in >= 2
}

/// `U_0 … U_3` (`[4, c, cc]`) from the taps `W_0, W_1, W_2` (`[3, c, cc]`).
pub(crate) fn weights(w: &[f32], c: usize, cc: usize) -> Vec<f32> {
    let s = c * cc;
    let (g0, g1, g2) = (&w[..s], &w[s..2 * s], &w[2 * s..3 * s]);
    let mut u = vec![0f32; 4 * s];
    let (u0, rest) = u.split_at_mut(s);
    let (u1, rest) = rest.split_at_mut(s);
    let (u2, u3) = rest.split_at_mut(s);
    for i in 0..s {
        u0[i] = g0[i];
        u1[i] = 0.5 * (g0[i] + g1[i] + g2[i]);
        u2[i] = 0.5 * (g0[i] - g1[i] + g2[i]);
        u3[i] = g2[i];
    }
    u
}

/// The weight gradient `dW_0, dW_1, dW_2` (`[3, s]`) from `dU_0 … dU_3` (`[4, s]`), the
/// transpose of [`weights`].
pub(crate) fn weight_grad(du: &[f32], s: usize) -> Vec<f32> {
    let (d0, d1, d2, d3) = (
        &du[..s],
        &du[s..2 * s],
        &du[2 * s..3 * s],
        &du[3 * s..4 * s],
    );
    let mut dw = vec![0f32; 3 * s];
    for i in 0..s {
        let (sum, diff) = (0.5 * (d1[i] + d2[i]), 0.5 * (d1[i] - d2[i]));
        dw[i] = d0[i] + sum;
        dw[s + i] = diff;
        dw[2 * s + i] = sum + d3[i];
    }
    dw
}

/// Four equal parts of `v`.
pub(crate) fn quarters(v: &mut [f32]) -> [&mut [f32]; 4] {
    let q = v.len() / 4;
    let (a, rest) = v.split_at_mut(q);
    let (b, rest) = rest.split_at_mut(q);
    let (c, d) = rest.split_at_mut(q);
    [a, b, c, d]
}

vectorized! {
    /// `V_j` of every tile of one sample: `x` is `[T, slab]` (a slab is one step's `N·C`
    /// values), `v` is `[4, T_out/2, slab]`.
    pub(crate) fn input(x: &[f32], slab: usize, v: &mut [f32]) {
        let tiles = v.len() / (4 * slab);
        let [v0, v1, v2, v3] = quarters(v);
        for tau in 0..tiles {
            let at = 2 * tau * slab;
            let d0 = &x[at..at + slab];
            let d1 = &x[at + slab..at + 2 * slab];
            let d2 = &x[at + 2 * slab..at + 3 * slab];
            let d3 = &x[at + 3 * slab..at + 4 * slab];
            let r = tau * slab..(tau + 1) * slab;
            let (o0, o1) = (&mut v0[r.clone()], &mut v1[r.clone()]);
            let (o2, o3) = (&mut v2[r.clone()], &mut v3[r]);
            for i in 0..slab {
                o0[i] = d0[i] - d2[i];
                o1[i] = d1[i] + d2[i];
                o2[i] = d2[i] - d1[i];
                o3[i] = d1[i] - d3[i];
            }
        }
    }
}

vectorized! {
    /// The transpose of [`input`]: `dx` (`[T, slab]`) from `dV` (`[4, T_out/2, slab]`).
    /// Neighbouring tiles share two steps: each pair of steps `2p, 2p+1` is the sum of tile
    /// `p − 1`'s last two and tile `p`'s first two contributions, written once.
    pub(crate) fn input_backward(dv: &[f32], slab: usize, dx: Fresh) {
        let q = dv.len() / 4;
        let tiles = q / slab;
        assert_eq!(dx.len(), (2 * tiles + 2) * slab);
        let part = |j: usize, tau: usize| &dv[j * q + tau * slab..j * q + (tau + 1) * slab];
        for (p, pair) in dx.chunks_exact_mut(2 * slab).enumerate() {
            let (r0, r1) = pair.split_at_mut(slab);
            if p == 0 || p == tiles {
                // One tile only: its first two steps (p = 0) or its last two (p = tiles).
                let tau = p.min(tiles - 1);
                let (e0, e1, e2, e3) = (part(0, tau), part(1, tau), part(2, tau), part(3, tau));
                for i in 0..slab {
                    let (a, b) = if p == 0 {
                        (e0[i], e1[i] - e2[i] + e3[i])
                    } else {
                        (e1[i] + e2[i] - e0[i], -e3[i])
                    };
                    r0[i].write(a);
                    r1[i].write(b);
                }
                continue;
            }
            let (f0, f1, f2, f3) = (part(0, p - 1), part(1, p - 1), part(2, p - 1), part(3, p - 1));
            let (e0, e1, e2, e3) = (part(0, p), part(1, p), part(2, p), part(3, p));
            for i in 0..slab {
                r0[i].write(f1[i] + f2[i] - f0[i] + e0[i]);
                r1[i].write(e1[i] - e2[i] + e3[i] - f3[i]);
            }
        }
    }
}

vectorized! {
    /// Outputs from the products: `m` is `[4, T_out/2·N, cc]`; columns `from .. from + w` of
    /// each `M_j` row, plus `bias`, go to `y` (`[T_out·N, w]`): row `(2τ, node)` gets
    /// `M_0 + M_1 + M_2`, row `(2τ+1, node)` gets `M_1 − M_2 − M_3`.
    pub(crate) fn output(m: &[f32], n: usize, cc: usize, from: usize, bias: &[f32], y: Fresh) {
        let w = bias.len();
        assert_eq!(y.len() * cc, m.len() / 2 * w);
        let q = m.len() / 4;
        let (m0, m1, m2, m3) = (&m[..q], &m[q..2 * q], &m[2 * q..3 * q], &m[3 * q..]);
        for (tau, pair) in y.chunks_exact_mut(2 * n * w).enumerate() {
            let (even, odd) = pair.split_at_mut(n * w);
            for node in 0..n {
                let at = (tau * n + node) * cc + from;
                let (a, b) = (&m0[at..at + w], &m1[at..at + w]);
                let (c, d) = (&m2[at..at + w], &m3[at..at + w]);
                let ye = &mut even[node * w..(node + 1) * w];
                let yo = &mut odd[node * w..(node + 1) * w];
                for i in 0..w {
                    ye[i].write(a[i] + b[i] + c[i] + bias[i]);
                    yo[i].write(b[i] - c[i] - d[i] + bias[i]);
                }
            }
        }
    }
}

vectorized! {
    #[cfg(test)]
    /// The transpose of [`output`] (bias aside): `dy` (`[T_out·N, w]`) into columns
    /// `from .. from + w` of `dm` (`[4, T_out/2·N, cc]`): `dM_0 = dy_e`, `dM_1 = dy_e + dy_o`,
    /// `dM_2 = dy_e − dy_o`, `dM_3 = −dy_o`. (The kernel does this together with the
    /// activation's backward: `temporal::products_backward`; this is its reference.)
    pub(crate) fn output_backward(dy: &[f32], n: usize, cc: usize, from: usize, w: usize, dm: &mut [f32]) {
        let [m0, m1, m2, m3] = quarters(dm);
        for (tau, pair) in dy.chunks_exact(2 * n * w).enumerate() {
            let (even, odd) = pair.split_at(n * w);
            for node in 0..n {
                let at = (tau * n + node) * cc + from;
                let ye = &even[node * w..(node + 1) * w];
                let yo = &odd[node * w..(node + 1) * w];
                let (a, b) = (&mut m0[at..at + w], &mut m1[at..at + w]);
                let (c, d) = (&mut m2[at..at + w], &mut m3[at..at + w]);
                for i in 0..w {
                    a[i] = ye[i];
                    b[i] = ye[i] + yo[i];
                    c[i] = ye[i] - yo[i];
                    d[i] = -yo[i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fresh;
    use super::*;

    /// Direct `y[t] = Σ_k x[t+k] W_k` for one node and channel pair, against the transforms.
    #[test]
    fn f23_equals_the_direct_correlation_and_its_transposes() {
        let (t, slab) = (6usize, 3usize);
        let x: Vec<f32> = (0..t * slab)
            .map(|i| ((i * 37 % 11) as f32) - 5.0)
            .collect();
        let g = [0.5f32, -1.25, 2.0];
        // Scalar weights (c = cc = 1) and slabs of 3 independent nodes.
        let u = weights(&g, 1, 1);
        let mut v = vec![0f32; 4 * (t - 2) / 2 * slab];
        input(&x, slab, &mut v);
        let mut m = v.clone();
        for (j, part) in m.chunks_exact_mut(v.len() / 4).enumerate() {
            part.iter_mut().for_each(|e| *e *= u[j]);
        }
        let mut y = vec![0f32; (t - 2) * slab];
        output(&m, slab, 1, 0, &[0.25], fresh(&mut y));
        for step in 0..t - 2 {
            for node in 0..slab {
                let direct: f32 = (0..3)
                    .map(|k| x[(step + k) * slab + node] * g[k])
                    .sum::<f32>()
                    + 0.25;
                let got = y[step * slab + node];
                assert!(
                    (got - direct).abs() < 1e-5,
                    "step {step} node {node}: {got} vs {direct}"
                );
            }
        }
        // Transposes: <output(m), dy> = <m, output_backward(dy)> and likewise for the input.
        let dy: Vec<f32> = (0..y.len()).map(|i| (i % 5) as f32 - 2.0).collect();
        let mut dm = vec![0f32; m.len()];
        output_backward(&dy, slab, 1, 0, 1, &mut dm);
        let mut y0 = vec![0f32; y.len()];
        output(&m, slab, 1, 0, &[0.0], fresh(&mut y0));
        let lhs: f32 = y0.iter().zip(&dy).map(|(a, b)| a * b).sum();
        let rhs: f32 = m.iter().zip(&dm).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-3, "{lhs} vs {rhs}");
        let mut dx = vec![f32::NAN; x.len()];
        input_backward(&dm, slab, fresh(&mut dx));
        let lhs: f32 = v.iter().zip(&dm).map(|(a, b)| a * b).sum();
        let rhs: f32 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-3, "{lhs} vs {rhs}");
        // The weight transform's transpose.
        let du = [1.0f32, 2.0, -3.0, 0.5];
        let dw = weight_grad(&du, 1);
        let lhs: f32 = u.iter().zip(&du).map(|(a, b)| a * b).sum();
        let rhs: f32 = g.iter().zip(&dw).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-5, "{lhs} vs {rhs}");
    }
}
