//! `stkd store export` and `stkd store import`: results as committed files (see
//! `stkd::archive`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use stkd::schedule;
use stkd::store::Store;

use super::sweep::{load_experiment, plan_experiment};

#[derive(Subcommand)]
pub(crate) enum StoreCmd {
    /// Write the records of experiment files' runs beside the store (`<store folder>/records/`):
    /// each finished run's outcome and model, each unfinished run's last per-epoch checkpoint.
    /// Commit that folder to keep the results; a sweep on a fresh clone then recomputes nothing
    /// recorded.
    Export(StoreArgs),
    /// Register experiment files in the store and take their runs from the records beside it,
    /// running nothing (a sweep does the same before it schedules).
    Import(StoreArgs),
}

#[derive(Args)]
pub(crate) struct StoreArgs {
    /// Experiment files whose runs to export or import.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    #[arg(long, default_value = stkd::store::DEFAULT_PATH)]
    pub(crate) store: PathBuf,
    #[arg(long, default_value = "data")]
    pub(crate) data_dir: PathBuf,
}

pub(crate) fn store_cmd(cmd: &StoreCmd) -> Result<()> {
    match cmd {
        StoreCmd::Export(args) => {
            let store = Store::open_read_only(&args.store)?
                .with_context(|| format!("no store at {} to export from", args.store.display()))?;
            for file in &args.files {
                let exp = load_experiment(file)?;
                let plan = plan_experiment(&exp, &args.data_dir)?;
                let s = stkd::archive::export(&plan, &store, &args.store)?;
                eprintln!(
                    "{}: {} finished runs, {} failed runs, {} checkpoints of unfinished runs and {} search trials recorded in {} ({:.1} MB copied)",
                    file.display(),
                    s.finished,
                    s.failed,
                    s.in_progress,
                    s.trials,
                    stkd::archive::beside(&args.store, stkd::archive::RECORDS).display(),
                    s.bytes as f64 / 1e6
                );
            }
            Ok(())
        }
        StoreCmd::Import(args) => {
            let mut store = Store::open(&args.store)?;
            for file in &args.files {
                let exp = load_experiment(file)?;
                let plan = plan_experiment(&exp, &args.data_dir)?;
                schedule::register(&mut store, &plan, file, &exp.text)?;
                let s = stkd::archive::import(&plan, &mut store, &args.store)?;
                eprintln!(
                    "{}: {} runs recorded as done from the records, {} as failed, {} search trials as pruned, {} checkpoints restored",
                    file.display(),
                    s.finished.len(),
                    s.failed.len(),
                    s.pruned.len(),
                    s.resumed.len()
                );
            }
            Ok(())
        }
    }
}
