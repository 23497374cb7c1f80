//! Table 1's claims (its §4.4 text) judged, rendered by [`crate::report::table1_claims`] beside
//! the judgement; CSV `<name>-claims.csv`.

use crate::report::table1_claims::{claims_csv, claims_md, Table1Claim};

use super::{CsvFile, ReportSection};

/// Table 1's judged claims (not empty).
#[derive(Debug)]
pub struct Table1Claims {
    pub claims: Vec<Table1Claim>,
    /// `-claims`, or `-table1-claims` beside a [`super::verdicts::Claims`] section, which
    /// writes `-claims`.
    pub csv_suffix: &'static str,
}

impl ReportSection for Table1Claims {
    fn markdown(&self, out: &mut String) {
        claims_md(out, &self.claims);
    }

    fn csv(&self) -> Vec<CsvFile> {
        vec![(self.csv_suffix.into(), claims_csv(&self.claims))]
    }
}
