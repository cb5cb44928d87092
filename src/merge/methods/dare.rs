//! DARE (Yu et al., 2024), "drop and rescale": a pre-step that, independently for each expert,
//! zeroes every task-vector entry with probability `p` and rescales survivors by `1/(1−p)`.
//! It composes in front of any method (typically TA or TIES).
//!
//! The mask comes from the counter-based stream of [`crate::merge::rng`]: entry `j` of expert
//! `i` of tensor `name` is kept iff `uniform(stream_key(seed, name, i), j) >= p`. It therefore
//! depends only on the seed and the tensor name, not on thread scheduling.

use crate::merge::rng::{stream_key, uniform};

/// DARE pre-step.
#[derive(Debug, Clone)]
pub struct Dare {
    /// Drop probability `p` in `[0, 1)` (default 0.8).
    pub p: f64,
    /// Rescale survivors by `1/(1−p)` (default true).
    pub rescale: bool,
}

impl Default for Dare {
    fn default() -> Self {
        Dare { p: 0.8, rescale: true }
    }
}

impl Dare {
    /// Apply drop-and-rescale in place to the task vectors of tensor `name`.
    pub fn apply(&self, name: &str, seed: u64, taus: &mut [Vec<f32>]) {
        if self.p <= 0.0 {
            return;
        }
        let scale = if self.rescale && self.p < 1.0 {
            (1.0 / (1.0 - self.p)) as f32
        } else {
            1.0
        };
        for (i, tau) in taus.iter_mut().enumerate() {
            let key = stream_key(seed, name, i);
            for (j, x) in tau.iter_mut().enumerate() {
                if uniform(key, j as u64) < self.p {
                    *x = 0.0;
                } else {
                    *x *= scale;
                }
            }
        }
    }

    /// Parameter summary.
    pub fn describe(&self) -> String {
        format!("DARE (p={}, rescale={})", self.p, self.rescale)
    }
}
