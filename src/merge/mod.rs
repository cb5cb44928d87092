//! Model merging: domain-adapted Thunder checkpoints (or any models sharing a base) in, one
//! runnable model out. Library side of the `thunder-merge` binary.
//!
//! Task vectors are `τ_i = θ_i − θ_base` and the result is `θ = θ_base + Δ(τ_1..τ_K)`.
//!
//! # Methods
//! See [`methods`]: task arithmetic, TIES, DARE (pre-step, composable in front of any method),
//! TSV-M, BoostedTSV-M, DRM (horizontal and vertical), Iso-C, and SVC (post-step after any
//! method). Each method lives in its own file behind [`MergeMethod`].
//!
//! # Tensor rules
//! * 2-D float tensors go through [`MergeMethod::merge_matrix`] (the SVD path for spectral
//!   methods).
//! * Convolution kernels and other N-D (N > 2) tensors are viewed as `(out, in·k…)` matrices
//!   and reshaped back. **This is our extension**: the reference implementations only
//!   decompose 2-D weights.
//! * 1-D tensors (biases, norms), scalars and tensors matching an `exclude` glob pattern go
//!   through [`MergeMethod::merge_vector`]: a plain mean for TSV-M / BoostedTSV-M / Iso-C (scaled
//!   by α like the rest of the merged task vector), sign election + disjoint mean for DRM, and
//!   the element-wise rule itself for TA / TIES — as the references do.
//! * Only float tensors (f32, f16, bf16, f64) are merged, in `f32` (results are written back in
//!   the base tensor's dtype). Non-float tensors must be byte-identical in every input and are
//!   copied from the base.
//!
//! # BoostedTSV-M choices
//! Energy is σ² over the full spectrum of each task vector; Newton–Schulz is the cubic
//! iteration with coefficients (1.5, −0.5), `X₀ = Û/√K`, at most 30 steps, early stop at
//! `max|XᵀX − I| < 1e-5`. Details and tested properties in [`methods::boosted_tsv`].
//!
//! # Execution
//! See [`engine`]: validation before any work, memory-mapped inputs, tensor-by-tensor
//! parallel execution, faer SVDs in f32 with an f64 retry, deterministic results, progress
//! bar, atomic outputs. Inputs and outputs: safetensors and ONNX ([`io`]).
//!
//! ```no_run
//! use thunder::merge::{Plan, Recipe, RunOptions};
//! let recipe = Recipe::from_toml_str(r#"
//!     base = "base.onnx"
//!     experts = ["car.onnx", "babble.onnx"]
//!     outputs = ["merged.onnx"]
//!     method = "tsv-m"
//! "#, std::path::Path::new(".")).unwrap();
//! let plan = Plan::new(recipe).unwrap();
//! println!("{}", plan.describe());
//! plan.execute(RunOptions { progress: true }).unwrap();
//! ```

#![warn(missing_docs)]

pub mod dtype;
pub mod engine;
pub mod error;
pub mod io;
pub mod linalg;
pub mod method;
pub mod methods;
pub mod recipe;
pub mod rng;

pub use engine::{run, Plan, Report, Route, RunOptions};
pub use error::{MergeError, Result};
pub use method::{MergeMethod, TensorInput};
pub use recipe::{Expert, Recipe};
