//! Iso-C (Marczak et al., 2025, "No task left behind"): flatten the spectrum of the summed
//! task vector. `M = Σ_i w_i τ_i = U diag(σ) Vᵀ → Δ = α · mean(σ) · U Vᵀ` (the mean runs over
//! all `min(m, n)` singular values, as in the reference). Non-matrix tensors: mean, scaled by α.

use crate::merge::linalg::{from_mat, svd, to_mat};
use crate::merge::method::{weighted_mean, MergeMethod, TensorInput};

/// Iso-C.
#[derive(Debug, Clone)]
pub struct IsoC {
    /// Scaling coefficient α (default 1.0).
    pub alpha: f32,
}

impl Default for IsoC {
    fn default() -> Self {
        IsoC { alpha: 1.0 }
    }
}

impl MergeMethod for IsoC {
    fn name(&self) -> &'static str {
        "iso-c"
    }

    fn describe(&self) -> String {
        format!("Iso-C (alpha={})", self.alpha)
    }

    fn is_spectral(&self) -> bool {
        true
    }

    fn merge_matrix(&self, t: &TensorInput<'_>, rows: usize, cols: usize) -> Result<Vec<f32>, String> {
        let mut sum = vec![0.0f32; rows * cols];
        for (tau, &w) in t.taus.iter().zip(t.weights) {
            for (o, x) in sum.iter_mut().zip(tau) {
                *o += w * x;
            }
        }
        let d = svd(to_mat(&sum, rows, cols).as_ref())?;
        let mean = d.s.iter().map(|&x| x as f64).sum::<f64>() / d.s.len().max(1) as f64;
        let f = (mean as f32) * self.alpha;
        let mut u = d.u;
        for c in 0..u.ncols() {
            u.col_mut(c).iter_mut().for_each(|x| *x *= f);
        }
        Ok(from_mat((&u * d.v.transpose()).as_ref()))
    }

    fn merge_vector(&self, t: &TensorInput<'_>) -> Result<Vec<f32>, String> {
        let mut m = weighted_mean(&t.taus, t.weights);
        m.iter_mut().for_each(|v| *v *= self.alpha);
        Ok(m)
    }
}
