//! stkd: knowledge distillation and pruning of STGCN for traffic prediction, as a declarative
//! experiment-sweep runner (Izadi, Safayani, Mirzaei).
//!
//! Modules follow the data flow of a run: [`data`] → [`model`] → [`train`]; [`backend`] picks
//! the burn backend and device.

pub mod backend;
pub mod bench;
pub mod data;
pub mod model;
pub mod rng;
pub mod train;
