//! TSV-M, Task Singular Vectors merging (Gargiulo et al., CVPR 2025).
//!
//! For each 2-D task vector `τ_i` (rank `r = min(m, n)`), keep its top `⌊r/K⌋` singular
//! triplets (at least one), concatenate the `U_i`'s into `Û` (`m × K⌊r/K⌋`), the `V_i`'s into
//! `V̂`, and the singular values into `Ŝ`; orthogonalise both bases with their polar factor
//! (`Û = P Σ Qᵀ → U⊥ = P Qᵀ`, the closest matrix with orthonormal columns, which is what the
//! reference computes as `u_u @ v_u`), and return `Δ = α · U⊥ diag(Ŝ) V⊥ᵀ`.
//! Non-matrix tensors get the plain mean, scaled by α, as in the reference.
//! Expert weights multiply `τ_i` before the decomposition.

use faer::Mat;

use crate::merge::linalg::{from_mat, polar_newton_schulz, polar_svd, svd, to_mat};
use crate::merge::method::{weighted_mean, MergeMethod, TensorInput};
use crate::merge::methods::boosted_tsv::{boost_spectrum, Orthogonalizer};

/// TSV-M.
#[derive(Debug, Clone)]
pub struct TsvMerge {
    /// Scaling coefficient α of the merged update (default 1.0).
    pub alpha: f32,
}

impl Default for TsvMerge {
    fn default() -> Self {
        TsvMerge { alpha: 1.0 }
    }
}

impl MergeMethod for TsvMerge {
    fn name(&self) -> &'static str {
        "tsv-m"
    }

    fn describe(&self) -> String {
        format!("TSV-M (alpha={}, floor(r/K) triplets per task, SVD polar)", self.alpha)
    }

    fn is_spectral(&self) -> bool {
        true
    }

    fn merge_matrix(&self, t: &TensorInput<'_>, rows: usize, cols: usize) -> Result<Vec<f32>, String> {
        tsv_core(&t.weighted(), rows, cols, self.alpha, None, Orthogonalizer::Svd)
    }

    fn merge_vector(&self, t: &TensorInput<'_>) -> Result<Vec<f32>, String> {
        let mut m = weighted_mean(&t.taus, t.weights);
        m.iter_mut().for_each(|v| *v *= self.alpha);
        Ok(m)
    }
}

/// The concatenated, not yet orthogonalised, per-task bases of TSV-M.
#[derive(Debug)]
pub struct TsvBases {
    /// `m × K·p` left singular vectors, task blocks side by side.
    pub u: Mat<f32>,
    /// Concatenated (possibly boosted) singular values.
    pub s: Vec<f32>,
    /// `n × K·p` right singular vectors.
    pub v: Mat<f32>,
    /// Triplets kept per task, `p = max(1, ⌊r/K⌋)`.
    pub per_task: usize,
}

/// Decompose every task vector and concatenate the top `max(1, ⌊r/K⌋)` triplets of each.
/// With `boost_beta`, the kept singular values are boosted (see [`boost_spectrum`]).
pub fn tsv_bases(taus: &[Vec<f32>], rows: usize, cols: usize, boost_beta: Option<f64>) -> Result<TsvBases, String> {
    let k = taus.len();
    let r = rows.min(cols);
    let per = (r / k.max(1)).clamp(1, r.max(1));
    let kk = per * k;
    let mut u = Mat::<f32>::zeros(rows, kk);
    let mut v = Mat::<f32>::zeros(cols, kk);
    let mut s = vec![0.0f32; kk];
    for (i, tau) in taus.iter().enumerate() {
        let d = svd(to_mat(tau, rows, cols).as_ref())?;
        let mut si = d.s[..per].to_vec();
        if let Some(beta) = boost_beta {
            boost_spectrum(&d.s, &mut si, beta);
        }
        for (j, &sj) in si.iter().enumerate() {
            let c = i * per + j;
            s[c] = sj;
            u.col_mut(c).copy_from(d.u.col(j));
            v.col_mut(c).copy_from(d.v.col(j));
        }
    }
    Ok(TsvBases { u, s, v, per_task: per })
}

/// Full TSV-M on one matrix (weights already applied). Shared with BoostedTSV-M.
pub fn tsv_core(
    taus: &[Vec<f32>],
    rows: usize,
    cols: usize,
    alpha: f32,
    boost_beta: Option<f64>,
    orth: Orthogonalizer,
) -> Result<Vec<f32>, String> {
    let b = tsv_bases(taus, rows, cols, boost_beta)?;
    let (uo, vo) = orthogonalize_pair(&b.u, &b.v, taus.len(), orth)?;
    // U⊥ · diag(α·Ŝ) · V⊥ᵀ
    let mut us = uo;
    for (c, &sv) in b.s.iter().enumerate() {
        let f = sv * alpha;
        us.col_mut(c).iter_mut().for_each(|x| *x *= f);
    }
    let out = &us * vo.transpose();
    Ok(from_mat(out.as_ref()))
}

/// Orthogonalise both concatenated bases with the chosen method.
pub fn orthogonalize_pair(
    u: &Mat<f32>,
    v: &Mat<f32>,
    k: usize,
    orth: Orthogonalizer,
) -> Result<(Mat<f32>, Mat<f32>), String> {
    Ok(match orth {
        Orthogonalizer::Svd => (polar_svd(u.as_ref())?, polar_svd(v.as_ref())?),
        Orthogonalizer::NewtonSchulz { iters, tol } => {
            // Each task block has orthonormal columns, so ‖Û‖₂² ≤ K: scaling by √K puts every
            // singular value in (0, 1], inside the (0, √3) convergence region.
            let scale = (k.max(1) as f32).sqrt();
            (
                polar_newton_schulz(u.as_ref(), scale, iters, tol).0,
                polar_newton_schulz(v.as_ref(), scale, iters, tol).0,
            )
        }
    })
}
