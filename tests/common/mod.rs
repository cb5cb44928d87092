//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("contract.json")).expect("tests/fixtures/contract.json");
    serde_json::from_str(&text).unwrap()
}

/// The look-ahead-1 graph most tests run (random weights).
pub const TINY: &str = "tiny-thunder-la1.onnx";

/// A file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

pub fn tiny_model() -> PathBuf {
    fixture(TINY)
}

pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn load_tiny() -> thunder::model::Model {
    load_fixture_model(TINY)
}

/// A graph from tests/fixtures, on one thread.
pub fn load_fixture_model(name: &str) -> thunder::model::Model {
    thunder::model::Model::load(
        &fixture(name),
        &thunder::model::ModelOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("load {name} (is ONNX Runtime provisioned? run `bash scripts/setup.sh`): {e}"))
}
