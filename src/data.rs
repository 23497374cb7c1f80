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

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::digest::sha256_hex;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Five-minute readings per day.
const STEPS_PER_DAY: usize = 288;

/// A file shipped in the data folder, with the SHA-256 it must have (the values listed in
/// `data/README.md`).
struct Shipped {
    rel: &'static str,
    sha256: &'static str,
    what: &'static str,
}

const PEMSD7_STATIONS: Shipped = Shipped {
    rel: "pemsd7/PeMSD7_M_Station_Info.csv",
    sha256: "5a9744215880f2ec1a5b3efdbd6ee662eb1533b9b3d68924d85f5e45c28a02fe",
    what: "PeMSD7 station table",
};
const PEMSD7_DISTANCES: Shipped = Shipped {
    rel: "pemsd7/W_228.csv",
    sha256: "c558c602b7937fb3ecb3835938fe8f61a34efa4c51e0ae3f61ed93ecc680060e",
    what: "PeMSD7 distance matrix",
};
const PEMSD7_SPEEDS: Shipped = Shipped {
    rel: "pemsd7/V_228.csv.gz",
    sha256: "fba013791fda8ba14a8760a90541c613ed91cb3d2f8d1ebcd9391c92d63e3cb7",
    what: "PeMSD7 speed file",
};
const PEMSD8_EDGES: Shipped = Shipped {
    rel: "pemsd8/distance.csv",
    sha256: "859d68e7583ed4e6016588eaaca494d3ece286dae361614c5c1833017f87eaa7",
    what: "PeMSD8 edge list",
};
const PEMSD8_PARTIAL: Shipped = Shipped {
    rel: "pemsd8/PEMS08_speed_PARTIAL_first1282.csv.gz",
    sha256: "6132cfd05ae62a25ab8fea38258d9e5f073fc3e854ab3a158cd9d2f1d9cf5f6e",
    what: "PeMSD8 partial speed file",
};
/// CRC-32 of the member `data.npy` of ASTGCN's original `PEMS08.npz`.
const PEMS08_NPY_CRC32: u32 = 0xf2e8_6247;

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

// ---------------------------------------------------------------------------------------------
// Pipeline shared by real and synthetic data

/// Parsed input before preparation.
struct Raw {
    name: DatasetName,
    source: &'static str,
    nodes: usize,
    /// `[rows, nodes]`, missing readings still in place.
    speeds: Vec<f32>,
    rows: usize,
    /// Where the speeds came from, for error messages.
    speed_path: PathBuf,
    /// `[nodes, nodes]` distances in km; `INFINITY` where there is no edge.
    dist_km: Vec<f64>,
    /// A note about the steps after the last whole day was already written.
    remainder_noted: bool,
}

fn prepare(
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
fn default_split(days: usize) -> [usize; 3] {
    let vt = ((days as f64 * 5.0 / 44.0).round() as usize).max(1);
    [days - 2 * vt, vt, vt]
}

fn is_missing(v: f32) -> bool {
    !v.is_finite() || v == 0.0
}

/// Fill missing readings of each station (column) of `data` (`[rows, nodes]`): linear
/// interpolation between the neighbouring valid readings, the nearest valid reading before the
/// first / after the last one. `Err(station)` if a station has no valid reading at all.
fn fill_gaps(data: &mut [f32], rows: usize, nodes: usize) -> Result<(), usize> {
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
fn window_stats(speeds: &[f32], nodes: usize, spd: usize, days: usize, win: usize) -> (f64, f64) {
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

/// Eq. 16: `W_ij = exp(−d_ij² / σ²)` where that is `>= ε`, else 0; zero diagonal (d in km).
fn gaussian_kernel(dist_km: &[f64], n: usize, sigma2: f64, epsilon: f64) -> Vec<f64> {
    let mut w = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let d = dist_km[i * n + j];
            let v = (-d * d / sigma2).exp();
            if v >= epsilon && v > 0.0 {
                w[i * n + j] = v;
            }
        }
    }
    w
}

/// Scaled Laplacian `L̃ = 2L/λmax − I` (paper Eq. 16) of the normalised Laplacian built as the
/// original STGCN code builds it: `L = D − W` (degrees = row sums of W), then entry (i, j)
/// divided by `sqrt(d_i d_j)` only where both degrees are non-zero. A node without edges
/// (`d_i = 0`) keeps `L_ii = 0`, not the 1 of `I − D^−½ W D^−½`. Returns `(L̃, λmax)`.
/// λmax is the largest eigenvalue of the symmetric part of L (L itself for symmetric W).
fn scaled_laplacian(w: &[f64], n: usize) -> (Vec<f64>, f64) {
    let deg = degrees(w, n);
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let d = if i == j { deg[i] } else { 0.0 };
            let mut v = d - w[i * n + j];
            if deg[i] > 0.0 && deg[j] > 0.0 {
                v /= (deg[i] * deg[j]).sqrt();
            }
            l[i * n + j] = v;
        }
    }
    let mut sym = l.clone();
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (l[i * n + j] + l[j * n + i]);
            sym[i * n + j] = m;
            sym[j * n + i] = m;
        }
    }
    let lambda_max = sym_eig_max(&sym, n);
    let lambda = if lambda_max > 0.0 { lambda_max } else { 1.0 };
    for i in 0..n {
        for j in 0..n {
            let eye = if i == j { 1.0 } else { 0.0 };
            l[i * n + j] = 2.0 * l[i * n + j] / lambda - eye;
        }
    }
    (l, lambda_max)
}

/// Row sums of the `n × n` weight matrix (node degrees).
fn degrees(w: &[f64], n: usize) -> Vec<f64> {
    w.chunks_exact(n).map(|row| row.iter().sum()).collect()
}

/// `[ks, n, n]`: T_0 = I, T_1 = L̃, T_k = 2 L̃ T_{k−1} − T_{k−2}, computed in f64.
fn chebyshev(lt: &[f64], n: usize, ks: usize) -> Vec<f32> {
    let nn = n * n;
    let mut t: Vec<Vec<f64>> = Vec::with_capacity(ks);
    let mut eye = vec![0.0; nn];
    for i in 0..n {
        eye[i * n + i] = 1.0;
    }
    t.push(eye);
    if ks > 1 {
        t.push(lt.to_vec());
    }
    for k in 2..ks {
        let (p1, p2) = (&t[k - 1], &t[k - 2]);
        let mut next: Vec<f64> = p2.iter().map(|v| -v).collect();
        for i in 0..n {
            for m in 0..n {
                let a = 2.0 * lt[i * n + m];
                if a == 0.0 {
                    continue;
                }
                let row = &p1[m * n..(m + 1) * n];
                for (o, &b) in next[i * n..(i + 1) * n].iter_mut().zip(row) {
                    *o += a * b;
                }
            }
        }
        t.push(next);
    }
    t.into_iter().flatten().map(|v| v as f32).collect()
}

/// Largest eigenvalue of the symmetric `n × n` matrix `a`: Householder reduction to tridiagonal
/// form, then bisection with Sturm counts (deterministic, accurate to rounding).
fn sym_eig_max(a: &[f64], n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (d, e) = tridiagonalize(a, n);
    // Gershgorin bounds.
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for i in 0..n {
        let r = if i > 0 { e[i - 1].abs() } else { 0.0 } + if i + 1 < n { e[i].abs() } else { 0.0 };
        lo = lo.min(d[i] - r);
        hi = hi.max(d[i] + r);
    }
    // Invariant: count_below(lo) < n (some eigenvalue >= lo), count_below(hi) == n.
    let scale = lo.abs().max(hi.abs()).max(f64::MIN_POSITIVE);
    hi += 1e-12 * scale;
    lo -= 1e-12 * scale;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi || hi - lo <= 4.0 * f64::EPSILON * scale {
            break;
        }
        if sturm_count_below(&d, &e, mid) == n {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Number of eigenvalues of the symmetric tridiagonal (d, e) that are `< x`.
fn sturm_count_below(d: &[f64], e: &[f64], x: f64) -> usize {
    let mut count = 0;
    let mut q = 1.0;
    for i in 0..d.len() {
        let off = if i > 0 { e[i - 1] * e[i - 1] / q } else { 0.0 };
        q = d[i] - x - off;
        if q == 0.0 {
            q = -f64::EPSILON * (d[i].abs() + x.abs()).max(f64::MIN_POSITIVE);
        }
        if q < 0.0 {
            count += 1;
        }
    }
    count
}

/// Householder reduction of a symmetric matrix to tridiagonal form: (diagonal, off-diagonal).
fn tridiagonalize(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; n];
    let mut p = vec![0.0; n];
    for k in 0..n.saturating_sub(2) {
        let norm: f64 = (k + 1..n).map(|i| m[i * n + k].powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let x0 = m[(k + 1) * n + k];
        let alpha = if x0 > 0.0 { -norm } else { norm };
        for i in k + 1..n {
            v[i] = m[i * n + k];
        }
        v[k + 1] -= alpha;
        let vn: f64 = (k + 1..n).map(|i| v[i] * v[i]).sum::<f64>().sqrt();
        if vn == 0.0 {
            continue;
        }
        for x in &mut v[k + 1..n] {
            *x /= vn;
        }
        // p = B v, K = vᵀp, q = p − K v; B ← B − 2 v qᵀ − 2 q vᵀ.
        for i in k + 1..n {
            p[i] = (k + 1..n).map(|j| m[i * n + j] * v[j]).sum();
        }
        let kk: f64 = (k + 1..n).map(|i| v[i] * p[i]).sum();
        for i in k + 1..n {
            p[i] -= kk * v[i];
        }
        for i in k + 1..n {
            for j in k + 1..n {
                m[i * n + j] -= 2.0 * (v[i] * p[j] + p[i] * v[j]);
            }
        }
        m[(k + 1) * n + k] = alpha;
        m[k * n + k + 1] = alpha;
        for i in k + 2..n {
            m[i * n + k] = 0.0;
            m[k * n + i] = 0.0;
        }
    }
    let d = (0..n).map(|i| m[i * n + i]).collect();
    let e = (0..n.saturating_sub(1))
        .map(|i| m[(i + 1) * n + i])
        .collect();
    (d, e)
}

// ---------------------------------------------------------------------------------------------
// File reading

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, DataError> {
    fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DataError::NotFound {
            path: path.to_path_buf(),
            what: what.to_string(),
        },
        _ => DataError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })
}

/// Read a shipped file and check its SHA-256; returns the bytes and the hex digest.
fn read_verified(dir: &Path, f: &Shipped) -> Result<(Vec<u8>, String), DataError> {
    let path = dir.join(f.rel);
    let bytes = read_file(&path, f.what)?;
    let actual = sha256_hex(&bytes);
    if actual != f.sha256 {
        return Err(DataError::Checksum {
            path,
            expected: f.sha256.to_string(),
            actual,
        });
    }
    Ok((bytes, actual))
}

fn utf8<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, DataError> {
    std::str::from_utf8(bytes).map_err(|e| DataError::Format {
        path: path.to_path_buf(),
        msg: format!("not UTF-8 text: {e}"),
    })
}

fn gunzip(path: &Path, bytes: &[u8]) -> Result<String, DataError> {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_string(&mut s)
        .map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            msg: format!("cannot decompress as gzip text: {e}"),
        })?;
    Ok(s)
}

/// Parse a CSV of numbers with exactly `cols` fields per line (empty field = NaN). Returns the
/// values row-major and the number of data rows.
fn parse_csv<T>(
    path: &Path,
    text: &str,
    cols: usize,
    header: bool,
) -> Result<(Vec<T>, usize), DataError>
where
    T: FromStr + Float,
{
    let mut out = Vec::with_capacity(text.len() / 4);
    let mut rows = 0;
    let csv_err = |line: usize, column: usize, msg: String| DataError::Csv {
        path: path.to_path_buf(),
        line,
        column,
        msg,
    };
    for (i, line) in text.lines().enumerate().skip(usize::from(header)) {
        let mut k = 0;
        for field in line.split(',') {
            if k == cols {
                return Err(csv_err(
                    i + 1,
                    k + 1,
                    format!("expected {cols} fields, found more"),
                ));
            }
            let f = field.trim();
            let v = if f.is_empty() {
                T::NAN
            } else {
                f.parse::<T>()
                    .map_err(|_| csv_err(i + 1, k + 1, format!("cannot parse {f:?} as a number")))?
            };
            out.push(v);
            k += 1;
        }
        if k != cols {
            return Err(csv_err(
                i + 1,
                k + 1,
                format!("expected {cols} fields, found {k}"),
            ));
        }
        rows += 1;
    }
    Ok((out, rows))
}

/// The float types `parse_csv` produces.
trait Float: Copy {
    const NAN: Self;
}
impl Float for f32 {
    const NAN: Self = f32::NAN;
}
impl Float for f64 {
    const NAN: Self = f64::NAN;
}

/// PeMSD8 `distance.csv` (`from,to,cost`, cost in metres) → symmetric `[n, n]` km matrix with
/// `INFINITY` for pairs without an edge. Duplicate lines are merged; conflicting costs for one
/// pair keep the smallest (with a note).
fn parse_edge_list(
    path: &Path,
    text: &str,
    n: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<f64>, DataError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.replace(' ', "").eq_ignore_ascii_case("from,to,cost") => {}
        _ => {
            return Err(DataError::Csv {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                msg: "expected the header from,to,cost".into(),
            })
        }
    }
    let mut dist = vec![f64::INFINITY; n * n];
    for i in 0..n {
        dist[i * n + i] = 0.0;
    }
    let mut conflicts = 0;
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let err = |column: usize, msg: String| DataError::Csv {
            path: path.to_path_buf(),
            line: i + 1,
            column,
            msg,
        };
        if fields.len() != 3 {
            return Err(err(
                fields.len().min(3) + 1,
                format!("expected 3 fields from,to,cost, found {}", fields.len()),
            ));
        }
        let node = |c: usize| -> Result<usize, DataError> {
            match fields[c].parse::<usize>() {
                Ok(v) if v < n => Ok(v),
                _ => Err(err(
                    c + 1,
                    format!("expected a node id in 0..{n}, found {:?}", fields[c]),
                )),
            }
        };
        let (a, b) = (node(0)?, node(1)?);
        let cost = match fields[2].parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => v / 1000.0,
            _ => {
                return Err(err(
                    3,
                    format!("expected a distance >= 0, found {:?}", fields[2]),
                ))
            }
        };
        if a == b {
            continue;
        }
        let old = dist[a * n + b];
        if old.is_finite() && old != cost {
            conflicts += 1;
        }
        let v = old.min(cost);
        dist[a * n + b] = v;
        dist[b * n + a] = v;
    }
    if conflicts > 0 {
        notes.push(format!(
            "{}: {conflicts} node pairs listed with different costs; the smallest is used",
            path.display()
        ));
    }
    Ok(dist)
}

/// Read the speeds (channel 2) of ASTGCN's `PEMS08.npz`: member `data.npy`, `<f8` or `<f4`,
/// C order, shape `(T, nodes, 3)`. Returns `[T, nodes]` speeds, T and the file's SHA-256.
fn read_pems08_npz(
    path: &Path,
    nodes: usize,
    notes: &mut Vec<String>,
) -> Result<(Vec<f32>, usize, String), DataError> {
    let bytes = read_file(path, "full PEMS08.npz (pems08_npz)")?;
    let digest = sha256_hex(&bytes);
    let fmt_err = |msg: String| DataError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let mut archive = zip::ZipArchive::new(io::Cursor::new(&bytes[..]))
        .map_err(|e| fmt_err(format!("not a readable npz (zip) archive: {e}")))?;
    let members: Vec<String> = archive.file_names().map(str::to_string).collect();
    let mut member = archive.by_name("data.npy").map_err(|_| {
        fmt_err(format!(
            "no array `data` (member data.npy) in the archive; members: {members:?}"
        ))
    })?;
    let crc = member.crc32();
    if crc != PEMS08_NPY_CRC32 {
        notes.push(format!(
            "{}: data.npy has CRC-32 {crc:#010x}, not that of ASTGCN's original PEMS08.npz \
             ({PEMS08_NPY_CRC32:#010x}); a different copy",
            path.display()
        ));
    }
    let npy_err = |msg: String| fmt_err(format!("data.npy: {msg}"));
    let mut pre = [0u8; 8];
    member
        .read_exact(&mut pre)
        .map_err(|e| npy_err(format!("cannot read the header: {e}")))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(npy_err("not a .npy array (bad magic)".into()));
    }
    let hlen = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            member
                .read_exact(&mut b)
                .map_err(|e| npy_err(format!("cannot read the header: {e}")))?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            member
                .read_exact(&mut b)
                .map_err(|e| npy_err(format!("cannot read the header: {e}")))?;
            u32::from_le_bytes(b) as usize
        }
        v => return Err(npy_err(format!("unsupported .npy version {v}"))),
    };
    let mut hbuf = vec![0u8; hlen];
    member
        .read_exact(&mut hbuf)
        .map_err(|e| npy_err(format!("cannot read the header: {e}")))?;
    let header = String::from_utf8_lossy(&hbuf).into_owned();
    let (descr, fortran, shape) =
        parse_npy_header(&header).ok_or_else(|| npy_err(format!("bad header {header:?}")))?;
    let width = match descr.as_str() {
        "<f8" => 8,
        "<f4" => 4,
        d => {
            return Err(npy_err(format!(
                "dtype {d:?} not supported: expected '<f8' or '<f4'"
            )))
        }
    };
    if fortran {
        return Err(npy_err(
            "Fortran order not supported: expected C order".into(),
        ));
    }
    if shape.len() != 3 || shape[1] != nodes || shape[2] != 3 {
        return Err(npy_err(format!(
            "shape {shape:?}: expected (T, {nodes}, 3) = (steps, stations, flow/occupancy/speed)"
        )));
    }
    let rows = shape[0];
    let mut speeds = Vec::with_capacity(rows * nodes);
    let mut buf = vec![0u8; nodes * 3 * width];
    for t in 0..rows {
        member
            .read_exact(&mut buf)
            .map_err(|e| npy_err(format!("data end after {t} of {rows} steps: {e}")))?;
        for c in buf.chunks_exact(3 * width) {
            let s = &c[2 * width..3 * width];
            speeds.push(if width == 8 {
                f64::from_le_bytes(s.try_into().unwrap()) as f32
            } else {
                f32::from_le_bytes(s.try_into().unwrap())
            });
        }
    }
    // Read to the end so that the archive's CRC-32 is checked.
    let mut rest = Vec::new();
    member
        .read_to_end(&mut rest)
        .map_err(|e| npy_err(format!("damaged member: {e}")))?;
    if !rest.is_empty() {
        return Err(npy_err(format!(
            "{} bytes after the array data",
            rest.len()
        )));
    }
    Ok((speeds, rows, digest))
}

/// Parse `{'descr': '<f8', 'fortran_order': False, 'shape': (17856, 170, 3), }`.
fn parse_npy_header(h: &str) -> Option<(String, bool, Vec<usize>)> {
    let after = |key: &str| -> Option<&str> {
        let k = h
            .find(&format!("'{key}'"))
            .or_else(|| h.find(&format!("\"{key}\"")))?;
        let rest = &h[k + key.len() + 2..];
        Some(rest.trim_start().strip_prefix(':')?.trim_start())
    };
    let d = after("descr")?;
    let q = d.chars().next()?;
    if q != '\'' && q != '"' {
        return None;
    }
    let descr = d[1..].split(q).next()?.to_string();
    let f = after("fortran_order")?;
    let fortran = if f.starts_with("True") {
        true
    } else if f.starts_with("False") {
        false
    } else {
        return None;
    };
    let s = after("shape")?.strip_prefix('(')?;
    let shape = s[..s.find(')')?]
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<usize>().ok())
        .collect::<Option<Vec<_>>>()?;
    Some((descr, fortran, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn real_data_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
    }

    /// A unique empty folder under the system temp dir.
    fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let d = std::env::temp_dir().join(format!(
            "stkd-data-{tag}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// Run the pipeline on hand-made speeds (all node pairs 1 km apart).
    fn tiny(
        speeds: Vec<f32>,
        nodes: usize,
        spd: usize,
        n_his: usize,
        n_pred: usize,
    ) -> Result<Dataset, DataError> {
        let rows = speeds.len() / nodes;
        let raw = Raw {
            name: DatasetName::Pemsd7,
            source: "synthetic",
            nodes,
            speeds,
            rows,
            speed_path: PathBuf::from("<test>"),
            dist_km: vec![1.0; nodes * nodes],
            remainder_noted: false,
        };
        let mut cfg = DataConfig::new(DatasetName::Pemsd7);
        cfg.n_his = n_his;
        cfg.n_pred = n_pred;
        prepare(raw, &cfg, spd, String::new(), Vec::new())
    }

    fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
        assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (tol {tol})");
    }

    fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let mut c = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                for j in 0..n {
                    c[i * n + j] += a[i * n + k] * b[k * n + j];
                }
            }
        }
        c
    }

    #[test]
    fn fill_gaps_interior_and_edges() {
        let nan = f32::NAN;
        // Two stations, 6 steps, row-major [t, station].
        let s0 = [0.0, nan, 3.0, 0.0, 0.0, 6.0];
        let s1 = [1.0, 2.0, 0.0, nan, f32::INFINITY, 0.0];
        let mut data: Vec<f32> = (0..6).flat_map(|t| [s0[t], s1[t]]).collect();
        fill_gaps(&mut data, 6, 2).unwrap();
        let col = |j: usize| (0..6).map(|t| data[t * 2 + j]).collect::<Vec<_>>();
        assert_eq!(col(0), vec![3.0, 3.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(col(1), vec![1.0, 2.0, 2.0, 2.0, 2.0, 2.0]);

        let mut none = vec![1.0, 0.0, 2.0, nan];
        assert_eq!(fill_gaps(&mut none, 2, 2), Err(1));
    }

    #[test]
    fn filled_count_and_no_valid_station_error() {
        // 2 stations, 3 days of 4 steps; station 0 misses 3 readings, station 1 one.
        let mut v: Vec<f32> = (0..24).map(|k| 50.0 + k as f32).collect();
        v[0] = 0.0;
        v[2] = f32::NAN;
        v[10] = 0.0;
        v[23] = 0.0;
        let ds = tiny(v, 2, 4, 2, 1).unwrap();
        assert_eq!(ds.filled, 4);
        assert!(ds.speeds.iter().all(|&x| !is_missing(x)));
        assert!(ds.notes.iter().any(|n| n.contains("4 missing readings")));

        let mut v: Vec<f32> = vec![50.0; 24];
        for t in 0..12 {
            v[t * 2 + 1] = 0.0;
        }
        let err = tiny(v, 2, 4, 2, 1).unwrap_err();
        assert!(matches!(err, DataError::NoValidReadings { station: 1, .. }));
        assert!(err.to_string().contains("<test>"), "{err}");
    }

    #[test]
    fn kernel_three_nodes_by_hand() {
        // d01 = 1 km, d02 = 2.5 km, d12 = 3 km (symmetric).
        let d = vec![0.0, 1.0, 2.5, 1.0, 0.0, 3.0, 2.5, 3.0, 0.0];
        let w = gaussian_kernel(&d, 3, 10.0, 0.5);
        let w01 = (-0.1f64).exp(); // 0.9048
        let w02 = (-0.625f64).exp(); // 0.5353 >= 0.5, kept
                                     // exp(-0.9) = 0.4066 < 0.5, dropped.
        let want = [0.0, w01, w02, w01, 0.0, 0.0, w02, 0.0, 0.0];
        for k in 0..9 {
            assert_close(w[k], want[k], 1e-15, "W");
        }
        assert_eq!(w.iter().filter(|&&x| x != 0.0).count(), 4);
        // Missing edges (infinite distance) give no weight even with epsilon = 0.
        let d = vec![0.0, f64::INFINITY, f64::INFINITY, 0.0];
        assert!(gaussian_kernel(&d, 2, 10.0, 0.0).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn eigenvalue_solver() {
        // Normalised Laplacians with known spectra: path P4 -> 2, ring C5 -> 1 - cos(4π/5).
        let path = |n: usize| {
            let mut w = vec![0.0; n * n];
            for i in 0..n - 1 {
                w[i * n + i + 1] = 1.0;
                w[(i + 1) * n + i] = 1.0;
            }
            w
        };
        let (_, lmax) = scaled_laplacian(&path(4), 4);
        assert_close(lmax, 2.0, 1e-12, "P4");
        let mut ring = vec![0.0; 25];
        for i in 0..5 {
            ring[i * 5 + (i + 1) % 5] = 1.0;
            ring[(i + 1) % 5 * 5 + i] = 1.0;
        }
        let (_, lmax) = scaled_laplacian(&ring, 5);
        assert_close(
            lmax,
            1.0 - (4.0 * std::f64::consts::PI / 5.0).cos(),
            1e-12,
            "C5",
        );
        // Diagonal matrix.
        assert_close(
            sym_eig_max(&[1.0, 0.0, 0.0, 0.0, -3.0, 0.0, 0.0, 0.0, 2.5], 3),
            2.5,
            1e-12,
            "diag",
        );
        // Random symmetric matrix vs power iteration on a shifted (positive definite) copy.
        let n = 7;
        let mut rng = Rng::from_state(7);
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = rng.next_f64() * 2.0 - 1.0;
                a[i * n + j] = v;
                a[j * n + i] = v;
            }
        }
        let shift = 10.0;
        let mut x = vec![1.0; n];
        let mut lam = 0.0;
        for _ in 0..20000 {
            let y: Vec<f64> = (0..n)
                .map(|i| (0..n).map(|j| a[i * n + j] * x[j]).sum::<f64>() + shift * x[i])
                .collect();
            let norm = y.iter().map(|v| v * v).sum::<f64>().sqrt();
            lam = (0..n).map(|i| y[i] * x[i]).sum::<f64>() / x.iter().map(|v| v * v).sum::<f64>();
            x = y.iter().map(|v| v / norm).collect();
        }
        assert_close(sym_eig_max(&a, n), lam - shift, 1e-9, "random 7x7");
    }

    #[test]
    fn laplacian_and_chebyshev() {
        // 5 nodes: a weighted triangle 0-1-2, an edge 3-4... plus node 4 linked to 2; node 5 isolated.
        let n = 6;
        let mut w = vec![0.0; n * n];
        for &(i, j, v) in &[
            (0, 1, 0.9),
            (1, 2, 0.6),
            (0, 2, 0.7),
            (2, 3, 0.55),
            (3, 4, 1.0),
        ] {
            w[i * n + j] = v;
            w[j * n + i] = v;
        }
        let (lt, lmax) = scaled_laplacian(&w, n);
        assert!(lmax > 1.0 && lmax <= 2.0 + 1e-12, "lambda_max {lmax}");
        // Isolated node: as in the original STGCN code L_55 = 0 (not 1), so L̃_55 = −1, and no
        // off-diagonal entries.
        assert_eq!(lt[5 * n + 5], -1.0, "isolated node's diagonal");
        assert!((0..5).all(|j| lt[5 * n + j] == 0.0 && lt[j * n + 5] == 0.0));
        // Spectrum of L̃ within [−1, 1], top at 1.
        assert_close(sym_eig_max(&lt, n), 1.0, 1e-10, "max eig L̃");
        let neg: Vec<f64> = lt.iter().map(|v| -v).collect();
        assert!(-sym_eig_max(&neg, n) >= -1.0 - 1e-10);
        // Entry checks of L = (D − W) normalised where both degrees are non-zero.
        assert_close(
            lt[0],
            2.0 / lmax - 1.0,
            1e-15,
            "L̃_00 (connected node: L_00 = 1)",
        );
        let deg = |i: usize| (0..n).map(|j| w[i * n + j]).sum::<f64>();
        let l01 = -0.9 / (deg(0) * deg(1)).sqrt();
        assert_close(lt[1], 2.0 * l01 / lmax, 1e-15, "L̃_01");

        let cheb = chebyshev(&lt, n, 4);
        assert_eq!(cheb.len(), 4 * n * n);
        let t = |k: usize| &cheb[k * n * n..(k + 1) * n * n];
        for i in 0..n {
            for j in 0..n {
                assert_eq!(t(0)[i * n + j], if i == j { 1.0 } else { 0.0 });
                assert_eq!(t(1)[i * n + j], lt[i * n + j] as f32);
            }
        }
        let l2 = matmul(&lt, &lt, n);
        let l3 = matmul(&l2, &lt, n);
        for k in 0..n * n {
            let eye = if k % (n + 1) == 0 { 1.0 } else { 0.0 };
            assert_close(t(2)[k] as f64, 2.0 * l2[k] - eye, 1e-6, "T2");
            assert_close(t(3)[k] as f64, 4.0 * l3[k] - 3.0 * lt[k], 1e-6, "T3");
        }
    }

    #[test]
    fn default_splits() {
        assert_eq!(default_split(44), [34, 5, 5]);
        assert_eq!(default_split(4), [2, 1, 1]);
        assert_eq!(default_split(62), [48, 7, 7]);
        assert_eq!(default_split(3), [1, 1, 1]);
    }

    #[test]
    fn windows_stay_inside_days_and_batches_match_indexing() {
        let ds = Dataset::synthetic(5, 4, 30, 3);
        assert_eq!(ds.split_days, [2, 1, 1]);
        assert_eq!(ds.days, 4);
        assert_eq!(ds.steps, 120);
        assert_eq!(ds.speeds.len(), 120 * 5);
        assert_eq!(ds.windows(Split::Train), 20);
        assert_eq!(ds.windows(Split::Val), 10);
        assert_eq!(ds.windows(Split::Test), 10);
        assert!(ds.filled >= 1);
        assert_eq!(ds.cheb.len(), 3 * 25);

        let (n, spd) = (ds.nodes, ds.steps_per_day);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (split, first_day) in [(Split::Train, 0), (Split::Val, 2), (Split::Test, 3)] {
            let idx: Vec<usize> = (0..ds.windows(split)).collect();
            ds.batch(split, &idx, &mut x, &mut y);
            assert_eq!(x.len(), idx.len() * 12 * n);
            assert_eq!(y.len(), idx.len() * 9 * n);
            for &w in &idx {
                let day = first_day + w / 10;
                let start = day * spd + w % 10;
                // No window crosses a day boundary.
                assert_eq!(start / spd, (start + 20) / spd, "window {w} of {split:?}");
                for h in 0..21 {
                    for i in 0..n {
                        let want =
                            ((ds.speeds[(start + h) * n + i] as f64 - ds.mean) / ds.std) as f32;
                        let got = if h < 12 {
                            x[(w * 12 + h) * n + i]
                        } else {
                            y[(w * 9 + h - 12) * n + i]
                        };
                        assert!((got - want).abs() < 1e-6, "{split:?} w{w} h{h} i{i}");
                    }
                }
            }
        }
        // Arbitrary order and repeats; buffers are replaced, not appended to.
        ds.batch(Split::Test, &[9, 0, 9], &mut x, &mut y);
        assert_eq!(x.len(), 3 * 12 * n);
        assert_eq!(x[..12 * n], x[2 * 12 * n..]);

        let info = ds.info();
        assert_eq!(info.dataset, "synthetic");
        assert_eq!(
            info.windows,
            WindowCounts {
                train: 20,
                val: 10,
                test: 10
            }
        );
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.contains("\"train_mean\""), "{json}");
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn batch_rejects_out_of_range_index() {
        let ds = Dataset::synthetic(3, 3, 25, 1);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        ds.batch(Split::Val, &[ds.windows(Split::Val)], &mut x, &mut y);
    }

    #[test]
    fn stats_multiplicity_equals_brute_force() {
        let ds = Dataset::synthetic(7, 5, 40, 11);
        let (n, spd, win) = (ds.nodes, ds.steps_per_day, 21);
        let mut all = Vec::new();
        for d in 0..ds.split_days[0] {
            for o in 0..spd - win + 1 {
                let t0 = d * spd + o;
                all.extend(ds.speeds[t0 * n..(t0 + win) * n].iter().map(|&v| v as f64));
            }
        }
        assert_eq!(all.len(), ds.windows(Split::Train) * win * n);
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64;
        assert_close(ds.mean, mean, 1e-9, "mean");
        assert_close(ds.std, var.sqrt(), 1e-9, "std");
        // Deterministic.
        let again = Dataset::synthetic(7, 5, 40, 11);
        assert_eq!(again.speeds, ds.speeds);
        assert_eq!(again.checksum, ds.checksum);
        assert_ne!(Dataset::synthetic(7, 5, 40, 12).checksum, ds.checksum);
    }

    #[test]
    fn names_parse_display_serde() {
        assert_eq!(
            "PeMSD7".parse::<DatasetName>().unwrap(),
            DatasetName::Pemsd7
        );
        assert_eq!(
            "pemsd8".parse::<DatasetName>().unwrap(),
            DatasetName::Pemsd8
        );
        let e = "pems07".parse::<DatasetName>().unwrap_err();
        assert!(e.to_string().contains("pems07"));
        assert_eq!(DatasetName::Pemsd8.to_string(), "pemsd8");
        assert_eq!(
            serde_json::to_string(&DatasetName::Pemsd7).unwrap(),
            "\"pemsd7\""
        );
        let d: DatasetName = serde_json::from_str("\"pemsd8\"").unwrap();
        assert_eq!(d, DatasetName::Pemsd8);
        let cfg = DataConfig::new(DatasetName::Pemsd7);
        assert_eq!(
            (cfg.sigma2, cfg.epsilon, cfg.n_his, cfg.n_pred, cfg.ks),
            (10.0, 0.5, 12, 9, 3)
        );
        assert_eq!(cfg.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn csv_errors_name_file_line_column() {
        let p = Path::new("dir/x.csv");
        let e = parse_csv::<f32>(p, "1,2,3\n4,abc,6\n", 3, false).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("dir/x.csv") && m.contains("line 2") && m.contains("column 2"),
            "{m}"
        );
        let e = parse_csv::<f32>(p, "1,2,3\n4,5\n", 3, false).unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("found 2"),
            "{e}"
        );
        let (v, rows) = parse_csv::<f64>(p, "a,b\n,2.5\r\n", 2, true).unwrap();
        assert_eq!(rows, 1);
        assert!(v[0].is_nan() && v[1] == 2.5);
        let mut notes = Vec::new();
        let e = parse_edge_list(p, "from,to,cost\n0,9,1.0\n", 5, &mut notes).unwrap_err();
        assert!(e.to_string().contains("line 2, column 2"), "{e}");
    }

    #[test]
    fn pemsd7_real_data() {
        let t = Instant::now();
        let mut cfg = DataConfig::new(DatasetName::Pemsd7);
        cfg.data_dir = real_data_dir();
        let ds = Dataset::load(&cfg).unwrap();
        eprintln!("PeMSD7 load: {:.3} s; {:?}", t.elapsed().as_secs_f64(), ds);
        assert_eq!((ds.nodes, ds.steps, ds.days), (228, 12672, 44));
        assert_eq!(ds.split_days, [34, 5, 5]);
        assert_eq!(ds.windows(Split::Train), 34 * 268);
        assert_eq!(ds.windows(Split::Test), 5 * 268);
        assert!(ds.filled >= 228, "filled {}", ds.filled);
        // Row 0 is filled from row 1 (nearest valid reading).
        assert_eq!(ds.speeds[..228], ds.speeds[228..456]);
        assert_close(ds.mean, 58.4998, 1e-3, "PeMSD7 train mean");
        assert_close(ds.std, 13.7286, 1e-3, "PeMSD7 train std");
        assert_eq!(ds.edges, 1664);
        // Nodes without an edge at σ² = 10, ε = 0.5: their Laplacian diagonal is 0 (L̃_ii = −1).
        assert_eq!(ds.isolated, 3);
        let nn = ds.nodes * ds.nodes;
        let isolated_diagonals = (0..ds.nodes)
            .filter(|&i| ds.cheb[nn + i * ds.nodes + i] == -1.0)
            .count();
        assert_eq!(isolated_diagonals, 3);
        assert_eq!(ds.cheb.len(), 3 * 228 * 228);
        assert!(ds.lambda_max > 1.0 && ds.lambda_max <= 2.0 + 1e-9);
        assert_eq!(ds.checksum.len(), 64);
        assert_eq!(
            Dataset::checksum(&cfg).unwrap(),
            ds.checksum,
            "the cheap checksum"
        );
        assert!(ds.notes.iter().any(|n| n.contains("row 0")));
    }

    #[test]
    fn pemsd8_real_partial_data() {
        let mut cfg = DataConfig::new(DatasetName::Pemsd8);
        cfg.data_dir = real_data_dir();
        let ds = Dataset::load(&cfg).unwrap();
        eprintln!("PeMSD8: {ds:?}\n{:#?}", ds.notes);
        assert_eq!((ds.nodes, ds.days, ds.steps), (170, 4, 4 * 288));
        assert_eq!(ds.split_days, [2, 1, 1]);
        assert_eq!(ds.edges, 546);
        assert_eq!(ds.filled, 0);
        assert_eq!(
            Dataset::checksum(&cfg).unwrap(),
            ds.checksum,
            "the cheap checksum"
        );
        // Symmetric weights.
        let n = 170;
        assert!((0..n).all(|i| (0..n).all(|j| ds.weights[i * n + j] == ds.weights[j * n + i])));
        assert!(ds.notes.iter().any(|m| m.contains(
            "PeMSD8: only the partial speed file (1282 steps) is present; using 4 whole days, 130 trailing steps dropped"
        )));
    }

    #[test]
    fn checksum_mismatch_and_missing_file() {
        let dir = temp_dir("sum");
        fs::create_dir_all(dir.join("pemsd8")).unwrap();
        let src = real_data_dir();
        let mut text = fs::read(src.join(PEMSD8_EDGES.rel)).unwrap();
        *text.last_mut().unwrap() = b' ';
        fs::write(dir.join(PEMSD8_EDGES.rel), &text).unwrap();
        let mut cfg = DataConfig::new(DatasetName::Pemsd8);
        cfg.data_dir = dir.clone();
        let err = Dataset::load(&cfg).unwrap_err();
        let m = err.to_string();
        assert!(matches!(err, DataError::Checksum { .. }), "{m}");
        assert!(
            m.contains("distance.csv") && m.contains(PEMSD8_EDGES.sha256),
            "{m}"
        );
        assert!(m.contains(&sha256_hex(&text)), "{m}");

        let mut cfg = DataConfig::new(DatasetName::Pemsd7);
        cfg.data_dir = dir.clone();
        let err = Dataset::load(&cfg).unwrap_err();
        assert!(matches!(err, DataError::NotFound { .. }), "{err}");
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Write an npz (as numpy's savez does: zip64 member `data.npy`) holding `[t, 170, 3]`.
    fn write_npz(path: &Path, t: usize, f4: bool, deflate: bool, shape: &str) -> Vec<f32> {
        use std::io::Write;
        let n = 170;
        let descr = if f4 { "<f4" } else { "<f8" };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend((header.len() as u16).to_le_bytes());
        npy.extend(header.as_bytes());
        let mut speeds = Vec::new();
        for s in 0..t {
            for i in 0..n {
                let v = [
                    (s + i) as f64,
                    0.5,
                    40.0 + ((s * 7 + i * 3) % 300) as f64 * 0.1,
                ];
                speeds.push(v[2] as f32);
                for x in v {
                    if f4 {
                        npy.extend((x as f32).to_le_bytes());
                    } else {
                        npy.extend(x.to_le_bytes());
                    }
                }
            }
        }
        let method = if deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(method)
            .large_file(true);
        let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
        z.start_file("data.npy", opts).unwrap();
        z.write_all(&npy).unwrap();
        z.finish().unwrap();
        speeds
    }

    #[test]
    fn pems08_npz_loader() {
        let dir = temp_dir("npz");
        fs::create_dir_all(dir.join("pemsd8")).unwrap();
        fs::copy(
            real_data_dir().join(PEMSD8_EDGES.rel),
            dir.join(PEMSD8_EDGES.rel),
        )
        .unwrap();
        let t = 3 * 288 + 5;
        for (f4, deflate) in [(false, true), (true, false)] {
            let npz = dir.join(format!("PEMS08_{f4}_{deflate}.npz"));
            let want = write_npz(&npz, t, f4, deflate, &format!("({t}, 170, 3)"));
            let mut cfg = DataConfig::new(DatasetName::Pemsd8);
            cfg.data_dir = dir.clone();
            cfg.pems08_npz = Some(npz.clone());
            let ds = Dataset::load(&cfg).unwrap();
            assert_eq!((ds.days, ds.steps, ds.edges), (3, 864, 546));
            assert_eq!(ds.speeds[..], want[..864 * 170]);
            assert!(
                ds.notes.iter().any(|m| m.contains("CRC-32")),
                "{:?}",
                ds.notes
            );
            assert!(
                ds.notes.iter().any(|m| m.contains("5 trailing steps")),
                "{:?}",
                ds.notes
            );
        }
        let bad = dir.join("bad.npz");
        write_npz(&bad, 300, false, false, "(300, 170, 2)");
        let mut cfg = DataConfig::new(DatasetName::Pemsd8);
        cfg.data_dir = dir.clone();
        cfg.pems08_npz = Some(bad);
        let err = Dataset::load(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("bad.npz") && err.contains("expected (T, 170, 3)"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn npy_header_parsing() {
        let (d, f, s) = parse_npy_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (17856, 170, 3), }",
        )
        .unwrap();
        assert_eq!((d.as_str(), f, s), ("<f8", false, vec![17856, 170, 3]));
        let (_, _, s) =
            parse_npy_header("{'descr': '<f4', 'fortran_order': True, 'shape': (5,), }").unwrap();
        assert_eq!(s, vec![5]);
        assert!(parse_npy_header("{'descr': '<f4'}").is_none());
    }
}
