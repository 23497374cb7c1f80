//! The report's figures, written as SVG next to the Markdown: training and validation curves
//! from the store (paper Figure 3), and — for runs whose checkpoint is on disk — predicted vs
//! true speed of one node (Figure 5) and a t-SNE of student vs teacher hidden representations
//! (Section 4.2). A figure that cannot be made is replaced by a note saying why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::tensor::{Tensor, TensorData};

use crate::backend::CpuInner;
use crate::data::{Dataset, DatasetName, Split};
use crate::distill::LossKind;
use crate::model::{GraphKernel, Preset, Stgcn};
use crate::report::collect::{ReportData, RunEntry};
use crate::report::paper::dataset_title;
use crate::report::plots::{self, Line, TsnePanel};
use crate::report::runs::{datasets, is_pruned, is_reference, model_name};
use crate::report::tables::{groups, Figure, FigureItem, Group};
use crate::report::tsne;

/// Points of the prediction plot and samples of the t-SNE (the paper's 50).
pub const SAMPLES: usize = 50;
/// The prediction plot starts at this window of the first test day (06:00 with 5-min steps).
pub const PREDICTION_START: usize = 72;
/// Predicted step shown in the prediction plot (3 = 15 minutes ahead).
pub const PREDICTION_STEP: usize = 3;
/// Seed of the t-SNE start.
pub const TSNE_SEED: u64 = 1;

/// Where figures come from and go.
pub struct FigureInputs<'a> {
    pub data: &'a ReportData,
    /// The paper table (row names follow it).
    pub table: Option<u8>,
    /// The store's folder: checkpoints are `<store dir>/runs/<hash>/`.
    pub store_dir: &'a Path,
    /// Folder holding the data sets.
    pub data_dir: &'a Path,
    /// Folder of the Markdown file; figures go to `<out_dir>/<plots>/`.
    pub out_dir: &'a Path,
    /// Sub-folder for the SVG files (the experiment's name).
    pub plots: &'a str,
    /// Whether to load checkpoints for the prediction and t-SNE figures.
    pub model_figures: bool,
}

/// Figures written and the files (absolute or relative to the working directory).
pub struct Figures {
    pub figures: Vec<Figure>,
    pub files: Vec<PathBuf>,
}

struct Writer<'a> {
    inp: &'a FigureInputs<'a>,
    files: Vec<PathBuf>,
}

impl Writer<'_> {
    /// Writes `svg` as `<plots>/<file>` and returns the Markdown-relative path.
    fn write(&mut self, file: &str, svg: &str) -> Result<String, std::io::Error> {
        let dir = self.inp.out_dir.join(self.inp.plots);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(file);
        std::fs::write(&path, svg)?;
        self.files.push(path);
        Ok(format!("{}/{file}", self.inp.plots))
    }
}

/// Colour of each (model, variant) row, in plan order, shared by every figure.
fn colours(data: &ReportData, table: Option<u8>) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for g in groups(&data.runs, |r| model_name(r, table)) {
        let n = out.len();
        out.entry((g.model.clone(), g.variant.clone())).or_insert(n);
    }
    out
}

fn series_name(model: &str, variant: &str) -> String {
    if variant.is_empty() {
        model.to_string()
    } else {
        format!("{model} [{variant}]")
    }
}

/// Makes every figure of a report; errors only for files that cannot be written.
pub fn make_figures(inp: &FigureInputs) -> Result<Figures, super::ReportError> {
    let mut w = Writer {
        inp,
        files: Vec::new(),
    };
    let mut figures = vec![curves(&mut w)?];
    if inp.model_figures {
        let mut models = Models::new(inp);
        figures.push(predictions(&mut w, &mut models)?);
        figures.push(tsne_figure(&mut w, &mut models)?);
    } else {
        figures.push(Figure {
            title: "Predicted vs true speed (paper Figure 5) and t-SNE (Section 4.2)".into(),
            items: vec![FigureItem::Note(
                "Not made: figures from checkpoints were turned off.".into(),
            )],
        });
    }
    Ok(Figures {
        figures,
        files: w.files,
    })
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> super::ReportError + '_ {
    move |e| super::ReportError::Io {
        path: path.to_path_buf(),
        cause: e,
    }
}

fn plot_err(e: String) -> super::ReportError {
    super::ReportError::Plot(e)
}

fn curves(w: &mut Writer) -> Result<Figure, super::ReportError> {
    let inp = w.inp;
    let col = colours(inp.data, inp.table);
    let mut items = Vec::new();
    for d in datasets(inp.data) {
        let (mut train, mut val) = (Vec::new(), Vec::new());
        let rows = groups(&inp.data.runs, |r| model_name(r, inp.table));
        for g in rows.iter().filter(|g| g.dataset == d) {
            let c = col[&(g.model.clone(), g.variant.clone())];
            let name = series_name(&g.model, &g.variant);
            for r in &g.runs {
                let Some(res) = r.done().filter(|x| !x.epochs.is_empty()) else {
                    continue;
                };
                let pts = |f: fn(&crate::store::EpochRow) -> f64| {
                    res.epochs.iter().map(|e| (e.epoch as f64, f(e))).collect()
                };
                train.push(Line {
                    name: name.clone(),
                    colour: c,
                    points: pts(|e| e.train_loss),
                });
                val.push(Line {
                    name: name.clone(),
                    colour: c,
                    points: pts(|e| e.val_mae),
                });
            }
        }
        if train.is_empty() {
            items.push(FigureItem::Note(format!(
                "{}: no finished run yet.",
                dataset_title(d)
            )));
            continue;
        }
        let title = format!("{}: training and validation", dataset_title(d));
        let svg = plots::curves_svg(&title, &train, &val).map_err(plot_err)?;
        let file = format!("curves-{d}.svg");
        let path = w
            .write(&file, &svg)
            .map_err(io_err(&inp.out_dir.join(inp.plots).join(&file)))?;
        items.push(FigureItem::Image {
            alt: format!("Training and validation curves, {}", dataset_title(d)),
            path,
            caption: format!(
                "{}: training loss per epoch (log scale when it spans a decade; each run's own \
                 objective, so KD losses are not on the scale of W/O KD's MSE) and validation \
                 MAE of every finished run (seeds of one model share its colour).",
                dataset_title(d)
            ),
        });
    }
    Ok(Figure {
        title: "Training and validation curves (paper Figure 3)".into(),
        items,
    })
}

/// The Pareto charts of a report, one SVG per data set (size and latency panels), in
/// `<out_dir>/<plots>/pareto-<dataset>.svg`.
pub fn pareto_figure(
    p: &crate::report::pareto::Pareto,
    data: &ReportData,
    table: Option<u8>,
    out_dir: &Path,
    plots: &str,
) -> Result<(Figure, Vec<PathBuf>), super::ReportError> {
    let col = colours(data, table);
    let mut items = Vec::new();
    let mut files = Vec::new();
    for b in &p.blocks {
        let point = |q: &crate::report::pareto::Point, x: f64, front: bool| plots::TradeOff {
            name: q.model.clone(),
            colour: col
                .iter()
                .find(|((m, _), _)| *m == q.model)
                .map_or(0, |(_, &c)| c),
            x,
            y: q.mae,
            front,
        };
        let size: Vec<plots::TradeOff> = b
            .points
            .iter()
            .map(|q| point(q, q.parameters as f64, q.front_size))
            .collect();
        let latency: Vec<plots::TradeOff> = b
            .points
            .iter()
            .filter_map(|q| q.latency_ms.map(|l| point(q, l, q.front_latency)))
            .collect();
        let mut panels = vec![plots::TradeOffPanel {
            title: "against size",
            x_desc: "parameters",
            points: &size,
            log_x: true,
        }];
        if !latency.is_empty() {
            panels.push(plots::TradeOffPanel {
                title: "against latency",
                x_desc: "test time of one batch (ms)",
                points: &latency,
                log_x: true,
            });
        }
        let title = format!(
            "{}: test MAE at {} min",
            dataset_title(b.dataset),
            p.horizon
        );
        let svg = plots::pareto_svg(&title, "MAE (mph)", &panels).map_err(plot_err)?;
        let dir = out_dir.join(plots);
        let file = format!("pareto-{}.svg", b.dataset);
        let path = dir.join(&file);
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&path, svg))
            .map_err(io_err(&path))?;
        files.push(path);
        items.push(FigureItem::Image {
            alt: format!("Pareto fronts, {}", dataset_title(b.dataset)),
            path: format!("{plots}/{file}"),
            caption: format!(
                "{}: test MAE at {} min of every finished run against its parameters and its \
                 measured test time; filled points with a black ring are not dominated (no other \
                 run is smaller or faster and at least as accurate), joined by the front.",
                dataset_title(b.dataset),
                p.horizon
            ),
        });
    }
    Ok((
        Figure {
            title: "Pareto fronts: accuracy against size and latency".into(),
            items,
        },
        files,
    ))
}

// ---------------------------------------------------------------------------------------------
// Figures from checkpoints

/// A data set as a run loads it: name and split.
type DataKey = (DatasetName, Option<[usize; 3]>);

/// Data sets and models loaded on demand, each once.
struct Models<'a> {
    inp: &'a FigureInputs<'a>,
    data: BTreeMap<DataKey, Result<Rc<Dataset>, String>>,
    models: BTreeMap<String, Result<Stgcn<CpuInner>, String>>,
}

impl<'a> Models<'a> {
    fn new(inp: &'a FigureInputs<'a>) -> Self {
        Models {
            inp,
            data: BTreeMap::new(),
            models: BTreeMap::new(),
        }
    }

    fn dataset(&mut self, run: &RunEntry) -> Result<Rc<Dataset>, String> {
        let key = (run.config.dataset, run.config.split_days);
        let dir = self.inp.data_dir;
        self.data
            .entry(key)
            .or_insert_with(|| {
                crate::exec::load_data(&run.config, dir)
                    .map(Rc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }

    fn model(&mut self, run: &RunEntry) -> Result<&Stgcn<CpuInner>, String> {
        let dir = checkpoint_dir(self.inp.store_dir, run);
        self.models
            .entry(run.hash.clone())
            .or_insert_with(|| {
                crate::train::load_model::<CpuInner>(&dir, &Default::default())
                    .map(|(m, _)| m)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// A run's checkpoint folder: its stored `checkpoint` artefact (relative to the store's folder),
/// else `runs/<hash>`.
pub fn checkpoint_dir(store_dir: &Path, run: &RunEntry) -> PathBuf {
    let rel = run
        .result
        .as_ref()
        .and_then(|r| r.artefacts.iter().find(|(k, _)| k == "checkpoint"))
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| format!("runs/{}", run.hash));
    store_dir.join(rel)
}

fn has_checkpoint(store_dir: &Path, run: &RunEntry) -> bool {
    run.done().is_some() && checkpoint_dir(store_dir, run).join("model.json").is_file()
}

/// The plotted run of a row: the lowest seed among finished runs with a checkpoint.
fn plotted<'r>(store_dir: &Path, runs: &[&'r RunEntry]) -> Option<&'r RunEntry> {
    runs.iter()
        .copied()
        .filter(|r| has_checkpoint(store_dir, r))
        .min_by_key(|r| r.seed())
}

/// Windows of the test split: `[B, M, N]` inputs and `[B, H, N]` targets, z-scored.
fn test_batch(data: &Dataset, idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    data.batch(Split::Test, idx, &mut x, &mut y);
    (x, y)
}

fn input(data: &Dataset, x: &[f32], b: usize) -> Tensor<CpuInner, 3> {
    Tensor::from_data(
        TensorData::new(x.to_vec(), [b, data.n_his, data.nodes]),
        &Default::default(),
    )
}

/// `count` consecutive test windows from `start` (clipped to the split).
fn consecutive(data: &Dataset, start: usize, count: usize) -> Vec<usize> {
    let total = data.windows(Split::Test);
    let first = start.min(total.saturating_sub(count));
    (first..(first + count).min(total)).collect()
}

/// `count` test windows evenly spread over the split.
fn spread(data: &Dataset, count: usize) -> Vec<usize> {
    let total = data.windows(Split::Test);
    if total <= count {
        return (0..total).collect();
    }
    (0..count).map(|k| k * total / count).collect()
}

fn predictions(w: &mut Writer, models: &mut Models) -> Result<Figure, super::ReportError> {
    let inp = w.inp;
    let col = colours(inp.data, inp.table);
    let mut items = Vec::new();
    let all = groups(&inp.data.runs, |r| model_name(r, inp.table));
    for d in datasets(inp.data) {
        let rows: Vec<_> = all.iter().filter(|g| g.dataset == d).collect();
        let chosen: Vec<(&Group, &RunEntry)> = rows
            .iter()
            .filter_map(|g| plotted(inp.store_dir, &g.runs).map(|r| (*g, r)))
            .collect();
        let missing: Vec<String> = rows
            .iter()
            .filter(|g| plotted(inp.store_dir, &g.runs).is_none())
            .map(|g| series_name(&g.model, &g.variant))
            .collect();
        let Some((_, first)) = chosen.first() else {
            items.push(FigureItem::Note(format!(
                "{}: not made — no finished run has its checkpoint (`runs/<hash>/` next to the \
                 store) on this machine.",
                dataset_title(d)
            )));
            continue;
        };
        let data = match models.dataset(first) {
            Ok(x) => x,
            Err(e) => {
                items.push(FigureItem::Note(format!(
                    "{}: not made — cannot load the data: {e}",
                    dataset_title(d)
                )));
                continue;
            }
        };
        let idx = consecutive(&data, PREDICTION_START, SAMPLES);
        let (x, y) = test_batch(&data, &idx);
        let (n, h, b) = (data.nodes, data.n_pred, idx.len());
        let step = PREDICTION_STEP.min(h) - 1;
        let denorm = |v: f32| v as f64 * data.std + data.mean;
        let truth_of = |node: usize| -> Vec<f64> {
            (0..b)
                .map(|i| denorm(y[(i * h + step) * n + node]))
                .collect()
        };
        // The node whose true speed varies most over these points.
        let node = (0..n)
            .max_by(|&a, &c| {
                let var = |v: Vec<f64>| {
                    let m = v.iter().sum::<f64>() / v.len() as f64;
                    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>()
                };
                var(truth_of(a))
                    .total_cmp(&var(truth_of(c)))
                    .then(c.cmp(&a))
            })
            .unwrap_or(0);
        let per_day = data.steps_per_day + 1 - data.n_his - data.n_pred;
        let minutes = 1440.0 / data.steps_per_day as f64;
        let hour = |w: usize| {
            let (day, off) = (w / per_day, w % per_day);
            let s = day * data.steps_per_day + off + data.n_his + step;
            s as f64 * minutes / 60.0
        };
        let xs: Vec<f64> = idx.iter().map(|&w| hour(w)).collect();
        let mut lines = vec![Line {
            name: "true speed".into(),
            colour: 0,
            points: xs.iter().copied().zip(truth_of(node)).collect(),
        }];
        let mut failed = Vec::new();
        let g = GraphKernel::<CpuInner>::new(&data.cheb, data.nodes, &Default::default());
        for (grp, run) in &chosen {
            let model = match models.model(run) {
                Ok(m) => m,
                Err(e) => {
                    failed.push(format!("{} ({e})", series_name(&grp.model, &grp.variant)));
                    continue;
                }
            };
            let pred = model.predict(input(&data, &x, b), &g, h);
            let pred = pred.into_data().to_vec::<f32>().expect("f32 predictions");
            let ys = (0..b).map(|i| denorm(pred[(i * h + step) * n + node]));
            lines.push(Line {
                name: series_name(&grp.model, &grp.variant),
                colour: col[&(grp.model.clone(), grp.variant.clone())],
                points: xs.iter().copied().zip(ys).collect(),
            });
        }
        let title = format!(
            "{}: node {node}, {} min ahead",
            dataset_title(d),
            5 * (step + 1)
        );
        let svg = plots::prediction_svg(&title, &lines).map_err(plot_err)?;
        let file = format!("prediction-{d}.svg");
        let path = w
            .write(&file, &svg)
            .map_err(io_err(&inp.out_dir.join(inp.plots).join(&file)))?;
        let start = idx[0] % per_day;
        let mut caption = format!(
            "{}: true speed (black) and {}-minute-ahead predictions at node {node} (the node \
             whose true speed varies most over these points) for {b} consecutive test windows \
             from input start {:02}:{:02} of the first test day; one run per model (its lowest \
             seed).",
            dataset_title(d),
            5 * (step + 1),
            (start as f64 * minutes) as usize / 60,
            (start as f64 * minutes) as usize % 60,
        );
        if !missing.is_empty() {
            caption.push_str(&format!(
                " Not plotted (no finished run with a checkpoint): {}.",
                missing.join(", ")
            ));
        }
        if !failed.is_empty() {
            caption.push_str(&format!(" Checkpoints not loaded: {}.", failed.join("; ")));
        }
        items.push(FigureItem::Image {
            alt: format!("Predicted vs true speed, {}", dataset_title(d)),
            path,
            caption,
        });
    }
    Ok(Figure {
        title: "Predicted vs true speed of one node (paper Figure 5)".into(),
        items,
    })
}

/// The hidden representation feeding the output layer (`[B, Ko, N, C]`), summarised per sample
/// as the channel mean at each time step and node: a `Ko·N` vector whatever `C` is, so that a
/// student (8 channels) and its teacher (128) live in one space.
pub fn hidden_vectors(model: &Stgcn<CpuInner>, data: &Dataset, idx: &[usize]) -> Vec<Vec<f64>> {
    let (x, _) = test_batch(data, idx);
    let b = idx.len();
    let g = GraphKernel::<CpuInner>::new(&data.cheb, data.nodes, &Default::default());
    let x4 = input(data, &x, b).reshape([b, data.n_his, data.nodes, 1]);
    let (_, f) = model.forward_features(x4, &g);
    let [_, t, n, c] = f.last_block.dims();
    let v = f
        .last_block
        .into_data()
        .to_vec::<f32>()
        .expect("f32 features");
    (0..b)
        .map(|i| {
            (0..t * n)
                .map(|k| {
                    let base = (i * t * n + k) * c;
                    v[base..base + c].iter().map(|&x| x as f64).sum::<f64>() / c as f64
                })
                .collect()
        })
        .collect()
}

/// The network a student is compared with (blue in the paper's t-SNE plots): its teacher
/// (distillation), else the base network it was pruned from (the configuration's `base`, read
/// from its JSON), else the experiment's plainly trained teacher on the same data (same seed
/// preferred). `None` when that run has no checkpoint.
fn teacher_of<'r>(data: &'r ReportData, store_dir: &Path, run: &RunEntry) -> Option<&'r RunEntry> {
    let base = serde_json::to_value(&run.config)
        .ok()
        .and_then(|v| v.get("base")?.as_str().map(str::to_string));
    if let Some(t) = run
        .config
        .teacher
        .clone()
        .or(base)
        .and_then(|h| data.run(&h))
    {
        return has_checkpoint(store_dir, t).then_some(t);
    }
    data.runs
        .iter()
        .filter(|t| {
            t.config.dataset == run.config.dataset
                && t.config.preset == Some(Preset::Teacher)
                && t.config.loss.kind == LossKind::Mse
                && !is_pruned(t)
                && has_checkpoint(store_dir, t)
        })
        .min_by_key(|t| (t.seed() != run.seed(), t.seed()))
}

fn tsne_figure(w: &mut Writer, models: &mut Models) -> Result<Figure, super::ReportError> {
    let inp = w.inp;
    let mut items = Vec::new();
    let all = groups(&inp.data.runs, |r| model_name(r, inp.table));
    for d in datasets(inp.data) {
        let students: Vec<_> = all
            .iter()
            .filter(|g| g.dataset == d && !g.runs.iter().all(|r| is_reference(r)))
            .collect();
        if students.is_empty() {
            continue;
        }
        let mut panels = Vec::new();
        let mut skipped = Vec::new();
        for grp in &students {
            let name = series_name(&grp.model, &grp.variant);
            let Some(run) = plotted(inp.store_dir, &grp.runs) else {
                skipped.push(format!("{name} (no finished run with a checkpoint)"));
                continue;
            };
            let Some(teacher) = teacher_of(inp.data, inp.store_dir, run) else {
                skipped.push(format!("{name} (no finished teacher with a checkpoint)"));
                continue;
            };
            let data = match models.dataset(run) {
                Ok(x) => x,
                Err(e) => {
                    skipped.push(format!("{name} (cannot load the data: {e})"));
                    continue;
                }
            };
            let idx = spread(&data, SAMPLES);
            let mut vecs = Vec::new();
            for r in [run, teacher] {
                match models.model(r) {
                    Ok(m) => vecs.push(hidden_vectors(m, &data, &idx)),
                    Err(e) => skipped.push(format!("{name} (checkpoint not loaded: {e})")),
                }
            }
            let [mut s, mut t]: [Vec<Vec<f64>>; 2] = match vecs.try_into() {
                Ok(v) => v,
                Err(_) => continue,
            };
            tsne::standardise(&mut s);
            tsne::standardise(&mut t);
            let k = s.len();
            let points: Vec<Vec<f64>> = s.into_iter().chain(t).collect();
            let emb = tsne::embed(&points, TSNE_SEED);
            panels.push(TsnePanel {
                title: format!("{name} vs {}", model_name(teacher, inp.table)),
                student: emb[..k].to_vec(),
                teacher: emb[k..].to_vec(),
            });
        }
        if panels.is_empty() {
            items.push(FigureItem::Note(format!(
                "{}: not made — {}.",
                dataset_title(d),
                skipped.join("; ")
            )));
            continue;
        }
        let title = format!("{}: hidden representations, t-SNE", dataset_title(d));
        let svg = plots::tsne_svg(&title, &panels).map_err(plot_err)?;
        let file = format!("tsne-{d}.svg");
        let path = w
            .write(&file, &svg)
            .map_err(io_err(&inp.out_dir.join(inp.plots).join(&file)))?;
        let mut caption = format!(
            "{}: exact t-SNE (perplexity {}, {} iterations, fixed seed) of the input of the \
             output layer (the last ST-Conv block's output, 4 time steps × N nodes × C \
             channels) for {SAMPLES} test samples spread evenly over the test split; red: \
             student, blue: its teacher (lowest seed of each). Student and teacher have \
             different channel counts, so each sample is summarised by the mean over channels \
             at each time step and node, and each model's vectors are standardised as a block \
             before one joint t-SNE.",
            dataset_title(d),
            tsne::PERPLEXITY,
            tsne::ITERATIONS
        );
        if !skipped.is_empty() {
            caption.push_str(&format!(" Not plotted: {}.", skipped.join("; ")));
        }
        items.push(FigureItem::Image {
            alt: format!("t-SNE of hidden representations, {}", dataset_title(d)),
            path,
            caption,
        });
    }
    if items.is_empty() {
        items.push(FigureItem::Note(
            "Not made: the experiment has no student to compare with a teacher.".into(),
        ));
    }
    Ok(Figure {
        title: "Hidden representations of student vs teacher, t-SNE (paper Section 4.2)".into(),
        items,
    })
}

/// The chart of every study of the experiment ([`super::search::search_svg`]), in
/// `<out_dir>/<plots>/search-<label>-<dataset>.svg`.
pub fn search_figure(
    studies: &[super::search::StudyReport],
    out_dir: &Path,
    plots: &str,
) -> Result<(Figure, Vec<PathBuf>), super::ReportError> {
    let mut items = Vec::new();
    let mut files = Vec::new();
    let dir = out_dir.join(plots);
    for st in studies.iter().filter(|st| !st.trials.is_empty()) {
        let svg = super::search::search_svg(st).map_err(plot_err)?;
        let file = format!("search-{}-{}.svg", super::file_stem(&st.label), st.dataset);
        let path = dir.join(&file);
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&path, svg))
            .map_err(io_err(&path))?;
        files.push(path);
        items.push(FigureItem::Image {
            alt: format!("Search of {}, {}", st.label, dataset_title(st.dataset)),
            path: format!("{plots}/{file}"),
            caption: format!(
                "{}: the objective ({}) of each finished trial over the trials, the best so far \
                 joined as a staircase, then against each searched value; pruned trials at the \
                 best validation MAE they reached.",
                dataset_title(st.dataset),
                st.search.objective
            ),
        });
    }
    Ok((
        Figure {
            title: "Hyperparameter search".into(),
            items,
        },
        files,
    ))
}
