//! The one place that decides a comparison of two sets of runs: the claims of the reports
//! ([`super::verdicts`]) and `stkd report --against` ([`super::diff`]) both ask it.
//!
//! A comparison takes one value per seed on each side (`a` − `b`, negative: `a` is lower).
//! - Both sides hold two or more seeds in common: **paired** over those seeds. The per-seed
//!   differences `d_i = a_i − b_i` give the mean difference, its standard error `s_d / √n` and
//!   Student's t with `n − 1` degrees of freedom. Runs of one seed share their initialisation and
//!   data order, so pairing removes that shared part of the noise. Where one side holds more
//!   seeds (a model run with seeds 1–7 against one with 1–3), its other seeds are left out of
//!   this comparison: like is compared with like, and the comparison says how many it paired.
//! - Both sides have two or more seeds, but fewer than two in common: **Welch's t**, standard
//!   error `sqrt(s_a²/n_a + s_b²/n_b)`, degrees of freedom by Welch–Satterthwaite.
//! - A side with a single seed: **not judged**. One run against one run is a sign test with no
//!   noise estimate; borrowing the other side's spread is not sound (spreads differ by loss).
//!
//! The 95 % two-sided interval is `diff ± t(0.975, df) · se`. A difference whose whole interval
//! lies below zero is **lower**, above zero **higher**, otherwise **within noise**.
//!
//! Several comparisons asked together (a claim's k cells): the chance that at least one of k
//! 95 % intervals excludes zero when nothing differs grows with k (up to 1 − 0.95ᵏ). Asking
//! whether *any* of them is higher is answered at [`family_confidence`]`(k)` per comparison
//! (Bonferroni; for "is any one beyond noise", Holm's procedure decides the same), so that
//! question is wrong at most 5 % of the time however many cells it spans. Asking whether *all*
//! of them are lower needs no correction (each must pass at 95 %).

/// Two-sided confidence level of every interval the reports print.
pub const CONFIDENCE: f64 = 0.95;

/// How a comparison was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// Per-seed differences over the same seeds, Student's t with n − 1 degrees of freedom.
    Paired,
    /// Different seeds on the two sides: Welch's t.
    Welch,
}

/// What a comparison says of `a − b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// The whole 95 % interval is below zero: `a` is lower beyond noise.
    Lower,
    /// The whole interval is above zero.
    Higher,
    /// The interval contains zero.
    WithinNoise,
}

/// A judged difference of two sides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    pub test: Test,
    /// Paired: how many seeds were paired (those both sides hold); Welch: 0.
    pub pairs: usize,
    /// Mean of `a` − mean of `b`; paired: the mean per-seed difference over the paired seeds
    /// (the same number where both sides hold just those seeds).
    pub diff: f64,
    /// Standard error of `diff`.
    pub se: f64,
    /// Degrees of freedom of the t distribution.
    pub df: f64,
    /// Half-width of the 95 % interval, `t(0.975, df) · se`.
    pub half_width: f64,
    pub sign: Sign,
    /// The per-seed spread of the difference: paired, the std of the per-seed differences;
    /// Welch, `sqrt(s_a² + s_b²)` (the spread of one run of each side). What
    /// [`seeds_to_resolve`] scales.
    pub spread: f64,
}

/// A comparison of two sides, `a` − `b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Comparison {
    Judged(Judged),
    /// A side has fewer than two values: the number on each side, and the plain difference of
    /// means (printed, never judged).
    NotJudged {
        n: (usize, usize),
        diff: f64,
    },
    /// A side has no value at all.
    Empty,
}

/// Compare `a` with `b`, each a list of `(seed, value)`.
pub fn compare(a: &[(u64, f64)], b: &[(u64, f64)]) -> Comparison {
    if a.is_empty() || b.is_empty() {
        return Comparison::Empty;
    }
    // By seed, so the sums (and the bytes of a report) do not depend on the runs' order.
    let sorted = |s: &[(u64, f64)]| {
        let mut v = s.to_vec();
        v.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
        v
    };
    let (a, b) = (&sorted(a)[..], &sorted(b)[..]);
    let values = |s: &[(u64, f64)]| s.iter().map(|p| p.1).collect::<Vec<f64>>();
    let (va, vb) = (values(a), values(b));
    let diff = mean(&va) - mean(&vb);
    if va.len() < 2 || vb.len() < 2 {
        return Comparison::NotJudged {
            n: (va.len(), vb.len()),
            diff,
        };
    }
    let seeds = |s: &[(u64, f64)]| {
        let mut k: Vec<u64> = s.iter().map(|p| p.0).collect();
        k.sort_unstable();
        k
    };
    let (sa, sb) = (seeds(a), seeds(b));
    let distinct = |k: &[u64]| k.windows(2).all(|w| w[0] != w[1]);
    let shared: Vec<u64> = sa.iter().copied().filter(|s| sb.contains(s)).collect();
    let (test, pairs, diff, se, df, spread) = if distinct(&sa) && distinct(&sb) && shared.len() >= 2
    {
        let d: Vec<f64> = shared
            .iter()
            .map(|s| {
                let of = |side: &[(u64, f64)]| side.iter().find(|p| p.0 == *s).map(|p| p.1);
                of(a).unwrap_or(f64::NAN) - of(b).unwrap_or(f64::NAN)
            })
            .collect();
        let n = d.len() as f64;
        let sd = std_dev(&d);
        (Test::Paired, d.len(), mean(&d), sd / n.sqrt(), n - 1.0, sd)
    } else {
        let (na, nb) = (va.len() as f64, vb.len() as f64);
        let (qa, qb) = (variance(&va) / na, variance(&vb) / nb);
        let se = (qa + qb).sqrt();
        let df = if qa + qb == 0.0 {
            na + nb - 2.0
        } else {
            (qa + qb).powi(2) / (qa * qa / (na - 1.0) + qb * qb / (nb - 1.0))
        };
        let spread = (variance(&va) + variance(&vb)).sqrt();
        (Test::Welch, 0, diff, se, df, spread)
    };
    let half_width = t_quantile(0.5 + CONFIDENCE / 2.0, df) * se;
    let sign = sign_of(diff, half_width);
    Comparison::Judged(Judged {
        test,
        pairs,
        diff,
        se,
        df,
        half_width,
        sign,
        spread,
    })
}

/// The sign of a difference with an interval of `half_width` either side.
fn sign_of(diff: f64, half_width: f64) -> Sign {
    if !diff.is_finite() || !half_width.is_finite() {
        Sign::WithinNoise
    } else if diff + half_width < 0.0 {
        Sign::Lower
    } else if diff - half_width > 0.0 {
        Sign::Higher
    } else {
        Sign::WithinNoise
    }
}

/// The two-sided confidence of each of `k` comparisons asked together, so that "is any of
/// them beyond noise" is wrong at most `1 − CONFIDENCE` of the time: `1 − 0.05 / k`.
pub fn family_confidence(k: usize) -> f64 {
    1.0 - (1.0 - CONFIDENCE) / k.max(1) as f64
}

impl Judged {
    /// Half-width of the interval at two-sided `confidence` (`half_width` at [`CONFIDENCE`]).
    pub fn half_width_at(&self, confidence: f64) -> f64 {
        t_quantile(0.5 + confidence / 2.0, self.df) * self.se
    }

    /// The sign at two-sided `confidence` (`sign` at [`CONFIDENCE`]).
    pub fn sign_at(&self, confidence: f64) -> Sign {
        sign_of(self.diff, self.half_width_at(confidence))
    }
}

/// How many seeds per side a comparison would need to resolve a true difference of `target`
/// (its absolute value) at the per-seed `spread` measured with `test`: the smallest n ≥ 2 with
/// `t(0.975, df(n)) · spread / √n < |target|` (paired: df = n − 1; Welch with equal spreads and
/// n per side: df ≈ 2n − 2, and the standard error is `spread / √n` as well). `None` above
/// `limit` or when there is no difference to resolve.
pub fn seeds_to_resolve(spread: f64, target: f64, test: Test, limit: usize) -> Option<usize> {
    if !(target.abs() > 0.0) || !spread.is_finite() {
        return None;
    }
    (2..=limit).find(|&n| {
        let nf = n as f64;
        let df = match test {
            Test::Paired => nf - 1.0,
            Test::Welch => 2.0 * nf - 2.0,
        };
        t_quantile(0.5 + CONFIDENCE / 2.0, df) * spread / nf.sqrt() < target.abs()
    })
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample variance (n − 1 in the denominator); 0 for fewer than two values.
pub fn variance(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64
}

pub fn std_dev(v: &[f64]) -> f64 {
    variance(v).sqrt()
}

/// The `p` quantile of Student's t with `df` degrees of freedom (df > 0, real), by bisection
/// on [`t_cdf`]; accurate to about 1e-12.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) || !(df > 0.0) {
        return f64::NAN;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while t_cdf(hi, df) < p {
        hi *= 2.0;
        if hi > 1e12 {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-13 * hi.max(1.0) {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Student's t cumulative distribution: `P(T ≤ t)` with `df` degrees of freedom, through the
/// regularised incomplete beta function, `P(|T| > t) = I_{df/(df+t²)}(df/2, 1/2)`.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * incomplete_beta(0.5 * df, 0.5, x);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The regularised incomplete beta function `I_x(a, b)`, by its continued fraction (evaluated
/// with the modified Lentz method), on the side of `x` where it converges fast.
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let log_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        log_front.exp() * beta_fraction(a, b, x) / a
    } else {
        1.0 - log_front.exp() * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..1000 {
        let m = m as f64;
        // Even step, then odd step, of the continued fraction.
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + num / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    f
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine coefficients; about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// 0.975 quantiles of Student's t, from SciPy (`scipy.stats.t.ppf(0.975, df)`), computed
    /// outside this project; the integer ones also appear in every printed t table.
    #[test]
    fn t_quantiles_match_independent_values() {
        for (df, q) in [
            (1.0, 12.706_204_736_174_694),
            (2.0, 4.302_652_729_749_462),
            (3.0, 3.182_446_305_283_708),
            (4.0, 2.776_445_105_197_793),
            (5.0, 2.570_581_835_636_315),
            (10.0, 2.228_138_851_986_274),
            (30.0, 2.042_272_456_301_238),
            (2.5, 3.574_654_842_003_682),
            (3.7, 2.867_520_707_191_190),
        ] {
            let got = t_quantile(0.975, df);
            assert!(close(got, q, 1e-9), "df {df}: {got} vs {q}");
        }
        // The normal limit.
        assert!(close(t_quantile(0.975, 1e7), 1.959_963_984_540_054, 1e-6));
        assert!(close(t_quantile(0.5, 3.0), 0.0, 1e-12));
        assert!(close(t_quantile(0.025, 2.0), -4.302_652_729_749_462, 1e-9));
    }

    #[test]
    fn t_cdf_matches_independent_values() {
        // scipy.stats.t.cdf(1.0, 2) and t.cdf(-2.5, 7), computed outside this project.
        assert!(close(t_cdf(1.0, 2.0), 0.788_675_134_594_813, 1e-12));
        assert!(close(t_cdf(-2.5, 7.0), 0.020_496_109_292_876_444, 1e-12));
    }

    #[test]
    fn paired_comparison_over_the_same_seeds() {
        // Differences −0.1, −0.2, −0.15: mean −0.15, sd 0.05, se 0.05/√3, df 2.
        let a = [(1, 2.4), (2, 2.3), (3, 2.35)];
        let b = [(1, 2.5), (2, 2.5), (3, 2.5)];
        let Comparison::Judged(j) = compare(&a, &b) else {
            panic!("judged")
        };
        assert_eq!(j.test, Test::Paired);
        assert!(close(j.diff, -0.15, 1e-12));
        assert!(close(j.se, 0.05 / 3f64.sqrt(), 1e-12));
        assert_eq!(j.df, 2.0);
        // Interval −0.15 ± 4.302653 · 0.0288675 = −0.15 ± 0.1242077.
        assert!(close(j.half_width, 0.124_207_7, 1e-6));
        assert_eq!(j.sign, Sign::Lower);
        // Seed order does not matter.
        let shuffled = [(3, 2.35), (1, 2.4), (2, 2.3)];
        assert_eq!(compare(&shuffled, &b), compare(&a, &b));
    }

    #[test]
    fn pairing_removes_the_shared_seed_noise_that_welch_keeps() {
        // Seed effects of ±0.3 shared by both sides, a constant gap of 0.05.
        let b = [(1, 2.2), (2, 2.5), (3, 2.8)];
        let a: Vec<(u64, f64)> = b.iter().map(|&(s, v)| (s, v - 0.05)).collect();
        let Comparison::Judged(p) = compare(&a, &b) else {
            panic!()
        };
        assert_eq!((p.test, p.sign), (Test::Paired, Sign::Lower));
        // The same values under other seeds: Welch, far within noise.
        let other: Vec<(u64, f64)> = a.iter().map(|&(s, v)| (s + 10, v)).collect();
        let Comparison::Judged(w) = compare(&other, &b) else {
            panic!()
        };
        assert_eq!((w.test, w.sign), (Test::Welch, Sign::WithinNoise));
        // Welch: se = sqrt(0.09/3 + 0.09/3), df = 4 (equal variances and sizes).
        assert!(close(w.se, 0.06f64.sqrt(), 1e-12));
        assert!(close(w.df, 4.0, 1e-12));
        assert!(close(
            w.half_width,
            2.776_445_105_197_793 * 0.06f64.sqrt(),
            1e-9
        ));
    }

    #[test]
    fn a_side_with_more_seeds_is_paired_over_the_seeds_both_hold() {
        // Seeds 1-3 on both sides differ by −0.1, −0.2, −0.15; `a`'s seeds 4-5 are left out.
        let a = [(5, 9.0), (1, 2.4), (2, 2.3), (3, 2.35), (4, 0.0)];
        let b = [(1, 2.5), (2, 2.5), (3, 2.5)];
        let Comparison::Judged(j) = compare(&a, &b) else {
            panic!()
        };
        let Comparison::Judged(same) = compare(&a[1..4], &b) else {
            panic!()
        };
        assert_eq!((j.test, j.pairs), (Test::Paired, 3));
        assert_eq!(j, same);
        assert!(close(j.diff, -0.15, 1e-12));
        // One seed in common: not enough to pair, so Welch over every value.
        let Comparison::Judged(w) = compare(&a, &[(1, 2.5), (7, 2.6)]) else {
            panic!()
        };
        assert_eq!((w.test, w.pairs), (Test::Welch, 0));
    }

    #[test]
    fn welch_degrees_of_freedom_with_unequal_spreads() {
        // Variances 0.01 (n 3) and 0.04 (n 4): q = 0.01/3, 0.01; df = (q1+q2)² / (q1²/2 + q2²/3).
        let a = [(1, 1.0), (2, 1.1), (3, 1.2)];
        let b = [(4, 2.0), (5, 2.2), (6, 2.4), (7, 2.2 + 0.2 * 0.0)];
        let Comparison::Judged(j) = compare(&a, &b) else {
            panic!()
        };
        let vb = variance(&[2.0, 2.2, 2.4, 2.2]);
        let (q1, q2) = (0.01 / 3.0, vb / 4.0);
        let df = (q1 + q2).powi(2) / (q1 * q1 / 2.0 + q2 * q2 / 3.0);
        assert!(close(j.df, df, 1e-9), "{} vs {df}", j.df);
        assert_eq!(j.sign, Sign::Lower);
    }

    #[test]
    fn a_single_seed_is_never_judged() {
        assert_eq!(
            compare(&[(1, 2.0)], &[(1, 3.0), (2, 3.1)]),
            Comparison::NotJudged {
                n: (1, 2),
                diff: 2.0 - 3.05
            }
        );
        assert_eq!(compare(&[], &[(1, 3.0)]), Comparison::Empty);
    }

    #[test]
    fn a_family_of_comparisons_widens_each_interval() {
        assert_eq!(family_confidence(1), CONFIDENCE);
        assert!(close(family_confidence(9), 1.0 - 0.05 / 9.0, 1e-15));
        // Seeds 1-3, every difference about +1 with a small spread: higher at 95 %.
        let a = [(1, 2.0), (2, 2.1), (3, 1.9)];
        let b = [(1, 1.0), (2, 1.05), (3, 0.95)];
        let Comparison::Judged(j) = compare(&a, &b) else {
            panic!("judged")
        };
        assert_eq!(j.sign, Sign::Higher);
        assert_eq!(j.sign_at(CONFIDENCE), j.sign);
        assert!(close(j.half_width_at(CONFIDENCE), j.half_width, 1e-12));
        // Two degrees of freedom: t(1 − 0.05 / 18, 2) = 13.3604 (scipy) for 9 cells.
        assert!(close(
            j.half_width_at(family_confidence(9)),
            13.3604 * j.se,
            1e-3
        ));
        // Differences 1.0, 0.8, 1.2: diff / se = 8.66, above t(0.975, 2) = 4.30 and
        // t(1 − 0.05 / 4, 2) = 6.21 (2 cells), below 13.36 (9 cells).
        let a = [(1, 2.0), (2, 1.85), (3, 2.15)];
        let Comparison::Judged(w) = compare(&a, &b) else {
            panic!("judged")
        };
        assert_eq!(w.sign, Sign::Higher);
        assert_eq!(w.sign_at(family_confidence(2)), Sign::Higher);
        assert_eq!(w.sign_at(family_confidence(9)), Sign::WithinNoise);
    }

    #[test]
    fn seeds_needed_to_resolve_a_difference() {
        // Paired, per-seed spread 0.1, target 0.05: the smallest n with t(n−1)·0.1/√n < 0.05.
        let n = seeds_to_resolve(0.1, -0.05, Test::Paired, 1000).unwrap();
        let ok = |n: usize| t_quantile(0.975, n as f64 - 1.0) * 0.1 / (n as f64).sqrt() < 0.05;
        assert!(ok(n) && !ok(n - 1), "{n}");
        // By the normal approximation about (1.96 · 2)² ≈ 15.4, a little more with t.
        assert!((16..=20).contains(&n), "{n}");
        assert_eq!(seeds_to_resolve(0.1, 0.0, Test::Paired, 1000), None);
        assert_eq!(seeds_to_resolve(10.0, 0.001, Test::Paired, 50), None);
    }
}
