//! Table 3: the share of ORD's targets taken from the teacher, ours beside the paper's; CSV
//! `<name>-attention.csv`, one line per model and data set.

use std::fmt::Write;

use crate::report::format::{csv_header, csv_line, fixed, opt, row_name, signed, CSV_DECIMALS};
use crate::report::paper::{self, dataset_title};
use crate::report::tables::{AttentionCell, AttentionTable};

use super::{CsvFile, ReportSection};

/// Table 3's attention shares.
#[derive(Debug)]
pub struct Attention(pub AttentionTable);

impl ReportSection for Attention {
    fn markdown(&self, out: &mut String) {
        attention_md(out, &self.0);
    }

    fn csv(&self) -> Vec<CsvFile> {
        vec![("-attention".into(), attention_csv(&self.0))]
    }
}

fn attention_cell(c: &AttentionCell) -> String {
    let Some(st) = c.ours else {
        return c.counts.describe();
    };
    let mut text = st.text(3);
    if let (Some(p), true) = (c.paper, st.mean.is_finite()) {
        let _ = write!(text, " ({})", signed(st.mean - p, 3, true));
    }
    if c.counts.total() > c.counts.done() {
        let _ = write!(text, "; {}", c.counts.describe());
    }
    text
}

fn attention_md(s: &mut String, t: &AttentionTable) {
    let _ = writeln!(s, "## Table 3: {}\n", paper::caption(3));
    let _ = writeln!(
        s,
        "Share (%) of the training elements (sample × node, over every step of training) for \
         which ORD's target was the teacher's prediction instead of the data. ours: mean ± \
         sample std over the finished seeds, then ours − paper in percentage points; paper: \
         Table 3. The share depends only on the frozen teacher's predictions, the data and α1 \
         (ORD compares the teacher's normalised error with α1; the student never enters it), \
         and every epoch visits every training window once: runs of any seed and any loss with \
         the same α1 have the same share (± 0; on each data set TCD and SCD take STCD's α1, \
         as the paper gives none for them). The paper's shares differ between losses, so it \
         counted them in a way its text does not say. Its text makes no claim about Table 3.\n"
    );
    let mut head = vec!["Model".to_string()];
    let mut align = vec![":--"];
    for d in &t.datasets {
        head.push(format!("{} ours", dataset_title(*d)));
        head.push(format!("{} paper", dataset_title(*d)));
        align.extend([("--:"), ("--:")]);
    }
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let _ = writeln!(s, "|{}|", align.join("|"));
    for r in &t.rows {
        let mut line = vec![row_name(&r.model, &r.variant)];
        for c in &r.cells {
            line.push(attention_cell(c));
            line.push(c.paper.map_or("—".into(), |p| fixed(p, 3)));
        }
        let _ = writeln!(s, "| {} |", line.join(" | "));
    }
    s.push('\n');
}

/// Table 3, one line per model and data set.
fn attention_csv(t: &AttentionTable) -> String {
    let mut s = csv_header(&[
        "dataset",
        "model",
        "variant",
        "runs",
        "n",
        "pct",
        "std",
        "paper_pct",
        "diff",
    ]);
    for r in &t.rows {
        for (d, c) in t.datasets.iter().zip(&r.cells) {
            let diff = match (c.ours, c.paper) {
                (Some(o), Some(p)) if o.mean.is_finite() => Some(o.mean - p),
                _ => None,
            };
            s.push_str(&csv_line(&[
                d.to_string(),
                r.model.clone(),
                r.variant.clone(),
                c.counts.describe(),
                c.ours.map_or(0, |o| o.n).to_string(),
                opt(c.ours.map(|o| o.mean), CSV_DECIMALS),
                opt(c.ours.and_then(|o| o.std), CSV_DECIMALS),
                opt(c.paper, 3),
                diff.map_or(String::new(), |d| signed(d, CSV_DECIMALS, false)),
            ]));
        }
    }
    s
}
