//! TIES-merging (Yadav et al., 2023): per-tensor magnitude trim, sign election by summed mass,
//! disjoint mean, scaled by λ.
//!
//! Trimming is per tensor (the original flattens the whole model; per-tensor is what mergekit
//! and out-of-core execution do). Weights multiply the trimmed task vectors before election.

use crate::merge::method::{disjoint_mean, elect_signs, ties_trim, MergeMethod, TensorInput};

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

    fn merge_vector(&self, t: &TensorInput<'_>) -> Result<Vec<f32>, String> {
        let mut stack = t.weighted().into_owned();
        for x in stack.iter_mut() {
            ties_trim(x, self.density);
        }
        let signs = elect_signs(&stack);
        let ones = vec![1.0f32; stack.len()];
        let mut out = disjoint_mean(&stack, &signs, &ones);
        out.iter_mut().for_each(|v| *v *= self.lambda);
        Ok(out)
    }
}
