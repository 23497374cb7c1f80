//! STGCN's LayerNorm (joint over `[N, C]` for each sample and step): forward and hand-written
//! backward, rows in parallel. burn's generic `layer_norm` is six passes over memory on one
//! thread, with a backward step for each; here a row (`N·C` values, in cache) is read twice in
//! the forward and three times in the backward.

use rayon::prelude::*;

use super::{add_into, LayerGrads};
use crate::model::LN_EPS;

/// The sum of `xs` with eight partial sums (vectorisable, and closer to the exact sum than one
/// running total over a long row).
fn sum(xs: impl Iterator<Item = f32>) -> f32 {
    let mut acc = [0f32; 8];
    for (i, v) in xs.enumerate() {
        acc[i % 8] += v;
    }
    acc.iter().sum()
}

/// Rows per parallel task: a few tasks per thread, whole rows each.
fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(4 * rayon::current_num_threads()).max(1)
}

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
    let mut out = vec![0f32; x.len()];
    let stats: Vec<[f32; 2]> = out
        .par_chunks_mut(row)
        .zip(x.par_chunks(row))
        .map(|(o, xr)| {
            let mean = sum(xr.iter().copied()) / row as f32;
            let var = sum(xr.iter().map(|v| (v - mean) * (v - mean))) / row as f32;
            let rstd = 1.0 / (var + LN_EPS as f32).sqrt();
            for (((o, v), g), b) in o.iter_mut().zip(xr).zip(gamma).zip(beta) {
                *o = (v - mean) * rstd * g + b;
            }
            [mean, rstd]
        })
        .collect();
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
    let mut dx = vec![0f32; x.len()];
    let params = dx
        .par_chunks_mut(per_task * row)
        .enumerate()
        .map(|(task, dxs)| {
            // dγ then dβ, summed over this task's rows.
            let mut part = vec![0f32; 2 * row];
            let (dgamma, dbeta) = part.split_at_mut(row);
            for (i, dxr) in dxs.chunks_mut(row).enumerate() {
                let r = task * per_task + i;
                let (xr, gr) = (&x[r * row..(r + 1) * row], &grad[r * row..(r + 1) * row]);
                let (mean, rstd) = (stats[2 * r], stats[2 * r + 1]);
                let xhat = |v: f32| (v - mean) * rstd;
                let h_mean = sum(gr.iter().zip(gamma).map(|(g, w)| g * w)) / row as f32;
                let hx_mean = sum(gr
                    .iter()
                    .zip(gamma)
                    .zip(xr)
                    .map(|((g, w), v)| g * w * xhat(*v)))
                    / row as f32;
                for j in 0..row {
                    let (g, xh) = (gr[j], xhat(xr[j]));
                    dxr[j] = rstd * (g * gamma[j] - h_mean - xh * hx_mean);
                    dgamma[j] += g * xh;
                    dbeta[j] += g;
                }
            }
            part
        })
        .reduce_with(add_into)
        .expect("at least one row");
    let (dgamma, dbeta) = params.split_at(row);
    LayerGrads {
        x: dx,
        weight: dgamma.to_vec(),
        bias: dbeta.to_vec(),
        proj: None,
    }
}
