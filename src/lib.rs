//! stkd: knowledge distillation and pruning of STGCN for traffic prediction, as a declarative
//! experiment-sweep runner (Izadi, Safayani, Mirzaei).
//!
//! Modules follow the data flow of a sweep: [`experiment`] (experiment files: YAML → validated
//! runs) → [`plan`] (run graph keyed by content hash) → [`sweep`] (one call: executor, warm-up,
//! timing phase) → [`schedule`] (device slots, child processes, resume) → [`exec`] (one run:
//! [`data`] → [`model`] → [`train`] with the [`distill`] losses) → [`store`]
//! (SQLite). [`backend`] picks the burn backend and device.

pub mod archive;
pub mod backend;
pub mod bench;
pub mod data;
pub mod digest;
pub mod distill;
pub mod divergence;
pub mod exec;
pub mod experiment;
pub mod kernels;
pub mod latency;
pub mod model;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod report;
pub mod resume;
pub mod rng;
pub mod schedule;
pub mod search;
pub mod status;
pub mod store;
pub mod sweep;
pub mod train;
pub mod warmup;
