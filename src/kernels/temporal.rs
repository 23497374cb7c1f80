//! Temporal convolution (STGCN `temporal_conv_layer`): forward and hand-written backward.
//!
//! Layout `[B, T, N, C]`, so for one sample the input rows `(t, n)` of step `t + k` start
//! `k·N·C` further on: the `Kt` taps are `Kt` strided products over the same buffer.

use super::{
    add_cols, add_into, add_rows, gemm, gemm_rows, map_chunks, relu_backward, sigmoid, LayerGrads,
    Mat, Scratch,
};
use crate::model::Act;

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
}

/// Samples in parallel when there are enough of them; else the products themselves.
fn by_sample(b: usize) -> bool {
    b >= rayon::current_num_threads().max(2)
}

/// Temporal convolution of `x` (`[B, T, N, c_in]`, row-major) → `[B, T − Kt + 1, N, c_out]`:
/// `Σ_k x[t + k] W_k + b`, then `(P + x_in) ⊙ σ(Q)` (GLU), `relu(conv + x_in)` or `σ(conv)`.
///
/// With `save`, the GLU also returns what its backward needs, `[B, T − Kt + 1, N, 2·c_out]`:
/// `P + b + x_in` then `σ(Q + b)` per row (other activations need only their output).
pub(crate) fn temporal_conv(
    x: &[f32],
    [b, t, n, c]: [usize; 4],
    a: &TemporalArgs,
    save: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (kt, co, cc) = (a.kt, a.c_out, a.conv_channels());
    let rows = (t + 1 - kt) * n;
    let glu = a.act == Act::Glu;
    assert_eq!(x.len(), b * t * n * c);
    assert_eq!(a.weight.len(), kt * c * cc);
    assert_eq!(a.bias.len(), cc);
    let save = save && glu;
    let par = !by_sample(b);
    let projected = a.projected(c);
    // One sample: writes its output and (with `save`) its GLU state.
    let one = |i: usize, ob: &mut [f32], sb: &mut [f32]| {
        let xb = &x[i * t * n * c..(i + 1) * t * n * c];
        let mut conv = Scratch::new(rows * cc);
        for k in 0..kt {
            let w = &a.weight[k * c * cc..];
            gemm_rows(
                (rows, cc, c),
                &mut conv,
                cc,
                &xb[k * n * c..],
                c,
                w,
                cc,
                k > 0,
                par,
            );
        }
        // STGCN's residual input: the last `rows` input rows, projected or zero-padded.
        let last = &xb[(kt - 1) * n * c..];
        if projected {
            let proj = a.proj.expect("c_in > c_out needs the 1x1 projection");
            gemm_rows((rows, co, c), ob, co, last, c, proj, co, false, par);
        }
        epilogue(a.act, &conv, a.bias, last, c, projected, ob, sb);
    };
    let saved = if save { b * rows * cc } else { 0 };
    let (out, saved, _) = map_chunks((b * rows * co, rows * co), (saved, rows * cc), par, one);
    (out, saved)
}

vectorized! {
    /// Bias, STGCN's residual and the activation for one sample: `conv` (`[rows, c_conv]`, the
    /// products) → `out` (`[rows, c_out]`, holding the projected residual already when
    /// `projected`; else the residual is read from `last`, the last `rows` input rows of `c`
    /// channels). The GLU's `P + b + x_in` and `σ(Q + b)` go to `save` unless it is empty.
    fn epilogue(
        act: Act,
        conv: &[f32],
        bias: &[f32],
        last: &[f32],
        c: usize,
        projected: bool,
        out: &mut [f32],
        save: &mut [f32],
    ) {
        let cc = bias.len();
        let co = if act == Act::Glu { cc / 2 } else { cc };
        let (bp, bq) = bias.split_at(co);
        for (r, (o, p)) in out.chunks_exact_mut(co).zip(conv.chunks_exact(cc)).enumerate() {
            let (p, q) = p.split_at(co);
            if act == Act::Sigmoid {
                for ((o, p), b) in o.iter_mut().zip(p).zip(bp) {
                    *o = sigmoid(p + b);
                }
                continue;
            }
            if !projected {
                let keep = c.min(co);
                o[..keep].copy_from_slice(&last[r * c..r * c + keep]);
                o[keep..].fill(0.0);
            }
            let pb = p.iter().zip(bp).map(|(p, b)| p + b);
            if act == Act::Relu {
                for (o, pb) in o.iter_mut().zip(pb) {
                    *o = (pb + *o).max(0.0);
                }
            } else if save.is_empty() {
                for ((o, pb), (q, b)) in o.iter_mut().zip(pb).zip(q.iter().zip(bq)) {
                    *o = (pb + *o) * sigmoid(q + b);
                }
            } else {
                let (sp, sq) = save[r * cc..(r + 1) * cc].split_at_mut(co);
                let state = sp.iter_mut().zip(sq.iter_mut());
                for (((o, pb), (q, b)), (sp, sq)) in o.iter_mut().zip(pb).zip(q.iter().zip(bq)).zip(state) {
                    let (pre, gate) = (pb + *o, sigmoid(q + b));
                    *o = pre * gate;
                    (*sp, *sq) = (pre, gate);
                }
            }
        }
    }
}

vectorized! {
    /// The gradient of the products `dconv` (`[rows, c_conv]`) from the output gradient `grad`
    /// (`[rows, c_out]`), the output `out` and (GLU) the saved `P + b + x_in`, `σ(Q + b)` (see
    /// [`epilogue`]).
    fn activation_backward(
        act: Act,
        co: usize,
        grad: &[f32],
        out: &[f32],
        saved: &[f32],
        dconv: &mut [f32],
    ) {
        match act {
            Act::Glu => {
                let rows = dconv.chunks_exact_mut(2 * co).zip(grad.chunks_exact(co));
                for ((d, g), s) in rows.zip(saved.chunks_exact(2 * co)) {
                    let (dp, dq) = d.split_at_mut(co);
                    let (pre, gate) = s.split_at(co);
                    let ds = dp.iter_mut().zip(dq.iter_mut());
                    for ((g, (dp, dq)), (pre, gate)) in g.iter().zip(ds).zip(pre.iter().zip(gate)) {
                        *dp = g * gate;
                        *dq = g * pre * gate * (1.0 - gate);
                    }
                }
            }
            Act::Relu => relu_backward(grad, out, dconv),
            Act::Sigmoid => {
                for ((d, g), o) in dconv.iter_mut().zip(grad).zip(out) {
                    *d = g * o * (1.0 - o);
                }
            }
        }
    }
}

/// Backward of [`temporal_conv`] given the output gradient `grad`, the forward output `out`
/// and (GLU) the saved `P + b + x_in`, `σ(Q + b)`:
/// GLU `dP = g ⊙ σ`, `dQ = g ⊙ (P + b + x_in) ⊙ σ(1 − σ)`; ReLU `g ⊙ [out > 0]`; sigmoid
/// `g ⊙ out(1 − out)`; then `dW_k = Σ x[t+k]ᵀ dConv`, `dx[t+k] += dConv W_kᵀ`, and the residual's
/// share (`dP` into the last input steps, through the projection when there is one).
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
    let projected = a.projected(c);
    let par = !by_sample(b);
    let n_proj = if projected { c * co } else { 0 };
    // Per sample: dx written in place; dW | db | dproj returned as one partial sum.
    let one = |(xb, gb, ob, sb): (&[f32], &[f32], &[f32], &[f32]), dxb: &mut [f32]| {
        let mut dconv = Scratch::new(rows * cc);
        activation_backward(a.act, co, gb, ob, sb, &mut dconv);
        let mut part = vec![0f32; kt * c * cc + cc + n_proj];
        let (dw, rest) = part.split_at_mut(kt * c * cc);
        let (db, dproj) = rest.split_at_mut(cc);
        for k in 0..kt {
            let xk = Mat::t(&xb[k * n * c..], c);
            let dc = Mat::rows(&dconv, cc);
            gemm((c, cc, rows), &mut dw[k * c * cc..], cc, xk, dc, false, par);
            let wk = Mat::t(&a.weight[k * c * cc..], cc);
            gemm((rows, c, cc), &mut dxb[k * n * c..], c, dc, wk, true, par);
        }
        add_rows(&dconv, db);
        if a.act != Act::Sigmoid {
            // The residual's gradient is dP (GLU) or dConv (ReLU): the first c_out columns.
            let dres = Mat::rows(&dconv, cc);
            let last = (kt - 1) * n * c;
            if projected {
                let proj = a.proj.expect("c_in > c_out needs the 1x1 projection");
                let pt = Mat::t(proj, co);
                gemm((rows, c, co), &mut dxb[last..], c, dres, pt, true, par);
                let xl = Mat::t(&xb[last..], c);
                gemm((c, co, rows), dproj, co, xl, dres, false, par);
            } else {
                add_cols(&dconv, cc, &mut dxb[last..], c);
            }
        }
        part
    };
    let (xc, gc, sc) = (
        t * n * c,
        rows * co,
        if a.act == Act::Glu { rows * cc } else { 0 },
    );
    let sample = |i: usize| {
        let s = &saved[i * sc..(i + 1) * sc];
        (
            &x[i * xc..(i + 1) * xc],
            &grad[i * gc..(i + 1) * gc],
            &out[i * gc..(i + 1) * gc],
            s,
        )
    };
    let (dx, _, parts) = map_chunks((b * xc, xc), (0, 0), par, |i, dxb, _| one(sample(i), dxb));
    let part = parts
        .into_iter()
        .reduce(add_into)
        .expect("at least one sample");
    let (weight, rest) = part.split_at(kt * c * cc);
    let (bias, proj) = rest.split_at(cc);
    LayerGrads {
        x: dx,
        weight: weight.to_vec(),
        bias: bias.to_vec(),
        proj: projected.then(|| proj.to_vec()),
    }
}
