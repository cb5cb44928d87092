//! The one Rust definition of Thunder's DSP constants and ONNX contract names.
//!
//! Mirrors `models/train/thunder_train/contract.py`; `tests/contract.rs` pins both to
//! `tests/fixtures/contract.json`. See `models/README.md` for the full contract.

/// Sample rate the model works at (Hz).
pub const SAMPLE_RATE: u32 = 16_000;
/// FFT size of the STFT (gives [`N_BINS`] one-sided bins).
pub const N_FFT: usize = 510;
/// STFT hop in samples.
pub const HOP: usize = 128;
/// One-sided frequency bins per frame.
pub const N_BINS: usize = N_FFT / 2 + 1;
/// Window name as written in the model metadata.
pub const WINDOW: &str = "hann-periodic";
/// Zeros padded before (and, offline, after) the signal: frame `k` is centred on sample `k * HOP`.
pub const CENTER_PAD: usize = N_FFT / 2;
/// Values of one model-domain frame: 2 channels (re, im) × [`N_BINS`].
pub const FRAME_LEN: usize = 2 * N_BINS;

/// Amplitude-compression exponent α in c̃ = β·|c|^α·e^{j∠c}.
pub const ALPHA: f32 = 0.5;
/// Amplitude-compression scale β.
pub const BETA: f32 = 0.15;

/// Smallest bridge time of the reverse process.
pub const T_MIN: f64 = 0.03;
/// Largest bridge time of the reverse process.
pub const T_MAX: f64 = 0.999;
/// Bridge time that selects the regression pass.
pub const T_REGRESSION: f32 = 1.0;
/// Interpolation weight w in y′ = w·x̂_reg + (1 − w)·y.
pub const INTERP_WEIGHT: f64 = 0.8;
/// Corrector signal-to-noise ratio (the update's ½ factors assume 0.5).
pub const CORRECTOR_SNR: f64 = 0.5;

/// Graph input: bridge state.
pub const INPUT_XT: &str = "x_t";
/// Graph input: conditioning.
pub const INPUT_Y: &str = "y";
/// Graph input: bridge time.
pub const INPUT_T: &str = "t";
/// Graph output: clean-speech estimate.
pub const OUTPUT_X0: &str = "x0";
/// Prefix of state inputs (`state_in_{k}`).
pub const STATE_IN_PREFIX: &str = "state_in_";
/// Prefix of state outputs (`state_out_{k}`).
pub const STATE_OUT_PREFIX: &str = "state_out_";

/// Name of state input `k`.
pub fn state_in(k: usize) -> String {
    format!("{STATE_IN_PREFIX}{k}")
}

/// Name of state output `k` (the next value of [`state_in`]`(k)`).
pub fn state_out(k: usize) -> String {
    format!("{STATE_OUT_PREFIX}{k}")
}

/// Required `metadata_props` keys (all values are strings).
pub const META_KEYS: [&str; 18] = [
    "thunder.contract_version",
    "thunder.model_name",
    "thunder.model_version",
    "thunder.sample_rate",
    "thunder.n_fft",
    "thunder.hop",
    "thunder.window",
    "thunder.center_pad",
    "thunder.alpha",
    "thunder.beta",
    "thunder.lookahead_frames",
    "thunder.t_min",
    "thunder.t_max",
    "thunder.interp_weight",
    "thunder.corrector_snr",
    "thunder.state_shapes",
    "thunder.noise_rng",
    "thunder.training_data",
];
/// Contract version this engine implements.
pub const CONTRACT_VERSION: &str = "1";
/// Noise generator this engine implements (see [`crate::sampler::noise`]).
pub const NOISE_RNG: &str = "splitmix64-boxmuller-v1";

/// Frames the offline STFT produces for a signal of `n_samples` (centred framing).
pub fn n_frames(n_samples: usize) -> usize {
    1 + n_samples / HOP
}
