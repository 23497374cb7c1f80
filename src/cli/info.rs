//! `stkd data info` and `stkd model summary`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use tabled::Tabled;

use crate::{print_json, terminal_table};
use stkd::data::{DataConfig, Dataset, DatasetName};
use stkd::model::{Preset, StgcnConfig};

#[derive(Subcommand)]
pub(crate) enum DataCmd {
    /// Nodes, steps, days, filled gaps, edges, z-score statistics, windows per split.
    Info {
        dataset: DatasetName,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum ModelCmd {
    /// Parameters, channels and FLOPs of a preset on a dataset's graph.
    Summary {
        #[arg(long)]
        dataset: DatasetName,
        #[arg(long)]
        model: Preset,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
pub(crate) struct DataArgs {
    /// Folder holding pemsd7/ and pemsd8/.
    #[arg(long, default_value = "data")]
    pub(crate) data_dir: PathBuf,
    /// The full ASTGCN PEMS08.npz (all 62 days); without it PeMSD8 uses the partial file.
    #[arg(long)]
    pub(crate) pems08_npz: Option<PathBuf>,
    /// Train/val/test days, e.g. 34,5,5.
    #[arg(long, value_delimiter = ',')]
    pub(crate) split_days: Option<Vec<usize>>,
}

impl DataArgs {
    /// `--split-days train,val,test`.
    pub(crate) fn split_days(&self) -> Result<Option<[usize; 3]>> {
        match self.split_days.as_deref() {
            None => Ok(None),
            Some(&[a, b, c]) => Ok(Some([a, b, c])),
            Some(v) => anyhow::bail!(
                "--split-days {v:?}: give three day counts, train,val,test (e.g. 34,5,5)"
            ),
        }
    }

    pub(crate) fn load(&self, dataset: DatasetName) -> Result<Dataset> {
        let mut cfg = DataConfig::new(dataset);
        cfg.data_dir = self.data_dir.clone();
        cfg.pems08_npz = self.pems08_npz.clone();
        cfg.split_days = self.split_days()?;
        Dataset::load(&cfg).with_context(|| format!("loading dataset {dataset}"))
    }
}

pub(crate) fn data_info(dataset: DatasetName, args: &DataArgs, json: bool) -> Result<()> {
    let data = args.load(dataset)?;
    let info = data.info();
    if json {
        return print_json(&info);
    }
    #[derive(Tabled)]
    struct Row {
        field: &'static str,
        value: String,
    }
    let rows = vec![
        Row {
            field: "dataset",
            value: info.dataset.clone(),
        },
        Row {
            field: "nodes",
            value: info.nodes.to_string(),
        },
        Row {
            field: "steps",
            value: info.steps.to_string(),
        },
        Row {
            field: "days (train/val/test)",
            value: format!("{} ({:?})", info.days, info.split_days),
        },
        Row {
            field: "filled readings",
            value: info.filled.to_string(),
        },
        Row {
            field: "edges (directed)",
            value: info.edges.to_string(),
        },
        Row {
            field: "isolated nodes (no edge)",
            value: info.isolated.to_string(),
        },
        Row {
            field: "train mean / std (mph)",
            value: format!("{:.4} / {:.4}", info.train_mean, info.train_std),
        },
        Row {
            field: "val MAE of predicting the train mean (mph)",
            value: format!("{:.4}", info.val_mae_of_train_mean),
        },
        Row {
            field: "windows (train/val/test)",
            value: format!(
                "{} / {} / {}",
                info.windows.train, info.windows.val, info.windows.test
            ),
        },
        Row {
            field: "checksum",
            value: info.checksum.clone(),
        },
    ];
    println!("{}", terminal_table(rows));
    for n in &info.notes {
        println!("note: {n}");
    }
    Ok(())
}

#[derive(Serialize)]
pub(crate) struct ModelSummary {
    pub(crate) dataset: DatasetName,
    pub(crate) model: Preset,
    pub(crate) nodes: usize,
    pub(crate) channels: [[usize; 3]; 2],
    pub(crate) parameters: usize,
    pub(crate) flops_per_sample: u64,
    pub(crate) flops_counted: &'static str,
}

pub(crate) const FLOPS_COUNTED: &str = "2 x multiply-accumulates of one forward step (12 steps in, 1 out) for one sample: \
temporal convolutions, 1x1 bottleneck residuals, Chebyshev graph convolution (dense N x N node mixing for each \
of Ks = 3 terms, then theta), output 1x1 convolutions and the fully connected layer; elementwise work \
(bias, GLU gate, ReLU, sigmoid, LayerNorm, residual adds) is not counted";

pub(crate) fn model_summary(dataset: DatasetName, model: Preset, json: bool) -> Result<()> {
    let cfg = StgcnConfig::new(model.channels(), dataset.nodes(), 12);
    let s = ModelSummary {
        dataset,
        model,
        nodes: cfg.nodes,
        channels: cfg.channels,
        parameters: cfg.param_count(),
        flops_per_sample: cfg.flops_per_sample(),
        flops_counted: FLOPS_COUNTED,
    };
    if json {
        return print_json(&s);
    }
    println!(
        "{model} on {dataset} (N = {}): channels {:?}, {} parameters, {:.3} GFLOPs per sample and forward step",
        s.nodes,
        s.channels,
        s.parameters,
        s.flops_per_sample as f64 / 1e9
    );
    println!("FLOPs: {FLOPS_COUNTED}");
    Ok(())
}
