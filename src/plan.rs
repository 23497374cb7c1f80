//! From an expanded experiment to a graph of jobs keyed by content hash (spec §6): a run is
//! identified by its resolved configuration (including its teacher's identity), the checksum
//! of its data and the model-code version, so an identical run is never computed twice —
//! within a file or across files.

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::data::{DataConfig, DataError, Dataset, DatasetName};
use crate::experiment::{Experiment, RunConfig};

/// Bump when a code change alters what a run computes (model, data pipeline, training loop,
/// losses): every run hash changes with it, so old results are not mistaken for new ones.
pub const CODE_VERSION: &str = "stkd-2";

/// The git commit this binary was built from (`-dirty` when tracked files differed, `unknown`
/// outside a checkout); recorded with every run, not part of its hash.
pub const CODE_COMMIT: &str = env!("STKD_COMMIT");

/// One run to execute.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub hash: String,
    pub label: String,
    pub variant: String,
    pub config: RunConfig,
    /// Hashes of the runs this one needs (its teacher, the base run it prunes).
    pub deps: Vec<String>,
}

impl Job {
    pub fn display_name(&self) -> String {
        let d = self.config.dataset;
        if self.variant.is_empty() {
            format!("{} {d}", self.label)
        } else {
            format!("{} {d} [{}]", self.label, self.variant)
        }
    }
}

/// The jobs of an experiment in dependency order (teachers first), duplicates merged.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    pub jobs: Vec<Job>,
    /// The searched runs, whose trials the sweep proposes one at a time.
    pub studies: Vec<PlannedStudy>,
}

/// A study with its dependencies resolved: a trial's job is built from its values.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStudy {
    /// `<experiment>/<label>/<dataset>[/seed=<seed>]`: trials are numbered within it.
    pub key: String,
    #[serde(skip)]
    pub study: crate::experiment::Study,
    pub data_checksum: String,
    pub teacher: Option<String>,
    /// The base run's hash and network (a pruning study prunes it).
    pub base: Option<(String, crate::model::StgcnConfig)>,
    /// Hashes of the runs every trial needs.
    pub deps: Vec<String>,
}

impl PlannedStudy {
    /// The job of trial `number` with `values`.
    pub fn trial(&self, number: usize, values: &[crate::search::Value]) -> Job {
        let mut config = self.study.config(values);
        config.teacher = self.teacher.clone();
        if let Some((hash, model)) = &self.base {
            config.base = Some(hash.clone());
            config.model = model.clone();
        }
        Job {
            hash: run_hash(&config, &self.data_checksum),
            label: self.study.label.clone(),
            variant: format!("trial={number} {}", self.study.describe(values)),
            config,
            deps: self.deps.clone(),
        }
    }
}

/// Identity of a run: hash of the code version, the data checksum and the canonical JSON of
/// its configuration (which carries the teacher's hash).
pub fn run_hash(config: &RunConfig, data_checksum: &str) -> String {
    let mut h = Sha256::new();
    h.update(CODE_VERSION.as_bytes());
    h.update(b"\n");
    h.update(data_checksum.as_bytes());
    h.update(b"\n");
    h.update(serde_json::to_vec(config).expect("RunConfig serialises"));
    crate::digest::hex(&h.finalize()[..8])
}

/// A data set whose files could not be read or verified while planning.
#[derive(Debug, thiserror::Error)]
#[error("reading data set {dataset} to identify the experiment's runs: {cause}")]
pub struct PlanDataError {
    pub dataset: DatasetName,
    pub cause: DataError,
}

/// [`plan`] with each data set's checksum from its files in `data_dir` ([`Dataset::checksum`]:
/// verified, not parsed).
pub fn plan_in(exp: &Experiment, data_dir: &std::path::Path) -> Result<Plan, PlanDataError> {
    plan(exp, |dataset| {
        let mut cfg = DataConfig::new(dataset);
        cfg.data_dir = data_dir.to_path_buf();
        Dataset::checksum(&cfg).map_err(|cause| PlanDataError { dataset, cause })
    })
}

/// Hash every run (teachers and bases before their dependants, so a run's hash covers theirs).
/// `checksum` gives the data checksum of a dataset.
pub fn plan<E>(
    exp: &Experiment,
    mut checksum: impl FnMut(DatasetName) -> Result<String, E>,
) -> Result<Plan, E> {
    let mut sums: HashMap<DatasetName, String> = HashMap::new();
    let mut hashes: Vec<String> = Vec::with_capacity(exp.runs.len());
    let mut jobs: Vec<Job> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for run in &exp.runs {
        let d = run.config.dataset;
        if let std::collections::hash_map::Entry::Vacant(e) = sums.entry(d) {
            e.insert(checksum(d)?);
        }
        let mut config = run.config.clone();
        config.teacher = run.teacher.map(|t| hashes[t].clone());
        config.base = run.base.map(|b| hashes[b].clone());
        let mut deps: Vec<String> = Vec::new();
        for h in config.teacher.iter().chain(&config.base) {
            if !deps.contains(h) {
                deps.push(h.clone());
            }
        }
        let hash = run_hash(&config, &sums[&d]);
        hashes.push(hash.clone());
        if seen.contains_key(&hash) {
            continue;
        }
        seen.insert(hash.clone(), jobs.len());
        jobs.push(Job {
            hash,
            label: run.label.clone(),
            variant: run.variant.clone(),
            config,
            deps,
        });
    }
    let mut studies = Vec::with_capacity(exp.studies.len());
    for st in &exp.studies {
        let d = st.dataset;
        if let std::collections::hash_map::Entry::Vacant(e) = sums.entry(d) {
            e.insert(checksum(d)?);
        }
        let teacher = st.teacher.map(|t| hashes[t].clone());
        let base = st
            .base
            .map(|b| (hashes[b].clone(), exp.runs[b].config.model.clone()));
        let deps: Vec<String> = teacher
            .iter()
            .chain(base.as_ref().map(|(h, _)| h))
            .cloned()
            .collect();
        let seeded = exp
            .studies
            .iter()
            .any(|o| o.label == st.label && o.dataset == d && o.seed != st.seed);
        let mut key = format!("{}/{}/{d}", exp.name, st.label);
        if seeded {
            key.push_str(&format!("/seed={}", st.seed));
        }
        studies.push(PlannedStudy {
            key,
            study: st.clone(),
            data_checksum: sums[&d].clone(),
            teacher,
            base,
            deps,
        });
    }
    Ok(Plan {
        name: exp.name.clone(),
        jobs,
        studies,
    })
}

#[cfg(test)]
mod prune_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::parse_experiment;
    use std::path::Path;

    fn plan_of(text: &str) -> Plan {
        let e = parse_experiment(text, Path::new("t.yaml")).unwrap();
        plan(&e, |d| Ok::<_, ()>(format!("sum-{d}"))).unwrap()
    }

    #[test]
    fn shared_teacher_has_one_hash_across_files_and_students_depend_on_it() {
        let a = plan_of("name: a\ndatasets: [pemsd7]\nruns:\n  - {label: teacher, model: teacher}\n  - {label: s1, model: student, teacher: teacher, loss: ord, alpha1: 0.5}\n");
        let b = plan_of("name: b\ndatasets: [pemsd7]\nruns:\n  - {label: big, model: teacher}\n  - {label: s2, model: student, teacher: big, loss: tcd}\n");
        assert_eq!(
            a.jobs[0].hash, b.jobs[0].hash,
            "same config → same run, whatever its label"
        );
        assert_eq!(a.jobs[1].deps, vec![a.jobs[0].hash.clone()]);
        assert_eq!(
            a.jobs[1].config.teacher.as_deref(),
            Some(a.jobs[0].hash.as_str())
        );
        assert_ne!(a.jobs[1].hash, b.jobs[1].hash);
    }

    #[test]
    fn unused_loss_weights_do_not_change_a_run() {
        let a = plan_of("name: a\ndatasets: [pemsd7]\nruns:\n  - {label: t, model: teacher}\n");
        let b = plan_of("name: b\ndatasets: [pemsd7]\ndefaults: {alpha1: 0.9, beta: 0.1}\nruns:\n  - {label: t, model: teacher}\n");
        assert_eq!(
            a.jobs[0].hash, b.jobs[0].hash,
            "mse reads neither alpha1 nor beta"
        );
    }

    #[test]
    fn identical_runs_are_merged_and_anything_that_matters_changes_the_hash() {
        let p = plan_of("name: a\ndatasets: [pemsd7]\nruns:\n  - {label: x, model: base}\n  - {label: y, model: base}\n  - {label: z, model: base, lr: 2.0e-3}\n");
        assert_eq!(p.jobs.len(), 2);
        let e = parse_experiment(
            "name: a\ndatasets: [pemsd7]\nruns:\n  - {label: x, model: base}\n",
            Path::new("t"),
        )
        .unwrap();
        let h1 = plan(&e, |_| Ok::<_, ()>("data-1".to_string()))
            .unwrap()
            .jobs[0]
            .hash
            .clone();
        let h2 = plan(&e, |_| Ok::<_, ()>("data-2".to_string()))
            .unwrap()
            .jobs[0]
            .hash
            .clone();
        assert_ne!(h1, h2, "the data checksum is part of the identity");
    }
}
