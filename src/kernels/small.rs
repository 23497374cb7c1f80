//! Products with a handful of output columns (the student's layers have 1 to 8 channels): a
//! general matrix product spends its time there on set-up, packing and edge handling. Two
//! shapes occur: tall (many rows, 1, 2 or 4 columns, few terms: forward and input gradients),
//! done a row at a time with the row's outputs in registers, and long (at most 8 × 4 outputs
//! summed over many terms: weight gradients), with all the sums in registers.

use super::Mat;

/// Whether [`product`] takes the shape `(m, n, k)`.
pub(super) fn fits((m, n, k): (usize, usize, usize)) -> bool {
    matches!(n, 1 | 2 | 4) && (tall((m, n, k)) || (m <= LONG_ROWS && k >= 16))
}

/// At most this many rows in the long shape.
const LONG_ROWS: usize = 8;

fn tall((m, _, k): (usize, usize, usize)) -> bool {
    k <= 16 && m >= 16
}

vectorized! {
    /// `dst (+)= lhs · rhs` for a shape that [`fits`]; the caller checked the bounds.
    pub(super) fn product(
        dims: (usize, usize, usize),
        dst: &mut [f32],
        dst_rs: usize,
        lhs: Mat,
        rhs: Mat,
        accumulate: bool,
    ) {
        let p = Product { dims, dst, dst_rs, lhs, rhs, accumulate };
        match dims.1 {
            1 => by_size::<1>(p),
            2 => by_size::<2>(p),
            _ => by_size::<4>(p),
        }
    }
}

/// The arguments of [`product`].
struct Product<'a, 'b> {
    dims: (usize, usize, usize),
    dst: &'b mut [f32],
    dst_rs: usize,
    lhs: Mat<'a>,
    rhs: Mat<'a>,
    accumulate: bool,
}

/// With `N` columns: the tall shape by its number of terms, the long one by its number of
/// rows, each with the size known to the compiler when it is 1, 2, 4 or 8 (loops unrolled).
#[inline(always)]
fn by_size<const N: usize>(p: Product) {
    let (m, _, k) = p.dims;
    if tall(p.dims) {
        match k {
            1 => rows_of::<N, 1>(p),
            2 => rows_of::<N, 2>(p),
            4 => rows_of::<N, 4>(p),
            8 => rows_of::<N, 8>(p),
            _ => rows_of::<N, 0>(p),
        }
    } else {
        match m {
            1 => sums_of::<N, 1>(p),
            2 => sums_of::<N, 2>(p),
            4 => sums_of::<N, 4>(p),
            8 => sums_of::<N, 8>(p),
            _ => sums_of::<N, 0>(p),
        }
    }
}

/// Row by row with the `N` outputs of a row in registers; `K` terms (`0`: `k` at run time).
#[inline(always)]
fn rows_of<const N: usize, const K: usize>(p: Product) {
    let (m, _, k) = p.dims;
    let k = if K > 0 { K } else { k };
    let (lhs, rhs) = (p.lhs, p.rhs);
    let mut w = [[0f32; N]; 16];
    for (kk, row) in w.iter_mut().enumerate().take(k) {
        for (j, v) in row.iter_mut().enumerate() {
            *v = rhs.data[kk * rhs.rs + j * rhs.cs];
        }
    }
    let w = &w[..k];
    for r in 0..m {
        let at = r * p.dst_rs;
        let d: &mut [f32; N] = (&mut p.dst[at..at + N]).try_into().unwrap();
        let mut acc = if p.accumulate { *d } else { [0f32; N] };
        for (kk, wk) in w.iter().enumerate() {
            let x = lhs.data[r * lhs.rs + kk * lhs.cs];
            for j in 0..N {
                acc[j] += x * wk[j];
            }
        }
        *d = acc;
    }
}

/// All `M × N` sums in registers (`M = 0`: `m` at run time, at most 8), one rank-1 update per
/// term.
#[inline(always)]
fn sums_of<const N: usize, const M: usize>(p: Product) {
    let (m, _, k) = p.dims;
    let m = if M > 0 { M } else { m };
    let (lhs, rhs) = (p.lhs, p.rhs);
    let mut acc = [[0f32; N]; LONG_ROWS];
    for kk in 0..k {
        let mut row = [0f32; N];
        for (j, v) in row.iter_mut().enumerate() {
            *v = rhs.data[kk * rhs.rs + j * rhs.cs];
        }
        for (i, a) in acc.iter_mut().enumerate().take(m) {
            let x = lhs.data[i * lhs.rs + kk * lhs.cs];
            for j in 0..N {
                a[j] += x * row[j];
            }
        }
    }
    for (i, a) in acc.iter().enumerate().take(m) {
        let d = &mut p.dst[i * p.dst_rs..i * p.dst_rs + N];
        for (d, a) in d.iter_mut().zip(a) {
            *d = if p.accumulate { *d + a } else { *a };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Mat;
    use super::{fits, product};
    use crate::rng::Rng;

    /// Every column count taken, 1 and 16 terms, operands row-major and transposed, a
    /// destination with a wider row stride (the gap must stay untouched), with and without
    /// accumulation, against the triple loop in f64.
    #[test]
    fn small_products_equal_the_triple_loop() {
        let mut rng = Rng::new(12, 1);
        let mut rand =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.next_f64() as f32 - 0.5).collect() };
        for (m, n, k) in [
            // Tall: 1, 2, 4, 8 terms (unrolled), 3 and 16 (at run time).
            (16, 1, 1),
            (100, 2, 3),
            (57, 4, 16),
            (33, 4, 1),
            (40, 2, 2),
            (41, 1, 4),
            (18, 4, 8),
            // Long: 1, 2, 4, 8 rows (unrolled) and 3.
            (1, 1, 16),
            (2, 2, 40),
            (4, 4, 33),
            (8, 4, 300),
            (3, 2, 17),
        ] {
            assert!(fits((m, n, k)));
            for (lt, rt, acc) in [
                (false, false, false),
                (true, true, true),
                (false, true, true),
            ] {
                let (a, b) = (rand(m * k), rand(k * n));
                let lhs = if lt { Mat::t(&a, m) } else { Mat::rows(&a, k) };
                let rhs = if rt { Mat::t(&b, k) } else { Mat::rows(&b, n) };
                let dst_rs = n + 3;
                let start = rand(m * dst_rs);
                let mut got = start.clone();
                product((m, n, k), &mut got, dst_rs, lhs, rhs, acc);
                for (i, g) in got.iter().enumerate() {
                    let (r, j) = (i / dst_rs, i % dst_rs);
                    let want = if j >= n {
                        start[i] as f64
                    } else {
                        let s: f64 = (0..k)
                            .map(|kk| {
                                lhs.data[r * lhs.rs + kk * lhs.cs] as f64
                                    * rhs.data[kk * rhs.rs + j * rhs.cs] as f64
                            })
                            .sum();
                        s + if acc { start[i] as f64 } else { 0.0 }
                    };
                    let ok = (*g as f64 - want).abs() <= 1e-5 * (1.0 + want.abs());
                    assert!(
                        ok,
                        "{m}x{n}x{k} lt {lt} rt {rt} acc {acc}: [{r}, {j}] {g} vs {want}"
                    );
                }
            }
        }
        assert!(!fits((15, 2, 2)) && !fits((100, 8, 2)) && !fits((100, 2, 17)));
        assert!(!fits((9, 2, 100)) && !fits((8, 8, 100)));
    }
}
