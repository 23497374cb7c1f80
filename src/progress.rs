//! Progress of runs for the person watching: bars on a terminal (indicatif), plain lines
//! otherwise (logs, CI). One display for `stkd train` (one run) and `stkd sweep` (a run per
//! device slot), fed with the same [`RunEvent`]s.
//!
//! Plain lines: a line when an epoch starts, about every tenth of an epoch, when it ends (its
//! learning rate, training loss, validation MAE and time), and for validation and testing;
//! each prefixed with the slot's label (`slot 0: ` in a sweep, nothing for one run).

use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::schedule::RunEvent;

enum Output {
    Bars(MultiProgress),
    Lines(Box<dyn Write + Send>),
}

#[derive(Default)]
struct Slot {
    label: String,
    /// The run's name, as its bar shows it.
    title: String,
    steps: usize,
    epoch: String,
    bar: Option<ProgressBar>,
}

/// The progress display of one command.
pub struct Progress {
    out: Output,
    slots: Vec<Slot>,
}

/// `waiting: the run folder is locked by another worker (process 42)`.
pub fn folder_wait_text(holder: Option<u32>) -> String {
    format!(
        "waiting: the run folder is locked by another worker{}",
        holder
            .map(|p| format!(" (process {p})"))
            .unwrap_or_default()
    )
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines on stderr otherwise.
    pub fn for_stderr(slots: usize) -> Self {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            Progress {
                out: Output::Bars(MultiProgress::new()),
                slots: (0..slots).map(|_| Slot::default()).collect(),
            }
        } else {
            Self::lines(std::io::stderr(), slots)
        }
    }

    /// Plain lines into `out`.
    pub fn lines(out: impl Write + Send + 'static, slots: usize) -> Self {
        Progress {
            out: Output::Lines(Box::new(out)),
            slots: (0..slots).map(|_| Slot::default()).collect(),
        }
    }

    /// A line of its own (above the bars on a terminal).
    pub fn println(&mut self, line: &str) {
        match &mut self.out {
            Output::Bars(m) => {
                let _ = m.println(line);
            }
            Output::Lines(w) => {
                let _ = writeln!(w, "{line}");
                let _ = w.flush();
            }
        }
    }

    /// An overall bar of `total` items, `done` of them already (terminal only).
    pub fn overall(&mut self, template: &str, total: usize, done: usize) -> Option<ProgressBar> {
        let Output::Bars(m) = &self.out else {
            return None;
        };
        let pb = m.add(ProgressBar::new(total as u64));
        pb.set_style(bar_style(template));
        pb.set_position(done as u64);
        pb.enable_steady_tick(Duration::from_millis(500));
        Some(pb)
    }

    /// A run starts in `slot`: `label` prefixes its plain lines, `title` heads its bar.
    pub fn start(&mut self, slot: usize, label: &str, title: &str) {
        let bar = match &self.out {
            Output::Bars(m) => {
                let pb = m.add(ProgressBar::new(0));
                pb.set_style(bar_style(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} (ETA {eta})",
                ));
                pb.set_prefix(title.to_string());
                pb.set_message("starting");
                pb.enable_steady_tick(Duration::from_millis(250));
                Some(pb)
            }
            Output::Lines(_) => None,
        };
        self.slots[slot] = Slot {
            label: label.to_string(),
            title: title.to_string(),
            bar,
            ..Slot::default()
        };
    }

    /// The run in `slot` ended (its bar goes).
    pub fn finish(&mut self, slot: usize) {
        if let Some(pb) = self.slots[slot].bar.take() {
            pb.finish_and_clear();
        }
    }

    /// What the run in `slot` reports.
    pub fn event(&mut self, slot: usize, ev: &RunEvent) {
        let s = &mut self.slots[slot];
        let line = match *ev {
            RunEvent::Epoch {
                epoch,
                epochs,
                steps,
            } => {
                s.steps = steps;
                s.epoch = format!("epoch {epoch}/{epochs}");
                if let Some(pb) = &s.bar {
                    pb.set_length(steps as u64);
                    pb.set_position(0);
                    pb.set_message(s.epoch.clone());
                }
                Some(format!("{}, {steps} steps", s.epoch))
            }
            RunEvent::Step { step, loss } => {
                if let Some(pb) = &s.bar {
                    pb.set_position(step as u64);
                    pb.set_message(format!("{} loss {loss:.4}", s.epoch));
                }
                (step % s.steps.div_ceil(10).max(1) == 0)
                    .then(|| format!("step {step}/{} loss {loss:.4}", s.steps))
            }
            RunEvent::Validating => {
                if let Some(pb) = &s.bar {
                    pb.set_message(format!("{} validating", s.epoch));
                }
                None
            }
            RunEvent::EpochEnd {
                epoch,
                lr,
                train_loss,
                val_mae,
                seconds,
            } => Some(format!(
                "epoch {epoch:>3}: lr {lr:.2e}  train loss {train_loss:.5}  val MAE {val_mae:.3} mph  ({seconds:.1} s)"
            )),
            RunEvent::Testing => {
                if let Some(pb) = &s.bar {
                    pb.set_message("testing");
                }
                Some("evaluating the best model on the test split".into())
            }
            RunEvent::WaitingForFolder { holder } => {
                if let Some(pb) = &s.bar {
                    pb.set_message(folder_wait_text(holder));
                }
                Some(folder_wait_text(holder))
            }
            RunEvent::Queued {
                ref job,
                ref reason,
                limit_s,
            } => {
                let text = match limit_s {
                    Some(l) => format!(
                        "Slurm job {job} pending: {reason} (not its turn in the queue; cancelled \
                         and failed if still so after {l} s)"
                    ),
                    None => format!("Slurm job {job} pending: {reason}"),
                };
                if let Some(pb) = &s.bar {
                    pb.set_message(text.clone());
                }
                Some(text)
            }
            RunEvent::Resumed { epoch, epochs } => {
                let note = format!("resumed at epoch {epoch} of {epochs}");
                if let Some(pb) = &s.bar {
                    pb.set_prefix(format!("{} ({note})", s.title));
                }
                Some(if s.title.is_empty() {
                    format!("{note} from its checkpoint")
                } else {
                    format!("{}: {note} from its checkpoint", s.title)
                })
            }
        };
        let Some(text) = line else { return };
        let text = format!("{}{text}", s.label);
        match (&self.out, ev) {
            // On a terminal the bar shows the rest; epoch summaries stay as lines.
            (
                Output::Bars(_),
                RunEvent::EpochEnd { .. }
                | RunEvent::Testing
                | RunEvent::Resumed { .. }
                | RunEvent::Queued {
                    limit_s: Some(_), ..
                },
            ) => self.println(&text),
            (Output::Bars(_), _) => {}
            (Output::Lines(_), _) => self.println(&text),
        }
    }
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("static template")
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose bytes the test can read.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_lines_for_logs() {
        let buf = Shared::default();
        let mut p = Progress::lines(buf.clone(), 2);
        p.start(1, "slot 1: ", "[cpu] student pemsd7 (ab12)");
        p.event(
            1,
            &RunEvent::Epoch {
                epoch: 1,
                epochs: 50,
                steps: 20,
            },
        );
        for step in 1..=20 {
            p.event(1, &RunEvent::Step { step, loss: 0.5 });
        }
        p.event(1, &RunEvent::Validating);
        p.event(
            1,
            &RunEvent::EpochEnd {
                epoch: 1,
                lr: 1e-3,
                train_loss: 0.25,
                val_mae: 4.5,
                seconds: 12.34,
            },
        );
        p.event(1, &RunEvent::Testing);
        p.event(1, &RunEvent::WaitingForFolder { holder: Some(42) });
        p.event(
            1,
            &RunEvent::Resumed {
                epoch: 3,
                epochs: 50,
            },
        );
        for (reason, limit_s) in [("Priority", None), ("BadConstraints", Some(600))] {
            let (job, reason) = ("17".to_string(), reason.to_string());
            p.event(
                1,
                &RunEvent::Queued {
                    job,
                    reason,
                    limit_s,
                },
            );
        }
        p.finish(1);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let want = "\
slot 1: epoch 1/50, 20 steps
slot 1: step 2/20 loss 0.5000
slot 1: step 4/20 loss 0.5000
slot 1: step 6/20 loss 0.5000
slot 1: step 8/20 loss 0.5000
slot 1: step 10/20 loss 0.5000
slot 1: step 12/20 loss 0.5000
slot 1: step 14/20 loss 0.5000
slot 1: step 16/20 loss 0.5000
slot 1: step 18/20 loss 0.5000
slot 1: step 20/20 loss 0.5000
slot 1: epoch   1: lr 1.00e-3  train loss 0.25000  val MAE 4.500 mph  (12.3 s)
slot 1: evaluating the best model on the test split
slot 1: waiting: the run folder is locked by another worker (process 42)
slot 1: [cpu] student pemsd7 (ab12): resumed at epoch 3 of 50 from its checkpoint
slot 1: Slurm job 17 pending: Priority
slot 1: Slurm job 17 pending: BadConstraints (not its turn in the queue; cancelled and failed if still so after 600 s)
";
        assert_eq!(text, want);
    }
}
