use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use super::forward::{apply_masks, forward_masked_features, mask_grads, DeviceMasks, Importance};
use super::mask::{
    apply_masks_host, counts_for_goal, group_scores, plan_counts, select_channels, select_elements,
};
use super::topology::{param_muts, param_refs, Key};
use super::*;
use crate::backend::{Cpu, CpuInner};
use crate::data::{Dataset, Split};
use crate::distill::{mse_loss, LossConfig, LossKind};
use crate::model::{GraphKernel, Preset, Stgcn, StgcnConfig};
use crate::rng::Rng;
use crate::train::{self, backward_step, Batcher, TrainConfig};

type TB = CpuInner;

fn dev() -> burn::tensor::Device<TB> {
    Default::default()
}

pub(crate) fn tiny() -> Dataset {
    Dataset::synthetic(6, 6, 48, 11)
}

pub(crate) fn cfg(channels: crate::model::Channels, nodes: usize) -> StgcnConfig {
    StgcnConfig::new(channels, nodes, 12)
}

/// Every parameter random (LayerNorm γ around 1), so that no bias or β is trivially zero.
fn randomize<B: burn::tensor::backend::Backend>(m: &mut Stgcn<B>, t: &Topology, seed: u64) {
    let mut rng = Rng::new(seed, 77);
    let device = Default::default();
    for (mut p, spec) in param_muts(m).into_iter().zip(&t.params) {
        let gamma = matches!(spec.key, Key::LnGamma(_) | Key::OutLnGamma);
        let v: Vec<f32> = (0..spec.len())
            .map(|_| {
                let r = rng.next_f64() as f32 - 0.5;
                if gamma {
                    1.0 + r
                } else {
                    r
                }
            })
            .collect();
        p.set(v, &spec.shape, &device);
    }
}

fn to_vec<const D: usize>(t: Tensor<TB, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn input(b: usize, n: usize, seed: u64) -> Tensor<TB, 4> {
    let mut rng = Rng::new(seed, 5);
    let v: Vec<f32> = (0..b * 12 * n)
        .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(v, [b, 12, n, 1]), &dev())
}

/// A random channel state reached by `steps` pruning steps with random scores.
fn random_state(t: &Topology, seed: u64, q: f64) -> ChannelState {
    let mut rng = Rng::new(seed, 3);
    let mut st = ChannelState::full(t);
    for step in 1..=2 {
        let qs = q * step as f64 / 2.0;
        let counts = plan_counts(t, &st.counts(), qs).expect("feasible counts");
        let gs: Vec<Vec<f64>> = t
            .spaces
            .iter()
            .map(|s| (0..s.size).map(|_| rng.next_f64()).collect())
            .collect();
        select_channels(t, &mut st, &counts, &gs);
    }
    st.check(t).unwrap();
    st
}

const SHAPES: [crate::model::Channels; 6] = [
    [[1, 2, 4], [4, 2, 8]],
    [[1, 8, 16], [16, 8, 32]],
    [[1, 3, 5], [5, 4, 6]],
    [[1, 4, 4], [4, 6, 3]],
    [[1, 1, 3], [3, 2, 2]],
    [[1, 6, 3], [3, 3, 7]],
];

#[test]
fn topology_covers_every_parameter_in_model_order() {
    for ch in SHAPES {
        let c = cfg(ch, 5);
        let t = Topology::new(&c);
        let m = Stgcn::<TB>::new(&c, 1, &dev()).unwrap();
        let refs = param_refs(&m);
        assert_eq!(refs.len(), t.params.len(), "{ch:?}");
        for (p, spec) in refs.iter().zip(&t.params) {
            assert_eq!(p.to_vec().len(), spec.len(), "{:?} of {ch:?}", spec.key);
        }
        assert_eq!(t.total_params(), c.param_count());
        assert_eq!(t.params_for(&t.sizes()), c.param_count());
    }
    // Identity residuals merge spaces: [1,4,4] merges c_t and c_out of block 1.
    let t = Topology::new(&cfg([[1, 4, 4], [4, 6, 3]], 5));
    assert_eq!(t.block_space(0, false), t.block_space(0, true));
    assert_eq!(t.block_space(0, true), 1);
    // The input (1 channel) merges with a 1-channel c_t, which is then fixed.
    let t = Topology::new(&cfg([[1, 1, 3], [3, 2, 2]], 5));
    assert!(t.spaces[t.block_space(0, false)].fixed);
}

#[test]
fn importance_is_the_squared_gradient_times_weight_accumulated_and_averaged() {
    let data = tiny();
    let c = cfg(Preset::Student.channels(), data.nodes);
    let t = Topology::new(&c);
    let device = Default::default();
    let mut model = Stgcn::<Cpu>::new(&c, 3, &device).unwrap();
    randomize(&mut model, &t, 4);
    let g = GraphKernel::<Cpu>::new(&data.cheb, data.nodes, &device);
    let mut imp = Importance::<TB>::new(&t, &device);
    let mut batcher = Batcher::default();
    let mut want: Vec<Vec<f64>> = t.params.iter().map(|p| vec![0.0; p.len()]).collect();
    let mut fc_bias_hand = vec![0.0f64; data.nodes];
    let batches = [vec![0usize, 1, 2, 3], vec![4, 5, 6]];
    for idx in &batches {
        let b = batcher.batch::<Cpu>(&data, Split::Train, idx, &device);
        let y = model.forward(b.x.clone(), &g);
        // Hand gradient of mean (y − T)² with respect to the per-node output bias.
        let yv = to_vec(y.clone().inner());
        let tv = to_vec(b.y1.clone().inner());
        let bias = param_refs(&model).last().unwrap().to_vec();
        let count = (idx.len() * data.nodes) as f64;
        for n in 0..data.nodes {
            let gsum: f64 = (0..idx.len())
                .map(|i| 2.0 * (yv[i * data.nodes + n] - tv[i * data.nodes + n]) as f64)
                .sum::<f64>()
                / count;
            fc_bias_hand[n] += (gsum * bias[n] as f64).powi(2);
        }
        let (grads, _) = backward_step(mse_loss(y, b.y1.clone()), &model);
        imp.add(&model, &grads);
        for (i, p) in param_refs(&model).iter().enumerate() {
            let w = p.to_vec();
            let gr: Vec<f32> = match p {
                topology::PRef::D1(_) => to_vec(grads.get::<TB, 1>(p.id()).unwrap()),
                topology::PRef::D2(_) => to_vec(grads.get::<TB, 2>(p.id()).unwrap()),
            };
            for e in 0..w.len() {
                want[i][e] += (gr[e] as f64 * w[e] as f64).powi(2);
            }
        }
    }
    assert_eq!(imp.batches, 2);
    let got = imp.take_mean();
    for (i, spec) in t.params.iter().enumerate() {
        for e in 0..spec.len() {
            let w = want[i][e] / 2.0;
            assert!(
                (got[i][e] as f64 - w).abs() <= 1e-6 * w.abs().max(1e-6),
                "{:?}[{e}]: {} vs {w}",
                spec.key,
                got[i][e]
            );
        }
    }
    let fc_bias = t.params.iter().position(|p| p.key == Key::FcBias).unwrap();
    for n in 0..data.nodes {
        let w = fc_bias_hand[n] / 2.0;
        assert!(
            (got[fc_bias][n] as f64 - w).abs() <= 1e-4 * w.max(1e-9),
            "node {n}: {} vs hand {w}",
            got[fc_bias][n]
        );
    }
    assert!(got.iter().flatten().any(|&v| v > 0.0));
    // The accumulator restarts.
    assert_eq!(imp.batches, 0);
    assert!(imp.take_mean().iter().flatten().all(|&v| v == 0.0));
}

#[test]
fn group_scores_sum_every_entry_removed_with_a_channel() {
    let c = cfg([[1, 2, 4], [4, 2, 8]], 3);
    let t = Topology::new(&c);
    let scores: Vec<Vec<f32>> = t.params.iter().map(|p| vec![1.0; p.len()]).collect();
    let gs = group_scores(&t, &scores);
    // A channel of block 1's c_t (2): temporal1 columns P and Q (2 × 3 taps × 1 input) and
    // their biases (2), theta column (3 orders × 2) and row (3 × 2 − the shared entry counted
    // twice: once as row, once as column), spatial bias (1), temporal2 rows (3 taps × 4).
    let a0 = t.block_space(0, false);
    assert_eq!(gs[a0][1], (6 + 2 + 6 + 6 + 1 + 12) as f64);
    // A channel of the sigmoid conv's output: its column (8), its bias (1), its fc row (1).
    assert_eq!(gs[t.sig_space()][3], 10.0);
}

#[test]
fn selection_removes_the_lowest_scoring_share_of_each_space() {
    let c = cfg([[1, 8, 16], [16, 8, 32]], 4);
    let t = Topology::new(&c);
    let mut st = ChannelState::full(&t);
    let counts = plan_counts(&t, &st.counts(), 0.5).unwrap();
    assert_eq!(counts, vec![1, 4, 8, 4, 16, 16]);
    // Scores: channel k of every space scores k, except block 1's c_t where it is reversed.
    let a0 = t.block_space(0, false);
    let gs: Vec<Vec<f64>> = t
        .spaces
        .iter()
        .enumerate()
        .map(|(s, sp)| {
            (0..sp.size)
                .map(|k| {
                    if s == a0 {
                        (sp.size - k) as f64
                    } else {
                        k as f64
                    }
                })
                .collect()
        })
        .collect();
    select_channels(&t, &mut st, &counts, &gs);
    let kept =
        |s: usize| -> Vec<usize> { (0..t.spaces[s].size).filter(|&k| st.keep[s][k]).collect() };
    // c_t of block 1: the highest scores are the lowest indices, but channel 0 carries the
    // input through the zero-padding residual and is always kept.
    assert_eq!(kept(a0), vec![0, 1, 2, 3]);
    // c_out of block 1 (16): channels fed by the kept c_t channels (0..4) are protected; the
    // lowest-scoring others go.
    assert_eq!(
        kept(t.block_space(0, true)),
        vec![0, 1, 2, 3, 12, 13, 14, 15]
    );
    // Block 2's c_t (projection residual): plain lowest share; its c_out again keeps the
    // channels its zero padding feeds.
    assert_eq!(kept(t.block_space(1, false)), vec![4, 5, 6, 7]);
    assert_eq!(
        kept(t.block_space(1, true)),
        [4, 5, 6, 7].into_iter().chain(20..32).collect::<Vec<_>>()
    );
    assert_eq!(kept(t.sig_space()), (16..32).collect::<Vec<_>>());
    st.check(&t).unwrap();
    // Order of compaction: the padding-fed channels first, in the parent's order.
    let order = st.order(&t);
    assert_eq!(
        order[t.block_space(0, true)],
        vec![0, 1, 2, 3, 12, 13, 14, 15]
    );

    // Element granularity: each prunable tensor loses its lowest-scoring share.
    let mut es = ElementState::full(&t);
    let scores: Vec<Vec<f32>> = t
        .params
        .iter()
        .map(|p| (0..p.len()).map(|e| ((e * 7919) % 1009) as f32).collect())
        .collect();
    select_elements(&t, &mut es, &scores, 0.3);
    let total = t.total_params() as f64;
    let prunable: usize = t
        .params
        .iter()
        .filter(|p| p.key.prunable())
        .map(|p| p.len())
        .sum();
    let share = 0.3 * total / prunable as f64;
    for (i, spec) in t.params.iter().enumerate() {
        let removed: Vec<usize> = (0..spec.len()).filter(|&e| !es.keep[i][e]).collect();
        if !spec.key.prunable() {
            assert!(removed.is_empty());
            continue;
        }
        assert_eq!(removed.len(), (share * spec.len() as f64).round() as usize);
        let max_removed = removed
            .iter()
            .map(|&e| scores[i][e])
            .fold(f32::MIN, f32::max);
        let min_kept = (0..spec.len())
            .filter(|&e| es.keep[i][e])
            .map(|e| scores[i][e])
            .fold(f32::MAX, f32::min);
        assert!(max_removed <= min_kept, "{:?}", spec.key);
    }
    let masks = es.masks(&t);
    assert!((masks.masked() as f64 / total - 0.3).abs() < 0.01);
}

#[test]
fn compaction_equals_the_masked_network_and_counts_its_parameters() {
    let n = 6;
    let mut rng = Rng::new(21, 1);
    let cheb: Vec<f32> = {
        let data = Dataset::synthetic(n, 6, 48, 11);
        data.cheb
    };
    let g = GraphKernel::<TB>::new(&cheb, n, &dev());
    let mut cases = 0;
    for (si, ch) in SHAPES.iter().enumerate() {
        let c = cfg(*ch, n);
        let t = Topology::new(&c);
        for trial in 0..4u64 {
            let q = [0.3, 0.5, 0.7, 0.95][trial as usize] * (0.8 + 0.4 * rng.next_f64());
            let st = random_state(&t, 100 * si as u64 + trial, q.min(1.0));
            let mut m = Stgcn::<TB>::new(&c, trial, &dev()).unwrap();
            randomize(&mut m, &t, 7 + trial);
            let masks = st.masks(&t);
            apply_masks_host(&mut m, &t, &masks, &dev());
            let view = MaskedView::new(&t, &st, &dev());
            let (small, small_cfg) = compact(&m, &t, &st, &dev()).unwrap();
            // Parameter count: the dense network's, the analytic one's, and total − masked.
            let counted: usize = param_refs(&small).iter().map(|p| p.to_vec().len()).sum();
            assert_eq!(
                counted,
                small_cfg.param_count(),
                "{ch:?} → {:?}",
                small_cfg.channels
            );
            assert_eq!(
                small_cfg.param_count(),
                t.total_params() - masks.masked(),
                "{ch:?} → {:?}",
                small_cfg.channels
            );
            assert_eq!(small_cfg.channels, st.channels(&t));
            let x = input(3, n, trial + 40);
            let (ya, fa) = forward_masked_features(&m, x.clone(), &g, Some(&view));
            let (yb, fb) = small.forward_features(x, &g);
            let (a, b) = (to_vec(ya), to_vec(yb));
            let diff = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(
                diff < 1e-5,
                "{ch:?} → {:?}: |Δ| = {diff}",
                small_cfg.channels
            );
            // Hidden features agree up to the channel order (sums over channels).
            for (fa, fb) in fa
                .temporal
                .iter()
                .chain(&fa.spatial)
                .zip(fb.temporal.iter().chain(&fb.spatial))
            {
                assert_eq!(fa.dims(), fb.dims());
                let sa = to_vec(fa.clone().sum_dim(3));
                let sb = to_vec(fb.clone().sum_dim(3));
                let d = sa
                    .iter()
                    .zip(&sb)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f32::max);
                assert!(d < 1e-4, "features of {ch:?}: {d}");
            }
            // The output block was pruned too in the heavier trials.
            if q > 0.6 && ch[1][2] >= 6 {
                assert!(
                    small_cfg.channels[1][2] < ch[1][2],
                    "{:?}",
                    small_cfg.channels
                );
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 24);
}

#[test]
fn masked_weights_stay_exactly_zero_through_adam_steps() {
    let data = tiny();
    let c = cfg([[1, 4, 8], [8, 4, 8]], data.nodes);
    let t = Topology::new(&c);
    let device = Default::default();
    for channel in [true, false] {
        let mut model = Stgcn::<Cpu>::new(&c, 9, &device).unwrap();
        randomize(&mut model, &t, 10);
        let (masks, view) = if channel {
            let st = random_state(&t, 5, 0.5);
            (st.masks(&t), Some(MaskedView::<Cpu>::new(&t, &st, &device)))
        } else {
            let mut es = ElementState::full(&t);
            let mut rng = Rng::new(3, 3);
            let scores: Vec<Vec<f32>> = t
                .params
                .iter()
                .map(|p| (0..p.len()).map(|_| rng.next_f64() as f32).collect())
                .collect();
            select_elements(&t, &mut es, &scores, 0.5);
            (es.masks(&t), None)
        };
        assert!(masks.masked() > 0);
        let dm = DeviceMasks::<TB>::new(&t, &masks, &device);
        model = apply_masks(model, &dm);
        let g = GraphKernel::<Cpu>::new(&data.cheb, data.nodes, &device);
        let mut opt = burn::optim::AdamConfig::new().init::<Cpu, Stgcn<Cpu>>();
        let mut batcher = Batcher::default();
        let before = param_refs(&model)
            .iter()
            .map(|p| p.to_vec())
            .collect::<Vec<_>>();
        for step in 0..5 {
            let idx: Vec<usize> = (step * 8..step * 8 + 8).collect();
            let b = batcher.batch::<Cpu>(&data, Split::Train, &idx, &device);
            let y = super::forward::forward_masked(&model, b.x.clone(), &g, view.as_ref());
            let (mut grads, _): (GradientsParams, f32) =
                backward_step(mse_loss(y, b.y1.clone()), &model);
            mask_grads(&mut grads, &model, &dm);
            model = apply_masks(
                burn::optim::Optimizer::step(&mut opt, 1e-2, model, grads),
                &dm,
            );
            for (i, p) in param_refs(&model).iter().enumerate() {
                let Some(m) = &masks.masks[i] else { continue };
                let v = p.to_vec();
                for (e, (&w, &k)) in v.iter().zip(m).enumerate() {
                    if k == 0.0 {
                        // (−0.0, a negative weight times the mask, is zero too.)
                        assert!(w == 0.0, "{:?}[{e}] after step {step}", t.params[i].key);
                    }
                }
            }
        }
        // The kept weights did train.
        let after = param_refs(&model)
            .iter()
            .map(|p| p.to_vec())
            .collect::<Vec<_>>();
        assert!(before.iter().zip(&after).any(|(a, b)| a != b));
        // The masked state still compacts exactly after training.
        if channel {
            let inner = model.valid();
            let st = random_state(&t, 5, 0.5);
            let (small, _) = compact(&inner, &t, &st, &device).unwrap();
            let gi = GraphKernel::<TB>::new(&data.cheb, data.nodes, &device);
            let x = input(2, data.nodes, 1);
            let view = MaskedView::<TB>::new(&t, &st, &device);
            let a = to_vec(super::forward::forward_masked(
                &inner,
                x.clone(),
                &gi,
                Some(&view),
            ));
            let b = to_vec(small.forward(x, &gi));
            let d = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(d < 1e-5, "{d}");
        }
    }
}

#[test]
fn the_schedule_reaches_the_target_share() {
    // Teacher at N = 228 pruned to 97 % in 4 steps: about 3 % of the parameters stay, which
    // is the student's architecture (10,144 parameters, Table 1).
    let c = cfg(Preset::Teacher.channels(), 228);
    let t = Topology::new(&c);
    let pc = PruneConfig::new(PruneMethod::Kdis, 97.0);
    assert_eq!(pc.steps(), 4);
    let mut current = t.sizes();
    let mut last = 0.0;
    for step in 1..=pc.steps() {
        let goal = pc.goal(step);
        let (counts, _, share) = counts_for_goal(&t, &current, goal);
        assert!(share >= last, "monotone");
        assert!(counts.iter().zip(&current).all(|(a, b)| a <= b));
        assert!(
            (share - goal).abs() < 0.02,
            "step {step}: {share} vs {goal}"
        );
        current = counts;
        last = share;
    }
    assert_eq!(t.channels_for(&current), Preset::Student.channels());
    assert_eq!(t.params_for(&current), 10_144);
    // Base model, Table 8's shares, share-per-step schedule.
    let c = cfg(Preset::Base.channels(), 170);
    let t = Topology::new(&c);
    for target in [25.0, 50.0, 75.0] {
        let mut pc = PruneConfig::new(PruneMethod::Taylor, target);
        pc.schedule = StepRule::SharePerStep(25.0);
        assert_eq!(pc.steps(), (target / 25.0) as usize);
        assert_eq!(pc.goal(pc.steps()), target / 100.0);
        let mut current = t.sizes();
        let mut share = 0.0;
        for step in 1..=pc.steps() {
            let r = counts_for_goal(&t, &current, pc.goal(step));
            current = r.0;
            share = r.2;
        }
        assert!((share - target / 100.0).abs() < 0.04, "{target}: {share}");
    }
    let bad = PruneConfig::new(PruneMethod::Taylor, 100.0);
    assert!(bad.validate().unwrap_err().to_string().contains("(0, 100)"));
}

/// The tiny data set and a small base network trained one epoch into `root/base`.
pub(crate) fn trained_base(root: &std::path::Path) -> (Dataset, StgcnConfig, std::path::PathBuf) {
    let data = tiny();
    let base_dir = root.join("base");
    let c = cfg([[1, 4, 8], [8, 4, 16]], data.nodes);
    train::train::<Cpu>(
        &data,
        &c,
        &quick_train(),
        &Default::default(),
        Some(&base_dir),
        &mut |_| {},
    )
    .unwrap();
    (data, c, base_dir)
}

pub(crate) fn quick_train() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size: 16,
        eval_batch: 64,
        ..TrainConfig::default()
    }
}

#[test]
fn a_pruning_run_stopped_in_either_phase_resumes_with_the_uninterrupted_result() {
    let root = std::env::temp_dir().join(format!("stkd-prune-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (data, _, base_dir) = trained_base(&root);
    let device = Default::default();
    let (teacher, _) = train::load_model::<TB>(&base_dir, &device).unwrap();
    let train_cfg = TrainConfig {
        epochs: 1,
        ..quick_train()
    };
    let per_epoch = data.windows(Split::Train).div_ceil(train_cfg.batch_size);
    let mut pc = PruneConfig::new(PruneMethod::Kdis, 60.0);
    pc.schedule = StepRule::Steps(2);
    // A step every epoch and a half: importance is carried across epoch ends (and checkpoints).
    pc.interval = Interval::Minibatches(per_epoch + per_epoch / 2);
    pc.finetune_epochs = 3;
    let mut loss = LossConfig::new(LossKind::Stcd);
    loss.alpha1 = 0.5;
    let prune_epochs = (2 * (per_epoch + per_epoch / 2)).div_ceil(per_epoch);
    let run = |resume: Option<&crate::resume::ResumeDir>, stop_at: Option<usize>| {
        let (base, base_cfg) = train::load_model::<Cpu>(&base_dir, &device).unwrap();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            prune_model::<Cpu>(
                base,
                &base_cfg,
                Some(&teacher),
                None,
                &data,
                &train_cfg,
                &loss,
                &pc,
                &device,
                resume,
                &mut |e| {
                    if let crate::train::Event::EpochStart { epoch, .. } = e {
                        assert!(Some(epoch) != stop_at, "stopped");
                    }
                },
            )
            .unwrap()
        }))
    };
    let whole = run(None, None).unwrap();
    let g = GraphKernel::<TB>::new(&data.cheb, data.nodes, &device);
    let test = |m: &Stgcn<TB>| train::evaluate(m, &g, &data, Split::Test, 64, &device);
    let curve = |o: &PruneOutput<TB>| {
        o.epochs
            .iter()
            .map(|e| (e.epoch, e.train_loss, e.val_mae))
            .collect::<Vec<_>>()
    };
    // Stopped in the pruning phase (after its first epoch), then in fine-tuning.
    for stop in [2, prune_epochs + 2] {
        let dir = crate::resume::ResumeDir::new(&root.join(format!("run-{stop}")));
        assert!(run(Some(&dir), Some(stop)).is_err());
        let resumed = run(Some(&dir), None).unwrap();
        assert_eq!(curve(&resumed), curve(&whole), "stopped at epoch {stop}");
        assert_eq!(resumed.summary.steps, whole.summary.steps);
        assert_eq!(resumed.summary.masked_share, whole.summary.masked_share);
        assert_eq!(resumed.model_config, whole.model_config);
        assert_eq!(resumed.best_epoch, whole.best_epoch);
        assert_eq!(resumed.val, whole.val);
        assert_eq!(test(&resumed.model), test(&whole.model));
    }
    let _ = std::fs::remove_dir_all(&root);
}
