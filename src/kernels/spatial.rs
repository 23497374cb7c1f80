//! Chebyshev graph convolution (STGCN `spatio_conv_layer`): forward and hand-written backward.
//!
//! Slabs (one sample at one step, `[N, c_in]`) are processed in groups laid side by side
//! (`[N, G·c_in]`), so that the graph product is one wide `[(Ks−1)·N, N] × [N, G·c_in]` product
//! even for the student's 2-channel layers (a product per slab with 2 columns would waste the
//! vector unit); groups run in parallel.

use super::{
    add_cols, add_into, add_rows, gemm, map_chunks, relu_backward, LayerGrads, Mat, Scratch,
};

/// The weights of one Chebyshev graph convolution (see [`crate::model::SpatialConv`]).
pub(crate) struct SpatialArgs<'a> {
    pub c_out: usize,
    /// `[(Ks − 1)·N, N]`: `T_1ᵀ … T_{Ks−1}ᵀ` stacked by rows (`T_0 = I` needs no product).
    pub stacked: &'a [f32],
    /// `[Ks·c_in, c_out]`: `θ_0 … θ_{Ks−1}` stacked by rows.
    pub theta: &'a [f32],
    pub bias: &'a [f32],
    /// `[c_in, c_out]` 1×1 projection of the residual when `c_in > c_out`.
    pub proj: Option<&'a [f32]>,
}

/// A sparse matrix in compressed rows. The Chebyshev terms of a real road graph are sparse
/// (PeMSD7: `T_1` 3.6 %, `T_2` 6.3 % non-zero), so their products skip the zeros: the same sums
/// without the zero terms.
struct Csr {
    ptr: Vec<usize>,
    idx: Vec<usize>,
    val: Vec<f32>,
}

impl Csr {
    /// Below this share of non-zeros the sparse product beats the dense one (measured on the
    /// 2-core machine: the sparse row loop runs at a fraction of the dense product's speed).
    const MAX_DENSITY: f64 = 0.2;

    /// `dense` (`rows × cols`, row-major) in compressed rows when it is sparse enough.
    fn if_sparse(dense: &[f32], rows: usize, cols: usize) -> Option<Self> {
        let nnz = dense.iter().filter(|v| **v != 0.0).count();
        if nnz as f64 > Self::MAX_DENSITY * (rows * cols) as f64 {
            return None;
        }
        let mut csr = Csr {
            ptr: Vec::with_capacity(rows + 1),
            idx: Vec::with_capacity(nnz),
            val: Vec::with_capacity(nnz),
        };
        csr.ptr.push(0);
        for row in dense.chunks(cols) {
            for (j, &v) in row.iter().enumerate().filter(|(_, v)| **v != 0.0) {
                csr.idx.push(j);
                csr.val.push(v);
            }
            csr.ptr.push(csr.idx.len());
        }
        Some(csr)
    }

    fn row(&self, i: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let r = self.ptr[i]..self.ptr[i + 1];
        self.idx[r.clone()]
            .iter()
            .copied()
            .zip(self.val[r].iter().copied())
    }

    /// `out = self · x`, `x` being `cols × w` row-major.
    fn mul(&self, x: &[f32], w: usize, out: &mut [f32]) {
        for (i, o) in out.chunks_mut(w).enumerate().take(self.ptr.len() - 1) {
            o.fill(0.0);
            for (j, v) in self.row(i) {
                for (acc, xv) in o.iter_mut().zip(&x[j * w..(j + 1) * w]) {
                    *acc += v * xv;
                }
            }
        }
    }

    /// `out = Σ_k B_kᵀ · d_k` where the rows of `self` are the blocks `B_1, B_2, …` of `n` rows
    /// each and `d` stacks the matching `n × w` blocks `d_k`.
    fn mul_t_blocks(&self, d: &[f32], w: usize, n: usize, out: &mut [f32]) {
        out.fill(0.0);
        for i in 0..self.ptr.len() - 1 {
            let di = &d[i * w..(i + 1) * w];
            for (j, v) in self.row(i) {
                debug_assert!(j < n);
                for (acc, dv) in out[j * w..(j + 1) * w].iter_mut().zip(di) {
                    *acc += v * dv;
                }
            }
        }
    }
}

vectorized! {
    /// `out = relu(out + b + x_in)` for one slab (`out` holds the graph convolution): `x_in` is
    /// the projected residual `res` when there is one, else `x` (`c` channels) cropped or
    /// zero-padded to `c_out`.
    fn bias_residual_relu(out: &mut [f32], bias: &[f32], res: &[f32], x: &[f32], c: usize) {
        let co = bias.len();
        let keep = c.min(co);
        for (r, o) in out.chunks_exact_mut(co).enumerate() {
            if !res.is_empty() {
                let x_in = &res[r * co..(r + 1) * co];
                for ((o, b), x) in o.iter_mut().zip(bias).zip(x_in) {
                    *o = (*o + b + x).max(0.0);
                }
                continue;
            }
            let (with_x, padded) = o.split_at_mut(keep);
            for ((o, b), x) in with_x.iter_mut().zip(bias).zip(&x[r * c..r * c + keep]) {
                *o = (*o + b + x).max(0.0);
            }
            for (o, b) in padded.iter_mut().zip(&bias[keep..]) {
                *o = (*o + b).max(0.0);
            }
        }
    }
}

/// How slabs are grouped: `(slabs per group, whether products use the pool themselves)`.
fn grouping(slabs: usize, c: usize) -> (usize, bool) {
    let threads = rayon::current_num_threads().max(2);
    // About 256 columns per graph product, and at least one group per thread.
    let group = (256 / c).clamp(1, slabs.div_ceil(threads).max(1));
    (group, slabs.div_ceil(group) < threads)
}

/// Chebyshev graph convolution of `x` (`[B, T, N, c_in]`) → `[B, T, N, c_out]`:
/// `relu(Σ_k T_kᵀ x θ_k + b + x_in)` for every slab. With `save`, also returns the graph
/// products `z` of every group (what the backward needs besides the output).
pub(crate) fn spatial_conv(
    x: &[f32],
    [b, t, n, c]: [usize; 4],
    a: &SpatialArgs,
    save: bool,
) -> (Vec<f32>, Vec<f32>) {
    let co = a.c_out;
    let terms = a.theta.len() / (c * co);
    assert_eq!(x.len(), b * t * n * c);
    assert_eq!(a.theta.len(), terms * c * co);
    assert_eq!(a.stacked.len(), (terms - 1) * n * n);
    let slabs = b * t;
    let (group, par) = grouping(slabs, c);
    let projected = c > co;
    let sparse = Csr::if_sparse(a.stacked, (terms - 1) * n, n);
    let zlen = |g: usize| (terms - 1) * n * g * c;
    let zsaved = (if save { zlen(slabs) } else { 0 }, zlen(group));
    let (out, z, _) = map_chunks(
        (slabs * n * co, group * n * co),
        zsaved,
        par,
        |gi, og, zg| {
            let xg = &x[gi * group * n * c..(gi * group * n * c + og.len() / co * c)];
            let g = xg.len() / (n * c);
            let w = g * c;
            let mut xt = Scratch::new(n * w);
            // The graph products go to the saved state when the backward needs them.
            let mut z_tmp = Scratch::new(if save { 0 } else { zlen(g) });
            let z = if save { zg } else { &mut z_tmp[..] };
            let mut res = Scratch::new(if projected { n * co } else { 0 });
            // xt[node, slab·c + ch] = x[slab, node, ch]
            for (s, xs) in xg.chunks(n * c).enumerate() {
                for r in 0..n {
                    xt[r * w + s * c..r * w + s * c + c].copy_from_slice(&xs[r * c..r * c + c]);
                }
            }
            // z = [T_1ᵀ; …] xt: every higher-order term of every slab of the group at once.
            match &sparse {
                Some(csr) => csr.mul(&xt, w, z),
                None => {
                    let (st, xm) = (Mat::rows(a.stacked, n), Mat::rows(&xt, w));
                    gemm(((terms - 1) * n, w, n), z, w, st, xm, false, par);
                }
            }
            for (s, (xs, os)) in xg.chunks(n * c).zip(og.chunks_mut(n * co)).enumerate() {
                let dims = (n, co, c);
                let xm = Mat::rows(xs, c);
                gemm(dims, os, co, xm, Mat::rows(a.theta, co), false, par);
                for k in 1..terms {
                    let zk = Mat::rows(&z[(k - 1) * n * w + s * c..], w);
                    let theta_k = Mat::rows(&a.theta[k * c * co..], co);
                    gemm(dims, os, co, zk, theta_k, true, par);
                }
                if projected {
                    let proj = a.proj.expect("c_in > c_out needs the 1x1 projection");
                    gemm(dims, &mut res, co, xm, Mat::rows(proj, co), false, par);
                }
                bias_residual_relu(os, a.bias, &res, xs, c);
            }
        },
    );
    (out, z)
}

/// Backward of [`spatial_conv`] (the graph is a constant) from the output gradient, the output and the saved products:
/// `D = g ⊙ [out > 0]`, `dθ_0 = Σ xᵀ D`, `dθ_k = Σ z_kᵀ D`, `db = Σ D`,
/// `dx = D θ_0ᵀ + Σ_k T_k (D θ_kᵀ)` plus the residual's share.
pub(crate) fn spatial_conv_backward(
    x: &[f32],
    [b, t, n, c]: [usize; 4],
    a: &SpatialArgs,
    out: &[f32],
    saved: &[f32],
    grad: &[f32],
) -> LayerGrads {
    let co = a.c_out;
    let terms = a.theta.len() / (c * co);
    let slabs = b * t;
    assert_eq!(grad.len(), slabs * n * co);
    assert_eq!(saved.len(), (terms - 1) * n * c * slabs);
    let (group, par) = grouping(slabs, c);
    let projected = c > co;
    let sparse = Csr::if_sparse(a.stacked, (terms - 1) * n, n);
    let n_proj = if projected { c * co } else { 0 };
    let part_len = terms * c * co + co + n_proj;
    let one = |gi: usize, dxg: &mut [f32]| -> Vec<f32> {
        let g = dxg.len() / (n * c);
        let w = g * c;
        let first = gi * group;
        let xg = &x[first * n * c..(first + g) * n * c];
        let z = &saved[(terms - 1) * n * c * first..(terms - 1) * n * c * (first + g)];
        let mut part = vec![0f32; part_len];
        let (dtheta, rest) = part.split_at_mut(terms * c * co);
        let (db, dproj) = rest.split_at_mut(co);
        let mut d = Scratch::new(n * co);
        let mut dk = Scratch::new((terms - 1) * n * w);
        for s in 0..g {
            let slab = first + s;
            let (gs, os) = (
                &grad[slab * n * co..(slab + 1) * n * co],
                &out[slab * n * co..(slab + 1) * n * co],
            );
            relu_backward(gs, os, &mut d);
            add_rows(&d, db);
            let xs = &xg[s * n * c..(s + 1) * n * c];
            let dxs = &mut dxg[s * n * c..(s + 1) * n * c];
            let dm = Mat::rows(&d, co);
            gemm((c, co, n), dtheta, co, Mat::t(xs, c), dm, true, par);
            gemm((n, c, co), dxs, c, dm, Mat::t(a.theta, co), false, par);
            for k in 1..terms {
                let zk = Mat::t(&z[(k - 1) * n * w + s * c..], w);
                gemm((c, co, n), &mut dtheta[k * c * co..], co, zk, dm, true, par);
                let theta_k = Mat::t(&a.theta[k * c * co..], co);
                gemm(
                    (n, c, co),
                    &mut dk[(k - 1) * n * w + s * c..],
                    w,
                    dm,
                    theta_k,
                    false,
                    par,
                );
            }
            if projected {
                let proj = a.proj.expect("c_in > c_out needs the 1x1 projection");
                gemm((n, c, co), dxs, c, dm, Mat::t(proj, co), true, par);
                gemm((c, co, n), dproj, co, Mat::t(xs, c), dm, true, par);
            } else {
                add_cols(&d, co, dxs, c);
            }
        }
        // dx += Σ_k T_k D_k for the whole group (T_k = (stacked block k)ᵀ).
        let mut e = Scratch::new(n * w);
        match &sparse {
            Some(csr) => csr.mul_t_blocks(&dk, w, n, &mut e),
            None => {
                for k in 1..terms {
                    let tk = Mat::t(&a.stacked[(k - 1) * n * n..], n);
                    let dkm = Mat::rows(&dk[(k - 1) * n * w..], w);
                    gemm((n, w, n), &mut e, w, tk, dkm, k > 1, par);
                }
            }
        }
        for (s, dxs) in dxg.chunks_exact_mut(n * c).enumerate() {
            add_cols(&e[s * c..], w, dxs, c);
        }
        part
    };
    let (dx, _, parts) = map_chunks((slabs * n * c, group * n * c), (0, 0), par, |gi, dxg, _| {
        one(gi, dxg)
    });
    let part = parts
        .into_iter()
        .reduce(add_into)
        .expect("at least one slab");
    let (theta, rest) = part.split_at(terms * c * co);
    let (bias, proj) = rest.split_at(co);
    LayerGrads {
        x: dx,
        weight: theta.to_vec(),
        bias: bias.to_vec(),
        proj: projected.then(|| proj.to_vec()),
    }
}
