//! The `stkd` command line: a thin layer that turns arguments into library calls and shows
//! progress.

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;
use tabled::{Table, Tabled};

use stkd::backend::check_device;
use stkd::with_backend;

mod cli;
use cli::bench::{bench_cmd, device_check_cmd, BenchArgs, DeviceCheckArgs};
use cli::info::{data_info, model_summary, DataCmd, ModelCmd};
use cli::retime::{retime_cmd, RetimeArgs};
use cli::run::{prune_cmd, train_cmd, PruneArgs, TrainArgs};
use cli::store::{store_cmd, StoreCmd};
use cli::sweep::{
    report_cmd, run_one_cmd, status_cmd, sweep_cmd, warm_up_cmd, ReportArgs, RunOneArgs,
    StatusArgs, SweepArgs, WarmUpArgs,
};

#[derive(Parser)]
#[command(
    name = "stkd",
    version,
    about = "Knowledge distillation and pruning of STGCN for traffic prediction"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Inspect a dataset.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// Inspect a network.
    Model {
        #[command(subcommand)]
        cmd: ModelCmd,
    },
    /// Train one network on one dataset (an ad-hoc run).
    Train(TrainArgs),
    /// Prune a trained network (Taylor or KDIS importance, Algorithm 1), fine-tune and compact it.
    Prune(PruneArgs),
    /// Time one training step and one forward step for teacher, base and student (N = 228).
    Bench(BenchArgs),
    /// Check that a device computes what the CPU computes: teacher inference, 9-step prediction,
    /// STCD loss, student gradients and three Adam steps on the same weights and inputs.
    DeviceCheck(DeviceCheckArgs),
    /// Run an experiment file: validate, plan, and execute every run not yet done.
    Sweep(SweepArgs),
    /// Show the runs of a store (or of one experiment file) and their state.
    Status(StatusArgs),
    /// Write the paper's tables (Markdown/CSV, beside the paper's values) and plots for an
    /// experiment file from the store.
    Report(ReportArgs),
    /// Time the finished runs' networks again, alone (no other run computing): median and
    /// interquartile range per network shape, written into each run's record (`latency.json`),
    /// where the reports read them.
    Retime(RetimeArgs),
    /// Results as files to commit: export runs' records beside the store, import them into it.
    Store {
        #[command(subcommand)]
        cmd: StoreCmd,
    },
    /// Execute one claimed run of a store (started by `sweep`; one process per run).
    #[command(hide = true)]
    RunOne(RunOneArgs),
    /// Compile the kernels of the kinds of run given on stdin (started by `sweep`).
    #[command(hide = true)]
    WarmUp(WarmUpArgs),
}

/// Ends the process with this exit status; what there was to say is already printed (a failed
/// validation: 2; failed runs: 1; a stopping signal: 128 + its number; a regression: 3).
#[derive(Debug)]
struct Exit(i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

fn main() -> std::process::ExitCode {
    stkd::backend::tune_allocator();
    restore_sigpipe();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(code)) => std::process::ExitCode::from((*code).clamp(0, 255) as u8),
            None => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

/// Die quietly on a closed pipe (`stkd status | head`) like other command-line tools, instead of
/// panicking on the failed write.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: resets one signal's disposition to the default before any threads start.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Data {
            cmd:
                DataCmd::Info {
                    dataset,
                    data,
                    json,
                },
        } => data_info(dataset, &data, json),
        Cmd::Model {
            cmd:
                ModelCmd::Summary {
                    dataset,
                    model,
                    json,
                },
        } => model_summary(dataset, model, json),
        Cmd::Train(args) => {
            check_device(args.run.device)?;
            with_backend!(args.run.device, B, dev => train_cmd::<B>(&args, dev))
        }
        Cmd::Prune(args) => {
            check_device(args.run.device)?;
            with_backend!(args.run.device, B, dev => prune_cmd::<B>(&args, dev))
        }
        Cmd::Bench(args) => {
            check_device(args.device)?;
            with_backend!(args.device, B, dev => bench_cmd::<B>(&args, dev))
        }
        Cmd::DeviceCheck(args) => {
            check_device(args.device)?;
            with_backend!(args.device, B, dev => device_check_cmd::<B>(&args, dev))
        }
        Cmd::Sweep(args) => sweep_cmd(&args),
        Cmd::Status(args) => status_cmd(&args),
        Cmd::Report(args) => report_cmd(&args),
        Cmd::Retime(args) => {
            check_device(args.device)?;
            with_backend!(args.device, B, dev => retime_cmd::<B>(&args, dev))
        }
        Cmd::Store { cmd } => store_cmd(&cmd),
        Cmd::RunOne(args) => run_one_cmd(&args),
        Cmd::WarmUp(args) => {
            check_device(args.device)?;
            with_backend!(args.device, B, dev => warm_up_cmd::<B>(dev))
        }
    }
}

/// A table for the terminal: one header rule, no rules between rows (a plan of 44 runs stays
/// 48 lines).
fn terminal_table<T: Tabled>(rows: impl IntoIterator<Item = T>) -> String {
    Table::new(rows)
        .with(tabled::settings::Style::psql())
        .to_string()
}

fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
