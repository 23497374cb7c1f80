//! Host kernels for the pairwise distillation terms: TCD (Eqs. 7–8), SCD (Eqs. 9–10) and the
//! structural term of SKD (spec [I-8]).
//!
//! Each kernel reads the student and teacher activations as row-major `[B, T, N, C]` host
//! slices, computes the per-pair distances of both networks on the fly (nothing of size
//! `pairs × C` is ever materialised), accumulates the loss in `f64`, and — when asked — writes the
//! exact gradient of the loss with respect to the *student* activations (`sign(0) = 0`). The
//! caller injects that gradient into burn's autodiff graph with a surrogate (`super::surrogate`).
//!
//! SCD and SKD (pairs of rows within a group of up to a few hundred rows): each group (one
//! `(b, t)` slice for SCD, one sample for SKD) is transposed into a small structure-of-arrays
//! scratch `[C][rows + BLK]`; for each row `i` the partners `j > i` are processed `BLK = 16` at a
//! time, channel loop outside, so the inner loop is a fixed-width, branch-free vector update
//! (two AVX2 registers, two accumulator sets to hide the add latency). The gradient is scattered
//! the same way. TCD (pairs of at most 10 time steps per (b, n)) stays row-major: for each time
//! pair and node, the two channel rows are contiguous, reduced in 16 fixed lanes.
//!
//! On x86-64 the kernels are compiled twice and the AVX2 version is picked at run time (the
//! crate is built for baseline x86-64). The lane order of every reduction is fixed by the code,
//! so results do not depend on which version runs. Parallelism: rayon over the groups; every
//! group writes only its own slice of the gradient and returns its own loss sum, and the sums are
//! added in group order, so the results are deterministic for any thread count.

use rayon::iter::{IndexedParallelIterator, IntoParallelIterator, ParallelIterator};
use rayon::slice::ParallelSliceMut;

use super::Norm;

/// Partner rows per block in the SCD/SKD kernels (two AVX2 registers of `f32`).
const BLK: usize = 16;

/// `MASK[BLK − v ..][..BLK]` is `v` ones followed by zeros: lane mask of a partial block.
const MASK: [f32; 2 * BLK] = {
    let mut m = [0f32; 2 * BLK];
    let mut k = 0;
    while k < BLK {
        m[k] = 1.0;
        k += 1;
    }
    m
};

#[inline(always)]
fn lane_mask(valid: usize) -> &'static [f32; BLK] {
    MASK[BLK - valid..2 * BLK - valid].try_into().unwrap()
}

/// `sign(x)` with `sign(0) = 0`, branch-free.
#[inline(always)]
fn sign(x: f32) -> f32 {
    let p = if x > 0.0 { 1.0 } else { 0.0 };
    let q = if x < 0.0 { 1.0 } else { 0.0 };
    p - q
}

/// `φ(d)` and `φ'(d)` of the pair difference: `d²` / `2d` (squared) or `|d|` / `sign d` (abs).
#[inline(always)]
fn phi(norm: Norm, d: f32) -> (f32, f32) {
    match norm {
        Norm::Squared => (d * d, 2.0 * d),
        Norm::Abs => (d.abs(), sign(d)),
    }
}

#[inline(always)]
fn hsum<const W: usize>(a: &[f32; W]) -> f32 {
    a.iter().sum()
}

/// Transpose a row-major `[rows, c]` block (rows `stride` apart, channels contiguous) into
/// `dst[ch * ld + r]`.
#[inline(always)]
fn to_soa(src: &[f32], rows: usize, stride: usize, c: usize, dst: &mut [f32], ld: usize) {
    for r in 0..rows {
        let row = &src[r * stride..r * stride + c];
        for (ch, &v) in row.iter().enumerate() {
            dst[ch * ld + r] = v;
        }
    }
}

/// Inverse of [`to_soa`] for a gradient block.
#[inline(always)]
fn from_soa(src: &[f32], ld: usize, rows: usize, stride: usize, c: usize, dst: &mut [f32]) {
    for r in 0..rows {
        let row = &mut dst[r * stride..r * stride + c];
        for (ch, v) in row.iter_mut().enumerate() {
            *v = src[ch * ld + r];
        }
    }
}

/// `Σ_c |x[c][i] − x[c][j0 + k]|` (L1) or `Σ_c (x[c][i] − x[c][j0 + k])²` (SQ) for the `BLK`
/// partners `k` of row `i`. `x` is `[c][ld]` with `ld ≥ j0 + BLK`. Two accumulator sets (even
/// and odd channels) keep four independent add chains in flight.
#[inline(always)]
fn block_dist<const SQ: bool>(x: &[f32], c: usize, ld: usize, i: usize, j0: usize) -> [f32; BLK] {
    assert!(c * ld <= x.len() && j0 + BLK <= ld && i < ld);
    let p = x.as_ptr();
    #[inline(always)]
    fn add<const SQ: bool>(acc: &mut [f32; BLK], xi: f32, blk: &[f32; BLK]) {
        for k in 0..BLK {
            let d = xi - blk[k];
            acc[k] += if SQ { d * d } else { d.abs() };
        }
    }
    // SAFETY (both closures): `at + ld ≤ c·ld ≤ x.len()` for every channel offset `at` used
    // below, and `i < ld`, `j0 + BLK ≤ ld` (asserted above), so every read is inside `x`.
    let xi = |at: usize| unsafe { *p.add(at + i) };
    let blk = |at: usize| unsafe { &*(p.add(at + j0) as *const [f32; BLK]) };
    let mut acc0 = [0f32; BLK];
    let mut acc1 = [0f32; BLK];
    let mut at = 0;
    for _ in 0..c / 2 {
        add::<SQ>(&mut acc0, xi(at), blk(at));
        add::<SQ>(&mut acc1, xi(at + ld), blk(at + ld));
        at += 2 * ld;
    }
    if c % 2 == 1 {
        add::<SQ>(&mut acc0, xi(at), blk(at));
    }
    for k in 0..BLK {
        acc0[k] += acc1[k];
    }
    acc0
}

/// `acc[c][k] += v_k`, `g[c][j0 + k] −= v_k` with `v_k = f(x[c][i] − x[c][j0 + k])·w_k`, for
/// every channel `c` of the `[c][ld]` blocks `x`, `g`. The caller adds the lanes of `acc[c]` to
/// `g[c][i]` once row `i` is done ([`flush_row`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block_scatter(
    x: &[f32],
    g: &mut [f32],
    acc: &mut [[f32; BLK]],
    ld: usize,
    i: usize,
    j0: usize,
    w: &[f32; BLK],
    f: impl Fn(f32) -> f32,
) {
    let c = acc.len();
    assert!(c * ld <= x.len() && c * ld <= g.len() && j0 + BLK <= ld && i < j0);
    let (px, pg) = (x.as_ptr(), g.as_mut_ptr());
    for (ch, acc) in acc.iter_mut().enumerate() {
        let at = ch * ld;
        // SAFETY: `at + ld ≤ c·ld` bounds both buffers and `i < j0`, `j0 + BLK ≤ ld` (asserted),
        // so the reads are in bounds and the written block does not overlap anything borrowed.
        let (xi, xb, gb) = unsafe {
            (
                *px.add(at + i),
                &*(px.add(at + j0) as *const [f32; BLK]),
                &mut *(pg.add(at + j0) as *mut [f32; BLK]),
            )
        };
        for k in 0..BLK {
            let v = f(xi - xb[k]) * w[k];
            acc[k] += v;
            gb[k] -= v;
        }
    }
}

/// `g[c][i] += Σ_k acc[c][k]`, then clears `acc`.
#[inline(always)]
fn flush_row(g: &mut [f32], acc: &mut [[f32; BLK]], ld: usize, i: usize) {
    for (ch, a) in acc.iter_mut().enumerate() {
        g[ch * ld + i] += hsum(a);
        *a = [0.0; BLK];
    }
}

/// Scratch buffers of one rayon worker.
#[derive(Default)]
struct Scratch {
    s: Vec<f32>,
    t: Vec<f32>,
    g: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
}

fn zeroed(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    v.clear();
    v.resize(len, 0.0);
    v
}

// ---------------------------------------------------------------------------------------------
// SCD: pairs of nodes within one (b, t) slice.
// ---------------------------------------------------------------------------------------------

/// One SCD group: rows `0..n` of the SoA scratch (`ld = n + BLK`, padding zero). Returns
/// `Σ_{i<j} φ(D^s_ij − D^t_ij)` and, if `grad`, adds `scale · ∂/∂x_s` of it to `g`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scd_group_impl(
    xs: &[f32],
    cs: usize,
    xt: &[f32],
    ct: usize,
    n: usize,
    norm: Norm,
    scale: f32,
    g: &mut [f32],
    grad: bool,
) -> f64 {
    let ld = n + BLK;
    let (inv_s, inv_t) = (1.0 / cs as f32, 1.0 / ct as f32);
    let gscale = scale * inv_s;
    let mut total = 0f64;
    let mut acc = vec![[0f32; BLK]; if grad { cs } else { 0 }];
    for i in 0..n.saturating_sub(1) {
        let mut row_acc = [0f32; BLK];
        let mut j0 = i + 1;
        while j0 < n {
            let mask = lane_mask((n - j0).min(BLK));
            let ds = block_dist::<false>(xs, cs, ld, i, j0);
            let dt = block_dist::<false>(xt, ct, ld, i, j0);
            let mut coeff = [0f32; BLK];
            for k in 0..BLK {
                let (v, dv) = phi(norm, ds[k] * inv_s - dt[k] * inv_t);
                row_acc[k] += v * mask[k];
                coeff[k] = dv * mask[k] * gscale;
            }
            if grad {
                block_scatter(xs, g, &mut acc, ld, i, j0, &coeff, sign);
            }
            j0 += BLK;
        }
        if grad {
            flush_row(g, &mut acc, ld, i);
        }
        total += hsum(&row_acc) as f64;
    }
    total
}

crate::kernels::vectorized! {
    fn scd_group(
        xs: &[f32],
        cs: usize,
        xt: &[f32],
        ct: usize,
        n: usize,
        norm: Norm,
        scale: f32,
        g: &mut [f32],
        grad: bool,
    ) -> f64 {
        scd_group_impl(xs, cs, xt, ct, n, norm, scale, g, grad)
    }
}

/// Signature of [`scd_layer`] and [`tcd_layer`].
pub type LayerKernel =
    fn(&[f32], &[f32], [usize; 4], usize, Norm, Option<(&mut [f32], f32)>) -> PairSum;

/// Sum and pair count of one pairwise term on one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairSum {
    /// `Σ φ(D^s − D^t)` over all pairs.
    pub sum: f64,
    /// Number of pairs (the divisor of the mean).
    pub pairs: u64,
}

/// SCD of one spatial layer (Eqs. 9–10, before the mean): `Σ_{b,t,i<j} φ(SCD^s_btij −
/// SCD^t_btij)` with `SCD_btij = mean_c |F_btic − F_btjc|`.
///
/// `student` is `[b, t, n, cs]`, `teacher` `[b, t, n, ct]` (row-major). If `grad` is given it
/// is overwritten with `scale · ∂sum/∂student` (`sign(0) = 0`).
pub fn scd_layer(
    student: &[f32],
    teacher: &[f32],
    [b, t, n, cs]: [usize; 4],
    ct: usize,
    norm: Norm,
    grad: Option<(&mut [f32], f32)>,
) -> PairSum {
    let groups = b * t;
    assert_eq!(student.len(), groups * n * cs, "student shape");
    assert_eq!(teacher.len(), groups * n * ct, "teacher shape");
    let pairs = (groups * n * n.saturating_sub(1) / 2) as u64;
    if groups == 0 || n < 2 {
        if let Some((g, _)) = grad {
            g.fill(0.0);
        }
        return PairSum { sum: 0.0, pairs };
    }
    let ld = n + BLK;
    let run = |scr: &mut Scratch, gi: usize, gout: Option<(&mut [f32], f32)>| -> f64 {
        let xs = zeroed(&mut scr.s, cs * ld);
        to_soa(&student[gi * n * cs..], n, cs, cs, xs, ld);
        let xt = zeroed(&mut scr.t, ct * ld);
        to_soa(&teacher[gi * n * ct..], n, ct, ct, xt, ld);
        match gout {
            Some((gchunk, scale)) => {
                let gs = zeroed(&mut scr.g, cs * ld);
                let v = scd_group(&scr.s, cs, &scr.t, ct, n, norm, scale, gs, true);
                from_soa(&scr.g, ld, n, cs, cs, gchunk);
                v
            }
            None => scd_group(&scr.s, cs, &scr.t, ct, n, norm, 0.0, &mut [], false),
        }
    };
    let sums: Vec<f64> = match grad {
        Some((g, scale)) => {
            assert_eq!(g.len(), student.len(), "gradient shape");
            g.par_chunks_mut(n * cs)
                .enumerate()
                .map_init(Scratch::default, |scr, (gi, gc)| {
                    run(scr, gi, Some((gc, scale)))
                })
                .collect()
        }
        None => (0..groups)
            .into_par_iter()
            .map_init(Scratch::default, |scr, gi| run(scr, gi, None))
            .collect(),
    };
    PairSum {
        sum: sums.iter().sum(),
        pairs,
    }
}

// ---------------------------------------------------------------------------------------------
// TCD: pairs of time steps for each (b, n).
// ---------------------------------------------------------------------------------------------

/// `Σ_c |a_c − b_c|` with eight fixed lanes (sixteen for wide rows).
#[inline(always)]
fn l1(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..16 {
            acc[k] += (x[k] - y[k]).abs();
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += (x - y).abs();
    }
    hsum(&acc) + tail
}

/// The teacher side of one TCD sample, row-major `th` `[t][n][ct]`: `TCD^t_nij = mean_c |F_inc −
/// F_jnc|` for every pair of time steps `i < j` (`i` outer, `j` inner) and node `n` (innermost),
/// into `out` (`t(t−1)/2 · n` values).
#[inline(always)]
fn tcd_teacher_sample_impl(th: &[f32], ct: usize, t: usize, n: usize, out: &mut [f32]) {
    let inv_t = 1.0 / ct as f32;
    let lt = n * ct;
    let mut at = 0;
    for i in 0..t {
        for j in i + 1..t {
            let (ti, tj) = (&th[i * lt..(i + 1) * lt], &th[j * lt..(j + 1) * lt]);
            for k in 0..n {
                out[at + k] = l1(&ti[k * ct..(k + 1) * ct], &tj[k * ct..(k + 1) * ct]) * inv_t;
            }
            at += n;
        }
    }
}

crate::kernels::vectorized! {
    fn tcd_teacher_sample(th: &[f32], ct: usize, t: usize, n: usize, out: &mut [f32]) {
        tcd_teacher_sample_impl(th, ct, t, n, out)
    }
}

/// Values per sample of [`tcd_teacher`] for a layer of `t` time steps and `n` nodes.
pub fn tcd_teacher_len(t: usize, n: usize) -> usize {
    t * t.saturating_sub(1) / 2 * n
}

/// The teacher side of TCD for one temporal layer `[b, t, n, ct]` (row-major): per sample, the
/// [`tcd_teacher_len`] distances `TCD^t_bnij` that [`tcd_layer_given`] compares the student's
/// with. A sample's values depend on that sample alone, so they can be computed once per
/// training window and kept ([`crate::distill::cache`]).
pub fn tcd_teacher(teacher: &[f32], [b, t, n]: [usize; 3], ct: usize) -> Vec<f32> {
    assert_eq!(teacher.len(), b * t * n * ct, "teacher shape");
    let per = tcd_teacher_len(t, n);
    let mut out = vec![0f32; b * per];
    if per > 0 {
        out.par_chunks_mut(per).enumerate().for_each(|(bi, o)| {
            tcd_teacher_sample(
                &teacher[bi * t * n * ct..(bi + 1) * t * n * ct],
                ct,
                t,
                n,
                o,
            )
        });
    }
    out
}

/// One TCD sample, row-major: student `s` `[t][n][cs]`, the teacher's distances `dt` (one sample
/// of [`tcd_teacher`]), gradient `g` `[t][n][cs]`. Rows of one (time, node) are contiguous, so no
/// transpose is needed.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tcd_sample_impl(
    s: &[f32],
    cs: usize,
    dt: &[f32],
    t: usize,
    n: usize,
    norm: Norm,
    scale: f32,
    g: &mut [f32],
    grad: bool,
) -> f64 {
    let inv_s = 1.0 / cs as f32;
    let gscale = scale * inv_s;
    let ls = n * cs;
    let mut total = 0f64;
    let mut at = 0;
    for i in 0..t {
        for j in i + 1..t {
            let (si, sj) = (&s[i * ls..(i + 1) * ls], &s[j * ls..(j + 1) * ls]);
            let mut pair_sum = 0f32;
            for k in 0..n {
                let dt = dt[at + k];
                let (a, b) = (&si[k * cs..(k + 1) * cs], &sj[k * cs..(k + 1) * cs]);
                let ds = l1(a, b) * inv_s;
                let (v, dv) = phi(norm, ds - dt);
                pair_sum += v;
                if grad {
                    let coeff = dv * gscale;
                    let (lo, hi) = g.split_at_mut(j * ls);
                    let gi = &mut lo[i * ls + k * cs..i * ls + (k + 1) * cs];
                    let gj = &mut hi[k * cs..(k + 1) * cs];
                    for c in 0..cs {
                        let v = sign(a[c] - b[c]) * coeff;
                        gi[c] += v;
                        gj[c] -= v;
                    }
                }
            }
            at += n;
            total += pair_sum as f64;
        }
    }
    total
}

crate::kernels::vectorized! {
    fn tcd_sample(
        s: &[f32],
        cs: usize,
        dt: &[f32],
        t: usize,
        n: usize,
        norm: Norm,
        scale: f32,
        g: &mut [f32],
        grad: bool,
    ) -> f64 {
        tcd_sample_impl(s, cs, dt, t, n, norm, scale, g, grad)
    }
}

/// TCD of one temporal layer (Eqs. 7–8, before the mean): `Σ_{b,n,i<j} φ(TCD^s_bnij −
/// TCD^t_bnij)` with `TCD_bnij = mean_c |F_binc − F_bjnc|` over pairs of time steps.
///
/// `student` is `[b, t, n, cs]`, `teacher` `[b, t, n, ct]` (row-major). If `grad` is given it
/// is overwritten with `scale · ∂sum/∂student` (`sign(0) = 0`). The teacher's distances are
/// [`tcd_teacher`]'s, then [`tcd_layer_given`].
pub fn tcd_layer(
    student: &[f32],
    teacher: &[f32],
    [b, t, n, cs]: [usize; 4],
    ct: usize,
    norm: Norm,
    grad: Option<(&mut [f32], f32)>,
) -> PairSum {
    assert_eq!(teacher.len(), b * t * n * ct, "teacher shape");
    let dt = tcd_teacher(teacher, [b, t, n], ct);
    tcd_layer_given(student, &dt, [b, t, n, cs], norm, grad)
}

/// [`tcd_layer`] from the teacher's distances `dt` ([`tcd_teacher`]: `b ·`
/// [`tcd_teacher_len`] values) instead of its features.
pub fn tcd_layer_given(
    student: &[f32],
    dt: &[f32],
    [b, t, n, cs]: [usize; 4],
    norm: Norm,
    grad: Option<(&mut [f32], f32)>,
) -> PairSum {
    assert_eq!(student.len(), b * t * n * cs, "student shape");
    let per = tcd_teacher_len(t, n);
    assert_eq!(dt.len(), b * per, "teacher distances");
    let pairs = (b * n * t * t.saturating_sub(1) / 2) as u64;
    if b == 0 || n == 0 || t < 2 {
        if let Some((g, _)) = grad {
            g.fill(0.0);
        }
        return PairSum { sum: 0.0, pairs };
    }
    let ls = t * n * cs;
    let run = |bi: usize, gout: Option<(&mut [f32], f32)>| -> f64 {
        let (xs, d) = (
            &student[bi * ls..(bi + 1) * ls],
            &dt[bi * per..(bi + 1) * per],
        );
        match gout {
            Some((gchunk, scale)) => {
                gchunk.fill(0.0);
                tcd_sample(xs, cs, d, t, n, norm, scale, gchunk, true)
            }
            None => tcd_sample(xs, cs, d, t, n, norm, 0.0, &mut [], false),
        }
    };
    let sums: Vec<f64> = match grad {
        Some((g, scale)) => {
            assert_eq!(g.len(), student.len(), "gradient shape");
            g.par_chunks_mut(ls)
                .enumerate()
                .map(|(bi, gc)| run(bi, Some((gc, scale))))
                .collect()
        }
        None => (0..b).into_par_iter().map(|bi| run(bi, None)).collect(),
    };
    PairSum {
        sum: sums.iter().sum(),
        pairs,
    }
}

// ---------------------------------------------------------------------------------------------
// SKD structural term: normalised Euclidean distance matrices, smooth-L1.
// ---------------------------------------------------------------------------------------------

/// Smooth-L1 (Huber with β = 1, PyTorch's default) and its derivative.
#[inline(always)]
fn smooth_l1(e: f32) -> (f32, f32) {
    if e.abs() < 1.0 {
        (0.5 * e * e, e)
    } else {
        (e.abs() - 0.5, sign(e))
    }
}

/// All pair distances `‖x_i − x_j‖₂` (i < j, row-major triangle) of the SoA block `x` into
/// `out`; returns (sum, count of non-zero).
#[inline(always)]
fn pair_dists_impl(x: &[f32], c: usize, p: usize, out: &mut [f32]) -> (f64, u64) {
    let ld = p + BLK;
    let (mut sum, mut nz) = (0f64, 0u64);
    let mut at = 0;
    for i in 0..p.saturating_sub(1) {
        let mut j0 = i + 1;
        let mut row = 0f32;
        while j0 < p {
            let valid = (p - j0).min(BLK);
            let d2 = block_dist::<true>(x, c, ld, i, j0);
            let mut d = [0f32; BLK];
            for k in 0..BLK {
                d[k] = d2[k].sqrt();
            }
            for &v in &d[..valid] {
                row += v;
                nz += u64::from(v > 0.0);
            }
            out[at..at + valid].copy_from_slice(&d[..valid]);
            at += valid;
            j0 += BLK;
        }
        sum += row as f64;
    }
    (sum, nz)
}

crate::kernels::vectorized! {
    fn pair_dists(x: &[f32], c: usize, p: usize, out: &mut [f32]) -> (f64, u64) {
        pair_dists_impl(x, c, p, out)
    }
}

/// Adds `Σ_{i<j} w_ij (x_i − x_j)` to `g_i` and subtracts it from `g_j`; `w` is the row-major
/// triangle of per-pair weights.
#[inline(always)]
fn pair_scatter_impl(x: &[f32], c: usize, p: usize, w: &[f32], g: &mut [f32]) {
    let ld = p + BLK;
    let mut at = 0;
    let mut acc = vec![[0f32; BLK]; c];
    for i in 0..p.saturating_sub(1) {
        let mut j0 = i + 1;
        while j0 < p {
            let valid = (p - j0).min(BLK);
            let mut wk = [0f32; BLK];
            wk[..valid].copy_from_slice(&w[at..at + valid]);
            at += valid;
            block_scatter(x, g, &mut acc, ld, i, j0, &wk, |d| d);
            j0 += BLK;
        }
        flush_row(g, &mut acc, ld, i);
    }
}

crate::kernels::vectorized! {
    fn pair_scatter(x: &[f32], c: usize, p: usize, w: &[f32], g: &mut [f32]) {
        pair_scatter_impl(x, c, p, w, g)
    }
}

/// SKD structural term (spec [I-8]): for each sample, the Euclidean distance matrix between all
/// `p = T·N` (time, node) points of the last ST-Conv block's output, divided by the mean of its
/// non-zero entries, compared teacher vs student with smooth-L1 (β = 1); the mean over all
/// `B·p²` matrix entries (the zero diagonal included, as `F.smooth_l1_loss` on the full matrices).
/// A matrix with no non-zero entry is left unnormalised (all zeros).
///
/// `student` is `[b, p, cs]`, `teacher` `[b, p, ct]`. Returns the loss; if `grad` is given it is
/// overwritten with `scale · ∂loss/∂student` (the normaliser is differentiated too; the
/// gradient of a zero distance is taken as 0).
pub fn skd_structural(
    student: &[f32],
    teacher: &[f32],
    [b, p, cs]: [usize; 3],
    ct: usize,
    grad: Option<(&mut [f32], f32)>,
) -> f64 {
    assert_eq!(student.len(), b * p * cs, "student shape");
    assert_eq!(teacher.len(), b * p * ct, "teacher shape");
    let tri = p * p.saturating_sub(1) / 2;
    if b == 0 || tri == 0 {
        if let Some((g, _)) = grad {
            g.fill(0.0);
        }
        return 0.0;
    }
    let ld = p + BLK;
    let s0 = 2.0 / (b as f64 * p as f64 * p as f64);
    let run = |scr: &mut Scratch, bi: usize, gout: Option<(&mut [f32], f32)>| -> f64 {
        let xs = zeroed(&mut scr.s, cs * ld);
        to_soa(&student[bi * p * cs..], p, cs, cs, xs, ld);
        let xt = zeroed(&mut scr.t, ct * ld);
        to_soa(&teacher[bi * p * ct..], p, ct, ct, xt, ld);
        let ds = zeroed(&mut scr.a, tri);
        let (ss, ks) = pair_dists(&scr.s, cs, p, ds);
        let dt = zeroed(&mut scr.b, tri);
        let (st, kt) = pair_dists(&scr.t, ct, p, dt);
        let mu_s = if ks > 0 { (ss / ks as f64) as f32 } else { 1.0 };
        let mu_t = if kt > 0 { (st / kt as f64) as f32 } else { 1.0 };
        let (inv_s, inv_t) = (1.0 / mu_s, 1.0 / mu_t);
        // Loss, and h'(e) in place of the teacher distances; R = Σ h'(e_ij)·d^s_ij.
        let (mut loss, mut r) = (0f64, 0f64);
        for (d, t) in scr.a.iter().zip(scr.b.iter_mut()) {
            let (h, dh) = smooth_l1(d * inv_s - *t * inv_t);
            loss += h as f64;
            r += (dh * d) as f64;
            *t = dh;
        }
        if let Some((gchunk, scale)) = gout {
            // ∂L/∂d_ij = s0·(h'(e_ij) − R/(μ K))/μ; then ∂d_ij/∂x_i = (x_i − x_j)/d_ij.
            let corr = if ks > 0 {
                (r / (mu_s as f64 * ks as f64)) as f32
            } else {
                0.0
            };
            let f = (s0 * scale as f64) as f32 * inv_s;
            for (w, d) in scr.b.iter_mut().zip(scr.a.iter()) {
                *w = if *d > 0.0 { f * (*w - corr) / d } else { 0.0 };
            }
            let g = zeroed(&mut scr.g, cs * ld);
            pair_scatter(&scr.s, cs, p, &scr.b, g);
            from_soa(&scr.g, ld, p, cs, cs, gchunk);
        }
        loss * s0
    };
    let sums: Vec<f64> = match grad {
        Some((g, scale)) => {
            assert_eq!(g.len(), student.len(), "gradient shape");
            g.par_chunks_mut(p * cs)
                .enumerate()
                .map_init(Scratch::default, |scr, (bi, gc)| {
                    run(scr, bi, Some((gc, scale)))
                })
                .collect()
        }
        None => (0..b)
            .into_par_iter()
            .map_init(Scratch::default, |scr, bi| run(scr, bi, None))
            .collect(),
    };
    sums.iter().sum()
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
pub(super) mod tests {
    use super::*;
    use crate::rng::Rng;

    pub(crate) fn rand_vec(rng: &mut Rng, len: usize) -> Vec<f64> {
        (0..len).map(|_| rng.next_f64() * 2.0 - 1.0).collect()
    }

    pub(crate) fn f32s(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&x| x as f32).collect()
    }

    fn phi64(norm: Norm, d: f64) -> f64 {
        match norm {
            Norm::Squared => d * d,
            Norm::Abs => d.abs(),
        }
    }

    fn mean_abs(x: &[f64], i: usize, j: usize, c: usize) -> f64 {
        (0..c).map(|ch| (x[i + ch] - x[j + ch]).abs()).sum::<f64>() / c as f64
    }

    /// Naive Eqs. 9–10 sum in f64, straight from the definition.
    pub(crate) fn scd_naive(
        s: &[f64],
        t: &[f64],
        [b, tt, n, cs]: [usize; 4],
        ct: usize,
        norm: Norm,
    ) -> f64 {
        let mut sum = 0.0;
        for g in 0..b * tt {
            for i in 0..n {
                for j in i + 1..n {
                    let dsv = mean_abs(s, (g * n + i) * cs, (g * n + j) * cs, cs);
                    let dtv = mean_abs(t, (g * n + i) * ct, (g * n + j) * ct, ct);
                    sum += phi64(norm, dsv - dtv);
                }
            }
        }
        sum
    }

    /// Naive Eqs. 7–8 sum in f64.
    pub(crate) fn tcd_naive(
        s: &[f64],
        t: &[f64],
        [b, tt, n, cs]: [usize; 4],
        ct: usize,
        norm: Norm,
    ) -> f64 {
        let mut sum = 0.0;
        for bb in 0..b {
            for nn in 0..n {
                let row = |k: usize| (bb * tt + k) * n + nn;
                for i in 0..tt {
                    for j in i + 1..tt {
                        let dsv = mean_abs(s, row(i) * cs, row(j) * cs, cs);
                        let dtv = mean_abs(t, row(i) * ct, row(j) * ct, ct);
                        sum += phi64(norm, dsv - dtv);
                    }
                }
            }
        }
        sum
    }

    /// Naive SKD structural term: full `p × p` matrices, mean over `B·p²`.
    pub(crate) fn skd_naive(s: &[f64], t: &[f64], [b, p, cs]: [usize; 3], ct: usize) -> f64 {
        let dist = |x: &[f64], c: usize, bb: usize| -> Vec<f64> {
            let mut m = vec![0.0; p * p];
            for i in 0..p {
                for j in 0..p {
                    let d2: f64 = (0..c)
                        .map(|ch| (x[(bb * p + i) * c + ch] - x[(bb * p + j) * c + ch]).powi(2))
                        .sum();
                    m[i * p + j] = d2.sqrt();
                }
            }
            let nz: Vec<f64> = m.iter().copied().filter(|&v| v > 0.0).collect();
            let mu = if nz.is_empty() {
                1.0
            } else {
                nz.iter().sum::<f64>() / nz.len() as f64
            };
            m.iter().map(|v| v / mu).collect()
        };
        let mut total = 0.0;
        for bb in 0..b {
            let (ms, mt) = (dist(s, cs, bb), dist(t, ct, bb));
            for (a, c) in ms.iter().zip(&mt) {
                let e = a - c;
                total += if e.abs() < 1.0 {
                    0.5 * e * e
                } else {
                    e.abs() - 0.5
                };
            }
        }
        total / (b * p * p) as f64
    }

    type Naive = fn(&[f64], &[f64], [usize; 4], usize, Norm) -> f64;

    /// Value against the naive sum, gradient against central differences of the naive sum.
    fn check_kernel(kernel: LayerKernel, naive: Naive, dims: [usize; 4], ct: usize) {
        let mut rng = Rng::new(7, dims.iter().product::<usize>() as u64 + ct as u64);
        let len_s: usize = dims.iter().product();
        let len_t = len_s / dims[3] * ct;
        // The naive side sees exactly the f32 values the kernel sees.
        let s: Vec<f64> = f32s(&rand_vec(&mut rng, len_s))
            .iter()
            .map(|&v| v as f64)
            .collect();
        let t: Vec<f64> = f32s(&rand_vec(&mut rng, len_t))
            .iter()
            .map(|&v| v as f64)
            .collect();
        let (s32, t32) = (f32s(&s), f32s(&t));
        for norm in [Norm::Squared, Norm::Abs] {
            let want = naive(&s, &t, dims, ct, norm);
            let got = kernel(&s32, &t32, dims, ct, norm, None);
            assert!(
                (got.sum - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{dims:?} {norm:?}: {} vs {want}",
                got.sum
            );
            let mut g = vec![0f32; len_s];
            let with = kernel(&s32, &t32, dims, ct, norm, Some((&mut g, 0.5)));
            assert_eq!(
                with, got,
                "computing the gradient must not change the value"
            );
            let h = 1e-6;
            let mut sp = s.clone();
            for e in 0..len_s {
                sp[e] = s[e] + h;
                let up = naive(&sp, &t, dims, ct, norm);
                sp[e] = s[e] - h;
                let dn = naive(&sp, &t, dims, ct, norm);
                sp[e] = s[e];
                let fd = 0.5 * (up - dn) / (2.0 * h);
                assert!(
                    (g[e] as f64 - fd).abs() < 1e-5 + 1e-4 * fd.abs(),
                    "{dims:?} {norm:?} elem {e}: {} vs {fd}",
                    g[e]
                );
            }
        }
    }

    #[test]
    fn scd_kernel_matches_naive_definition_and_differences() {
        // Node counts below, at and above one block; widths not multiples of the lane count.
        for (dims, ct) in [
            ([2, 3, 4, 2], 3),
            ([1, 2, 17, 3], 5),
            ([2, 1, 40, 1], 9),
            ([1, 1, 2, 4], 1),
        ] {
            check_kernel(scd_layer, scd_naive, dims, ct);
        }
    }

    #[test]
    fn tcd_kernel_matches_naive_definition_and_differences() {
        for (dims, ct) in [
            ([2, 3, 4, 2], 3),
            ([1, 5, 11, 3], 9),
            ([3, 2, 9, 8], 2),
            ([1, 10, 1, 1], 4),
        ] {
            check_kernel(tcd_layer, tcd_naive, dims, ct);
        }
    }

    #[test]
    fn degenerate_shapes_give_zero() {
        let mut g = vec![1f32; 3];
        let one = [1f32, 1., 1.];
        let r = scd_layer(
            &[1., 2., 3.],
            &one,
            [1, 3, 1, 1],
            1,
            Norm::Squared,
            Some((&mut g, 1.)),
        );
        assert_eq!((r.sum, r.pairs), (0.0, 0));
        assert_eq!(g, vec![0.0; 3]);
        let r = tcd_layer(&[1., 2., 3.], &one, [1, 1, 3, 1], 1, Norm::Squared, None);
        assert_eq!((r.sum, r.pairs), (0.0, 0));
    }

    #[test]
    fn skd_structural_matches_naive_and_differences() {
        for (dims, ct) in [([2, 5, 2], 3), ([1, 21, 3], 7)] {
            let mut rng = Rng::new(3, 3);
            let [b, p, cs] = dims;
            let s: Vec<f64> = f32s(&rand_vec(&mut rng, b * p * cs))
                .iter()
                .map(|&v| v as f64)
                .collect();
            let t: Vec<f64> = f32s(&rand_vec(&mut rng, b * p * ct))
                .iter()
                .map(|&v| v as f64)
                .collect();
            let (s32, t32) = (f32s(&s), f32s(&t));
            let want = skd_naive(&s, &t, dims, ct);
            let mut g = vec![0f32; s.len()];
            let got = skd_structural(&s32, &t32, dims, ct, Some((&mut g, 1.0)));
            assert!((got - want).abs() < 1e-6 * want.max(1.0), "{got} vs {want}");
            assert_eq!(got, skd_structural(&s32, &t32, dims, ct, None));
            let h = 1e-6;
            let mut sp = s.clone();
            for e in 0..s.len() {
                sp[e] = s[e] + h;
                let up = skd_naive(&sp, &t, dims, ct);
                sp[e] = s[e] - h;
                let dn = skd_naive(&sp, &t, dims, ct);
                sp[e] = s[e];
                let fd = (up - dn) / (2.0 * h);
                assert!(
                    (g[e] as f64 - fd).abs() < 1e-6 + 1e-3 * fd.abs(),
                    "elem {e}: {} vs {fd}",
                    g[e]
                );
            }
        }
        // A sample whose points all coincide: no normaliser, zero loss against itself.
        let z = vec![0.5f32; 4 * 2];
        assert_eq!(skd_structural(&z, &z, [1, 4, 2], 2, None), 0.0);
    }
}
