//! The figures linked from the Markdown (made by [`crate::report::figures`]); no CSV.

use std::fmt::Write;

use crate::report::tables::{Figure, FigureItem};

use super::ReportSection;

/// The report's figures (not empty).
#[derive(Debug)]
pub struct Figures(pub Vec<Figure>);

impl ReportSection for Figures {
    fn markdown(&self, out: &mut String) {
        figures_md(out, &self.0);
    }
}

fn figures_md(s: &mut String, figures: &[Figure]) {
    if figures.is_empty() {
        return;
    }
    let _ = writeln!(s, "## Figures\n");
    for f in figures {
        let _ = writeln!(s, "### {}\n", f.title);
        for item in &f.items {
            match item {
                FigureItem::Image { alt, path, caption } => {
                    let _ = writeln!(s, "![{alt}]({path})\n");
                    if !caption.is_empty() {
                        let _ = writeln!(s, "{caption}\n");
                    }
                }
                FigureItem::Note(n) => {
                    let _ = writeln!(s, "{n}\n");
                }
            }
        }
    }
}
