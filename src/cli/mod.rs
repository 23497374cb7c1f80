//! The subcommands, one module per group; `main.rs` parses and dispatches.

pub(crate) mod bench;
pub(crate) mod info;
pub(crate) mod retime;
pub(crate) mod run;
pub(crate) mod store;
pub(crate) mod sweep;
