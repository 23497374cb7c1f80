//! End-to-end runs of the `stkd` binary on the shipped data (small slices of it).

use std::path::PathBuf;
use std::process::{Command, Output};

fn stkd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stkd"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run stkd")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stkd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn data_info_pemsd7_matches_stgcn_statistics() {
    let v = json(&stkd(&["data", "info", "pemsd7", "--json"]));
    assert_eq!(v["nodes"], 228);
    assert_eq!(v["steps"], 12672);
    assert_eq!(v["days"], 44);
    assert_eq!(v["edges"], 1664);
    assert!(v["filled"].as_u64().unwrap() >= 228);
    let mean = v["train_mean"].as_f64().unwrap();
    let std = v["train_std"].as_f64().unwrap();
    assert!((mean - 58.4998).abs() < 1e-3, "{mean}");
    assert!((std - 13.7286).abs() < 1e-3, "{std}");
    assert_eq!(v["windows"]["train"], 34 * 268);
    assert_eq!(v["windows"]["val"], 5 * 268);
    assert_eq!(v["windows"]["test"], 5 * 268);
}

#[test]
fn model_summary_reports_table1_parameters() {
    for (model, params) in [("teacher", 296_426), ("base", 39_290), ("student", 7_766)] {
        let v = json(&stkd(&[
            "model",
            "summary",
            "--dataset",
            "pemsd8",
            "--model",
            model,
            "--json",
        ]));
        assert_eq!(v["parameters"], params, "{model}");
        assert!(v["flops_per_sample"].as_u64().unwrap() > 0);
        assert!(v["channels"].is_array());
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = stkd(&["data", "info", "pemsd9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pemsd9") && err.contains("pemsd7"), "{err}");

    let out = stkd(&["data", "info", "pemsd7", "--data-dir", "no/such/dir"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/dir"));

    // A CUDA device without a GPU (CI) or without the feature: an error, not a panic.
    let out = stkd(&[
        "train",
        "--dataset",
        "pemsd8",
        "--model",
        "student",
        "--device",
        "cuda:7",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cuda:7") && !err.contains("panicked"), "{err}");
}

#[test]
fn short_training_run_writes_checkpoint_and_finite_metrics() {
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-train");
    let _ = std::fs::remove_dir_all(&out_dir);
    let v = json(&stkd(&[
        "train",
        "--dataset",
        "pemsd8",
        "--model",
        "student",
        "--epochs",
        "2",
        "--max-steps-per-epoch",
        "4",
        "--batch-size",
        "16",
        "--test-runs",
        "1",
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ]));
    let steps = v["test"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 9);
    for s in steps {
        for k in ["mape", "mae", "rmse"] {
            let x = s[k].as_f64().unwrap();
            assert!(x.is_finite() && x > 0.0, "{k} = {x}");
        }
    }
    assert_eq!(v["epochs"].as_array().unwrap().len(), 2);
    assert_eq!(v["test_time"]["runs"], 1);
    assert_eq!(v["parameters"], 7_766);
    let run_dir = PathBuf::from(v["run_dir"].as_str().unwrap());
    assert!(run_dir.join("model.bin").exists() && run_dir.join("outcome.json").exists());
}
