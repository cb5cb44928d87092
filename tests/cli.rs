//! The `enhance` CLI end to end, on generated audio with the tiny fixture model: formats,
//! options, batch mode, determinism, and the bad-input list (clear error, right exit code,
//! no partial output, no panic).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use thunder::audio::wav::{read_all, write_all, SampleFormat, WavFormat};

fn enhance(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_enhance"));
    c.arg("--model").arg(tiny_model()).args(args);
    c.env_remove("ORT_DYLIB_PATH");
    c.output().expect("run enhance")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tone(n: usize, rate: u32, channels: usize) -> Vec<f32> {
    (0..n * channels)
        .map(|i| {
            let t = (i / channels) as f32 / rate as f32;
            let c = (i % channels) as f32;
            0.3 * (2.0 * std::f32::consts::PI * (220.0 + 100.0 * c) * t).sin()
                + 0.02 * ((i * 7919 % 97) as f32 / 97.0 - 0.5)
        })
        .collect()
}

fn wav(dir: &Path, name: &str, f: WavFormat, frames: usize) -> PathBuf {
    let p = dir.join(name);
    write_all(&p, f, &tone(frames, f.sample_rate, f.channels as usize)).unwrap();
    p
}

fn fmt(channels: u16, sample_rate: u32, bits: u16, format: SampleFormat) -> WavFormat {
    WavFormat {
        channels,
        sample_rate,
        bits,
        format,
    }
}

fn only_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn formats_are_kept_and_lengths_exact() {
    let d = tempfile::tempdir().unwrap();
    for (i, f) in [
        fmt(1, 16000, 16, SampleFormat::Int),
        fmt(2, 44100, 16, SampleFormat::Int),
        fmt(1, 48000, 24, SampleFormat::Int),
        fmt(3, 22050, 8, SampleFormat::Int),
        fmt(1, 8000, 32, SampleFormat::Int),
        fmt(2, 16000, 32, SampleFormat::Float),
    ]
    .into_iter()
    .enumerate()
    {
        let frames = f.sample_rate as usize * 6 / 10 + 3;
        let inp = wav(d.path(), &format!("in{i}.wav"), f, frames);
        let out = d.path().join(format!("out{i}.wav"));
        let o = enhance(&[s(&inp), s(&out), "--quiet"]);
        assert_eq!(code(&o), 0, "{f:?}: {}", stderr(&o));
        let (g, y) = read_all(&out).unwrap();
        assert_eq!(g, f);
        assert_eq!(y.len(), frames * f.channels as usize, "{f:?}");
        assert!(y.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn conversion_options() {
    let d = tempfile::tempdir().unwrap();
    let inp = wav(d.path(), "st.wav", fmt(2, 44100, 24, SampleFormat::Int), 30000);
    let out = d.path().join("o.wav");
    let o = enhance(&[s(&inp), s(&out), "--mix-mono", "--keep-16k", "--format", "float"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (g, y) = read_all(&out).unwrap();
    assert_eq!(g, fmt(1, 16000, 32, SampleFormat::Float));
    assert_eq!(y.len(), (30000u64 * 16000).div_ceil(44100) as usize);
    let o = enhance(&[s(&inp), s(&out), "--bits", "16"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(read_all(&out).unwrap().0, fmt(2, 44100, 16, SampleFormat::Int));
    let o = enhance(&[s(&inp), s(&out), "--format", "float", "--bits", "16"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn steps_seeds_and_summary() {
    let d = tempfile::tempdir().unwrap();
    let inp = wav(d.path(), "a.wav", fmt(1, 16000, 16, SampleFormat::Int), 12000);
    let run = |name: &str, extra: &[&str]| -> (Vec<u8>, String) {
        let out = d.path().join(name);
        let mut a = vec![s(&inp), s(&out)];
        a.extend_from_slice(extra);
        let o = enhance(&a);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        (std::fs::read(&out).unwrap(), stderr(&o))
    };
    let (s0, log0) = run("s0.wav", &["--steps", "0"]);
    assert!(
        log0.contains("steps 0") && log0.contains("1 network passes/frame") && log0.contains("RTF"),
        "{log0}"
    );
    assert!(log0.contains("algorithmic latency 31.9 ms"), "{log0}"); // 383 + 128·1·1 samples
    let (s1a, log1) = run("s1a.wav", &["--steps", "1", "--seed", "3"]);
    assert!(log1.contains("3 network passes/frame"), "{log1}");
    let (s1b, _) = run("s1b.wav", &["--steps", "1", "--seed", "3"]);
    let (s1c, _) = run("s1c.wav", &["--steps", "1", "--seed", "4"]);
    let (nc, lognc) = run("nc.wav", &["--steps", "2", "--no-corrector"]);
    assert!(lognc.contains("3 network passes/frame"), "{lognc}");
    assert_eq!(s1a, s1b, "same seed must give identical output");
    assert_ne!(s1a, s1c, "different seeds should differ");
    assert_ne!(s0, s1a);
    assert_ne!(nc, s1a);
    let o = enhance(&[s(&inp), s(&d.path().join("q.wav")), "--quiet"]);
    assert_eq!(code(&o), 0);
    assert!(o.stderr.is_empty(), "--quiet printed: {}", stderr(&o));
}

#[test]
fn batch_and_directory_modes() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..3 {
        wav(
            &src,
            &format!("f{i}.wav"),
            fmt(1, 16000, 16, SampleFormat::Int),
            4000 + i * 1000,
        );
    }
    std::fs::write(src.join("notes.txt"), "not audio").unwrap();
    let out = d.path().join("out");
    let o = enhance(&[s(&src), s(&out), "--jobs", "2"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("3/3 files"), "{}", stderr(&o));
    assert_eq!(only_files(&out), vec!["f0.wav", "f1.wav", "f2.wav"]);
    // Several files, one of them bad: the others are written, the exit code is the bad one's.
    let bad = d.path().join("bad.wav");
    std::fs::write(&bad, "definitely not RIFF").unwrap();
    let out2 = d.path().join("out2");
    let o = enhance(&[s(&src.join("f0.wav")), s(&bad), s(&src.join("f1.wav")), s(&out2)]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert_eq!(only_files(&out2), vec!["f0.wav", "f1.wav"]);
}

/// Run with a bad input; check the exit code, that stderr explains, and that no output (not
/// even a temp file) is left in the output directory.
fn expect_failure(input: &Path, want_code: i32, want_msg: &str, extra: &[&str]) {
    let outdir = tempfile::tempdir().unwrap();
    let out = outdir.path().join("out.wav");
    let mut a = vec![s(input), s(&out)];
    a.extend_from_slice(extra);
    let o = enhance(&a);
    let err = stderr(&o);
    assert_eq!(code(&o), want_code, "{}: {err}", input.display());
    assert!(
        err.to_lowercase().contains(&want_msg.to_lowercase()),
        "{}: expected {want_msg:?} in {err:?}",
        input.display()
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        only_files(outdir.path()).is_empty(),
        "partial output left: {:?}",
        only_files(outdir.path())
    );
}

#[test]
fn bad_inputs_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    std::fs::write(p("text.wav"), "hello, I am not a WAV file at all").unwrap();
    expect_failure(&p("text.wav"), 3, "not a valid WAV", &[]);
    expect_failure(&p("missing.wav"), 3, "cannot open", &[]);
    std::fs::write(p("empty.wav"), b"").unwrap();
    expect_failure(&p("empty.wav"), 3, "WAV", &[]);

    let good = wav(d.path(), "good.wav", fmt(1, 16000, 16, SampleFormat::Int), 16000);
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(p("hdr.wav"), &bytes[..30]).unwrap();
    expect_failure(&p("hdr.wav"), 3, "truncated", &[]);
    std::fs::write(p("data.wav"), &bytes[..bytes.len() / 2]).unwrap();
    expect_failure(&p("data.wav"), 3, "truncated", &[]);

    wav(d.path(), "zero.wav", fmt(1, 16000, 16, SampleFormat::Int), 0);
    expect_failure(&p("zero.wav"), 3, "no audio samples", &[]);
    for rate in [1u32, 10_000_000] {
        let name = format!("rate{rate}.wav");
        let mut w = hound::WavWriter::create(
            p(&name),
            hound::WavSpec {
                channels: 1,
                sample_rate: rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            },
        )
        .unwrap();
        for i in 0..100 {
            w.write_sample(i as i16).unwrap();
        }
        w.finalize().unwrap();
        expect_failure(&p(&name), 3, "sample rate", &[]);
    }
    // 64-bit float is a real WAV flavour we do not read.
    let mut f64wav = bytes[..44].to_vec();
    f64wav[20] = 3; // IEEE float
    f64wav[34] = 64; // bits
    std::fs::write(p("f64.wav"), &f64wav).unwrap();
    expect_failure(&p("f64.wav"), 3, "", &[]);
}

#[test]
fn degenerate_but_valid_inputs_work() {
    let d = tempfile::tempdir().unwrap();
    let one = wav(d.path(), "one.wav", fmt(1, 16000, 16, SampleFormat::Int), 1);
    let out = d.path().join("one_out.wav");
    let o = enhance(&[s(&one), s(&out)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(read_all(&out).unwrap().1.len(), 1);

    // NaN/Inf in float input: sanitised with a warning, output finite.
    let mut x = tone(8000, 16000, 1);
    x[100] = f32::NAN;
    x[200] = f32::INFINITY;
    x[300] = f32::NEG_INFINITY;
    let nan = d.path().join("nan.wav");
    write_all(&nan, fmt(1, 16000, 32, SampleFormat::Float), &x).unwrap();
    let out = d.path().join("nan_out.wav");
    let o = enhance(&[s(&nan), s(&out)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("3 NaN/Inf input samples"), "{}", stderr(&o));
    assert!(read_all(&out).unwrap().1.iter().all(|v| v.is_finite()));

    // Clipped input: processed, with a warning.
    let clipped: Vec<f32> = tone(8000, 16000, 1)
        .iter()
        .map(|v| (v * 8.0).clamp(-1.0, 1.0))
        .collect();
    let cl = d.path().join("clip.wav");
    write_all(&cl, fmt(1, 16000, 16, SampleFormat::Int), &clipped).unwrap();
    let o = enhance(&[s(&cl), s(&d.path().join("clip_out.wav"))]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("clipped"), "{}", stderr(&o));
}

#[test]
fn bad_models_runtimes_and_outputs() {
    let d = tempfile::tempdir().unwrap();
    let inp = wav(d.path(), "in.wav", fmt(1, 16000, 16, SampleFormat::Int), 4000);
    let run = |args: &[&str], env: Option<(&str, &str)>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_enhance"));
        c.args(args).env_remove("ORT_DYLIB_PATH");
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = d.path().join("out.wav");
    let garbage = d.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x07garbage that is not protobuf").unwrap();
    for (model, msg) in [
        (garbage.clone(), "cannot load"),
        (fixture("not-thunder.onnx"), "not a Thunder model"),
        (d.path().join("nope.onnx"), "no such file"),
    ] {
        let o = run(&[s(&inp), s(&out), "--model", s(&model)], None);
        assert_eq!(code(&o), 5, "{}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{msg}: {}", stderr(&o));
        assert!(!out.exists());
    }
    let tiny = tiny_model();
    let o = run(
        &[s(&inp), s(&out), "--model", s(&tiny)],
        Some(("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")),
    );
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(stderr(&o).contains("scripts/setup.sh"), "{}", stderr(&o));
    let not_ort = d.path().join("libfake.so");
    std::fs::write(&not_ort, b"not a shared object").unwrap();
    let o = run(&[s(&inp), s(&out), "--model", s(&tiny), "--ort-lib", s(&not_ort)], None);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot load ONNX Runtime"), "{}", stderr(&o));

    // Output problems.
    let before = std::fs::read(&inp).unwrap();
    let o = enhance(&[s(&inp), s(&inp)]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("refusing to overwrite the input"));
    assert_eq!(std::fs::read(&inp).unwrap(), before, "input was modified");
    let o = enhance(&[s(&inp), s(&d.path().join("no/such/dir/out.wav"))]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let o = enhance(&[s(&inp), s(&inp.join("below-a-file.wav"))]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));

    // An existing output survives a failed run untouched.
    std::fs::write(&out, b"precious").unwrap();
    let text = d.path().join("t.wav");
    std::fs::write(&text, "nope").unwrap();
    let o = enhance(&[s(&text), s(&out)]);
    assert_eq!(code(&o), 3);
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");

    // CUDA without the feature: clear configuration error.
    if !cfg!(feature = "cuda") {
        let o = enhance(&[s(&inp), s(&d.path().join("c.wav")), "--device", "cuda"]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(stderr(&o).contains("--features cuda"), "{}", stderr(&o));
    }
    // Usage errors.
    let o = enhance(&[s(&inp)]);
    assert_eq!(code(&o), 2);
    let o = enhance(&[s(&inp), s(&out), "--bits", "12"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn help_documents_examples_and_exit_codes() {
    let o = Command::new(env!("CARGO_BIN_EXE_enhance"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    let h = String::from_utf8_lossy(&o.stdout);
    for w in [
        "Examples:",
        "Exit codes:",
        "--steps",
        "--seed",
        "--no-corrector",
        "--mix-mono",
        "--keep-16k",
        "--ort-lib",
    ] {
        assert!(h.contains(w), "--help lacks {w}");
    }
}
