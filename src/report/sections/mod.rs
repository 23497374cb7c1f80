//! The sections of a report, one type each, in a module of its own: a section holds what it
//! shows and renders it both ways ([`ReportSection`]): Markdown into the report's `.md`, and
//! its CSV files, if any. A [`super::Report`] is an ordered list of sections; see
//! [`super`] for where a new one goes.
//!
//! A section needs nothing from the others: what it prints it holds, put there by
//! [`super::assembly`] (e.g. the metrics table knows the paper table of its report, Table 1's
//! claims the name of their CSV file).

pub mod attention;
pub mod figures;
pub mod header;
pub mod metrics;
pub mod networks;
pub mod pareto;
pub mod runs;
pub mod search;
pub mod table1_claims;
pub mod verdicts;

/// One CSV file of a report: the suffix of its name (`<name><suffix>.csv`; the metrics table's
/// is empty) and its text.
pub type CsvFile = (String, String);

/// A part of a report that renders itself as Markdown and as CSV.
pub trait ReportSection: std::fmt::Debug {
    /// Appends the section's Markdown to the report's (`\n` line ends, ending with a blank line
    /// where more follows).
    fn markdown(&self, out: &mut String);

    /// The section's CSV files (none for a section with no table, such as the header or the
    /// figures).
    fn csv(&self) -> Vec<CsvFile> {
        Vec::new()
    }
}
