//! Temporal convolution (STGCN `temporal_conv_layer`): forward and hand-written backward.
//!
//! Layout `[B, T, N, C]`, so for one sample the input rows `(t, n)` of step `t + k` start
//! `k·N·C` further on: the `Kt` taps are `Kt` strided products over the same buffer. STGCN's
//! residual input (the last tap's rows, through the 1×1 projection or cropped / zero-padded to
//! `c_out`) is a linear map of the last tap's rows, so it is folded into that tap's weights
//! (`W_last + R`) and costs nothing. The GLU's halves P and Q are separate products into flat
//! buffers, so every elementwise pass is one flat loop whatever the channel count. With
//! `Kt = 3` (2+ input channels, output steps a multiple of 2, 3 or 4) the products go through
//! minimal filtering instead (`super::winograd`): fewer products on transformed steps.

use std::borrow::Cow;

use super::winograd::Tile;
use super::Act;
use super::{
    add_rows, fill_rows, fresh, gemm, map_chunks, relu, relu_backward, sigmoid, sum_parts,
    winograd, written, zeroed, Fresh, LayerGrads, Mat, Scratch,
};

/// The shape and weights of one temporal convolution (the model's `TemporalConv`).
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

impl TemporalArgs<'_> {
    fn conv_channels(&self) -> usize {
        if self.act == Act::Glu {
            2 * self.c_out
        } else {
            self.c_out
        }
    }
    /// Whether the residual input goes through the 1×1 projection.
    fn projected(&self, c_in: usize) -> bool {
        self.act != Act::Sigmoid && c_in > self.c_out
    }
    /// The weights with the residual folded into the last tap's P columns: the projection, or
    /// the identity on the channels input and output share (the sigmoid layer has none).
    fn folded(&self, c: usize) -> Cow<'_, [f32]> {
        if self.act == Act::Sigmoid {
            return Cow::Borrowed(self.weight);
        }
        let (co, cc) = (self.c_out, self.conv_channels());
        let mut w = self.weight.to_vec();
        let last = &mut w[(self.kt - 1) * c * cc..];
        if self.projected(c) {
            let proj = self.proj.expect("c_in > c_out needs the 1x1 projection");
            for (row, p) in last.chunks_exact_mut(cc).zip(proj.chunks_exact(co)) {
                for (w, p) in row.iter_mut().zip(p) {
                    *w += p;
                }
            }
        } else {
            for i in 0..c.min(co) {
                last[i * cc + i] += 1.0;
            }
        }
        Cow::Owned(w)
    }
}

/// Samples in parallel when there are enough of them; else the products themselves. The choice
/// follows the thread count, but not the bits: the weight gradients are summed per sample either
/// way, and `gemm` gives the same bits with and without the pool (`kernels::tests`).
fn by_sample(b: usize) -> bool {
    b >= rayon::current_num_threads().max(2)
}

/// Temporal convolution of `x` (`[B, T, N, c_in]`, row-major) → `[B, T − Kt + 1, N, c_out]`:
/// `Σ_k x[t + k] W_k + b`, then `(P + x_in) ⊙ σ(Q)` (GLU), `relu(conv + x_in)` or `σ(conv)`.
///
/// With `save`, the GLU also returns what its backward needs, per sample `P + b + x_in` then
/// `σ(Q + b)`, `[T − Kt + 1, N, c_out]` each (other activations need only their output).
pub(crate) fn temporal_conv(
    x: &[f32],
    [b, t, n, c]: [usize; 4],
    a: &TemporalArgs,
    save: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (kt, co, cc) = (a.kt, a.c_out, a.conv_channels());
    let rows = (t + 1 - kt) * n;
    assert_eq!(x.len(), b * t * n * c);
    assert_eq!(a.weight.len(), kt * c * cc);
    assert_eq!(a.bias.len(), cc);
    let save = save && a.act == Act::Glu;
    let par = !by_sample(b);
    let w = a.folded(c);
    // One half of the products (`h = 0`: P or the whole conv, `h = 1`: Q) of sample `xb` into
    // `dst` (`[rows, c_out]`), which starts as the bias.
    let conv = |xb: &[f32], h: usize, dst: Fresh| {
        let dst = fill_rows(dst, &a.bias[h * co..(h + 1) * co]);
        for k in 0..kt {
            let xk = Mat::rows(&xb[k * n * c..], c);
            let wk = Mat::rows(&w[k * c * cc + h * co..], cc);
            gemm((rows, co, c), dst, co, xk, wk, true, par);
        }
    };
    let tile = Tile::choose(kt, t + 1 - kt, c);
    let u = tile.map(|tile| tile.weights(&w, c, cc));
    // Each half's bias over one step's rows (the minimal filtering's outputs add it per step).
    let bias_tiled: Vec<Vec<f32>> = match tile {
        Some(_) => a.bias.chunks_exact(co).map(|b| b.repeat(n)).collect(),
        None => Vec::new(),
    };
    let one = |i: usize, ob: Fresh, sb: Fresh| {
        let xb = &x[i * t * n * c..(i + 1) * t * n * c];
        // Minimal filtering: the products `M_j` of each half (`[half, j, tile rows, c_out]`),
        // then each half's outputs from its own.
        let products = tile.zip(u.as_ref()).map(|(tile, u)| {
            let (alpha, tr) = (tile.alpha(), rows / tile.m());
            let mut v = Scratch::new(alpha * tr * c);
            tile.input(xb, n * c, &mut v);
            let mut m = Scratch::new(alpha * tr * cc);
            for (hj, mj) in m.chunks_exact_mut(tr * co).enumerate() {
                let (h, j) = (hj / alpha, hj % alpha);
                let vj = Mat::rows(&v[j * tr * c..], c);
                let uj = Mat::rows(&u[j * c * cc + h * co..], cc);
                gemm((tr, co, c), mj, co, vj, uj, false, par);
            }
            (tile, m)
        });
        // Writes every value of `dst`.
        let half = |h: usize, dst: Fresh| match &products {
            Some((tile, m)) => {
                let per_half = m.len() / (cc / co);
                let m = &m[h * per_half..(h + 1) * per_half];
                tile.output(m, &bias_tiled[h], dst)
            }
            None => conv(xb, h, dst),
        };
        if !sb.is_empty() {
            let (pre, gate) = sb.split_at_mut(rows * co);
            half(0, &mut *pre);
            half(1, &mut *gate);
            // SAFETY: `half` wrote every value of both.
            let (pre, gate) = unsafe { (written(pre), written(gate)) };
            return glu_saving(pre, gate, ob);
        }
        half(0, &mut *ob);
        // SAFETY: `half` wrote every value.
        let ob = unsafe { written(ob) };
        if a.act != Act::Glu {
            return activate(a.act, ob, &[]);
        }
        let mut q = Scratch::new(rows * co);
        half(1, fresh(&mut q));
        activate(a.act, ob, &q);
    };
    let saved = if save { b * rows * cc } else { 0 };
    // SAFETY: `one` writes every value of both chunks (above).
    let (out, saved, _) =
        unsafe { map_chunks((b * rows * co, rows * co), (saved, rows * cc), par, one) };
    (out, saved)
}

vectorized! {
    /// The activation, in place, on the biased products `out` (for the GLU these are P, and
    /// `gate` holds `Q + b`).
    fn activate(act: Act, out: &mut [f32], gate: &[f32]) {
        match act {
            Act::Relu => {
                for o in out.iter_mut() {
                    *o = relu(*o);
                }
            }
            Act::Sigmoid => {
                for o in out.iter_mut() {
                    *o = sigmoid(*o);
                }
            }
            Act::Glu => {
                assert_eq!(out.len(), gate.len());
                for (o, q) in out.iter_mut().zip(gate) {
                    *o *= sigmoid(*q);
                }
            }
        }
    }
}

vectorized! {
    /// The GLU when its backward will follow: `out = pre ⊙ σ(gate)` for `pre = P + b + x_in`,
    /// and `gate` (`Q + b` on entry) becomes `σ(Q + b)`, the two saved for the backward.
    fn glu_saving(pre: &[f32], gate: &mut [f32], out: Fresh) {
        assert!(pre.len() == out.len() && gate.len() == out.len());
        for ((o, p), q) in out.iter_mut().zip(pre).zip(gate.iter_mut()) {
            let s = sigmoid(*q);
            *q = s;
            o.write(p * s);
        }
    }
}

vectorized! {
    /// The gradient of the products from the output gradient `grad`, the output `out` and (GLU)
    /// the saved `P + b + x_in`, `σ(Q + b)`: `d` is `dP` then (GLU) `dQ`, each like `grad`.
    fn activation_backward(act: Act, grad: &[f32], out: &[f32], saved: &[f32], d: &mut [f32]) {
        match act {
            Act::Glu => {
                let (dp, dq) = d.split_at_mut(grad.len());
                let (pre, gate) = saved.split_at(grad.len());
                let ds = dp.iter_mut().zip(dq.iter_mut());
                for ((g, (dp, dq)), (pre, gate)) in grad.iter().zip(ds).zip(pre.iter().zip(gate)) {
                    *dp = d_main(act, *g, 0.0, *gate);
                    *dq = d_gate(*g, *pre, *gate);
                }
            }
            Act::Relu => relu_backward(grad, out, d),
            Act::Sigmoid => {
                for ((d, g), o) in d.iter_mut().zip(grad).zip(out) {
                    *d = d_main(act, *g, *o, 0.0);
                }
            }
        }
    }
}

/// The gradient of the products (P, or the whole conv) from the output gradient `g`, the
/// output `out` and (GLU) the saved gate `σ(Q + b)`.
#[inline(always)]
fn d_main(act: Act, g: f32, out: f32, gate: f32) -> f32 {
    match act {
        Act::Glu => g * gate,
        Act::Relu => {
            if out > 0.0 {
                g
            } else {
                0.0
            }
        }
        Act::Sigmoid => g * out * (1.0 - out),
    }
}

/// The GLU's gradient of Q from the output gradient `g` and the saved `P + b + x_in`, `σ(Q + b)`.
#[inline(always)]
fn d_gate(g: f32, pre: f32, gate: f32) -> f32 {
    g * pre * gate * (1.0 - gate)
}

/// [`activation_backward`] and the transpose of [`Tile::output`] in one pass: each half's
/// `dM_j` (`dm` is `[half, α, T_out/m, span]`, a span being one step's `N·c_out` values) from one
/// sample's output gradient, without the products' gradient in between:
/// `dM_j = Σ_r Aᵀ[r][j] d_r` over the `m` steps of each tile.
#[inline(always)]
fn products_backward_body<const M: usize, const A: usize>(
    at_: &[[f32; A]; M],
    act: Act,
    grad: &[f32],
    out: &[f32],
    saved: &[f32],
    span: usize,
    dm: &mut [f32],
) {
    let glu = act == Act::Glu;
    let halves = 1 + usize::from(glu);
    let tiles = grad.len() / (M * span);
    assert!(out.len() == grad.len() && dm.len() == halves * A * tiles * span);
    let (pre, gate) = if glu {
        saved.split_at(grad.len())
    } else {
        (out, out)
    };
    let a = winograd::transpose(at_);
    let mut d = Scratch::new(M * span);
    for (h, dm) in dm.chunks_exact_mut(A * tiles * span).enumerate() {
        let mut split: [&mut [f32]; A] = winograd::parts(dm);
        for tau in 0..tiles {
            let e = M * tau * span..M * (tau + 1) * span;
            let (g, o) = (&grad[e.clone()], &out[e.clone()]);
            let (p, q) = (&pre[e.clone()], &gate[e]);
            let dz = d.iter_mut().zip(g);
            match (h, act) {
                (0, Act::Relu) => {
                    for ((d, g), o) in dz.zip(o) {
                        *d = d_main(Act::Relu, *g, *o, 0.0);
                    }
                }
                (0, Act::Sigmoid) => {
                    for ((d, g), o) in dz.zip(o) {
                        *d = d_main(Act::Sigmoid, *g, *o, 0.0);
                    }
                }
                (0, Act::Glu) => {
                    for ((d, g), q) in dz.zip(q) {
                        *d = d_main(Act::Glu, *g, 0.0, *q);
                    }
                }
                _ => {
                    for ((d, g), (p, q)) in dz.zip(p.iter().zip(q)) {
                        *d = d_gate(*g, *p, *q);
                    }
                }
            }
            let src: [&[f32]; M] = std::array::from_fn(|r| &d[r * span..(r + 1) * span]);
            let r = tau * span..(tau + 1) * span;
            let dst = split.each_mut().map(|s| fresh(&mut s[r.clone()]));
            winograd::combine(&a, src, None, dst);
        }
    }
}

vectorized! {
    fn products_backward2(act: Act, grad: &[f32], out: &[f32], saved: &[f32], span: usize, dm: &mut [f32]) {
        products_backward_body::<2, 4>(&winograd::AT2, act, grad, out, saved, span, dm)
    }
}

vectorized! {
    fn products_backward3(act: Act, grad: &[f32], out: &[f32], saved: &[f32], span: usize, dm: &mut [f32]) {
        products_backward_body::<3, 5>(&winograd::AT3, act, grad, out, saved, span, dm)
    }
}

vectorized! {
    fn products_backward4(act: Act, grad: &[f32], out: &[f32], saved: &[f32], span: usize, dm: &mut [f32]) {
        products_backward_body::<4, 6>(&winograd::AT4, act, grad, out, saved, span, dm)
    }
}

/// Backward of [`temporal_conv`] given the output gradient `grad`, the forward output `out`
/// and (GLU) the saved `P + b + x_in`, `σ(Q + b)`:
/// GLU `dP = g ⊙ σ`, `dQ = g ⊙ (P + b + x_in) ⊙ σ(1 − σ)`; ReLU `g ⊙ [out > 0]`; sigmoid
/// `g ⊙ out(1 − out)`; then `dW_k = Σ x[t+k]ᵀ dConv`, `dx[t+k] += dConv (W_k + R)ᵀ` with the
/// folded residual `R` of the last tap, whose projection's gradient is the last tap's `dW` in
/// the P columns. Under minimal filtering the same through the transforms' transposes.
pub(crate) fn temporal_conv_backward(
    x: &[f32],
    [b, t, n, c]: [usize; 4],
    a: &TemporalArgs,
    out: &[f32],
    saved: &[f32],
    grad: &[f32],
) -> LayerGrads {
    let (kt, co, cc) = (a.kt, a.c_out, a.conv_channels());
    let rows = (t + 1 - kt) * n;
    assert_eq!(grad.len(), b * rows * co);
    assert_eq!(out.len(), grad.len());
    let par = !by_sample(b);
    let w = a.folded(c);
    let tile = Tile::choose(kt, t + 1 - kt, c);
    let u = tile.map(|tile| tile.weights(&w, c, cc));
    // Weight gradient terms per sample: `dW_k`, or `dU_j` under minimal filtering.
    let taps = tile.map_or(kt, Tile::alpha);
    // Per sample: dx written in place; dW (dU) | db returned as one partial sum.
    let one = |(xb, gb, ob, sb): (&[f32], &[f32], &[f32], &[f32]), dxb: Fresh| {
        let mut part = vec![0f32; taps * c * cc + cc];
        let (dw, db) = part.split_at_mut(taps * c * cc);
        if let Some((tile, u)) = tile.zip(u.as_ref()) {
            // dM_j straight from the output gradient, db = Σ dM_1 (= Σ of every step's
            // gradient), dU_j = V_jᵀ dM_j, dV_j = dM_j U_jᵀ, then dx from dV.
            let (alpha, tr) = (tile.alpha(), rows / tile.m());
            // `[half, j, tile rows, c_out]`, as in the forward.
            let mut dm = Scratch::new(alpha * tr * cc);
            match tile {
                Tile::F2 => products_backward2(a.act, gb, ob, sb, n * co, &mut dm),
                Tile::F3 => products_backward3(a.act, gb, ob, sb, n * co, &mut dm),
                Tile::F4 => products_backward4(a.act, gb, ob, sb, n * co, &mut dm),
            }
            let dm_of = |h: usize, j: usize| &dm[(h * alpha + j) * tr * co..][..tr * co];
            for h in 0..cc / co {
                add_rows(dm_of(h, 1), &mut db[h * co..(h + 1) * co]);
            }
            let mut v = Scratch::new(alpha * tr * c);
            tile.input(xb, n * c, &mut v);
            let mut dv = Scratch::new(alpha * tr * c);
            for j in 0..alpha {
                let vt = Mat::t(&v[j * tr * c..], c);
                for h in 0..cc / co {
                    let dmj = Mat::rows(dm_of(h, j), co);
                    let dwj = &mut dw[j * c * cc + h * co..];
                    gemm((c, co, tr), dwj, cc, vt, dmj, false, par);
                    let ut = Mat::t(&u[j * c * cc + h * co..], cc);
                    gemm((tr, c, co), &mut dv[j * tr * c..], c, dmj, ut, h > 0, par);
                }
            }
            tile.input_backward(&dv, n * c, dxb);
            return part;
        }
        let mut d = Scratch::new(cc * rows);
        activation_backward(a.act, gb, ob, sb, &mut d);
        for (h, dh) in d.chunks_exact(rows * co).enumerate() {
            add_rows(dh, &mut db[h * co..(h + 1) * co]);
        }
        // The taps' products add up in dx.
        let dxb = zeroed(dxb);
        for (h, dh) in d.chunks_exact(rows * co).enumerate() {
            let dm = Mat::rows(dh, co);
            for k in 0..kt {
                let xk = Mat::t(&xb[k * n * c..], c);
                gemm(
                    (c, co, rows),
                    &mut dw[k * c * cc + h * co..],
                    cc,
                    xk,
                    dm,
                    false,
                    par,
                );
                let wk = Mat::t(&w[k * c * cc + h * co..], cc);
                gemm((rows, c, co), &mut dxb[k * n * c..], c, dm, wk, true, par);
            }
        }
        part
    };
    let (xc, gc) = (t * n * c, rows * co);
    let sc = if a.act == Act::Glu { rows * cc } else { 0 };
    let sample = |i: usize| {
        let s = &saved[i * sc..(i + 1) * sc];
        (
            &x[i * xc..(i + 1) * xc],
            &grad[i * gc..(i + 1) * gc],
            &out[i * gc..(i + 1) * gc],
            s,
        )
    };
    // SAFETY: `one` writes every value of dx (`input_backward` does, or it starts from zero).
    let (dx, _, parts) =
        unsafe { map_chunks((b * xc, xc), (0, 0), par, |i, dxb, _| one(sample(i), dxb)) };
    let part = sum_parts(parts);
    let (weight, bias) = part.split_at(taps * c * cc);
    let weight = match tile {
        Some(tile) => Cow::Owned(tile.weight_grad(weight, c * cc)),
        None => Cow::Borrowed(weight),
    };
    // The projection was folded into the last tap's P columns: its gradient is theirs.
    let proj = a.projected(c).then(|| {
        let last = &weight[(kt - 1) * c * cc..];
        last.chunks_exact(cc)
            .flat_map(|row| &row[..co])
            .copied()
            .collect()
    });
    LayerGrads {
        x: dx,
        weight: weight.to_vec(),
        bias: bias.to_vec(),
        proj,
    }
}
