//! Reports of an experiment (spec §6): each paper table in the paper's layout, our values beside
//! the paper's, as Markdown and CSV, with SVG figures linked from the Markdown.
//!
//! The flow, one module per concern:
//! - [`collect`]: experiment file → plan → hashes → store rows. Every planned run is kept, with
//!   its state (`done`, `running`, `pending`, `failed`, `skipped`, `not started`).
//! - [`tables`]: which paper table the experiment reproduces (its `name`, `table1` … `table8`;
//!   other names get a generic table), which runs make which row (by loss and model preset),
//!   mean ± sample std over seeds. Pure data, no I/O.
//! - [`paper`]: the paper's values (`paper/*.csv`, embedded).
//! - [`timing`]: which test time a run shows (re-timed alone by `stkd retime`, or recorded
//!   during training: not a measurement) and latency against FLOPs; [`table1_claims`]: Table
//!   1's §4.4 claims judged.
//! - [`runs`]: what every section says about one run (its name in the paper's tables, pruning
//!   settings, hyperparameters, test metrics), so sections need not import each other.
//! - [`verdicts`]: the paper's claims judged; [`pareto`]: error against size and latency;
//!   [`search`]: the experiment's searches (with their Markdown and CSV, as
//!   [`table1_claims`]).
//! - [`sections`]: one type per section of a report (header, paper tables, Pareto front,
//!   searches, figures, run ledger, claims), each rendering its own Markdown and CSV files
//!   ([`sections::ReportSection`]); [`format`]: the number, time and CSV formats they share.
//! - [`assembly`]: [`build_report`] / [`assembly::assemble`], the one place that puts the
//!   sections, in order, into a [`Report`] (a list of sections); [`render_markdown`] and
//!   [`render_csv`] render each section in turn. [`figures`], [`plots`], [`tsne`]: the SVG
//!   figures.
//!
//! Where a new report section goes: one new type, in a module of its own under `sections/`,
//! that holds what it shows (built from [`ReportData`], using [`runs`] for names and metrics,
//! [`stats`] for comparisons, [`format`] for numbers) and implements
//! [`sections::ReportSection`]: `markdown` appends its Markdown, `csv` returns its CSV files
//! (`(suffix, text)`, written as `<name><suffix>.csv`; none by default). Then one line in
//! [`assembly::assemble`], `r.push(MySection { … })`, where it should appear: the Markdown
//! and the CSV files follow the list's order. Nothing else changes; a golden in
//! `tests/golden/` shows the result, and the test `a_new_section_is_one_type_and_one_line`
//! below walks through it.
//!
//! Output, for an experiment named `table4` in `out_dir`: `table4.md`, `table4.csv` (metrics,
//! long format), `table4-runs.csv` (every run), `table4-networks.csv` / `table4-attention.csv`
//! for Tables 1 / 3, and `table4/*.svg`. The same store gives the same bytes: nothing depends on
//! the clock, the machine's locale or hash-map order; the only times are the runs' own finish
//! times. The header names the commits of the code that computed the runs (from their outcomes),
//! not the commit of the code that wrote the report: a new commit alone changes no report.

pub mod against;
pub mod assembly;
pub mod collect;
pub mod diff;
pub mod estimate;
pub mod figures;
pub mod format;
pub mod paper;
pub mod pareto;
pub mod plots;
pub mod runs;
pub mod search;
pub mod sections;
pub mod stats;
pub mod summary;
pub mod table1_claims;
pub mod tables;
pub mod timing;
pub mod tsne;
pub mod verdicts;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::experiment::{Experiment, SpecErrors};
use crate::plan::Plan;
use crate::store::{Store, StoreError};

pub use assembly::{build_report, render_csv, render_markdown, Report};
pub use collect::{collect, ReportData, RunEntry, RunState};

/// The `stkd` version printed in reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// An output format of `stkd report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// `<name>.md` and its figures.
    Markdown,
    /// `<name>.csv` and the other tables' CSV files.
    Csv,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Markdown, Format::Csv];
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Markdown => "md",
            Format::Csv => "csv",
        })
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md" | "markdown" => Ok(Format::Markdown),
            "csv" => Ok(Format::Csv),
            _ => Err(format!("unknown report format `{s}`: expected md or csv")),
        }
    }
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Spec(SpecErrors),
    #[error(transparent)]
    Data(#[from] crate::plan::PlanDataError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {cause}", .path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{0}")]
    Plot(String),
    #[error("--against {reference}: {detail}")]
    Against { reference: String, detail: String },
}

/// How [`write_plan_reports`] writes.
#[derive(Debug, Clone)]
pub struct Options {
    pub formats: Vec<Format>,
    /// Load checkpoints for the prediction and t-SNE figures.
    pub model_figures: bool,
    /// Minutes ahead of the MAE in the Pareto section (15, 30 or 45).
    pub pareto_horizon: u32,
}

/// A file-name-safe form of an experiment name.
fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("report{s}")
    } else {
        s
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|cause| ReportError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// `stkd report FILE`: load and plan the experiment file (data checksums from `data_dir`, as a
/// sweep computes them), then [`write_plan_reports`]. Returns the
/// files written.
pub fn write_reports(
    experiment_file: &Path,
    store: &Path,
    data_dir: &Path,
    out_dir: &Path,
    formats: &[Format],
    pareto_horizon: u32,
) -> Result<Vec<PathBuf>, ReportError> {
    let exp = crate::experiment::load(experiment_file).map_err(ReportError::Spec)?;
    let plan = crate::plan::plan_in(&exp, data_dir)?;
    let opts = Options {
        formats: formats.to_vec(),
        model_figures: true,
        pareto_horizon,
    };
    write_plan_reports(&exp, &plan, store, data_dir, out_dir, &opts)
}

/// `stkd report FILE --against REF`: the experiment's runs now (the store's finished runs and
/// the records beside it) against REF: a git revision's committed records (and its version of
/// the experiment file), a folder of records or another store (both planned with today's file).
pub fn diff_against(
    experiment_file: &Path,
    store: &Path,
    data_dir: &Path,
    reference: &str,
) -> Result<diff::ReportDiff, ReportError> {
    use against::{Reference, ResultSet};
    let exp = crate::experiment::load(experiment_file).map_err(ReportError::Spec)?;
    let plan = crate::plan::plan_in(&exp, data_dir)?;
    let records = crate::archive::beside(store, crate::archive::RECORDS);
    let mut now = match Store::open_read_only(store)? {
        Some(st) => ResultSet::from_store(&st)?,
        None => ResultSet::default(),
    };
    if records.is_dir() {
        now.extend_missing(ResultSet::from_records(&records)?);
    }
    let now_label = format!("{} + {}", store.display(), records.display());
    let reference_kind = Reference::parse(reference);
    let (before, before_plan, before_label) = match &reference_kind {
        Reference::Git(rev) => {
            let (set, commit) = ResultSet::from_git(rev, store)?;
            let folder = experiment_file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = experiment_file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // The experiment as it was at REF; a file REF lacks plans nothing (all runs added).
            let before_plan = match against::git(folder, &["show", &format!("{commit}:./{name}")]) {
                Ok(text) => {
                    let old = crate::experiment::parse_experiment(&text, experiment_file)
                        .map_err(ReportError::Spec)?;
                    crate::plan::plan_in(&old, data_dir)?
                }
                Err(_) => Plan {
                    name: exp.name.clone(),
                    jobs: Vec::new(),
                    studies: Vec::new(),
                },
            };
            (set, before_plan, reference_kind.describe(&commit))
        }
        Reference::Records(dir) => (
            ResultSet::from_records(dir)?,
            plan.clone(),
            reference_kind.describe(""),
        ),
        Reference::Store(path) => {
            let set = match Store::open_read_only(path)? {
                Some(st) => ResultSet::from_store(&st)?,
                None => ResultSet::default(),
            };
            (set, plan.clone(), reference_kind.describe(""))
        }
    };
    let file = experiment_file.display().to_string();
    let (now_data, now_commits) = now.join(&plan, &exp.name, &exp.description, &file);
    let (before_data, before_commits) =
        before.join(&before_plan, &exp.name, &exp.description, &file);
    Ok(diff::diff(
        &exp.name,
        &diff::Side {
            label: &now_label,
            data: &now_data,
            commits: &now_commits,
        },
        &diff::Side {
            label: &before_label,
            data: &before_data,
            commits: &before_commits,
        },
    ))
}

/// Writes the reports of a planned experiment from `store` (which need not exist: every run is
/// then `not started`) into `out_dir`. Figures (with Markdown only) go to `out_dir/<name>/`;
/// SVG files left there by an earlier report and not made now are removed.
pub fn write_plan_reports(
    exp: &Experiment,
    plan: &Plan,
    store: &Path,
    data_dir: &Path,
    out_dir: &Path,
    opts: &Options,
) -> Result<Vec<PathBuf>, ReportError> {
    // Read-only: a report never creates, migrates or writes the store.
    let st = Store::open_read_only(store)?;
    let data = collect(exp, plan, st.as_ref())?;
    let studies = search::collect_search(plan, st.as_ref())?;
    drop(st);
    let table = runs::paper_table(&data.name);
    let pareto = pareto::pareto(&data, opts.pareto_horizon);
    std::fs::create_dir_all(out_dir).map_err(|cause| ReportError::Io {
        path: out_dir.to_path_buf(),
        cause,
    })?;
    let stem = file_stem(&data.name);
    let markdown = opts.formats.contains(&Format::Markdown);
    let (mut figures, mut svgs) = (Vec::new(), Vec::new());
    if markdown {
        let store_dir = store
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let figs = figures::make_figures(&figures::FigureInputs {
            data: &data,
            table,
            store_dir,
            data_dir,
            out_dir,
            plots: &stem,
            model_figures: opts.model_figures,
        })?;
        (figures, svgs) = (figs.figures, figs.files);
        if let Some(p) = &pareto {
            let (figure, files) = figures::pareto_figure(p, &data, table, out_dir, &stem)?;
            figures.push(figure);
            svgs.extend(files);
        }
        if studies.iter().any(|st| !st.trials.is_empty()) {
            let (figure, files) = figures::search_figure(&studies, out_dir, &stem)?;
            figures.push(figure);
            svgs.extend(files);
        }
        remove_stale_svgs(&out_dir.join(&stem), &svgs)?;
    }
    let extras = assembly::Extras {
        pareto,
        search: studies,
        figures,
    };
    let report = assembly::assemble(&data, VERSION, extras);
    let mut files = Vec::new();
    if markdown {
        let md = out_dir.join(format!("{stem}.md"));
        write_file(&md, &render_markdown(&report))?;
        files.push(md);
        files.extend(svgs);
    }
    if opts.formats.contains(&Format::Csv) {
        for (suffix, text) in render_csv(&report) {
            let path = out_dir.join(format!("{stem}{suffix}.csv"));
            write_file(&path, &text)?;
            files.push(path);
        }
    }
    Ok(files)
}

fn remove_stale_svgs(dir: &Path, keep: &[PathBuf]) -> Result<(), ReportError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "svg") && !keep.contains(&p) {
            std::fs::remove_file(&p).map_err(|cause| ReportError::Io { path: p, cause })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!("md".parse::<Format>().unwrap(), Format::Markdown);
        assert_eq!("CSV".parse::<Format>().unwrap(), Format::Csv);
        assert!("pdf".parse::<Format>().unwrap_err().contains("md or csv"));
    }

    #[test]
    fn file_names() {
        assert_eq!(file_stem("table4"), "table4");
        assert_eq!(file_stem("a b/c"), "a-b-c");
        assert_eq!(file_stem(""), "report");
    }

    /// The walk-through of the module docs: a section is one type implementing
    /// [`sections::ReportSection`], and one line puts it into a report, which then shows it in
    /// the Markdown and writes its CSV file.
    #[test]
    fn a_new_section_is_one_type_and_one_line() {
        use sections::{CsvFile, ReportSection};

        /// How many runs the experiment plans.
        #[derive(Debug)]
        struct RunCount(usize);

        impl ReportSection for RunCount {
            fn markdown(&self, out: &mut String) {
                out.push_str(&format!("## Run count\n\nPlanned runs: {}.\n\n", self.0));
            }

            fn csv(&self) -> Vec<CsvFile> {
                vec![("-count".into(), format!("runs\n{}\n", self.0))]
            }
        }

        let data = ReportData::planned_for_tests(
            "name: table4\ndatasets: [pemsd7]\nruns:\n  - {label: t, model: teacher}\n",
        );
        let mut r = build_report(&data, "0.0.0");
        let (md, csv) = (render_markdown(&r), render_csv(&r));
        // The one line `assembly::assemble` would get.
        r.push(RunCount(data.runs.len()));

        assert_eq!(
            render_markdown(&r),
            format!("{md}## Run count\n\nPlanned runs: 1.\n\n")
        );
        let mut with = csv.clone();
        with.push(("-count".into(), "runs\n1\n".into()));
        assert_eq!(render_csv(&r), with);
        assert!(csv.iter().any(|(suffix, _)| suffix == "-runs"), "{csv:?}");
    }
}
