//! Which model is worth shipping: every finished run's test MAE at one horizon against its size
//! (parameters of the network it ends with) and against its measured latency (test time of one
//! batch on the device it was measured on), with the non-dominated runs of each data set
//! marked. Pure data; [`super::plots::pareto_svg`] draws it.
//!
//! A run is *dominated* when another run of the same data set is no worse on both axes and
//! better on one. Latency is measured once per network shape, device and build
//! ([`crate::exec::test_time_once`]); runs of one size and device get the median of their
//! measurements ([`shared_latency`]), so among them only the error decides.

use crate::data::DatasetName;

use super::collect::ReportData;
use super::paper::HORIZONS;
use super::tables::{datasets, hyperparameters, model_name, prune_info};

/// The horizon (minutes) of the MAE on the charts unless `--pareto-horizon` says otherwise.
pub const DEFAULT_HORIZON: u32 = 15;

/// One finished run on the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// `label dataset [variant]`.
    pub name: String,
    /// The report's row name (`Teacher`, `STCD`, …).
    pub model: String,
    pub hash: String,
    /// What decides it: loss weights, pruning method and share, epochs, seed.
    pub config: String,
    pub parameters: u64,
    /// Mean test time of one batch (ms) and where it was measured.
    pub latency_ms: Option<f64>,
    pub device: String,
    /// Windows in the measured batch.
    pub batch: Option<u32>,
    pub mae: f64,
    /// Not dominated in (parameters, MAE).
    pub front_size: bool,
    /// Not dominated in (latency, MAE); `false` without a latency.
    pub front_latency: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParetoBlock {
    pub dataset: DatasetName,
    pub points: Vec<Point>,
}

/// The Pareto section of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Pareto {
    /// Minutes ahead of the MAE on the y axis (15, 30 or 45).
    pub horizon: u32,
    pub blocks: Vec<ParetoBlock>,
}

/// Marks the points not dominated in (`x`, mae); points without `x` are never on the front.
fn front(points: &[Point], x: impl Fn(&Point) -> Option<f64>) -> Vec<bool> {
    points
        .iter()
        .map(|p| {
            let Some(px) = x(p) else { return false };
            !points.iter().any(|q| match x(q) {
                Some(qx) => qx <= px && q.mae <= p.mae && (qx < px || q.mae < p.mae),
                None => false,
            })
        })
        .collect()
}

fn describe(r: &super::collect::RunEntry) -> String {
    let mut parts = vec![r.config.loss.kind.to_string()];
    let h = hyperparameters(r);
    if !h.is_empty() {
        parts.push(h);
    }
    if let Some(p) = prune_info(r) {
        if let Some(m) = p.method {
            parts.push(m);
        }
        if let Some(t) = p.target_pct {
            parts.push(format!("{}% pruned", super::tables::short_number(t)));
        }
    }
    parts.push(format!("{} epochs", r.config.train.epochs));
    parts.push(format!("seed {}", r.config.train.seed));
    parts.join(" · ")
}

/// One latency per network size and device: the median of the runs' measurements. A
/// prediction's time does not depend on the weights, so runs of one architecture differ only by
/// when (and beside what) they were timed; the front should not rank that noise.
fn shared_latency(points: &mut [Point]) {
    let mut groups: std::collections::BTreeMap<(u64, String), Vec<f64>> = Default::default();
    for p in points.iter() {
        if let Some(l) = p.latency_ms {
            groups
                .entry((p.parameters, p.device.clone()))
                .or_default()
                .push(l);
        }
    }
    for p in points.iter_mut() {
        if let Some(v) = groups.get_mut(&(p.parameters, p.device.clone())) {
            if p.latency_ms.is_some() {
                v.sort_by(f64::total_cmp);
                let m = v.len();
                p.latency_ms = Some(if m % 2 == 1 {
                    v[m / 2]
                } else {
                    0.5 * (v[m / 2 - 1] + v[m / 2])
                });
            }
        }
    }
}

/// The Pareto data of `data` at `horizon` minutes (15, 30 or 45); `None` when fewer than two
/// finished runs differ in size or latency on any data set (nothing to trade off).
pub fn pareto(data: &ReportData, horizon: u32) -> Option<Pareto> {
    let h = HORIZONS.iter().position(|&x| x == horizon)?;
    let table = super::tables::paper_table(&data.name).filter(|t| matches!(t, 2 | 4 | 5 | 7 | 8));
    let mut blocks = Vec::new();
    for d in datasets(data) {
        let mut points: Vec<Point> = data
            .runs
            .iter()
            .filter(|r| r.config.dataset == d)
            .filter_map(|r| {
                let res = r.done()?;
                let mae = super::tables::metric_of(r, 1, h)?;
                let profile = res.profile.as_ref();
                let parameters = res
                    .pruning
                    .as_ref()
                    .filter(|p| p.compact_parameters > 0)
                    .map(|p| p.compact_parameters)
                    .or(profile.map(|p| p.parameters))
                    .unwrap_or(r.config.model.param_count() as u64);
                Some(Point {
                    name: r.display_name(),
                    model: model_name(r, table),
                    hash: r.hash.clone(),
                    config: describe(r),
                    parameters,
                    latency_ms: profile.and_then(|p| p.test_time_s).map(|s| s * 1e3),
                    device: profile.map(|p| p.device.clone()).unwrap_or_default(),
                    batch: profile.and_then(|p| p.test_time_batch),
                    mae,
                    front_size: false,
                    front_latency: false,
                })
            })
            .collect();
        shared_latency(&mut points);
        let sizes = front(&points, |p| Some(p.parameters as f64));
        let lats = front(&points, |p| p.latency_ms);
        for (p, (s, l)) in points.iter_mut().zip(sizes.into_iter().zip(lats)) {
            p.front_size = s;
            p.front_latency = l;
        }
        let distinct = |f: &dyn Fn(&Point) -> Option<f64>| {
            let mut v: Vec<f64> = points.iter().filter_map(f).collect();
            v.sort_by(f64::total_cmp);
            v.dedup();
            v.len() >= 2
        };
        if distinct(&|p| Some(p.parameters as f64)) || distinct(&|p| p.latency_ms) {
            blocks.push(ParetoBlock { dataset: d, points });
        }
    }
    (!blocks.is_empty()).then_some(Pareto { horizon, blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(params: u64, lat: Option<f64>, mae: f64) -> Point {
        Point {
            name: format!("{params}/{mae}"),
            model: String::new(),
            hash: String::new(),
            config: String::new(),
            parameters: params,
            latency_ms: lat,
            device: "cpu".into(),
            batch: Some(100),
            mae,
            front_size: false,
            front_latency: false,
        }
    }

    #[test]
    fn runs_of_one_size_and_device_share_the_median_latency() {
        let mut pts = vec![
            p(10, Some(3.0), 2.5),
            p(10, Some(1.0), 2.4),
            p(10, Some(2.0), 2.6),
            p(99, Some(9.0), 2.0),
            p(10, None, 2.3),
        ];
        shared_latency(&mut pts);
        let lat: Vec<Option<f64>> = pts.iter().map(|q| q.latency_ms).collect();
        assert_eq!(lat, vec![Some(2.0), Some(2.0), Some(2.0), Some(9.0), None]);
        // Only the error decides among them now.
        let f = front(&pts, |q| q.latency_ms);
        assert_eq!(f, vec![false, true, false, true, false]);
    }

    #[test]
    fn the_front_keeps_exactly_the_non_dominated() {
        let pts = vec![
            p(100, Some(5.0), 2.2), // big and best: front
            p(20, Some(1.0), 2.6),  // small: front
            p(20, Some(1.0), 2.5),  // same size, better: front; dominates the one above
            p(50, Some(3.0), 2.7),  // dominated by (20, 2.5)
            p(60, None, 2.4),       // front by size, never by latency
            p(100, Some(5.0), 2.2), // a tie with the first: neither dominates the other
        ];
        let size = front(&pts, |q| Some(q.parameters as f64));
        assert_eq!(size, vec![true, false, true, false, true, true]);
        let lat = front(&pts, |q| q.latency_ms);
        assert_eq!(lat, vec![true, false, true, false, false, true]);
    }
}
