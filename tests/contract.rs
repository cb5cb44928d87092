//! Parity with the Python recipe: constants, STFT, compression, noise, timesteps, sampler.
//! Reference numbers come from `tests/fixtures/contract.json` (`python -m thunder_train.fixtures`).

mod common;

use common::*;
use thunder::contract as C;
use thunder::sampler::{noise, timesteps, FrameSampler, SamplerConfig};
use thunder::stft;

#[test]
fn constants_match_python() {
    let fx = fixtures();
    let c = &fx["constants"];
    assert_eq!(c["sample_rate"].as_u64().unwrap() as u32, C::SAMPLE_RATE);
    assert_eq!(c["n_fft"].as_u64().unwrap() as usize, C::N_FFT);
    assert_eq!(c["hop"].as_u64().unwrap() as usize, C::HOP);
    assert_eq!(c["n_bins"].as_u64().unwrap() as usize, C::N_BINS);
    assert_eq!(c["center_pad"].as_u64().unwrap() as usize, C::CENTER_PAD);
    assert_eq!(c["alpha"].as_f64().unwrap() as f32, C::ALPHA);
    assert_eq!(c["beta"].as_f64().unwrap() as f32, C::BETA);
    assert_eq!(c["t_min"].as_f64().unwrap(), C::T_MIN);
    assert_eq!(c["t_max"].as_f64().unwrap(), C::T_MAX);
    assert_eq!(c["interp_weight"].as_f64().unwrap(), C::INTERP_WEIGHT);
    assert_eq!(c["corrector_snr"].as_f64().unwrap(), C::CORRECTOR_SNR);
    assert_eq!(c["window"].as_str().unwrap(), C::WINDOW);
    assert_eq!(c["noise_rng"].as_str().unwrap(), C::NOISE_RNG);
    assert_eq!(c["contract_version"].as_str().unwrap(), C::CONTRACT_VERSION);
    let keys: Vec<&str> = c["meta_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, C::META_KEYS);
}

#[test]
fn window_matches_torch() {
    let fx = fixtures();
    assert!(max_abs_diff(&stft::window(), &f32s(&fx["window"])) < 1e-7);
}

#[test]
fn stft_matches_torch() {
    let fx = fixtures();
    let x = f32s(&fx["signal"]);
    let shape: Vec<usize> = fx["stft_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let (nf, nt) = (shape[0], shape[1]);
    let re = f32s(&fx["stft_re"]);
    let im = f32s(&fx["stft_im"]);
    let frames = stft::stft(&x);
    assert_eq!(frames.len(), nt);
    assert_eq!(nt, C::n_frames(x.len()));
    let scale = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut err = 0.0f32;
    for (t, fr) in frames.iter().enumerate() {
        for f in 0..nf {
            err = err
                .max((fr[f].re - re[f * nt + t]).abs())
                .max((fr[f].im - im[f * nt + t]).abs());
        }
    }
    // Tolerance: 1e-5 relative to the signal's peak (measured: 3.8e-6 abs at peak 0.49, with
    // spectrum values up to 36).
    eprintln!("stft max abs error {err:e} (signal scale {scale})");
    assert!(err <= 1e-5 * scale, "STFT max error {err} > 1e-5 x signal peak {scale}");

    // Compressed spectrum [2, F, T].
    let comp = f32s(&fx["compressed"]);
    let mut m = vec![0.0; C::FRAME_LEN];
    let mut cerr = 0.0f32;
    for (t, fr) in frames.iter().enumerate() {
        stft::compress(fr, C::ALPHA, C::BETA, &mut m);
        for i in 0..C::FRAME_LEN {
            cerr = cerr.max((m[i] - comp[i * nt + t]).abs());
        }
    }
    assert!(cerr < 1e-5, "compressed max error {cerr}");

    // iSTFT round trip as torch computed it, and against the signal itself.
    let y = stft::istft(&frames, x.len());
    assert!(max_abs_diff(&y, &f32s(&fx["istft"])) < 1e-5 * scale.max(1.0));
    assert!(max_abs_diff(&y, &x) < 1e-5);
}

#[test]
fn noise_is_bit_exact() {
    let fx = fixtures();
    for pair in fx["noise_mix"].as_array().unwrap() {
        let s = pair[0].as_u64().unwrap();
        let want = pair[1].as_u64().unwrap();
        assert_eq!(noise::mix(s), want, "mix({s})");
    }
    let n = &fx["noise"];
    let mut z = vec![0.0; C::FRAME_LEN];
    noise::frame_noise(
        n["seed"].as_u64().unwrap(),
        n["stream"].as_u64().unwrap(),
        n["frame"].as_u64().unwrap(),
        &mut z,
    );
    let want = f32s(&n["z"]);
    assert_eq!(z, want, "noise frame differs");
}

#[test]
fn timesteps_match_numpy() {
    let fx = fixtures();
    for (n, v) in fx["timesteps"].as_object().unwrap() {
        assert_eq!(timesteps(n.parse().unwrap(), C::T_MAX, C::T_MIN), f64s(v), "N = {n}");
    }
}

/// The sampler over the tiny look-ahead-1 graph, frame by frame and in blocks, equals the
/// offline Python sampler run through ONNX Runtime.
#[test]
fn sampler_matches_python_reference() {
    sampler_matches("sampler");
}

/// The same for a graph with the trained models' optional blocks (frame GRU, line canceller):
/// their extra state tensors are carried like the others.
#[test]
fn sampler_with_line_canceller_matches_python_reference() {
    sampler_matches("sampler_lines");
}

fn sampler_matches(key: &str) {
    let fx = fixtures();
    let s = &fx[key];
    let shape: Vec<usize> = s["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let nt = shape[2];
    let x = f32s(&fx["signal"]);
    let frames = stft::stft(&x);
    let mut y = Vec::new();
    let mut m = vec![0.0; C::FRAME_LEN];
    for fr in &frames {
        stft::compress(fr, C::ALPHA, C::BETA, &mut m);
        y.extend_from_slice(&m);
    }
    let mut model = Some(load_fixture_model(s["model"].as_str().unwrap()));
    for (steps, run) in s["runs"].as_object().unwrap() {
        let want = f32s(&run["x0"]);
        for fpc in [1usize, 5, 64] {
            let cfg = SamplerConfig {
                steps: steps.parse().unwrap(),
                seed: s["seed"].as_u64().unwrap(),
                ..Default::default()
            };
            let mut sampler = FrameSampler::new(model.take().unwrap(), cfg, 1, fpc);
            let mut out = Vec::new();
            for chunk in y.chunks(3 * C::FRAME_LEN) {
                sampler.push(chunk, &mut out).unwrap();
            }
            sampler.flush(&mut out).unwrap();
            assert_eq!(out.len(), nt * C::FRAME_LEN, "steps {steps}: frame count");
            let mut err = 0.0f32;
            for t in 0..nt {
                for i in 0..C::FRAME_LEN {
                    err = err.max((out[t * C::FRAME_LEN + i] - want[i * nt + t]).abs());
                }
            }
            assert!(
                err <= 1e-4,
                "{key}, steps {steps}, {fpc} frames/call: x0 max error {err}"
            );
            model = Some(sampler.into_net());
        }
    }
}
