//! Masks, the per-layer lowest-share selection, the channel counts of each pruning step, and
//! compaction of a channel-pruned network into a smaller dense STGCN.

use burn::tensor::backend::Backend;

use super::topology::{param_muts, param_refs, Axis, ParamSpec, Residual, Topology};
use crate::model::{ModelError, Stgcn, StgcnConfig};

/// Masks (1 kept, 0 removed) of every parameter, flat row-major, in [`Topology::params`] order;
/// `None` = everything kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Masks {
    pub masks: Vec<Option<Vec<f32>>>,
}

impl Masks {
    /// Nothing removed.
    pub fn none(t: &Topology) -> Self {
        Masks {
            masks: vec![None; t.params.len()],
        }
    }

    /// Number of removed parameters.
    pub fn masked(&self) -> usize {
        self.masks
            .iter()
            .flatten()
            .map(|m| m.iter().filter(|&&v| v == 0.0).count())
            .sum()
    }

    fn from_keep(t: &Topology, kept: impl Fn(usize, &ParamSpec, usize) -> bool) -> Self {
        let masks = t
            .params
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let m: Vec<f32> = (0..spec.len())
                    .map(|e| if kept(i, spec, e) { 1.0 } else { 0.0 })
                    .collect();
                m.contains(&0.0).then_some(m)
            })
            .collect();
        Masks { masks }
    }
}

/// Which channels of every space are kept (channel granularity).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelState {
    pub keep: Vec<Vec<bool>>,
}

impl ChannelState {
    /// Every channel kept.
    pub fn full(t: &Topology) -> Self {
        ChannelState {
            keep: t.spaces.iter().map(|s| vec![true; s.size]).collect(),
        }
    }

    /// Kept channels per space.
    pub fn counts(&self) -> Vec<usize> {
        self.keep
            .iter()
            .map(|k| k.iter().filter(|&&x| x).count())
            .collect()
    }

    /// The masks of every parameter: an entry is kept when the channels of its row and column
    /// are.
    pub fn masks(&self, t: &Topology) -> Masks {
        Masks::from_keep(t, |_, spec, e| {
            let (r, c) = spec.channels_of(e);
            r.is_none_or(|(s, k)| self.keep[s][k]) && c.is_none_or(|(s, k)| self.keep[s][k])
        })
    }

    /// Channels of the dense network this state compacts to.
    pub fn channels(&self, t: &Topology) -> crate::model::Channels {
        t.channels_for(&self.counts())
    }

    /// The original channel index of each compacted channel, per space: the channels the
    /// space's zero-padding residual feeds come first, in the parent's order (so that the
    /// compacted network's padding adds the same inputs), then the other kept channels.
    pub fn order(&self, t: &Topology) -> Vec<Vec<usize>> {
        let mut order: Vec<Vec<usize>> = Vec::with_capacity(t.spaces.len());
        for (s, info) in t.spaces.iter().enumerate() {
            let kept = |k: &usize| self.keep[s][*k];
            let mut o: Vec<usize> = match info.parent {
                Some((p, Residual::Pad)) => order[p].iter().copied().filter(kept).collect(),
                _ => Vec::new(),
            };
            let rest: Vec<usize> = (0..info.size)
                .filter(|k| kept(k) && !o.contains(k))
                .collect();
            o.extend(rest);
            order.push(o);
        }
        order
    }

    /// The structural rules compaction relies on (see the module documentation).
    pub fn check(&self, t: &Topology) -> Result<(), String> {
        let n = self.counts();
        for (s, info) in t.spaces.iter().enumerate() {
            if n[s] == 0 {
                return Err(format!("space {} keeps no channel", info.name));
            }
            if info.fixed && n[s] != info.size {
                return Err(format!("space {} is fixed but pruned", info.name));
            }
            match info.parent {
                Some((p, Residual::Pad)) => {
                    if let Some(k) =
                        (0..t.spaces[p].size).find(|&k| self.keep[p][k] && !self.keep[s][k])
                    {
                        return Err(format!(
                            "channel {k} of {} is removed but its residual input (channel {k} of {}) is kept",
                            info.name, t.spaces[p].name
                        ));
                    }
                }
                Some((p, Residual::Proj)) if n[p] <= n[s] => {
                    return Err(format!(
                        "{} keeps {} channels, not more than {} ({}): the projection residual would become padding",
                        t.spaces[p].name, n[p], info.name, n[s]
                    ));
                }
                _ => {}
            }
        }
        if n[t.sig_space()] != n[t.out_space()] {
            return Err(
                "the output block's sigmoid conv must keep as many channels as its input".into(),
            );
        }
        Ok(())
    }
}

/// Kept entries of every parameter (element granularity).
#[derive(Debug, Clone, PartialEq)]
pub struct ElementState {
    pub keep: Vec<Vec<bool>>,
}

impl ElementState {
    pub fn full(t: &Topology) -> Self {
        ElementState {
            keep: t.params.iter().map(|p| vec![true; p.len()]).collect(),
        }
    }

    pub fn masks(&self, t: &Topology) -> Masks {
        Masks::from_keep(t, |i, _, e| self.keep[i][e])
    }
}

/// Channel counts per space when every prunable space loses the share `q` of its channels
/// (rounded, at least one kept, never more than `current`), adjusted to the structural rules:
/// a zero-padding child keeps at least as many channels as its parent, a projection's input
/// keeps more than its output, the sigmoid conv as many as its input. `None` when no counts
/// satisfy them.
pub fn plan_counts(t: &Topology, current: &[usize], q: f64) -> Option<Vec<usize>> {
    let mut n: Vec<usize> = t
        .spaces
        .iter()
        .enumerate()
        .map(|(s, info)| {
            if info.fixed {
                info.size
            } else {
                let k = ((1.0 - q) * info.size as f64).round() as usize;
                k.clamp(1, current[s].max(1))
            }
        })
        .collect();
    let (o, g) = (t.out_space(), t.sig_space());
    for _ in 0..64 {
        let mut changed = false;
        if n[o] != n[g] {
            let m = n[o].min(n[g]);
            n[o] = m;
            n[g] = m;
            changed = true;
        }
        for (s, info) in t.spaces.iter().enumerate() {
            match info.parent {
                Some((p, Residual::Pad)) if n[s] < n[p] => {
                    if t.spaces[p].fixed {
                        n[s] = n[p];
                    } else {
                        n[p] = n[s];
                    }
                    changed = true;
                }
                Some((p, Residual::Proj)) if n[p] <= n[s] => {
                    if n[p] >= 2 {
                        n[s] = n[p] - 1;
                    } else if current[p] >= 2 {
                        n[p] = 2;
                        n[s] = 1;
                    } else {
                        return None;
                    }
                    changed = true;
                }
                _ => {}
            }
        }
        if !changed {
            let ok = n.iter().zip(current).all(|(a, b)| a <= b);
            return ok.then_some(n);
        }
    }
    None
}

/// The counts of the pruning step that aims at removing `goal` (a fraction) of the parameters:
/// among the channel shares `q = 0, 1/2000, …, 1`, the one whose removed share is closest to
/// `goal` (ties: the larger share). Returns the counts, `q` and the removed share.
pub fn counts_for_goal(t: &Topology, current: &[usize], goal: f64) -> (Vec<usize>, f64, f64) {
    let total = t.total_params() as f64;
    let share = |n: &[usize]| 1.0 - t.params_for(n) as f64 / total;
    let mut best = (current.to_vec(), 0.0, share(current));
    let mut best_gap = (best.2 - goal).abs();
    const GRID: usize = 2000;
    for i in 0..=GRID {
        let q = i as f64 / GRID as f64;
        let Some(n) = plan_counts(t, current, q) else {
            continue;
        };
        let sh = share(&n);
        let gap = (sh - goal).abs();
        if gap < best_gap - 1e-12 || (gap <= best_gap + 1e-12 && sh > best.2) {
            best_gap = gap;
            best = (n, q, sh);
        }
    }
    best
}

/// Group importance (Eq. 14): for every channel of every space, the sum of the scores of all
/// parameter entries removed with it (rows and columns).
pub fn group_scores(t: &Topology, scores: &[Vec<f32>]) -> Vec<Vec<f64>> {
    let mut g: Vec<Vec<f64>> = t.spaces.iter().map(|s| vec![0.0; s.size]).collect();
    for (spec, sc) in t.params.iter().zip(scores) {
        for (e, &v) in sc.iter().enumerate() {
            let (r, c) = spec.channels_of(e);
            for (s, k) in r.into_iter().chain(c) {
                g[s][k] += v as f64;
            }
        }
    }
    g
}

/// Remove, in every space, the lowest-scoring kept channels until it keeps `counts[s]`. A
/// channel fed by a kept zero-padding input is not a candidate (spaces are visited parents
/// first, so the parent's removals of this step count).
pub fn select_channels(t: &Topology, st: &mut ChannelState, counts: &[usize], gs: &[Vec<f64>]) {
    for (s, info) in t.spaces.iter().enumerate() {
        if info.fixed {
            continue;
        }
        let kept: Vec<usize> = (0..info.size).filter(|&k| st.keep[s][k]).collect();
        let to_remove = kept.len().saturating_sub(counts[s]);
        if to_remove == 0 {
            continue;
        }
        let protected = |k: usize| match info.parent {
            Some((p, Residual::Pad)) => k < t.spaces[p].size && st.keep[p][k],
            _ => false,
        };
        let mut cands: Vec<usize> = kept.into_iter().filter(|&k| !protected(k)).collect();
        cands.sort_by(|&a, &b| gs[s][a].total_cmp(&gs[s][b]).then(a.cmp(&b)));
        debug_assert!(
            cands.len() >= to_remove,
            "constraints keep enough candidates"
        );
        for k in cands.into_iter().take(to_remove) {
            st.keep[s][k] = false;
        }
    }
}

/// Remove, in every prunable tensor, the lowest-scoring kept entries until it has lost the
/// share that makes the whole network lose `goal` of its parameters.
pub fn select_elements(t: &Topology, st: &mut ElementState, scores: &[Vec<f32>], goal: f64) {
    let total = t.total_params() as f64;
    let prunable: usize = t
        .params
        .iter()
        .filter(|p| p.key.prunable())
        .map(ParamSpec::len)
        .sum();
    let share = (goal * total / prunable.max(1) as f64).clamp(0.0, 1.0);
    for (i, spec) in t.params.iter().enumerate() {
        if !spec.key.prunable() {
            continue;
        }
        let want = (share * spec.len() as f64).round() as usize;
        let removed = st.keep[i].iter().filter(|&&k| !k).count();
        let to_remove = want.saturating_sub(removed);
        let mut cands: Vec<usize> = (0..spec.len()).filter(|&e| st.keep[i][e]).collect();
        cands.sort_by(|&a, &b| scores[i][a].total_cmp(&scores[i][b]).then(a.cmp(&b)));
        for e in cands.into_iter().take(to_remove) {
            st.keep[i][e] = false;
        }
    }
}

/// Multiply every parameter by its mask, on the host (keeps parameter ids).
pub fn apply_masks_host<B: Backend>(
    model: &mut Stgcn<B>,
    t: &Topology,
    masks: &Masks,
    device: &B::Device,
) {
    let values: Vec<Option<Vec<f32>>> = param_refs(model)
        .iter()
        .zip(&masks.masks)
        .map(|(p, m)| {
            m.as_ref().map(|m| {
                let mut v = p.to_vec();
                for (x, k) in v.iter_mut().zip(m) {
                    *x *= k;
                }
                v
            })
        })
        .collect();
    for ((mut p, v), spec) in param_muts(model).into_iter().zip(values).zip(&t.params) {
        if let Some(v) = v {
            p.set(v, &spec.shape, device);
        }
    }
}

/// Index of the original entry along an axis for compacted index `i` (outer blocks — time
/// taps, Chebyshev orders, GLU halves, nodes — are kept, channels gathered by `order`).
fn source(axis: Option<Axis>, order: &[Vec<usize>], i: usize) -> usize {
    match axis {
        None => i,
        Some(a) => {
            let o = &order[a.space];
            let c_new = o.len();
            (i / c_new) * a.c + o[i % c_new]
        }
    }
}

/// The dense network a channel-pruned `model` compacts to, and its configuration: every kept
/// channel's parameters gathered in [`ChannelState::order`]. Computes the same outputs as the
/// masked network under [`super::forward_masked`] (masked LayerNorm statistics).
pub fn compact<B: Backend>(
    model: &Stgcn<B>,
    t: &Topology,
    st: &ChannelState,
    device: &B::Device,
) -> Result<(Stgcn<B>, StgcnConfig), ModelError> {
    st.check(t).map_err(ModelError::Invalid)?;
    let order = st.order(t);
    let counts = st.counts();
    let mut cfg = t.config.clone();
    cfg.channels = t.channels_for(&counts);
    let nt = Topology::new(&cfg);
    let keys: Vec<_> = t.params.iter().map(|p| p.key).collect();
    let new_keys: Vec<_> = nt.params.iter().map(|p| p.key).collect();
    if keys != new_keys {
        return Err(ModelError::Invalid(format!(
            "compacted channels {:?} change the residual structure of {:?}",
            cfg.channels, t.config.channels
        )));
    }
    let values: Vec<Vec<f32>> = param_refs(model).iter().map(|p| p.to_vec()).collect();
    let mut out = Stgcn::<B>::new(&cfg, 0, device)?;
    for ((mut dst, (old, new)), v) in param_muts(&mut out)
        .into_iter()
        .zip(t.params.iter().zip(&nt.params))
        .zip(&values)
    {
        let gathered: Vec<f32> = if new.shape.len() == 2 {
            let (rows, cols) = (new.shape[0], new.shape[1]);
            let old_cols = old.shape[1];
            let mut g = Vec::with_capacity(rows * cols);
            for r in 0..rows {
                let sr = source(old.rows, &order, r);
                for c in 0..cols {
                    g.push(v[sr * old_cols + source(old.cols, &order, c)]);
                }
            }
            g
        } else {
            (0..new.shape[0])
                .map(|i| v[source(old.cols, &order, i)])
                .collect()
        };
        dst.set(gathered, &new.shape, device);
    }
    Ok((out, cfg))
}
