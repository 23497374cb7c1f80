//! The road graph (paper Eq. 16) and the Chebyshev basis of its scaled Laplacian: Gaussian
//! kernel, Laplacian as STGCN builds it, the largest eigenvalue (tridiagonalisation and Sturm
//! bisection), the Chebyshev terms.

/// Eq. 16: `W_ij = exp(−d_ij² / σ²)` where that is `>= ε`, else 0; zero diagonal (d in km).
pub(super) fn gaussian_kernel(dist_km: &[f64], n: usize, sigma2: f64, epsilon: f64) -> Vec<f64> {
    let mut w = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let d = dist_km[i * n + j];
            let v = (-d * d / sigma2).exp();
            if v >= epsilon && v > 0.0 {
                w[i * n + j] = v;
            }
        }
    }
    w
}

/// Scaled Laplacian `L̃ = 2L/λmax − I` (paper Eq. 16) of the normalised Laplacian built as the
/// original STGCN code builds it: `L = D − W` (degrees = row sums of W), then entry (i, j)
/// divided by `sqrt(d_i d_j)` only where both degrees are non-zero. A node without edges
/// (`d_i = 0`) keeps `L_ii = 0`, not the 1 of `I − D^−½ W D^−½`. Returns `(L̃, λmax)`.
/// λmax is the largest eigenvalue of the symmetric part of L (L itself for symmetric W).
pub(super) fn scaled_laplacian(w: &[f64], n: usize) -> (Vec<f64>, f64) {
    let deg = degrees(w, n);
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let d = if i == j { deg[i] } else { 0.0 };
            let mut v = d - w[i * n + j];
            if deg[i] > 0.0 && deg[j] > 0.0 {
                v /= (deg[i] * deg[j]).sqrt();
            }
            l[i * n + j] = v;
        }
    }
    let mut sym = l.clone();
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (l[i * n + j] + l[j * n + i]);
            sym[i * n + j] = m;
            sym[j * n + i] = m;
        }
    }
    let lambda_max = sym_eig_max(&sym, n);
    let lambda = if lambda_max > 0.0 { lambda_max } else { 1.0 };
    for i in 0..n {
        for j in 0..n {
            let eye = if i == j { 1.0 } else { 0.0 };
            l[i * n + j] = 2.0 * l[i * n + j] / lambda - eye;
        }
    }
    (l, lambda_max)
}

/// Row sums of the `n × n` weight matrix (node degrees).
pub(super) fn degrees(w: &[f64], n: usize) -> Vec<f64> {
    w.chunks_exact(n).map(|row| row.iter().sum()).collect()
}

/// `[ks, n, n]`: T_0 = I, T_1 = L̃, T_k = 2 L̃ T_{k−1} − T_{k−2}, computed in f64.
pub(super) fn chebyshev(lt: &[f64], n: usize, ks: usize) -> Vec<f32> {
    let nn = n * n;
    let mut t: Vec<Vec<f64>> = Vec::with_capacity(ks);
    let mut eye = vec![0.0; nn];
    for i in 0..n {
        eye[i * n + i] = 1.0;
    }
    t.push(eye);
    if ks > 1 {
        t.push(lt.to_vec());
    }
    for k in 2..ks {
        let (p1, p2) = (&t[k - 1], &t[k - 2]);
        let mut next: Vec<f64> = p2.iter().map(|v| -v).collect();
        for i in 0..n {
            for m in 0..n {
                let a = 2.0 * lt[i * n + m];
                if a == 0.0 {
                    continue;
                }
                let row = &p1[m * n..(m + 1) * n];
                for (o, &b) in next[i * n..(i + 1) * n].iter_mut().zip(row) {
                    *o += a * b;
                }
            }
        }
        t.push(next);
    }
    t.into_iter().flatten().map(|v| v as f32).collect()
}

/// Largest eigenvalue of the symmetric `n × n` matrix `a`: Householder reduction to tridiagonal
/// form, then bisection with Sturm counts (deterministic, accurate to rounding).
pub(super) fn sym_eig_max(a: &[f64], n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (d, e) = tridiagonalize(a, n);
    // Gershgorin bounds.
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for i in 0..n {
        let r = if i > 0 { e[i - 1].abs() } else { 0.0 } + if i + 1 < n { e[i].abs() } else { 0.0 };
        lo = lo.min(d[i] - r);
        hi = hi.max(d[i] + r);
    }
    // Invariant: count_below(lo) < n (some eigenvalue >= lo), count_below(hi) == n.
    let scale = lo.abs().max(hi.abs()).max(f64::MIN_POSITIVE);
    hi += 1e-12 * scale;
    lo -= 1e-12 * scale;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi || hi - lo <= 4.0 * f64::EPSILON * scale {
            break;
        }
        if sturm_count_below(&d, &e, mid) == n {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Number of eigenvalues of the symmetric tridiagonal (d, e) that are `< x`.
pub(super) fn sturm_count_below(d: &[f64], e: &[f64], x: f64) -> usize {
    let mut count = 0;
    let mut q = 1.0;
    for i in 0..d.len() {
        let off = if i > 0 { e[i - 1] * e[i - 1] / q } else { 0.0 };
        q = d[i] - x - off;
        if q == 0.0 {
            q = -f64::EPSILON * (d[i].abs() + x.abs()).max(f64::MIN_POSITIVE);
        }
        if q < 0.0 {
            count += 1;
        }
    }
    count
}

/// Householder reduction of a symmetric matrix to tridiagonal form: (diagonal, off-diagonal).
pub(super) fn tridiagonalize(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; n];
    let mut p = vec![0.0; n];
    for k in 0..n.saturating_sub(2) {
        let norm: f64 = (k + 1..n).map(|i| m[i * n + k].powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let x0 = m[(k + 1) * n + k];
        let alpha = if x0 > 0.0 { -norm } else { norm };
        for i in k + 1..n {
            v[i] = m[i * n + k];
        }
        v[k + 1] -= alpha;
        let vn: f64 = (k + 1..n).map(|i| v[i] * v[i]).sum::<f64>().sqrt();
        if vn == 0.0 {
            continue;
        }
        for x in &mut v[k + 1..n] {
            *x /= vn;
        }
        // p = B v, K = vᵀp, q = p − K v; B ← B − 2 v qᵀ − 2 q vᵀ.
        for i in k + 1..n {
            p[i] = (k + 1..n).map(|j| m[i * n + j] * v[j]).sum();
        }
        let kk: f64 = (k + 1..n).map(|i| v[i] * p[i]).sum();
        for i in k + 1..n {
            p[i] -= kk * v[i];
        }
        for i in k + 1..n {
            for j in k + 1..n {
                m[i * n + j] -= 2.0 * (v[i] * p[j] + p[i] * v[j]);
            }
        }
        m[(k + 1) * n + k] = alpha;
        m[k * n + k + 1] = alpha;
        for i in k + 2..n {
            m[i * n + k] = 0.0;
            m[k * n + i] = 0.0;
        }
    }
    let d = (0..n).map(|i| m[i * n + i]).collect();
    let e = (0..n.saturating_sub(1))
        .map(|i| m[(i + 1) * n + i])
        .collect();
    (d, e)
}
