//! The paper's claims about its table, judged cell by cell ([`crate::report::verdicts`]); CSV
//! `<name>-claims.csv`, one line per claim and cell.

use std::fmt::Write;

use crate::data::DatasetName;
use crate::report::format::{cell, csv_header, csv_line, opt, signed, CSV_DECIMALS};
use crate::report::paper::{self, dataset_title};
use crate::report::stats::{Comparison, Test};
use crate::report::verdicts::{cell_name, Cell, CellOutcome, Claim, Source, Verdict};

use super::{CsvFile, ReportSection};

/// The judged claims of the report's paper table (not empty).
#[derive(Debug)]
pub struct Claims {
    pub verdicts: Vec<Verdict>,
    /// Every distilled run of a data set learns from the same teacher run.
    pub one_teacher: bool,
}

impl ReportSection for Claims {
    fn markdown(&self, out: &mut String) {
        verdicts_md(out, &self.verdicts, self.one_teacher);
    }

    fn csv(&self) -> Vec<CsvFile> {
        vec![("-claims".into(), verdicts_csv(&self.verdicts))]
    }
}

/// `−0.123 [−0.250, +0.004]` (the 95 % interval), or `−0.123 (n = 1 vs 3, not judged)`; then
/// the paper's own difference and, within noise, from how many seeds a side the interval would
/// be narrower than it; a cell against the claim at 95 % says whether it is beyond the claim's
/// correction.
fn diff_text(c: &Cell) -> String {
    let mut t = match &c.comparison {
        Comparison::Judged(j) => format!(
            "{} [{}, {}]",
            signed(j.diff, 3, true),
            signed(j.diff - j.half_width, 3, true),
            signed(j.diff + j.half_width, 3, true)
        ),
        Comparison::NotJudged { n, diff } => {
            format!(
                "{} (n = {} vs {}, not judged)",
                signed(*diff, 3, true),
                n.0,
                n.1
            )
        }
        Comparison::Empty => "—".into(),
    };
    if c.outcome == CellOutcome::Against {
        t.push_str(if c.against_beyond_correction() {
            " (against beyond the correction)"
        } else {
            " (against at 95 % alone)"
        });
    }
    if let Some(p) = c.paper_diff {
        t.push_str(&format!(" (paper {}", signed(p, 3, true)));
        if let Comparison::Judged(j) = &c.comparison {
            if (p - j.diff).abs() > j.half_width {
                t.push_str(", outside our interval");
            }
        }
        if c.outcome == CellOutcome::WithinNoise {
            match c.seeds_to_resolve {
                Some(n) => t.push_str(&format!(
                    "; the interval is narrower than the paper's difference from {n} seeds a side"
                )),
                None if p < 0.0 => {
                    t.push_str("; the interval is not narrower than it with 200 seeds a side")
                }
                None => {}
            }
        }
        t.push(')');
    }
    t
}

/// The claim's source: the quoted sentence and its section, or "ours" and why.
fn source_text(c: &Claim) -> String {
    match &c.source {
        Source::Paper { section, quote } => format!("{section}: “{quote}”"),
        Source::Ours(why) => format!("ours: {why}"),
    }
}

fn verdicts_md(s: &mut String, verdicts: &[Verdict], one_teacher: bool) {
    if verdicts.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## The paper's claims\n");
    let _ = writeln!(
        s,
        "Each claim of the paper's text about this table, quoted, over exactly the metrics, \
         horizons and data sets its sentence names; claims of ours are marked \"ours\". Per cell: \
         the difference of our means (claimed better − claimed worse, in the metric's unit; \
         negative agrees with the claim), its 95 % interval (Student's t over the per-seed \
         differences of the seeds both sides hold, when they hold two or more in common — a \
         side's other seeds are then left out of that comparison and the difference is the mean \
         per-seed difference; Welch's t otherwise), the paper's own \
         difference (\"outside our interval\" when our data exclude a difference of the paper's \
         size) and, for a cell within noise, from how many seeds per side the interval would be \
         narrower than the paper's difference at the spread measured here. A cell whose \
         interval lies below zero **holds**, above zero is **against** the claim, else **within \
         noise**. A claim **holds** when every cell holds. It **does not hold** only when a cell \
         is against it beyond the correction for the claim's k judged cells (Bonferroni: that \
         cell's interval at 1 − 0.05/k lies above zero), because over k cells one 95 % interval \
         beyond noise by chance alone is likely (about 1 − 0.95⁹ ≈ 37 % of 9 cells when nothing \
         differs), while the corrected question is wrong at most 5 % of the time; a cell \
         against at 95 % alone is counted and marked, and leaves the claim **within noise**. A \
         side with a single seed is **not judged**. Both sides must be trained alike (optimiser steps, \
         batch, learning-rate schedule, optimiser, pruning schedule); where the claimed-worse \
         model was trained several ways, its runs trained as the claimed-better ones are used, \
         else the claim is **not comparable**.\n"
    );
    if one_teacher {
        let _ = writeln!(
            s,
            "Every distilled run of a data set here learns from the same teacher run: n counts \
             the students' (and pruning runs') seeds, and a verdict holds for that teacher.\n"
        );
    }
    let mut noted: Vec<DatasetName> = verdicts.iter().map(|v| v.dataset).collect();
    noted.sort();
    noted.dedup();
    for d in noted {
        if let Some(note) = d.shipped_difference() {
            let _ = writeln!(s, "**{}:** {note}.\n", dataset_title(d));
        }
    }
    let _ = writeln!(
        s,
        "| Data set | Claim | Source | Ours: better − worse [95 % interval] | Verdict |"
    );
    let _ = writeln!(s, "|:--|:--|:--|:--|:--|");
    for v in verdicts {
        let cells: Vec<String> = v
            .cells
            .iter()
            .map(|c| format!("{}: {}", cell_name(c), diff_text(c)))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            dataset_title(v.dataset),
            cell(&v.claim.text, 300),
            cell(&source_text(&v.claim), 600),
            if cells.is_empty() {
                "—".to_string()
            } else {
                cells.join("; ")
            },
            cell(&v.text(), 400)
        );
    }
}

/// The claims as CSV, one line per (claim, cell); a claim without cells has one line.
fn verdicts_csv(verdicts: &[Verdict]) -> String {
    let header = [
        "dataset",
        "claim",
        "source",
        "metric",
        "horizon_min",
        "n_better",
        "n_worse",
        "test",
        "diff",
        "ci_low",
        "ci_high",
        "family_ci_low",
        "family_ci_high",
        "paper_diff",
        "seeds_to_resolve",
        "cell",
        "verdict",
    ];
    let mut s = csv_header(&header);
    for v in verdicts {
        let verdict = v.text();
        let base = |cells: Vec<String>| {
            let mut row = vec![
                v.dataset.to_string(),
                v.claim.text.clone(),
                source_text(&v.claim),
            ];
            row.extend(cells);
            row.push(verdict.clone());
            csv_line(&row)
        };
        if v.cells.is_empty() {
            s.push_str(&base(vec![String::new(); header.len() - 4]));
        }
        for c in &v.cells {
            let family = |sign: f64| {
                c.judged()
                    .zip(c.family_half_width)
                    .map(|(j, w)| j.diff + sign * w)
            };
            let (n, test, lo, hi) = match &c.comparison {
                Comparison::Judged(j) => (
                    (v.seeds.0, v.seeds.1),
                    match j.test {
                        Test::Paired if j.pairs < v.seeds.0.max(v.seeds.1) => {
                            format!("paired over {} shared seeds", j.pairs)
                        }
                        Test::Paired => "paired".to_string(),
                        Test::Welch => "welch".to_string(),
                    },
                    Some(j.diff - j.half_width),
                    Some(j.diff + j.half_width),
                ),
                Comparison::NotJudged { n, .. } => (*n, "not judged".to_string(), None, None),
                Comparison::Empty => ((0, 0), String::new(), None, None),
            };
            s.push_str(&base(vec![
                paper::METRICS[c.metric].to_string(),
                paper::HORIZONS[c.horizon].to_string(),
                n.0.to_string(),
                n.1.to_string(),
                test.to_string(),
                opt(c.diff(), CSV_DECIMALS),
                opt(lo, CSV_DECIMALS),
                opt(hi, CSV_DECIMALS),
                opt(family(-1.0), CSV_DECIMALS),
                opt(family(1.0), CSV_DECIMALS),
                opt(c.paper_diff, CSV_DECIMALS),
                c.seeds_to_resolve
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                match c.outcome {
                    CellOutcome::Holds => "holds",
                    CellOutcome::Against => "against",
                    CellOutcome::WithinNoise => "within noise",
                    CellOutcome::NotJudged => "not judged",
                }
                .to_string(),
            ]));
        }
    }
    s
}
