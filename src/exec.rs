//! Execute one resolved run: load its data, train it (plainly, by distillation from its
//! teacher's checkpoint, or by pruning its base run's network with [`crate::prune`]), evaluate
//! it, time it. Shared by `stkd train`, `stkd prune` and the sweep's `stkd run-one`, so an
//! ad-hoc run and a sweep run compute exactly the same thing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backend::DeviceSpec;
use crate::data::{DataConfig, Dataset, DatasetName, Split};
use crate::distill::cache::{self, CacheError, Tap, TeacherCache};
use crate::distill::LossKind;
use crate::experiment::RunConfig;
use crate::model::{GraphKernel, Stgcn, StgcnConfig};
use crate::prune::{prune_model, Granularity, PruneError};
use crate::resume::ResumeDir;
use crate::train::{
    self, Batcher, Event, Forward, TeacherStep, TestTime, TrainError, TrainOutcome,
};

/// Where a run reads and writes files.
#[derive(Debug, Clone)]
pub struct RunPaths {
    /// The run's own folder (checkpoint, outcome).
    pub run_dir: PathBuf,
    /// The teacher run's folder, for distillation.
    pub teacher_dir: Option<PathBuf>,
    /// The base run's folder, for pruning.
    pub base_dir: Option<PathBuf>,
    /// Folder holding the datasets.
    pub data_dir: PathBuf,
}

/// Everything a finished run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The run's folder (checkpoint and this report).
    pub run_dir: PathBuf,
    pub dataset: DatasetName,
    pub device: DeviceSpec,
    pub data_checksum: String,
    pub config: RunConfig,
    #[serde(flatten)]
    pub outcome: TrainOutcome,
    pub flops_per_sample: u64,
    pub test_time: Option<TestTime>,
    /// Table 3: elements where ORD used the teacher / all elements, over all training steps.
    pub attention: Option<(u64, u64)>,
    /// Pruning figures of a pruning run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruning: Option<crate::prune::PruneSummary>,
    /// The commit of the code that computed the run ([`crate::plan::CODE_COMMIT`]).
    #[serde(default)]
    pub code_commit: String,
}

/// Why a run could not be executed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Distill(#[from] crate::distill::DistillError),
    #[error(transparent)]
    Prune(#[from] crate::prune::PruneError),
    #[error("invalid run configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<crate::experiment::ConfigProblem>),
    #[error("loss {loss} needs a teacher checkpoint, but none was given")]
    NoTeacher { loss: LossKind },
    #[error("teacher checkpoint {dir} was trained on {teacher_nodes} nodes, the data has {nodes}")]
    TeacherMismatch {
        dir: PathBuf,
        teacher_nodes: usize,
        nodes: usize,
    },
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error(transparent)]
    TeacherCache(#[from] CacheError),
}

/// Load the dataset a run config asks for.
pub fn load_data(cfg: &RunConfig, data_dir: &Path) -> Result<Dataset, ExecError> {
    let mut dc = DataConfig::new(cfg.dataset);
    dc.data_dir = data_dir.to_path_buf();
    dc.split_days = cfg.split_days;
    Ok(Dataset::load(&dc)?)
}

/// Train, evaluate and time one run; saves the best model to `paths.run_dir`. A run with
/// `prune` settings is a pruning run ([`execute_prune`]).
pub fn execute<B: AutodiffBackend>(
    cfg: &RunConfig,
    data: &Dataset,
    paths: &RunPaths,
    device_spec: DeviceSpec,
    device: &B::Device,
    on_event: &mut dyn FnMut(Event),
) -> Result<RunReport, ExecError> {
    if let Some(report) = finished_report(cfg, &data.checksum, &paths.run_dir) {
        eprintln!(
            "{} already holds this run's finished outcome; not computing it again",
            paths.run_dir.display()
        );
        return Ok(report);
    }
    let problems = cfg.problems();
    if !problems.is_empty() {
        return Err(ExecError::Config(problems));
    }
    if cfg.prune.is_some() {
        return execute_prune::<B>(cfg, data, paths, device_spec, device, on_event);
    }
    let kind = cfg.loss.kind;
    let mut attention = None;
    let (best, outcome) = if kind.needs_teacher() {
        let teacher = load_teacher::<B::InnerBackend>(paths, kind, data, device)?;
        let g_t = GraphKernel::<B::InnerBackend>::new(&data.cheb, data.nodes, device);
        let features = feature_cache(paths, kind, &teacher, &g_t, data, cfg, device)?;
        // Without the cache, a loss that reads only the teacher's outputs gets them computed
        // once, in memory.
        let cached = (features.is_none() && !kind.needs_features())
            .then(|| TeacherOutputs::compute(&teacher, &g_t, data, cfg.train.batch_size, device));
        let mut cache_failed = false;
        let result = train::train_with_loss::<B, _>(
            data,
            &cfg.model,
            &cfg.train,
            device,
            Some(&paths.run_dir),
            on_event,
            |m, b, g, tally| {
                // What the loss reads of the teacher from its cache; on a read error the
                // teacher's forward instead (the same values).
                let from_cache = features.as_ref().filter(|_| !cache_failed).and_then(|c| {
                    let got = c.batch_or_warn::<B::InnerBackend>(&b.idx, device);
                    cache_failed = got.is_none();
                    got
                });
                // The teacher's forward, unless what the loss reads was computed before.
                let fresh = (cached.is_none() && from_cache.is_none())
                    .then(|| teacher.forward_features(b.x.clone().inner(), &g_t));
                let teacher_step = match (&from_cache, &fresh, &cached) {
                    (Some(c), _, _) => TeacherStep::from_cache(c, kind),
                    (None, Some(f), _) => TeacherStep::from_forward(f),
                    (None, None, Some(c)) => TeacherStep {
                        y: c.batch(&b.idx, device),
                        features: None,
                        tcd: None,
                    },
                    (None, None, None) => unreachable!("computed when not cached"),
                };
                let student = Forward { x: &b.x, g };
                train::loss_step(
                    &cfg.loss,
                    m,
                    b.y1.clone(),
                    Some(teacher_step),
                    &student,
                    tally,
                )
                .expect("loss configuration validated before training")
            },
        )?;
        if kind.uses_ord() {
            attention = Some((result.1.tally.picks, result.1.tally.elements));
        }
        result
    } else {
        train::train::<B>(
            data,
            &cfg.model,
            &cfg.train,
            device,
            Some(&paths.run_dir),
            on_event,
        )?
    };
    let test_time = (cfg.test_runs != Some(0)).then(|| {
        let g = GraphKernel::<B::InnerBackend>::new(&data.cheb, data.nodes, device);
        let time = timed(cfg, paths, device_spec, data, &g, device);
        time(&best, &cfg.model)
    });
    Ok(RunReport {
        test_time,
        attention,
        ..RunReport::new(cfg, paths, device_spec, data, outcome)
    })
}

/// Execute a pruning run (`cfg.prune` set): load the base checkpoint (and the teacher),
/// [`prune_model`], test metrics, time base and pruned networks, save the delivered network to
/// `paths.run_dir`.
fn execute_prune<B: AutodiffBackend>(
    cfg: &RunConfig,
    data: &Dataset,
    paths: &RunPaths,
    device_spec: DeviceSpec,
    device: &B::Device,
    on_event: &mut dyn FnMut(Event),
) -> Result<RunReport, ExecError> {
    let started = Instant::now();
    // Checked by `execute` ([`RunConfig::problems`]).
    let pc = cfg
        .prune
        .as_ref()
        .ok_or_else(|| PruneError::Config("the run has no `prune` settings".into()))?;
    let base_dir = paths.base_dir.as_ref().ok_or(PruneError::NoBase)?;
    let (base, base_cfg) = train::load_model::<B>(base_dir, device)?;
    if base_cfg.nodes != data.nodes {
        return Err(PruneError::BaseMismatch {
            dir: base_dir.clone(),
            base_nodes: base_cfg.nodes,
            nodes: data.nodes,
        }
        .into());
    }
    let teacher = pc
        .uses_teacher()
        .then(|| load_teacher::<B::InnerBackend>(paths, cfg.loss.kind, data, device))
        .transpose()?;
    let base_inner = base.valid();
    let cache = match &teacher {
        Some(t) => {
            let g_t = GraphKernel::<B::InnerBackend>::new(&data.cheb, data.nodes, device);
            feature_cache(paths, cfg.loss.kind, t, &g_t, data, cfg, device)?
        }
        None => None,
    };
    let out = prune_model::<B>(
        base,
        &base_cfg,
        teacher.as_ref(),
        cache.as_ref(),
        data,
        &cfg.train,
        &cfg.loss,
        pc,
        device,
        Some(&ResumeDir::new(&paths.run_dir)),
        on_event,
    )?;
    on_event(Event::Testing);
    let g = GraphKernel::<B::InnerBackend>::new(&data.cheb, data.nodes, device);
    let test = train::evaluate(
        &out.model,
        &g,
        data,
        Split::Test,
        cfg.train.eval_batch,
        device,
    );
    let mut summary = out.summary;
    if cfg.test_runs != Some(0) && pc.granularity == Granularity::Channel {
        // Base and pruned networks timed alike (see [`timed`]).
        let time = timed(cfg, paths, device_spec, data, &g, device);
        let (tb, tp) = (
            time(&base_inner, &base_cfg),
            time(&out.model, &out.model_config),
        );
        summary.speedup = Some(tb.seconds / tp.seconds.max(1e-12));
        summary.base_test_time = Some(tb);
        summary.pruned_test_time = Some(tp);
    }
    train::save_model(&out.model, &out.model_config, &paths.run_dir)?;
    let parameters = summary
        .compact_parameters
        .unwrap_or(summary.remaining_parameters);
    let outcome = TrainOutcome {
        epochs: out.epochs,
        best_epoch: out.best_epoch,
        val: out.val,
        test,
        parameters,
        train_seconds: out.seconds_before + started.elapsed().as_secs_f64(),
        tally: Default::default(),
    };
    Ok(RunReport {
        flops_per_sample: out.model_config.flops_per_sample(),
        test_time: summary.pruned_test_time,
        attention: out.attention,
        pruning: Some(summary),
        ..RunReport::new(cfg, paths, device_spec, data, outcome)
    })
}

/// The teacher's checkpoint for a run with `loss`, checked against the data's graph.
fn load_teacher<B: Backend>(
    paths: &RunPaths,
    loss: LossKind,
    data: &Dataset,
    device: &B::Device,
) -> Result<Stgcn<B>, ExecError> {
    let dir = paths
        .teacher_dir
        .as_ref()
        .ok_or(ExecError::NoTeacher { loss })?;
    let (teacher, tcfg) = train::load_model::<B>(dir, device)?;
    if tcfg.nodes != data.nodes {
        return Err(ExecError::TeacherMismatch {
            dir: dir.clone(),
            teacher_nodes: tcfg.nodes,
            nodes: data.nodes,
        });
    }
    Ok(teacher)
}

/// How every run times a network (the paper's 9-step prediction of a 1140-window batch, once
/// per shape and device, [`test_time_once`]): `test_runs` timed runs after a warm-up, by
/// default 100 on a GPU and as many as fit in about a minute on the CPU.
fn timed<'a, B: Backend>(
    cfg: &'a RunConfig,
    paths: &'a RunPaths,
    device_spec: DeviceSpec,
    data: &'a Dataset,
    g: &'a GraphKernel<B>,
    device: &'a B::Device,
) -> impl Fn(&Stgcn<B>, &StgcnConfig) -> TestTime + 'a {
    let runs = cfg.test_runs.or(match device_spec {
        DeviceSpec::Cpu => None,
        DeviceSpec::Cuda(_) => Some(100),
    });
    move |model, shape| {
        test_time_once(&paths.run_dir, shape, device_spec, runs, || {
            train::measure_test_time(model, g, data, 1140, runs, 60.0, device)
        })
    }
}

pub const OUTCOME_FILE: &str = "outcome.json";
/// Test times already measured, next to the run folders (see [`test_time_once`]).
const TEST_TIMES_FILE: &str = "test-times.json";

/// The test time of a network of shape `model` on `device` (the paper's 9-step prediction of a
/// 1140-window batch, `runs` timed runs): read from `test-times.json` beside `run_dir` when a
/// run of the same shape, device and run count measured it already with this build (the key
/// holds the code commit), else measured by `measure` and added there. A prediction's time does not depend on the weights, only on the shape and
/// the machine, so a table measures each architecture once instead of once per run.
pub fn test_time_once(
    run_dir: &Path,
    model: &crate::model::StgcnConfig,
    device: DeviceSpec,
    runs: Option<usize>,
    measure: impl FnOnce() -> TestTime,
) -> TestTime {
    let key = serde_json::to_string(&(model, device.to_string(), runs, crate::plan::CODE_COMMIT))
        .expect("key serialises");
    let path = run_dir.parent().map_or_else(
        || PathBuf::from(TEST_TIMES_FILE),
        |p| p.join(TEST_TIMES_FILE),
    );
    let read = || -> std::collections::BTreeMap<String, TestTime> {
        std::fs::read(&path)
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok())
            .unwrap_or_default()
    };
    if let Some(t) = read().get(&key) {
        return *t;
    }
    let t = measure();
    // Read again (another worker may have added entries) and replace the file whole.
    let mut all = read();
    all.insert(key, t);
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let json = serde_json::to_vec_pretty(&all).expect("test times serialise");
    if std::fs::write(&tmp, json)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
    t
}

/// The teacher cache of a run whose loss reads the teacher ([`crate::distill::cache`]), in the
/// teacher's run folder: opened, or built by one teacher pass. `None` when the loss reads no
/// teacher, the teacher has no identity, or the cache is off (`STKD_TEACHER_CACHE=off`).
fn feature_cache<B: Backend>(
    paths: &RunPaths,
    kind: LossKind,
    teacher: &Stgcn<B>,
    g: &GraphKernel<B>,
    data: &Dataset,
    cfg: &RunConfig,
    device: &B::Device,
) -> Result<Option<TeacherCache>, ExecError> {
    let taps = Tap::of(kind);
    let Some(dir) = paths.teacher_dir.as_ref() else {
        return Ok(None);
    };
    let Some(identity) = checkpoint_identity(dir).filter(|_| !taps.is_empty() && cache::enabled())
    else {
        return Ok(None);
    };
    let started = Instant::now();
    let at = dir.join(cache::CACHE_DIR);
    let c = TeacherCache::open_or_build(
        &at,
        &identity,
        taps,
        teacher,
        g,
        data,
        cfg.train.batch_size,
        device,
    )?;
    if !c.built.is_empty() {
        eprintln!(
            "teacher cache: built {} in {:.1} s ({:.2} GB in {})",
            c.built
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            started.elapsed().as_secs_f64(),
            c.bytes() as f64 / 1e9,
            at.display()
        );
    }
    Ok(Some(c))
}

/// The teacher's one-step predictions for every training window, computed once before a
/// distillation run whose loss reads nothing else of the teacher (RD-L2, RD-KL, ORD) when the
/// teacher cache is off or unavailable: the teacher's forward leaves the training loop.
/// Computed in consecutive batches of the run's batch size with the same forward as per-step
/// teaching, so the values are those the loop would compute (each window's output does not
/// depend on its batch-mates; tested).
pub struct TeacherOutputs {
    nodes: usize,
    /// `[windows, N]` row-major.
    values: Vec<f32>,
}

impl TeacherOutputs {
    pub fn compute<B: Backend>(
        teacher: &Stgcn<B>,
        g: &GraphKernel<B>,
        data: &Dataset,
        batch_size: usize,
        device: &B::Device,
    ) -> Self {
        let windows = data.windows(Split::Train);
        let mut values = Vec::with_capacity(windows * data.nodes);
        let mut batcher = Batcher::default();
        let all: Vec<usize> = (0..windows).collect();
        for idx in all.chunks(batch_size.max(1)) {
            let b = batcher.batch::<B>(data, Split::Train, idx, device);
            let (y, _) = teacher.forward_features(b.x, g);
            values.extend(y.into_data().to_vec::<f32>().expect("f32 outputs"));
        }
        TeacherOutputs {
            nodes: data.nodes,
            values,
        }
    }

    /// `[b, 1, N, 1]` outputs of the training windows `idx`.
    pub fn batch<B: Backend>(&self, idx: &[usize], device: &B::Device) -> Tensor<B, 4> {
        let n = self.nodes;
        let mut rows = Vec::with_capacity(idx.len() * n);
        for &i in idx {
            rows.extend_from_slice(&self.values[i * n..(i + 1) * n]);
        }
        Tensor::from_data(TensorData::new(rows, [idx.len(), 1, n, 1]), device)
    }
}

/// Write a run's report next to its checkpoint (`outcome.json`, written whole then renamed into
/// place), then remove the run's per-epoch resume checkpoint, which is no longer needed.
pub fn write_report(report: &RunReport, run_dir: &Path) -> Result<(), ExecError> {
    let path = run_dir.join(OUTCOME_FILE);
    let tmp = run_dir.join(format!("{OUTCOME_FILE}.tmp"));
    let json = serde_json::to_string_pretty(report).expect("report serialises");
    std::fs::write(&tmp, json)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| ExecError::Io {
            path,
            detail: e.to_string(),
        })?;
    crate::resume::ResumeDir::new(run_dir).remove();
    Ok(())
}

/// The report of a run already finished in `run_dir` with this configuration and data (its
/// `outcome.json`), if there is one: a run killed after finishing but before its result was
/// recorded is not computed again.
pub fn finished_report(cfg: &RunConfig, data_checksum: &str, run_dir: &Path) -> Option<RunReport> {
    let text = std::fs::read(run_dir.join(OUTCOME_FILE)).ok()?;
    let report: RunReport = serde_json::from_slice(&text).ok()?;
    (report.config == *cfg && report.data_checksum == data_checksum).then_some(report)
}

/// The identity of the run whose checkpoint is in `dir`, as a configuration references a
/// teacher or base: its run hash when the folder holds its `outcome.json` (any finished run,
/// from a sweep or from `stkd train`), else `checkpoint-` and the start of the SHA-256 of its
/// weights. `None` when there is no checkpoint. The path itself never enters a run's identity.
pub fn checkpoint_identity(dir: &Path) -> Option<String> {
    if let Some(r) = std::fs::read(dir.join(OUTCOME_FILE))
        .ok()
        .and_then(|t| serde_json::from_slice::<RunReport>(&t).ok())
    {
        return Some(crate::plan::run_hash(&r.config, &r.data_checksum));
    }
    let weights = std::fs::read(dir.join("model.bin")).ok()?;
    Some(format!(
        "checkpoint-{}",
        &crate::digest::sha256_hex(&weights)[..16]
    ))
}

impl RunReport {
    /// The report of `cfg`'s run with `outcome`, built by this code: the network's FLOPs from
    /// the configuration, no test time, ORD picks or pruning summary.
    fn new(
        cfg: &RunConfig,
        paths: &RunPaths,
        device: DeviceSpec,
        data: &Dataset,
        outcome: TrainOutcome,
    ) -> Self {
        RunReport {
            run_dir: paths.run_dir.clone(),
            dataset: cfg.dataset,
            device,
            data_checksum: data.checksum.clone(),
            config: cfg.clone(),
            outcome,
            flops_per_sample: cfg.model.flops_per_sample(),
            test_time: None,
            attention: None,
            pruning: None,
            code_commit: crate::plan::CODE_COMMIT.to_string(),
        }
    }

    /// The rows the store keeps for a finished run. `checkpoint` is the run folder as stored
    /// (relative to the store's folder).
    pub fn to_store_result(&self, checkpoint: &str) -> crate::store::RunResult {
        use crate::store::{Attention, EpochRow, MetricRow, Profile, RunResult};
        let split_metrics = |m: &crate::train::Metrics, split: &str| {
            m.steps
                .iter()
                .map(|s| MetricRow {
                    split: split.to_string(),
                    step: s.step as u32,
                    mape: s.mape,
                    mae: s.mae,
                    rmse: s.rmse,
                })
                .collect::<Vec<_>>()
        };
        let o = &self.outcome;
        RunResult {
            epochs: o
                .epochs
                .iter()
                .map(|e| EpochRow {
                    epoch: e.epoch as u32,
                    lr: e.lr,
                    train_loss: e.train_loss,
                    val_mae: e.val_mae,
                    seconds: e.seconds,
                })
                .collect(),
            metrics: [split_metrics(&o.val, "val"), split_metrics(&o.test, "test")].concat(),
            profile: Some(Profile {
                parameters: o.parameters as u64,
                flops: self.flops_per_sample,
                test_time_s: self.test_time.map(|t| t.seconds),
                test_time_runs: self.test_time.map(|t| t.runs as u32),
                test_time_batch: self.test_time.map(|t| t.batch as u32),
                device: self.device.to_string(),
            }),
            attention: self
                .attention
                .map(|(picks, elements)| Attention { picks, elements }),
            pruning: self.pruning.as_ref().map(|p| p.to_store()),
            artefacts: vec![("checkpoint".to_string(), checkpoint.to_string())],
            best_epoch: Some(o.best_epoch as u32),
            train_seconds: o.train_seconds,
        }
    }
}

#[cfg(test)]
mod prune_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuInner;
    use crate::model::{Preset, StgcnConfig};
    use crate::rng::Rng;

    #[test]
    fn test_time_is_measured_once_per_shape_and_device() {
        let root = std::env::temp_dir().join(format!("stkd-test-times-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let student = StgcnConfig::new(Preset::Student.channels(), 10, 12);
        let teacher = StgcnConfig::new(Preset::Teacher.channels(), 10, 12);
        let mut measured = 0;
        let mut time = |run: &str, m: &StgcnConfig, d: DeviceSpec, s: f64| {
            test_time_once(&root.join(run), m, d, None, || {
                measured += 1;
                TestTime {
                    seconds: s,
                    runs: 3,
                    batch: 1140,
                }
            })
            .seconds
        };
        assert_eq!(time("a", &student, DeviceSpec::Cpu, 1.0), 1.0);
        // Another run of the same shape on the same device: the first measurement.
        assert_eq!(time("b", &student, DeviceSpec::Cpu, 2.0), 1.0);
        assert_eq!(time("c", &teacher, DeviceSpec::Cpu, 3.0), 3.0);
        assert_eq!(time("d", &student, DeviceSpec::Cuda(0), 4.0), 4.0);
        assert_eq!(measured, 3);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn cached_teacher_outputs_equal_the_per_batch_forward_bit_for_bit() {
        // PeMSD7's node count and the teacher's shape: the kernels' real paths.
        let data = Dataset::synthetic(228, 6, 96, 3);
        let dev = Default::default();
        let cfg = StgcnConfig::new(Preset::Teacher.channels(), data.nodes, data.n_his);
        let teacher = Stgcn::<CpuInner>::new(&cfg, 4, &dev).unwrap();
        let g = GraphKernel::<CpuInner>::new(&data.cheb, data.nodes, &dev);
        let cached = TeacherOutputs::compute(&teacher, &g, &data, 50, &dev);
        let mut order: Vec<usize> = (0..data.windows(Split::Train)).collect();
        Rng::new(1, 1).shuffle(&mut order);
        let mut batcher = Batcher::default();
        for idx in order.chunks(50).take(3) {
            let b = batcher.batch::<CpuInner>(&data, Split::Train, idx, &dev);
            let (direct, _) = teacher.forward_features(b.x, &g);
            let direct = direct.into_data().to_vec::<f32>().unwrap();
            let from_cache = cached.batch::<CpuInner>(idx, &dev);
            let from_cache = from_cache.into_data().to_vec::<f32>().unwrap();
            assert_eq!(direct.len(), idx.len() * data.nodes);
            let same = direct
                .iter()
                .zip(&from_cache)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "cached teacher outputs differ from the batch's forward"
            );
        }
    }
}
