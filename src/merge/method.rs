//! The small interface every merge method implements, plus the element-wise building blocks
//! shared by several methods (magnitude trimming, sign election, disjoint mean).

use std::borrow::Cow;

/// One tensor's worth of merge input: the K task vectors `τ_i = θ_i − θ_base` (row-major,
/// `f32`), the per-expert weights and the context needed for deterministic randomness.
#[derive(Debug, Clone)]
pub struct TensorInput<'a> {
    /// Tensor name (used for error messages and to derive the per-tensor random stream).
    pub name: &'a str,
    /// Original shape of the tensor.
    pub shape: &'a [usize],
    /// Task vectors, one per expert, each `numel` long (row-major).
    pub taus: Vec<Vec<f32>>,
    /// Per-expert weights from the recipe (default 1.0), same length as `taus`.
    pub weights: &'a [f32],
    /// Recipe seed.
    pub seed: u64,
}

impl TensorInput<'_> {
    /// Number of experts `K`.
    pub fn k(&self) -> usize {
        self.taus.len()
    }

    /// Number of elements of the tensor.
    pub fn numel(&self) -> usize {
        self.taus.first().map_or(0, |t| t.len())
    }

    /// Task vectors multiplied by their expert weights (borrowed when every weight is 1).
    pub fn weighted(&self) -> Cow<'_, [Vec<f32>]> {
        if self.weights.iter().all(|&w| w == 1.0) {
            return Cow::Borrowed(&self.taus);
        }
        Cow::Owned(
            self.taus
                .iter()
                .zip(self.weights)
                .map(|(t, &w)| t.iter().map(|x| x * w).collect())
                .collect(),
        )
    }
}

/// A merge method: turns K task vectors of one tensor into one merged update `Δ`.
///
/// The engine calls [`MergeMethod::merge_matrix`] for 2-D tensors and reshaped convolution kernels
/// (unless excluded by a pattern) and [`MergeMethod::merge_vector`] for everything else (1-D
/// tensors such as biases and norms, scalars, excluded tensors). The merged checkpoint is
/// `θ_base + Δ`.
pub trait MergeMethod: Send + Sync + std::fmt::Debug {
    /// Short identifier (`ta`, `ties`, `tsv-m`, …).
    fn name(&self) -> &'static str;

    /// Human-readable parameter summary, shown by `--dry-run` and stored in output metadata.
    fn describe(&self) -> String;

    /// Whether the method treats matrices differently from vectors (SVD-based methods).
    fn is_spectral(&self) -> bool {
        false
    }

    /// Merge a `rows × cols` matrix (row-major task vectors).
    fn merge_matrix(&self, t: &TensorInput<'_>, rows: usize, cols: usize) -> Result<Vec<f32>, String> {
        let _ = (rows, cols);
        self.merge_vector(t)
    }

    /// Merge a tensor treated as a flat vector. Default: the (weighted) mean `Σ w_i τ_i / K`,
    /// which is how the SVD-based references treat non-matrix parameters.
    fn merge_vector(&self, t: &TensorInput<'_>) -> Result<Vec<f32>, String> {
        Ok(weighted_mean(&t.taus, t.weights))
    }
}

/// `Σ w_i τ_i / K`.
pub fn weighted_mean(taus: &[Vec<f32>], weights: &[f32]) -> Vec<f32> {
    let n = taus.first().map_or(0, |t| t.len());
    let k = taus.len().max(1) as f32;
    let mut out = vec![0.0f32; n];
    for (t, &w) in taus.iter().zip(weights) {
        for (o, x) in out.iter_mut().zip(t) {
            *o += w * x;
        }
    }
    out.iter_mut().for_each(|o| *o /= k);
    out
}

/// The `kth` smallest (1-based) absolute value of `x` (finite values).
///
/// Radix select on the IEEE bit patterns (for non-negative floats the bit order is the value
/// order): a histogram of the top 16 bits of `|x|` finds the bucket holding the answer, then an
/// exact selection runs on that bucket only. Two linear passes instead of a comparison-based
/// selection over the whole tensor.
pub fn kth_smallest_abs(x: &[f32], kth: usize) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    let kth = kth.clamp(1, x.len());
    let mut hist = vec![0usize; 1 << 16];
    for v in x {
        hist[((v.to_bits() & 0x7fff_ffff) >> 16) as usize] += 1;
    }
    let mut below = 0usize;
    let mut bucket = 0u32;
    for (i, &h) in hist.iter().enumerate() {
        if below + h >= kth {
            bucket = i as u32;
            break;
        }
        below += h;
    }
    let mut cand: Vec<u32> = x
        .iter()
        .map(|v| v.to_bits() & 0x7fff_ffff)
        .filter(|b| b >> 16 == bucket)
        .collect();
    let idx = kth - below - 1;
    let (_, v, _) = cand.select_nth_unstable(idx);
    f32::from_bits(*v)
}

/// TIES trimming as in the reference `topk_values_mask`: with `kth = d − ⌊d·density⌋`, zero
/// every entry whose magnitude is below the `kth` smallest magnitude. Entries equal to that
/// threshold are kept, so (without ties) `⌊d·density⌋ + 1` entries survive, like the reference.
pub fn ties_trim(x: &mut [f32], density: f64) {
    let d = x.len();
    if d == 0 || density >= 1.0 {
        return;
    }
    let keep = (d as f64 * density).floor() as usize;
    let kth = d - keep; // k-th smallest magnitude is the threshold
    if kth == 0 {
        return;
    }
    let thr = kth_smallest_abs(x, kth);
    for v in x.iter_mut() {
        if v.abs() < thr {
            *v = 0.0;
        }
    }
}

/// Elect one sign per element by total mass: `sign(Σ_i x_i)`; elements whose mass is exactly
/// zero take the majority sign of the whole tensor (`sign(Σ signs)`), as in the TIES and DRM
/// references.
pub fn elect_signs(stack: &[Vec<f32>]) -> Vec<f32> {
    let n = stack.first().map_or(0, |t| t.len());
    let mut signs = vec![0.0f32; n];
    for t in stack {
        for (s, x) in signs.iter_mut().zip(t) {
            *s += x;
        }
    }
    let mut total = 0.0f64;
    for s in signs.iter_mut() {
        *s = sign(*s);
        total += *s as f64;
    }
    let majority = if total > 0.0 {
        1.0
    } else if total < 0.0 {
        -1.0
    } else {
        0.0
    };
    for s in signs.iter_mut() {
        if *s == 0.0 {
            *s = majority;
        }
    }
    signs
}

/// `sign(x)` with `sign(0) = 0`.
pub fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Disjoint mean: per element, average the entries whose sign agrees with the elected sign,
/// ignoring zeros (the divisor is clamped to at least 1). `coeffs` multiply each expert's
/// surviving entries.
pub fn disjoint_mean(stack: &[Vec<f32>], signs: &[f32], coeffs: &[f32]) -> Vec<f32> {
    let n = signs.len();
    let mut sum = vec![0.0f32; n];
    let mut cnt = vec![0u32; n];
    for (t, &c) in stack.iter().zip(coeffs) {
        for j in 0..n {
            let x = t[j];
            if x != 0.0 && sign(x) == signs[j] {
                let v = x * c;
                if v != 0.0 {
                    sum[j] += v;
                    cnt[j] += 1;
                }
            }
        }
    }
    sum.iter().zip(&cnt).map(|(s, &c)| s / (c.max(1) as f32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_select_matches_sorting() {
        let x: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * if i % 3 == 0 { 1e-3 } else { 1.0 })
            .collect();
        let mut sorted: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        sorted.sort_by(|a, b| a.total_cmp(b));
        for kth in [1, 2, 17, 2500, 4999, 5000] {
            assert_eq!(kth_smallest_abs(&x, kth), sorted[kth - 1], "kth={kth}");
        }
    }

    #[test]
    fn sign_election_and_disjoint_mean() {
        let stack = vec![vec![1.0, -2.0, 0.0, 1.0, 2.0], vec![3.0, 1.0, 0.0, -1.0, 1.0]];
        let s = elect_signs(&stack);
        // masses [4, -1, 0, 0, 3]: zero masses take the majority sign of the tensor (+1)
        assert_eq!(s, vec![1.0, -1.0, 1.0, 1.0, 1.0]);
        let m = disjoint_mean(&stack, &s, &[1.0, 1.0]);
        assert_eq!(m, vec![2.0, -2.0, 0.0, 1.0, 1.5]);
        // no majority: zero masses stay 0
        let tie = vec![vec![1.0, -1.0, 0.0]];
        assert_eq!(elect_signs(&tie), vec![1.0, -1.0, 0.0]);
    }

    #[test]
    fn ties_trim_keeps_top_density() {
        let mut x = vec![0.1, -5.0, 0.3, 4.0, -0.2, 0.0, 1.0, 2.0, -3.0, 0.05];
        // d = 10, density 0.3: threshold = 7th smallest magnitude (2.0), entries >= it are kept
        ties_trim(&mut x, 0.3);
        assert_eq!(x, vec![0.0, -5.0, 0.0, 4.0, 0.0, 0.0, 0.0, 2.0, -3.0, 0.0]);
    }
}
