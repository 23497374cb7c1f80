//! Chebyshev graph convolution (STGCN `spatio_conv_layer`): forward and hand-written backward.
//!
//! Slabs (one sample at one step, `[N, c_in]`) are processed in groups laid side by side
//! (`[N, G·c_in]`), so that the graph product is one wide `[(Ks−1)·N, N] × [N, G·c_in]` product
//! even for the student's 2-channel layers (a product per slab with 2 columns would waste the
//! vector unit); groups run in parallel.

use super::{
    add_rows, fresh, gemm, map_chunks, relu, relu_backward, sum_parts, written, zeroed, Fresh,
    LayerGrads, Mat, Scratch,
};

/// The weights of one Chebyshev graph convolution (the model's `SpatialConv`).
pub(crate) struct SpatialArgs<'a> {
    pub c_out: usize,
    pub graph: &'a HostGraph,
    /// `[Ks·c_in, c_out]`: `θ_0 … θ_{Ks−1}` stacked by rows.
    pub theta: &'a [f32],
    pub bias: &'a [f32],
    /// `[c_in, c_out]` 1×1 projection of the residual when `c_in > c_out`.
    pub proj: Option<&'a [f32]>,
}

/// The graph on the host, built once per graph: `[(Ks − 1)·N, N]`, `T_1ᵀ … T_{Ks−1}ᵀ` stacked
/// by rows (`T_0 = I` needs no product), and, when it is sparse, the same in compressed rows
/// together with its blocks' transposes side by side (`[N, (Ks − 1)·N]`, for the backward).
#[derive(Debug)]
pub(crate) struct HostGraph {
    stacked: Vec<f32>,
    sparse: Option<(Csr, Csr)>,
}

impl HostGraph {
    pub fn new(stacked: Vec<f32>, nodes: usize) -> Self {
        let n = nodes;
        let sparse = Csr::if_sparse(&stacked, stacked.len() / n, n).map(|csr| {
            // [B_1ᵀ | B_2ᵀ | …]: row j holds B_k[i, j] at column (k − 1)·N + i.
            let blocks = stacked.len() / (n * n);
            let mut t = vec![0f32; stacked.len()];
            for (r, row) in stacked.chunks_exact(n).enumerate() {
                let (k, i) = (r / n, r % n);
                for (j, &v) in row.iter().enumerate() {
                    t[j * blocks * n + k * n + i] = v;
                }
            }
            let t = Csr::if_sparse(&t, n, blocks * n).expect("same non-zeros");
            (csr, t)
        });
        HostGraph { stacked, sparse }
    }
}

/// A sparse matrix in compressed rows. The Chebyshev terms of a real road graph are sparse
/// (PeMSD7: `T_1` 3.6 %, `T_2` 6.3 % non-zero), so their products skip the zeros: the same sums
/// without the zero terms.
#[derive(Debug)]
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

    #[inline(always)]
    fn row(&self, i: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let r = self.ptr[i]..self.ptr[i + 1];
        self.idx[r.clone()]
            .iter()
            .copied()
            .zip(self.val[r].iter().copied())
    }

    /// `out = self · x`, `x` being `cols × w` row-major; writes every value of `out`.
    fn mul<'a>(&self, x: &[f32], w: usize, out: Fresh<'a>) -> &'a mut [f32] {
        assert_eq!(out.len(), (self.ptr.len() - 1) * w);
        csr_mul(self, x, w, out);
        // SAFETY: `csr_mul` writes every row of `out` (one per row of `self`, asserted above).
        unsafe { written(out) }
    }
}

vectorized! {
    /// [`Csr::mul`]: each output row gathers the input rows of its non-zeros. With rows of a
    /// multiple of 64 values, 64 outputs at a time stay in registers over the row's non-zeros
    /// (loads only, one store), else the output row is updated per non-zero.
    fn csr_mul(csr: &Csr, x: &[f32], w: usize, out: Fresh) {
        const BLOCK: usize = 64;
        for (i, o) in out.chunks_mut(w).enumerate().take(csr.ptr.len() - 1) {
            if w.is_multiple_of(BLOCK) {
                for (b, ob) in o.chunks_exact_mut(BLOCK).enumerate() {
                    let mut acc = [0f32; BLOCK];
                    for (j, v) in csr.row(i) {
                        let at = j * w + b * BLOCK;
                        let xs: &[f32; BLOCK] = x[at..at + BLOCK].try_into().expect("block");
                        for (a, xv) in acc.iter_mut().zip(xs) {
                            *a += v * xv;
                        }
                    }
                    for (o, a) in ob.iter_mut().zip(acc) {
                        o.write(a);
                    }
                }
                continue;
            }
            let o = zeroed(o);
            for (j, v) in csr.row(i) {
                for (acc, xv) in o.iter_mut().zip(&x[j * w..(j + 1) * w]) {
                    *acc += v * xv;
                }
            }
        }
    }
}

impl SpatialArgs<'_> {
    /// `θ` with the residual folded into `θ_0`: the projection, or the identity on the
    /// channels input and output share.
    fn folded(&self, c: usize) -> Vec<f32> {
        let co = self.c_out;
        let mut theta = self.theta.to_vec();
        if c > co {
            let proj = self.proj.expect("c_in > c_out needs the 1x1 projection");
            for (t, p) in theta.iter_mut().zip(proj) {
                *t += p;
            }
        } else {
            for i in 0..c {
                theta[i * co + i] += 1.0;
            }
        }
        theta
    }
}

vectorized! {
    /// `node_major[node, s] = slab_major[s, node]` for the `g` slabs (`[N, c]` each) of a group.
    fn slabs_to_nodes(slab_major: &[f32], n: usize, c: usize, node_major: &mut [f32]) {
        let g = slab_major.len() / (n * c);
        for (s, slab) in slab_major.chunks_exact(n * c).enumerate() {
            for (node, row) in slab.chunks_exact(c).enumerate() {
                let at = (node * g + s) * c;
                node_major[at..at + c].copy_from_slice(row);
            }
        }
    }
}

vectorized! {
    /// The inverse of [`slabs_to_nodes`]; with `relu_bias`, `relu(v + bias)` on the way.
    fn nodes_to_slabs(node_major: &[f32], n: usize, c: usize, relu_bias: Option<&[f32]>, slab_major: Fresh) {
        assert!(node_major.len() == slab_major.len() && slab_major.len().is_multiple_of(n * c));
        assert!(relu_bias.is_none_or(|b| b.len() == c));
        let g = slab_major.len() / (n * c);
        for (s, slab) in slab_major.chunks_exact_mut(n * c).enumerate() {
            for (node, row) in slab.chunks_exact_mut(c).enumerate() {
                let at = (node * g + s) * c;
                let src = &node_major[at..at + c];
                match relu_bias {
                    Some(bias) => {
                        for ((o, v), b) in row.iter_mut().zip(src).zip(bias) {
                            o.write(relu(v + b));
                        }
                    }
                    None => {
                        for (o, v) in row.iter_mut().zip(src) {
                            o.write(*v);
                        }
                    }
                }
            }
        }
    }
}

/// How slabs are grouped: `(slabs per group, whether products use the pool themselves)`.
///
/// The groups decide the bits of the weight gradients (a partial sum per group, added in a fixed
/// tree), so their size is a function of the shape alone: about 256 columns per graph product,
/// and at least [`MIN_GROUPS`] groups. Whether the products use the pool (when there are fewer
/// groups than threads) follows the thread count: that changes which thread computes a value,
/// not the value (`gemm` gives the same bits either way: `kernels::tests`).
fn grouping(slabs: usize, c: usize) -> (usize, bool) {
    let group = (256 / c).clamp(1, slabs.div_ceil(MIN_GROUPS).max(1));
    (
        group,
        slabs.div_ceil(group) < rayon::current_num_threads().max(2),
    )
}

/// The fewest groups [`grouping`] forms (when there are that many slabs): the grouping the code
/// chose at 1 and 2 threads before it stopped following the thread count, so runs recorded there
/// keep their bits.
const MIN_GROUPS: usize = 2;

/// Chebyshev graph convolution of `x` (`[B, T, N, c_in]`) → `[B, T, N, c_out]`:
/// `relu(Σ_k T_kᵀ x θ_k + b + x_in)` for every slab. With `save`, also returns the graph
/// products `z` of every group (what the backward needs besides the output).
///
/// A group's slabs are laid side by side node-major (`[N, G·c_in]`, which read as rows
/// `(node, slab)` is `[N·G, c_in]`), so the graph products and the `θ` products are one product
/// each for the whole group; the residual is folded into `θ_0`.
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
    assert_eq!(a.graph.stacked.len(), (terms - 1) * n * n);
    let slabs = b * t;
    let (group, par) = grouping(slabs, c);
    let (stacked, sparse) = (&a.graph.stacked, &a.graph.sparse);
    let theta = a.folded(c);
    let zlen = |g: usize| (terms - 1) * n * g * c;
    let zsaved = (if save { zlen(slabs) } else { 0 }, zlen(group));
    // SAFETY: the closure writes every value of `og` (`nodes_to_slabs`, lengths asserted there)
    // and of `zg` (the graph products).
    let (out, z, _) = unsafe {
        map_chunks(
            (slabs * n * co, group * n * co),
            zsaved,
            par,
            |gi, og, zg| {
                let g = og.len() / (n * co);
                let (w, rows) = (g * c, n * g);
                let xg = &x[gi * group * n * c..(gi * group + g) * n * c];
                let mut xt = Scratch::new(n * w);
                slabs_to_nodes(xg, n, c, &mut xt);
                // The graph products go to the saved state when the backward needs them.
                let mut z_tmp = Scratch::new(if save { 0 } else { zlen(g) });
                let z = if save { zg } else { fresh(&mut z_tmp) };
                // z = [T_1ᵀ; …] xt: every higher-order term of every slab of the group at once.
                let z = match sparse {
                    Some((csr, _)) => csr.mul(&xt, w, z),
                    None => {
                        let (st, xm) = (Mat::rows(stacked, n), Mat::rows(&xt, w));
                        let z = zeroed(z);
                        gemm(((terms - 1) * n, w, n), z, w, st, xm, false, par);
                        z
                    }
                };
                // y = xt θ_0' + Σ_k z_k θ_k, rows (node, slab); the bias is added on the way out.
                let mut y = Scratch::new(rows * co);
                for k in 0..terms {
                    let lhs = if k == 0 {
                        &xt[..]
                    } else {
                        &z[(k - 1) * n * w..]
                    };
                    let theta_k = Mat::rows(&theta[k * c * co..], co);
                    let lhs = Mat::rows(lhs, c);
                    gemm((rows, co, c), &mut y, co, lhs, theta_k, k > 0, par);
                }
                nodes_to_slabs(&y, n, co, Some(a.bias), og);
            },
        )
    };
    (out, z)
}

/// Backward of [`spatial_conv`] (the graph is a constant) from the output gradient, the output
/// and the saved products, per group in the node-major layout: `D = g ⊙ [out > 0]`,
/// `dθ_0 = xtᵀ D`, `dθ_k = z_kᵀ D`, `db = Σ D`, `dx = D θ_0'ᵀ + Σ_k T_k (D θ_kᵀ)`; the
/// projection (folded into `θ_0`) has `dθ_0` as its gradient.
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
    let (stacked, sparse) = (&a.graph.stacked, &a.graph.sparse);
    let theta = a.folded(c);
    let one = |gi: usize, dxg: Fresh| -> Vec<f32> {
        let g = dxg.len() / (n * c);
        let (w, rows) = (g * c, n * g);
        let (first, last) = (gi * group, gi * group + g);
        let xg = &x[first * n * c..last * n * c];
        let z = &saved[(terms - 1) * n * c * first..(terms - 1) * n * c * last];
        let mut part = vec![0f32; terms * c * co + co];
        let (dtheta, db) = part.split_at_mut(terms * c * co);
        // D in the node-major layout.
        let mut d = Scratch::new(rows * co);
        {
            let mut masked = Scratch::new(rows * co);
            let range = first * n * co..last * n * co;
            relu_backward(&grad[range.clone()], &out[range], &mut masked);
            slabs_to_nodes(&masked, n, co, &mut d);
        }
        add_rows(&d, db);
        let mut xt = Scratch::new(n * w);
        slabs_to_nodes(xg, n, c, &mut xt);
        let dm = Mat::rows(&d, co);
        // dk_k = D θ_kᵀ for k ≥ 1, laid out like z; then e = Σ_k T_k dk_k.
        let mut dk = Scratch::new((terms - 1) * n * w);
        for k in 0..terms {
            let lhs = if k == 0 {
                &xt[..]
            } else {
                &z[(k - 1) * n * w..]
            };
            gemm(
                (c, co, rows),
                &mut dtheta[k * c * co..],
                co,
                Mat::t(lhs, c),
                dm,
                true,
                par,
            );
            if k > 0 {
                let theta_k = Mat::t(&theta[k * c * co..], co);
                gemm(
                    (rows, c, co),
                    &mut dk[(k - 1) * n * w..],
                    c,
                    dm,
                    theta_k,
                    false,
                    par,
                );
            }
        }
        let mut e = Scratch::new(n * w);
        match sparse {
            // e = [T_1 | T_2 | …] [dk_1; dk_2; …]: the transposed blocks side by side.
            Some((_, csr_t)) => {
                csr_t.mul(&dk, w, fresh(&mut e));
            }
            None => {
                for k in 1..terms {
                    let tk = Mat::t(&stacked[(k - 1) * n * n..], n);
                    let dkm = Mat::rows(&dk[(k - 1) * n * w..], w);
                    gemm((n, w, n), &mut e, w, tk, dkm, k > 1, par);
                }
            }
        }
        // dx = e + D θ_0'ᵀ, back to the slab-major layout.
        gemm((rows, c, co), &mut e, c, dm, Mat::t(&theta, co), true, par);
        nodes_to_slabs(&e, n, c, None, dxg);
        part
    };
    // SAFETY: `one` writes every value of its chunk (`nodes_to_slabs`, lengths asserted there).
    let (dx, _, parts) = unsafe {
        map_chunks((slabs * n * c, group * n * c), (0, 0), par, |gi, dxg, _| {
            one(gi, dxg)
        })
    };
    let part = sum_parts(parts);
    let (theta_grad, bias) = part.split_at(terms * c * co);
    LayerGrads {
        x: dx,
        weight: theta_grad.to_vec(),
        bias: bias.to_vec(),
        proj: (c > co).then(|| theta_grad[..c * co].to_vec()),
    }
}
