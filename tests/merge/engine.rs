//! End-to-end runs of the engine on small safetensors checkpoints.

use std::path::Path;

use thunder::merge::dtype::DType;
use thunder::merge::io::Checkpoint;
use thunder::merge::{Plan, Recipe, RunOptions};

use super::{rel_err, write_safetensors, write_safetensors_typed};

fn vals(seed: u32, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761u32) ^ seed.wrapping_mul(40503)) % 1000) as f32 / 1000.0 * scale
                - scale / 2.0
        })
        .collect()
}

/// base + 3 experts with a matrix, a 4-D kernel, a bias, an f16 tensor and an int64 tensor.
fn make_inputs(dir: &Path, k: usize, same_expert: bool) {
    let f16 = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect() };
    let f32b = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let ints: Vec<u8> = [3i64, 1, 4, 1].iter().flat_map(|x| x.to_le_bytes()).collect();
    let write = |name: &str, off: u32, scale: f32| {
        let m: Vec<f32> = vals(1, 48, 1.0)
            .iter()
            .zip(vals(off, 48, scale))
            .map(|(a, b)| a + b)
            .collect();
        let c: Vec<f32> = vals(2, 4 * 3 * 3 * 2, 1.0)
            .iter()
            .zip(vals(off + 1, 72, scale))
            .map(|(a, b)| a + b)
            .collect();
        let b: Vec<f32> = vals(3, 8, 1.0)
            .iter()
            .zip(vals(off + 2, 8, scale))
            .map(|(a, b)| a + b)
            .collect();
        let h: Vec<f32> = vals(4, 6, 1.0)
            .iter()
            .zip(vals(off + 3, 6, scale))
            .map(|(a, b)| a + b)
            .collect();
        write_safetensors_typed(
            &dir.join(name),
            &[
                ("blocks.0.attn.weight".into(), DType::F32, vec![8, 6], f32b(&m)),
                ("blocks.0.conv.weight".into(), DType::F32, vec![4, 3, 3, 2], f32b(&c)),
                ("blocks.0.norm.bias".into(), DType::F32, vec![8], f32b(&b)),
                ("head.weight".into(), DType::F16, vec![2, 3], f16(&h)),
                ("position_ids".into(), DType::I64, vec![4], ints.clone()),
            ],
        );
    };
    write("base.safetensors", 0, 0.0);
    for i in 0..k {
        let off = if same_expert { 100 } else { 100 + 10 * i as u32 };
        write(&format!("e{i}.safetensors"), off, 0.2);
    }
}

fn recipe(dir: &Path, k: usize, method: &str, extra: &str, out: &str) -> Recipe {
    let experts: Vec<String> = (0..k).map(|i| format!("\"e{i}.safetensors\"")).collect();
    Recipe::from_toml_str(
        &format!(
            "base = \"base.safetensors\"\nexperts = [{}]\noutputs = [\"{out}\"]\n{extra}\n[method]\n{method}\n",
            experts.join(", ")
        ),
        dir,
    )
    .unwrap()
}

#[test]
fn k_copies_with_ta_return_the_expert_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    make_inputs(dir.path(), 3, true);
    let r = recipe(
        dir.path(),
        3,
        "name = \"ta\"\nlambda = 0.3333333333",
        "",
        "m.safetensors",
    );
    let rep = Plan::new(r).unwrap().execute(RunOptions::default()).unwrap();
    assert_eq!((rep.matrix, rep.vector, rep.copied), (3, 1, 1));
    let out = Checkpoint::open(&dir.path().join("m.safetensors")).unwrap();
    let ex = Checkpoint::open(&dir.path().join("e0.safetensors")).unwrap();
    for t in &ex.tensors {
        let i = out.find(&t.name).unwrap();
        assert_eq!(out.tensors[i].dtype, t.dtype);
        assert_eq!(out.tensors[i].shape, t.shape);
        if t.dtype.is_float() {
            let a = out.read_f32(i).unwrap();
            let b = ex.read_f32(ex.find(&t.name).unwrap()).unwrap();
            let tol = if t.dtype == DType::F16 { 2e-3 } else { 1e-6 };
            assert!(rel_err(&a, &b) < tol, "{}: {}", t.name, rel_err(&a, &b));
        } else {
            assert_eq!(
                out.canonical_bytes(i).unwrap(),
                ex.canonical_bytes(ex.find(&t.name).unwrap()).unwrap()
            );
        }
    }
    let keys: Vec<&str> = out.metadata.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&"thunder.merge.recipe") && keys.contains(&"thunder.merge.sources"));
}

#[test]
fn output_is_deterministic_across_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    make_inputs(dir.path(), 3, false);
    for (threads, out) in [(1, "a.safetensors"), (3, "b.safetensors")] {
        let extra = format!("threads = {threads}\nseed = 5\n[dare]\np = 0.3\n[svc]\nalpha = 0.5");
        let r = recipe(dir.path(), 3, "name = \"tsv-m\"", &extra, out);
        Plan::new(r).unwrap().execute(RunOptions::default()).unwrap();
    }
    // tensor payloads identical (the metadata records the different thread counts)
    let a = Checkpoint::open(&dir.path().join("a.safetensors")).unwrap();
    let b = Checkpoint::open(&dir.path().join("b.safetensors")).unwrap();
    for (i, t) in a.tensors.iter().enumerate() {
        let j = b.find(&t.name).unwrap();
        assert!(
            a.canonical_bytes(i).unwrap() == b.canonical_bytes(j).unwrap(),
            "{} differs",
            t.name
        );
    }
}

#[test]
fn every_method_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    make_inputs(dir.path(), 2, false);
    for m in [
        "name = \"ta\"",
        "name = \"ties\"",
        "name = \"tsv-m\"",
        "name = \"boosted-tsv-m\"\northogonalizer = \"newton-schulz\"",
        "name = \"drm\"\ndirection = \"horizontal\"",
        "name = \"drm\"",
        "name = \"iso-c\"",
    ] {
        let r = recipe(dir.path(), 2, m, "exclude = [\"head.*\"]", "m.safetensors");
        let rep = Plan::new(r).unwrap().execute(RunOptions::default()).unwrap();
        assert_eq!((rep.matrix, rep.vector, rep.copied), (2, 2, 1), "{m}");
    }
}

#[test]
fn dry_run_describes_routes() {
    let dir = tempfile::tempdir().unwrap();
    make_inputs(dir.path(), 2, false);
    let r = recipe(
        dir.path(),
        2,
        "name = \"tsv-m\"",
        "exclude = [\"head.*\"]",
        "m.safetensors",
    );
    let plan = Plan::new(r).unwrap();
    let d = plan.describe();
    assert!(d.contains("matrix 4x18 (reshaped)"), "{d}");
    assert!(d.contains("averaged (excluded)"), "{d}");
    assert!(d.contains("copy (non-float)"), "{d}");
    assert!(!dir.path().join("m.safetensors").exists());
}

#[test]
fn more_experts_than_rank_and_empty_tensors() {
    // K = 4 > min(m, n) = 2 for the 2 × 5 matrix (TSV-M keeps one triplet per task), and a
    // zero-sized tensor
    let dir = tempfile::tempdir().unwrap();
    let mk = |s: f32| -> Vec<(&str, Vec<usize>, Vec<f32>)> {
        vec![
            (
                "w",
                vec![2, 5],
                vals(9, 10, 1.0)
                    .iter()
                    .zip(vals((s * 100.0) as u32, 10, s))
                    .map(|(a, b)| a + b)
                    .collect(),
            ),
            ("empty", vec![0, 3], vec![]),
        ]
    };
    write_safetensors(&dir.path().join("base.safetensors"), &mk(0.0));
    for i in 0..4 {
        write_safetensors(
            &dir.path().join(format!("e{i}.safetensors")),
            &mk(0.1 + i as f32 * 0.05),
        );
    }
    for m in [
        "name = \"tsv-m\"",
        "name = \"boosted-tsv-m\"",
        "name = \"drm\"",
        "name = \"iso-c\"",
        "name = \"ties\"",
    ] {
        let rep = Plan::new(recipe(dir.path(), 4, m, "[svc]\nalpha = 0.25", "m.safetensors"))
            .unwrap()
            .execute(RunOptions::default())
            .unwrap();
        assert_eq!((rep.matrix, rep.vector), (1, 1), "{m}");
        let out = Checkpoint::open(&dir.path().join("m.safetensors")).unwrap();
        assert!(out
            .read_f32(out.find("w").unwrap())
            .unwrap()
            .iter()
            .all(|x| x.is_finite()));
    }
}

#[test]
fn write_helper_roundtrips() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.safetensors");
    write_safetensors(&p, &[("a", vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])]);
    let ck = Checkpoint::open(&p).unwrap();
    assert_eq!(ck.read_f32(0).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn average_patterns_take_the_experts_weighted_mean() {
    // Statistics (here the bias, standing in for a BatchNorm running variance) must stay a convex
    // combination of the experts' values whatever the method does: no DARE rescaling, no λ.
    let dir = tempfile::tempdir().unwrap();
    make_inputs(dir.path(), 2, false);
    let experts = "[[experts]]\npath = \"e0.safetensors\"\nweight = 1.0\n\n[[experts]]\npath = \"e1.safetensors\"\nweight = 3.0\n";
    let toml = |avg: &str, out: &str| {
        format!(
            "base = \"base.safetensors\"\noutputs = [\"{out}\"]\n{avg}\n[method]\nname = \"ta\"\nlambda = 2.0\n\n[dare]\np = 0.5\n\n{experts}"
        )
    };
    for (avg, out) in [("average = [\"*.norm.*\"]", "a.safetensors"), ("", "b.safetensors")] {
        let r = Recipe::from_toml_str(&toml(avg, out), dir.path()).unwrap();
        let rep = Plan::new(r).unwrap().execute(RunOptions::default()).unwrap();
        assert_eq!((rep.matrix, rep.vector, rep.copied), (3, 1, 1));
    }
    let open = |f: &str| Checkpoint::open(&dir.path().join(f)).unwrap();
    let (a, b, e0, e1) = (
        open("a.safetensors"),
        open("b.safetensors"),
        open("e0.safetensors"),
        open("e1.safetensors"),
    );
    let read = |c: &Checkpoint, n: &str| c.read_f32(c.find(n).unwrap()).unwrap();
    let n = "blocks.0.norm.bias";
    let want: Vec<f32> = read(&e0, n)
        .iter()
        .zip(read(&e1, n))
        .map(|(x, y)| 0.25 * x + 0.75 * y)
        .collect();
    assert!(rel_err(&read(&a, n), &want) < 1e-6, "{:?} vs {want:?}", read(&a, n));
    assert!(
        rel_err(&read(&b, n), &want) > 1e-2,
        "without the pattern the method applies"
    );
    // Everything else is untouched by the pattern.
    for other in ["blocks.0.attn.weight", "blocks.0.conv.weight", "head.weight"] {
        assert_eq!(read(&a, other), read(&b, other), "{other}");
    }
    // The dry run says what happens to the tensor.
    let r = Recipe::from_toml_str(&toml("average = [\"*.norm.*\"]", "c.safetensors"), dir.path()).unwrap();
    assert!(Plan::new(r).unwrap().describe().contains("experts' weighted mean"));
}

#[test]
fn recipe_metadata_is_stamped_on_the_output_once() {
    let dir = tempfile::tempdir().unwrap();
    make_inputs(dir.path(), 2, false);
    let extra = "[metadata]\n\"thunder.model_name\" = \"merged-a\"\n\"thunder.model_version\" = \"7\"";
    let r = recipe(dir.path(), 2, "name = \"ta\"\nlambda = 0.5", extra, "m.safetensors");
    Plan::new(r).unwrap().execute(RunOptions::default()).unwrap();
    let out = Checkpoint::open(&dir.path().join("m.safetensors")).unwrap();
    let values = |key: &str| -> Vec<&str> {
        out.metadata
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("thunder.model_name"), ["merged-a"]);
    assert_eq!(values("thunder.model_version"), ["7"]);
    assert_eq!(values("thunder.merge.version").len(), 1);
    // thunder-merge owns its provenance keys
    let bad = Recipe::from_toml_str(
        "base = \"base.safetensors\"\nexperts = [\"e0.safetensors\"]\nmethod = \"ta\"\n[metadata]\n\"thunder.merge.recipe\" = \"x\"\n",
        dir.path(),
    );
    assert!(bad.is_err_and(|e| e.to_string().contains("written by thunder-merge")));
}
