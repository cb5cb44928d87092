//! Checkpoint I/O: memory-mapped readers for safetensors and ONNX initializers, and writers that
//! lay out the output file first and then fill tensor payloads at known offsets (so tensors can
//! be written out of order, from several threads, without buffering the model).

pub mod checkpoint;
pub mod layout;
pub mod onnx;
pub mod proto;
pub mod safetensors;

pub use checkpoint::{Checkpoint, Format, TensorEntry};
pub use layout::{AtomicOutput, Chunk, Layout};
