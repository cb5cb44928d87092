//! Thunder: streaming speech enhancement with a Brownian-bridge regression–diffusion model.
//!
//! Pipeline: `audio` (WAV I/O, resampling) → `stft` → `model` (ONNX via ort) → `sampler`
//! (Thunder two-stage sampler) → `stream` (hop-in/hop-out engine). `merge` sits beside it.

pub mod merge;
