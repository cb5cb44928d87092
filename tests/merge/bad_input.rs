//! Bad input: clear errors, meaningful exit codes, no output file left behind.

use std::path::Path;

use thunder::merge::{MergeError, Plan, Recipe, RunOptions};

use super::write_safetensors;

fn two(dir: &Path, expert: &[(&str, Vec<usize>, Vec<f32>)]) {
    write_safetensors(
        &dir.join("base.safetensors"),
        &[
            ("a.weight", vec![2, 2], vec![1.0; 4]),
            ("a.bias", vec![2], vec![0.0; 2]),
        ],
    );
    write_safetensors(&dir.join("e.safetensors"), expert);
}

fn run(dir: &Path, experts: &str) -> Result<(), MergeError> {
    let r = Recipe::from_toml_str(
        &format!("base = \"base.safetensors\"\nexperts = [{experts}]\noutputs = [\"out.safetensors\", \"out2.safetensors\"]\nmethod = \"tsv-m\"\n"),
        dir,
    )?;
    Plan::new(r)?.execute(RunOptions::default()).map(|_| ())
}

/// Only the inputs remain: no outputs, no temporary files.
fn assert_no_output(dir: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.iter().all(|n| n == "base.safetensors" || n == "e.safetensors"),
        "left behind: {names:?}"
    );
}

#[test]
fn mismatched_names() {
    let dir = tempfile::tempdir().unwrap();
    two(
        dir.path(),
        &[("a.weight", vec![2, 2], vec![1.0; 4]), ("a.b", vec![2], vec![0.0; 2])],
    );
    let e = run(dir.path(), "\"e.safetensors\"").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, MergeError::Mismatch { .. }) && e.exit_code() == 3, "{msg}");
    assert!(
        msg.contains("a.bias") && msg.contains("e.safetensors") && msg.contains("missing"),
        "{msg}"
    );
    assert_no_output(dir.path());
}

#[test]
fn mismatched_shapes() {
    let dir = tempfile::tempdir().unwrap();
    two(
        dir.path(),
        &[("a.weight", vec![4], vec![1.0; 4]), ("a.bias", vec![2], vec![0.0; 2])],
    );
    let msg = run(dir.path(), "\"e.safetensors\"").unwrap_err().to_string();
    assert!(
        msg.contains("a.weight") && msg.contains("shape [4]") && msg.contains("e.safetensors"),
        "{msg}"
    );
    assert_no_output(dir.path());
}

#[test]
fn mismatched_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(
        &dir.path().join("base.safetensors"),
        &[
            ("a.weight", vec![2, 2], vec![1.0; 4]),
            ("a.bias", vec![2], vec![0.0; 2]),
        ],
    );
    super::write_safetensors_typed(
        &dir.path().join("e.safetensors"),
        &[
            (
                "a.weight".into(),
                thunder::merge::dtype::DType::F16,
                vec![2, 2],
                vec![0u8; 8],
            ),
            (
                "a.bias".into(),
                thunder::merge::dtype::DType::F32,
                vec![2],
                vec![0u8; 8],
            ),
        ],
    );
    let msg = run(dir.path(), "\"e.safetensors\"").unwrap_err().to_string();
    assert!(
        msg.contains("a.weight") && msg.contains("dtype F16") && msg.contains("F32"),
        "{msg}"
    );
    assert_no_output(dir.path());
}

#[test]
fn no_experts() {
    let dir = tempfile::tempdir().unwrap();
    two(
        dir.path(),
        &[
            ("a.weight", vec![2, 2], vec![1.0; 4]),
            ("a.bias", vec![2], vec![0.0; 2]),
        ],
    );
    let e = run(dir.path(), "").unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("K = 0"), "{e}");
    assert_no_output(dir.path());
}

#[test]
fn nan_in_a_tensor() {
    let dir = tempfile::tempdir().unwrap();
    two(
        dir.path(),
        &[
            ("a.weight", vec![2, 2], vec![1.0, f32::NAN, 0.0, 1.0]),
            ("a.bias", vec![2], vec![0.0; 2]),
        ],
    );
    let e = run(dir.path(), "\"e.safetensors\"").unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.exit_code(), 4);
    assert!(
        msg.contains("a.weight") && msg.contains("e.safetensors") && msg.contains("NaN"),
        "{msg}"
    );
    assert_no_output(dir.path());
}

#[test]
fn truncated_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    two(
        dir.path(),
        &[
            ("a.weight", vec![2, 2], vec![1.0; 4]),
            ("a.bias", vec![2], vec![0.0; 2]),
        ],
    );
    let p = dir.path().join("e.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
    let e = run(dir.path(), "\"e.safetensors\"").unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.exit_code(), 3);
    assert!(msg.contains("truncated") && msg.contains("e.safetensors"), "{msg}");
    assert_no_output(dir.path());
    // a header cut short
    std::fs::write(&p, &bytes[..20]).unwrap();
    let msg = run(dir.path(), "\"e.safetensors\"").unwrap_err().to_string();
    assert!(msg.contains("truncated"), "{msg}");
    assert_no_output(dir.path());
}

#[test]
fn onnx_without_initializers() {
    let dir = tempfile::tempdir().unwrap();
    // ModelProto { ir_version: 8, graph: GraphProto { name: "g" } }
    let model: Vec<u8> = vec![0x08, 0x08, 0x3a, 0x03, 0x12, 0x01, b'g'];
    std::fs::write(dir.path().join("base.onnx"), &model).unwrap();
    std::fs::write(dir.path().join("e.onnx"), &model).unwrap();
    let r = Recipe::from_toml_str(
        "base = \"base.onnx\"\nexperts = [\"e.onnx\"]\noutputs = [\"out.onnx\"]\nmethod = \"ta\"\n",
        dir.path(),
    )
    .unwrap();
    let e = Plan::new(r).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.exit_code(), 3);
    assert!(msg.contains("no initializers") && msg.contains("base.onnx"), "{msg}");
    assert!(!dir.path().join("out.onnx").exists());
}

#[test]
fn differing_non_float_tensor() {
    let dir = tempfile::tempdir().unwrap();
    use thunder::merge::dtype::DType;
    let mk = |v: i64| -> Vec<(String, DType, Vec<usize>, Vec<u8>)> {
        vec![
            ("w".into(), DType::F32, vec![2, 2], vec![0u8; 16]),
            ("ids".into(), DType::I64, vec![1], v.to_le_bytes().to_vec()),
        ]
    };
    super::write_safetensors_typed(&dir.path().join("base.safetensors"), &mk(1));
    super::write_safetensors_typed(&dir.path().join("e.safetensors"), &mk(2));
    let e = run(dir.path(), "\"e.safetensors\"").unwrap_err();
    assert!(
        e.to_string().contains("ids") && e.to_string().contains("identical"),
        "{e}"
    );
    assert_no_output(dir.path());
}

#[test]
fn recipe_errors_are_clear() {
    let d = Path::new(".");
    let e = Recipe::from_toml_str(
        "base = \"b.safetensors\"\nexperts = [\"e.safetensors\"]\nmethod = \"foo\"",
        d,
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown method `foo`"), "{e}");
    let e = Recipe::from_toml_str(
        "base = \"b.safetensors\"\nexperts = [\"e.safetensors\"]\n[method]\nname = \"ties\"\ndensty = 0.3",
        d,
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown parameter `densty`"), "{e}");
    let e = Recipe::from_toml_str("experts = [\"e.safetensors\"]\nmethod = \"ta\"", d).unwrap_err();
    assert!(e.to_string().contains("no base"), "{e}");
}
