//! Temporal convolution (STGCN `temporal_conv_layer`): forward and hand-written backward.
//!
//! Layout `[B, T, N, C]`, so for one sample the input rows `(t, n)` of step `t + k` start
//! `k·N·C` further on: the `Kt` taps are `Kt` strided products over the same buffer.

use super::{add_into, gemm, gemm_rows, map_chunks, sigmoid, LayerGrads, Mat};
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
    let mut out = vec![0f32; b * rows * co];
    let par = !by_sample(b);
    let projected = a.projected(c);
    // One sample: writes its output, returns its saved GLU state (empty without `save`).
    let one = |i: usize, ob: &mut [f32]| -> Vec<f32> {
        let xb = &x[i * t * n * c..(i + 1) * t * n * c];
        let mut sb = vec![0f32; if save { rows * cc } else { 0 }];
        let mut conv = vec![0f32; rows * cc];
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
        for r in 0..rows {
            let p = &conv[r * cc..r * cc + cc];
            let o = &mut ob[r * co..(r + 1) * co];
            if a.act == Act::Sigmoid {
                for j in 0..co {
                    o[j] = sigmoid(p[j] + a.bias[j]);
                }
                continue;
            }
            if !projected {
                let xr = &last[r * c..r * c + c.min(co)];
                o[..xr.len()].copy_from_slice(xr);
                o[xr.len()..].fill(0.0);
            }
            if glu {
                for j in 0..co {
                    let pre = p[j] + a.bias[j] + o[j];
                    let gate = sigmoid(p[co + j] + a.bias[co + j]);
                    o[j] = pre * gate;
                    if save {
                        sb[r * cc + j] = pre;
                        sb[r * cc + co + j] = gate;
                    }
                }
            } else {
                for j in 0..co {
                    o[j] = (p[j] + a.bias[j] + o[j]).max(0.0);
                }
            }
        }
        sb
    };
    let saved = map_chunks(&mut out, rows * co, par, one);
    (out, saved.concat())
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
        let mut dconv = vec![0f32; rows * cc];
        for r in 0..rows {
            let (g, o, d) = (
                &gb[r * co..(r + 1) * co],
                &ob[r * co..(r + 1) * co],
                &mut dconv[r * cc..(r + 1) * cc],
            );
            match a.act {
                Act::Glu => {
                    let s = &sb[r * cc..(r + 1) * cc];
                    for j in 0..co {
                        let (pre, gate) = (s[j], s[co + j]);
                        d[j] = g[j] * gate;
                        d[co + j] = g[j] * pre * gate * (1.0 - gate);
                    }
                }
                Act::Relu => {
                    for j in 0..co {
                        d[j] = if o[j] > 0.0 { g[j] } else { 0.0 };
                    }
                }
                Act::Sigmoid => {
                    for j in 0..co {
                        d[j] = g[j] * o[j] * (1.0 - o[j]);
                    }
                }
            }
        }
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
        for d in dconv.chunks(cc) {
            for (acc, v) in db.iter_mut().zip(d) {
                *acc += v;
            }
        }
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
                for r in 0..rows {
                    let dx = &mut dxb[last + r * c..last + r * c + c.min(co)];
                    for (acc, v) in dx.iter_mut().zip(&dconv[r * cc..]) {
                        *acc += v;
                    }
                }
            }
        }
        part
    };
    let mut dx = vec![0f32; b * t * n * c];
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
    let part = map_chunks(&mut dx, xc, par, |i, dxb| one(sample(i), dxb))
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
