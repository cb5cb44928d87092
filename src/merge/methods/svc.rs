//! SVC, Singular Value Calibration (lyymuwu/SVC): a post-step after any method.
//!
//! For the merged update `Δm = U diag(σ) Vᵀ` of a matrix and each task vector `τ_i`, with
//! `a_m = u_rᵀ Δm = σ_r v_rᵀ` and `a_i = u_rᵀ τ_i`:
//! `s_{r,i} = ⟨a_m, a_i⟩ / max(‖a_i‖², ε)`, then
//!
//! * mode `mean-of-max` (default, the formula of our issue): `η_r = mean_i max(s_{r,i}, α)`;
//! * mode `reference` (the public code): `η_r = max(mean_i s_{r,i}, α)` if every
//!   `s_{r,i} > 0`, else `η_r = 1`;
//!
//! and `σ_r ← σ_r / η_r`. Both leave an exact single-task merge (`Δm = τ`) unchanged for
//! `α ≤ 1`. Only 2-D (and reshaped conv) tensors are calibrated; the column space (`U`) is
//! used, as the reference's default. Task vectors enter unweighted.

use crate::merge::linalg::{from_mat, svd, to_mat};

/// How the per-task ratios are combined into `η_r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvcMode {
    /// `η_r = mean_i max(s_{r,i}, α)`.
    MeanOfMax,
    /// `η_r = max(mean_i s_{r,i}, α)` when all `s_{r,i} > 0`, else 1.
    Reference,
}

/// SVC post-step.
#[derive(Debug, Clone)]
pub struct Svc {
    /// Lower clamp α (default 1.0; the SVC scripts use 1.0 after TSV-M and 1/K otherwise).
    pub alpha: f32,
    /// Denominator floor ε (default 1e-12).
    pub eps: f32,
    /// Combination rule.
    pub mode: SvcMode,
}

impl Default for Svc {
    fn default() -> Self {
        Svc {
            alpha: 1.0,
            eps: 1e-12,
            mode: SvcMode::MeanOfMax,
        }
    }
}

impl Svc {
    /// Parameter summary.
    pub fn describe(&self) -> String {
        format!(
            "SVC (alpha={}, eps={}, mode={})",
            self.alpha,
            self.eps,
            match self.mode {
                SvcMode::MeanOfMax => "mean-of-max",
                SvcMode::Reference => "reference",
            }
        )
    }

    /// Calibrate the merged `rows × cols` update against the (unweighted) task vectors.
    pub fn calibrate(&self, merged: &[f32], taus: &[Vec<f32>], rows: usize, cols: usize) -> Result<Vec<f32>, String> {
        let d = svd(to_mat(merged, rows, cols).as_ref())?;
        let kdim = d.s.len();
        let k = taus.len();
        // s[r][i]
        let mut ratios = vec![vec![0.0f32; k]; kdim];
        let ut = d.u.transpose();
        for (i, tau) in taus.iter().enumerate() {
            let proj = ut * to_mat(tau, rows, cols); // kdim × cols: row r = u_rᵀ τ_i
            for (r, row_ratio) in ratios.iter_mut().enumerate() {
                let mut dot = 0.0f64;
                let mut nrm = 0.0f64;
                let sr = d.s[r] as f64;
                for c in 0..cols {
                    let ai = proj[(r, c)] as f64;
                    dot += sr * d.v[(c, r)] as f64 * ai;
                    nrm += ai * ai;
                }
                row_ratio[i] = (dot / nrm.max(self.eps as f64)) as f32;
            }
        }
        let mut u = d.u;
        for (r, row_ratio) in ratios.iter().enumerate() {
            let eta = match self.mode {
                SvcMode::MeanOfMax => row_ratio.iter().map(|s| s.max(self.alpha)).sum::<f32>() / k as f32,
                SvcMode::Reference => {
                    if row_ratio.iter().all(|&s| s > 0.0) {
                        (row_ratio.iter().sum::<f32>() / k as f32).max(self.alpha)
                    } else {
                        1.0
                    }
                }
            };
            let f = d.s[r] / eta;
            u.col_mut(r).iter_mut().for_each(|x| *x *= f);
        }
        Ok(from_mat((&u * d.v.transpose()).as_ref()))
    }
}
