//! The report's assembly: which sections an experiment's report holds, in which order
//! ([`assemble`], [`build_report`]), and the [`Report`] they make: an ordered list of
//! [`ReportSection`]s, rendered by [`render_markdown`] and [`render_csv`]. The sections' data
//! are built by their own modules ([`super::tables`], [`super::verdicts`], [`super::pareto`],
//! [`super::table1_claims`], [`super::search`]), which do not import each other's results:
//! only this module puts them together.

use super::collect::ReportData;
use super::pareto::{pareto, Pareto, DEFAULT_HORIZON};
use super::runs::paper_table;
use super::search::StudyReport;
use super::sections::attention::Attention;
use super::sections::figures::Figures;
use super::sections::header::{Header, SearchLine};
use super::sections::metrics::Metrics;
use super::sections::networks::Networks;
use super::sections::pareto::ParetoFront;
use super::sections::runs::RunLedger;
use super::sections::search::Searches;
use super::sections::table1_claims::Table1Claims;
use super::sections::verdicts::Claims;
use super::sections::{CsvFile, ReportSection};
use super::table1_claims::claims;
use super::tables::{attention_table, meta, metrics_table, networks_table, runs_table, Figure};
use super::verdicts::verdicts;

/// Everything a report shows, ready to render: its sections in the Markdown's order.
#[derive(Debug, Default)]
pub struct Report {
    pub sections: Vec<Box<dyn ReportSection>>,
}

impl Report {
    /// Appends a section (rendered after the others, in the Markdown and in the CSV files).
    pub fn push(&mut self, section: impl ReportSection + 'static) {
        self.sections.push(Box::new(section));
    }
}

/// What a report shows besides what the store's runs give: made by steps with I/O or options
/// of their own ([`super::write_plan_reports`]).
#[derive(Debug, Default)]
pub struct Extras {
    /// Error against size and latency (`None`: no trade-off), at the horizon asked for.
    pub pareto: Option<Pareto>,
    /// The experiment's searches with their trials (empty without a `search:` block).
    pub search: Vec<StudyReport>,
    /// The SVG figures' links (none for CSV-only reports and in pure rendering tests).
    pub figures: Vec<Figure>,
}

/// [`assemble`] with the Pareto section at the default horizon, no searches and no figures.
pub fn build_report(data: &ReportData, version: &str) -> Report {
    let extras = Extras {
        pareto: pareto(data, DEFAULT_HORIZON),
        ..Extras::default()
    };
    assemble(data, version, extras)
}

/// The sections of a report, in order: the header; the paper table named by the experiment
/// (Table 1 and Table 3 with a metrics table of the same runs beside), or a generic metrics
/// table; the Pareto front, the searches, the figures; always the run ledger; then the paper's
/// claims on its table, judged.
pub fn assemble(data: &ReportData, version: &str, extras: Extras) -> Report {
    let table = paper_table(&data.name);
    let mut r = Report::default();
    r.push(Header {
        name: data.name.clone(),
        description: data.description.clone(),
        file: data.file.clone(),
        table,
        meta: meta(data, version),
        searches: extras.search.iter().map(SearchLine::of).collect(),
    });
    match table {
        Some(1) => r.push(Networks(networks_table(data))),
        Some(3) => r.push(Attention(attention_table(data))),
        _ => {}
    }
    r.push(Metrics {
        table: metrics_table(data, table.filter(|t| !matches!(t, 1 | 3))),
        report_table: table,
    });
    if let Some(p) = extras.pareto {
        r.push(ParetoFront(p));
    }
    if !extras.search.is_empty() {
        r.push(Searches(extras.search));
    }
    if !extras.figures.is_empty() {
        r.push(Figures(extras.figures));
    }
    r.push(RunLedger(runs_table(data, table)));
    let verdicts = table.map_or_else(Vec::new, |t| verdicts(data, t));
    // Table 1 has no claims of the other kind; should it get some, they keep the name.
    let csv_suffix = if verdicts.is_empty() {
        "-claims"
    } else {
        "-table1-claims"
    };
    if !verdicts.is_empty() {
        r.push(Claims {
            verdicts,
            one_teacher: one_teacher_per_dataset(data),
        });
    }
    let table1_claims = match table {
        Some(1) => claims(data),
        _ => Vec::new(),
    };
    if !table1_claims.is_empty() {
        r.push(Table1Claims {
            claims: table1_claims,
            csv_suffix,
        });
    }
    r
}

/// Whether every distilled run of each data set learns from the same teacher run (and some do).
fn one_teacher_per_dataset(data: &ReportData) -> bool {
    let mut teachers = std::collections::BTreeMap::new();
    for r in &data.runs {
        if let Some(t) = &r.config.teacher {
            teachers
                .entry(r.config.dataset)
                .or_insert_with(std::collections::BTreeSet::new)
                .insert(t.clone());
        }
    }
    !teachers.is_empty() && teachers.values().all(|t| t.len() == 1)
}

/// The whole Markdown report: its sections' Markdown, in order.
pub fn render_markdown(r: &Report) -> String {
    let mut s = String::new();
    for section in &r.sections {
        section.markdown(&mut s);
    }
    s
}

/// Every CSV file of a report, its sections' in order: `(file name suffix, text)`, written as
/// `<name><suffix>.csv` (the metrics table's suffix is empty).
pub fn render_csv(r: &Report) -> Vec<CsvFile> {
    r.sections.iter().flat_map(|s| s.csv()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_teacher_per_dataset_only_when_every_distilled_run_shares_it() {
        let runs = |teacher_seeds: &str| {
            format!(
                "name: table4\ndatasets: [pemsd7, pemsd8]\ndefaults: {{seeds: [1, 2]}}\nruns:\n  \
                 - {{label: t, model: teacher, seeds: {teacher_seeds}}}\n  \
                 - {{label: s, model: student, teacher: t, loss: rd-l2, beta: 0.5}}\n"
            )
        };
        // One teacher a data set (two in all): one teacher per data set.
        assert!(one_teacher_per_dataset(&ReportData::planned_for_tests(
            &runs("[1]")
        )));
        // A teacher per seed: students of one data set learn from two teachers.
        assert!(!one_teacher_per_dataset(&ReportData::planned_for_tests(
            &runs("[1, 2]")
        )));
        // No distilled run at all.
        let plain = "name: t\ndatasets: [pemsd7]\nruns:\n  - {label: s, model: student}\n";
        assert!(!one_teacher_per_dataset(&ReportData::planned_for_tests(
            plain
        )));
    }
}
