//! The teacher cache (`stkd::distill::cache`) on a small slice of the real data (PeMSD8's four
//! available days, 2/1/1): a response-based student (ORD), every feature-based one (TCD, SCD,
//! STCD, SKD) and a KDIS pruning run (STCD importance and fine-tuning) end with the same curve,
//! weights and metrics, bit for bit, whether the teacher's side comes from the cache or from a teacher forward at every step
//! (`STKD_TEACHER_CACHE=off`).

mod common;
use common::*;

const RUNS: &str = "  - {label: teacher, model: teacher, max_steps_per_epoch: 6}\n  \
                    - {label: ord, model: student, teacher: teacher, loss: ord, epochs: 2, max_steps_per_epoch: 8}\n  \
                    - {label: tcd, model: student, teacher: teacher, loss: tcd, epochs: 2, max_steps_per_epoch: 8}\n  \
                    - {label: scd, model: student, teacher: teacher, loss: scd, epochs: 2, max_steps_per_epoch: 8}\n  \
                    - {label: stcd, model: student, teacher: teacher, loss: stcd, epochs: 2, max_steps_per_epoch: 8}\n  \
                    - {label: skd, model: student, teacher: teacher, loss: skd, epochs: 2, max_steps_per_epoch: 8}\n  \
                    - {label: base, model: base, max_steps_per_epoch: 6}\n  \
                    - {label: kdis, base: base, teacher: teacher, loss: stcd, max_steps_per_epoch: 6, prune: {method: kdis, granularity: channel, target: 50, steps: 2, interval_epochs: 1, finetune_epochs: 1}}\n";

/// A run's outcome without its wall times (`seconds` anywhere, the test time) and its folder.
fn outcome(dir: &std::path::Path, hash: &str) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|k, _| {
                    !k.contains("seconds") && !matches!(k.as_str(), "test_time" | "run_dir")
                });
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let text = std::fs::read(dir.join("runs").join(hash).join("outcome.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    strip(&mut v);
    v
}

#[test]
fn cached_and_per_step_teachers_give_the_same_students_bit_for_bit() {
    let (on, off) = (tmp("cache-on"), tmp("cache-off"));
    let mut hashes = Vec::new();
    for (dir, setting) in [(&on, "on"), (&off, "off")] {
        let file = write_exp(dir, RUNS);
        let store = dir.join("stkd.db");
        let out = sweep_cmd(&file, &store, &["--no-timing"])
            .env("STKD_TEACHER_CACHE", setting)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        hashes = status_rows(&file, &store)
            .into_iter()
            .map(|r| (r.run, r.hash))
            .collect();
    }
    let teacher = &hashes
        .iter()
        .find(|(r, _)| r.starts_with("teacher"))
        .unwrap()
        .1;
    let cache = on.join("runs").join(teacher).join("teacher-cache");
    let files = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(
        files, 8,
        "outputs, tcd, spatial and last-block, each with its description"
    );
    assert!(!off
        .join("runs")
        .join(teacher)
        .join("teacher-cache")
        .exists());
    for (run, hash) in &hashes {
        assert_eq!(outcome(&on, hash), outcome(&off, hash), "{run}");
        let model = |d: &std::path::Path| {
            std::fs::read(d.join("runs").join(hash).join("model.bin")).unwrap()
        };
        assert_eq!(model(&on), model(&off), "{run}: model.bin");
    }
}
