#![allow(clippy::needless_range_loop)]

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};

use super::pairwise::tests::{f32s, rand_vec, scd_naive, skd_naive, tcd_naive};
use super::*;
use crate::backend::{Cpu, CpuInner};
use crate::model::Preset;
use crate::rng::Rng;

fn dev() -> burn::tensor::Device<Cpu> {
    Default::default()
}

fn t4<B: Backend>(v: &[f32], dims: [usize; 4]) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(v.to_vec(), dims), &Default::default())
}

/// A `[B, N]` prediction as the `[B, 1, N, 1]` tensor the model produces.
fn y<B: Backend>(v: &[f32], b: usize) -> Tensor<B, 4> {
    t4(v, [b, 1, v.len() / b, 1])
}

pub(crate) fn val<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

pub(crate) fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

#[test]
fn loss_kinds_parse_display_and_serde() {
    for k in LossKind::ALL {
        assert_eq!(k.to_string().parse::<LossKind>().unwrap(), k);
        assert_eq!(k.to_string().to_uppercase().parse::<LossKind>().unwrap(), k);
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{k}\""));
        assert_eq!(serde_json::from_str::<LossKind>(&json).unwrap(), k);
    }
    assert_eq!("WO-KD".parse::<LossKind>().unwrap(), LossKind::Mse);
    assert_eq!("rd_l2".parse::<LossKind>().unwrap(), LossKind::RdL2);
    assert_eq!(
        serde_json::from_str::<LossKind>("\"wo-kd\"").unwrap(),
        LossKind::Mse
    );
    let e = "rd-l3".parse::<LossKind>().unwrap_err().to_string();
    assert!(e.contains("rd-l3") && e.contains("stcd"), "{e}");
    assert!(!LossKind::Mse.needs_teacher());
    assert!(LossKind::ALL[1..].iter().all(|k| k.needs_teacher()));
    assert!(LossKind::Stcd.uses_ord() && !LossKind::Skd.uses_ord());
}

/// What [`LossKind`]'s one list declares holds together: every loss's name, aliases and title
/// are its own, parse back to it and serialise as its name.
#[test]
fn every_loss_kind_parses_back_and_has_a_title() {
    for (i, k) in LossKind::ALL.into_iter().enumerate() {
        assert_eq!(LossKind::NAMES[i], k.name());
        for name in std::iter::once(k.name()).chain(k.aliases().iter().copied()) {
            assert_eq!(name.parse::<LossKind>().unwrap(), k, "{name}");
            let json = format!("\"{name}\"");
            assert_eq!(
                serde_json::from_str::<LossKind>(&json).unwrap(),
                k,
                "{name}"
            );
        }
        assert!(!k.title().is_empty());
        let others = LossKind::ALL.into_iter().filter(|o| *o != k);
        assert!(others
            .clone()
            .all(|o| o.title() != k.title() && o.name() != k.name()));
    }
    assert_eq!(
        "x".parse::<LossKind>().unwrap_err().to_string(),
        "unknown loss `x`: expected one of mse (wo-kd), rd-l2, rd-kl, skd, ord, tcd, scd, stcd"
    );
}

#[test]
fn config_defaults_serde_and_validation_messages() {
    let c: LossConfig = serde_json::from_str(r#"{"kind": "stcd", "alpha1": 0.17}"#).unwrap();
    assert_eq!(
        c,
        LossConfig {
            alpha1: 0.17,
            ..LossConfig::new(LossKind::Stcd)
        }
    );
    assert_eq!(c.norm, Norm::Squared);
    assert_eq!(c.ord_reduction, Reduction::Mean);
    assert!(c.gradient_revision && c.tau == 1.0);
    let c: LossConfig =
        serde_json::from_str(r#"{"kind": "ord", "norm": "abs", "ord_reduction": "sum"}"#).unwrap();
    assert_eq!((c.norm, c.ord_reduction), (Norm::Abs, Reduction::Sum));
    assert!(LossConfig::new(LossKind::Skd).validate().is_ok());

    let bad = LossConfig {
        alpha1: 1.5,
        ..LossConfig::new(LossKind::Ord)
    };
    let e = bad.validate().unwrap_err().to_string();
    assert!(
        e.contains("alpha1") && e.contains("1.5") && e.contains("[0, 1]"),
        "{e}"
    );
    for (c, field) in [
        (
            LossConfig {
                beta: -0.1,
                ..LossConfig::new(LossKind::RdL2)
            },
            "beta",
        ),
        (
            LossConfig {
                alpha: f64::NAN,
                ..LossConfig::new(LossKind::Skd)
            },
            "alpha",
        ),
        (
            LossConfig {
                alpha3: 2.0,
                ..LossConfig::new(LossKind::Stcd)
            },
            "alpha3",
        ),
        (
            LossConfig {
                tau: 0.0,
                ..LossConfig::new(LossKind::RdKl)
            },
            "tau",
        ),
    ] {
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Response losses, by hand
// ---------------------------------------------------------------------------------------------

#[test]
fn mse_and_rd_l2_match_hand_values() {
    let ys = [1.0f32, -2.0];
    let yt = [0.5f32, -1.0];
    let tg = [0.0f32, 0.0];
    assert!(close(val(mse_loss(y::<Cpu>(&ys, 1), y(&tg, 1))), 2.5, 1e-7));
    // β = 0.25, the teacher's prediction cut into `teacher_batch` samples.
    let rd = |teacher_batch: usize, norm: Norm| {
        let yt = y::<CpuInner>(&yt, teacher_batch);
        rd_l2_loss(y::<Cpu>(&ys, 1), &yt, y(&tg, 1), 0.25, norm)
    };
    // (0.25·0.25 + 0.75·1, 0.25·1 + 0.75·4) → mean 2.03125.
    assert!(close(val(rd(1, Norm::Squared).unwrap()), 2.03125, 1e-7));
    // Abs: (0.25·0.5 + 0.75·1, 0.25·1 + 0.75·2) → mean 1.3125.
    assert!(close(val(rd(1, Norm::Abs).unwrap()), 1.3125, 1e-7));
    // Shape mismatch is an error, not a panic.
    assert!(matches!(rd(2, Norm::Abs), Err(DistillError::Shape(_))));
}

#[test]
fn rd_kl_matches_hand_value_with_negative_outputs_and_its_gradient() {
    // Two samples of two nodes, z-scored (negative) values, τ = 2, β = 0.4.
    let ys = [-1.0f32, 0.5, -2.0, -0.25];
    let yt = [0.0f32, -2.0, -1.5, -1.0];
    let tg = [-0.5f32, 0.5, -1.0, 0.0];
    let (beta, tau) = (0.4, 2.0);
    let soft = |a: f64, b: f64| {
        let (ea, eb) = ((a / tau).exp(), (b / tau).exp());
        [ea / (ea + eb), eb / (ea + eb)]
    };
    let mut kl = 0.0;
    let mut grad_kl = [0.0; 4];
    for s in 0..2 {
        let pt = soft(yt[2 * s] as f64, yt[2 * s + 1] as f64);
        let ps = soft(ys[2 * s] as f64, ys[2 * s + 1] as f64);
        for i in 0..2 {
            kl += pt[i] * (pt[i] / ps[i]).ln();
            // d/dys of the batch mean of the per-sample KL (summed over nodes): (p_s − p_t)/(τ·B).
            grad_kl[2 * s + i] = (ps[i] - pt[i]) / (tau * 2.0);
        }
    }
    // `batchmean`: summed over the N = 2 nodes, averaged over the B = 2 samples.
    kl /= 2.0;
    let mse: f64 = ys
        .iter()
        .zip(&tg)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / 4.0;
    let want = beta * kl + (1.0 - beta) * mse;
    let x = y::<Cpu>(&ys, 2).require_grad();
    let l = rd_kl_loss(
        x.clone(),
        &y::<CpuInner>(&yt, 2),
        y(&tg, 2),
        beta,
        tau,
        Norm::Squared,
    )
    .unwrap();
    assert!(
        close(val(l.clone()), want, 1e-6),
        "{} vs {want}",
        val(l.clone())
    );
    let g = host(&x.grad(&l.backward()).unwrap());
    for i in 0..4 {
        let want = beta * grad_kl[i] + (1.0 - beta) * 2.0 * (ys[i] - tg[i]) as f64 / 4.0;
        assert!((g[i] as f64 - want).abs() < 1e-6, "{i}: {} vs {want}", g[i]);
    }
    // Identical outputs: KL = 0, only the task term remains.
    let l = rd_kl_loss(
        y::<Cpu>(&yt, 2),
        &y::<CpuInner>(&yt, 2),
        y(&yt, 2),
        0.7,
        1.0,
        Norm::Squared,
    );
    assert!(val(l.unwrap()).abs() < 1e-7);
}

// ---------------------------------------------------------------------------------------------
// ORD
// ---------------------------------------------------------------------------------------------

#[test]
fn ord_selection_edge_cases() {
    // |yt − T| = 0, 1, 2 → D = 0, 0.5, 1.
    let tg = [0.0f32, 0.0, 0.0];
    let yt = [0.0f32, -1.0, 2.0];
    // The tie at exactly α1 = 0.5 goes to the target.
    assert_eq!(ord_select(&yt, &tg, 3, 0.5), vec![false, false, true]);
    assert_eq!(ord_select(&yt, &tg, 3, 0.49), vec![false, true, true]);
    // α1 = 0: every element but the minimum uses the teacher; α1 = 1: none does.
    assert_eq!(ord_select(&yt, &tg, 3, 0.0), vec![false, true, true]);
    assert_eq!(ord_select(&yt, &tg, 3, 1.0), vec![false, false, false]);
    // A row where max D = min D (here all errors equal 1.5) uses the target, even at α1 = 0;
    // normalisation is per sample.
    let tg2 = [0.0f32, 1.0, 2.0, 0.0, 0.0, 0.0];
    let yt2 = [1.5f32, -0.5, 3.5, 0.0, -1.0, 2.0];
    assert_eq!(
        ord_select(&yt2, &tg2, 3, 0.0),
        vec![false, false, false, false, true, true]
    );
}

#[test]
fn ord_loss_matches_hand_value_and_counts_picks() {
    // B = 1, N = 5: D = |yt − T| = 0, 1, 2, 1, 1 → 0, .5, 1, .5, .5; with α1 = 0.5 only
    // element 2 uses the teacher (the three ties at 0.5 use the target).
    let tg = [0.0f32, 0.0, 0.0, 1.0, 1.0];
    let yt = [0.0f32, -1.0, 2.0, 2.0, 2.0];
    let ys = [0.5f32, 0.0, 1.0, 0.0, 3.0];
    let (l, s) = ord_loss(
        y::<Cpu>(&ys, 1),
        &y::<CpuInner>(&yt, 1),
        y(&tg, 1),
        0.5,
        Norm::Squared,
        Reduction::Mean,
    )
    .unwrap();
    assert_eq!(
        s,
        OrdStats {
            picks: 1,
            elements: 5
        }
    );
    let r1 = [0.0f32, 0.0, 2.0, 1.0, 1.0];
    let want: f64 = ys
        .iter()
        .zip(&r1)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>();
    assert!(close(val(l), want / 5.0, 1e-7));
    let (l, _) = ord_loss(
        y::<Cpu>(&ys, 1),
        &y::<CpuInner>(&yt, 1),
        y(&tg, 1),
        0.5,
        Norm::Abs,
        Reduction::Sum,
    )
    .unwrap();
    let want: f64 = ys.iter().zip(&r1).map(|(a, b)| (a - b).abs() as f64).sum();
    assert!(close(val(l), want, 1e-7));
    // Two samples: picks are counted over B·N, and no gradient flows through the selection:
    // the gradient is 2(ys − reference)/(B·N).
    let tg = [0.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
    let yt = [0.0f32, -1.0, 2.0, 3.0, 1.0, 1.5];
    let ys = [0.5f32, 0.0, 1.0, 0.0, 3.0, 1.0];
    let x = y::<Cpu>(&ys, 2).require_grad();
    let (l, s) = ord_loss(
        x.clone(),
        &y::<CpuInner>(&yt, 2),
        y(&tg, 2),
        0.2,
        Norm::Squared,
        Reduction::Mean,
    )
    .unwrap();
    // D row 1: 0, .5, 1 → teacher for 1, 2; row 2: 2, 0, .5 → 1, 0, .25 → teacher for 0, 2.
    let reference = [0.0f32, -1.0, 2.0, 3.0, 1.0, 1.5];
    assert_eq!(
        s,
        OrdStats {
            picks: 4,
            elements: 6
        }
    );
    let g = host(&x.grad(&l.backward()).unwrap());
    for i in 0..6 {
        let want = 2.0 * (ys[i] - reference[i]) / 6.0;
        assert!((g[i] - want).abs() < 1e-6, "{i}: {} vs {want}", g[i]);
    }
}

// ---------------------------------------------------------------------------------------------
// TCD / SCD through the tensor API
// ---------------------------------------------------------------------------------------------

struct Layers {
    s: Vec<Vec<f64>>,
    t: Vec<Vec<f64>>,
    ds: Vec<[usize; 4]>,
    ct: Vec<usize>,
}

fn layers(seed: u64, ds: &[[usize; 4]], ct: &[usize]) -> Layers {
    let mut rng = Rng::new(seed, 5);
    let q = |v: Vec<f64>| -> Vec<f64> { f32s(&v).iter().map(|&x| x as f64).collect() };
    let mut s = Vec::new();
    let mut t = Vec::new();
    for (d, &c) in ds.iter().zip(ct) {
        s.push(q(rand_vec(&mut rng, d.iter().product())));
        t.push(q(rand_vec(&mut rng, d[0] * d[1] * d[2] * c)));
    }
    Layers {
        s,
        t,
        ds: ds.to_vec(),
        ct: ct.to_vec(),
    }
}

type Naive = fn(&[f64], &[f64], [usize; 4], usize, Norm) -> f64;

/// Eq. 8 / Eq. 10 mean, averaged over layers, from the naive sums.
fn naive_mean(l: &Layers, naive: Naive, pairs: fn(usize, usize) -> usize, norm: Norm) -> f64 {
    let n = l.s.len() as f64;
    (0..l.s.len())
        .map(|k| {
            let [b, t, nn, _] = l.ds[k];
            naive(&l.s[k], &l.t[k], l.ds[k], l.ct[k], norm) / (b * pairs(t, nn)) as f64
        })
        .sum::<f64>()
        / n
}

/// The feature loss under test, on the autodiff and on the plain backend.
#[derive(Clone, Copy)]
enum Which {
    Tcd,
    Scd,
}

fn feature_loss<B: Backend>(
    w: Which,
    s: &[Tensor<B, 4>],
    t: &[Tensor<CpuInner, 4>],
    norm: Norm,
) -> Result<Tensor<B, 1>, DistillError> {
    match w {
        Which::Tcd => tcd_loss(s, t, norm),
        Which::Scd => scd_loss(s, t, norm),
    }
}

fn check_feature_loss(w: Which, naive: Naive, pairs: fn(usize, usize) -> usize, l: &Layers) {
    let st: Vec<Tensor<Cpu, 4>> =
        l.s.iter()
            .zip(&l.ds)
            .map(|(v, d)| t4::<Cpu>(&f32s(v), *d).require_grad())
            .collect();
    let tt: Vec<Tensor<CpuInner, 4>> =
        l.t.iter()
            .zip(l.ds.iter().zip(&l.ct))
            .map(|(v, (d, &c))| t4::<CpuInner>(&f32s(v), [d[0], d[1], d[2], c]))
            .collect();
    for norm in [Norm::Squared, Norm::Abs] {
        let want = naive_mean(l, naive, pairs, norm);
        let out = feature_loss(w, &st, &tt, norm).unwrap();
        let got = val(out.clone());
        assert!(close(got, want, 1e-6), "{norm:?}: {got} vs {want}");
        // The same value without autodiff.
        let inner: Vec<Tensor<CpuInner, 4>> = st.iter().map(|x| x.clone().inner()).collect();
        let plain = val(feature_loss(w, &inner, &tt, norm).unwrap());
        assert!(close(plain, got, 1e-9), "{plain} vs {got}");
        // Gradient through burn's autodiff vs central differences of the naive mean.
        let grads = out.backward();
        let h = 1e-6;
        for (k, x) in st.iter().enumerate() {
            let g = host(&x.grad(&grads).unwrap());
            let mut lp = Layers {
                s: l.s.clone(),
                t: l.t.clone(),
                ds: l.ds.clone(),
                ct: l.ct.clone(),
            };
            for e in 0..g.len() {
                lp.s[k][e] = l.s[k][e] + h;
                let up = naive_mean(&lp, naive, pairs, norm);
                lp.s[k][e] = l.s[k][e] - h;
                let dn = naive_mean(&lp, naive, pairs, norm);
                lp.s[k][e] = l.s[k][e];
                let fd = (up - dn) / (2.0 * h);
                assert!(
                    (g[e] as f64 - fd).abs() < 1e-6 + 1e-4 * fd.abs(),
                    "{norm:?} layer {k} elem {e}: {} vs {fd}",
                    g[e]
                );
            }
        }
    }
}

fn time_pairs(t: usize, n: usize) -> usize {
    n * t * (t - 1) / 2
}

fn node_pairs(t: usize, n: usize) -> usize {
    t * n * (n - 1) / 2
}

#[test]
fn tcd_value_and_gradient_match_naive_and_finite_differences() {
    // B = 2, T = 3 and 2, N = 4, C_s = 2 and 1, C_t = 3 and 5.
    let l = layers(1, &[[2, 3, 4, 2], [2, 2, 4, 1]], &[3, 5]);
    check_feature_loss(Which::Tcd, tcd_naive, time_pairs, &l);
}

#[test]
fn scd_value_and_gradient_match_naive_and_finite_differences() {
    let l = layers(2, &[[2, 3, 4, 2], [2, 2, 4, 1]], &[3, 5]);
    check_feature_loss(Which::Scd, scd_naive, node_pairs, &l);
}

#[test]
fn feature_losses_reject_mismatched_layers() {
    let s = vec![Tensor::<Cpu, 4>::zeros([1, 3, 4, 2], &dev())];
    let t = vec![Tensor::<CpuInner, 4>::zeros(
        [1, 3, 5, 2],
        &Default::default(),
    )];
    let e = scd_loss(&s, &t, Norm::Squared).unwrap_err().to_string();
    assert!(e.contains("SCD layer 0"), "{e}");
    let e = tcd_loss(&s, &t[..0], Norm::Squared)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 layers, teacher 0"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The dispatcher
// ---------------------------------------------------------------------------------------------

fn features<B: Backend>(seed: u64, b: usize, n: usize, ch: [[usize; 3]; 2]) -> Features<B> {
    let mut rng = Rng::new(seed, 9);
    let mut r = |d: [usize; 4]| -> Tensor<B, 4> {
        let v: Vec<f32> = (0..d.iter().product::<usize>())
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect();
        t4(&v, d)
    };
    Features {
        temporal: vec![
            r([b, 10, n, ch[0][1]]),
            r([b, 8, n, ch[0][2]]),
            r([b, 6, n, ch[1][1]]),
            r([b, 4, n, ch[1][2]]),
        ],
        spatial: vec![r([b, 10, n, ch[0][1]]), r([b, 6, n, ch[1][1]])],
        last_block: r([b, 4, n, ch[1][2]]),
    }
}

#[test]
fn kd_loss_composes_the_terms() {
    let (b, n) = (2, 5);
    let fs = features::<Cpu>(1, b, n, Preset::Student.channels());
    let ft = features::<CpuInner>(2, b, n, Preset::Base.channels());
    let mut rng = Rng::new(3, 3);
    let mut r =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.next_f64() as f32 - 0.5).collect() };
    let (ys, yt, tg) = (r(b * n), r(b * n), r(b * n));
    let inputs = |teacher: bool| KdInputs::<Cpu> {
        target: y(&tg, b),
        student_y: y(&ys, b),
        student_f: &fs,
        teacher_y: teacher.then(|| y::<CpuInner>(&yt, b)),
        teacher_f: teacher.then_some(&ft),
        teacher_tcd: None,
    };
    let cfg = |kind| LossConfig {
        beta: 0.3,
        alpha: 0.2,
        alpha1: 0.4,
        alpha2: 0.25,
        alpha3: 0.6,
        tau: 1.5,
        ..LossConfig::new(kind)
    };
    let inp = inputs(true);
    let c = cfg(LossKind::Stcd);
    let (ord, stats) = ord_loss(
        y::<Cpu>(&ys, b),
        &y::<CpuInner>(&yt, b),
        y(&tg, b),
        0.4,
        Norm::Squared,
        Reduction::Mean,
    )
    .unwrap();
    let (ord, scd, tcd) = (
        val(ord),
        val(scd_loss(&fs.spatial, &ft.spatial, Norm::Squared).unwrap()),
        val(tcd_loss(&fs.temporal, &ft.temporal, Norm::Squared).unwrap()),
    );
    let expect = [
        (LossKind::Stcd, ord + 0.6 * (0.25 * scd + 0.75 * tcd)),
        (LossKind::Tcd, ord + 0.6 * tcd),
        (LossKind::Scd, ord + 0.6 * scd),
        (LossKind::Ord, ord),
    ];
    for (kind, want) in expect {
        let out = kd_loss(&cfg(kind), &inp).unwrap();
        assert!(close(val(out.loss), want, 1e-6), "{kind}");
        assert_eq!(
            (out.ord_picks, out.ord_elements),
            (stats.picks, stats.elements)
        );
    }
    let (sl, _) = stcd_loss(
        &c,
        y::<Cpu>(&ys, b),
        &y::<CpuInner>(&yt, b),
        y(&tg, b),
        &fs,
        &ft,
    )
    .unwrap();
    assert!(close(val(sl), expect[0].1, 1e-6));
    let plain = [
        (
            LossKind::RdL2,
            val(rd_l2_loss(
                y::<Cpu>(&ys, b),
                &y::<CpuInner>(&yt, b),
                y(&tg, b),
                0.3,
                Norm::Squared,
            )
            .unwrap()),
        ),
        (
            LossKind::RdKl,
            val(rd_kl_loss(
                y::<Cpu>(&ys, b),
                &y::<CpuInner>(&yt, b),
                y(&tg, b),
                0.3,
                1.5,
                Norm::Squared,
            )
            .unwrap()),
        ),
        (LossKind::Mse, val(mse_loss(y::<Cpu>(&ys, b), y(&tg, b)))),
    ];
    for (kind, want) in plain {
        let out = kd_loss(&cfg(kind), &inp).unwrap();
        assert!(close(val(out.loss), want, 1e-6), "{kind}");
        assert_eq!((out.ord_picks, out.ord_elements), (0, 0));
    }
    // SKD without revision: (1 − α)·task + α·(response + structural).
    let t = skd_terms(
        y::<Cpu>(&ys, b),
        &y::<CpuInner>(&yt, b),
        y(&tg, b),
        &fs.last_block,
        &ft.last_block,
    )
    .unwrap();
    let want = 0.8 * val(t.task) + 0.2 * (val(t.response) + val(t.structural));
    assert!(close(
        val(kd_loss(&cfg(LossKind::Skd), &inp).unwrap().loss),
        want,
        1e-6
    ));
    // W/O KD needs no teacher; the others name what is missing.
    assert!(kd_loss(&cfg(LossKind::Mse), &inputs(false)).is_ok());
    for kind in LossKind::ALL[1..].iter().copied() {
        let e = kd_loss(&cfg(kind), &inputs(false))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(kind.name()) && e.contains("teacher"), "{e}");
    }
    let bad = LossConfig {
        alpha2: 1.5,
        ..cfg(LossKind::Stcd)
    };
    assert!(kd_loss(&bad, &inp).is_err());
}

#[test]
fn skd_structural_term_matches_naive_computation() {
    let (b, n) = (2, 3);
    let fs = features::<Cpu>(4, b, n, Preset::Student.channels());
    let ft = features::<CpuInner>(5, b, n, Preset::Base.channels());
    let d = |x: Vec<f32>| -> Vec<f64> { x.iter().map(|&v| v as f64).collect() };
    // Points are the T·N = 12 (time, node) rows of each sample.
    let want = skd_naive(
        &d(host(&fs.last_block)),
        &d(host(&ft.last_block)),
        [b, 4 * n, 8],
        32,
    );
    let ys = vec![0f32; b * n];
    let t = skd_terms(
        y::<Cpu>(&ys, b),
        &y::<CpuInner>(&ys, b),
        y(&ys, b),
        &fs.last_block,
        &ft.last_block,
    )
    .unwrap();
    assert!(close(val(t.structural), want, 1e-6), "{want}");
    assert!(want > 0.0);
}

// ---------------------------------------------------------------------------------------------
// SKD gradient revision
// ---------------------------------------------------------------------------------------------

#[derive(Module, Debug)]
struct Tiny<B: Backend> {
    a: Param<Tensor<B, 1>>,
    b: Param<Tensor<B, 2>>,
}

fn tiny() -> Tiny<Cpu> {
    Tiny {
        a: Param::from_data(TensorData::new(vec![0f32; 2], [2]), &dev()),
        b: Param::from_data(TensorData::new(vec![0f32; 2], [1, 2]), &dev()),
    }
}

fn grads(m: &Tiny<Cpu>, a: [f32; 2], b: Option<[f32; 2]>) -> GradientsParams {
    let mut g = GradientsParams::new();
    let d = Default::default();
    g.register::<CpuInner, 1>(
        m.a.id,
        Tensor::from_data(TensorData::new(a.to_vec(), [2]), &d),
    );
    if let Some(b) = b {
        g.register::<CpuInner, 2>(
            m.b.id,
            Tensor::from_data(TensorData::new(b.to_vec(), [1, 2]), &d),
        );
    }
    g
}

fn flat(m: &Tiny<Cpu>, g: &GradientsParams) -> Vec<f32> {
    let mut v = g
        .get::<CpuInner, 1>(m.a.id)
        .map(|t| host(&t))
        .unwrap_or(vec![0.0; 2]);
    v.extend(
        g.get::<CpuInner, 2>(m.b.id)
            .map(|t| host(&t))
            .unwrap_or(vec![0.0; 2]),
    );
    v
}

#[test]
fn gradient_revision_projects_only_conflicting_terms() {
    let m = tiny();
    let task = grads(&m, [1.0, 0.0], Some([0.0, 1.0]));
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let gt = flat(&m, &task);

    // Conflict: ⟨g_kd, g_task⟩ = −1 < 0 → g_kd − (−1/2)·g_task, orthogonal to g_task.
    let kd = [grads(&m, [-1.0, 1.0], Some([1.0, 0.0]))];
    let (out, rev) = skd_revised_grads(&m, &task, &kd, 1.0, true);
    let o = flat(&m, &out);
    assert_eq!(rev.projected, vec![true]);
    assert!(rev.cosine[0] < 0.0);
    assert!(dot(&o, &gt).abs() < 1e-6, "{o:?}");
    for (a, b) in o.iter().zip([-0.5f32, 1.0, 1.0, 0.5]) {
        assert!((a - b).abs() < 1e-6, "{o:?}");
    }
    // α = 0.3: 0.7·g_task + 0.3·revised.
    let (out, _) = skd_revised_grads(&m, &task, &kd, 0.3, true);
    let o = flat(&m, &out);
    for (i, want) in [0.7 - 0.15, 0.3, 0.3, 0.7 + 0.15].iter().enumerate() {
        assert!((o[i] - want).abs() < 1e-6, "{o:?}");
    }
    // Revision off: the plain weighted sum.
    let (out, rev) = skd_revised_grads(&m, &task, &kd, 0.3, false);
    assert_eq!(rev.projected, vec![false]);
    let o = flat(&m, &out);
    for (i, want) in [0.7 - 0.3, 0.3, 0.3, 0.7].iter().enumerate() {
        assert!((o[i] - want).abs() < 1e-6, "{o:?}");
    }

    // No conflict (⟨g_kd, g_task⟩ = 1 > 0), and a KD term with no gradient for `b`: unchanged.
    let kd = [grads(&m, [1.0, 1.0], None)];
    let (out, rev) = skd_revised_grads(&m, &task, &kd, 1.0, true);
    assert_eq!(rev.projected, vec![false]);
    assert_eq!(flat(&m, &out), vec![1.0, 1.0, 0.0, 0.0]);

    // Two KD terms, one conflicting: only that one is projected.
    let kd = [
        grads(&m, [-1.0, 1.0], Some([1.0, 0.0])),
        grads(&m, [0.0, 2.0], Some([0.0, 0.0])),
    ];
    let (out, rev) = skd_revised_grads(&m, &task, &kd, 1.0, true);
    assert_eq!(rev.projected, vec![true, false]);
    let o = flat(&m, &out);
    for (a, b) in o.iter().zip([-0.5f32, 3.0, 1.0, 0.5]) {
        assert!((a - b).abs() < 1e-6, "{o:?}");
    }
}

/// Timing of the STCD feature terms at the paper's size (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn bench_pairwise_paper_size() {
    crate::backend::tune_allocator(); // as the CLI does
    let r = bench_pairwise(50, 228, 5);
    println!("{r:#?}");
}

/// The teacher's TCD distances given (as the teacher cache gives them) instead of its temporal
/// features: the same loss, bit for bit, for every loss with a TCD term.
#[test]
fn tcd_from_the_teachers_distances_equals_tcd_from_its_features() {
    let (b, n) = (3, 7);
    let fs = features::<Cpu>(1, b, n, Preset::Student.channels());
    let ft = features::<CpuInner>(2, b, n, Preset::Teacher.channels());
    let mut rng = Rng::new(3, 3);
    let mut r =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.next_f64() as f32 - 0.5).collect() };
    let (ys, yt, tg) = (r(b * n), r(b * n), r(b * n));
    let dists: Vec<Vec<f32>> = ft
        .temporal
        .iter()
        .map(|t| {
            let [bb, tt, nn, c] = t.dims();
            tcd_teacher(&crate::distill::host(t), [bb, tt, nn], c)
        })
        .collect();
    let without_temporal = Features {
        temporal: Vec::new(),
        spatial: ft.spatial.clone(),
        last_block: ft.last_block.clone(),
    };
    for kind in [LossKind::Tcd, LossKind::Stcd] {
        let cfg = LossConfig {
            alpha1: 0.4,
            alpha2: 0.25,
            alpha3: 0.6,
            ..LossConfig::new(kind)
        };
        let loss = |teacher_f: &Features<CpuInner>, teacher_tcd: Option<&[Vec<f32>]>| {
            let out = kd_loss(
                &cfg,
                &KdInputs::<Cpu> {
                    target: y(&tg, b),
                    student_y: y(&ys, b),
                    student_f: &fs,
                    teacher_y: Some(y::<CpuInner>(&yt, b)),
                    teacher_f: Some(teacher_f),
                    teacher_tcd,
                },
            )
            .unwrap();
            val(out.loss).to_bits()
        };
        assert_eq!(
            loss(&ft, None),
            loss(&without_temporal, Some(&dists)),
            "{kind}"
        );
    }
}
