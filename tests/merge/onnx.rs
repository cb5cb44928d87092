//! ONNX round trip: merge ONNX fixtures (raw_data and float_data encodings, an int64
//! initializer, doc string and metadata), check the merged weights with our reader, check that
//! the graph bytes other than initializer payloads and metadata are untouched, and — when a
//! Python with `onnx` and `onnxruntime` is available — that onnxruntime loads and runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use thunder::merge::io::proto::fields;
use thunder::merge::io::Checkpoint;
use thunder::merge::{Plan, Recipe, RunOptions};

use super::{fixtures, rel_err};

fn python() -> Option<PathBuf> {
    let mut cands: Vec<PathBuf> = vec![];
    if let Ok(p) = std::env::var("THUNDER_PYTHON") {
        cands.push(p.into());
    }
    cands.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    cands.push("/work/main/.venv/bin/python".into());
    cands.push("python3".into());
    cands.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import onnx, onnxruntime, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn get(ck: &Checkpoint, name: &str) -> Vec<f32> {
    ck.read_f32(ck.find(name).unwrap()).unwrap()
}

/// Bytes of every field of `msg` except the given field numbers, concatenated.
fn without(msg: &[u8], skip: &[u32]) -> Vec<u8> {
    fields(msg)
        .unwrap()
        .iter()
        .filter(|f| !skip.contains(&f.number))
        .flat_map(|f| msg[f.start..f.end].to_vec())
        .collect()
}

fn graph(model: &[u8]) -> Vec<u8> {
    let f = fields(model).unwrap().into_iter().find(|f| f.number == 7).unwrap();
    model[f.value_start..f.end].to_vec()
}

#[test]
fn onnx_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures();
    let recipe = format!(
        "base = \"{}\"\nexperts = [\"{}\", \"{}\"]\noutputs = [\"{}\", \"{}\"]\n[method]\nname = \"ta\"\nlambda = 0.5\n[metadata]\norigin = \"merged\"\n",
        fx.join("onnx_base.onnx").display(),
        fx.join("onnx_a.onnx").display(),
        fx.join("onnx_b.onnx").display(),
        dir.path().join("merged.onnx").display(),
        dir.path().join("merged.safetensors").display(),
    );
    let plan = Plan::new(Recipe::from_toml_str(&recipe, dir.path()).unwrap()).unwrap();
    let rep = plan.execute(RunOptions::default()).unwrap();
    assert_eq!((rep.matrix, rep.vector, rep.copied), (2, 1, 1));

    let base = Checkpoint::open(&fx.join("onnx_base.onnx")).unwrap();
    let a = Checkpoint::open(&fx.join("onnx_a.onnx")).unwrap();
    let b = Checkpoint::open(&fx.join("onnx_b.onnx")).unwrap();
    let out = Checkpoint::open(&dir.path().join("merged.onnx")).unwrap();
    let st = Checkpoint::open(&dir.path().join("merged.safetensors")).unwrap();
    let mut expected = std::collections::HashMap::new();
    for name in ["W1", "b1", "W2"] {
        let (x0, xa, xb) = (get(&base, name), get(&a, name), get(&b, name));
        let exp: Vec<f32> = (0..x0.len())
            .map(|i| x0[i] + 0.5 * ((xa[i] - x0[i]) + (xb[i] - x0[i])))
            .collect();
        assert!(rel_err(&get(&out, name), &exp) < 1e-6, "{name} (onnx)");
        assert!(rel_err(&get(&st, name), &exp) < 1e-6, "{name} (safetensors)");
        expected.insert(name, exp);
    }
    // the int64 initializer is carried through
    let i = out.find("shape").unwrap();
    assert_eq!(
        out.canonical_bytes(i).unwrap(),
        base.canonical_bytes(base.find("shape").unwrap()).unwrap()
    );
    // metadata: the base's entry replaced by the recipe's [metadata], ours added
    let keys: Vec<&str> = out.metadata.iter().map(|(k, _)| k.as_str()).collect();
    for k in ["origin", "thunder.merge.recipe", "thunder.merge.sources"] {
        assert!(keys.contains(&k), "{keys:?}");
    }
    assert!(base.metadata.iter().any(|(k, v)| k == "origin" && v != "merged"));
    for ck in [&out, &st] {
        let origin: Vec<&str> = ck
            .metadata
            .iter()
            .filter(|(k, _)| k == "origin")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(origin, ["merged"]);
    }
    // every byte outside the initializers and metadata is unchanged
    let tb = std::fs::read(fx.join("onnx_base.onnx")).unwrap();
    let to = std::fs::read(dir.path().join("merged.onnx")).unwrap();
    assert_eq!(without(&tb, &[7, 14]), without(&to, &[7, 14]));
    assert_eq!(without(&graph(&tb), &[5]), without(&graph(&to), &[5]));
    // initializers keep their non-payload fields (dims, data_type, name) byte for byte
    let inits = |m: &[u8]| -> Vec<Vec<u8>> {
        let g = graph(m);
        fields(&g)
            .unwrap()
            .iter()
            .filter(|f| f.number == 5)
            .map(|f| without(&g[f.value_start..f.end], &[4, 5, 6, 7, 9, 10, 11]))
            .collect()
    };
    assert_eq!(inits(&tb), inits(&to));

    // onnxruntime
    let Some(py) = python() else {
        eprintln!("onnx_round_trip: no python with onnx + onnxruntime found; skipped the onnxruntime check (set THUNDER_PYTHON)");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/merge/check_onnx.py");
    let o = Command::new(py)
        .arg(script)
        .arg(dir.path().join("merged.onnx"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "onnxruntime failed: {}{}",
        stdout,
        String::from_utf8_lossy(&o.stderr)
    );
    let y: Vec<f32> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("y "))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    // y = (x W1 + b1) W2 with x = [1, 2, 3, 4]
    let (w1, b1, w2) = (&expected["W1"], &expected["b1"], &expected["W2"]);
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let h: Vec<f32> = (0..6)
        .map(|j| (0..4).map(|i| x[i] * w1[i * 6 + j]).sum::<f32>() + b1[j])
        .collect();
    let exp: Vec<f32> = (0..3).map(|j| (0..6).map(|i| h[i] * w2[i * 3 + j]).sum()).collect();
    assert!(rel_err(&y, &exp) < 1e-5, "onnxruntime {y:?} vs {exp:?}");
    assert!(stdout.contains("doc tiny merge fixture"), "{stdout}");
}
