//! C ABI: the committed header is what cbindgen generates from src/capi.rs, and the C example
//! (examples/c/enhance_file.c) builds with gcc against libthunder.so and enhances a real WAV.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn generate() -> String {
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root())
        .with_config(cbindgen::Config::from_file(root().join("cbindgen.toml")).unwrap())
        .generate()
        .expect("cbindgen")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn committed_header_is_up_to_date() {
    let committed = std::fs::read_to_string(root().join("include/thunder.h")).unwrap_or_default();
    assert!(
        committed == generate(),
        "include/thunder.h is stale: run `cargo test --release --test capi -- --ignored regenerate_header`"
    );
}

/// Writes include/thunder.h (run by hand after changing src/capi.rs).
#[test]
#[ignore]
fn regenerate_header() {
    std::fs::write(root().join("include/thunder.h"), generate()).unwrap();
}

/// target/<profile>/ (this test runs from target/<profile>/deps/).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

#[test]
fn c_example_enhances_a_wav_file() {
    let lib = target_dir().join("libthunder.so");
    // `cargo test` builds the library as an rlib only; build the cdylib (cheap: same crate,
    // already compiled dependencies) with the same profile and target directory.
    let profile = target_dir().file_name().unwrap().to_string_lossy().to_string();
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--lib", "--quiet"]).current_dir(root());
    cargo.env("CARGO_TARGET_DIR", target_dir().parent().unwrap());
    if profile == "release" {
        cargo.arg("--release");
    }
    let st = cargo.status().expect("run cargo build --lib");
    assert!(st.success() && lib.is_file(), "could not build {}", lib.display());
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("enhance_file");
    let st = Command::new("gcc")
        .args([
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-std=c11",
            "-D_POSIX_C_SOURCE=200809L",
        ])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("examples/c/enhance_file.c"))
        .arg("-L")
        .arg(target_dir())
        .arg("-lthunder")
        .arg(format!("-Wl,-rpath,{}", target_dir().display()))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("gcc is needed to build the C example");
    assert!(st.success(), "gcc failed");
    let input = root().join("examples/audio/noisy_speech.wav");
    let output = dir.path().join("out.wav");
    let run = Command::new(&exe)
        .arg(tiny_model())
        .arg(&input)
        .arg(&output)
        .arg("1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout).to_string() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "C example failed: {text}");
    assert!(text.contains("latency 767 samples"), "{text}");
    // Same samples as the Rust engine (16-bit quantised).
    let (fi, x) = thunder::audio::wav::read_all(&input).unwrap();
    let (fo, y) = thunder::audio::wav::read_all(&output).unwrap();
    assert_eq!((fo.sample_rate, fo.channels, fo.bits), (fi.sample_rate, 1, 16));
    assert_eq!(y.len(), x.len());
    let mut e = thunder::Enhancer::new(load_tiny(), Default::default()).unwrap();
    let mut r = Vec::new();
    e.process(&x, &mut r).unwrap();
    e.flush(&mut r).unwrap();
    let err = max_abs_diff(
        &y,
        &r.iter().map(|v| v.clamp(-1.0, 32767.0 / 32768.0)).collect::<Vec<_>>(),
    );
    assert!(
        err <= 1.0 / 32768.0 + 1e-6,
        "C output differs from the Rust engine by {err}"
    );

    // Bad model path: an error code and a message, no crash.
    let run = Command::new(&exe)
        .arg(dir.path().join("missing.onnx"))
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(
        err.contains("thunder_create failed (status 5)") && err.contains("missing.onnx"),
        "{err}"
    );
}
