//! The shipped default model is what the shipped recipe makes from the shipped checkpoints
//! (`models/merge-recipe.toml`, `models/thunder-16k-base.safetensors`, `models/experts/`).

use std::path::Path;
use std::process::Command;

use thunder::merge::dtype::DType;
use thunder::merge::io::Checkpoint;

use super::rel_err;

#[test]
fn the_shipped_recipe_reproduces_the_default_model() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let recipe = models.join("merge-recipe.toml");
    assert!(
        recipe.exists(),
        "{} is missing: the default model must come from a recipe",
        recipe.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("thunder-16k.onnx");
    let run = Command::new(env!("CARGO_BIN_EXE_thunder-merge"))
        .arg("--recipe")
        .arg(&recipe)
        .arg("-o")
        .arg(&out)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let shipped = Checkpoint::open(&models.join("thunder-16k.onnx")).unwrap();
    let made = Checkpoint::open(&out).unwrap();
    let names = |c: &Checkpoint| c.tensors.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&made), names(&shipped));
    for (i, t) in shipped.tensors.iter().enumerate() {
        let j = made.find(&t.name).unwrap();
        let hint = "differs from models/thunder-16k.onnx: re-run the recipe and commit its output";
        if t.dtype == DType::F32 {
            // The recipe pins seed and threads, so this machine reproduces it bit for bit; another
            // CPU may take other SIMD paths in the decompositions, hence a tolerance.
            let err = rel_err(&made.read_f32(j).unwrap(), &shipped.read_f32(i).unwrap());
            assert!(err <= 1e-5, "tensor {} {hint} (relative error {err:e})", t.name);
        } else {
            assert!(
                made.canonical_bytes(j).unwrap() == shipped.canonical_bytes(i).unwrap(),
                "tensor {} {hint}",
                t.name
            );
        }
    }
    let meta = |c: &Checkpoint, k: &str| c.metadata.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    for key in ["thunder.model_name", "thunder.model_version"] {
        assert_eq!(meta(&made, key), meta(&shipped, key), "{key}");
    }
    assert_eq!(meta(&shipped, "thunder.model_name").as_deref(), Some("thunder-16k"));
}
