//! Which test time a report shows for a run, and whether the networks' latencies follow their
//! FLOPs. Pure data.
//!
//! A run's test time is either re-timed alone (`stkd retime`, [`crate::latency::Latency`]:
//! median and interquartile range of R repetitions while no other run computed), re-timed
//! beside other runs or with too few repetitions (shown, not judged), or the figure recorded at
//! the end of its training, which was timed while other runs shared the cores: not a
//! measurement.

use crate::latency::Latency;

use super::format::fixed;

/// Where a test time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeKind {
    /// Re-timed alone with at least [`crate::latency::MIN_RUNS`] repetitions: a measurement.
    Alone,
    /// Re-timed, but beside other runs (forced) or with fewer repetitions.
    Retimed,
    /// Recorded at the end of training, beside other work.
    Recorded,
}

impl TimeKind {
    pub fn of(latency: Option<&Latency>) -> TimeKind {
        match latency {
            Some(l) if l.is_measurement() => TimeKind::Alone,
            Some(_) => TimeKind::Retimed,
            None => TimeKind::Recorded,
        }
    }

    pub fn is_measurement(self) -> bool {
        self == TimeKind::Alone
    }

    /// `alone`, `re-timed, not a measurement`, `recorded during training, not a measurement`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeKind::Alone => "re-timed alone",
            TimeKind::Retimed => "re-timed beside other runs or with too few repetitions",
            TimeKind::Recorded => "recorded during training",
        }
    }

    /// What a figure of this kind is marked with in a report (empty for a measurement).
    pub fn mark(self) -> &'static str {
        match self {
            TimeKind::Alone => "",
            TimeKind::Retimed => {
                "re-timed beside other runs or with fewer than 20 repetitions (not a measurement)"
            }
            TimeKind::Recorded => "timed with other work running (not a measurement)",
        }
    }
}

/// `16.702 [16.650–16.760], R = 20`: a re-timed figure (s) with its interquartile range.
pub fn latency_text(l: &Latency, scale: f64, decimals: usize) -> String {
    format!(
        "{} [{}–{}], R = {}",
        fixed(l.median_s * scale, decimals),
        fixed(l.q1_s * scale, decimals),
        fixed(l.q3_s * scale, decimals),
        l.runs
    )
}

/// One network's test time, for [`contradictions`].
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    /// `Teacher`, `Pruned W STCD (12,345 parameters)`, …
    pub name: String,
    pub flops: u64,
    /// Median (re-timed) or the recorded figure (s).
    pub seconds: f64,
    /// First and third quartiles (s) of a re-timed figure.
    pub iqr: Option<(f64, f64)>,
    pub kind: TimeKind,
    pub device: String,
}

/// A network slower than one with more FLOPs.
#[derive(Debug, Clone, PartialEq)]
pub struct Contradiction {
    pub slower: Timed,
    pub faster: Timed,
}

impl Contradiction {
    /// e.g. `Pruning Base Model is slower than Teacher although it has 6.6× fewer FLOPs:
    /// 20.495 s against 16.702 s (timed with other work running (not a measurement))`.
    pub fn text(&self) -> String {
        let (a, b) = (&self.slower, &self.faster);
        let mut t = format!(
            "{} is slower than {} although it has {}× fewer FLOPs: {} s against {} s",
            a.name,
            b.name,
            fixed(b.flops as f64 / a.flops.max(1) as f64, 1),
            fixed(a.seconds, 3),
            fixed(b.seconds, 3)
        );
        match (a.iqr, b.iqr) {
            (Some((a1, a3)), Some((b1, b3))) => {
                t.push_str(&format!(
                    " (medians; IQR {}–{} s and {}–{} s{})",
                    fixed(a1, 3),
                    fixed(a3, 3),
                    fixed(b1, 3),
                    fixed(b3, 3),
                    if a1 <= b3 { ", overlapping" } else { "" }
                ));
            }
            _ => {}
        }
        let marks: Vec<&str> = [a.kind, b.kind]
            .iter()
            .filter(|k| !k.is_measurement())
            .map(|k| k.mark())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !marks.is_empty() {
            t.push_str(&format!("; {}", marks.join("; ")));
        }
        t
    }
}

/// Every pair of networks (on one device) where the one with fewer FLOPs takes longer. Where
/// any figure is a measurement, only measurements are compared (a figure taken beside other
/// work says nothing against one taken alone); otherwise the figures there are, marked as what
/// they are. Ordered by the faster network's FLOPs (most first), then the slower's, then names.
pub fn contradictions(items: &[Timed]) -> Vec<Contradiction> {
    let measured = items.iter().any(|t| t.kind.is_measurement());
    let pool: Vec<&Timed> = items
        .iter()
        .filter(|t| t.kind.is_measurement() == measured && t.seconds.is_finite())
        .collect();
    let mut out = Vec::new();
    for a in &pool {
        for b in &pool {
            if a.device == b.device && a.flops < b.flops && a.seconds > b.seconds {
                out.push(Contradiction {
                    slower: (*a).clone(),
                    faster: (*b).clone(),
                });
            }
        }
    }
    out.sort_by(|x, y| {
        y.faster
            .flops
            .cmp(&x.faster.flops)
            .then(y.slower.flops.cmp(&x.slower.flops))
            .then_with(|| x.faster.name.cmp(&y.faster.name))
            .then_with(|| x.slower.name.cmp(&y.slower.name))
    });
    out
}

/// The report's line on latency against FLOPs for `items` (one data set): `None` with fewer
/// than two timed networks.
pub fn flops_order_line(items: &[Timed]) -> Option<String> {
    let timed = items.iter().filter(|t| t.seconds.is_finite()).count();
    if timed < 2 {
        return None;
    }
    let c = contradictions(items);
    let measured = items.iter().any(|t| t.kind.is_measurement());
    let over = if measured {
        "over the figures re-timed alone"
    } else {
        "over the recorded figures, timed with other work running (not a measurement)"
    };
    Some(if c.is_empty() {
        format!("Latency against FLOPs {over}: every network with fewer FLOPs is faster.")
    } else {
        let lines: Vec<String> = c.iter().map(|x| format!("- **{}**", x.text())).collect();
        format!(
            "Latency against FLOPs {over}: {} pair{} contradict{} the FLOPs order:\n\n{}",
            c.len(),
            if c.len() == 1 { "" } else { "s" },
            if c.len() == 1 { "s" } else { "" },
            lines.join("\n")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, flops: u64, seconds: f64, kind: TimeKind) -> Timed {
        Timed {
            name: name.into(),
            flops,
            seconds,
            iqr: (kind != TimeKind::Recorded).then_some((seconds - 0.1, seconds + 0.1)),
            kind,
            device: "cpu".into(),
        }
    }

    #[test]
    fn a_network_slower_than_one_with_more_flops_is_flagged() {
        use TimeKind::Recorded;
        // The committed Table 1 figures on PeMSD7: the base model slower than the teacher.
        let items = [
            t("Teacher", 334_331_904, 16.702, Recorded),
            t("Pruning Base Model", 51_013_632, 20.495, Recorded),
            t("Student", 10_717_824, 2.802, Recorded),
        ];
        let c = contradictions(&items);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].text(),
            "Pruning Base Model is slower than Teacher although it has 6.6× fewer FLOPs: \
             20.495 s against 16.702 s; timed with other work running (not a measurement)"
        );
        let line = flops_order_line(&items).unwrap();
        assert!(
            line.contains("1 pair contradicts the FLOPs order"),
            "{line}"
        );
        assert!(line.contains("not a measurement"), "{line}");
    }

    #[test]
    fn measurements_are_compared_only_with_measurements() {
        use TimeKind::{Alone, Recorded, Retimed};
        let items = [
            t("Teacher", 300, 3.0, Alone),
            t("Base", 50, 0.9, Alone),
            t("Student", 10, 5.0, Recorded), // beside other work: left out
            t("Other", 20, 4.0, Retimed),    // forced: left out
        ];
        assert!(contradictions(&items).is_empty());
        let line = flops_order_line(&items).unwrap();
        assert!(
            line.contains("re-timed alone")
                && line.contains("every network with fewer FLOPs is faster"),
            "{line}"
        );
        let items = [t("Teacher", 300, 3.0, Alone), t("Base", 50, 3.05, Alone)];
        let c = contradictions(&items);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].text(),
            "Base is slower than Teacher although it has 6.0× fewer FLOPs: 3.050 s against \
             3.000 s (medians; IQR 2.950–3.150 s and 2.900–3.100 s, overlapping)"
        );
        // Other devices are not compared.
        let mut gpu = t("Base", 50, 9.0, Alone);
        gpu.device = "cuda:0".into();
        assert!(contradictions(&[t("Teacher", 300, 3.0, Alone), gpu]).is_empty());
        assert_eq!(flops_order_line(&[t("Teacher", 300, 3.0, Alone)]), None);
    }

    #[test]
    fn kinds_follow_the_latency_file() {
        let mut l = crate::latency::Latency {
            measure: String::new(),
            median_s: 1.0,
            q1_s: 0.9,
            q3_s: 1.2,
            iqr_s: 0.3,
            min_s: 0.8,
            max_s: 1.3,
            runs: 20,
            warm_up: 1,
            batch: 1140,
            device: "cpu".into(),
            threads: 2,
            commit: "c".into(),
            alone: true,
            dataset: crate::data::DatasetName::Pemsd7,
            network: crate::model::StgcnConfig::new(
                crate::model::Preset::Student.channels(),
                3,
                12,
            ),
            timed_run: String::new(),
            samples_s: Vec::new(),
        };
        assert_eq!(TimeKind::of(Some(&l)), TimeKind::Alone);
        assert_eq!(latency_text(&l, 1.0, 3), "1.000 [0.900–1.200], R = 20");
        l.alone = false;
        assert_eq!(TimeKind::of(Some(&l)), TimeKind::Retimed);
        l.alone = true;
        l.runs = 19;
        assert_eq!(TimeKind::of(Some(&l)), TimeKind::Retimed);
        assert_eq!(TimeKind::of(None), TimeKind::Recorded);
        assert_eq!(
            TimeKind::Recorded.mark(),
            "timed with other work running (not a measurement)"
        );
    }
}
