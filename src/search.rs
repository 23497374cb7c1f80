//! Samplers of hyperparameter searches: random and the Tree-structured Parzen Estimator (TPE,
//! Bergstra, Bardenet, Bengio, Kégl 2011, "Algorithms for Hyper-Parameter Optimization",
//! Section 4), with the defaults Optuna documents for its `TPESampler`: 10 random start-up
//! trials, the best `γ(n) = min(⌈0.1·n⌉, 25)` observations as the good group, 24 candidates
//! drawn from the good density, the candidate with the largest `l(x) / g(x)` kept; a prior
//! component of weight 1 in each density.
//!
//! Parameters are sampled one by one (univariate TPE). A uniform parameter's density is a
//! mixture of Gaussians truncated to its range, one per observation (bandwidth: the larger
//! distance to its neighbours among the sorted observations and the range's ends, clipped to
//! `[range / min(100, 1 + n), range]`) plus the prior (centre of the range, bandwidth the range);
//! a log-uniform parameter is the same in log space; a categorical one is a smoothed histogram.
//!
//! Pure: trials in, a suggestion out, no I/O. What the search minimises is the caller's (lower
//! is better here; negate a value to maximise it).
//!
//! Measured on the test's synthetic objective (30 seeds, 50 trials): TPE's best beats random
//! search's in 27 of 30 seeds, median best 0.019 against 0.262. The other 3: univariate TPE
//! samples each parameter on its own, so a categorical whose effect is small next to the
//! others' can stay locked on the option of the first good trials (with a choice worth a sixth
//! of the others, half of the seeds ended on a wrong option while nailing the rest).

use crate::rng::Rng;

/// One dimension of a search space.
#[derive(Debug, Clone, PartialEq)]
pub enum Space {
    Uniform { low: f64, high: f64 },
    LogUniform { low: f64, high: f64 },
    Choice { options: usize },
}

/// A value of one dimension: a number, or the index of a choice.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Number(f64),
    Index(usize),
}

impl Value {
    pub fn number(self) -> f64 {
        match self {
            Value::Number(x) => x,
            Value::Index(i) => i as f64,
        }
    }
}

/// A finished trial: its values (one per dimension) and its objective (lower is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub values: Vec<Value>,
    pub objective: f64,
}

/// TPE's settings (Optuna's defaults by [`Default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Tpe {
    /// Trials sampled at random before the densities are used.
    pub startup_trials: usize,
    /// Candidates drawn from the good density per parameter.
    pub candidates: usize,
    /// Weight of the prior component in each density.
    pub prior_weight: f64,
}

impl Default for Tpe {
    fn default() -> Self {
        Tpe {
            startup_trials: 10,
            candidates: 24,
            prior_weight: 1.0,
        }
    }
}

/// How many of `n` observations form the good group: `min(⌈0.1·n⌉, 25)`.
pub fn gamma(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// A draw from the whole space, uniformly (log-uniformly for log dimensions).
pub fn random_values(space: &[Space], rng: &mut Rng) -> Vec<Value> {
    space.iter().map(|s| random_value(s, rng)).collect()
}

fn random_value(s: &Space, rng: &mut Rng) -> Value {
    match *s {
        Space::Uniform { low, high } => Value::Number(low + rng.next_f64() * (high - low)),
        Space::LogUniform { low, high } => {
            let (a, b) = (low.ln(), high.ln());
            Value::Number((a + rng.next_f64() * (b - a)).exp())
        }
        Space::Choice { options } => Value::Index(rng.below(options)),
    }
}

/// Combination `index` (0-based) of a space of choices, the last dimension fastest; `None`
/// past the last combination or for a space with a dimension that is not a choice.
pub fn grid_values(space: &[Space], index: usize) -> Option<Vec<Value>> {
    let mut rest = index;
    let mut out = vec![Value::Index(0); space.len()];
    for (d, s) in space.iter().enumerate().rev() {
        let Space::Choice { options } = *s else {
            return None;
        };
        out[d] = Value::Index(rest % options.max(1));
        rest /= options.max(1);
    }
    (rest == 0).then_some(out)
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `Φ(x)`, the standard normal distribution function (Abramowitz–Stegun 7.1.26 for `erf`).
fn phi(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// A mixture of Gaussians truncated to `[low, high]`.
struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    weights: Vec<f64>,
    low: f64,
    high: f64,
}

impl Parzen {
    /// One component per observation plus the prior.
    fn new(obs: &[f64], low: f64, high: f64, prior_weight: f64) -> Self {
        let range = high - low;
        let prior_mu = 0.5 * (low + high);
        let mut mus: Vec<f64> = obs.to_vec();
        mus.push(prior_mu);
        let mut order: Vec<usize> = (0..mus.len()).collect();
        order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
        let mut sigmas = vec![0.0; mus.len()];
        let n = obs.len();
        let min_sigma = range / (100f64).min(1.0 + mus.len() as f64);
        for (k, &i) in order.iter().enumerate() {
            let left = if k == 0 { low } else { mus[order[k - 1]] };
            let right = if k + 1 == order.len() {
                high
            } else {
                mus[order[k + 1]]
            };
            sigmas[i] = (mus[i] - left).max(right - mus[i]).clamp(min_sigma, range);
        }
        sigmas[n] = range; // the prior
        let mut weights = vec![1.0; n];
        weights.push(prior_weight);
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        Parzen {
            mus,
            sigmas,
            weights,
            low,
            high,
        }
    }

    fn sample(&self, rng: &mut Rng) -> f64 {
        let u = rng.next_f64();
        let mut acc = 0.0;
        let mut k = self.weights.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            acc += w;
            if u < acc {
                k = i;
                break;
            }
        }
        // Rejection from the truncated Gaussian (the range holds at least a fair share of it).
        for _ in 0..100 {
            let x = self.mus[k] + self.sigmas[k] * normal(rng);
            if (self.low..=self.high).contains(&x) {
                return x;
            }
        }
        self.mus[k].clamp(self.low, self.high)
    }

    fn log_pdf(&self, x: f64) -> f64 {
        let mut p = 0.0;
        for ((&mu, &s), &w) in self.mus.iter().zip(&self.sigmas).zip(&self.weights) {
            let mass = phi((self.high - mu) / s) - phi((self.low - mu) / s);
            let z = (x - mu) / s;
            p += w * (-0.5 * z * z).exp()
                / (s * (2.0 * std::f64::consts::PI).sqrt())
                / mass.max(1e-12);
        }
        p.max(1e-300).ln()
    }
}

impl Tpe {
    /// The next values to try, given the finished trials (objectives NaN or infinite count as
    /// the worst). Random until `startup_trials` trials have finished.
    pub fn suggest(&self, space: &[Space], trials: &[Trial], rng: &mut Rng) -> Vec<Value> {
        let done = trials;
        if done.len() < self.startup_trials {
            return random_values(space, rng);
        }
        let mut order: Vec<usize> = (0..done.len()).collect();
        let key = |t: &Trial| {
            if t.objective.is_finite() {
                t.objective
            } else {
                f64::INFINITY
            }
        };
        order.sort_by(|&a, &b| key(&done[a]).total_cmp(&key(&done[b])));
        let n_good = gamma(done.len());
        let (good, bad) = order.split_at(n_good);
        space
            .iter()
            .enumerate()
            .map(|(d, s)| {
                let values = |idx: &[usize]| -> Vec<Value> {
                    idx.iter().map(|&i| done[i].values[d]).collect()
                };
                self.suggest_one(s, &values(good), &values(bad), rng)
            })
            .collect()
    }

    fn suggest_one(&self, s: &Space, good: &[Value], bad: &[Value], rng: &mut Rng) -> Value {
        match *s {
            Space::Uniform { low, high } => {
                let num = |v: &[Value]| v.iter().map(|x| x.number()).collect::<Vec<_>>();
                Value::Number(self.best_of(&num(good), &num(bad), low, high, rng))
            }
            Space::LogUniform { low, high } => {
                let logs = |v: &[Value]| v.iter().map(|x| x.number().ln()).collect::<Vec<_>>();
                let x = self.best_of(&logs(good), &logs(bad), low.ln(), high.ln(), rng);
                Value::Number(x.exp().clamp(low, high))
            }
            Space::Choice { options } => {
                let hist = |v: &[Value]| {
                    let mut h = vec![self.prior_weight / options as f64; options];
                    for x in v {
                        if let Value::Index(i) = x {
                            h[(*i).min(options - 1)] += 1.0;
                        }
                    }
                    let total: f64 = h.iter().sum();
                    h.iter().map(|c| c / total).collect::<Vec<f64>>()
                };
                let (l, g) = (hist(good), hist(bad));
                let mut best = (f64::NEG_INFINITY, 0);
                for _ in 0..self.candidates {
                    // A draw from l.
                    let u = rng.next_f64();
                    let mut acc = 0.0;
                    let mut c = options - 1;
                    for (i, p) in l.iter().enumerate() {
                        acc += p;
                        if u < acc {
                            c = i;
                            break;
                        }
                    }
                    let score = l[c].ln() - g[c].ln();
                    if score > best.0 {
                        best = (score, c);
                    }
                }
                Value::Index(best.1)
            }
        }
    }

    /// The candidate drawn from `l` (from `good`) with the largest `log l − log g`.
    fn best_of(&self, good: &[f64], bad: &[f64], low: f64, high: f64, rng: &mut Rng) -> f64 {
        let l = Parzen::new(good, low, high, self.prior_weight);
        let g = Parzen::new(bad, low, high, self.prior_weight);
        let mut best = (f64::NEG_INFINITY, 0.5 * (low + high));
        for _ in 0..self.candidates {
            let x = l.sample(rng);
            let score = l.log_pdf(x) - g.log_pdf(x);
            if score > best.0 {
                best = (score, x);
            }
        }
        best.1
    }
}

/// When to stop a trial early, from validation curves (one value per finished epoch, lower is
/// better). Each trial is judged by its best value so far, which a single noisy epoch does not
/// undo.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Pruner {
    /// Every trial runs to the end.
    None,
    /// Optuna's median rule: after `warmup_epochs`, stop a trial whose best so far at epoch `k`
    /// is worse than the median of the other trials' best up to `k`, once at least
    /// `startup_trials` others have reached `k`.
    Median {
        warmup_epochs: usize,
        startup_trials: usize,
    },
    /// Asynchronous successive halving (ASHA, Li et al. 2020): rungs at `min_epochs · ηˢ`;
    /// a trial reaching a rung goes on only if it is in the best `max(1, ⌊n / η⌋)` of the `n`
    /// trials that reached that rung so far (itself included).
    Asha { min_epochs: usize, reduction: usize },
}

fn best_up_to(curve: &[f64], k: usize) -> f64 {
    curve[..k]
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .fold(f64::INFINITY, f64::min)
}

impl Pruner {
    /// Whether the trial with `curve` so far should stop now, given the curves of the other
    /// trials of the search (finished, stopped or still running).
    pub fn should_stop(&self, curve: &[f64], others: &[&[f64]]) -> bool {
        let k = curve.len();
        if k == 0 {
            return false;
        }
        let mine = best_up_to(curve, k);
        let peers: Vec<f64> = others
            .iter()
            .filter(|c| c.len() >= k)
            .map(|c| best_up_to(c, k))
            .collect();
        match *self {
            Pruner::None => false,
            Pruner::Median {
                warmup_epochs,
                startup_trials,
            } => {
                if k <= warmup_epochs || peers.len() < startup_trials.max(1) {
                    return false;
                }
                let mut v = peers;
                v.sort_by(f64::total_cmp);
                let m = v.len();
                let median = if m % 2 == 1 {
                    v[m / 2]
                } else {
                    0.5 * (v[m / 2 - 1] + v[m / 2])
                };
                mine > median
            }
            Pruner::Asha {
                min_epochs,
                reduction,
            } => {
                let (r, eta) = (min_epochs.max(1), reduction.max(2));
                // Is epoch k a rung: r·ηˢ?
                let mut rung = r;
                while rung < k {
                    rung *= eta;
                }
                if rung != k {
                    return false;
                }
                let better = peers.iter().filter(|&&p| p < mine).count();
                let n = peers.len() + 1;
                better >= (n / eta).max(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap objective with a narrow optimum in each kind of dimension: uniform x at 0.73,
    /// log-uniform y at 1e-3, choice c = 2 of 4 (worth as much as the others: a choice that
    /// matters less can be locked in by the first good trials, see the module docs).
    fn objective(v: &[Value]) -> f64 {
        let x = v[0].number();
        let y = v[1].number().log10();
        let c = match v[2] {
            Value::Index(i) => i,
            Value::Number(_) => unreachable!(),
        };
        (x - 0.73).powi(2) * 10.0 + (y + 3.0).powi(2) + if c == 2 { 0.0 } else { 3.0 }
    }

    fn space() -> Vec<Space> {
        vec![
            Space::Uniform {
                low: 0.0,
                high: 1.0,
            },
            Space::LogUniform {
                low: 1e-6,
                high: 1.0,
            },
            Space::Choice { options: 4 },
        ]
    }

    /// Best objective after `budget` trials of TPE (or random when `tpe` is false).
    fn best_after(budget: usize, seed: u64, tpe: bool) -> f64 {
        let (s, sampler) = (space(), Tpe::default());
        let mut rng = Rng::new(seed, 99);
        let mut trials: Vec<Trial> = Vec::new();
        for _ in 0..budget {
            let values = if tpe {
                sampler.suggest(&s, &trials, &mut rng)
            } else {
                random_values(&s, &mut rng)
            };
            let objective = objective(&values);
            trials.push(Trial { values, objective });
        }
        trials
            .iter()
            .map(|t| t.objective)
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn the_grid_enumerates_every_combination_once() {
        let space = [Space::Choice { options: 2 }, Space::Choice { options: 3 }];
        let all: Vec<Vec<Value>> = (0..6).map(|i| grid_values(&space, i).unwrap()).collect();
        assert_eq!(all[0], vec![Value::Index(0), Value::Index(0)]);
        assert_eq!(all[1], vec![Value::Index(0), Value::Index(1)]);
        assert_eq!(all[5], vec![Value::Index(1), Value::Index(2)]);
        for i in 0..6 {
            assert!(!all[..i].contains(&all[i]));
        }
        assert_eq!(grid_values(&space, 6), None);
        assert_eq!(
            grid_values(
                &[Space::Uniform {
                    low: 0.0,
                    high: 1.0
                }],
                0
            ),
            None
        );
    }

    #[test]
    fn tpe_beats_random_search_with_the_same_budget_over_many_seeds() {
        let seeds = 30u64;
        let (mut wins, mut tpe_all, mut rnd_all) = (0, Vec::new(), Vec::new());
        for seed in 1..=seeds {
            let (t, r) = (best_after(50, seed, true), best_after(50, seed, false));
            wins += usize::from(t < r);
            tpe_all.push(t);
            rnd_all.push(r);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (mt, mr) = (median(&mut tpe_all), median(&mut rnd_all));
        // A statistic over 30 seeds, not one lucky seed: under "no better than random" the
        // chance of 22 or more wins of 30 is below 1 %.
        assert!(
            wins >= 22,
            "TPE won {wins} of {seeds}; median best {mt:.4} vs random {mr:.4}"
        );
        assert!(mt < mr, "median best: TPE {mt:.4}, random {mr:.4}");
    }

    #[test]
    fn startup_trials_are_random_and_suggestions_stay_in_range() {
        let s = space();
        let sampler = Tpe::default();
        let mut rng = Rng::new(5, 1);
        let mut trials = Vec::new();
        for k in 0..40 {
            let v = sampler.suggest(&s, &trials, &mut rng);
            let x = v[0].number();
            let y = v[1].number();
            assert!((0.0..=1.0).contains(&x), "trial {k}: x = {x}");
            assert!((1e-6..=1.0).contains(&y), "trial {k}: y = {y}");
            assert!(matches!(v[2], Value::Index(i) if i < 4));
            let objective = if k == 7 { f64::NAN } else { objective(&v) };
            trials.push(Trial {
                values: v,
                objective,
            });
        }
        assert_eq!(gamma(9), 1);
        assert_eq!(gamma(40), 4);
        assert_eq!(gamma(1000), 25);
    }

    #[test]
    fn the_truncated_density_integrates_to_one() {
        let p = Parzen::new(&[0.1, 0.15, 0.9], 0.0, 1.0, 1.0);
        let n = 20_000;
        let integral: f64 = (0..n)
            .map(|i| p.log_pdf((i as f64 + 0.5) / n as f64).exp() / n as f64)
            .sum();
        assert!((integral - 1.0).abs() < 2e-3, "{integral}");
        assert!((phi(0.0) - 0.5).abs() < 1e-7 && (phi(1.96) - 0.975).abs() < 1e-4);
    }

    #[test]
    fn the_median_rule_stops_a_clearly_worse_trial_after_the_warm_up() {
        let p = Pruner::Median {
            warmup_epochs: 2,
            startup_trials: 3,
        };
        let good: Vec<Vec<f64>> = (0..4)
            .map(|i| vec![6.0, 5.0, 4.5, 4.2 + 0.01 * i as f64])
            .collect();
        let others: Vec<&[f64]> = good.iter().map(Vec::as_slice).collect();
        let bad = [9.0, 8.5, 8.4, 8.3];
        assert!(!p.should_stop(&bad[..2], &others), "within the warm-up");
        assert!(
            p.should_stop(&bad[..3], &others),
            "worse than every other trial at epoch 3"
        );
        let fine = [5.9, 4.9, 4.4];
        assert!(!p.should_stop(&fine, &others));
        // Too few others at that epoch: no verdict yet.
        assert!(!p.should_stop(&bad[..3], &others[..2]));
        // One bad epoch after a good one does not stop a trial (best so far).
        let blip = [5.9, 4.4, 9.9];
        assert!(!p.should_stop(&blip, &others));
        assert!(!Pruner::None.should_stop(&bad, &others));
    }

    #[test]
    fn asha_keeps_the_best_third_at_each_rung() {
        let p = Pruner::Asha {
            min_epochs: 1,
            reduction: 3,
        };
        // Rungs at epochs 1, 3, 9.
        let peers: Vec<Vec<f64>> = (0..5).map(|i| vec![5.0 + i as f64; 3]).collect();
        let others: Vec<&[f64]> = peers.iter().map(Vec::as_slice).collect();
        // 6 at the rung, keep max(1, 6 / 3) = 2: a trial better than all but one goes on.
        assert!(!p.should_stop(&[5.5], &others));
        assert!(p.should_stop(&[6.5], &others));
        assert!(!p.should_stop(&[9.0, 9.0], &others), "epoch 2 is no rung");
        assert!(p.should_stop(&[9.0, 9.0, 9.0], &others));
        // The first trial at a rung always goes on.
        assert!(!p.should_stop(&[9.0], &[]));
    }
}
