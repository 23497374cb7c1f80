//! The trials of a search, proposed one at a time while a sweep runs ([`propose`]): the sampler
//! reads the study's trials from the store (its whole state), so a killed search resumes where
//! it stood and two sweeps on one store share one numbering.

use crate::experiment::{Metric, Sampler, SearchSpec, TestMetric};
use crate::plan::PlannedStudy;
use crate::rng::Rng;
use crate::search::{grid_values, random_values, Tpe, Trial, Value};
use crate::store::{NewRun, RunStatus, Store, StoreError, TrialRow};

/// The objective of a trial, lower is better (negated when the search maximises): a finished
/// trial's metric; `None` for a trial that is not finished (pending, running, pruned, failed).
pub fn objective(
    store: &Store,
    trial: &TrialRow,
    search: &SearchSpec,
) -> Result<Option<f64>, StoreError> {
    if trial.status != RunStatus::Done {
        return Ok(None);
    }
    let value = match search.objective {
        Metric::ValMae => store
            .val_curve(&trial.hash)?
            .into_iter()
            .filter(|v| !v.is_nan())
            .reduce(f64::min),
        Metric::Test { metric, minutes } => store.result(&trial.hash)?.and_then(|r| {
            let step = (minutes / 5) as u32;
            r.metrics
                .iter()
                .find(|m| m.split == "test" && m.step == step)
                .map(|m| match metric {
                    TestMetric::Mae => m.mae,
                    TestMetric::Rmse => m.rmse,
                    TestMetric::Mape => m.mape,
                })
        }),
    };
    Ok(value.map(|v| if search.maximize { -v } else { v }))
}

/// A trial's values as stored.
pub fn values_of(trial: &TrialRow) -> Option<Vec<Value>> {
    serde_json::from_str(&trial.values_json).ok()
}

/// Proposes the next trial of `st` for experiment `experiment` when the study has budget left
/// and its dependencies are done, and adds it to the store as a pending run. Trials that are
/// not finished count as the worst observations (so running ones steer the sampler away from
/// what is being tried, a "constant liar"). Same trials in the store, same proposal: the
/// random stream is seeded by the search seed, the study and the trial's number. Returns the
/// new run's hash.
pub fn propose(
    store: &mut Store,
    experiment: &str,
    st: &PlannedStudy,
) -> Result<Option<String>, StoreError> {
    let search = &st.study.search;
    let trials = store.trials(&st.key)?;
    if trials.len() >= search.trials {
        return Ok(None);
    }
    for dep in &st.deps {
        if store.run(dep)?.map(|r| r.status) != Some(RunStatus::Done) {
            return Ok(None);
        }
    }
    let mut observed = Vec::with_capacity(trials.len());
    for t in &trials {
        if let Some(values) = values_of(t) {
            let objective = objective(store, t, search)?.unwrap_or(f64::INFINITY);
            observed.push(Trial { values, objective });
        }
    }
    let number = trials.len() + 1;
    let stream = crate::digest::sha256_hex(st.key.as_bytes());
    let stream = u64::from_str_radix(&stream[..15], 16).expect("hex digits") + number as u64;
    let mut rng = Rng::new(search.seed, stream);
    let values = match search.sampler {
        // The grid is spent after its last combination, whatever the budget.
        Sampler::Grid => match grid_values(&st.study.space, number - 1) {
            Some(v) => v,
            None => return Ok(None),
        },
        Sampler::Random => random_values(&st.study.space, &mut rng),
        Sampler::Tpe => Tpe::default().suggest(&st.study.space, &observed, &mut rng),
    };
    let job = st.trial(number, &values);
    let run = NewRun {
        hash: job.hash.clone(),
        label: job.display_name(),
        dataset: job.config.dataset.to_string(),
        config_json: serde_json::to_string(&job.config).expect("RunConfig serialises"),
        deps: job.deps.clone(),
    };
    let values_json = serde_json::to_string(&values).expect("values serialise");
    let added = store.add_trial(
        &st.key,
        number,
        search.trials,
        experiment,
        &run,
        &values_json,
    )?;
    Ok(added.then_some(job.hash))
}
