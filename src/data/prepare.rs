//! From parsed readings to a prepared data set, shared by real and synthetic data: gaps filled
//! in time, whole days, windows, the training split's z-score statistics (paper Eq. 15).

use std::path::PathBuf;

use super::graph::{chebyshev, degrees, gaussian_kernel, scaled_laplacian};
use super::{DataConfig, DataError, Dataset, DatasetName};

/// Parsed input before preparation.
pub(super) struct Raw {
    pub(super) name: DatasetName,
    pub(super) source: &'static str,
    pub(super) nodes: usize,
    /// `[rows, nodes]`, missing readings still in place.
    pub(super) speeds: Vec<f32>,
    pub(super) rows: usize,
    /// Where the speeds came from, for error messages.
    pub(super) speed_path: PathBuf,
    /// `[nodes, nodes]` distances in km; `INFINITY` where there is no edge.
    pub(super) dist_km: Vec<f64>,
    /// A note about the steps after the last whole day was already written.
    pub(super) remainder_noted: bool,
}

pub(super) fn prepare(
    raw: Raw,
    cfg: &DataConfig,
    spd: usize,
    checksum: String,
    mut notes: Vec<String>,
) -> Result<Dataset, DataError> {
    let config_err = |m: String| Err(DataError::Config(m));
    if cfg.n_his == 0 || cfg.n_pred == 0 || cfg.n_his + cfg.n_pred > spd {
        return config_err(format!(
            "n_his ({}) and n_pred ({}) must be >= 1 with n_his + n_pred <= {spd} steps per day",
            cfg.n_his, cfg.n_pred
        ));
    }
    if cfg.ks == 0 {
        return config_err("ks (Chebyshev order) must be >= 1".into());
    }
    if !(cfg.sigma2.is_finite() && cfg.sigma2 > 0.0) {
        return config_err(format!("sigma2 must be > 0, got {}", cfg.sigma2));
    }
    if !(0.0..=1.0).contains(&cfg.epsilon) {
        return config_err(format!("epsilon must be in [0, 1], got {}", cfg.epsilon));
    }
    let n = raw.nodes;
    let avail = raw.rows / spd;
    if avail < 3 {
        return Err(DataError::Format {
            path: raw.speed_path,
            msg: format!(
                "{} steps hold only {avail} whole days of {spd} steps; need at least 3 \
                 (train, val, test)",
                raw.rows
            ),
        });
    }
    let split_days = match cfg.split_days {
        Some(s) => {
            if s.contains(&0) || s.iter().sum::<usize>() > avail {
                return config_err(format!(
                    "split_days {s:?}: each must be >= 1 and they must add up to at most the \
                     {avail} whole days in {}",
                    raw.speed_path.display()
                ));
            }
            s
        }
        None => default_split(avail),
    };
    let days: usize = split_days.iter().sum();
    let steps = days * spd;
    if raw.rows > avail * spd && !raw.remainder_noted {
        notes.push(format!(
            "{} trailing steps after the last whole day dropped",
            raw.rows - avail * spd
        ));
    }
    if days < avail {
        notes.push(format!(
            "split_days {split_days:?} use only the first {days} of {avail} whole days"
        ));
    }

    let mut speeds = raw.speeds;
    let filled = speeds[..steps * n]
        .iter()
        .filter(|&&v| is_missing(v))
        .count();
    if let Err(station) = fill_gaps(&mut speeds, raw.rows, n) {
        return Err(DataError::NoValidReadings {
            path: raw.speed_path,
            station,
        });
    }
    speeds.truncate(steps * n);
    if filled > 0 {
        notes.push(format!(
            "{filled} missing readings (empty, NaN or 0) filled by linear interpolation in time \
             (nearest valid reading at the ends)"
        ));
    }

    let (mean, std) = window_stats(&speeds, n, spd, split_days[0], cfg.n_his + cfg.n_pred);
    if !(std.is_finite() && std > 0.0) {
        return Err(DataError::Format {
            path: raw.speed_path,
            msg: format!("training speeds are constant or invalid (mean {mean}, std {std})"),
        });
    }

    let weights = gaussian_kernel(&raw.dist_km, n, cfg.sigma2, cfg.epsilon);
    let edges = weights.iter().filter(|&&w| w != 0.0).count();
    let isolated = degrees(&weights, n).iter().filter(|&&d| d == 0.0).count();
    let (lt, lambda_max) = scaled_laplacian(&weights, n);
    let cheb = chebyshev(&lt, n, cfg.ks);

    Ok(Dataset {
        name: raw.name,
        nodes: n,
        steps,
        steps_per_day: spd,
        days,
        split_days,
        filled,
        mean,
        std,
        speeds,
        weights,
        edges,
        isolated,
        cheb,
        ks: cfg.ks,
        lambda_max,
        n_his: cfg.n_his,
        n_pred: cfg.n_pred,
        checksum,
        notes,
        source: raw.source,
    })
}

/// Default days: `val = test = max(1, round(days·5/44))`, train the rest (34/5/5 for 44 days).
pub(super) fn default_split(days: usize) -> [usize; 3] {
    let vt = ((days as f64 * 5.0 / 44.0).round() as usize).max(1);
    [days - 2 * vt, vt, vt]
}

pub(super) fn is_missing(v: f32) -> bool {
    !v.is_finite() || v == 0.0
}

/// Fill missing readings of each station (column) of `data` (`[rows, nodes]`): linear
/// interpolation between the neighbouring valid readings, the nearest valid reading before the
/// first / after the last one. `Err(station)` if a station has no valid reading at all.
pub(super) fn fill_gaps(data: &mut [f32], rows: usize, nodes: usize) -> Result<(), usize> {
    for j in 0..nodes {
        let at = |t: usize| t * nodes + j;
        let first = (0..rows).find(|&t| !is_missing(data[at(t)])).ok_or(j)?;
        let v0 = data[at(first)];
        for t in 0..first {
            data[at(t)] = v0;
        }
        let mut prev = first;
        for t in first + 1..rows {
            if is_missing(data[at(t)]) {
                continue;
            }
            if t > prev + 1 {
                let (a, b) = (data[at(prev)] as f64, data[at(t)] as f64);
                let span = (t - prev) as f64;
                for k in prev + 1..t {
                    data[at(k)] = (a + (b - a) * (k - prev) as f64 / span) as f32;
                }
            }
            prev = t;
        }
        let vl = data[at(prev)];
        for t in prev + 1..rows {
            data[at(t)] = vl;
        }
    }
    Ok(())
}

/// Eq. 15 statistics, STGCN convention: mean and population std over every element of every
/// training window (`win` consecutive steps inside one day), overlapping windows counted each
/// time. Computed with per-offset multiplicities instead of materialising the windows.
pub(super) fn window_stats(
    speeds: &[f32],
    nodes: usize,
    spd: usize,
    days: usize,
    win: usize,
) -> (f64, f64) {
    let per_day = spd + 1 - win;
    // mult[o] = number of windows (start s in [0, per_day)) that contain offset o.
    let mult: Vec<f64> = (0..spd)
        .map(|o| {
            let lo = (o + 1).saturating_sub(win);
            let hi = o.min(per_day - 1);
            if hi >= lo {
                (hi - lo + 1) as f64
            } else {
                0.0
            }
        })
        .collect();
    let total = (days * per_day * win * nodes) as f64;
    let rows = |d: usize| (0..spd).map(move |o| (o, d * spd + o));
    let mut sum = 0.0;
    for d in 0..days {
        for (o, t) in rows(d) {
            let s: f64 = speeds[t * nodes..(t + 1) * nodes]
                .iter()
                .map(|&v| v as f64)
                .sum();
            sum += mult[o] * s;
        }
    }
    let mean = sum / total;
    let mut ss = 0.0;
    for d in 0..days {
        for (o, t) in rows(d) {
            let s: f64 = speeds[t * nodes..(t + 1) * nodes]
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum();
            ss += mult[o] * s;
        }
    }
    (mean, (ss / total).sqrt())
}
