//! The experiment's searches, one `## Search` section each, rendered by
//! [`crate::report::search`] beside the trials it collects; CSV `<name>-trials.csv`.

use crate::report::search::{search_csv, search_md, StudyReport};

use super::{CsvFile, ReportSection};

/// The experiment's searches with their trials (not empty).
#[derive(Debug)]
pub struct Searches(pub Vec<StudyReport>);

impl ReportSection for Searches {
    fn markdown(&self, out: &mut String) {
        search_md(out, &self.0);
    }

    fn csv(&self) -> Vec<CsvFile> {
        vec![("-trials".into(), search_csv(&self.0))]
    }
}
