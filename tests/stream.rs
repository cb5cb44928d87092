//! The streaming engine: parity with the offline Python reference, chunking invariance,
//! frames-per-call invariance, determinism, latency, reset, and multi-channel independence.
//! Model: tests/fixtures/tiny-thunder-la1.onnx (random weights, look-ahead 1).

mod common;

use common::*;
use thunder::{Enhancer, EnhancerConfig};

fn enhancer(steps: usize, seed: u64, channels: usize, fpc: usize) -> Enhancer {
    enhancer_p(steps, seed, channels, fpc, false)
}

fn enhancer_p(steps: usize, seed: u64, channels: usize, fpc: usize, pipelined: bool) -> Enhancer {
    Enhancer::new(
        load_tiny(),
        EnhancerConfig {
            steps,
            corrector: true,
            seed,
            channels,
            frames_per_call: fpc,
            pipelined,
        },
    )
    .unwrap()
}

fn run(e: &mut Enhancer, x: &[f32], chunks: &[usize]) -> Vec<f32> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < x.len() {
        let n = chunks[i % chunks.len()].min(x.len() - pos);
        e.process(&x[pos..pos + n], &mut out).unwrap();
        pos += n;
        i += 1;
    }
    e.flush(&mut out).unwrap();
    out
}

fn speechlike(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let t = i as f32 / 16000.0;
            0.3 * (2.0 * std::f32::consts::PI * (150.0 + 80.0 * (3.0 * t).sin()) * t).sin()
                * (0.5 + 0.5 * (7.0 * t).sin())
                + 0.03 * (s as f32 / u32::MAX as f32 - 0.5)
        })
        .collect()
}

#[test]
fn waveform_matches_python_reference() {
    let fx = fixtures();
    let x = f32s(&fx["signal"]);
    let runs = fx["sampler"]["runs"].as_object().unwrap();
    for (steps, r) in runs {
        let want = f32s(&r["wave"]);
        let steps: usize = steps.parse().unwrap();
        for (fpc, chunks) in [(1usize, vec![128usize]), (64, vec![x.len()]), (3, vec![1, 77, 500])] {
            let mut e = enhancer(steps, 42, 1, fpc);
            let got = run(&mut e, &x, &chunks);
            assert_eq!(got.len(), x.len());
            let err = max_abs_diff(&got, &want);
            assert!(
                err <= 1e-4,
                "steps {steps}, {fpc} frames/call, chunks {chunks:?}: max error {err}"
            );
        }
    }
}

#[test]
fn chunked_streaming_equals_whole_file() {
    let x = speechlike(16000, 1);
    for steps in [0usize, 1] {
        let whole = run(&mut enhancer(steps, 5, 1, 64), &x, &[x.len()]);
        let hops = run(&mut enhancer(steps, 5, 1, 1), &x, &[128]);
        let odd = run(&mut enhancer(steps, 5, 1, 7), &x, &[1, 3, 129, 1000, 17]);
        assert_eq!(whole.len(), x.len());
        let e1 = max_abs_diff(&whole, &hops);
        let e2 = max_abs_diff(&whole, &odd);
        assert!(e1 <= 1e-5 && e2 <= 1e-5, "steps {steps}: {e1} {e2}");
    }
}

#[test]
fn seeded_runs_are_identical_and_seeds_matter() {
    let x = speechlike(6000, 2);
    let a = run(&mut enhancer(2, 9, 1, 16), &x, &[1000]);
    let b = run(&mut enhancer(2, 9, 1, 16), &x, &[1000]);
    let c = run(&mut enhancer(2, 10, 1, 16), &x, &[1000]);
    assert_eq!(a, b);
    assert!(max_abs_diff(&a, &c) > 1e-4, "different seeds gave the same output");
}

#[test]
fn latency_is_as_declared() {
    for steps in [0usize, 1] {
        let mut e = enhancer(steps, 0, 1, 1);
        // passes x look-ahead 1 frame of the model + the STFT's 383 samples.
        let passes = e.network_passes();
        assert_eq!(e.latency_samples(), 383 + 128 * passes);
        let x = speechlike(128 * 40, 3);
        let mut out = Vec::new();
        for (i, hop) in x.chunks(128).enumerate() {
            e.process(hop, &mut out).unwrap();
            let pushed = 128 * (i + 1);
            assert_eq!(
                out.len(),
                pushed.saturating_sub(e.latency_samples()),
                "after {pushed} samples"
            );
        }
        e.flush(&mut out).unwrap();
        assert_eq!(out.len(), x.len());
    }
}

#[test]
fn reset_and_flush_start_fresh_streams() {
    let x = speechlike(5000, 4);
    let mut e = enhancer(1, 3, 1, 8);
    let first = run(&mut e, &x, &[640]);
    let second = run(&mut e, &x, &[640]); // flush already reset
    assert_eq!(first, second);
    let mut junk = Vec::new();
    e.process(&speechlike(3000, 9), &mut junk).unwrap();
    e.reset();
    let third = run(&mut e, &x, &[640]);
    assert_eq!(first, third);
}

#[test]
fn channels_are_independent() {
    let l = speechlike(4000, 5);
    let r = speechlike(4000, 6);
    let inter: Vec<f32> = l.iter().zip(&r).flat_map(|(a, b)| [*a, *b]).collect();
    let stereo = run(&mut enhancer(1, 1, 2, 16), &inter, &[2 * 300]);
    let ml = run(&mut enhancer(1, 1, 1, 16), &l, &[300]);
    let mr = run(&mut enhancer(1, 1, 1, 16), &r, &[300]);
    let sl: Vec<f32> = stereo.iter().step_by(2).copied().collect();
    let sr: Vec<f32> = stereo.iter().skip(1).step_by(2).copied().collect();
    assert!(max_abs_diff(&sl, &ml) <= 1e-5);
    assert!(max_abs_diff(&sr, &mr) <= 1e-5);
}

#[test]
fn tiny_inputs_and_non_finite_samples() {
    let mut e = enhancer(1, 0, 1, 4);
    for n in [1usize, 2, 127, 128, 129, 300] {
        let out = run(&mut e, &speechlike(n, 7), &[n]);
        assert_eq!(out.len(), n);
        assert!(out.iter().all(|v| v.is_finite()));
    }
    let mut x = speechlike(2000, 8);
    x[10] = f32::NAN;
    x[500] = f32::INFINITY;
    x[501] = f32::NEG_INFINITY;
    let out = run(&mut e, &x, &[256]);
    assert!(out.iter().all(|v| v.is_finite()));
    assert_eq!(e.nonfinite_samples(), 3);
}

/// The pipelined schedule (all passes in one batched call per hop) gives the same waveform as
/// the Python reference, with (passes − 1) hops more latency.
#[test]
fn pipelined_live_mode_matches_reference() {
    let fx = fixtures();
    let x = f32s(&fx["signal"]);
    for (steps, r) in fx["sampler"]["runs"].as_object().unwrap() {
        let steps: usize = steps.parse().unwrap();
        let want = f32s(&r["wave"]);
        for ch in [1usize, 2] {
            let mut e = enhancer_p(steps, 42, ch, 1, true);
            let input: Vec<f32> = x.iter().flat_map(|v| std::iter::repeat_n(*v, ch)).collect();
            let got = run(&mut e, &input, &[128 * ch]);
            let mono: Vec<f32> = got.iter().step_by(ch).copied().collect();
            let err = max_abs_diff(&mono, &want);
            assert!(err <= 1e-4, "steps {steps}, {ch} ch pipelined: max error {err}");
        }
    }
    let x = speechlike(128 * 30, 11);
    let mut e = enhancer_p(1, 0, 1, 1, true);
    assert_eq!(e.latency_samples(), 383 + 128 * (3 + 2));
    let mut out = Vec::new();
    for (i, hop) in x.chunks(128).enumerate() {
        e.process(hop, &mut out).unwrap();
        assert_eq!(out.len(), (128 * (i + 1)).saturating_sub(e.latency_samples()));
    }
    e.flush(&mut out).unwrap();
    let plain = run(&mut enhancer(1, 0, 1, 1), &x, &[128]);
    assert!(max_abs_diff(&out, &plain) <= 1e-5);
}
