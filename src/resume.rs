//! Per-epoch checkpoints of a run in progress, so that a run stopped by `kill -9`, Ctrl-C or a
//! lost machine resumes at its next epoch and ends with the metrics of an uninterrupted run.
//!
//! A checkpoint lives in `<run folder>/resume/`: one burn record file per piece (`model-7.bin`,
//! `optim-7.bin`, ...; the number is the epoch that wrote it) and `state.json`, which names the
//! files of the checkpoint, its epoch and the caller's state (curve, best epoch, counters). A
//! checkpoint is committed by renaming a fully written `state.json.tmp` over `state.json`, and
//! only then are the files it no longer names removed: a kill at any point leaves either the old
//! checkpoint or the new one, never a mixture. The caller's `key` (its configuration) is stored
//! with it; a checkpoint written under another key is ignored, not resumed.
//!
//! The same weights and optimiser state give the same bytes: a network is written with its
//! parameters' ids replaced by their position in the network's visit order (burn gives every
//! parameter a random id), and the optimiser's per-parameter state, which burn keys by those ids
//! in a hash map, is written under the same positions in sorted order. The files stay burn's
//! record format, so checkpoints written with random ids (before this) still load: reading
//! one translates the ids it holds back to those of the network it is loaded into
//! ([`Checkpoint::module`], [`Checkpoint::param_map`]). `model.bin` ([`crate::train::save_model`])
//! is written the same way.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::record::{BinFileRecorder, FullPrecisionSettings, PrecisionSettings, Record, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The resume folder's name inside a run folder.
pub const DIR: &str = "resume";
/// Its manifest: the configuration key, the epoch, the files and the trainer's state.
pub const STATE: &str = "state.json";

/// A checkpoint that could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("resume checkpoint {path}: {detail}")]
pub struct ResumeError {
    pub path: PathBuf,
    pub detail: String,
}

#[derive(Serialize, Deserialize)]
struct Manifest<S> {
    key: String,
    /// Epochs finished when the checkpoint was written.
    epoch: usize,
    /// Piece name → file stem in the folder.
    files: BTreeMap<String, String>,
    state: S,
}

/// The resume folder of one run.
#[derive(Debug, Clone)]
pub struct ResumeDir {
    dir: PathBuf,
}

/// A checkpoint read back: the epochs it covers, the caller's state, and its pieces.
pub struct Checkpoint<S> {
    pub epoch: usize,
    pub state: S,
    dir: PathBuf,
    files: BTreeMap<String, String>,
}

fn recorder() -> BinFileRecorder<FullPrecisionSettings> {
    BinFileRecorder::<FullPrecisionSettings>::new()
}

/// The ids of `module`'s parameters, in its visit order.
pub fn param_ids<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl<B: Backend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.push(p.id);
        }
        fn visit_int<const D: usize>(&mut self, p: &Param<Tensor<B, D, Int>>) {
            self.0.push(p.id);
        }
        fn visit_bool<const D: usize>(&mut self, p: &Param<Tensor<B, D, Bool>>) {
            self.0.push(p.id);
        }
    }
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    ids.0
}

/// `module` with its parameters' ids replaced, in visit order, by `ids` (values, gradient
/// tracking and load/save mappers unchanged). Panics when `ids` is shorter than the module's
/// parameter list.
pub fn with_param_ids<B: Backend, M: Module<B>>(module: M, ids: &[ParamId]) -> M {
    struct SetIds<'a> {
        ids: &'a [ParamId],
        next: usize,
    }
    impl SetIds<'_> {
        fn take(&mut self) -> ParamId {
            let id = self.ids[self.next];
            self.next += 1;
            id
        }
    }
    impl<B: Backend> ModuleMapper<B> for SetIds<'_> {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (_, tensor, mapper) = p.consume();
            Param::from_mapped_value(self.take(), tensor, mapper)
        }
        fn map_int<const D: usize>(
            &mut self,
            p: Param<Tensor<B, D, Int>>,
        ) -> Param<Tensor<B, D, Int>> {
            let (_, tensor, mapper) = p.consume();
            Param::from_mapped_value(self.take(), tensor, mapper)
        }
        fn map_bool<const D: usize>(
            &mut self,
            p: Param<Tensor<B, D, Bool>>,
        ) -> Param<Tensor<B, D, Bool>> {
            let (_, tensor, mapper) = p.consume();
            Param::from_mapped_value(self.take(), tensor, mapper)
        }
    }
    module.map(&mut SetIds { ids, next: 0 })
}

/// The id a parameter is written under: its position in the network's visit order.
fn position_id(i: usize) -> ParamId {
    ParamId::from(i as u64)
}

/// `module` with the ids it is written under ([`position_id`]), so that the same weights give
/// the same record file.
pub fn positional<B: Backend, M: Module<B>>(module: M) -> M {
    let ids: Vec<ParamId> = (0..param_ids(&module).len()).map(position_id).collect();
    with_param_ids(module, &ids)
}

/// Translation from the parameter ids a record file holds to those of the network it was
/// loaded into (see [`Checkpoint::module`]).
pub type IdMap = HashMap<ParamId, ParamId>;

/// A map keyed by parameter ids (an optimiser's state), written as a map sorted by key: burn
/// writes its `HashMap` in the hash map's (random) order. The file reads back as the `HashMap`.
struct SortedById<T>(Vec<(ParamId, T)>);

impl<B: Backend, T: Record<B>> Record<B> for SortedById<T> {
    type Item<S: PrecisionSettings> = BTreeMap<String, T::Item<S>>;

    fn into_item<S: PrecisionSettings>(self) -> Self::Item<S> {
        self.0
            .into_iter()
            .map(|(id, r)| (id.serialize(), r.into_item()))
            .collect()
    }

    fn from_item<S: PrecisionSettings>(item: Self::Item<S>, device: &B::Device) -> Self {
        SortedById(
            item.into_iter()
                .map(|(id, r)| (ParamId::deserialize(&id), T::from_item(r, device)))
                .collect(),
        )
    }
}

impl<S> Checkpoint<S> {
    /// The stem of piece `name` (to carry it into the next checkpoint unchanged).
    pub fn stem(&self, name: &str) -> Option<&str> {
        self.files.get(name).map(String::as_str)
    }

    /// Read piece `name` as a burn record (module weights, optimiser state).
    pub fn record<B: Backend, R: Record<B>>(
        &self,
        name: &str,
        device: &B::Device,
    ) -> Result<R, ResumeError> {
        let stem = self.files.get(name).ok_or_else(|| ResumeError {
            path: self.dir.clone(),
            detail: format!("no piece `{name}` in {STATE}"),
        })?;
        let path = self.dir.join(stem);
        Recorder::<B>::load(&recorder(), path.clone(), device).map_err(|e| ResumeError {
            path,
            detail: e.to_string(),
        })
    }

    /// Load piece `name` (written by [`Snapshot::module`] or, before it, as a plain record)
    /// into `module`, which keeps its own parameter ids; also returns the translation from the
    /// ids in the file to the module's, for [`Checkpoint::param_map`].
    pub fn module<B: Backend, M: Module<B>>(
        &self,
        name: &str,
        module: M,
        device: &B::Device,
    ) -> Result<(M, IdMap), ResumeError> {
        let ids = param_ids(&module);
        let loaded = module.load_record(self.record::<B, M::Record>(name, device)?);
        let map = param_ids(&loaded)
            .into_iter()
            .zip(ids.iter().copied())
            .collect();
        Ok((with_param_ids(loaded, &ids), map))
    }

    /// Read piece `name`, a map keyed by parameter ids (an optimiser's state), with its keys
    /// translated by `ids` (from [`Checkpoint::module`] of the network it belongs to).
    pub fn param_map<B, M, T>(
        &self,
        name: &str,
        ids: &IdMap,
        device: &B::Device,
    ) -> Result<M, ResumeError>
    where
        B: Backend,
        M: Record<B> + IntoIterator<Item = (ParamId, T)> + FromIterator<(ParamId, T)>,
    {
        let map: M = self.record::<B, M>(name, device)?;
        Ok(map
            .into_iter()
            .map(|(id, v)| (ids.get(&id).copied().unwrap_or(id), v))
            .collect())
    }
}

/// Pieces of a checkpoint being written; nothing is visible until [`Snapshot::commit`].
pub struct Snapshot<'a> {
    owner: &'a ResumeDir,
    epoch: usize,
    files: BTreeMap<String, String>,
}

impl Snapshot<'_> {
    /// Write piece `name` (a burn record) for this checkpoint.
    pub fn record<B: Backend, R: Record<B>>(
        &mut self,
        name: &str,
        record: R,
    ) -> Result<(), ResumeError> {
        let stem = format!("{name}-{}", self.epoch);
        let path = self.owner.dir.join(&stem);
        Recorder::<B>::record(&recorder(), record, path.clone()).map_err(|e| ResumeError {
            path,
            detail: e.to_string(),
        })?;
        self.files.insert(name.to_string(), stem);
        Ok(())
    }

    /// Write `module`'s weights as piece `name`, its parameters under their positions in visit
    /// order rather than their random ids: the same weights give the same file.
    pub fn module<B: Backend, M: Module<B>>(
        &mut self,
        name: &str,
        module: &M,
    ) -> Result<(), ResumeError> {
        self.record::<B, _>(name, positional(module.clone()).into_record())
    }

    /// Write `map` (an optimiser's state, keyed by the ids of the parameters of the network it
    /// steps, `ids` in visit order) as piece `name`, keyed by the parameters' positions as
    /// [`Snapshot::module`] writes them and in sorted order. Entries for ids the network no
    /// longer has are dropped (an optimiser only ever reads its network's).
    pub fn param_map<B: Backend, T: Record<B>>(
        &mut self,
        name: &str,
        map: impl IntoIterator<Item = (ParamId, T)>,
        ids: &[ParamId],
    ) -> Result<(), ResumeError> {
        let position: HashMap<ParamId, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut entries: Vec<(ParamId, T)> = map
            .into_iter()
            .filter_map(|(id, v)| position.get(&id).map(|&i| (position_id(i), v)))
            .collect();
        entries.sort_by_key(|(id, _)| *id);
        self.record::<B, _>(name, SortedById(entries))
    }

    /// Carry piece `name` over from an earlier checkpoint without rewriting it.
    pub fn keep(&mut self, name: &str, stem: &str) {
        self.files.insert(name.to_string(), stem.to_string());
    }

    /// Make the checkpoint the current one, then remove the files it does not name.
    pub fn commit<S: Serialize>(self, key: &str, state: &S) -> Result<(), ResumeError> {
        let dir = &self.owner.dir;
        let err = |path: &Path, e: std::io::Error| ResumeError {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let manifest = Manifest {
            key: key.to_string(),
            epoch: self.epoch,
            files: self.files,
            state,
        };
        let tmp = dir.join(format!("{STATE}.tmp"));
        let json = serde_json::to_vec_pretty(&manifest).expect("checkpoint state serialises");
        std::fs::write(&tmp, json).map_err(|e| err(&tmp, e))?;
        let path = dir.join(STATE);
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
        let named: Vec<String> = manifest
            .files
            .values()
            .map(|s| format!("{s}.bin"))
            .collect();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if name.ends_with(".bin") && !named.contains(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }
}

impl ResumeDir {
    /// The resume folder inside `run_dir`.
    pub fn new(run_dir: &Path) -> Self {
        ResumeDir {
            dir: run_dir.join(DIR),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The training curve so far of the checkpoint here (the trainer's and the pruning loop's
    /// states both keep it as `curve`), whatever configuration it belongs to; `None` without a
    /// readable checkpoint.
    pub fn curve(&self) -> Option<Vec<crate::store::EpochRow>> {
        #[derive(Deserialize)]
        struct State {
            curve: Vec<crate::store::EpochRow>,
        }
        #[derive(Deserialize)]
        struct Manifest {
            state: State,
        }
        let text = std::fs::read(self.dir.join(STATE)).ok()?;
        serde_json::from_slice::<Manifest>(&text)
            .ok()
            .map(|m| m.state.curve)
    }

    /// The current checkpoint, if one was committed under `key`. A checkpoint of another key
    /// (another configuration in the same folder) is reported in `Err`'s place as `Ok(None)`
    /// after a warning on stderr; an unreadable `state.json` is an error.
    pub fn load<S: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<Checkpoint<S>>, ResumeError> {
        let path = self.dir.join(STATE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ResumeError {
                    path,
                    detail: e.to_string(),
                })
            }
        };
        let m: Manifest<S> = serde_json::from_slice(&text).map_err(|e| ResumeError {
            path: path.clone(),
            detail: format!("unreadable ({e}); delete the folder to start the run afresh"),
        })?;
        if m.key != key {
            eprintln!(
                "warning: {} holds a checkpoint of another configuration; starting afresh",
                self.dir.display()
            );
            return Ok(None);
        }
        Ok(Some(Checkpoint {
            epoch: m.epoch,
            state: m.state,
            dir: self.dir.clone(),
            files: m.files,
        }))
    }

    /// Start writing the checkpoint after `epoch` finished epochs.
    pub fn begin(&self, epoch: usize) -> Result<Snapshot<'_>, ResumeError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| ResumeError {
            path: self.dir.clone(),
            detail: e.to_string(),
        })?;
        Ok(Snapshot {
            owner: self,
            epoch,
            files: BTreeMap::new(),
        })
    }

    /// Delete the folder (the run's result is recorded; nothing is left to resume).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuInner;
    use crate::model::{Preset, Stgcn, StgcnConfig};
    use burn::module::Module;

    #[test]
    fn checkpoints_commit_atomically_and_keep_only_named_files() {
        let run = std::env::temp_dir().join(format!("stkd-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        let r = ResumeDir::new(&run);
        assert!(r.load::<u32>("k").unwrap().is_none(), "nothing yet");
        let dev = Default::default();
        let cfg = StgcnConfig::new(Preset::Student.channels(), 5, 12);
        let m1 = Stgcn::<CpuInner>::new(&cfg, 1, &dev).unwrap();
        let m2 = Stgcn::<CpuInner>::new(&cfg, 2, &dev).unwrap();
        let mut s = r.begin(1).unwrap();
        s.record::<CpuInner, _>("model", m1.clone().into_record())
            .unwrap();
        s.record::<CpuInner, _>("best", m1.clone().into_record())
            .unwrap();
        // Written but not committed: still nothing to resume.
        assert!(r.load::<u32>("k").unwrap().is_none());
        s.commit("k", &7u32).unwrap();
        let c = r.load::<u32>("k").unwrap().unwrap();
        assert_eq!((c.epoch, c.state), (1, 7));
        let best = c.stem("best").unwrap().to_string();
        let mut s = r.begin(2).unwrap();
        s.record::<CpuInner, _>("model", m2.clone().into_record())
            .unwrap();
        s.keep("best", &best);
        s.commit("k", &8u32).unwrap();
        let mut files: Vec<String> = std::fs::read_dir(r.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        files.sort();
        assert_eq!(files, ["best-1.bin", "model-2.bin", "state.json"]);
        let c = r.load::<u32>("k").unwrap().unwrap();
        let loaded = Stgcn::<CpuInner>::new(&cfg, 9, &dev)
            .unwrap()
            .load_record(c.record::<CpuInner, _>("model", &dev).unwrap());
        let weights = |m: &Stgcn<CpuInner>| {
            m.output
                .fc_weight
                .val()
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(weights(&loaded), weights(&m2));
        assert_ne!(weights(&loaded), weights(&m1));
        // Another configuration's checkpoint is not resumed.
        assert!(r.load::<u32>("other").unwrap().is_none());
        std::fs::write(r.path().join(STATE), b"{").unwrap();
        let e = r.load::<u32>("k").err().unwrap().to_string();
        assert!(e.contains("state.json") && e.contains("afresh"), "{e}");
        r.remove();
        assert!(!r.path().exists());
        let _ = std::fs::remove_dir_all(&run);
    }
}
