//! The teacher's side of the feature-based losses, computed once per teacher and kept on disk
//! beside the teacher's run folder, instead of a teacher forward pass at every training step.
//!
//! The teacher is frozen, and what it gives a training window does not depend on the other
//! windows of its minibatch (its kernels compute each sample alone; tested bit for bit against
//! the per-batch forward). So one pass over the training windows, in consecutive batches,
//! yields exactly the values every step of every student, seed and loss would compute. Only what
//! the losses read is kept ([`Tap::of`]):
//!
//! | tap | what | losses | PeMSD7 (9,112 windows) |
//! |---|---|---|---|
//! | `outputs` | one-step predictions `[N]` | every loss with a teacher | 8 MB |
//! | `tcd` | TCD's teacher distances `TCD^t_bnij` of the 4 temporal layers (94 pairs × N) | TCD, STCD | 0.78 GB |
//! | `spatial` | the 2 spatial layers' features `[T, N, 32]` (SCD's pairs `N²/2` per step would be larger than the features) | SCD, STCD | 4.3 GB |
//! | `last-block` | the last ST-Conv block's output `[4, N, 128]` | SKD | 4.3 GB |
//!
//! Files: `<teacher run>/teacher-cache/<tap>-<key>.f32` (little-endian `f32`, window after
//! window) and `<tap>-<key>.json` (what it holds; written last, so a file without it is
//! incomplete and is built again). The key is the SHA-256 of the code version, the teacher's
//! identity (its run hash or the hash of its weights), the data set's checksum, its training
//! windows and node count (not the thread count: the kernels' sums do not depend on it). A minibatch reads its windows' rows (`pread`, the page cache keeps
//! hot files in memory). Delete the folder to reclaim the space; the next run builds it again.
//! `STKD_TEACHER_CACHE=off` computes the teacher at every step instead (same numbers).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Split};
use crate::distill::pairwise::{tcd_teacher, tcd_teacher_len};
use crate::distill::{host, LossKind};
use crate::model::{Features, GraphKernel, Stgcn};
use crate::train::Batcher;

/// The folder of the cache inside the teacher's run folder.
pub const CACHE_DIR: &str = "teacher-cache";
/// The environment variable that turns the cache off (`off`).
pub const CACHE_ENV: &str = "STKD_TEACHER_CACHE";

/// What of the teacher a loss reads, kept per training window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tap {
    /// The one-step prediction `[1, N, 1]`.
    Outputs,
    /// TCD's teacher distances of every temporal layer ([`tcd_teacher`]).
    Tcd,
    /// The spatial layers' outputs `[T, N, C]`.
    Spatial,
    /// The last ST-Conv block's output `[T, N, C]`.
    LastBlock,
}

impl Tap {
    fn name(self) -> &'static str {
        match self {
            Tap::Outputs => "outputs",
            Tap::Tcd => "tcd",
            Tap::Spatial => "spatial",
            Tap::LastBlock => "last-block",
        }
    }

    /// The taps a loss reads: the outputs for every loss with a teacher, and the features the
    /// feature-based ones compare; none without a teacher.
    pub fn of(kind: LossKind) -> &'static [Tap] {
        match kind {
            LossKind::Tcd => &[Tap::Outputs, Tap::Tcd],
            LossKind::Scd => &[Tap::Outputs, Tap::Spatial],
            LossKind::Stcd => &[Tap::Outputs, Tap::Tcd, Tap::Spatial],
            LossKind::Skd => &[Tap::Outputs, Tap::LastBlock],
            k if k.needs_teacher() => &[Tap::Outputs],
            _ => &[],
        }
    }

    /// The tap's layers `[T, N, C]` in one batch's forward (`C = 1` for TCD's distances, whose
    /// layer holds [`tcd_teacher_len`] values).
    fn layers<BT: Backend>(self, y: &Tensor<BT, 4>, f: &Features<BT>) -> Vec<[usize; 3]> {
        let dims = |t: &Tensor<BT, 4>| {
            let [_, a, b, c] = t.dims();
            [a, b, c]
        };
        match self {
            Tap::Outputs => vec![dims(y)],
            Tap::Tcd => f
                .temporal
                .iter()
                .map(|t| {
                    let [tt, n, _] = dims(t);
                    [tt, n, 1]
                })
                .collect(),
            Tap::Spatial => f.spatial.iter().map(dims).collect(),
            Tap::LastBlock => vec![dims(&f.last_block)],
        }
    }

    /// The tap's values of one batch's forward, layer by layer, each `[b][layer values]`.
    fn values<BT: Backend>(self, y: &Tensor<BT, 4>, f: &Features<BT>) -> Vec<Vec<f32>> {
        match self {
            Tap::Outputs => vec![host(y)],
            Tap::Tcd => f
                .temporal
                .iter()
                .map(|t| {
                    let [b, tt, n, c] = t.dims();
                    tcd_teacher(&host(t), [b, tt, n], c)
                })
                .collect(),
            Tap::Spatial => f.spatial.iter().map(host).collect(),
            Tap::LastBlock => vec![host(&f.last_block)],
        }
    }
}

/// Values per window of a layer `[T, N, C]` of `tap`.
fn layer_len(tap: Tap, [t, n, c]: [usize; 3]) -> usize {
    match tap {
        Tap::Tcd => tcd_teacher_len(t, n),
        _ => t * n * c,
    }
}

/// Why the cache could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("teacher cache {}: {detail}", .path.display())]
    Io { path: PathBuf, detail: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CacheError + '_ {
    move |e| CacheError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// What a tap's file was built from: equal keys, equal values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    /// [`crate::plan::CODE_VERSION`].
    pub code: String,
    /// The teacher run's hash, or the hash of its weights ([`crate::exec::checkpoint_identity`]).
    pub teacher: String,
    /// The data set's checksum.
    pub data: String,
    pub windows: usize,
    pub nodes: usize,
    pub tap: Tap,
}

/// A tap file's description (`<tap>-<key>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    key: CacheKey,
    /// Its layers `[T, N, C]`.
    layers: Vec<[usize; 3]>,
    /// Values per window (all layers).
    per_window: usize,
}

/// One tap's file, open for reading.
struct TapFile {
    meta: Meta,
    file: File,
    /// The file's path, for error messages.
    path: PathBuf,
}

impl TapFile {
    /// The values of windows `idx`, layer by layer, each `[idx.len()][layer values]`.
    fn rows(&self, idx: &[usize]) -> Result<Vec<Vec<f32>>, CacheError> {
        let path = &self.path;
        use std::os::unix::fs::FileExt;
        let per = self.meta.per_window;
        let lens: Vec<usize> = self
            .meta
            .layers
            .iter()
            .map(|&l| layer_len(self.meta.key.tap, l))
            .collect();
        let mut out: Vec<Vec<f32>> = lens.iter().map(|&l| vec![0f32; l * idx.len()]).collect();
        for (i, &w) in idx.iter().enumerate() {
            // Each layer's part of the window's row straight into its place in the batch.
            let mut offset = (w * per * 4) as u64;
            for (layer, &len) in out.iter_mut().zip(&lens) {
                let dst = &mut layer[i * len..(i + 1) * len];
                self.file
                    .read_exact_at(f32_bytes(dst), offset)
                    .map_err(io(path))?;
                offset += (len * 4) as u64;
            }
        }
        if cfg!(target_endian = "big") {
            for v in out.iter_mut().flatten() {
                *v = f32::from_bits(u32::from_le(v.to_bits()));
            }
        }
        Ok(out)
    }
}

/// The bytes of `v`, to read little-endian `f32`s into (byte-swapped after on a big-endian
/// machine).
fn f32_bytes(v: &mut [f32]) -> &mut [u8] {
    // SAFETY: any bit pattern is a valid f32 and u8 has alignment 1; the slice covers exactly
    // the memory of `v`, which stays borrowed mutably for the returned lifetime.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// What a minibatch gets from the cache: the teacher's prediction, the features its loss reads
/// (the others left empty) and, for TCD, the teacher's distances per temporal layer.
pub struct TeacherBatch<B: Backend> {
    pub y: Tensor<B, 4>,
    pub features: Features<B>,
    pub tcd: Option<Vec<Vec<f32>>>,
}

/// The cache of one teacher for one run's loss: its taps' files, open.
pub struct TeacherCache {
    dir: PathBuf,
    taps: Vec<TapFile>,
    /// Taps this call built (the others were on disk).
    pub built: Vec<Tap>,
}

/// Whether the cache is on (not `STKD_TEACHER_CACHE=off`).
pub fn enabled() -> bool {
    std::env::var(CACHE_ENV).map_or(true, |v| !v.trim().eq_ignore_ascii_case("off"))
}

impl TeacherCache {
    /// The taps of `taps` for `teacher` (identity `identity`) on `data`'s training windows, in
    /// `dir`: read where their files exist, else built by one pass of the teacher over the
    /// training windows in consecutive batches of `batch_size`.
    pub fn open_or_build<B: Backend>(
        dir: &Path,
        identity: &str,
        taps: &[Tap],
        teacher: &Stgcn<B>,
        g: &GraphKernel<B>,
        data: &Dataset,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<TeacherCache, CacheError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key = |tap| CacheKey {
            code: crate::plan::CODE_VERSION.to_string(),
            teacher: identity.to_string(),
            data: data.checksum.clone(),
            windows: data.windows(Split::Train),
            nodes: data.nodes,
            tap,
        };
        let missing = || -> Vec<Tap> {
            taps.iter()
                .copied()
                .filter(|&t| open_tap(dir, &key(t)).is_none())
                .collect()
        };
        let mut built = missing();
        if !built.is_empty() {
            // One builder at a time per folder: a run that waited finds the files built.
            let _lock = BuildLock::acquire(dir)?;
            built = missing();
            if !built.is_empty() {
                build(dir, &built, &key, teacher, g, data, batch_size, device)?;
            }
        }
        let taps = taps
            .iter()
            .map(|&t| {
                open_tap(dir, &key(t)).ok_or_else(|| CacheError::Io {
                    path: file_stem(dir, &key(t)).with_extension("f32"),
                    detail: "built, but it does not read back".into(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TeacherCache {
            dir: dir.to_path_buf(),
            taps,
            built,
        })
    }

    /// Bytes of the tap files this cache reads.
    pub fn bytes(&self) -> u64 {
        self.taps
            .iter()
            .map(|t| t.file.metadata().map_or(0, |m| m.len()))
            .sum()
    }

    /// [`Self::batch`], or `None` after printing why (a read error): the caller computes the
    /// teacher at every step from then on (the same values).
    pub fn batch_or_warn<B: Backend>(
        &self,
        idx: &[usize],
        device: &B::Device,
    ) -> Option<TeacherBatch<B>> {
        self.batch(idx, device)
            .map_err(|e| eprintln!("warning: {e}; computing the teacher at every step instead"))
            .ok()
    }

    /// The teacher's side of the training windows `idx`, as the per-batch forward gives it.
    pub fn batch<B: Backend>(
        &self,
        idx: &[usize],
        device: &B::Device,
    ) -> Result<TeacherBatch<B>, CacheError> {
        let b = idx.len();
        let tensor = |v: Vec<f32>, [t, n, c]: [usize; 3]| {
            Tensor::<B, 4>::from_data(TensorData::new(v, [b, t, n, c]), device)
        };
        let mut y = None;
        let mut features = Features {
            temporal: Vec::new(),
            spatial: Vec::new(),
            last_block: Tensor::from_data(TensorData::new(Vec::<f32>::new(), [0, 0, 0, 0]), device),
        };
        let mut tcd = None;
        for t in &self.taps {
            let rows = t.rows(idx)?;
            let layers = t.meta.layers.iter().copied();
            match t.meta.key.tap {
                Tap::Outputs => {
                    y = rows
                        .into_iter()
                        .zip(layers)
                        .map(|(v, l)| tensor(v, l))
                        .next()
                }
                Tap::Tcd => tcd = Some(rows),
                Tap::Spatial => {
                    features.spatial = rows
                        .into_iter()
                        .zip(layers)
                        .map(|(v, l)| tensor(v, l))
                        .collect()
                }
                Tap::LastBlock => {
                    if let Some(last) = rows
                        .into_iter()
                        .zip(layers)
                        .map(|(v, l)| tensor(v, l))
                        .next()
                    {
                        features.last_block = last;
                    }
                }
            }
        }
        Ok(TeacherBatch {
            y: y.ok_or_else(|| CacheError::Io {
                path: self.dir.clone(),
                detail: "the cache holds no outputs".into(),
            })?,
            features,
            tcd,
        })
    }
}

/// An exclusive `flock` on `<dir>/.build.lock`, held while taps are built (released when
/// dropped, or when the process dies).
struct BuildLock {
    _file: File,
}

impl BuildLock {
    fn acquire(dir: &Path) -> Result<BuildLock, CacheError> {
        use std::os::unix::io::AsRawFd;
        let path = dir.join(".build.lock");
        let file = File::create(&path).map_err(io(&path))?;
        // SAFETY: flock on a file descriptor this function owns; blocks until it is ours.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io(&path)(std::io::Error::last_os_error()));
        }
        Ok(BuildLock { _file: file })
    }
}

/// `<dir>/<tap>-<first 16 hex digits of the key's SHA-256>`.
fn file_stem(dir: &Path, key: &CacheKey) -> PathBuf {
    let json = serde_json::to_string(key).expect("key serialises");
    let digest = crate::digest::sha256_hex(json.as_bytes());
    dir.join(format!("{}-{}", key.tap.name(), &digest[..16]))
}

/// The tap file of `key` when it is complete (its description present, equal key, the size
/// it describes).
fn open_tap(dir: &Path, key: &CacheKey) -> Option<TapFile> {
    let stem = file_stem(dir, key);
    let meta: Meta =
        serde_json::from_slice(&std::fs::read(stem.with_extension("json")).ok()?).ok()?;
    let path = stem.with_extension("f32");
    let file = File::open(&path).ok()?;
    let size = file.metadata().ok()?.len();
    (meta.key == *key && size == (key.windows * meta.per_window * 4) as u64).then_some(TapFile {
        meta,
        file,
        path,
    })
}

/// One teacher pass over the training windows writing every tap of `taps`: each file written
/// under a temporary name, then renamed, then its description written.
#[allow(clippy::too_many_arguments)]
fn build<B: Backend>(
    dir: &Path,
    taps: &[Tap],
    key: &dyn Fn(Tap) -> CacheKey,
    teacher: &Stgcn<B>,
    g: &GraphKernel<B>,
    data: &Dataset,
    batch_size: usize,
    device: &B::Device,
) -> Result<(), CacheError> {
    let windows = data.windows(Split::Train);
    let tmp =
        |t: Tap| file_stem(dir, &key(t)).with_extension(format!("f32.tmp{}", std::process::id()));
    let mut writers = taps
        .iter()
        .map(|&t| {
            let path = tmp(t);
            File::create(&path).map(BufWriter::new).map_err(io(&path))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut layers: Vec<Vec<[usize; 3]>> = vec![Vec::new(); taps.len()];
    let mut batcher = Batcher::default();
    let all: Vec<usize> = (0..windows).collect();
    for idx in all.chunks(batch_size.max(1)) {
        let batch = batcher.batch::<B>(data, Split::Train, idx, device);
        let (y, f) = teacher.forward_features(batch.x, g);
        for (k, &tap) in taps.iter().enumerate() {
            if layers[k].is_empty() {
                layers[k] = tap.layers(&y, &f);
            }
            let values = tap.values(&y, &f);
            let lens: Vec<usize> = layers[k].iter().map(|&l| layer_len(tap, l)).collect();
            // Window after window, each window's layers in order.
            let mut bytes = Vec::with_capacity(values.iter().map(Vec::len).sum::<usize>() * 4);
            for i in 0..idx.len() {
                for (v, &len) in values.iter().zip(&lens) {
                    for x in &v[i * len..(i + 1) * len] {
                        bytes.extend_from_slice(&x.to_le_bytes());
                    }
                }
            }
            let path = tmp(tap);
            writers[k].write_all(&bytes).map_err(io(&path))?;
        }
    }
    for ((&tap, w), layers) in taps.iter().zip(writers).zip(layers) {
        let path = tmp(tap);
        let file = w.into_inner().map_err(|e| io(&path)(e.into_error()))?;
        file.sync_all().map_err(io(&path))?;
        let stem = file_stem(dir, &key(tap));
        let data_path = stem.with_extension("f32");
        std::fs::rename(&path, &data_path).map_err(io(&data_path))?;
        let per_window = layers.iter().map(|&l| layer_len(tap, l)).sum();
        let meta = Meta {
            key: key(tap),
            layers,
            per_window,
        };
        let json_path = stem.with_extension("json");
        let json_tmp = stem.with_extension(format!("json.tmp{}", std::process::id()));
        std::fs::write(
            &json_tmp,
            serde_json::to_vec_pretty(&meta).expect("serialises"),
        )
        .and_then(|_| std::fs::rename(&json_tmp, &json_path))
        .map_err(io(&json_path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
