//! Test time measured alone (`stkd retime`): every finished run of some experiment files timed
//! again from its saved model, without retraining, while no other run computes on the machine.
//!
//! A run's recorded test time ([`crate::exec`]'s `timed`) is taken at the end of its training,
//! often while other runs share the cores, so it says more about the machine's load than about
//! the network. Here each network shape (and graph) is timed once: the paper's 9-step prediction
//! of one batch of up to [`BATCH`] test windows, one warm-up, then `R` timed repetitions,
//! summarised by the median and the interquartile range ([`Latency`]). The figure goes into each
//! run's folder and record as [`LATENCY_FILE`] (pretty JSON, fixed key order: the same timings
//! give the same bytes), where the report reads it ([`read`]).
//!
//! "Alone" means no other stkd run computes: [`retime`] refuses while the store shows a run in
//! state `running` whose heartbeat is live ([`live_runs`]) or, when asked, while another stkd
//! workload process runs on the machine ([`other_processes`], from `/proc`: any store), unless
//! forced, and checks again after each shape; a figure taken beside either is recorded with
//! `alone: false`. Other work (builds, tests) it cannot see: the command says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::archive::{beside, read_run_file, RECORDS, RUNS};
use crate::backend::DeviceSpec;
use crate::data::{Dataset, DatasetName};
use crate::exec::{ExecError, RunReport, OUTCOME_FILE};
use crate::experiment::RunConfig;
use crate::model::{GraphKernel, StgcnConfig};
use crate::plan::Plan;
use crate::store::{RunStatus, Store, StoreError};
use crate::train::{self, TrainError};

/// The file a re-timed run's folder and record get.
pub const LATENCY_FILE: &str = "latency.json";
/// Timed repetitions per shape unless told otherwise.
pub const DEFAULT_RUNS: usize = 20;
/// The fewest repetitions accepted without `allow_few` (quartiles of fewer are too coarse).
pub const MIN_RUNS: usize = 20;
/// Untimed predictions before the timed ones (allocations, caches, kernel compilation).
pub const WARM_UP_RUNS: usize = 1;
/// Test windows per predicted batch (fewer when the test split is smaller), as every run's
/// recorded test time uses.
pub const BATCH: usize = 1140;
/// A `running` run whose heartbeat is at most this old (s) is computing: the sweep's default
/// `--stale-after`.
pub const LIVE_HEARTBEAT_S: f64 = 60.0;
/// What a [`Latency`] measures, written into each file.
pub const MEASURE: &str =
    "wall time of the 9-step recomputing prediction of one batch of test windows";

/// One network shape timed alone: what [`LATENCY_FILE`] holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// [`MEASURE`].
    pub measure: String,
    /// Median of the timed repetitions (s).
    pub median_s: f64,
    /// First and third quartiles (s; linear interpolation between order statistics).
    pub q1_s: f64,
    pub q3_s: f64,
    /// `q3_s − q1_s`.
    pub iqr_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// Timed repetitions (R).
    pub runs: usize,
    /// Untimed repetitions before them.
    pub warm_up: usize,
    /// Windows in the predicted batch.
    pub batch: usize,
    /// `cpu`, `cuda:0`, …
    pub device: String,
    /// Worker threads of the CPU kernels.
    pub threads: usize,
    /// The commit of the binary that timed it ([`crate::plan::CODE_COMMIT`]).
    pub commit: String,
    /// No run of the store (nor, where checked, other stkd process) was computing before or
    /// after the timing.
    pub alone: bool,
    pub dataset: DatasetName,
    /// The network timed (the run's delivered network: a pruned run's compacted one).
    pub network: StgcnConfig,
    /// The run whose saved model was timed; runs of the same shape and graph share its figure.
    pub timed_run: String,
    /// Every timed repetition (s), in order.
    pub samples_s: Vec<f64>,
}

impl Latency {
    /// Whether the figure is a measurement the report may judge: taken with the minimum of
    /// repetitions, alone.
    pub fn is_measurement(&self) -> bool {
        self.alone && self.runs >= MIN_RUNS
    }
}

/// The `q`-quantile (0 ≤ q ≤ 1) of sorted values, interpolating linearly between the order
/// statistics at ranks ⌊(n − 1)q⌋ and ⌈(n − 1)q⌉ (Hyndman and Fan's type 7, numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no values");
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Median, first and third quartile of `samples` (any order; none NaN).
pub fn quartiles(samples: &[f64]) -> (f64, f64, f64) {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    (quantile(&v, 0.5), quantile(&v, 0.25), quantile(&v, 0.75))
}

/// The re-timed figure of run `hash` beside the store `store`: its record's [`LATENCY_FILE`],
/// else its run folder's. `None` when neither exists or reads.
pub fn read(store: &Path, hash: &str) -> Option<Latency> {
    read_run_file(store, hash, LATENCY_FILE, |text| {
        serde_json::from_slice(text).ok()
    })
}

/// A run that the store shows computing.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRun {
    pub hash: String,
    pub label: String,
    pub worker: Option<String>,
    pub device: Option<String>,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_s: f64,
}

impl std::fmt::Display for LiveRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, worker {} on {}, heartbeat {:.0} s ago)",
            self.label,
            self.hash,
            self.worker.as_deref().unwrap_or("?"),
            self.device.as_deref().unwrap_or("?"),
            self.heartbeat_age_s
        )
    }
}

/// Runs of the store at `store` in state `running` whose heartbeat is at most
/// [`LIVE_HEARTBEAT_S`] old (none without a store), sorted by hash.
pub fn live_runs(store: &Path) -> Result<Vec<LiveRun>, StoreError> {
    let Some(st) = Store::open_read_only(store)? else {
        return Ok(Vec::new());
    };
    let now = crate::store::now();
    let mut live: Vec<LiveRun> = st
        .runs(None)?
        .into_iter()
        .filter(|r| r.status == RunStatus::Running)
        .filter_map(|r| {
            let age = now - r.heartbeat?;
            (age <= LIVE_HEARTBEAT_S).then(|| LiveRun {
                hash: r.hash,
                label: r.label,
                worker: r.claimed_by,
                device: r.device,
                heartbeat_age_s: age.max(0.0),
            })
        })
        .collect();
    live.sort_by(|a, b| a.hash.cmp(&b.hash));
    Ok(live)
}

/// Another stkd process on this machine that computes (a sweep, a run, training, pruning, a
/// benchmark, another re-timing), whatever store it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherProcess {
    pub pid: u32,
    /// Its command line, arguments joined by spaces (at most 160 characters).
    pub command: String,
    /// Stopped (SIGSTOP, Ctrl-Z): it computes nothing now, but would if resumed.
    pub stopped: bool,
}

impl std::fmt::Display for OtherProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} `{}`", self.pid, self.command)?;
        if self.stopped {
            f.write_str(" (stopped)")?;
        }
        Ok(())
    }
}

/// The subcommands whose processes load the machine.
const WORKLOADS: [&str; 8] = [
    "sweep",
    "run-one",
    "train",
    "prune",
    "bench",
    "device-check",
    "warm-up",
    "retime",
];

/// Whether a command line (its arguments) is an stkd workload: the program's file name starts
/// with `stkd` and its first argument is one of [`WORKLOADS`].
pub fn is_workload(args: &[String]) -> bool {
    let Some(program) = args.first() else {
        return false;
    };
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.starts_with("stkd") && args.get(1).is_some_and(|a| WORKLOADS.contains(&a.as_str()))
}

/// Other stkd workload processes on this machine, from `/proc` (none where there is no
/// `/proc`), sorted by process id; this process and its parent are left out.
pub fn other_processes() -> Vec<OtherProcess> {
    let me = std::process::id();
    let parent = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_fields(&s).and_then(|f| f.get(1)?.parse::<u32>().ok()));
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<OtherProcess> = entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            if pid == me || Some(pid) == parent {
                return None;
            }
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if !is_workload(&args) {
                return None;
            }
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let state = stat_fields(&stat)?.first()?.to_string();
            if state == "Z" {
                return None;
            }
            let mut command = args.join(" ");
            if command.chars().count() > 160 {
                command = command.chars().take(159).collect::<String>() + "…";
            }
            Some(OtherProcess {
                pid,
                command,
                stopped: state == "T" || state == "t",
            })
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// The fields of `/proc/<pid>/stat` after the command name: state, parent id, …
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

fn busy_text(runs: &[LiveRun], processes: &[OtherProcess]) -> String {
    runs.iter()
        .map(ToString::to_string)
        .chain(processes.iter().map(ToString::to_string))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why runs could not be re-timed.
#[derive(Debug, thiserror::Error)]
pub enum RetimeError {
    #[error(
        "{runs} timed repetitions are too few for a median and an interquartile range: use at \
         least {MIN_RUNS} (or --allow-few, for a quick look that is not a measurement)"
    )]
    TooFew { runs: usize },
    #[error(
        "other stkd work is computing, so a timing now would not be a measurement: {}. Wait \
         until it finishes (`stkd status`), or pass --force (the records then say it was not \
         measured alone)",
        busy_text(.runs, .processes)
    )]
    Busy {
        /// Runs of the store with a live heartbeat.
        runs: Vec<LiveRun>,
        /// Other stkd processes computing on this machine (any store).
        processes: Vec<OtherProcess>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("{}: the model has {model} nodes, its data set {dataset} has {data}", .path.display())]
    Nodes {
        path: PathBuf,
        dataset: DatasetName,
        model: usize,
        data: usize,
    },
    #[error("{}: {detail}", .path.display())]
    Io { path: PathBuf, detail: String },
}

/// How [`retime`] works.
#[derive(Debug, Clone)]
pub struct RetimeOptions {
    /// The store whose runs are re-timed; run folders and records live beside it.
    pub store: PathBuf,
    /// Folder holding the data sets.
    pub data_dir: PathBuf,
    /// Timed repetitions per shape.
    pub runs: usize,
    /// Accept fewer than [`MIN_RUNS`] repetitions.
    pub allow_few: bool,
    /// Time even while the store shows live runs (recorded as not alone).
    pub force: bool,
    /// Also look for other stkd processes computing on this machine ([`other_processes`]);
    /// stopped ones do not count.
    pub processes: bool,
    pub device: DeviceSpec,
    /// Time only the shapes some run still lacks a measurement of (a sweep's timing phase):
    /// a run that has one keeps it, and a figure of the same shape already measured alone on
    /// this device and thread count (another run's, or any record's beside the store) is
    /// given to the runs that lack one instead of timing the shape again.
    pub only_missing: bool,
}

/// A finished run to re-time.
#[derive(Debug, Clone)]
pub struct Target {
    pub hash: String,
    /// `label dataset [variant]`.
    pub name: String,
    pub config: RunConfig,
    /// The folder whose `model.json` / `model.bin` are loaded (record first, else run folder).
    pub model_dir: PathBuf,
    /// Where [`LATENCY_FILE`] is written: the record and the run folder, where they exist.
    pub write_to: Vec<PathBuf>,
    /// The recorded test time (s) and its repetitions, for the estimate of a dry run.
    pub recorded: Option<(f64, usize)>,
}

/// Runs of one network shape on one graph: timed once.
#[derive(Debug, Clone)]
pub struct ShapeGroup {
    pub dataset: DatasetName,
    pub split_days: Option<[usize; 3]>,
    pub network: StgcnConfig,
    /// Sorted by hash; the first one's model is timed.
    pub runs: Vec<Target>,
}

impl ShapeGroup {
    /// `pemsd7 [1,32,64][64,32,128] N=228`.
    pub fn describe(&self) -> String {
        let c: String = self
            .network
            .channels
            .iter()
            .map(|b| format!("[{},{},{}]", b[0], b[1], b[2]))
            .collect();
        format!("{} {c} N={}", self.dataset, self.network.nodes)
    }

    /// Median of the runs' recorded test times (s), if any.
    pub fn recorded_s(&self) -> Option<f64> {
        let mut v: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|t| t.recorded.map(|r| r.0))
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(quantile(&v, 0.5))
    }
}

/// A planned run not re-timed, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub hash: String,
    pub name: String,
    pub why: String,
}

/// What the experiment files' runs come to: the shapes to time and the runs left out.
#[derive(Debug, Clone, Default)]
pub struct RetimePlan {
    /// Sorted by data set, split, then network (channels, nodes).
    pub groups: Vec<ShapeGroup>,
    /// Sorted by hash.
    pub skipped: Vec<Skipped>,
}

impl RetimePlan {
    pub fn runs(&self) -> usize {
        self.groups.iter().map(|g| g.runs.len()).sum()
    }

    /// Seconds `runs` repetitions (plus the warm-up) would take at the recorded test times:
    /// `None` when a shape has no recorded time.
    pub fn estimate_s(&self, runs: usize) -> Option<f64> {
        self.groups
            .iter()
            .map(|g| g.recorded_s().map(|s| s * (runs + WARM_UP_RUNS) as f64))
            .sum()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RetimeError + '_ {
    move |e| RetimeError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// A saved model's files ([`train::save_model`]).
const MODEL_FILES: [&str; 2] = ["model.json", "model.bin"];

fn has_model(dir: &Path) -> bool {
    MODEL_FILES.iter().all(|f| dir.join(f).is_file())
}

/// The finished runs of `plans` (done in the store, or recorded), grouped by network shape and
/// graph. A run counts once however many plans hold it.
pub fn plan_retime(plans: &[Plan], store: &Path) -> Result<RetimePlan, RetimeError> {
    let st = Store::open_read_only(store)?;
    let (records, runs) = (beside(store, RECORDS), beside(store, RUNS));
    let mut jobs: BTreeMap<String, &crate::plan::Job> = BTreeMap::new();
    for p in plans {
        for j in &p.jobs {
            jobs.entry(j.hash.clone()).or_insert(j);
        }
    }
    let mut groups: BTreeMap<(DatasetName, String, String), ShapeGroup> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (hash, job) in jobs {
        let (record, run_dir) = (records.join(&hash), runs.join(&hash));
        let recorded = record.join(OUTCOME_FILE).is_file();
        let done = match &st {
            Some(s) => s.run(&hash)?.is_some_and(|r| r.status == RunStatus::Done),
            None => false,
        };
        let skip = |why: &str| Skipped {
            hash: hash.clone(),
            name: job.display_name(),
            why: why.to_string(),
        };
        if !recorded && !done {
            skipped.push(skip("not finished"));
            continue;
        }
        let model_dir = if has_model(&record) {
            record.clone()
        } else if has_model(&run_dir) {
            run_dir.clone()
        } else {
            skipped.push(skip(
                "finished, but neither its record nor its run folder holds its model",
            ));
            continue;
        };
        let network: StgcnConfig = {
            let path = model_dir.join(MODEL_FILES[0]);
            let text = std::fs::read(&path).map_err(io(&path))?;
            serde_json::from_slice(&text).map_err(|e| RetimeError::Io {
                path: path.clone(),
                detail: format!("not a network configuration: {e}"),
            })?
        };
        let mut write_to = Vec::new();
        let mut recorded_time = None;
        for dir in [&record, &run_dir] {
            let Ok(text) = std::fs::read(dir.join(OUTCOME_FILE)) else {
                continue;
            };
            write_to.push(dir.clone());
            if recorded_time.is_none() {
                recorded_time = serde_json::from_slice::<RunReport>(&text)
                    .ok()
                    .and_then(|r| r.test_time)
                    .map(|t| (t.seconds, t.runs));
            }
        }
        if write_to.is_empty() {
            // Done in the store with its model but no outcome beside it: keep the figure with
            // the model.
            write_to.push(model_dir.clone());
        }
        let cfg = &job.config;
        let key = (
            cfg.dataset,
            format!("{:?}", cfg.split_days),
            serde_json::to_string(&network).expect("network serialises"),
        );
        groups
            .entry(key)
            .or_insert_with(|| ShapeGroup {
                dataset: cfg.dataset,
                split_days: cfg.split_days,
                network: network.clone(),
                runs: Vec::new(),
            })
            .runs
            .push(Target {
                hash: hash.clone(),
                name: job.display_name(),
                config: cfg.clone(),
                model_dir,
                write_to,
                recorded: recorded_time,
            });
    }
    Ok(RetimePlan {
        groups: groups.into_values().collect(),
        skipped,
    })
}

/// What [`retime`] reports as it goes.
#[derive(Debug)]
pub enum RetimeEvent<'a> {
    /// Shape `index` of `shapes` is about to be timed.
    Start {
        index: usize,
        shapes: usize,
        group: &'a ShapeGroup,
    },
    /// It was not timed: a figure of the same shape measured earlier (`latency`) was written
    /// into the files of its `runs` that lacked one ([`RetimeOptions::only_missing`]).
    Reused {
        index: usize,
        shapes: usize,
        group: &'a ShapeGroup,
        latency: &'a Latency,
        runs: usize,
    },
    /// It was timed and its runs' files written.
    Done {
        index: usize,
        shapes: usize,
        group: &'a ShapeGroup,
        latency: &'a Latency,
    },
}

/// What [`retime`] did.
#[derive(Debug, Clone, Default)]
pub struct RetimeSummary {
    /// Each shape with its figure, in the plan's order.
    pub timed: Vec<(ShapeGroup, Latency)>,
    /// With [`RetimeOptions::only_missing`]: shapes given a figure measured earlier.
    pub reused: Vec<(ShapeGroup, Latency)>,
    /// With [`RetimeOptions::only_missing`]: shapes whose runs all had a measurement.
    pub kept: usize,
    pub skipped: Vec<Skipped>,
    /// Every file written, sorted.
    pub written: Vec<PathBuf>,
}

/// Writes `latency` as [`LATENCY_FILE`] into every folder of `targets` (pretty JSON, fixed
/// key order, written whole then renamed), adding the paths to `written`.
fn write_latency(
    latency: &Latency,
    targets: &[&Target],
    written: &mut Vec<PathBuf>,
) -> Result<(), RetimeError> {
    let mut json = serde_json::to_string_pretty(latency).expect("latency serialises");
    json.push('\n');
    for t in targets {
        for dir in &t.write_to {
            let path = dir.join(LATENCY_FILE);
            let tmp = dir.join(format!("{LATENCY_FILE}.tmp"));
            std::fs::write(&tmp, &json)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(io(&path))?;
            written.push(path);
        }
    }
    Ok(())
}

/// A [`LATENCY_FILE`] read back (`None` when missing or unreadable).
fn read_file(path: &Path) -> Option<Latency> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Every figure measured alone (with the minimum of repetitions) in the records and run
/// folders beside `store`, in folder-name order, records first.
pub fn measured_figures(store: &Path) -> Vec<Latency> {
    let mut out = Vec::new();
    for folder in [RECORDS, RUNS] {
        let Ok(entries) = std::fs::read_dir(beside(store, folder)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        out.extend(
            dirs.iter()
                .filter_map(|d| read_file(&d.join(LATENCY_FILE)))
                .filter(Latency::is_measurement),
        );
    }
    out
}

/// Re-time every finished run of `plans` on `device` (see the module documentation): refuses
/// while the store shows live runs unless `opts.force`, writes [`LATENCY_FILE`] into each run's
/// record and run folder.
pub fn retime<B: Backend>(
    plans: &[Plan],
    opts: &RetimeOptions,
    device: &B::Device,
    on_event: &mut dyn FnMut(RetimeEvent),
) -> Result<RetimeSummary, RetimeError> {
    let data_dir = opts.data_dir.clone();
    retime_with::<B>(
        plans,
        opts,
        device,
        &mut |cfg| crate::exec::load_data(cfg, &data_dir),
        &mut |f| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        },
        on_event,
    )
}

/// [`retime`] with the data sets from `load` and each repetition timed by `clock` (which runs
/// the prediction it is given and returns its seconds): the seams the tests use.
pub fn retime_with<B: Backend>(
    plans: &[Plan],
    opts: &RetimeOptions,
    device: &B::Device,
    load: &mut dyn FnMut(&RunConfig) -> Result<Dataset, ExecError>,
    clock: &mut dyn FnMut(&mut dyn FnMut()) -> f64,
    on_event: &mut dyn FnMut(RetimeEvent),
) -> Result<RetimeSummary, RetimeError> {
    if opts.runs == 0 || (opts.runs < MIN_RUNS && !opts.allow_few) {
        return Err(RetimeError::TooFew { runs: opts.runs });
    }
    let check = |store: &Path| -> Result<bool, RetimeError> {
        let runs = live_runs(store)?;
        let processes: Vec<OtherProcess> = match opts.processes {
            true => other_processes()
                .into_iter()
                .filter(|p| !p.stopped)
                .collect(),
            false => Vec::new(),
        };
        let alone = runs.is_empty() && processes.is_empty();
        if !alone && !opts.force {
            return Err(RetimeError::Busy { runs, processes });
        }
        Ok(alone)
    };
    if !opts.only_missing {
        // Refuse before anything else; a timing phase finds out whether it has to time at all
        // first (each shape is checked before it is timed either way).
        check(&opts.store)?;
    }
    let plan = plan_retime(plans, &opts.store)?;
    let shapes = plan.groups.len();
    let mut data: BTreeMap<(DatasetName, String), Dataset> = BTreeMap::new();
    let mut summary = RetimeSummary {
        skipped: plan.skipped.clone(),
        ..Default::default()
    };
    let threads = rayon::current_num_threads();
    let device_name = opts.device.to_string();
    // A figure this run of `retime` could have taken itself: alone, enough repetitions, same
    // device and thread count.
    let fits = |l: &Latency| l.is_measurement() && l.device == device_name && l.threads == threads;
    let known = match opts.only_missing {
        true => measured_figures(&opts.store),
        false => Vec::new(),
    };
    for (index, group) in plan.groups.iter().enumerate() {
        let missing: Vec<&Target> = match opts.only_missing {
            true => group
                .runs
                .iter()
                .filter(|t| {
                    !t.write_to
                        .iter()
                        .all(|d| read_file(&d.join(LATENCY_FILE)).is_some_and(|l| fits(&l)))
                })
                .collect(),
            false => group.runs.iter().collect(),
        };
        if missing.is_empty() {
            summary.kept += 1;
            continue;
        }
        let first = &group.runs[0];
        let key = (group.dataset, format!("{:?}", group.split_days));
        if !data.contains_key(&key) {
            data.insert(key.clone(), load(&first.config)?);
        }
        let d = &data[&key];
        if opts.only_missing {
            let batch = BATCH.min(train::timing_split_windows(d)).max(1);
            let same_shape = |l: &Latency| {
                fits(l)
                    && l.dataset == group.dataset
                    && l.network == group.network
                    && l.batch == batch
            };
            let earlier = group
                .runs
                .iter()
                .flat_map(|t| &t.write_to)
                .filter_map(|d| read_file(&d.join(LATENCY_FILE)))
                .chain(known.iter().cloned())
                .find(same_shape);
            if let Some(latency) = earlier {
                write_latency(&latency, &missing, &mut summary.written)?;
                on_event(RetimeEvent::Reused {
                    index,
                    shapes,
                    group,
                    latency: &latency,
                    runs: missing.len(),
                });
                summary.reused.push((group.clone(), latency));
                continue;
            }
        }
        if opts.only_missing {
            // Refused before it is announced (the check is repeated just before the timing).
            check(&opts.store)?;
        }
        on_event(RetimeEvent::Start {
            index,
            shapes,
            group,
        });
        let (model, network) = train::load_model::<B>(&first.model_dir, device)?;
        if network.nodes != d.nodes {
            return Err(RetimeError::Nodes {
                path: first.model_dir.clone(),
                dataset: group.dataset,
                model: network.nodes,
                data: d.nodes,
            });
        }
        let g = GraphKernel::<B>::new(&d.cheb, d.nodes, device);
        let (x, b) = train::timing_batch::<B>(d, BATCH, device);
        let mut predict = || {
            let p = model.predict(x.clone(), &g, d.n_pred);
            let _ = p.into_data(); // waits for asynchronous backends
        };
        let alone_before = check(&opts.store)?;
        for _ in 0..WARM_UP_RUNS {
            clock(&mut predict);
        }
        let samples: Vec<f64> = (0..opts.runs).map(|_| clock(&mut predict)).collect();
        let alone_after = check(&opts.store)?;
        let (median, q1, q3) = quartiles(&samples);
        let latency = Latency {
            measure: MEASURE.to_string(),
            median_s: median,
            q1_s: q1,
            q3_s: q3,
            iqr_s: q3 - q1,
            min_s: samples.iter().copied().fold(f64::INFINITY, f64::min),
            max_s: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            runs: opts.runs,
            warm_up: WARM_UP_RUNS,
            batch: b,
            device: opts.device.to_string(),
            threads: rayon::current_num_threads(),
            commit: crate::plan::CODE_COMMIT.to_string(),
            alone: alone_before && alone_after,
            dataset: group.dataset,
            network,
            timed_run: first.hash.clone(),
            samples_s: samples,
        };
        write_latency(&latency, &missing, &mut summary.written)?;
        on_event(RetimeEvent::Done {
            index,
            shapes,
            group,
            latency: &latency,
        });
        summary.timed.push((group.clone(), latency));
    }
    summary.written.sort();
    Ok(summary)
}

#[cfg(test)]
mod tests;
