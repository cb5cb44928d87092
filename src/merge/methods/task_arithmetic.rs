//! Task arithmetic (Ilharco et al., 2023): `Δ = λ · Σ_i w_i τ_i`.

use crate::merge::method::{MergeMethod, TensorInput};

/// Task arithmetic.
#[derive(Debug, Clone)]
pub struct TaskArithmetic {
    /// Scaling coefficient λ (default 0.3).
    pub lambda: f32,
}

impl Default for TaskArithmetic {
    fn default() -> Self {
        TaskArithmetic { lambda: 0.3 }
    }
}

impl MergeMethod for TaskArithmetic {
    fn name(&self) -> &'static str {
        "ta"
    }

    fn describe(&self) -> String {
        format!("task arithmetic (lambda={})", self.lambda)
    }

    fn merge_vector(&self, t: &TensorInput<'_>) -> Result<Vec<f32>, String> {
        let mut out = vec![0.0f32; t.numel()];
        for (tau, &w) in t.taus.iter().zip(t.weights) {
            let c = self.lambda * w;
            for (o, x) in out.iter_mut().zip(tau) {
                *o += c * x;
            }
        }
        Ok(out)
    }
}
