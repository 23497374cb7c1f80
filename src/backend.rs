//! Backend selection: burn's pure-Rust `flex` CPU backend by default, burn's CUDA backend behind
//! the `cuda` cargo feature. Library code is generic over `B: Backend`; only this module and the
//! CLI name concrete backends.

use std::fmt;
use std::str::FromStr;

/// The CPU backend used for inference and as the autodiff inner backend.
pub type CpuInner = burn::backend::Flex;
/// The CPU backend used for training.
pub type Cpu = burn::backend::Autodiff<CpuInner>;

#[cfg(feature = "cuda")]
pub type CudaInner = burn::backend::Cuda;
#[cfg(feature = "cuda")]
pub use burn::backend::cuda::CudaDevice;
#[cfg(feature = "cuda")]
pub type CudaAd = burn::backend::Autodiff<CudaInner>;

/// Keep freed memory in the process instead of returning it to the kernel after every tensor.
///
/// Training allocates and frees tensors of tens to hundreds of megabytes every step; with
/// glibc's defaults each one is a fresh `mmap` whose pages fault in again (measured on the
/// 2-core machine: a teacher forward at batch 300 spent 5.8 s in the kernel, 0.85 s after this).
/// Serving large blocks from the heap and never trimming it keeps those pages. Linux/glibc only.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; called before any threads
    // allocate heavily.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 1 << 30);
    }
}

/// A device a run can execute on: `cpu` or `cuda:<index>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("cpu") {
            return Ok(DeviceSpec::Cpu);
        }
        let idx = s
            .strip_prefix("cuda:")
            .or_else(|| (s == "cuda").then_some("0"));
        match idx.map(str::parse::<usize>) {
            Some(Ok(i)) => Ok(DeviceSpec::Cuda(i)),
            _ => Err(format!(
                "unknown device `{s}`: expected `cpu` or `cuda:<index>` (e.g. cuda:0)"
            )),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

/// Why a device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device {0} requested, but this stkd was built without CUDA support; rebuild with `cargo build --release --features cuda`")]
    NoCudaFeature(DeviceSpec),
    #[error("device {device} requested, but the CUDA driver library could not be loaded ({detail}); is an NVIDIA driver installed?")]
    NoDriver { device: DeviceSpec, detail: String },
    #[error("device {device} requested, but the CUDA driver reports {count} GPU(s){extra}")]
    NoSuchGpu {
        device: DeviceSpec,
        count: i32,
        extra: String,
    },
}

/// Check, before any tensor is created, that `device` can really be used. For CUDA this loads
/// the driver library and asks it how many GPUs there are, so a missing GPU or driver becomes
/// an error naming the device rather than a panic inside the backend.
pub fn check_device(device: DeviceSpec) -> Result<(), DeviceError> {
    match device {
        DeviceSpec::Cpu => Ok(()),
        DeviceSpec::Cuda(i) => {
            // Before the driver starts (`check_cuda` initialises it); child processes inherit.
            if let Some(dir) = gpu_cache_dir() {
                for (k, v) in driver_cache_vars(&dir, |k| std::env::var_os(k)) {
                    std::env::set_var(k, v);
                }
            }
            check_cuda(device, i)?;
            #[cfg(feature = "cuda")]
            gpu_cache::configure();
            Ok(())
        }
    }
}

/// Where compiled GPU kernels are kept between processes: `$STKD_GPU_CACHE`, else
/// `$XDG_CACHE_HOME/stkd/gpu`, else `~/.cache/stkd/gpu`. It holds `cubecl/` (CubeCL's PTX and
/// autotune caches) and `driver/` (the CUDA driver's PTX → machine code cache).
///
/// burn's CUDA backend compiles every kernel when it first runs, and the driver compiles that
/// PTX again for the GPU; on an H100 that took minutes for one STGCN training step
/// (BENCHMARKS.md). With both caches on disk every later process (each run of a sweep, a
/// resumed sweep) loads what an earlier one compiled.
pub fn gpu_cache_dir() -> Option<std::path::PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = env("STKD_GPU_CACHE") {
        return Some(dir.into());
    }
    let base = env("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".cache")))?;
    Some(base.join("stkd").join("gpu"))
}

/// The CUDA driver's own cache of machine code compiled from PTX: off the default 256 MiB and
/// per-user folder, into `<cache>/driver` at the driver's largest size (4 GiB), so a sweep's
/// processes find what the first one compiled. Settings already in the environment win.
/// Returns the variables to set (the driver reads them when it starts: set them before).
pub fn driver_cache_vars(
    cache: &std::path::Path,
    current: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Vec<(&'static str, std::ffi::OsString)> {
    let wanted = [
        ("CUDA_CACHE_PATH", cache.join("driver").into_os_string()),
        ("CUDA_CACHE_MAXSIZE", "4294967296".into()),
    ];
    wanted
        .into_iter()
        .filter(|(k, _)| current(k).is_none_or(|v| v.is_empty()))
        .collect()
}

/// Files in the kernel caches under [`gpu_cache_dir`] (compiled kernels and tuning results):
/// how much a process compiled is the difference before and after it.
pub fn gpu_cache_files() -> usize {
    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => count(&e.path()),
                    Ok(_) => 1,
                    Err(_) => 0,
                })
                .sum()
        })
    }
    gpu_cache_dir().map_or(0, |d| count(&d))
}

#[cfg(feature = "cuda")]
mod gpu_cache {
    use burn::cubecl::config::{cache::CacheConfig, CubeClRuntimeConfig, RuntimeConfig};

    /// Point CubeCL's kernel (PTX) cache, off by default, and its autotune cache at
    /// [`super::gpu_cache_dir`], unless a `cubecl.toml` / `CUBECL_*` setting chose otherwise.
    /// Runs once, before the first device is created (CubeCL reads its configuration once).
    pub fn configure() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let Some(dir) = super::gpu_cache_dir() else {
                return;
            };
            let dir = dir.join("cubecl");
            let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
            if config.compilation.cache.is_none() {
                config.compilation.cache = Some(CacheConfig::File(dir.clone()));
            }
            if matches!(config.autotune.cache, CacheConfig::Target) {
                config.autotune.cache = CacheConfig::File(dir);
            }
            CubeClRuntimeConfig::set(config);
        });
    }
}

#[cfg(not(feature = "cuda"))]
fn check_cuda(device: DeviceSpec, _index: usize) -> Result<(), DeviceError> {
    Err(DeviceError::NoCudaFeature(device))
}

#[cfg(feature = "cuda")]
fn check_cuda(device: DeviceSpec, index: usize) -> Result<(), DeviceError> {
    let count =
        cuda_probe::device_count().map_err(|detail| DeviceError::NoDriver { device, detail })?;
    if (index as i32) < count {
        Ok(())
    } else {
        Err(DeviceError::NoSuchGpu {
            device,
            count,
            extra: if count > 0 {
                format!(" (valid: cuda:0 .. cuda:{})", count - 1)
            } else {
                String::new()
            },
        })
    }
}

#[cfg(feature = "cuda")]
mod cuda_probe {
    use std::ffi::c_int;

    type CuInit = unsafe extern "C" fn(u32) -> c_int;
    type CuDeviceGetCount = unsafe extern "C" fn(*mut c_int) -> c_int;

    /// Number of CUDA devices the driver sees (`cuInit` + `cuDeviceGetCount`).
    pub fn device_count() -> Result<i32, String> {
        // SAFETY: loading the CUDA driver runs no initialisation code of ours; the two symbols
        // are called with the signatures the CUDA driver API documents.
        unsafe {
            let lib = libloading::Library::new("libcuda.so.1")
                .or_else(|_| libloading::Library::new("libcuda.so"))
                .map_err(|e| e.to_string())?;
            let missing =
                |e: libloading::Error| format!("libcuda lacks cuInit/cuDeviceGetCount: {e}");
            let init: libloading::Symbol<CuInit> = lib.get(b"cuInit\0").map_err(missing)?;
            let count: libloading::Symbol<CuDeviceGetCount> =
                lib.get(b"cuDeviceGetCount\0").map_err(missing)?;
            let rc = init(0);
            if rc != 0 {
                return Err(format!("cuInit failed with CUDA error {rc}"));
            }
            let mut n: c_int = 0;
            let rc = count(&mut n);
            if rc != 0 {
                return Err(format!("cuDeviceGetCount failed with CUDA error {rc}"));
            }
            // The driver stays loaded: burn's CUDA runtime uses it next.
            std::mem::forget(lib);
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_rejects_garbage() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        let e = "gpu0".parse::<DeviceSpec>().unwrap_err();
        assert!(e.contains("cpu") && e.contains("cuda:<index>"), "{e}");
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn driver_cache_goes_under_the_cache_folder_unless_already_set() {
        let dir = std::path::Path::new("cache");
        let vars = driver_cache_vars(dir, |_| None);
        assert_eq!(
            vars,
            vec![
                ("CUDA_CACHE_PATH", dir.join("driver").into_os_string()),
                ("CUDA_CACHE_MAXSIZE", "4294967296".into()),
            ]
        );
        // A user's own setting stays; an empty one counts as unset.
        let vars = driver_cache_vars(dir, |k| match k {
            "CUDA_CACHE_PATH" => Some("/elsewhere".into()),
            _ => Some("".into()),
        });
        assert_eq!(vars.len(), 1);
        assert_eq!(vars[0].0, "CUDA_CACHE_MAXSIZE");
    }

    #[test]
    fn cuda_request_without_gpu_is_a_clear_error() {
        // CI has neither the feature's driver nor a GPU; either way this must be an Err, not a
        // panic. (On a GPU machine built with `cuda`, index 999 still fails.)
        let e = check_device(DeviceSpec::Cuda(999)).unwrap_err().to_string();
        assert!(e.contains("cuda:999"), "{e}");
        assert!(check_device(DeviceSpec::Cpu).is_ok());
    }
}

/// Runs `$body` with `$B` bound to the autodiff backend of `$device` (a [`DeviceSpec`]) and
/// `$dev` to its device: the one place a device becomes a backend type. A CUDA device without
/// the `cuda` feature is unreachable after [`check_device`].
#[macro_export]
macro_rules! with_backend {
    ($device:expr, $B:ident, $dev:ident => $body:expr) => {{
        match $device {
            $crate::backend::DeviceSpec::Cpu => {
                type $B = $crate::backend::Cpu;
                let $dev = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::DeviceSpec::Cuda(i) => {
                type $B = $crate::backend::CudaAd;
                let $dev = $crate::backend::CudaDevice::new(i);
                $body
            }
            #[cfg(not(feature = "cuda"))]
            $crate::backend::DeviceSpec::Cuda(_) => {
                unreachable!("check_device rejects CUDA without the feature")
            }
        }
    }};
}
