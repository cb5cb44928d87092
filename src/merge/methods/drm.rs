//! DRM, Decom-Renorm-Merge (Chaichana et al., 2025), horizontal (DRM-H) and vertical (DRM-V).
//!
//! Vertical: stack the task vectors on top of each other, `A = [τ_1; …; τ_K]` (`K·n × m`), and
//! decompose `A = U diag(σ) Vᵀ`; the right singular vectors `V` are the shared basis. Drop
//! directions with `σ ≤ rank_tol · σ_max`. Split `U` into the K task blocks `U_i` (`n × r`),
//! renormalise every column of every block to unit length, moving the norm into task-specific
//! singular values `σ_i = σ · ‖U_i[:, c]‖` (norms are clamped to `eps` before dividing);
//! prune the stacked `U_i` to the top `1 − drop_rate` entries by magnitude (one threshold over
//! all tasks), form `U_i diag(σ_i)`, elect signs across tasks by mass, multiply by the expert
//! coefficients, take the disjoint mean, and reconstruct `Δ = (merged U·σ) Vᵀ`.
//! Horizontal is the mirror image: `A = [τ_1 … τ_K]` (`n × K·m`), shared `U`, per-task
//! blocks of `V`.
//!
//! Non-matrix tensors: sign election + coefficients + disjoint mean, as in the reference.
//! With `drop_rate = 0` the reference skips basis merging and takes the disjoint mean of the
//! task vectors; we do the same (but still apply the coefficients).

use faer::Mat;

use crate::merge::linalg::{from_mat, svd, to_mat};
use crate::merge::method::{disjoint_mean, elect_signs, kth_smallest_abs, MergeMethod, TensorInput};

/// Direction of the joint decomposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrmDirection {
    /// Stack task vectors side by side (shared left basis) — DRM-H.
    Horizontal,
    /// Stack task vectors on top of each other (shared right basis) — DRM-V.
    Vertical,
}

/// Decom-Renorm-Merge.
#[derive(Debug, Clone)]
pub struct Drm {
    /// Joint-decomposition direction (default vertical, as in the reference config).
    pub direction: DrmDirection,
    /// Fraction of renormalised basis entries pruned (default 0.8).
    pub drop_rate: f64,
    /// Relative singular-value threshold below which directions are dropped (default 1e-2).
    pub rank_tol: f32,
    /// Epsilon that clamps block norms before renormalising (default 1e-12).
    pub eps: f32,
    /// Disjoint mean (default true) instead of the plain mean.
    pub disjoint_mean: bool,
}

impl Default for Drm {
    fn default() -> Self {
        Drm {
            direction: DrmDirection::Vertical,
            drop_rate: 0.8,
            rank_tol: 1e-2,
            eps: 1e-12,
            disjoint_mean: true,
        }
    }
}

/// Zero every entry (over all blocks together) whose magnitude is below the
/// `(len − round(len·keep))`-th smallest magnitude, as the reference's `zero_out_non_topk`.
fn prune_global(blocks: &mut [Vec<f32>], keep: f64) {
    if keep >= 1.0 {
        return;
    }
    let all: Vec<f32> = blocks.iter().flatten().copied().collect();
    let len = all.len();
    let k = len - ((len as f64) * keep).round_ties_even() as usize;
    if k == 0 {
        return;
    }
    let thr = kth_smallest_abs(&all, k);
    for b in blocks.iter_mut() {
        for x in b.iter_mut() {
            if x.abs() < thr {
                *x = 0.0;
            }
        }
    }
}

fn mean_of(stack: &[Vec<f32>], coeffs: &[f32], disjoint: bool) -> Vec<f32> {
    let n = stack.first().map_or(0, |t| t.len());
    let mut sum = vec![0.0f32; n];
    let mut cnt = vec![0u32; n];
    for (t, &c) in stack.iter().zip(coeffs) {
        for j in 0..n {
            let v = t[j] * c;
            sum[j] += v;
            if v != 0.0 {
                cnt[j] += 1;
            }
        }
    }
    if disjoint {
        sum.iter().zip(&cnt).map(|(s, &c)| s / c.max(1) as f32).collect()
    } else {
        let k = stack.len().max(1) as f32;
        sum.iter().map(|s| s / k).collect()
    }
}

impl Drm {
    /// The elect + coefficients + (disjoint) mean step.
    fn combine(&self, stack: &[Vec<f32>], coeffs: &[f32]) -> Vec<f32> {
        let signs = elect_signs(stack);
        if self.disjoint_mean {
            disjoint_mean(stack, &signs, coeffs)
        } else {
            let elected: Vec<Vec<f32>> = stack
                .iter()
                .map(|t| t.iter().zip(&signs).map(|(x, s)| if *x != 0.0 && crate::merge::method::sign(*x) == *s { *x } else { 0.0 }).collect())
                .collect();
            mean_of(&elected, coeffs, false)
        }
    }
}

impl MergeMethod for Drm {
    fn name(&self) -> &'static str {
        match self.direction {
            DrmDirection::Horizontal => "drm-h",
            DrmDirection::Vertical => "drm-v",
        }
    }

    fn describe(&self) -> String {
        format!(
            "DRM-{} (drop_rate={}, rank_tol={}, eps={}, disjoint_mean={})",
            if self.direction == DrmDirection::Horizontal { "H" } else { "V" },
            self.drop_rate,
            self.rank_tol,
            self.eps,
            self.disjoint_mean
        )
    }

    fn is_spectral(&self) -> bool {
        true
    }

    fn merge_matrix(&self, t: &TensorInput<'_>, n: usize, m: usize) -> Result<Vec<f32>, String> {
        let k = t.k();
        if self.drop_rate == 0.0 {
            return Ok(mean_of(&t.taus, t.weights, self.disjoint_mean));
        }
        // joint decomposition
        let joint = match self.direction {
            DrmDirection::Vertical => {
                let flat: Vec<f32> = t.taus.iter().flatten().copied().collect();
                to_mat(&flat, k * n, m)
            }
            DrmDirection::Horizontal => {
                let mut a = Mat::<f32>::zeros(n, k * m);
                for (i, tau) in t.taus.iter().enumerate() {
                    for row in 0..n {
                        for col in 0..m {
                            a[(row, i * m + col)] = tau[row * m + col];
                        }
                    }
                }
                a
            }
        };
        let d = svd(joint.as_ref())?;
        drop(joint);
        let smax = d.s.first().copied().unwrap_or(0.0);
        let thr = smax * self.rank_tol;
        let r = d.s.iter().filter(|&&s| s > thr).count();
        if r == 0 {
            return Ok(vec![0.0; n * m]);
        }
        // the per-task blocks of the non-shared factor: rows of U (vertical) or of V (horizontal)
        let (fac, blk) = match self.direction {
            DrmDirection::Vertical => (&d.u, n),
            DrmDirection::Horizontal => (&d.v, m),
        };
        // blocks[i] is blk × r, stored column-major (column c contiguous)
        let mut blocks: Vec<Vec<f32>> = Vec::with_capacity(k);
        let mut sig: Vec<Vec<f32>> = Vec::with_capacity(k);
        for i in 0..k {
            let mut b = vec![0.0f32; blk * r];
            let mut si = vec![0.0f32; r];
            for c in 0..r {
                let col = fac.col(c);
                let dst = &mut b[c * blk..(c + 1) * blk];
                let mut nrm = 0.0f64;
                for row in 0..blk {
                    let x = col[i * blk + row];
                    dst[row] = x;
                    nrm += (x as f64) * (x as f64);
                }
                let nrm = nrm.sqrt() as f32;
                let div = nrm.max(self.eps);
                dst.iter_mut().for_each(|x| *x /= div);
                si[c] = d.s[c] * nrm;
            }
            blocks.push(b);
            sig.push(si);
        }
        prune_global(&mut blocks, 1.0 - self.drop_rate);
        for (b, si) in blocks.iter_mut().zip(&sig) {
            for c in 0..r {
                b[c * blk..(c + 1) * blk].iter_mut().for_each(|x| *x *= si[c]);
            }
        }
        let merged = self.combine(&blocks, t.weights); // blk × r, column-major
        let mb = Mat::<f32>::from_fn(blk, r, |row, c| merged[c * blk + row]);
        let out = match self.direction {
            // (n × r) · (m × r)ᵀ
            DrmDirection::Vertical => &mb * d.v.subcols(0, r).transpose(),
            // (n × r) · (m × r)ᵀ with the shared U
            DrmDirection::Horizontal => d.u.subcols(0, r) * mb.transpose(),
        };
        Ok(from_mat(out.as_ref()))
    }

    fn merge_vector(&self, t: &TensorInput<'_>) -> Result<Vec<f32>, String> {
        Ok(self.combine(&t.taus, t.weights))
    }
}
