//! The top of a report: its title, the experiment's description and the facts about its runs
//! (experiment file, paper table, run counts, search trials, data sets, epochs, seeds, devices,
//! finish times, the commits that computed the runs, `stkd` version). Markdown only.

use std::fmt::Write;

use crate::data::DatasetName;
use crate::report::format::{join, utc};
use crate::report::paper::{self, dataset_title};
use crate::report::search::StudyReport;
use crate::report::tables::Meta;

use super::ReportSection;

/// One search of the experiment, as the header counts its trials.
#[derive(Debug)]
pub struct SearchLine {
    pub label: String,
    pub dataset: DatasetName,
    /// e.g. `6 trials: 4 done, 2 pruned`.
    pub counts: String,
    /// The most epochs planned for a trial.
    pub epochs: usize,
}

impl SearchLine {
    pub fn of(st: &StudyReport) -> Self {
        SearchLine {
            label: st.label.clone(),
            dataset: st.dataset,
            counts: st.counts(),
            epochs: st
                .trials
                .iter()
                .map(|t| t.epochs_planned)
                .max()
                .unwrap_or(0),
        }
    }
}

/// The report's title and facts.
#[derive(Debug)]
pub struct Header {
    pub name: String,
    pub description: String,
    pub file: String,
    /// The paper table the experiment reproduces.
    pub table: Option<u8>,
    pub meta: Meta,
    pub searches: Vec<SearchLine>,
}

impl ReportSection for Header {
    fn markdown(&self, s: &mut String) {
        match self.table {
            Some(t) => {
                let _ = writeln!(
                    s,
                    "# {}: our results beside the paper's Table {t}",
                    self.name
                );
            }
            None => {
                let _ = writeln!(s, "# {}: results", self.name);
            }
        }
        s.push('\n');
        if !self.description.is_empty() {
            let _ = writeln!(s, "{}\n", self.description);
        }
        meta_md(s, self);
    }
}

fn meta_md(s: &mut String, r: &Header) {
    let m: &Meta = &r.meta;
    let _ = writeln!(s, "- **Experiment file:** `{}`", r.file);
    let paper = match r.table {
        Some(t) => format!("{}, Table {t}: {}", paper::CITATION, paper::caption(t)),
        None => format!(
            "{} (no table of its own; paper values by model name)",
            paper::CITATION
        ),
    };
    let _ = writeln!(s, "- **Paper:** {paper}");
    let _ = writeln!(
        s,
        "- **Runs:** {} planned: {}",
        m.counts.total(),
        m.counts.describe()
    );
    for st in &r.searches {
        let _ = writeln!(
            s,
            "- **Search trials** ({} on {}, besides the planned runs): {}; up to {} epochs a trial",
            st.label,
            dataset_title(st.dataset),
            st.counts,
            st.epochs
        );
    }
    let ds: Vec<&str> = m.datasets.iter().map(|d| dataset_title(*d)).collect();
    let _ = writeln!(s, "- **Data sets:** {}", ds.join(", "));
    let mut epochs = join(&m.epochs);
    if m.steps_per_epoch.iter().any(Option::is_some) {
        let caps: Vec<String> = m
            .steps_per_epoch
            .iter()
            .map(|c| c.map_or("all".into(), |n| n.to_string()))
            .collect();
        let _ = write!(epochs, " (minibatches per epoch: {})", caps.join(", "));
    }
    let _ = writeln!(s, "- **Epochs:** {epochs}");
    let _ = writeln!(s, "- **Seeds:** {}", join(&m.seeds));
    let devices = if m.devices.is_empty() {
        "none yet".to_string()
    } else {
        m.devices.join(", ")
    };
    let _ = writeln!(s, "- **Devices:** {devices}");
    let finished = match m.finished {
        None => "none yet".to_string(),
        Some((a, b)) if utc(a) == utc(b) => utc(b),
        Some((a, b)) => format!("{} to {}", utc(a), utc(b)),
    };
    let _ = writeln!(s, "- **Runs finished:** {finished}");
    let commits = if m.code_commits.is_empty() {
        "none yet".to_string()
    } else {
        let each: Vec<String> = m
            .code_commits
            .iter()
            .map(|(c, n)| format!("`{c}` ({n} {})", if *n == 1 { "run" } else { "runs" }))
            .collect();
        each.join(", ")
    };
    let _ = writeln!(s, "- **Runs computed at commit:** {commits}");
    let _ = writeln!(s, "- **Report made by:** stkd {}", m.version);
    s.push('\n');
}
