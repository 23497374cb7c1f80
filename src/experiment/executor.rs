//! The `executor:` block of an experiment file: where a sweep runs the experiment's runs unless
//! the command line says otherwise (`--executor`, `--max-jobs`, `--slurm-*` override each
//! setting; `--slurm-arg` adds to `sbatch_args`).
//!
//! ```yaml
//! executor:
//!   kind: slurm              # local (default) | slurm
//!   max_jobs: 16             # jobs in flight at once
//!   partition: gpu
//!   time: "4:00:00"          # Slurm's forms: minutes, [days-]hours:minutes:seconds, …
//!   cpus: 4                  # --cpus-per-task
//!   mem: 16G                 # --mem
//!   gres: "gpu:1"
//!   account: traffic
//!   qos: normal
//!   sbatch_args: ["--constraint=a100"]
//!   pending_limit: 600       # seconds a job may stay pending for a reason other than its turn
//!   retries: 2               # infrastructure faults of a run retried from its checkpoint
//! ```
//!
//! Where a run executes does not change what it computes: the block is in no run's hash.

use super::parse::unique_keys;
use super::schema::Ctx;
use super::yaml::{Node, Scalar};

/// Where runs execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutorKind {
    /// Child processes of the sweep on this machine's device slots.
    #[default]
    Local,
    /// One Slurm batch job per run.
    Slurm,
}

impl ExecutorKind {
    pub const NAMES: &'static [&'static str] = &["local", "slurm"];

    pub fn parse(s: &str) -> Option<ExecutorKind> {
        match s {
            "local" => Some(ExecutorKind::Local),
            "slurm" => Some(ExecutorKind::Slurm),
            _ => None,
        }
    }
}

/// Resources and options of every Slurm job (`sbatch` flags; `None`: the cluster's default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// `--time`, e.g. `2:00:00`.
    pub time: Option<String>,
    pub cpus: Option<usize>,
    /// `--mem`, e.g. `8G`.
    pub mem: Option<String>,
    /// `--gres`, e.g. `gpu:1`.
    pub gres: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Further `sbatch` arguments, passed as given.
    pub extra: Vec<String>,
    /// Seconds a job may stay pending for a reason other than waiting its turn (a request no
    /// node can meet, a partition's limit, nodes down) before it is cancelled and its run
    /// failed with Slurm's reason (default [`DEFAULT_PENDING_LIMIT_S`]).
    pub pending_limit_s: Option<u64>,
}

/// Default of [`SlurmOptions::pending_limit_s`]: ten minutes.
pub const DEFAULT_PENDING_LIMIT_S: u64 = 600;

/// The `executor:` block, or the command line's settings (`None`: not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutorSpec {
    pub kind: Option<ExecutorKind>,
    pub max_jobs: Option<usize>,
    pub slurm: SlurmOptions,
    /// Infrastructure faults of a run (its process killed by a signal, its heartbeat lost, its
    /// node failed) retried from its checkpoint before it fails (`--retries`; default
    /// [`crate::store::DEFAULT_RETRIES`]).
    pub retries: Option<u32>,
}

impl ExecutorSpec {
    /// These settings with every one that `over` gives replacing ours (`over`'s extra `sbatch`
    /// arguments come after ours, so that `sbatch` takes them when both set a flag).
    pub fn overridden_by(&self, over: &ExecutorSpec) -> ExecutorSpec {
        let (a, b) = (&self.slurm, &over.slurm);
        let pick = |x: &Option<String>, y: &Option<String>| y.clone().or_else(|| x.clone());
        ExecutorSpec {
            kind: over.kind.or(self.kind),
            max_jobs: over.max_jobs.or(self.max_jobs),
            retries: over.retries.or(self.retries),
            slurm: SlurmOptions {
                partition: pick(&a.partition, &b.partition),
                time: pick(&a.time, &b.time),
                cpus: b.cpus.or(a.cpus),
                mem: pick(&a.mem, &b.mem),
                gres: pick(&a.gres, &b.gres),
                account: pick(&a.account, &b.account),
                qos: pick(&a.qos, &b.qos),
                extra: a.extra.iter().chain(&b.extra).cloned().collect(),
                pending_limit_s: b.pending_limit_s.or(a.pending_limit_s),
            },
        }
    }
}

pub(super) const EXECUTOR_KEYS: &[&str] = &[
    "kind",
    "max_jobs",
    "partition",
    "time",
    "cpus",
    "mem",
    "gres",
    "account",
    "qos",
    "sbatch_args",
    "retries",
    "pending_limit",
];

/// Whether `s` is a time limit in one of Slurm's forms: `minutes`, `minutes:seconds`,
/// `hours:minutes:seconds`, `days-hours`, `days-hours:minutes`, `days-hours:minutes:seconds`
/// (or `infinite`/`unlimited`).
pub fn is_slurm_time(s: &str) -> bool {
    if s == "infinite" || s == "unlimited" {
        return true;
    }
    let num = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if !parts.iter().all(|p| num(p)) || days.is_some_and(|d| !num(d)) {
        return false;
    }
    (1..=3).contains(&parts.len())
}

/// Whether `s` is a memory size as `sbatch --mem` takes it: a whole number with an optional
/// unit K, M, G or T.
pub fn is_slurm_mem(s: &str) -> bool {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    s.len() - digits.len() <= 1 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Parse the `executor:` block (every problem into `cx`).
pub(super) fn parse_executor(node: &Node, cx: &mut Ctx) -> ExecutorSpec {
    let mut spec = ExecutorSpec::default();
    let Some(map) = node.as_map() else {
        cx.err(
            node.line,
            "executor",
            format!(
                "expected a mapping with keys {}, got {}",
                EXECUTOR_KEYS.join(", "),
                node.describe()
            ),
        );
        return spec;
    };
    // A text setting: a non-empty string (numbers too, for `time: 90`), checked by `valid`.
    let text = |cx: &mut Ctx, v: &Node, p: &str, what: &str, valid: &dyn Fn(&str) -> bool| {
        let s = match v.as_scalar() {
            Some(Scalar::Str(s)) => Some(s.clone()),
            Some(Scalar::Int(i)) if *i >= 0 => Some(i.to_string()),
            _ => None,
        };
        match s {
            Some(s) if !s.is_empty() && valid(&s) => Some(s),
            _ => {
                cx.err(v.line, p, format!("expected {what}, got {}", v.shown()));
                None
            }
        }
    };
    let any = |_: &str| true;
    for (k, line, v, p) in unique_keys(map, "executor", cx) {
        match k.as_str() {
            "kind" => match v.as_str().and_then(ExecutorKind::parse) {
                Some(kind) => spec.kind = Some(kind),
                None => cx.err(
                    v.line,
                    &p,
                    format!(
                        "expected {}, got {}",
                        ExecutorKind::NAMES.join(" or "),
                        v.shown()
                    ),
                ),
            },
            "max_jobs" | "cpus" => match v.as_i64() {
                Some(n) if n >= 1 => {
                    if k == "cpus" {
                        spec.slurm.cpus = Some(n as usize);
                    } else {
                        spec.max_jobs = Some(n as usize);
                    }
                }
                _ => cx.err(
                    v.line,
                    &p,
                    format!("expected a whole number ≥ 1, got {}", v.shown()),
                ),
            },
            "pending_limit" => match v.as_i64() {
                Some(n) if n >= 1 => spec.slurm.pending_limit_s = Some(n as u64),
                _ => cx.err(
                    v.line,
                    &p,
                    format!(
                        "expected a whole number of seconds ≥ 1 (e.g. 600), got {}",
                        v.shown()
                    ),
                ),
            },
            "retries" => match v.as_i64() {
                Some(n) if (0..=u32::MAX as i64).contains(&n) => spec.retries = Some(n as u32),
                _ => cx.err(
                    v.line,
                    &p,
                    format!("expected a whole number ≥ 0, got {}", v.shown()),
                ),
            },
            "time" => {
                spec.slurm.time = text(
                    cx,
                    v,
                    &p,
                    "a Slurm time limit (minutes, hours:minutes:seconds or \
                     days-hours:minutes:seconds, e.g. \"4:00:00\")",
                    &is_slurm_time,
                )
            }
            "mem" => {
                spec.slurm.mem = text(
                    cx,
                    v,
                    &p,
                    "a memory size (a whole number with an optional unit K, M, G or T, e.g. 16G)",
                    &is_slurm_mem,
                )
            }
            "partition" => spec.slurm.partition = text(cx, v, &p, "a partition name", &any),
            "gres" => spec.slurm.gres = text(cx, v, &p, "a resource (e.g. \"gpu:1\")", &any),
            "account" => spec.slurm.account = text(cx, v, &p, "an account name", &any),
            "qos" => spec.slurm.qos = text(cx, v, &p, "a QoS name", &any),
            "sbatch_args" => match v.as_seq() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        match item.as_str() {
                            Some(a) if a.starts_with('-') => spec.slurm.extra.push(a.to_string()),
                            _ => cx.err(
                                item.line,
                                format!("{p}[{i}]"),
                                format!(
                                    "expected an sbatch option (text starting with -, e.g. \
                                     \"--constraint=a100\"), got {}",
                                    item.shown()
                                ),
                            ),
                        }
                    }
                }
                None => cx.err(
                    v.line,
                    &p,
                    format!("expected a list of sbatch options, got {}", v.shown()),
                ),
            },
            _ => cx.unknown_key(*line, "executor", k, EXECUTOR_KEYS),
        }
    }
    spec
}
