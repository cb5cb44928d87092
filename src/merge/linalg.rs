//! Dense linear algebra helpers on top of `faer`: row-major ⇄ `Mat` conversion, a thin SVD in
//! `f32` that retries in `f64` when it fails, polar factors (SVD or Newton–Schulz).
//!
//! Parallelism: the engine runs tensors in parallel and sets faer's global parallelism to
//! sequential, so every call here is single-threaded and memory per tensor stays bounded.

use faer::{Mat, MatRef};

/// Thin singular value decomposition `A = U · diag(s) · Vᵀ` (singular values non-increasing).
#[derive(Debug, Clone)]
pub struct Svd {
    /// Left singular vectors, `m × k` with `k = min(m, n)`.
    pub u: Mat<f32>,
    /// Singular values, length `k`, non-increasing.
    pub s: Vec<f32>,
    /// Right singular vectors, `n × k`.
    pub v: Mat<f32>,
}

/// Copy a row-major `rows × cols` slice into a faer matrix.
pub fn to_mat(data: &[f32], rows: usize, cols: usize) -> Mat<f32> {
    debug_assert_eq!(data.len(), rows * cols);
    MatRef::from_row_major_slice(data, rows, cols).to_owned()
}

/// Copy a faer matrix into a row-major vector.
pub fn from_mat(m: MatRef<'_, f32>) -> Vec<f32> {
    let (r, c) = (m.nrows(), m.ncols());
    let mut out = vec![0.0f32; r * c];
    for j in 0..c {
        let col = m.col(j);
        for i in 0..r {
            out[i * c + j] = col[i];
        }
    }
    out
}

fn all_finite(m: MatRef<'_, f32>) -> bool {
    (0..m.ncols()).all(|j| m.col(j).iter().all(|x| x.is_finite()))
}

/// Thin SVD in `f32`; on non-convergence (or non-finite output) retry in `f64` and narrow back.
pub fn svd(a: MatRef<'_, f32>) -> Result<Svd, String> {
    if let Ok(d) = a.thin_svd() {
        let s: Vec<f32> = d.S().column_vector().iter().copied().collect();
        if s.iter().all(|x| x.is_finite()) && all_finite(d.U()) && all_finite(d.V()) {
            return Ok(Svd {
                u: d.U().to_owned(),
                s,
                v: d.V().to_owned(),
            });
        }
    }
    let a64 = Mat::<f64>::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)] as f64);
    let d = a64
        .thin_svd()
        .map_err(|e| format!("SVD did not converge in f32 nor f64 ({e:?})"))?;
    let u = Mat::<f32>::from_fn(d.U().nrows(), d.U().ncols(), |i, j| d.U()[(i, j)] as f32);
    let v = Mat::<f32>::from_fn(d.V().nrows(), d.V().ncols(), |i, j| d.V()[(i, j)] as f32);
    let s: Vec<f32> = d.S().column_vector().iter().map(|x| *x as f32).collect();
    if !(s.iter().all(|x| x.is_finite()) && all_finite(u.as_ref()) && all_finite(v.as_ref())) {
        return Err("SVD produced non-finite values in f32 and f64".into());
    }
    Ok(Svd { u, s, v })
}

/// Polar factor `P·Qᵀ` of `A = P·Σ·Qᵀ` (the nearest matrix with orthonormal columns).
pub fn polar_svd(a: MatRef<'_, f32>) -> Result<Mat<f32>, String> {
    let d = svd(a)?;
    Ok(&d.u * d.v.transpose())
}

/// Polar factor by cubic Newton–Schulz iteration `X ← X·(1.5·I − 0.5·XᵀX)`.
///
/// `X₀ = A / scale` where `scale` must upper-bound `‖A‖₂` (the iteration converges for all
/// singular values in `(0, √3)`); the iteration stops after `max_iters` steps or as soon as
/// `max|XᵀX − I|` on the retained directions drops below `tol`.
/// Singular values that are exactly zero stay zero (the result is then a partial isometry).
/// Returns the factor and the number of iterations used.
pub fn polar_newton_schulz(a: MatRef<'_, f32>, scale: f32, max_iters: usize, tol: f32) -> (Mat<f32>, usize) {
    let inv = 1.0 / scale;
    let mut x = Mat::<f32>::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)] * inv);
    let k = x.ncols();
    let mut used = 0;
    for it in 0..max_iters {
        let g = x.transpose() * &x; // k × k
                                    // converged when XᵀX is (numerically) idempotent: every eigenvalue 0 or 1
        let mut err = 0.0f32;
        for j in 0..k {
            for i in 0..k {
                let target = if i == j { g[(i, i)].round().clamp(0.0, 1.0) } else { 0.0 };
                err = err.max((g[(i, j)] - target).abs());
            }
        }
        if err < tol {
            break;
        }
        let mut m = Mat::<f32>::from_fn(k, k, |i, j| -0.5 * g[(i, j)]);
        for i in 0..k {
            m[(i, i)] += 1.5;
        }
        x = &x * &m;
        used = it + 1;
    }
    (x, used)
}
