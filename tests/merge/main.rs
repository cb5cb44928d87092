//! Integration tests of the merge module (`cargo test --test merge`).
//!
//! * `reference`: every method against the independent numpy implementation
//!   (`tests/merge/reference.py` → `fixtures/*.safetensors`), 1e-4 relative.
//! * `properties`: the invariants listed in the issue, plus the BoostedTSV-M choices.
//! * `bad_input`: clear errors and no output left behind.
//! * `onnx`: ONNX round trip (our reader, byte preservation, onnxruntime when available).
//! * `shipped`: `models/merge-recipe.toml` reproduces `models/thunder-16k.onnx`.

mod bad_input;
mod engine;
mod onnx;
mod properties;
mod reference;
mod shipped;

use std::path::{Path, PathBuf};

use thunder::merge::dtype::DType;
use thunder::merge::io::Checkpoint;

/// Fixture directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/merge/fixtures")
}

/// Read a tensor from a fixture file as (values, shape).
pub fn tensor(ck: &Checkpoint, name: &str) -> (Vec<f32>, Vec<usize>) {
    let i = ck.find(name).unwrap_or_else(|| panic!("fixture tensor {name} missing"));
    let t = &ck.tensors[i];
    let v = if t.dtype == DType::F64 {
        let b = ck.canonical_bytes(i).unwrap();
        b.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect()
    } else {
        ck.read_f32(i).unwrap()
    };
    (v, t.shape.clone())
}

/// ‖a − b‖ / ‖b‖.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Split a stacked `K × …` tensor into K vectors.
pub fn split(v: &[f32], k: usize) -> Vec<Vec<f32>> {
    let n = v.len() / k;
    (0..k).map(|i| v[i * n..(i + 1) * n].to_vec()).collect()
}

/// Write a safetensors file with f32 tensors (via the library's header builder).
pub fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    write_safetensors_typed(
        path,
        &tensors
            .iter()
            .map(|(n, s, v)| {
                (
                    n.to_string(),
                    DType::F32,
                    s.clone(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            })
            .collect::<Vec<_>>(),
    );
}

/// Write a safetensors file with arbitrary dtypes and raw little-endian payloads.
pub fn write_safetensors_typed(path: &Path, tensors: &[(String, DType, Vec<usize>, Vec<u8>)]) {
    let list: Vec<_> = tensors.iter().map(|(n, d, s, _)| (n.clone(), *d, s.clone())).collect();
    let (mut bytes, _) = thunder::merge::io::safetensors::build_header(&list, &[]).unwrap();
    for (_, _, _, b) in tensors {
        bytes.extend_from_slice(b);
    }
    std::fs::write(path, bytes).unwrap();
}
