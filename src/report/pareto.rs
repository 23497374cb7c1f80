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
use super::paper::{HORIZONS, MAE};
use super::runs::{
    datasets, hyperparameters, metric_of, model_name, paper_table, prune_info, short_number,
};
use super::timing::{TimeKind, Timed};

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
    /// FLOPs per sample of the network it ends with.
    pub flops: u64,
    /// Test time of one batch (ms) and where it was measured: the median re-timed alone
    /// where the run was re-timed, else the figure recorded at the end of its training.
    pub latency_ms: Option<f64>,
    pub device: String,
    /// Windows in the measured batch.
    pub batch: Option<u32>,
    /// Which of the two figures `latency_ms` is.
    pub latency_kind: TimeKind,
    /// First and third quartile (ms) of a re-timed figure.
    pub latency_iqr_ms: Option<(f64, f64)>,
    /// Timed repetitions behind the figure.
    pub latency_runs: Option<usize>,
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
    /// Networks whose latency order contradicts their FLOPs order
    /// ([`super::timing::flops_order_line`]).
    pub flops_order: Option<String>,
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
            parts.push(format!("{}% pruned", short_number(t)));
        }
    }
    parts.push(format!("{} epochs", r.config.train.epochs));
    parts.push(format!("seed {}", r.config.train.seed));
    parts.join(" · ")
}

/// One latency per network size, device and kind of figure: the median of the runs'
/// figures. A prediction's time does not depend on the weights, so runs of one architecture
/// differ only by when (and beside what) they were timed; the front should not rank that noise.
/// (Re-timed runs of one shape already share one figure.)
fn shared_latency(points: &mut [Point]) {
    type Key = (u64, String, TimeKind);
    let key = |p: &Point| -> Key { (p.parameters, p.device.clone(), p.latency_kind) };
    let mut groups: std::collections::BTreeMap<Key, Vec<f64>> = Default::default();
    for p in points.iter() {
        if let Some(l) = p.latency_ms {
            groups.entry(key(p)).or_default().push(l);
        }
    }
    for p in points.iter_mut() {
        if let Some(v) = groups.get_mut(&key(p)) {
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

/// The front in (latency, MAE). Where any run was re-timed alone, only such figures rank: one
/// taken beside other work says nothing against a measurement.
fn latency_front(points: &[Point]) -> Vec<bool> {
    let measured = points.iter().any(|p| p.latency_kind.is_measurement());
    front(points, |p| {
        p.latency_ms
            .filter(|_| !measured || p.latency_kind.is_measurement())
    })
}

/// One [`Timed`] per network (parameters, FLOPs, device and kind of figure) among `points`,
/// named by its models and size, largest first.
fn architectures(points: &[Point]) -> Vec<Timed> {
    type Key = (std::cmp::Reverse<u64>, u64, String, TimeKind);
    let mut groups: std::collections::BTreeMap<Key, (Vec<String>, &Point)> = Default::default();
    for p in points.iter().filter(|p| p.latency_ms.is_some()) {
        let key = (
            std::cmp::Reverse(p.flops),
            p.parameters,
            p.device.clone(),
            p.latency_kind,
        );
        let e = groups.entry(key).or_insert_with(|| (Vec::new(), p));
        if !e.0.contains(&p.model) {
            e.0.push(p.model.clone());
        }
    }
    groups
        .into_values()
        .map(|(models, p)| Timed {
            name: format!(
                "{} ({} parameters)",
                models.join(" / "),
                super::format::thousands(p.parameters)
            ),
            flops: p.flops,
            seconds: p.latency_ms.unwrap_or(f64::NAN) / 1e3,
            iqr: p.latency_iqr_ms.map(|(a, b)| (a / 1e3, b / 1e3)),
            kind: p.latency_kind,
            device: p.device.clone(),
        })
        .collect()
}

/// The Pareto data of `data` at `horizon` minutes (15, 30 or 45); `None` when fewer than two
/// finished runs differ in size or latency on any data set (nothing to trade off).
pub fn pareto(data: &ReportData, horizon: u32) -> Option<Pareto> {
    let h = HORIZONS.iter().position(|&x| x == horizon)?;
    let table = paper_table(&data.name).filter(|t| matches!(t, 2 | 4 | 5 | 7 | 8));
    let mut blocks = Vec::new();
    for d in datasets(data) {
        let mut points: Vec<Point> = data
            .runs
            .iter()
            .filter(|r| r.config.dataset == d)
            .filter_map(|r| {
                let res = r.done()?;
                let mae = metric_of(r, MAE, h)?;
                let profile = res.profile.as_ref();
                let retimed = r.latency();
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
                    flops: profile
                        .map(|p| p.flops)
                        .filter(|&f| f > 0)
                        .unwrap_or_else(|| r.config.model.flops_per_sample()),
                    latency_ms: match retimed {
                        Some(l) => Some(l.median_s * 1e3),
                        None => profile.and_then(|p| p.test_time_s).map(|s| s * 1e3),
                    },
                    device: match retimed {
                        Some(l) => l.device.clone(),
                        None => profile.map(|p| p.device.clone()).unwrap_or_default(),
                    },
                    batch: match retimed {
                        Some(l) => Some(l.batch as u32),
                        None => profile.and_then(|p| p.test_time_batch),
                    },
                    latency_kind: TimeKind::of(retimed),
                    latency_iqr_ms: retimed.map(|l| (l.q1_s * 1e3, l.q3_s * 1e3)),
                    latency_runs: match retimed {
                        Some(l) => Some(l.runs),
                        None => profile.and_then(|p| p.test_time_runs).map(|n| n as usize),
                    },
                    mae,
                    front_size: false,
                    front_latency: false,
                })
            })
            .collect();
        shared_latency(&mut points);
        let sizes = front(&points, |p| Some(p.parameters as f64));
        let lats = latency_front(&points);
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
            let flops_order = super::timing::flops_order_line(&architectures(&points));
            blocks.push(ParetoBlock {
                dataset: d,
                points,
                flops_order,
            });
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
            flops: params * 10,
            latency_ms: lat,
            device: "cpu".into(),
            batch: Some(100),
            latency_kind: TimeKind::Recorded,
            latency_iqr_ms: None,
            latency_runs: None,
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
    fn figures_re_timed_alone_rank_without_the_recorded_ones() {
        let alone = |params, lat, mae| Point {
            latency_kind: TimeKind::Alone,
            latency_iqr_ms: Some((lat - 1.0, lat + 1.0)),
            ..p(params, Some(lat), mae)
        };
        let pts = vec![
            alone(300, 3000.0, 2.2),
            alone(50, 900.0, 2.3),
            p(10, Some(100.0), 2.5), // recorded beside other work: not on the latency front
        ];
        assert_eq!(latency_front(&pts), vec![true, true, false]);
        // Without any re-timed figure the recorded ones rank.
        let pts = vec![p(300, Some(3000.0), 2.2), p(10, Some(100.0), 2.5)];
        assert_eq!(latency_front(&pts), vec![true, true]);
        // A base model recorded slower than the teacher is flagged, marked as no measurement.
        let named = |m: &str, params, lat, mae| Point {
            model: m.into(),
            ..p(params, Some(lat), mae)
        };
        let pts = vec![
            named("Teacher", 300, 16_700.0, 2.2),
            named("Base Model", 50, 20_500.0, 2.3),
            named("Pruned W/O KD", 50, 20_400.0, 2.4),
        ];
        let arch = architectures(&pts);
        assert_eq!(arch.len(), 2);
        assert_eq!(arch[0].flops, 3000);
        let line = crate::report::timing::flops_order_line(&arch).unwrap();
        assert!(
            line.contains(
                "Base Model / Pruned W/O KD (50 parameters) is slower than Teacher (300 \
                 parameters) although it has 6.0× fewer FLOPs: 20.500 s against 16.700 s"
            ) && line.contains("not a measurement"),
            "{line}"
        );
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
