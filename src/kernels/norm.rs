//! STGCN's LayerNorm (joint over `[N, C]` for each sample and step): forward and hand-written
//! backward, rows in parallel. burn's generic `layer_norm` is six passes over memory on one
//! thread, with a backward step for each; here a row (`N·C` values, in cache) is read three
//! times in the forward (mean, variance, output) and twice in the backward (both sums, then
//! the gradients).

use super::{map_chunks, sum_parts, Fresh, LayerGrads};

/// LayerNorm epsilon inside the square root, as in STGCN's `layer_norm`.
pub const LN_EPS: f64 = 1e-6;

/// `K` sums `Σ_i f(a_i, b_i, c_i)` in one pass, each with eight partial sums: vectorisable, and
/// closer to the exact sum than one running total over a long row.
#[inline(always)]
fn sums<const K: usize>(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> [f32; K],
) -> [f32; K] {
    let (ca, ta) = a.as_chunks::<8>();
    let (cb, tb) = b[..a.len()].as_chunks::<8>();
    let (cc, tc) = c[..a.len()].as_chunks::<8>();
    let mut acc = [[0f32; 8]; K];
    for ((a, b), c) in ca.iter().zip(cb).zip(cc) {
        for l in 0..8 {
            for (acc, v) in acc.iter_mut().zip(f(a[l], b[l], c[l])) {
                acc[l] += v;
            }
        }
    }
    let mut tail = [0f32; K];
    for ((a, b), c) in ta.iter().zip(tb).zip(tc) {
        for (t, v) in tail.iter_mut().zip(f(*a, *b, *c)) {
            *t += v;
        }
    }
    std::array::from_fn(|k| acc[k].iter().sum::<f32>() + tail[k])
}

/// One sum of [`sums`].
#[inline(always)]
fn sum3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    sums(a, b, c, |x, y, z| [f(x, y, z)])[0]
}

vectorized! {
    /// One row of [`layer_norm`]; returns `μ` and `1/√(σ² + ε)`.
    fn norm_row(x: &[f32], gamma: &[f32], beta: &[f32], out: Fresh) -> [f32; 2] {
        assert!(out.len() == x.len() && gamma.len() == x.len() && beta.len() == x.len());
        let len = x.len() as f32;
        let mean = sum3(x, x, x, |v, _, _| v) / len;
        let var = sum3(x, x, x, |v, _, _| (v - mean) * (v - mean)) / len;
        let rstd = 1.0 / (var + LN_EPS as f32).sqrt();
        for (((o, v), g), b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
            o.write((v - mean) * rstd * g + b);
        }
        [mean, rstd]
    }
}

vectorized! {
    /// One row of [`layer_norm_backward`]: writes `dx`, adds to `dγ` and `dβ`.
    fn norm_row_backward(
        x: &[f32],
        gamma: &[f32],
        grad: &[f32],
        stats: [f32; 2],
        dx: Fresh,
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        let len = x.len();
        assert!([gamma.len(), grad.len(), dx.len(), dgamma.len(), dbeta.len()] == [len; 5]);
        let ([mean, rstd], len) = (stats, len as f32);
        let [h_sum, hx_sum] = sums(grad, gamma, x, |g, w, v| [g * w, g * w * (v - mean) * rstd]);
        let (h_mean, hx_mean) = (h_sum / len, hx_sum / len);
        let params = dgamma.iter_mut().zip(dbeta.iter_mut());
        let rows = dx.iter_mut().zip(x).zip(gamma.iter().zip(grad));
        for (((dx, v), (w, g)), (dw, db)) in rows.zip(params) {
            let xh = (v - mean) * rstd;
            dx.write(rstd * (g * w - h_mean - xh * hx_mean));
            *dw += g * xh;
            *db += g;
        }
    }
}

/// Rows per parallel task: whole rows, in [`TASKS`] tasks. The tasks' partial sums of `dγ` and
/// `dβ` are added in a fixed tree ([`sum_parts`]), so the rows a task gets decide the bits of
/// the gradients: they are fixed by the shape alone, never by the thread count (a run's numbers
/// must not depend on how many threads computed them). Four tasks is the partition the code
/// chose at 1 thread before, so the runs recorded at 1 thread (`--per-device 2`, most of the
/// committed records) keep their bits; on more than 4 threads this backward pass does not use
/// them all.
fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(TASKS).max(1)
}

/// Tasks of [`layer_norm_backward`]; see [`rows_per_task`].
const TASKS: usize = 4;

/// `(x − μ) / √(σ² + ε) · γ + β` for each row of `row` values (`μ`, biased `σ²` over the row;
/// `ε` inside the square root, as STGCN's `layer_norm`). With `save`, also each row's `μ` and
/// `1/√(σ² + ε)`, which the backward needs.
pub(crate) fn layer_norm(
    x: &[f32],
    row: usize,
    gamma: &[f32],
    beta: &[f32],
    save: bool,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len() % row, 0);
    assert!(gamma.len() == row && beta.len() == row);
    // SAFETY: `norm_row` writes every value of its output row (lengths asserted there).
    let (out, _, stats) = unsafe {
        map_chunks((x.len(), row), (0, 0), false, |r, o, _| {
            norm_row(&x[r * row..(r + 1) * row], gamma, beta, o)
        })
    };
    let saved = if save { stats.concat() } else { Vec::new() };
    (out, saved)
}

/// Backward of [`layer_norm`] from the output gradient `grad` and the saved `μ, 1/√(σ² + ε)`:
/// with `x̂ = (x − μ)·r` and `h = g ⊙ γ`, `dx = r·(h − mean(h) − x̂·mean(h ⊙ x̂))` per row,
/// `dγ = Σ_rows g ⊙ x̂`, `dβ = Σ_rows g`.
pub(crate) fn layer_norm_backward(
    x: &[f32],
    row: usize,
    gamma: &[f32],
    stats: &[f32],
    grad: &[f32],
) -> LayerGrads {
    assert_eq!(x.len(), grad.len());
    assert_eq!(stats.len(), 2 * (x.len() / row));
    let per_task = rows_per_task(x.len() / row);
    // SAFETY: the task's rows cover its chunk and `norm_row_backward` writes every value of
    // its row of `dx` (lengths asserted there).
    let (dx, _, parts) = unsafe {
        map_chunks((x.len(), per_task * row), (0, 0), false, |task, dxs, _| {
            // dγ then dβ, summed over this task's rows.
            let mut part = vec![0f32; 2 * row];
            let (dgamma, dbeta) = part.split_at_mut(row);
            for (i, dxr) in dxs.chunks_mut(row).enumerate() {
                let r = task * per_task + i;
                let (xr, gr) = (&x[r * row..(r + 1) * row], &grad[r * row..(r + 1) * row]);
                let stats = [stats[2 * r], stats[2 * r + 1]];
                norm_row_backward(xr, gamma, gr, stats, dxr, dgamma, dbeta);
            }
            part
        })
    };
    let params = sum_parts(parts);
    let (dgamma, dbeta) = params.split_at(row);
    LayerGrads {
        x: dx,
        weight: dgamma.to_vec(),
        bias: dbeta.to_vec(),
        proj: None,
    }
}
