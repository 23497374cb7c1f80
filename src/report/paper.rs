//! The paper's reported values, shipped with the crate: `paper/*.csv` at the repository root
//! (transcribed from the paper's tables) are embedded at compile time, so a report never needs
//! anything outside the binary to put our numbers beside the paper's.

use crate::data::DatasetName;

/// Long format: `table,dataset,model,param_pct,metric,horizon_min,value` (Tables 2, 4, 5, 7, 8).
const METRICS_CSV: &str = include_str!("../../paper/paper_metrics.csv");
/// `dataset,model,parameters,channels,test_time_s,flops` (Table 1).
const NETWORKS_CSV: &str = include_str!("../../paper/table1_networks.csv");
/// `model,pemsd7_pct,pemsd8_pct` (Table 3).
const ATTENTION_CSV: &str = include_str!("../../paper/table3_attention.csv");

/// The paper, as cited in reports.
pub const CITATION: &str = "Izadi, Safayani, Mirzaei: \"Knowledge Distillation on \
Spatial-Temporal Graph Convolutional Network for Traffic Prediction\"";

/// Metric names in the paper's column order.
pub const METRICS: [&str; 3] = ["MAPE", "MAE", "RMSE"];
/// Index of MAPE in [`METRICS`] (the metric argument of `report::runs::test_metric` and of the
/// claims).
pub const MAPE: usize = 0;
/// Index of MAE in [`METRICS`].
pub const MAE: usize = 1;
/// Index of RMSE in [`METRICS`].
pub const RMSE: usize = 2;
/// Horizons (minutes) in the paper's column order; horizon `h` is predicted step `h / 5`.
pub const HORIZONS: [u32; 3] = [15, 30, 45];
/// Number of metric columns (3 metrics × 3 horizons).
pub const COLUMNS: usize = 9;

/// Index of (metric, horizon) in a row of [`COLUMNS`] values: metric-major, as in the paper.
pub fn column(metric: usize, horizon: usize) -> usize {
    metric * HORIZONS.len() + horizon
}

/// The caption of paper table `n` (1–9).
pub fn caption(table: u8) -> &'static str {
    match table {
        1 => "Network information for knowledge distillation and pruning",
        2 => "Comparison of our approach L_ORD with L_RD(L2) and L_RD(KL) on PeMSD7 and PeMSD8",
        3 => "Ratios of attention to teacher prediction to all training data",
        4 => {
            "Performance comparison of our spatial-temporal correlation distillation loss \
             function L_STCD with other loss functions"
        }
        5 => {
            "Results from the ablation study comparing the impact of individual loss functions \
             (L_SCD, L_TCD and L_ORD), contributing to the construction of our overall L_STCD \
             loss function"
        }
        6 => "Hyperparameters of the proposed knowledge distillation loss functions",
        7 => {
            "The results showcase the impact of applying the pruning algorithm in enhancing \
             knowledge distillation"
        }
        8 => {
            "Comparison of the performance between Algorithm 1 and the pruning algorithm that \
             does not utilize knowledge distillation"
        }
        9 => "Hyperparameters of the proposed pruning algorithm",
        _ => "",
    }
}

/// How the paper names a data set.
pub fn dataset_title(d: DatasetName) -> &'static str {
    match d {
        DatasetName::Pemsd7 => "PeMSD7(M)",
        DatasetName::Pemsd8 => "PeMSD8",
    }
}

/// One model row of a metrics table (Tables 2, 4, 5, 7, 8).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    /// `2`, `4`, `5`, `7` or `8`.
    pub table: u8,
    pub dataset: DatasetName,
    /// As the paper names it, e.g. `Student STCD`, `Pruned W/O KD`.
    pub model: String,
    /// Tables 7 and 8: the share of parameters kept (%).
    pub param_pct: Option<f64>,
    /// MAPE, MAE, RMSE × 15, 30, 45 min (see [`column`]).
    pub values: [f64; COLUMNS],
}

/// One network of Table 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub dataset: DatasetName,
    /// `Teacher`, `Pruning Base Model` or `Student`.
    pub model: String,
    pub parameters: u64,
    /// As printed, e.g. `[1,32,64][64,32,128]`.
    pub channels: String,
    /// Average test time over 100 trials on a GTX 1080 (s).
    pub test_time_s: f64,
    /// As reported; not reproducible from the architecture.
    pub flops: u64,
}

/// One model of Table 3: share (%) of training elements where ORD used the teacher.
#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    pub model: String,
    pub pemsd7_pct: f64,
    pub pemsd8_pct: f64,
}

impl Attention {
    pub fn pct(&self, d: DatasetName) -> f64 {
        match d {
            DatasetName::Pemsd7 => self.pemsd7_pct,
            DatasetName::Pemsd8 => self.pemsd8_pct,
        }
    }
}

/// Splits one CSV line; fields may be double-quoted (with `""` for a quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

/// Data lines of an embedded CSV (header skipped), split into fields.
fn records(text: &'static str) -> impl Iterator<Item = Vec<String>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(split_csv)
}

fn num(s: &str, what: &str) -> f64 {
    s.trim()
        .parse()
        .unwrap_or_else(|_| panic!("paper CSV: bad {what} {s:?}"))
}

fn dataset(s: &str) -> DatasetName {
    s.parse()
        .unwrap_or_else(|_| panic!("paper CSV: bad dataset {s:?}"))
}

/// Every metrics row of the paper, in the paper's order (table, dataset, row).
pub fn metrics() -> Vec<MetricsRow> {
    let mut rows: Vec<MetricsRow> = Vec::new();
    for f in records(METRICS_CSV) {
        let table: u8 = f[0]
            .trim_start_matches("table")
            .parse()
            .expect("paper CSV: table");
        let ds = dataset(&f[1]);
        let model = f[2].clone();
        let param_pct = (!f[3].is_empty()).then(|| num(&f[3], "param_pct"));
        let metric = METRICS
            .iter()
            .position(|m| *m == f[4])
            .expect("paper CSV: metric");
        let horizon = HORIZONS
            .iter()
            .position(|h| h.to_string() == f[5])
            .expect("paper CSV: horizon");
        let value = num(&f[6], "value");
        let same = |r: &MetricsRow| {
            r.table == table && r.dataset == ds && r.model == model && r.param_pct == param_pct
        };
        let idx = match rows.iter().position(same) {
            Some(i) => i,
            None => {
                rows.push(MetricsRow {
                    table,
                    dataset: ds,
                    model: model.clone(),
                    param_pct,
                    values: [f64::NAN; COLUMNS],
                });
                rows.len() - 1
            }
        };
        rows[idx].values[column(metric, horizon)] = value;
    }
    rows
}

/// The paper's rows of metrics table `table` on `dataset`, in the paper's order.
pub fn metrics_of(table: u8, dataset: DatasetName) -> Vec<MetricsRow> {
    metrics()
        .into_iter()
        .filter(|r| r.table == table && r.dataset == dataset)
        .collect()
}

/// The paper's values for `model` on `dataset` outside a table of its own (first found in Tables
/// 2, 4, 5, 7, 8, unpruned rows only): e.g. the teacher's and W/O KD student's metrics for a
/// Table 1 or Table 3 report. `None` if the paper never reports that model.
pub fn metrics_anywhere(dataset: DatasetName, model: &str) -> Option<MetricsRow> {
    metrics().into_iter().find(|r| {
        r.dataset == dataset && r.model == model && r.param_pct.is_none_or(|p| p == 100.0)
    })
}

/// Table 1, in the paper's order.
pub fn networks() -> Vec<Network> {
    records(NETWORKS_CSV)
        .map(|f| Network {
            dataset: dataset(&f[0]),
            model: f[1].clone(),
            parameters: num(&f[2], "parameters") as u64,
            channels: f[3].clone(),
            test_time_s: num(&f[4], "test_time_s"),
            flops: num(&f[5], "flops") as u64,
        })
        .collect()
}

/// Table 3, in the paper's order.
pub fn attention() -> Vec<Attention> {
    records(ATTENTION_CSV)
        .map(|f| Attention {
            model: f[0].clone(),
            pemsd7_pct: num(&f[1], "pemsd7_pct"),
            pemsd8_pct: num(&f[2], "pemsd8_pct"),
        })
        .collect()
}

/// `dataset,loss,batch_size,learning_rate,alpha1,alpha2,alpha3,alpha,beta` (Table 6).
const KD_HYPERPARAMETERS_CSV: &str = include_str!("../../paper/table6_kd_hyperparameters.csv");

/// The paper's Table 6 weight `field` (`alpha1`…`alpha3`, `alpha`, `beta`) of distillation loss
/// `loss` (`stcd`, `rd-l2`, …) on `dataset`, if it gives one.
pub fn kd_hyperparameter(d: DatasetName, loss: &str, field: &str) -> Option<f64> {
    let header: Vec<String> = split_csv(KD_HYPERPARAMETERS_CSV.lines().next()?);
    let col = header.iter().position(|h| h == field)?;
    records(KD_HYPERPARAMETERS_CSV)
        .find(|f| dataset(&f[0]) == d && f[1].eq_ignore_ascii_case(loss))
        .and_then(|f| f.get(col).filter(|v| !v.is_empty()).map(|v| num(v, field)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_tables_parse_completely() {
        let m = metrics();
        // Tables 2 (5 rows), 4 (6), 5 (6), 7 (3), 8 (7) per data set.
        assert_eq!(m.len(), 2 * (5 + 6 + 6 + 3 + 7));
        assert!(m.iter().all(|r| r.values.iter().all(|v| v.is_finite())));
        let t4 = metrics_of(4, DatasetName::Pemsd7);
        assert_eq!(t4.len(), 6);
        assert_eq!(t4[5].model, "Student STCD");
        assert_eq!(t4[5].values[column(0, 0)], 6.078);
        assert_eq!(t4[5].values[column(2, 2)], 8.344);
        let t8 = metrics_of(8, DatasetName::Pemsd8);
        assert_eq!(t8[1].model, "Pruned W/O KD");
        assert_eq!(t8[1].param_pct, Some(25.0));
        let n = networks();
        assert_eq!(n.len(), 6);
        assert_eq!(n[0].channels, "[1,32,64][64,32,128]");
        assert_eq!(n[0].flops, 49_889_172_087);
        assert_eq!(n[5].parameters, 7_766);
        let a = attention();
        assert_eq!(a.len(), 4);
        assert_eq!(a[2].pct(DatasetName::Pemsd7), 64.637);
        assert_eq!(
            metrics_anywhere(DatasetName::Pemsd8, "Base Model")
                .unwrap()
                .values[0],
            2.206
        );
        assert!(metrics_anywhere(DatasetName::Pemsd8, "Pruned W/O KD").is_none());
    }

    #[test]
    fn csv_fields_may_be_quoted() {
        assert_eq!(split_csv("a,\"b,c\",\"d\"\"e\","), ["a", "b,c", "d\"e", ""]);
    }
}
