//! Traffic-speed data sets (PeMSD7(M), PeMSD8): checksum-verified loading, gap filling,
//! day-aware windows, z-score statistics (paper Eq. 15) and the Gaussian-kernel graph with
//! the Chebyshev basis of its scaled Laplacian (paper Eq. 16).
//!
//! Everything here is plain Rust: the results are flat row-major `Vec`s that the model code
//! turns into tensors. The choices follow `docs/spec.md` §1; the provenance of the shipped files
//! is in `data/README.md`.
//!
//! Layout of the data folder (`DataConfig::data_dir`, default `data`):
//! ```text
//! pemsd7/V_228.csv.gz                 12672 x 228 speeds (mph), gzip CSV, no header; row 0 empty
//! pemsd7/W_228.csv                    228 x 228 distances (metres)
//! pemsd7/PeMSD7_M_Station_Info.csv    station table (verified, not used in computation)
//! pemsd8/distance.csv                 edge list from,to,cost (metres)
//! pemsd8/PEMS08_speed_PARTIAL_first1282.csv.gz   1282 x 170 speeds (mph), first 1282 steps only
//! ```
//! The full PeMSD8 speeds can be given as ASTGCN's `PEMS08.npz` (`DataConfig::pems08_npz`).
//!
//! One file per concern: this one the public types and [`Dataset::load`]; `files` the shipped
//! files, their checksums and readers (CSV, gzip, the edge list, `PEMS08.npz`); `prepare` gap
//! filling, whole days, windows and the z-score statistics; `graph` the Gaussian kernel, the
//! scaled Laplacian, its largest eigenvalue and the Chebyshev terms.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;

use crate::digest::sha256_hex;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

mod files;
mod graph;
mod prepare;

use files::{
    gunzip, parse_csv, parse_edge_list, read_file, read_pems08_npz, read_verified, utf8,
    PEMSD7_DISTANCES, PEMSD7_SPEEDS, PEMSD7_STATIONS, PEMSD8_EDGES, PEMSD8_PARTIAL,
};
use prepare::{is_missing, prepare, Raw};

/// Five-minute readings per day.
const STEPS_PER_DAY: usize = 288;

/// Which data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetName {
    /// PeMSD7(M): 228 stations, 44 weekdays of May–June 2012.
    Pemsd7,
    /// PeMSD8: 170 stations, July–August 2016 (62 days; only 1282 steps ship with the crate).
    Pemsd8,
}

impl DatasetName {
    /// Number of stations (graph nodes).
    pub fn nodes(self) -> usize {
        match self {
            DatasetName::Pemsd7 => 228,
            DatasetName::Pemsd8 => 170,
        }
    }

    /// How the data shipped with stkd differ from the paper's, where they do: what a result on
    /// them can and cannot say of the paper's.
    pub fn shipped_difference(self) -> Option<&'static str> {
        match self {
            DatasetName::Pemsd7 => None,
            DatasetName::Pemsd8 => Some(
                "the PeMSD8 data shipped with stkd hold 4 of the paper's 62 days (split 2 / 1 / \
                 1 for training, validation and test; `--pems08-npz` takes the full file); runs \
                 on the shipped data, as the committed ones, are about those 4 days: their \
                 students stay far from the paper's errors, and their verdicts say nothing of \
                 the paper's PeMSD8 numbers",
            ),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            DatasetName::Pemsd7 => "pemsd7",
            DatasetName::Pemsd8 => "pemsd8",
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = DataError;

    /// `pemsd7` or `pemsd8`, case-insensitive.
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pemsd7" => Ok(DatasetName::Pemsd7),
            "pemsd8" => Ok(DatasetName::Pemsd8),
            _ => Err(DataError::UnknownDataset(s.to_string())),
        }
    }
}

/// How to load and prepare a data set. `DataConfig::new` gives the paper's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    pub dataset: DatasetName,
    /// Folder holding `pemsd7/` and `pemsd8/` (default `data`, relative to the working directory).
    pub data_dir: PathBuf,
    /// Optional full ASTGCN `PEMS08.npz` (array `data`, shape `[T, 170, 3]`, `<f8` or `<f4`,
    /// speed = channel 2). When set, PeMSD8 uses it instead of the shipped partial speed file.
    pub pems08_npz: Option<PathBuf>,
    /// Train/val/test days. Default: `val = test = max(1, round(days * 5 / 44))`, train = the rest,
    /// i.e. STGCN's 34/5/5 for PeMSD7's 44 days (spec I-2), 48/7/7 for 62 days, 2/1/1 for 4.
    /// If the days add up to fewer than the data hold, only the first days are used.
    pub split_days: Option<[usize; 3]>,
    /// Kernel width σ² of Eq. 16, with distances in km (default 10).
    pub sigma2: f64,
    /// Threshold ε of Eq. 16: weights below it are dropped (default 0.5).
    pub epsilon: f64,
    /// Input steps M (default 12).
    pub n_his: usize,
    /// Predicted steps H (default 9).
    pub n_pred: usize,
    /// Chebyshev order Ks: the basis holds T_0 .. T_{Ks-1} (default 3).
    pub ks: usize,
}

impl DataConfig {
    /// The defaults of spec §1 for `dataset`.
    pub fn new(dataset: DatasetName) -> Self {
        DataConfig {
            dataset,
            data_dir: PathBuf::from("data"),
            pems08_npz: None,
            split_days: None,
            sigma2: 10.0,
            epsilon: 0.5,
            n_his: 12,
            n_pred: 9,
            ks: 3,
        }
    }
}

/// A split of the days, in time order: train, then validation, then test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "training",
            Split::Val => "validation",
            Split::Test => "test",
        })
    }
}

/// Why a data set could not be loaded. Every message names the file and what was expected.
#[derive(thiserror::Error, Debug)]
pub enum DataError {
    #[error("{what} not found: looked for {} (see data/README.md)", path.display())]
    NotFound { path: PathBuf, what: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "checksum mismatch for {}: expected sha256 {expected}, got {actual} \
         (damaged or not the shipped file; see data/README.md)",
        path.display()
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// `line` and `column` count from 1.
    #[error("{}: line {line}, column {column}: {msg}", path.display())]
    Csv {
        path: PathBuf,
        line: usize,
        column: usize,
        msg: String,
    },
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    #[error(
        "{}: station {station} (column {}) has no valid reading (all empty, NaN or 0)",
        path.display(),
        station + 1
    )]
    NoValidReadings { path: PathBuf, station: usize },
    #[error("invalid data configuration: {0}")]
    Config(String),
    #[error("unknown dataset `{0}`: expected pemsd7 or pemsd8")]
    UnknownDataset(String),
}

/// A prepared data set: gap-filled speeds, split, z-score statistics and graph.
#[derive(Clone)]
pub struct Dataset {
    pub name: DatasetName,
    pub nodes: usize,
    /// Steps used: `days * steps_per_day`.
    pub steps: usize,
    pub steps_per_day: usize,
    /// Whole days used (= the sum of `split_days`).
    pub days: usize,
    /// Train/val/test days.
    pub split_days: [usize; 3],
    /// Readings (within the steps used) that were missing and filled by interpolation.
    pub filled: usize,
    /// Mean of Eq. 15: over every element of every training window (STGCN convention).
    pub mean: f64,
    /// Population standard deviation of Eq. 15, same elements as `mean`.
    pub std: f64,
    /// `[steps, nodes]` row-major speeds in mph after gap filling (not normalised).
    pub speeds: Vec<f32>,
    /// `[nodes, nodes]` Gaussian-kernel weights W of Eq. 16 (zero diagonal).
    pub weights: Vec<f64>,
    /// Non-zero off-diagonal (directed) entries of `weights`.
    pub edges: usize,
    /// Nodes without any edge (degree 0): their diagonal of the Laplacian is 0 (see
    /// `scaled_laplacian`).
    pub isolated: usize,
    /// `[ks, nodes, nodes]` Chebyshev polynomials T_0 .. T_{ks-1} of the scaled Laplacian.
    pub cheb: Vec<f32>,
    /// Chebyshev order (first dimension of `cheb`).
    pub ks: usize,
    /// Largest eigenvalue of the normalised Laplacian L used to scale it.
    pub lambda_max: f64,
    /// Input steps per window.
    pub n_his: usize,
    /// Target steps per window.
    pub n_pred: usize,
    /// Hex SHA-256 over the hex digests of the input files used: the identity of the data.
    pub checksum: String,
    /// Human-readable remarks (partial data, dropped steps, filled readings, ...).
    pub notes: Vec<String>,
    source: &'static str,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("dataset", &self.source)
            .field("nodes", &self.nodes)
            .field("steps", &self.steps)
            .field("days", &self.days)
            .field("split_days", &self.split_days)
            .field("filled", &self.filled)
            .field("mean", &self.mean)
            .field("std", &self.std)
            .field("edges", &self.edges)
            .field("isolated", &self.isolated)
            .field("checksum", &self.checksum)
            .finish_non_exhaustive()
    }
}

/// Window counts per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCounts {
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// Summary of a data set for logs, run stores and reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// `pemsd7`, `pemsd8` or `synthetic`.
    pub dataset: String,
    pub nodes: usize,
    pub steps: usize,
    pub days: usize,
    pub split_days: [usize; 3],
    pub filled: usize,
    pub edges: usize,
    /// Nodes without any edge at σ², ε.
    #[serde(default)]
    pub isolated: usize,
    pub train_mean: f64,
    pub train_std: f64,
    /// The validation MAE (mph, mean over the predicted steps) of the trivial predictor that
    /// predicts `train_mean` everywhere ([`Dataset::mean_predictor_mae`]): a run whose best
    /// validation MAE is worse has learnt nothing.
    #[serde(default)]
    pub val_mae_of_train_mean: f64,
    pub windows: WindowCounts,
    pub notes: Vec<String>,
    pub checksum: String,
    pub steps_per_day: usize,
    pub n_his: usize,
    pub n_pred: usize,
}

impl Dataset {
    /// The data set's identity as [`Dataset::load`] computes it (SHA-256 over its files'
    /// digests, each file verified), without parsing or preparing anything: what planning,
    /// `status` and `--dry-run` need to hash runs.
    pub fn checksum(cfg: &DataConfig) -> Result<String, DataError> {
        let dir = &cfg.data_dir;
        let mut digests = Vec::new();
        match cfg.dataset {
            DatasetName::Pemsd7 => {
                for f in [&PEMSD7_STATIONS, &PEMSD7_DISTANCES, &PEMSD7_SPEEDS] {
                    digests.push(read_verified(dir, f)?.1);
                }
            }
            DatasetName::Pemsd8 => {
                digests.push(read_verified(dir, &PEMSD8_EDGES)?.1);
                digests.push(match &cfg.pems08_npz {
                    Some(npz) => sha256_hex(&read_file(npz, "full PEMS08.npz (pems08_npz)")?),
                    None => read_verified(dir, &PEMSD8_PARTIAL)?.1,
                });
            }
        }
        Ok(sha256_hex(digests.concat().as_bytes()))
    }

    /// Load, verify and prepare the data set named in `cfg`.
    ///
    /// Every shipped file is checked against its SHA-256; missing readings (empty, NaN, 0) are
    /// filled per station by linear interpolation in time; only whole days are used; the z-score
    /// statistics (Eq. 15) come from the training windows; W follows Eq. 16 with d in km.
    pub fn load(cfg: &DataConfig) -> Result<Dataset, DataError> {
        let n = cfg.dataset.nodes();
        let dir = &cfg.data_dir;
        let mut notes = Vec::new();
        let mut digests = Vec::new();
        let raw = match cfg.dataset {
            DatasetName::Pemsd7 => {
                if cfg.pems08_npz.is_some() {
                    notes.push("pems08_npz is ignored for PeMSD7".to_string());
                }
                let (_, h) = read_verified(dir, &PEMSD7_STATIONS)?;
                digests.push(h);
                let (bytes, h) = read_verified(dir, &PEMSD7_DISTANCES)?;
                digests.push(h);
                let path = dir.join(PEMSD7_DISTANCES.rel);
                let text = utf8(&path, &bytes)?;
                let (metres, rows) = parse_csv::<f64>(&path, text, n, false)?;
                if rows != n {
                    return Err(DataError::Format {
                        path,
                        msg: format!("expected {n} rows of {n} distances, found {rows} rows"),
                    });
                }
                let mut dist_km = Vec::with_capacity(n * n);
                for (k, &d) in metres.iter().enumerate() {
                    if !d.is_finite() || d < 0.0 {
                        return Err(DataError::Csv {
                            path,
                            line: k / n + 1,
                            column: k % n + 1,
                            msg: format!("distance must be a finite number >= 0, found {d}"),
                        });
                    }
                    dist_km.push(d / 1000.0);
                }
                let (bytes, h) = read_verified(dir, &PEMSD7_SPEEDS)?;
                digests.push(h);
                let path = dir.join(PEMSD7_SPEEDS.rel);
                let text = gunzip(&path, &bytes)?;
                let (speeds, rows) = parse_csv::<f32>(&path, &text, n, false)?;
                if rows > 0 && speeds[..n].iter().all(|&v| is_missing(v)) {
                    notes.push(
                        "PeMSD7: row 0 (2012-05-01 00:00) is missing in every available source; \
                         it is filled from the nearest valid reading (row 1)"
                            .to_string(),
                    );
                }
                Raw {
                    name: DatasetName::Pemsd7,
                    source: "pemsd7",
                    nodes: n,
                    speeds,
                    rows,
                    speed_path: path,
                    dist_km,
                    remainder_noted: false,
                }
            }
            DatasetName::Pemsd8 => {
                let (bytes, h) = read_verified(dir, &PEMSD8_EDGES)?;
                digests.push(h);
                let path = dir.join(PEMSD8_EDGES.rel);
                let dist_km = parse_edge_list(&path, utf8(&path, &bytes)?, n, &mut notes)?;
                let (speeds, rows, speed_path, remainder_noted) = match &cfg.pems08_npz {
                    Some(npz) => {
                        let (speeds, rows, h) = read_pems08_npz(npz, n, &mut notes)?;
                        digests.push(h);
                        (speeds, rows, npz.clone(), false)
                    }
                    None => {
                        let (bytes, h) = read_verified(dir, &PEMSD8_PARTIAL)?;
                        digests.push(h);
                        let path = dir.join(PEMSD8_PARTIAL.rel);
                        let text = gunzip(&path, &bytes)?;
                        let (speeds, rows) = parse_csv::<f32>(&path, &text, n, false)?;
                        let days = rows / STEPS_PER_DAY;
                        notes.push(format!(
                            "PeMSD8: only the partial speed file ({rows} steps) is present; using {days} \
                             whole days, {} trailing steps dropped; pass the full ASTGCN PEMS08.npz \
                             (pems08_npz) for all 62 days",
                            rows - days * STEPS_PER_DAY
                        ));
                        (speeds, rows, path, true)
                    }
                };
                Raw {
                    name: DatasetName::Pemsd8,
                    source: "pemsd8",
                    nodes: n,
                    speeds,
                    rows,
                    speed_path,
                    dist_km,
                    remainder_noted,
                }
            }
        };
        let checksum = sha256_hex(digests.concat().as_bytes());
        prepare(raw, cfg, STEPS_PER_DAY, checksum, notes)
    }

    /// A small deterministic data set for tests: `nodes` stations on a random geometric graph
    /// (uniform positions in a square of side `2·√nodes` km), speeds with a smooth daily pattern
    /// (two rush-hour dips) plus noise, and a few zero readings so that gap filling runs. It
    /// goes through the same pipeline as real data (default `DataConfig` values, default split,
    /// e.g. `days-2/1/1` for few days). `name` is a placeholder (`Pemsd7`); `info().dataset` is
    /// `synthetic`.
    ///
    /// Panics if `days < 3` or `steps_per_day < 21` (one window of 12 + 9 steps) or `nodes == 0`.
    pub fn synthetic(nodes: usize, days: usize, steps_per_day: usize, seed: u64) -> Dataset {
        let cfg = DataConfig::new(DatasetName::Pemsd7);
        assert!(nodes > 0, "synthetic: nodes must be > 0");
        assert!(
            days >= 3,
            "synthetic: need at least 3 days (train, val, test)"
        );
        assert!(
            steps_per_day >= cfg.n_his + cfg.n_pred,
            "synthetic: steps_per_day must be >= n_his + n_pred = {}",
            cfg.n_his + cfg.n_pred
        );
        let mut rng = Rng::from_state(seed ^ 0x5eed_da7a_5e75_0001);
        let side = 2.0 * (nodes as f64).sqrt();
        let pos: Vec<(f64, f64)> = (0..nodes)
            .map(|_| (rng.next_f64() * side, rng.next_f64() * side))
            .collect();
        let mut dist_km = vec![0.0; nodes * nodes];
        for i in 0..nodes {
            for j in 0..nodes {
                let (dx, dy) = (pos[i].0 - pos[j].0, pos[i].1 - pos[j].1);
                dist_km[i * nodes + j] = (dx * dx + dy * dy).sqrt();
            }
        }
        let base: Vec<f64> = (0..nodes).map(|_| 55.0 + 15.0 * rng.next_f64()).collect();
        let amp: Vec<f64> = (0..nodes).map(|_| 10.0 + 20.0 * rng.next_f64()).collect();
        let rows = days * steps_per_day;
        let mut speeds = Vec::with_capacity(rows * nodes);
        for d in 0..days {
            let day_factor = 0.9 + 0.2 * rng.next_f64();
            for s in 0..steps_per_day {
                let tod = s as f64 / steps_per_day as f64;
                let rush = (-((tod - 0.33) / 0.04).powi(2)).exp()
                    + 0.8 * (-((tod - 0.73) / 0.05).powi(2)).exp();
                for i in 0..nodes {
                    let noise = (rng.next_f64() + rng.next_f64() + rng.next_f64() - 1.5) * 2.0;
                    let v = (base[i] - amp[i] * day_factor * rush + noise).max(3.0);
                    let missing = (d == 0 && s == 0 && i == 0) || rng.next_f64() < 0.002;
                    speeds.push(if missing { 0.0 } else { v as f32 });
                }
            }
        }
        let raw = Raw {
            name: DatasetName::Pemsd7,
            source: "synthetic",
            nodes,
            speeds,
            rows,
            speed_path: PathBuf::from("<synthetic>"),
            dist_km,
            remainder_noted: false,
        };
        let checksum =
            sha256_hex(format!("synthetic:{nodes}:{days}:{steps_per_day}:{seed}").as_bytes());
        let notes = vec![format!(
            "synthetic data set (nodes={nodes}, days={days}, steps_per_day={steps_per_day}, \
             seed={seed}): daily pattern + noise on a random geometric graph"
        )];
        prepare(raw, &cfg, steps_per_day, checksum, notes).expect("synthetic data set is valid")
    }

    /// Windows per day: `steps_per_day − n_his − n_pred + 1` (268 for 288, 12, 9).
    fn windows_per_day(&self) -> usize {
        self.steps_per_day + 1 - self.n_his - self.n_pred
    }

    fn split_range(&self, split: Split) -> (usize, usize) {
        let [tr, va, te] = self.split_days;
        match split {
            Split::Train => (0, tr),
            Split::Val => (tr, va),
            Split::Test => (tr + va, te),
        }
    }

    /// Number of windows in `split`. Windows never cross a day boundary (spec I-3): each day
    /// holds `steps_per_day − n_his − n_pred + 1` of them (268 for the defaults).
    pub fn windows(&self, split: Split) -> usize {
        self.split_range(split).1 * self.windows_per_day()
    }

    /// Fill `x` with `[b, n_his, nodes]` and `y` with `[b, n_pred, nodes]` (row-major, z-scored
    /// with Eq. 15: `(v − mean) / std`) for the windows `idx` of `split`. Window `w` lies in day
    /// `first_day(split) + w / per_day` at offset `o = w % per_day`; x = steps `[o, o + n_his)`,
    /// y = steps `[o + n_his, o + n_his + n_pred)` of that day. Previous contents are replaced.
    ///
    /// Panics if an index is `>= self.windows(split)`.
    pub fn batch(&self, split: Split, idx: &[usize], x: &mut Vec<f32>, y: &mut Vec<f32>) {
        let n = self.nodes;
        let per_day = self.windows_per_day();
        let (first_day, days) = self.split_range(split);
        let (mean, inv_std) = (self.mean, 1.0 / self.std);
        x.clear();
        y.clear();
        x.reserve(idx.len() * self.n_his * n);
        y.reserve(idx.len() * self.n_pred * n);
        let norm = |v: &f32| ((*v as f64 - mean) * inv_std) as f32;
        for &w in idx {
            assert!(
                w < days * per_day,
                "window {w} out of range for {split:?} ({} windows)",
                days * per_day
            );
            let t0 = (first_day + w / per_day) * self.steps_per_day + w % per_day;
            let mid = t0 + self.n_his;
            let end = mid + self.n_pred;
            x.extend(self.speeds[t0 * n..mid * n].iter().map(norm));
            y.extend(self.speeds[mid * n..end * n].iter().map(norm));
        }
    }

    /// The MAE (mph) of predicting the training split's mean speed ([`Dataset::mean`]) for
    /// every predicted step of every window of `split`, mean over the steps as a run's
    /// validation MAE is: the baseline any trained network must beat. `NaN` for a split without
    /// windows.
    pub fn mean_predictor_mae(&self, split: Split) -> f64 {
        let n = self.nodes;
        let per_day = self.windows_per_day();
        let (first_day, days) = self.split_range(split);
        let mut sum = 0.0;
        for w in 0..days * per_day {
            let t0 = (first_day + w / per_day) * self.steps_per_day + w % per_day + self.n_his;
            let targets = &self.speeds[t0 * n..(t0 + self.n_pred) * n];
            sum += targets
                .iter()
                .map(|&v| (v as f64 - self.mean).abs())
                .sum::<f64>();
        }
        sum / (days * per_day * self.n_pred * n) as f64
    }

    /// Summary for logs and the run store.
    pub fn info(&self) -> DataInfo {
        DataInfo {
            dataset: self.source.to_string(),
            nodes: self.nodes,
            steps: self.steps,
            days: self.days,
            split_days: self.split_days,
            filled: self.filled,
            edges: self.edges,
            isolated: self.isolated,
            train_mean: self.mean,
            train_std: self.std,
            val_mae_of_train_mean: self.mean_predictor_mae(Split::Val),
            windows: WindowCounts {
                train: self.windows(Split::Train),
                val: self.windows(Split::Val),
                test: self.windows(Split::Test),
            },
            notes: self.notes.clone(),
            checksum: self.checksum.clone(),
            steps_per_day: self.steps_per_day,
            n_his: self.n_his,
            n_pred: self.n_pred,
        }
    }
}

#[cfg(test)]
mod tests;
