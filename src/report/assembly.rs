//! The report's assembly: which sections an experiment's report holds ([`build_report`]) and
//! the [`Report`] they make, ready to render ([`super::render`]). The sections are built by
//! their own modules ([`super::tables`], [`super::verdicts`], [`super::pareto`],
//! [`super::table1_claims`], [`super::search`]), which do not import each other's results:
//! only this module puts them together.

use super::collect::ReportData;
use super::pareto::{pareto, Pareto, DEFAULT_HORIZON};
use super::runs::paper_table;
use super::search::StudyReport;
use super::table1_claims::{claims, Table1Claim};
use super::tables::{
    attention_table, meta, metrics_table, networks_table, runs_table, Figure, Meta, RunLine,
    Section,
};
use super::verdicts::{verdicts, Verdict};

/// Everything a report shows, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub name: String,
    pub description: String,
    pub file: String,
    /// The paper table the experiment reproduces.
    pub table: Option<u8>,
    pub meta: Meta,
    pub sections: Vec<Section>,
    pub runs: Vec<RunLine>,
    /// Filled by the plotting step (none for CSV-only reports and in pure rendering tests).
    pub figures: Vec<Figure>,
    /// The paper's claims for its table and our verdict on each (empty for other experiments).
    pub verdicts: Vec<Verdict>,
    /// Error against size and latency with the non-dominated runs (`None`: no trade-off).
    pub pareto: Option<Pareto>,
    /// The experiment's searches with their trials (empty without a `search:` block).
    pub search: Vec<StudyReport>,
    /// Table 1's claims (its §4.1 text) with our verdicts (empty for other experiments).
    pub table1_claims: Vec<Table1Claim>,
}

/// The tables of a report: the paper table named by the experiment (Table 1 and Table 3 with a
/// metrics table of the same runs beside), or a generic metrics table; always the run ledger.
pub fn build_report(data: &ReportData, version: &str, commit: &str) -> Report {
    let table = paper_table(&data.name);
    let sections = match table {
        Some(1) => vec![
            Section::Networks(networks_table(data)),
            Section::Metrics(metrics_table(data, None)),
        ],
        Some(3) => vec![
            Section::Attention(attention_table(data)),
            Section::Metrics(metrics_table(data, None)),
        ],
        t => vec![Section::Metrics(metrics_table(data, t))],
    };
    Report {
        name: data.name.clone(),
        description: data.description.clone(),
        file: data.file.clone(),
        table,
        meta: meta(data, version, commit),
        sections,
        runs: runs_table(data, table),
        figures: Vec::new(),
        verdicts: table.map_or_else(Vec::new, |t| verdicts(data, t)),
        pareto: pareto(data, DEFAULT_HORIZON),
        search: Vec::new(),
        table1_claims: match table {
            Some(1) => claims(data),
            _ => Vec::new(),
        },
    }
}
