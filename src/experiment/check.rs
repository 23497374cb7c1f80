//! Checks across runs before expansion: unique labels, a model for every run, references to
//! other runs, dependency cycles, random search sizes, pruning runs' own keys.

use std::collections::HashMap;

use super::schema::{all_fields, did_you_mean, Choice, Ctx, FieldValue, RawRun};

pub(super) fn field<'a>(
    run: &'a RawRun,
    defaults: &'a RawRun,
    name: &str,
) -> Option<&'a FieldValue> {
    run.fields.get(name).or_else(|| defaults.fields.get(name))
}

/// `searched`: the file has a `search:` block (distributions are searched, not drawn).
pub(super) fn check_runs(raws: &[RawRun], defaults: &RawRun, searched: bool, cx: &mut Ctx) {
    let mut labels: HashMap<&str, usize> = HashMap::new();
    for r in raws.iter().filter(|r| !r.label.is_empty()) {
        if let Some(first) = labels.insert(&r.label, r.line) {
            cx.err(
                r.line,
                &r.path,
                format!(
                    "label `{}` is already used by the run on line {first}",
                    r.label
                ),
            );
        }
    }
    for r in raws {
        let given = r.model_given || defaults.model_given;
        if !given && r.model.is_none() && defaults.model.is_none() && r.base.is_none() {
            cx.err(
                r.line,
                format!("{}.model", r.path),
                "missing `model`: teacher, base, student or {channels: ...}",
            );
        }
        // Whether the run needs its teacher is a rule of the resolved configuration
        // ([`RunConfig::problems`], checked per expanded run); here only that it exists.
        match &r.teacher {
            Some((t, line)) if !labels.contains_key(t.as_str()) => {
                let known: Vec<&str> = labels.keys().copied().collect();
                let hint = did_you_mean(t, &known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                cx.err(
                    *line,
                    format!("{}.teacher", r.path),
                    format!("no run is labelled `{t}`{hint}"),
                );
            }
            _ => {}
        }
        let random = all_fields().any(|(n, _)| {
            field(r, defaults, n).is_some_and(|f| {
                f.all
                    .iter()
                    .chain(f.per_dataset.values())
                    .any(|c| matches!(c, Choice::Random(_)))
            })
        });
        if random && !searched && r.samples.or(defaults.samples).is_none() {
            cx.err(r.line, format!("{}.samples", r.path), "random search values need `samples: <number of draws>` (in the run or in defaults), or a `search:` block");
        }
        if searched && (r.samples.is_some() || r.search_seed.is_some()) {
            cx.err(r.line, format!("{}.samples", r.path), "with a `search:` block the trials are `search.trials` and the seed `search.seed`: remove `samples` and `search_seed`");
        }
    }
    check_prune_runs(raws, defaults, &labels, cx);
    // Cycles in the dependency graph (teacher and base edges).
    let index: HashMap<&str, usize> = raws
        .iter()
        .enumerate()
        .map(|(i, r)| (r.label.as_str(), i))
        .collect();
    let edges = |r: &RawRun| -> Vec<(usize, usize, &'static str)> {
        [(&r.teacher, "teacher"), (&r.base, "base")]
            .into_iter()
            .filter_map(|(e, what)| {
                let (t, line) = e.as_ref()?;
                Some((*index.get(t.as_str())?, *line, what))
            })
            .collect()
    };
    // A path of runs from `from` to `to`, depth first.
    fn path_to(
        from: usize,
        to: usize,
        edges: &dyn Fn(usize) -> Vec<usize>,
        seen: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        if from == to {
            return Some(vec![to]);
        }
        if seen.contains(&from) {
            return None;
        }
        seen.push(from);
        for next in edges(from) {
            if let Some(mut p) = path_to(next, to, edges, seen) {
                p.insert(0, from);
                return Some(p);
            }
        }
        None
    }
    let next_of = |i: usize| edges(&raws[i]).into_iter().map(|e| e.0).collect();
    for (start, r) in raws.iter().enumerate() {
        for (next, line, what) in edges(r) {
            if let Some(p) = path_to(next, start, &next_of, &mut Vec::new()) {
                let chain: Vec<&str> = std::iter::once(start)
                    .chain(p)
                    .map(|i| raws[i].label.as_str())
                    .collect();
                cx.err(
                    line,
                    format!("{}.{what}", r.path),
                    format!("dependency cycle: {}", chain.join(" -> ")),
                );
                break;
            }
        }
    }
}

/// The rules of pruning runs (those with `base`).
pub(super) fn check_prune_runs(
    raws: &[RawRun],
    defaults: &RawRun,
    labels: &HashMap<&str, usize>,
    cx: &mut Ctx,
) {
    let by_label: HashMap<&str, &RawRun> = raws.iter().map(|r| (r.label.as_str(), r)).collect();
    for r in raws {
        let Some((b, bline)) = &r.base else {
            if let Some(line) = r.prune_line {
                cx.err(
                    line,
                    format!("{}.prune", r.path),
                    "a pruning run needs `base: <label of the run to prune>`",
                );
            }
            continue;
        };
        let p = |f: &str| format!("{}.{f}", r.path);
        match by_label.get(b.as_str()) {
            None => {
                let known: Vec<&str> = labels.keys().copied().collect();
                let hint = did_you_mean(b, &known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                cx.err(*bline, p("base"), format!("no run is labelled `{b}`{hint}"));
            }
            Some(base) if base.base.is_some() => cx.err(
                *bline,
                p("base"),
                format!("`{b}` is itself a pruning run; prune a trained run (its compacted channels are only known once it has run)"),
            ),
            _ => {}
        }
        let at = r.prune_line.unwrap_or(r.line);
        if field(r, defaults, "prune.target").is_none() {
            cx.err(
                at,
                p("prune.target"),
                "missing: the share of the parameters to remove, in percent, in (0, 100)",
            );
        }
        for (a, b) in [
            ("prune.steps", "prune.share_per_step"),
            ("prune.interval_epochs", "prune.interval_steps"),
        ] {
            if let (Some(_), Some(fb)) = (field(r, defaults, a), field(r, defaults, b)) {
                cx.err(
                    fb.line,
                    p(b),
                    format!("give either `{}` or `{}`, not both", &a[6..], &b[6..]),
                );
            }
        }
        if let Some((_, line)) = &r.model {
            cx.err(
                *line,
                p("model"),
                "a pruning run starts from its base run's network: remove `model`",
            );
        }
        if let Some(f) = r.fields.get("epochs") {
            cx.err(
                f.line,
                p("epochs"),
                "a pruning run's length is set by `prune`: steps × interval, then finetune_epochs; remove `epochs`",
            );
        }
    }
}
