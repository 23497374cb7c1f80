//! From YAML nodes to raw runs: scalars checked against their types, value choices, datasets,
//! seeds, models, a run's keys and its `prune` block. Every problem is collected with its line.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::data::DatasetName;
use crate::model::{Preset, StgcnConfig};

use super::schema::{
    did_you_mean, Choice, Ctx, Dist, FieldValue, RawRun, StgcnConfigSpec, Ty, Val, DATASETS, DISTS,
    FIELDS, PRUNE_FIELDS, RUN_KEYS,
};
use super::yaml::{Kind, Node, Scalar};

pub(super) fn scalar_val(node: &Node, ty: Ty, path: &str, cx: &mut Ctx) -> Option<Val> {
    let bad = |cx: &mut Ctx, what: String| {
        cx.err(
            node.line,
            path,
            format!("{what}; allowed: {}", ty.allowed()),
        );
        None
    };
    let Some(s) = node.as_scalar() else {
        return bad(cx, format!("expected a single value, got {}", node.shown()));
    };
    match (ty, s) {
        (Ty::Int(lo, hi), Scalar::Int(i)) => {
            if *i < lo || *i > hi {
                bad(
                    cx,
                    format!("{i} is out of range; allowed: {}", ty.allowed()),
                )
            } else {
                Some(Val::I(*i))
            }
        }
        (
            Ty::Float {
                lo,
                hi,
                open_lo,
                open_hi,
            },
            Scalar::Int(_) | Scalar::Float(_),
        ) => {
            let v = node.as_f64().unwrap();
            let ok = v.is_finite()
                && (if open_lo { v > lo } else { v >= lo })
                && (if open_hi { v < hi } else { v <= hi });
            if ok {
                Some(Val::F(v))
            } else {
                bad(
                    cx,
                    format!("{v} is out of range; allowed: {}", ty.allowed()),
                )
            }
        }
        (Ty::Enum(allowed), Scalar::Str(v)) => {
            let l = v.to_ascii_lowercase();
            if allowed.contains(&l.as_str()) {
                Some(Val::S(l))
            } else {
                let hint = did_you_mean(v, allowed)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                bad(
                    cx,
                    format!("unknown value `{v}`{hint}; allowed: {}", allowed.join(", ")),
                )
            }
        }
        (Ty::Bool, Scalar::Bool(b)) => Some(Val::B(*b)),
        (_, other) => bad(cx, format!("expected {}, got `{other}`", ty.allowed())),
    }
}

pub(super) fn parse_choice(node: &Node, ty: Ty, path: &str, cx: &mut Ctx) -> Option<Choice> {
    match &node.kind {
        Kind::Scalar(_) => scalar_val(node, ty, path, cx).map(Choice::Fixed),
        Kind::Seq(items) => {
            if items.is_empty() {
                cx.err(
                    node.line,
                    path,
                    "an empty grid list; give at least one value",
                );
                return None;
            }
            let vals: Vec<Option<Val>> = items
                .iter()
                .enumerate()
                .map(|(i, n)| scalar_val(n, ty, &format!("{path}[{i}]"), cx))
                .collect();
            vals.into_iter()
                .collect::<Option<Vec<_>>>()
                .map(Choice::Grid)
        }
        Kind::Map(entries) => {
            let (key, key_line, arg) = &entries[0];
            if entries.len() != 1 || !DISTS.contains(&key.as_str()) {
                let k = if entries.len() == 1 { key.as_str() } else { "" };
                let hint = did_you_mean(k, DISTS)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                cx.err(
                    *key_line,
                    path,
                    format!(
                        "expected a value, a grid list, one of {{uniform: [lo, hi]}}, {{log_uniform: [lo, hi]}}, {{choice: [...]}}, or a per-dataset mapping ({}){hint}",
                        DATASETS.join(", ")
                    ),
                );
                return None;
            }
            let sub = format!("{path}.{key}");
            let items = match arg.as_seq() {
                Some(items) if !items.is_empty() => items,
                _ => {
                    cx.err(
                        arg.line,
                        &sub,
                        format!("expected a non-empty list, got {}", arg.shown()),
                    );
                    return None;
                }
            };
            let vals = items
                .iter()
                .enumerate()
                .map(|(i, n)| scalar_val(n, ty, &format!("{sub}[{i}]"), cx))
                .collect::<Option<Vec<_>>>()?;
            match key.as_str() {
                "choice" => Some(Choice::Random(Dist::Choice(vals))),
                _ => {
                    if !matches!(ty, Ty::Float { .. }) {
                        cx.err(
                            arg.line,
                            &sub,
                            format!(
                                "{key} needs a real-valued field; use `choice` or a grid for {}",
                                ty.allowed()
                            ),
                        );
                        return None;
                    }
                    if vals.len() != 2 || vals[0].f64() >= vals[1].f64() {
                        cx.err(arg.line, &sub, "expected [lo, hi] with lo < hi");
                        return None;
                    }
                    let (lo, hi) = (vals[0].f64(), vals[1].f64());
                    if key == "log_uniform" {
                        if lo <= 0.0 {
                            cx.err(arg.line, &sub, "log_uniform needs lo > 0");
                            return None;
                        }
                        Some(Choice::Random(Dist::LogUniform(lo, hi)))
                    } else {
                        Some(Choice::Random(Dist::Uniform(lo, hi)))
                    }
                }
            }
        }
    }
}

pub(super) fn parse_field(
    node: &Node,
    ty: Ty,
    path: &str,
    datasets: &[DatasetName],
    cx: &mut Ctx,
) -> Option<FieldValue> {
    let mut fv = FieldValue {
        all: None,
        per_dataset: BTreeMap::new(),
        line: node.line,
    };
    let per_dataset = node
        .as_map()
        .is_some_and(|m| m.iter().all(|(k, _, _)| k.parse::<DatasetName>().is_ok()));
    if per_dataset {
        for (k, line, v) in node.as_map().unwrap() {
            let d: DatasetName = k.parse().unwrap();
            if !datasets.contains(&d) {
                cx.err(
                    *line,
                    format!("{path}.{k}"),
                    format!("dataset {d} is not in this experiment's datasets"),
                );
            }
            if let Some(c) = parse_choice(v, ty, &format!("{path}.{k}"), cx) {
                fv.per_dataset.insert(d, c);
            }
        }
        Some(fv)
    } else {
        fv.all = Some(parse_choice(node, ty, path, cx)?);
        Some(fv)
    }
}

pub(super) fn parse_datasets(node: &Node, path: &str, cx: &mut Ctx) -> Option<Vec<DatasetName>> {
    let items: Vec<&Node> = match &node.kind {
        Kind::Seq(s) => s.iter().collect(),
        Kind::Scalar(_) => vec![node],
        _ => {
            cx.err(
                node.line,
                path,
                format!(
                    "expected a list of dataset names, got {}; allowed: {}",
                    node.shown(),
                    DATASETS.join(", ")
                ),
            );
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, n) in items.iter().enumerate() {
        match n.as_str().map(|s| s.parse::<DatasetName>()) {
            Some(Ok(d)) if !out.contains(&d) => out.push(d),
            Some(Ok(d)) => cx.err(
                n.line,
                format!("{path}[{i}]"),
                format!("dataset {d} listed twice"),
            ),
            _ => {
                let allowed = DATASETS.join(", ");
                let message = match n.as_scalar() {
                    Some(s) => {
                        let hint = did_you_mean(&s.to_string(), DATASETS)
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        format!("unknown dataset `{s}`{hint}; allowed: {allowed}")
                    }
                    None => format!(
                        "expected a dataset name, got {}; allowed: {allowed}",
                        n.shown()
                    ),
                };
                cx.err(n.line, format!("{path}[{i}]"), message);
            }
        }
    }
    if out.is_empty() && cx.errors.is_empty() {
        cx.err(node.line, path, "no datasets given");
    }
    Some(out)
}

pub(super) fn parse_seeds(node: &Node, path: &str, cx: &mut Ctx) -> Option<Vec<u64>> {
    let items: Vec<&Node> = match &node.kind {
        Kind::Seq(s) if !s.is_empty() => s.iter().collect(),
        Kind::Scalar(_) => vec![node],
        _ => {
            cx.err(
                node.line,
                path,
                "expected a seed or a non-empty list of seeds (integers ≥ 0)",
            );
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, n) in items.iter().enumerate() {
        match n.as_i64() {
            Some(s) if s >= 0 => out.push(s as u64),
            _ => cx.err(
                n.line,
                format!("{path}[{i}]"),
                format!("expected an integer ≥ 0, got {}", n.shown()),
            ),
        }
    }
    Some(out)
}

pub(super) fn parse_model(node: &Node, path: &str, cx: &mut Ctx) -> Option<StgcnConfigSpec> {
    const CHANNELS: &str = "{channels: [[1, c_t, c_out], [c_out, c_t, c_out2]]}";
    if let Some(s) = node.as_scalar() {
        let text = s.to_string();
        return match text.parse::<Preset>() {
            Ok(p) => Some(StgcnConfigSpec::Preset(p)),
            Err(_) => {
                let hint = did_you_mean(&text, &["teacher", "base", "student"])
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                cx.err(
                    node.line,
                    path,
                    format!(
                        "unknown model `{text}`{hint}; allowed: the presets teacher, base, \
                         student, or {CHANNELS}"
                    ),
                );
                None
            }
        };
    }
    let Some(map) = node.as_map() else {
        cx.err(
            node.line,
            path,
            format!(
                "expected a preset (teacher, base, student) or {CHANNELS}, got {}",
                node.shown()
            ),
        );
        return None;
    };
    let mut channels = None;
    for (k, line, v) in map {
        if k != "channels" {
            cx.unknown_key(*line, path, k, &["channels"]);
            continue;
        }
        let parsed: Option<Vec<Vec<i64>>> = v.as_seq().and_then(|blocks| {
            blocks
                .iter()
                .map(|b| {
                    b.as_seq()
                        .and_then(|c| c.iter().map(Node::as_i64).collect())
                })
                .collect()
        });
        match parsed {
            Some(b)
                if b.len() == 2 && b.iter().all(|c| c.len() == 3 && c.iter().all(|&x| x > 0)) =>
            {
                let c = |i: usize, j: usize| b[i][j] as usize;
                let ch = [[c(0, 0), c(0, 1), c(0, 2)], [c(1, 0), c(1, 1), c(1, 2)]];
                if let Err(e) = StgcnConfig::new(ch, 1, 12).validate() {
                    cx.err(v.line, format!("{path}.channels"), e.to_string());
                } else {
                    channels = Some(ch);
                }
            }
            _ => cx.err(
                v.line,
                format!("{path}.channels"),
                "expected two blocks of three positive integers, e.g. [[1, 32, 64], [64, 32, 128]]",
            ),
        }
    }
    channels.map(StgcnConfigSpec::Channels)
}

/// Parse the run-level keys of `node` (a run or the defaults) into `raw`.
pub(super) fn parse_run_keys(
    node: &Node,
    path: &str,
    is_defaults: bool,
    datasets: &[DatasetName],
    raw: &mut RawRun,
    cx: &mut Ctx,
) {
    let Some(map) = node.as_map() else {
        cx.err(
            node.line,
            path,
            format!(
                "expected a mapping of run settings, got {}",
                node.describe()
            ),
        );
        return;
    };
    let mut allowed: Vec<&str> = RUN_KEYS.to_vec();
    allowed.extend(FIELDS.iter().map(|(n, _)| *n));
    for (k, line, v, p) in unique_keys(map, path, cx) {
        if let Some((name, ty)) = FIELDS.iter().find(|(n, _)| n == k) {
            if let Some(fv) = parse_field(v, *ty, &p, datasets, cx) {
                raw.fields.insert(name, fv);
            }
            continue;
        }
        match k.as_str() {
            "label" if !is_defaults => match v.as_scalar() {
                Some(Scalar::Str(s))
                    if !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                {
                    raw.label = s.clone()
                }
                _ => cx.err(
                    v.line,
                    &p,
                    "expected a name of letters, digits, '-', '_' or '.'",
                ),
            },
            "model" => {
                raw.model_given = true;
                raw.model = parse_model(v, &p, cx).map(|m| (m, v.line));
            }
            "teacher" if !is_defaults => match v.as_str() {
                Some(s) => raw.teacher = Some((s.to_string(), v.line)),
                None => cx.err(v.line, &p, "expected the label of another run"),
            },
            "datasets" if !is_defaults => raw.datasets = parse_datasets(v, &p, cx),
            "seeds" => raw.seeds = parse_seeds(v, &p, cx),
            "samples" => match v.as_i64() {
                Some(n) if n >= 1 => raw.samples = Some(n as usize),
                _ => cx.err(
                    v.line,
                    &p,
                    "expected the number of random draws, an integer ≥ 1",
                ),
            },
            "search_seed" => match v.as_i64() {
                Some(n) if n >= 0 => raw.search_seed = Some(n as u64),
                _ => cx.err(v.line, &p, "expected an integer ≥ 0"),
            },
            "base" if !is_defaults => match v.as_str() {
                Some(s) => raw.base = Some((s.to_string(), v.line)),
                None => cx.err(v.line, &p, "expected the label of the run to prune"),
            },
            "prune" => parse_prune(v, &p, datasets, raw, cx),
            _ => {
                let allowed: Vec<&str> = if is_defaults {
                    allowed
                        .iter()
                        .copied()
                        .filter(|k| !["label", "teacher", "datasets", "base"].contains(k))
                        .collect()
                } else {
                    allowed.clone()
                };
                cx.unknown_key(*line, path, k, &allowed)
            }
        }
    }
}

/// Parse a `prune:` mapping into `raw`'s fields (`prune.<key>`).
pub(super) fn parse_prune(
    node: &Node,
    path: &str,
    datasets: &[DatasetName],
    raw: &mut RawRun,
    cx: &mut Ctx,
) {
    let keys: Vec<&str> = PRUNE_FIELDS.iter().map(|f| f.0).collect();
    let Some(map) = node.as_map() else {
        cx.err(
            node.line,
            path,
            format!(
                "expected a mapping of pruning settings ({}), got {}",
                keys.join(", "),
                node.describe()
            ),
        );
        return;
    };
    raw.prune_line = Some(node.line);
    for (k, line, v, p) in unique_keys(map, path, cx) {
        match PRUNE_FIELDS.iter().find(|f| f.0 == k) {
            Some(&(_, name, ty)) => {
                if let Some(fv) = parse_field(v, ty, &p, datasets, cx) {
                    raw.fields.insert(name, fv);
                }
            }
            None => cx.unknown_key(*line, path, k, &keys),
        }
    }
}

/// The `data:` block: `split_days` per dataset.
pub(super) fn parse_split_days(data: &Node, cx: &mut Ctx) -> HashMap<DatasetName, [usize; 3]> {
    let mut split_days: HashMap<DatasetName, [usize; 3]> = HashMap::new();
    match data.as_map() {
        Some(m) => {
            for (k, line, v) in m {
                if k != "split_days" {
                    cx.unknown_key(*line, "data", k, &["split_days"]);
                    continue;
                }
                for (d, dl, days) in v.as_map().unwrap_or(&[]) {
                    let p = format!("data.split_days.{d}");
                    let parsed: Option<Vec<i64>> = days
                        .as_seq()
                        .and_then(|s| s.iter().map(Node::as_i64).collect());
                    match (d.parse::<DatasetName>(), parsed) {
                        (Ok(dn), Some(v)) if v.len() == 3 && v.iter().all(|&x| x >= 1) => {
                            split_days.insert(dn, [v[0] as usize, v[1] as usize, v[2] as usize]);
                        }
                        (Err(_), _) => cx.err(
                            *dl,
                            &p,
                            format!("unknown dataset `{d}`; allowed: {}", DATASETS.join(", ")),
                        ),
                        _ => cx.err(days.line, &p, "expected [train, val, test] days, each ≥ 1"),
                    }
                }
                if v.as_map().is_none() {
                    cx.err(
                        v.line,
                        "data.split_days",
                        "expected a mapping dataset → [train, val, test]",
                    );
                }
            }
        }
        None => cx.err(data.line, "data", "expected a mapping"),
    }
    split_days
}

/// The `runs:` list: each run's keys and its label.
pub(super) fn parse_runs(n: &Node, datasets: &[DatasetName], cx: &mut Ctx) -> Vec<RawRun> {
    let mut raws: Vec<RawRun> = Vec::new();
    match n.as_seq() {
        Some(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("runs[{i}]");
                let mut raw = RawRun {
                    line: item.line,
                    ..RawRun::default()
                };
                parse_run_keys(item, &path, false, datasets, &mut raw, cx);
                if raw.label.is_empty() && item.get("label").is_none() {
                    cx.err(
                        item.line,
                        &path,
                        "missing `label`: every run needs a unique label",
                    );
                }
                if !raw.label.is_empty() {
                    raw.path = format!("runs[{i}] ({})", raw.label);
                } else {
                    raw.path = path;
                }
                raws.push(raw);
            }
        }
        _ => cx.err(n.line, "runs", "expected a non-empty list of runs"),
    }
    raws
}

/// The entries of a mapping at `path` with each one's path (`<path>.<key>`); a key given again
/// is an error at its line and left out.
pub(super) fn unique_keys<'n>(
    map: &'n [(String, usize, Node)],
    path: &str,
    cx: &mut Ctx,
) -> Vec<(&'n String, &'n usize, &'n Node, String)> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(map.len());
    for (k, line, v) in map {
        let p = format!("{path}.{k}");
        if seen.insert(k.as_str()) {
            out.push((k, line, v, p));
        } else {
            cx.err(*line, &p, "key given twice");
        }
    }
    out
}
