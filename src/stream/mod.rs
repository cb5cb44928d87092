//! The one code path: a streaming engine that takes 16 kHz samples in and gives enhanced
//! samples out ([`Enhancer`]). File mode ([`file`]) feeds whole files through it in chunks.
//!
//! Per channel: [`Stft`] → compression → the [`FrameSampler`] (one model state per network
//! pass, each pass delayed by the model's look-ahead) → decompression → [`Istft`].
//! Output is aligned with the input: the first output sample belongs to the first input sample,
//! and after [`Enhancer::flush`] exactly as many samples have come out as went in.

pub mod file;

use std::path::Path;

use realfft::num_complex::Complex32;

use crate::contract::{FRAME_LEN, HOP, N_BINS, N_FFT, SAMPLE_RATE};
use crate::error::{Error, Result};
use crate::model::{Model, ModelOptions};
use crate::sampler::{FrameSampler, SamplerConfig};
use crate::stft::{compress, decompress, Istft, Stft};

/// Settings of an [`Enhancer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnhancerConfig {
    /// Reverse steps of the sampler (0 = regression pass only).
    pub steps: usize,
    /// Run the corrector in each reverse step.
    pub corrector: bool,
    /// Seed of the stochastic steps.
    pub seed: u64,
    /// Interleaved channels, each enhanced independently (batched through the network).
    pub channels: usize,
    /// Most frames per network call. 1 gives the lowest latency per call; larger values give
    /// throughput when many samples are pushed at once. Results are identical either way.
    pub frames_per_call: usize,
    /// Advance all network passes in one batched call per frame (see
    /// [`FrameSampler::set_pipelined`]): same output, (passes − 1) hops more latency, up to
    /// passes× fewer ONNX Runtime calls. For live, hop-by-hop use at `steps ≥ 1`.
    pub pipelined: bool,
}

impl Default for EnhancerConfig {
    fn default() -> Self {
        Self {
            steps: 1,
            corrector: true,
            seed: 0,
            channels: 1,
            frames_per_call: 1,
            pipelined: false,
        }
    }
}

/// Streaming speech enhancer at 16 kHz (interleaved when `channels > 1`).
///
/// Build it from a model path and options, push any number of samples with
/// [`Enhancer::process`] (enhanced samples come out [`Enhancer::latency_samples`] behind), end
/// the stream with [`Enhancer::flush`] (or drop it with [`Enhancer::reset`]). An `Enhancer` is
/// `Send`: create it on one thread, run it on another (e.g. an audio worker).
///
/// ```
/// # fn main() -> thunder::Result<()> {
/// use thunder::{model::ModelOptions, Enhancer, EnhancerConfig};
///
/// // Any Thunder ONNX model; the shipped one is models/thunder-16k.onnx.
/// let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-thunder-la1.onnx");
/// let mut e = Enhancer::from_path(
///     model.as_ref(),
///     &ModelOptions { threads: 1, ..Default::default() },
///     EnhancerConfig { steps: 1, seed: 0, ..Default::default() },
/// )?;
/// assert_eq!(e.sample_rate(), 16000);
/// // 383 samples of STFT framing + 128 per network pass per frame of model look-ahead
/// // (this fixture has look-ahead 1 and steps 1 runs 3 passes; a causal model: 383 = 23.9 ms).
/// assert_eq!(e.latency_samples(), 383 + 3 * 128);
///
/// let noisy: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.1).collect();
/// let mut out = Vec::new();
/// for block in noisy.chunks(160) {
///     // Any block size, even 1 sample; output grows by what is ready.
///     e.process(block, &mut out)?;
/// }
/// // 16000 samples are 125 whole hops: everything but the latency has come out.
/// assert_eq!(out.len(), 16000 - e.latency_samples());
/// e.flush(&mut out)?; // end of stream: the rest, then ready for a new stream
/// assert_eq!(out.len(), noisy.len());
/// # Ok(()) }
/// ```
///
/// `reset` starts a new stream without flushing, and the enhancer can move to another thread:
///
/// ```
/// # fn main() -> thunder::Result<()> {
/// # use thunder::{model::ModelOptions, Enhancer};
/// # let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-thunder-la1.onnx");
/// let mut e = Enhancer::from_path(model.as_ref(), &ModelOptions::default(), Default::default())?;
/// let mut a = Vec::new();
/// e.process(&[0.1; 4000], &mut a)?;
/// e.reset(); // forget that stream
/// let worker = std::thread::spawn(move || {
///     let mut b = Vec::new();
///     e.process(&[0.1; 4000], &mut b).unwrap();
///     b
/// });
/// assert_eq!(worker.join().unwrap(), a); // same input after reset -> same output
/// # Ok(()) }
/// ```
pub struct Enhancer {
    sampler: FrameSampler<Model>,
    cfg: EnhancerConfig,
    alpha: f32,
    beta: f32,
    stft: Vec<Stft>,
    istft: Vec<Istft>,
    samples_in: u64,
    nonfinite: u64,
    chan_in: Vec<Vec<f32>>,
    chan_frames: Vec<Vec<f32>>,
    chan_out: Vec<Vec<f32>>,
    y: Vec<f32>,
    xhat: Vec<f32>,
    spec: Vec<Complex32>,
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Enhancer>();
};

impl Enhancer {
    /// Wrap a loaded model.
    pub fn new(model: Model, cfg: EnhancerConfig) -> Result<Self> {
        if cfg.channels == 0 {
            return Err(Error::Config("an enhancer needs at least one channel".into()));
        }
        if cfg.steps > 1000 {
            return Err(Error::Config(format!(
                "--steps {} is unreasonable (use 0 to a few)",
                cfg.steps
            )));
        }
        let info = model.info().clone();
        let scfg = SamplerConfig {
            steps: cfg.steps,
            corrector: cfg.corrector,
            seed: cfg.seed,
            interp_weight: info.interp_weight,
            t_max: info.t_max,
            t_min: info.t_min,
        };
        let ch = cfg.channels;
        let mut sampler = FrameSampler::new(model, scfg, ch, cfg.frames_per_call);
        sampler.set_pipelined(cfg.pipelined);
        Ok(Self {
            sampler,
            alpha: info.alpha,
            beta: info.beta,
            stft: (0..ch).map(|_| Stft::new()).collect(),
            istft: (0..ch).map(|_| Istft::new()).collect(),
            samples_in: 0,
            nonfinite: 0,
            chan_in: vec![Vec::new(); ch],
            chan_frames: vec![Vec::new(); ch],
            chan_out: vec![Vec::new(); ch],
            y: Vec::new(),
            xhat: Vec::new(),
            spec: vec![Complex32::default(); N_BINS],
            cfg,
        })
    }

    /// Load a model and wrap it.
    pub fn from_path(model: &Path, opts: &ModelOptions, cfg: EnhancerConfig) -> Result<Self> {
        Self::new(Model::load(model, opts)?, cfg)
    }

    /// The settings.
    pub fn config(&self) -> &EnhancerConfig {
        &self.cfg
    }

    /// The model.
    pub fn model(&self) -> &Model {
        self.sampler.net()
    }

    /// Give the model back (e.g. to build an enhancer with another channel count).
    pub fn into_model(self) -> Model {
        self.sampler.into_net()
    }

    /// Sample rate the enhancer works at (16 kHz).
    pub fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    /// Network passes per frame (1 + 2·steps, or 1 + steps without the corrector).
    pub fn network_passes(&self) -> usize {
        self.sampler.network_passes()
    }

    /// Algorithmic latency in samples: how far the output lags the input when the input is
    /// pushed in whole hops. n_fft − hop + 1 (= 383) for the STFT framing, plus the hop times
    /// passes × look-ahead frames (plus passes − 1 frames when pipelined).
    pub fn latency_samples(&self) -> usize {
        N_FFT - HOP + 1 + HOP * self.sampler.delay_frames()
    }

    /// Non-finite input samples replaced by 0 since the enhancer was created.
    pub fn nonfinite_samples(&self) -> u64 {
        self.nonfinite
    }

    /// Change the maximum frames per network call (results are unaffected).
    pub fn set_frames_per_call(&mut self, n: usize) {
        self.cfg.frames_per_call = n.max(1);
        self.sampler.set_frames_per_call(n);
    }

    /// Forget the current stream (states, buffers); the next sample starts a new one.
    pub fn reset(&mut self) {
        self.sampler.reset();
        self.stft.iter_mut().for_each(Stft::reset);
        self.istft.iter_mut().for_each(Istft::reset);
        self.samples_in = 0;
    }

    /// Push any number of (interleaved) samples; append the enhanced samples that are ready to
    /// `output`. NaN/Inf inputs are replaced by 0 (see [`Enhancer::nonfinite_samples`]).
    pub fn process(&mut self, input: &[f32], output: &mut Vec<f32>) -> Result<()> {
        let ch = self.cfg.channels;
        if !input.len().is_multiple_of(ch) {
            return Err(Error::Config(format!(
                "{} samples is not a whole number of {ch}-channel frames",
                input.len()
            )));
        }
        for c in &mut self.chan_in {
            c.clear();
        }
        for frame in input.chunks_exact(ch) {
            for (c, &s) in self.chan_in.iter_mut().zip(frame) {
                if s.is_finite() {
                    c.push(s);
                } else {
                    c.push(0.0);
                    self.nonfinite += 1;
                }
            }
        }
        self.samples_in += (input.len() / ch) as u64;
        for c in 0..ch {
            let (stft, frames, samples) = (&mut self.stft[c], &mut self.chan_frames[c], &self.chan_in[c]);
            let (alpha, beta) = (self.alpha, self.beta);
            frames.clear();
            stft.push(samples, |spec| {
                let at = frames.len();
                frames.resize(at + FRAME_LEN, 0.0);
                compress(spec, alpha, beta, &mut frames[at..]);
            });
        }
        self.run_frames(output, false)
    }

    /// End the stream: pad as the offline reference does, append every remaining sample to
    /// `output`, and reset for a new stream. After `flush`, the stream's total output length
    /// equals its total input length.
    pub fn flush(&mut self, output: &mut Vec<f32>) -> Result<()> {
        for c in 0..self.cfg.channels {
            let (stft, frames) = (&mut self.stft[c], &mut self.chan_frames[c]);
            let (alpha, beta) = (self.alpha, self.beta);
            frames.clear();
            stft.finish(|spec| {
                let at = frames.len();
                frames.resize(at + FRAME_LEN, 0.0);
                compress(spec, alpha, beta, &mut frames[at..]);
            });
        }
        let r = self.run_frames(output, true);
        self.reset();
        r
    }

    fn run_frames(&mut self, output: &mut Vec<f32>, end: bool) -> Result<()> {
        let ch = self.cfg.channels;
        let n = self.chan_frames[0].len() / FRAME_LEN;
        self.y.clear();
        for t in 0..n {
            for c in 0..ch {
                self.y
                    .extend_from_slice(&self.chan_frames[c][t * FRAME_LEN..(t + 1) * FRAME_LEN]);
            }
        }
        self.xhat.clear();
        self.sampler.push(&self.y, &mut self.xhat)?;
        if end {
            self.sampler.flush(&mut self.xhat)?;
        }
        for c in &mut self.chan_out {
            c.clear();
        }
        for frame in self.xhat.chunks_exact(ch * FRAME_LEN) {
            for c in 0..ch {
                decompress(
                    &frame[c * FRAME_LEN..(c + 1) * FRAME_LEN],
                    self.alpha,
                    self.beta,
                    &mut self.spec,
                );
                self.istft[c].push(&self.spec, &mut self.chan_out[c]);
            }
        }
        if end {
            for c in 0..ch {
                self.istft[c].finish(self.samples_in, &mut self.chan_out[c]);
            }
        }
        let len = self.chan_out[0].len();
        debug_assert!(self.chan_out.iter().all(|c| c.len() == len));
        output.reserve(len * ch);
        for i in 0..len {
            for c in 0..ch {
                output.push(self.chan_out[c][i]);
            }
        }
        Ok(())
    }
}
