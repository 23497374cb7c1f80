use super::files::parse_npy_header;
use super::graph::{chebyshev, gaussian_kernel, scaled_laplacian, sym_eig_max};
use super::prepare::{default_split, fill_gaps};
use super::*;
use std::fs;
use std::path::Path;
use std::time::Instant;

fn real_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// A unique empty folder under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!(
        "stkd-data-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    fs::create_dir_all(&d).unwrap();
    d
}

/// Run the pipeline on hand-made speeds (all node pairs 1 km apart).
fn tiny(
    speeds: Vec<f32>,
    nodes: usize,
    spd: usize,
    n_his: usize,
    n_pred: usize,
) -> Result<Dataset, DataError> {
    let rows = speeds.len() / nodes;
    let raw = Raw {
        name: DatasetName::Pemsd7,
        source: "synthetic",
        nodes,
        speeds,
        rows,
        speed_path: PathBuf::from("<test>"),
        dist_km: vec![1.0; nodes * nodes],
        remainder_noted: false,
    };
    let mut cfg = DataConfig::new(DatasetName::Pemsd7);
    cfg.n_his = n_his;
    cfg.n_pred = n_pred;
    prepare(raw, &cfg, spd, String::new(), Vec::new())
}

fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (tol {tol})");
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            for j in 0..n {
                c[i * n + j] += a[i * n + k] * b[k * n + j];
            }
        }
    }
    c
}

#[test]
fn fill_gaps_interior_and_edges() {
    let nan = f32::NAN;
    // Two stations, 6 steps, row-major [t, station].
    let s0 = [0.0, nan, 3.0, 0.0, 0.0, 6.0];
    let s1 = [1.0, 2.0, 0.0, nan, f32::INFINITY, 0.0];
    let mut data: Vec<f32> = (0..6).flat_map(|t| [s0[t], s1[t]]).collect();
    fill_gaps(&mut data, 6, 2).unwrap();
    let col = |j: usize| (0..6).map(|t| data[t * 2 + j]).collect::<Vec<_>>();
    assert_eq!(col(0), vec![3.0, 3.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(col(1), vec![1.0, 2.0, 2.0, 2.0, 2.0, 2.0]);

    let mut none = vec![1.0, 0.0, 2.0, nan];
    assert_eq!(fill_gaps(&mut none, 2, 2), Err(1));
}

#[test]
fn filled_count_and_no_valid_station_error() {
    // 2 stations, 3 days of 4 steps; station 0 misses 3 readings, station 1 one.
    let mut v: Vec<f32> = (0..24).map(|k| 50.0 + k as f32).collect();
    v[0] = 0.0;
    v[2] = f32::NAN;
    v[10] = 0.0;
    v[23] = 0.0;
    let ds = tiny(v, 2, 4, 2, 1).unwrap();
    assert_eq!(ds.filled, 4);
    assert!(ds.speeds.iter().all(|&x| !is_missing(x)));
    assert!(ds.notes.iter().any(|n| n.contains("4 missing readings")));

    let mut v: Vec<f32> = vec![50.0; 24];
    for t in 0..12 {
        v[t * 2 + 1] = 0.0;
    }
    let err = tiny(v, 2, 4, 2, 1).unwrap_err();
    assert!(matches!(err, DataError::NoValidReadings { station: 1, .. }));
    assert!(err.to_string().contains("<test>"), "{err}");
}

#[test]
fn kernel_three_nodes_by_hand() {
    // d01 = 1 km, d02 = 2.5 km, d12 = 3 km (symmetric).
    let d = vec![0.0, 1.0, 2.5, 1.0, 0.0, 3.0, 2.5, 3.0, 0.0];
    let w = gaussian_kernel(&d, 3, 10.0, 0.5);
    let w01 = (-0.1f64).exp(); // 0.9048
    let w02 = (-0.625f64).exp(); // 0.5353 >= 0.5, kept
                                 // exp(-0.9) = 0.4066 < 0.5, dropped.
    let want = [0.0, w01, w02, w01, 0.0, 0.0, w02, 0.0, 0.0];
    for k in 0..9 {
        assert_close(w[k], want[k], 1e-15, "W");
    }
    assert_eq!(w.iter().filter(|&&x| x != 0.0).count(), 4);
    // Missing edges (infinite distance) give no weight even with epsilon = 0.
    let d = vec![0.0, f64::INFINITY, f64::INFINITY, 0.0];
    assert!(gaussian_kernel(&d, 2, 10.0, 0.0).iter().all(|&x| x == 0.0));
}

#[test]
fn eigenvalue_solver() {
    // Normalised Laplacians with known spectra: path P4 -> 2, ring C5 -> 1 - cos(4π/5).
    let path = |n: usize| {
        let mut w = vec![0.0; n * n];
        for i in 0..n - 1 {
            w[i * n + i + 1] = 1.0;
            w[(i + 1) * n + i] = 1.0;
        }
        w
    };
    let (_, lmax) = scaled_laplacian(&path(4), 4);
    assert_close(lmax, 2.0, 1e-12, "P4");
    let mut ring = vec![0.0; 25];
    for i in 0..5 {
        ring[i * 5 + (i + 1) % 5] = 1.0;
        ring[(i + 1) % 5 * 5 + i] = 1.0;
    }
    let (_, lmax) = scaled_laplacian(&ring, 5);
    assert_close(
        lmax,
        1.0 - (4.0 * std::f64::consts::PI / 5.0).cos(),
        1e-12,
        "C5",
    );
    // Diagonal matrix.
    assert_close(
        sym_eig_max(&[1.0, 0.0, 0.0, 0.0, -3.0, 0.0, 0.0, 0.0, 2.5], 3),
        2.5,
        1e-12,
        "diag",
    );
    // Random symmetric matrix vs power iteration on a shifted (positive definite) copy.
    let n = 7;
    let mut rng = Rng::from_state(7);
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v = rng.next_f64() * 2.0 - 1.0;
            a[i * n + j] = v;
            a[j * n + i] = v;
        }
    }
    let shift = 10.0;
    let mut x = vec![1.0; n];
    let mut lam = 0.0;
    for _ in 0..20000 {
        let y: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| a[i * n + j] * x[j]).sum::<f64>() + shift * x[i])
            .collect();
        let norm = y.iter().map(|v| v * v).sum::<f64>().sqrt();
        lam = (0..n).map(|i| y[i] * x[i]).sum::<f64>() / x.iter().map(|v| v * v).sum::<f64>();
        x = y.iter().map(|v| v / norm).collect();
    }
    assert_close(sym_eig_max(&a, n), lam - shift, 1e-9, "random 7x7");
}

#[test]
fn laplacian_and_chebyshev() {
    // 5 nodes: a weighted triangle 0-1-2, an edge 3-4... plus node 4 linked to 2; node 5 isolated.
    let n = 6;
    let mut w = vec![0.0; n * n];
    for &(i, j, v) in &[
        (0, 1, 0.9),
        (1, 2, 0.6),
        (0, 2, 0.7),
        (2, 3, 0.55),
        (3, 4, 1.0),
    ] {
        w[i * n + j] = v;
        w[j * n + i] = v;
    }
    let (lt, lmax) = scaled_laplacian(&w, n);
    assert!(lmax > 1.0 && lmax <= 2.0 + 1e-12, "lambda_max {lmax}");
    // Isolated node: as in the original STGCN code L_55 = 0 (not 1), so L̃_55 = −1, and no
    // off-diagonal entries.
    assert_eq!(lt[5 * n + 5], -1.0, "isolated node's diagonal");
    assert!((0..5).all(|j| lt[5 * n + j] == 0.0 && lt[j * n + 5] == 0.0));
    // Spectrum of L̃ within [−1, 1], top at 1.
    assert_close(sym_eig_max(&lt, n), 1.0, 1e-10, "max eig L̃");
    let neg: Vec<f64> = lt.iter().map(|v| -v).collect();
    assert!(-sym_eig_max(&neg, n) >= -1.0 - 1e-10);
    // Entry checks of L = (D − W) normalised where both degrees are non-zero.
    assert_close(
        lt[0],
        2.0 / lmax - 1.0,
        1e-15,
        "L̃_00 (connected node: L_00 = 1)",
    );
    let deg = |i: usize| (0..n).map(|j| w[i * n + j]).sum::<f64>();
    let l01 = -0.9 / (deg(0) * deg(1)).sqrt();
    assert_close(lt[1], 2.0 * l01 / lmax, 1e-15, "L̃_01");

    let cheb = chebyshev(&lt, n, 4);
    assert_eq!(cheb.len(), 4 * n * n);
    let t = |k: usize| &cheb[k * n * n..(k + 1) * n * n];
    for i in 0..n {
        for j in 0..n {
            assert_eq!(t(0)[i * n + j], if i == j { 1.0 } else { 0.0 });
            assert_eq!(t(1)[i * n + j], lt[i * n + j] as f32);
        }
    }
    let l2 = matmul(&lt, &lt, n);
    let l3 = matmul(&l2, &lt, n);
    for k in 0..n * n {
        let eye = if k % (n + 1) == 0 { 1.0 } else { 0.0 };
        assert_close(t(2)[k] as f64, 2.0 * l2[k] - eye, 1e-6, "T2");
        assert_close(t(3)[k] as f64, 4.0 * l3[k] - 3.0 * lt[k], 1e-6, "T3");
    }
}

#[test]
fn default_splits() {
    assert_eq!(default_split(44), [34, 5, 5]);
    assert_eq!(default_split(4), [2, 1, 1]);
    assert_eq!(default_split(62), [48, 7, 7]);
    assert_eq!(default_split(3), [1, 1, 1]);
}

#[test]
fn windows_stay_inside_days_and_batches_match_indexing() {
    let ds = Dataset::synthetic(5, 4, 30, 3);
    assert_eq!(ds.split_days, [2, 1, 1]);
    assert_eq!(ds.days, 4);
    assert_eq!(ds.steps, 120);
    assert_eq!(ds.speeds.len(), 120 * 5);
    assert_eq!(ds.windows(Split::Train), 20);
    assert_eq!(ds.windows(Split::Val), 10);
    assert_eq!(ds.windows(Split::Test), 10);
    assert!(ds.filled >= 1);
    assert_eq!(ds.cheb.len(), 3 * 25);

    let (n, spd) = (ds.nodes, ds.steps_per_day);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (split, first_day) in [(Split::Train, 0), (Split::Val, 2), (Split::Test, 3)] {
        let idx: Vec<usize> = (0..ds.windows(split)).collect();
        ds.batch(split, &idx, &mut x, &mut y);
        assert_eq!(x.len(), idx.len() * 12 * n);
        assert_eq!(y.len(), idx.len() * 9 * n);
        for &w in &idx {
            let day = first_day + w / 10;
            let start = day * spd + w % 10;
            // No window crosses a day boundary.
            assert_eq!(start / spd, (start + 20) / spd, "window {w} of {split:?}");
            for h in 0..21 {
                for i in 0..n {
                    let want = ((ds.speeds[(start + h) * n + i] as f64 - ds.mean) / ds.std) as f32;
                    let got = if h < 12 {
                        x[(w * 12 + h) * n + i]
                    } else {
                        y[(w * 9 + h - 12) * n + i]
                    };
                    assert!((got - want).abs() < 1e-6, "{split:?} w{w} h{h} i{i}");
                }
            }
        }
    }
    // Arbitrary order and repeats; buffers are replaced, not appended to.
    ds.batch(Split::Test, &[9, 0, 9], &mut x, &mut y);
    assert_eq!(x.len(), 3 * 12 * n);
    assert_eq!(x[..12 * n], x[2 * 12 * n..]);

    let info = ds.info();
    assert_eq!(info.dataset, "synthetic");
    assert_eq!(
        info.windows,
        WindowCounts {
            train: 20,
            val: 10,
            test: 10
        }
    );
    let json = serde_json::to_string(&info).unwrap();
    assert!(json.contains("\"train_mean\""), "{json}");
    // The trivial predictor's validation MAE, by hand: |speed − training mean| over every
    // predicted step of every validation window.
    let (mut sum, mut count) = (0.0, 0usize);
    ds.batch(Split::Val, &(0..10).collect::<Vec<_>>(), &mut x, &mut y);
    for z in &y {
        sum += (*z as f64 * ds.std).abs();
        count += 1;
    }
    let want = sum / count as f64;
    assert!(
        (info.val_mae_of_train_mean - want).abs() < 1e-4 * want,
        "{info:?} {want}"
    );
    assert!(info.val_mae_of_train_mean > 0.0);
}

#[test]
#[should_panic(expected = "out of range")]
fn batch_rejects_out_of_range_index() {
    let ds = Dataset::synthetic(3, 3, 25, 1);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    ds.batch(Split::Val, &[ds.windows(Split::Val)], &mut x, &mut y);
}

#[test]
fn stats_multiplicity_equals_brute_force() {
    let ds = Dataset::synthetic(7, 5, 40, 11);
    let (n, spd, win) = (ds.nodes, ds.steps_per_day, 21);
    let mut all = Vec::new();
    for d in 0..ds.split_days[0] {
        for o in 0..spd - win + 1 {
            let t0 = d * spd + o;
            all.extend(ds.speeds[t0 * n..(t0 + win) * n].iter().map(|&v| v as f64));
        }
    }
    assert_eq!(all.len(), ds.windows(Split::Train) * win * n);
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64;
    assert_close(ds.mean, mean, 1e-9, "mean");
    assert_close(ds.std, var.sqrt(), 1e-9, "std");
    // Deterministic.
    let again = Dataset::synthetic(7, 5, 40, 11);
    assert_eq!(again.speeds, ds.speeds);
    assert_eq!(again.checksum, ds.checksum);
    assert_ne!(Dataset::synthetic(7, 5, 40, 12).checksum, ds.checksum);
}

#[test]
fn names_parse_display_serde() {
    assert_eq!(
        "PeMSD7".parse::<DatasetName>().unwrap(),
        DatasetName::Pemsd7
    );
    assert_eq!(
        "pemsd8".parse::<DatasetName>().unwrap(),
        DatasetName::Pemsd8
    );
    let e = "pems07".parse::<DatasetName>().unwrap_err();
    assert!(e.to_string().contains("pems07"));
    assert_eq!(DatasetName::Pemsd8.to_string(), "pemsd8");
    assert_eq!(
        serde_json::to_string(&DatasetName::Pemsd7).unwrap(),
        "\"pemsd7\""
    );
    let d: DatasetName = serde_json::from_str("\"pemsd8\"").unwrap();
    assert_eq!(d, DatasetName::Pemsd8);
    let cfg = DataConfig::new(DatasetName::Pemsd7);
    assert_eq!(
        (cfg.sigma2, cfg.epsilon, cfg.n_his, cfg.n_pred, cfg.ks),
        (10.0, 0.5, 12, 9, 3)
    );
    assert_eq!(cfg.data_dir, PathBuf::from("data"));
}

#[test]
fn csv_errors_name_file_line_column() {
    let p = Path::new("dir/x.csv");
    let e = parse_csv::<f32>(p, "1,2,3\n4,abc,6\n", 3, false).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("dir/x.csv") && m.contains("line 2") && m.contains("column 2"),
        "{m}"
    );
    let e = parse_csv::<f32>(p, "1,2,3\n4,5\n", 3, false).unwrap_err();
    assert!(
        e.to_string().contains("line 2") && e.to_string().contains("found 2"),
        "{e}"
    );
    let (v, rows) = parse_csv::<f64>(p, "a,b\n,2.5\r\n", 2, true).unwrap();
    assert_eq!(rows, 1);
    assert!(v[0].is_nan() && v[1] == 2.5);
    let mut notes = Vec::new();
    let e = parse_edge_list(p, "from,to,cost\n0,9,1.0\n", 5, &mut notes).unwrap_err();
    assert!(e.to_string().contains("line 2, column 2"), "{e}");
}

#[test]
fn pemsd7_real_data() {
    let t = Instant::now();
    let mut cfg = DataConfig::new(DatasetName::Pemsd7);
    cfg.data_dir = real_data_dir();
    let ds = Dataset::load(&cfg).unwrap();
    eprintln!("PeMSD7 load: {:.3} s; {:?}", t.elapsed().as_secs_f64(), ds);
    assert_eq!((ds.nodes, ds.steps, ds.days), (228, 12672, 44));
    assert_eq!(ds.split_days, [34, 5, 5]);
    assert_eq!(ds.windows(Split::Train), 34 * 268);
    assert_eq!(ds.windows(Split::Test), 5 * 268);
    assert!(ds.filled >= 228, "filled {}", ds.filled);
    // Row 0 is filled from row 1 (nearest valid reading).
    assert_eq!(ds.speeds[..228], ds.speeds[228..456]);
    assert_close(ds.mean, 58.4998, 1e-3, "PeMSD7 train mean");
    assert_close(ds.std, 13.7286, 1e-3, "PeMSD7 train std");
    assert_eq!(ds.edges, 1664);
    // Nodes without an edge at σ² = 10, ε = 0.5: their Laplacian diagonal is 0 (L̃_ii = −1).
    assert_eq!(ds.isolated, 3);
    let nn = ds.nodes * ds.nodes;
    let isolated_diagonals = (0..ds.nodes)
        .filter(|&i| ds.cheb[nn + i * ds.nodes + i] == -1.0)
        .count();
    assert_eq!(isolated_diagonals, 3);
    assert_eq!(ds.cheb.len(), 3 * 228 * 228);
    assert!(ds.lambda_max > 1.0 && ds.lambda_max <= 2.0 + 1e-9);
    assert_eq!(ds.checksum.len(), 64);
    assert_eq!(
        Dataset::checksum(&cfg).unwrap(),
        ds.checksum,
        "the cheap checksum"
    );
    assert!(ds.notes.iter().any(|n| n.contains("row 0")));
}

#[test]
fn pemsd8_real_partial_data() {
    let mut cfg = DataConfig::new(DatasetName::Pemsd8);
    cfg.data_dir = real_data_dir();
    let ds = Dataset::load(&cfg).unwrap();
    eprintln!("PeMSD8: {ds:?}\n{:#?}", ds.notes);
    assert_eq!((ds.nodes, ds.days, ds.steps), (170, 4, 4 * 288));
    assert_eq!(ds.split_days, [2, 1, 1]);
    assert_eq!(ds.edges, 546);
    assert_eq!(ds.filled, 0);
    assert_eq!(
        Dataset::checksum(&cfg).unwrap(),
        ds.checksum,
        "the cheap checksum"
    );
    // Symmetric weights.
    let n = 170;
    assert!((0..n).all(|i| (0..n).all(|j| ds.weights[i * n + j] == ds.weights[j * n + i])));
    assert!(ds.notes.iter().any(|m| m.contains(
            "PeMSD8: only the partial speed file (1282 steps) is present; using 4 whole days, 130 trailing steps dropped"
        )));
}

#[test]
fn checksum_mismatch_and_missing_file() {
    let dir = temp_dir("sum");
    fs::create_dir_all(dir.join("pemsd8")).unwrap();
    let src = real_data_dir();
    let mut text = fs::read(src.join(PEMSD8_EDGES.rel)).unwrap();
    *text.last_mut().unwrap() = b' ';
    fs::write(dir.join(PEMSD8_EDGES.rel), &text).unwrap();
    let mut cfg = DataConfig::new(DatasetName::Pemsd8);
    cfg.data_dir = dir.clone();
    let err = Dataset::load(&cfg).unwrap_err();
    let m = err.to_string();
    assert!(matches!(err, DataError::Checksum { .. }), "{m}");
    assert!(
        m.contains("distance.csv") && m.contains(PEMSD8_EDGES.sha256),
        "{m}"
    );
    assert!(m.contains(&sha256_hex(&text)), "{m}");

    let mut cfg = DataConfig::new(DatasetName::Pemsd7);
    cfg.data_dir = dir.clone();
    let err = Dataset::load(&cfg).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// Write an npz (as numpy's savez does: zip64 member `data.npy`) holding `[t, 170, 3]`.
fn write_npz(path: &Path, t: usize, f4: bool, deflate: bool, shape: &str) -> Vec<f32> {
    use std::io::Write;
    let n = 170;
    let descr = if f4 { "<f4" } else { "<f8" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    let mut speeds = Vec::new();
    for s in 0..t {
        for i in 0..n {
            let v = [
                (s + i) as f64,
                0.5,
                40.0 + ((s * 7 + i * 3) % 300) as f64 * 0.1,
            ];
            speeds.push(v[2] as f32);
            for x in v {
                if f4 {
                    npy.extend((x as f32).to_le_bytes());
                } else {
                    npy.extend(x.to_le_bytes());
                }
            }
        }
    }
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(true);
    let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
    z.start_file("data.npy", opts).unwrap();
    z.write_all(&npy).unwrap();
    z.finish().unwrap();
    speeds
}

#[test]
fn pems08_npz_loader() {
    let dir = temp_dir("npz");
    fs::create_dir_all(dir.join("pemsd8")).unwrap();
    fs::copy(
        real_data_dir().join(PEMSD8_EDGES.rel),
        dir.join(PEMSD8_EDGES.rel),
    )
    .unwrap();
    let t = 3 * 288 + 5;
    for (f4, deflate) in [(false, true), (true, false)] {
        let npz = dir.join(format!("PEMS08_{f4}_{deflate}.npz"));
        let want = write_npz(&npz, t, f4, deflate, &format!("({t}, 170, 3)"));
        let mut cfg = DataConfig::new(DatasetName::Pemsd8);
        cfg.data_dir = dir.clone();
        cfg.pems08_npz = Some(npz.clone());
        let ds = Dataset::load(&cfg).unwrap();
        assert_eq!((ds.days, ds.steps, ds.edges), (3, 864, 546));
        assert_eq!(ds.speeds[..], want[..864 * 170]);
        assert!(
            ds.notes.iter().any(|m| m.contains("CRC-32")),
            "{:?}",
            ds.notes
        );
        assert!(
            ds.notes.iter().any(|m| m.contains("5 trailing steps")),
            "{:?}",
            ds.notes
        );
    }
    let bad = dir.join("bad.npz");
    write_npz(&bad, 300, false, false, "(300, 170, 2)");
    let mut cfg = DataConfig::new(DatasetName::Pemsd8);
    cfg.data_dir = dir.clone();
    cfg.pems08_npz = Some(bad);
    let err = Dataset::load(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("bad.npz") && err.contains("expected (T, 170, 3)"),
        "{err}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npy_header_parsing() {
    let (d, f, s) =
        parse_npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (17856, 170, 3), }")
            .unwrap();
    assert_eq!((d.as_str(), f, s), ("<f8", false, vec![17856, 170, 3]));
    let (_, _, s) =
        parse_npy_header("{'descr': '<f4', 'fortran_order': True, 'shape': (5,), }").unwrap();
    assert_eq!(s, vec![5]);
    assert!(parse_npy_header("{'descr': '<f4'}").is_none());
}
