//! Thunder: streaming speech enhancement with a Brownian-bridge regression–diffusion model.
//!
//! Pipeline: [`audio`] (WAV I/O, resampling) → [`stft`] → [`model`] (ONNX via ort) →
//! [`sampler`] (Thunder two-stage sampler) → [`stream`] (hop-in/hop-out engine, [`Enhancer`]).
//! File mode ([`stream::file`]) feeds files through the same streaming engine. [`live`] runs it
//! on audio devices in real time, [`capi`] is the C ABI. [`merge`] sits beside the pipeline: it
//! combines domain-adapted checkpoints into one model before export.
#![warn(missing_docs)]

pub mod audio;
pub mod capi;
pub mod contract;
pub mod error;
pub mod live;
pub mod merge;
pub mod model;
pub mod sampler;
pub mod stft;
pub mod stream;

pub use error::{Error, Result};
pub use stream::{Enhancer, EnhancerConfig};
