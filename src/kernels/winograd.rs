//! Winograd's minimal filtering (Lavin & Gray 2016) for the `Kt = 3` temporal convolutions:
//! F(m, 3) computes `m` output steps from `α = m + 2` input steps with `α` channel products
//! instead of `3m`. F(2, 3) does 2/3 of the direct method's multiply–adds, F(3, 3) 5/9, F(4, 3)
//! 1/2, in the forward, the input gradient and the weight gradient alike. The transforms are sums along
//! time, done on whole `[N, C]` slabs of one sample:
//!
//! - weights `U_j = Σ_k G[j][k] W_k` (`[c_in, c_conv]` each);
//! - input tile `τ` (steps `mτ … mτ + α − 1`): `V_j = Σ_i Bᵀ[j][i] d_i`;
//! - `M_j = V_j U_j`, then the outputs `y_{mτ+r} = Σ_j Aᵀ[r][j] M_j`;
//!
//! and the backward is the transpose of each step. The larger tiles' transforms have larger
//! coefficients (up to 8), so their rounding error is a few times F(2, 3)'s, still at the level of
//! f32 sums (the kernel tests compare both with burn's generic path to 2e-5 relative).

use super::Fresh;

/// F(2, 3): points 0, 1, −1, ∞.
const BT2: [[f32; 4]; 4] = [
    [1.0, 0.0, -1.0, 0.0],
    [0.0, 1.0, 1.0, 0.0],
    [0.0, -1.0, 1.0, 0.0],
    [0.0, 1.0, 0.0, -1.0],
];
const G2: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];
/// Aᵀ of F(2, 3).
pub(crate) const AT2: [[f32; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];

/// F(3, 3): points 0, 1, −1, 2, ∞ (derived like the others: Toom–Cook, then `Bᵀ` solved for
/// exactness; the unit test checks all three against the direct correlation).
const BT3: [[f32; 5]; 5] = [
    [2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 1.0, 0.0],
    [0.0, 2.0, -3.0, 1.0, 0.0],
    [0.0, -1.0, 0.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0],
];
const G3: [[f32; 3]; 5] = [
    [0.5, 0.0, 0.0],
    [-0.5, -0.5, -0.5],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0],
    [0.0, 0.0, 1.0],
];
/// Aᵀ of F(3, 3).
pub(crate) const AT3: [[f32; 5]; 3] = [
    [1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 1.0],
];

/// F(4, 3): points 0, 1, −1, 2, −2, ∞.
const BT4: [[f32; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
const G4: [[f32; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];
/// Aᵀ of F(4, 3).
pub(crate) const AT4: [[f32; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// Which minimal filtering algorithm a temporal convolution uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tile {
    /// F(2, 3).
    F2,
    /// F(3, 3).
    F3,
    /// F(4, 3).
    F4,
}

impl Tile {
    /// The tile for a convolution with `kt` taps, `t_out` output steps and `c_in` input
    /// channels: the largest of F(4, 3), F(3, 3), F(2, 3) whose `m` divides `t_out`, else none
    /// (the direct products). The 1-channel first layer stays direct: its products are rank-one
    /// updates whose cost the transforms would match (measured with F(2, 3): no gain).
    pub fn choose(kt: usize, t_out: usize, c_in: usize) -> Option<Tile> {
        if kt != 3 || c_in < 2 || t_out == 0 {
            return None;
        }
        [Tile::F4, Tile::F3, Tile::F2]
            .into_iter()
            .find(|tile| t_out.is_multiple_of(tile.m()))
    }

    /// Output steps per tile, `m`.
    pub fn m(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F3 => 3,
            Tile::F4 => 4,
        }
    }

    /// Products per tile, `α = m + 2`.
    pub fn alpha(self) -> usize {
        self.m() + 2
    }

    fn g(self) -> &'static [[f32; 3]] {
        match self {
            Tile::F2 => &G2,
            Tile::F3 => &G3,
            Tile::F4 => &G4,
        }
    }

    /// `U_0 … U_{α−1}` (`[α, c, cc]`) from the taps `W_0, W_1, W_2` (`[3, c, cc]`).
    pub fn weights(self, w: &[f32], c: usize, cc: usize) -> Vec<f32> {
        let s = c * cc;
        let mut u = vec![0f32; self.alpha() * s];
        for (uj, gj) in u.chunks_exact_mut(s).zip(self.g()) {
            for (k, wk) in w.chunks_exact(s).take(3).enumerate() {
                for (u, w) in uj.iter_mut().zip(wk) {
                    *u += gj[k] * w;
                }
            }
        }
        u
    }

    /// The weight gradient `dW_0, dW_1, dW_2` (`[3, s]`) from `dU_0 … dU_{α−1}`, the transpose
    /// of [`Tile::weights`].
    pub fn weight_grad(self, du: &[f32], s: usize) -> Vec<f32> {
        let mut dw = vec![0f32; 3 * s];
        for (duj, gj) in du.chunks_exact(s).zip(self.g()) {
            for (k, dwk) in dw.chunks_exact_mut(s).enumerate() {
                for (w, u) in dwk.iter_mut().zip(duj) {
                    *w += gj[k] * u;
                }
            }
        }
        dw
    }

    /// `V_j` of every tile of one sample: `x` is `[T, slab]` (a slab is one step's `N·C`
    /// values), `v` is `[α, T_out/m, slab]`.
    pub fn input(self, x: &[f32], slab: usize, v: &mut [f32]) {
        match self {
            Tile::F2 => input2(x, slab, v),
            Tile::F3 => input3(x, slab, v),
            Tile::F4 => input4(x, slab, v),
        }
    }

    /// The transpose of [`Tile::input`]: `dx` (`[T, slab]`, every value written) from `dV`.
    pub fn input_backward(self, dv: &[f32], slab: usize, dx: Fresh) {
        match self {
            Tile::F2 => input_backward2(dv, slab, dx),
            Tile::F3 => input_backward3(dv, slab, dx),
            Tile::F4 => input_backward4(dv, slab, dx),
        }
    }

    /// Outputs from the products: `m` is `[α, T_out/m, span]` (a span is one step's values of
    /// one half of the products), `bias` is one span (the bias tiled over the nodes), `y` is
    /// `[T_out, span]` (every value written).
    pub fn output(self, m: &[f32], bias: &[f32], y: Fresh) {
        match self {
            Tile::F2 => output2(m, bias, y),
            Tile::F3 => output3(m, bias, y),
            Tile::F4 => output4(m, bias, y),
        }
    }

    /// The transpose of [`Tile::output`] (bias aside): `dy` (`[T_out, span]`) into `dm`
    /// (`[α, T_out/m, span]`). The kernel does this together with the activation's backward
    /// (`temporal::products_backward`); this is its reference.
    #[cfg(test)]
    pub fn output_backward(self, dy: &[f32], span: usize, dm: &mut [f32]) {
        match self {
            Tile::F2 => output_backward_body::<2, 4>(&AT2, dy, span, dm),
            Tile::F3 => output_backward_body::<3, 5>(&AT3, dy, span, dm),
            Tile::F4 => output_backward_body::<4, 6>(&AT4, dy, span, dm),
        }
    }
}

/// `buf` cut into `A` equal parts.
#[inline(always)]
pub(crate) fn parts<T, const A: usize>(buf: &mut [T]) -> [&mut [T]; A] {
    let q = buf.len() / A;
    let mut rest = buf;
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(q);
        rest = tail;
        head
    })
}

/// Values per register block of [`combine`].
const L: usize = 8;

/// `dst_j = Σ_k coef[j][k] · src_k (+ bias)` element by element, for slices of one length,
/// [`L`] elements at a time in registers; writes every value of each `dst_j`. Inlined into the
/// `vectorized!` callers, so that it is compiled for their instruction set.
#[inline(always)]
pub(crate) fn combine<const S: usize, const D: usize>(
    coef: &[[f32; S]; D],
    src: [&[f32]; S],
    bias: Option<&[f32]>,
    mut dst: [Fresh; D],
) {
    let len = dst[0].len();
    assert!(src.iter().all(|s| s.len() == len) && dst.iter().all(|d| d.len() == len));
    assert!(bias.is_none_or(|b| b.len() == len));
    let full = len / L * L;
    for at in (0..full).step_by(L) {
        combine_at(coef, &src, bias, &mut dst, at, L);
    }
    if full < len {
        combine_at(coef, &src, bias, &mut dst, full, len - full);
    }
}

/// One block of [`combine`]: `width ≤ L` elements from `at`.
#[inline(always)]
fn combine_at<const S: usize, const D: usize>(
    coef: &[[f32; S]; D],
    src: &[&[f32]; S],
    bias: Option<&[f32]>,
    dst: &mut [Fresh; D],
    at: usize,
    width: usize,
) {
    let mut acc = [[0f32; L]; D];
    if let Some(b) = bias {
        let b = &b[at..at + width];
        for row in acc.iter_mut() {
            row[..width].copy_from_slice(b);
        }
    }
    for k in 0..S {
        let sk = &src[k][at..at + width];
        for j in 0..D {
            let c = coef[j][k];
            for l in 0..width {
                acc[j][l] += c * sk[l];
            }
        }
    }
    for j in 0..D {
        let dj = &mut dst[j][at..at + width];
        for l in 0..width {
            dj[l].write(acc[j][l]);
        }
    }
}

/// The transpose of a coefficient matrix.
pub(crate) const fn transpose<const R: usize, const C: usize>(m: &[[f32; C]; R]) -> [[f32; R]; C] {
    let mut t = [[0f32; R]; C];
    let mut r = 0;
    while r < R {
        let mut c = 0;
        while c < C {
            t[c][r] = m[r][c];
            c += 1;
        }
        r += 1;
    }
    t
}

/// `V_j = Σ_i Bᵀ[j][i] d_i` for every tile (see [`Tile::input`]).
#[inline(always)]
fn input_body<const M: usize, const A: usize>(
    bt: &[[f32; A]; A],
    x: &[f32],
    slab: usize,
    v: &mut [f32],
) {
    let tiles = v.len() / (A * slab);
    assert!(x.len() >= (M * tiles + A - M) * slab);
    let mut out: [&mut [f32]; A] = parts(v);
    for tau in 0..tiles {
        let at = M * tau * slab;
        let d: [&[f32]; A] = std::array::from_fn(|i| &x[at + i * slab..at + (i + 1) * slab]);
        let r = tau * slab..(tau + 1) * slab;
        combine(
            bt,
            d,
            None,
            out.each_mut().map(|p| super::fresh(&mut p[r.clone()])),
        );
    }
}

/// `dx` from `dV` (see [`Tile::input_backward`]): tile `τ` gives step `mτ + i` the term
/// `Σ_j Bᵀ[j][i] dV_j`; the first two steps of every tile but the first also get the previous
/// tile's last two terms. Each step is written once. `S2 = 2α`.
#[inline(always)]
fn input_backward_body<const M: usize, const A: usize, const S2: usize>(
    bt: &[[f32; A]; A],
    dv: &[f32],
    slab: usize,
    dx: Fresh,
) {
    let q = dv.len() / A;
    let tiles = q / slab;
    assert_eq!(dx.len(), (M * tiles + A - M) * slab);
    assert_eq!(S2, 2 * A);
    let tile = |tau: usize| -> [&[f32]; A] {
        std::array::from_fn(|j| &dv[j * q + tau * slab..j * q + (tau + 1) * slab])
    };
    // Column `i` of Bᵀ: the coefficients of step `i` of a tile.
    let col = |i: usize| -> [f32; A] { std::array::from_fn(|j| bt[j][i]) };
    for (s, row) in dx.chunks_exact_mut(slab).enumerate() {
        let (tau, i) = (s / M, s % M);
        let shared = tau >= 1 && tau < tiles && i < A - M;
        if shared {
            let (now, before) = (tile(tau), tile(tau - 1));
            let (c_now, c_before) = (col(i), col(i + M));
            let coef: [f32; S2] =
                std::array::from_fn(|k| if k < A { c_now[k] } else { c_before[k - A] });
            let src: [&[f32]; S2] =
                std::array::from_fn(|k| if k < A { now[k] } else { before[k - A] });
            combine(&[coef], src, None, [row]);
        } else if tau < tiles {
            combine(&[col(i)], tile(tau), None, [row]);
        } else {
            // The last `α − m` steps: only the last tile's last terms.
            combine(&[col(i + M)], tile(tiles - 1), None, [row]);
        }
    }
}

/// `y_{mτ+r} = Σ_j Aᵀ[r][j] M_j + bias` (see [`Tile::output`]).
#[inline(always)]
fn output_body<const M: usize, const A: usize>(
    at_: &[[f32; A]; M],
    m: &[f32],
    bias: &[f32],
    y: Fresh,
) {
    let span = bias.len();
    let q = m.len() / A;
    let tiles = q / span;
    assert_eq!(y.len(), M * tiles * span);
    for (tau, steps) in y.chunks_exact_mut(M * span).enumerate() {
        let src: [&[f32]; A] =
            std::array::from_fn(|j| &m[j * q + tau * span..j * q + (tau + 1) * span]);
        combine(at_, src, Some(bias), parts(steps));
    }
}

/// Reference transpose of [`output_body`] (bias aside), for the tests.
#[cfg(test)]
fn output_backward_body<const M: usize, const A: usize>(
    at_: &[[f32; A]; M],
    dy: &[f32],
    span: usize,
    dm: &mut [f32],
) {
    let a = transpose(at_);
    let tiles = dm.len() / (A * span);
    let mut split: [&mut [f32]; A] = parts(dm);
    for tau in 0..tiles {
        let src: [&[f32]; M] =
            std::array::from_fn(|r| &dy[(M * tau + r) * span..(M * tau + r + 1) * span]);
        let dst = split
            .each_mut()
            .map(|p| super::fresh(&mut p[tau * span..(tau + 1) * span]));
        combine(&a, src, None, dst);
    }
}

vectorized! {
    fn input2(x: &[f32], slab: usize, v: &mut [f32]) {
        input_body::<2, 4>(&BT2, x, slab, v)
    }
}
vectorized! {
    fn input3(x: &[f32], slab: usize, v: &mut [f32]) {
        input_body::<3, 5>(&BT3, x, slab, v)
    }
}
vectorized! {
    fn input4(x: &[f32], slab: usize, v: &mut [f32]) {
        input_body::<4, 6>(&BT4, x, slab, v)
    }
}
vectorized! {
    fn input_backward2(dv: &[f32], slab: usize, dx: Fresh) {
        input_backward_body::<2, 4, 8>(&BT2, dv, slab, dx)
    }
}
vectorized! {
    fn input_backward3(dv: &[f32], slab: usize, dx: Fresh) {
        input_backward_body::<3, 5, 10>(&BT3, dv, slab, dx)
    }
}
vectorized! {
    fn input_backward4(dv: &[f32], slab: usize, dx: Fresh) {
        input_backward_body::<4, 6, 12>(&BT4, dv, slab, dx)
    }
}
vectorized! {
    fn output2(m: &[f32], bias: &[f32], y: Fresh) {
        output_body::<2, 4>(&AT2, m, bias, y)
    }
}
vectorized! {
    fn output3(m: &[f32], bias: &[f32], y: Fresh) {
        output_body::<3, 5>(&AT3, m, bias, y)
    }
}
vectorized! {
    fn output4(m: &[f32], bias: &[f32], y: Fresh) {
        output_body::<4, 6>(&AT4, m, bias, y)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fresh;
    use super::*;

    /// Both tiles against the direct correlation `y[t] = Σ_k x[t+k] W_k` (scalar weights,
    /// slabs of 3 independent nodes), and every transform against its transpose.
    #[test]
    fn minimal_filtering_equals_the_direct_correlation_and_its_transposes() {
        for (tile, t_out) in [(Tile::F2, 8usize), (Tile::F3, 9), (Tile::F4, 8)] {
            let slab = 3usize;
            let t = t_out + 2;
            let x: Vec<f32> = (0..t * slab)
                .map(|i| ((i * 37 % 11) as f32) - 5.0)
                .collect();
            let g = [0.5f32, -1.25, 2.0];
            let u = tile.weights(&g, 1, 1);
            let alpha = tile.alpha();
            let mut v = vec![0f32; alpha * t_out / tile.m() * slab];
            tile.input(&x, slab, &mut v);
            let mut m = v.clone();
            for (j, part) in m.chunks_exact_mut(v.len() / alpha).enumerate() {
                part.iter_mut().for_each(|e| *e *= u[j]);
            }
            let mut y = vec![f32::NAN; t_out * slab];
            tile.output(&m, &[0.25; 3], fresh(&mut y));
            for step in 0..t_out {
                for node in 0..slab {
                    let direct: f32 = (0..3)
                        .map(|k| x[(step + k) * slab + node] * g[k])
                        .sum::<f32>()
                        + 0.25;
                    let got = y[step * slab + node];
                    assert!(
                        (got - direct).abs() < 1e-4,
                        "{tile:?} step {step} node {node}: {got} vs {direct}"
                    );
                }
            }
            // Transposes: <output(m), dy> = <m, output_backward(dy)>, likewise the input and
            // the weights.
            let dy: Vec<f32> = (0..y.len()).map(|i| (i % 5) as f32 - 2.0).collect();
            let mut dm = vec![0f32; m.len()];
            tile.output_backward(&dy, slab, &mut dm);
            let mut y0 = vec![0f32; y.len()];
            tile.output(&m, &[0.0; 3], fresh(&mut y0));
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f32>();
            let (l, r) = (dot(&y0, &dy), dot(&m, &dm));
            assert!(
                (l - r).abs() < 1e-3 * l.abs().max(1.0),
                "{tile:?} output: {l} vs {r}"
            );
            let mut dx = vec![f32::NAN; x.len()];
            tile.input_backward(&dm, slab, fresh(&mut dx));
            let (l, r) = (dot(&v, &dm), dot(&x, &dx));
            assert!(
                (l - r).abs() < 1e-3 * l.abs().max(1.0),
                "{tile:?} input: {l} vs {r}"
            );
            let du: Vec<f32> = (0..alpha).map(|j| j as f32 - 1.5).collect();
            let dw = tile.weight_grad(&du, 1);
            let (l, r) = (dot(&u, &du), dot(&g, &dw));
            assert!((l - r).abs() < 1e-5, "{tile:?} weights: {l} vs {r}");
        }
    }
}
