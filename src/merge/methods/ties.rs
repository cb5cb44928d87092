//! TIES-merging (Yadav et al., 2023): per-tensor magnitude trim, sign election by summed mass,
//! disjoint mean, scaled by λ.
//!
//! Trimming is per tensor (the original flattens the whole model; per-tensor is what mergekit
//! and out-of-core execution do). Weights multiply the trimmed task vectors before election.

use crate::merge::method::{kth_smallest_abs, sign, MergeMethod, TensorInput};

/// TIES-merging.
#[derive(Debug, Clone)]
pub struct Ties {
    /// Fraction of entries kept per task vector (default 0.2, i.e. the reference's `K = 20`).
    pub density: f64,
    /// Scaling coefficient λ (default 1.0).
    pub lambda: f32,
}

impl Default for Ties {
    fn default() -> Self {
        Ties {
            density: 0.2,
            lambda: 1.0,
        }
    }
}

impl MergeMethod for Ties {
    fn name(&self) -> &'static str {
        "ties"
    }

    fn describe(&self) -> String {
        format!("TIES (density={}, lambda={})", self.density, self.lambda)
    }

    /// Fused implementation (no K × n copy): per-task thresholds, then one pass for the
    /// elected signs and one for the disjoint mean. Equivalent to trimming every task vector
    /// with [`crate::merge::method::ties_trim`], weighting, [`crate::merge::method::elect_signs`] and
    /// [`crate::merge::method::disjoint_mean`].
    fn merge_vector(&self, t: &TensorInput<'_>) -> Result<Vec<f32>, String> {
        let n = t.numel();
        let thr: Vec<f32> = t.taus.iter().map(|tau| ties_threshold(tau, self.density)).collect();
        // pass 1: summed mass per element (task-major loops, vectorisable)
        let mut out = vec![0.0f32; n];
        for (i, tau) in t.taus.iter().enumerate() {
            let (th, w) = (thr[i], t.weights[i]);
            for (o, &x) in out.iter_mut().zip(tau) {
                *o += if x.abs() < th { 0.0 } else { x * w };
            }
        }
        // elected signs; exact zeros take the majority sign of the tensor
        let total: f64 = out.iter().map(|&m| sign(m) as f64).sum();
        let majority = sign(total as f32);
        let signs: Vec<f32> = out.iter().map(|&m| if m == 0.0 { majority } else { sign(m) }).collect();
        // pass 2: disjoint mean of the entries that agree with the elected sign
        out.iter_mut().for_each(|o| *o = 0.0);
        let mut cnt = vec![0u32; n];
        for (i, tau) in t.taus.iter().enumerate() {
            let (th, w) = (thr[i], t.weights[i]);
            for j in 0..n {
                let x = tau[j];
                let v = if x.abs() < th { 0.0 } else { x * w };
                let agree = v != 0.0 && (v > 0.0) == (signs[j] > 0.0) && signs[j] != 0.0;
                out[j] += if agree { v } else { 0.0 };
                cnt[j] += agree as u32;
            }
        }
        for (o, &c) in out.iter_mut().zip(&cnt) {
            *o = self.lambda * *o / c.max(1) as f32;
        }
        Ok(out)
    }
}

/// Magnitude threshold of TIES trimming: entries with `|x| <` it are dropped (0 keeps all).
fn ties_threshold(x: &[f32], density: f64) -> f32 {
    let d = x.len();
    if d == 0 || density >= 1.0 {
        return 0.0;
    }
    let keep = (d as f64 * density).floor() as usize;
    let kth = d - keep;
    if kth == 0 {
        return 0.0;
    }
    kth_smallest_abs(x, kth)
}
