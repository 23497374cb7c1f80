//! Deterministic t-SNE of a few hundred points, for the hidden-representation plots (paper
//! Section 4.2): the exact algorithm of the `bhtsne` crate in f64, seeded with our own
//! generator instead of the crate's unseeded random start, a fixed iteration count, and run in
//! a one-thread rayon pool so every sum is taken in the same order — the same input gives the
//! same bytes.

use bhtsne::tSNE;

use crate::rng::Rng;

/// Iterations of gradient descent (t-SNE's usual 1000).
pub const ITERATIONS: usize = 1000;
/// Perplexity for 100 points (capped for fewer, as t-SNE needs `n − 1 ≥ 3·perplexity`).
pub const PERPLEXITY: f64 = 20.0;

/// Standardises points as one block: subtracts the mean and divides by the standard deviation
/// of all coordinates together (so two models' features, of different scales, are compared by
/// their shape, not their size). A constant block becomes all zeros.
pub fn standardise(points: &mut [Vec<f64>]) {
    let count: usize = points.iter().map(Vec::len).sum();
    if count == 0 {
        return;
    }
    let mean = points.iter().flatten().sum::<f64>() / count as f64;
    let var = points
        .iter()
        .flatten()
        .map(|v| (v - mean) * (v - mean))
        .sum::<f64>()
        / count as f64;
    let sd = var.sqrt();
    for v in points.iter_mut().flatten() {
        *v = if sd > 0.0 { (*v - mean) / sd } else { 0.0 };
    }
}

/// Two-dimensional t-SNE embedding of `points` (all of one length), deterministic for `seed`.
/// Fewer than 4 points are placed on a line (t-SNE needs a few neighbours).
pub fn embed(points: &[Vec<f64>], seed: u64) -> Vec<[f64; 2]> {
    let n = points.len();
    if n < 4 {
        return (0..n).map(|i| [i as f64, 0.0]).collect();
    }
    let perplexity = PERPLEXITY.min(((n - 1) / 3) as f64 - 1.0).max(1.0);
    // The usual random start: N(0, 1e-4²) per coordinate (Box–Muller on SplitMix64).
    let mut rng = Rng::new(seed, 0x7453_4E45);
    let init: Vec<f64> = (0..2 * n)
        .map(|_| {
            let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
            let u2 = rng.next_f64();
            1e-4 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect();
    let rows: Vec<&[f64]> = points.iter().map(Vec::as_slice).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let flat: Vec<f64> = pool.install(|| {
        let mut t: tSNE<f64, &[f64]> = tSNE::new(&rows);
        t.perplexity(perplexity)
            .epochs(ITERATIONS)
            .initial_embedding(init)
            .exact(|a, b| a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum());
        t.embedding()
    });
    flat.chunks(2).map(|c| [c[0], c[1]]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clusters() -> Vec<Vec<f64>> {
        let mut rng = Rng::new(3, 1);
        (0..40)
            .map(|i| {
                let centre = if i < 20 { 0.0 } else { 10.0 };
                (0..5).map(|_| centre + rng.next_f64()).collect()
            })
            .collect()
    }

    #[test]
    fn same_input_same_embedding_and_clusters_stay_apart() {
        let p = clusters();
        let a = embed(&p, 7);
        let b = embed(&p, 7);
        assert_eq!(a, b, "deterministic");
        assert_eq!(a.len(), 40);
        let centre = |r: std::ops::Range<usize>| {
            let k = r.len() as f64;
            let s = a[r]
                .iter()
                .fold([0.0, 0.0], |s, p| [s[0] + p[0], s[1] + p[1]]);
            [s[0] / k, s[1] / k]
        };
        let (c0, c1) = (centre(0..20), centre(20..40));
        let gap = ((c0[0] - c1[0]).powi(2) + (c0[1] - c1[1]).powi(2)).sqrt();
        let spread = a[..20]
            .iter()
            .map(|p| ((p[0] - c0[0]).powi(2) + (p[1] - c0[1]).powi(2)).sqrt())
            .fold(0.0, f64::max);
        assert!(gap > spread, "gap {gap} spread {spread}");
    }

    #[test]
    fn standardise_whole_block() {
        let mut p = vec![vec![1.0, 3.0], vec![1.0, 3.0]];
        standardise(&mut p);
        assert_eq!(p, vec![vec![-1.0, 1.0], vec![-1.0, 1.0]]);
        let mut c = vec![vec![2.0; 3]];
        standardise(&mut c);
        assert_eq!(c, vec![vec![0.0; 3]]);
        assert_eq!(embed(&[vec![1.0], vec![2.0]], 1).len(), 2);
    }
}
