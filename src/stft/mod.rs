//! Streaming STFT / iSTFT in the model's exact convention (see `models/README.md`).
//!
//! n_fft 510 (256 one-sided bins), hop 128, periodic Hann, centred framing with zero padding of
//! 255 samples, and window-envelope-normalised overlap-add (`torch.istft(center=True)`).
//! [`Stft`] takes any number of samples and emits frames as soon as they are complete;
//! [`Istft`] takes frames and emits samples as soon as no later frame can change them.
//! Fed the same signal, the streaming pair reproduces the offline transforms exactly.
//!
//! Model-domain frames are `[2, N_BINS]` (re block, then im block); see [`compress`].

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::contract::{CENTER_PAD, HOP, N_BINS, N_FFT};

/// The analysis/synthesis window: periodic Hann of length [`N_FFT`], computed in f32 exactly as
/// `torch.hann_window(510, periodic=True)` does (`0.5 - 0.5·cos(n·2π/510)`).
pub fn window() -> Vec<f32> {
    let step = (2.0 * std::f64::consts::PI / N_FFT as f64) as f32;
    (0..N_FFT).map(|n| (n as f32 * step).cos() * -0.5 + 0.5).collect()
}

/// Streaming analysis: samples in, complex one-sided frames out.
///
/// Frame `k` is centred on sample `k * HOP` and emitted once sample `k * HOP + 254` has arrived.
/// [`Stft::finish`] appends the end padding, so a finished stream of `n` samples yields exactly
/// `1 + n / HOP` frames, as offline.
pub struct Stft {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    pending: Vec<f32>,
    frame: Vec<f32>,
    spec: Vec<Complex32>,
    scratch: Vec<Complex32>,
}

impl Default for Stft {
    fn default() -> Self {
        Self::new()
    }
}

impl Stft {
    /// A fresh analyser (the start padding is already in place).
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let scratch = fft.make_scratch_vec();
        let mut s = Self {
            fft,
            window: window(),
            pending: Vec::with_capacity(4 * N_FFT),
            frame: vec![0.0; N_FFT],
            spec: vec![Complex32::default(); N_BINS],
            scratch,
        };
        s.reset();
        s
    }

    /// Forget everything; the next sample is sample 0 of a new stream.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.pending.resize(CENTER_PAD, 0.0);
    }

    /// Push samples; `on_frame` is called with each completed frame's spectrum ([`N_BINS`] bins).
    pub fn push(&mut self, samples: &[f32], mut on_frame: impl FnMut(&[Complex32])) {
        self.pending.extend_from_slice(samples);
        let mut pos = 0;
        while self.pending.len() - pos >= N_FFT {
            for ((f, &x), &w) in self
                .frame
                .iter_mut()
                .zip(&self.pending[pos..pos + N_FFT])
                .zip(&self.window)
            {
                *f = x * w;
            }
            // Lengths are fixed by construction, so the FFT cannot fail.
            let _ = self
                .fft
                .process_with_scratch(&mut self.frame, &mut self.spec, &mut self.scratch);
            on_frame(&self.spec);
            pos += HOP;
        }
        self.pending.drain(..pos);
    }

    /// End the stream: append the end padding, emit the last frames, and reset.
    pub fn finish(&mut self, on_frame: impl FnMut(&[Complex32])) {
        self.push(&[0.0; CENTER_PAD], on_frame);
        self.reset();
    }
}

/// Streaming synthesis: frames in, samples out (window-envelope-normalised overlap-add).
pub struct Istft {
    ifft: Arc<dyn ComplexToReal<f32>>,
    window: Vec<f32>,
    wsq: Vec<f32>,
    spec: Vec<Complex32>,
    frame: Vec<f32>,
    scratch: Vec<Complex32>,
    ola: Vec<f32>,
    env: Vec<f32>,
    /// Padded-signal index of `ola[0]`.
    base: u64,
    /// Output samples emitted so far.
    emitted: u64,
}

impl Default for Istft {
    fn default() -> Self {
        Self::new()
    }
}

impl Istft {
    /// A fresh synthesiser.
    pub fn new() -> Self {
        let ifft = RealFftPlanner::<f32>::new().plan_fft_inverse(N_FFT);
        let scratch = ifft.make_scratch_vec();
        let window = window();
        let wsq = window.iter().map(|w| w * w).collect();
        Self {
            ifft,
            window,
            wsq,
            spec: vec![Complex32::default(); N_BINS],
            frame: vec![0.0; N_FFT],
            scratch,
            ola: vec![0.0; N_FFT],
            env: vec![0.0; N_FFT],
            base: 0,
            emitted: 0,
        }
    }

    /// Forget everything; the next frame is frame 0 of a new stream.
    pub fn reset(&mut self) {
        self.ola.fill(0.0);
        self.env.fill(0.0);
        self.base = 0;
        self.emitted = 0;
    }

    /// Output samples emitted since the stream started.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Add the next frame ([`N_BINS`] bins) and append the samples it completes to `out`.
    pub fn push(&mut self, spec: &[Complex32], out: &mut Vec<f32>) {
        self.spec.copy_from_slice(&spec[..N_BINS]);
        // irfft ignores the imaginary parts of DC and Nyquist (as torch does).
        self.spec[0].im = 0.0;
        self.spec[N_BINS - 1].im = 0.0;
        let _ = self
            .ifft
            .process_with_scratch(&mut self.spec, &mut self.frame, &mut self.scratch);
        let norm = 1.0 / N_FFT as f32;
        for i in 0..N_FFT {
            self.ola[i] += self.frame[i] * norm * self.window[i];
            self.env[i] += self.wsq[i];
        }
        // Samples before base + HOP receive no later frame.
        self.emit(HOP, out);
        self.ola.copy_within(HOP.., 0);
        self.env.copy_within(HOP.., 0);
        self.ola[N_FFT - HOP..].fill(0.0);
        self.env[N_FFT - HOP..].fill(0.0);
        self.base += HOP as u64;
    }

    /// End a stream of `total` samples: append the remaining samples to `out` and reset.
    /// (`total` is the number of samples the matching [`Stft`] was given.)
    pub fn finish(&mut self, total: u64, out: &mut Vec<f32>) {
        let remaining = total.saturating_sub(self.emitted) as usize;
        let end = (CENTER_PAD as u64 + total).saturating_sub(self.base) as usize;
        let n = end.min(N_FFT);
        let before = out.len();
        self.emit(n, out);
        // Anything beyond the last frame's support would be silence; never happens for a stream
        // fed through `Stft::finish`, but keep the length contract anyway.
        let got = out.len() - before;
        if got < remaining {
            out.resize(before + remaining, 0.0);
        }
        self.reset();
    }

    fn emit(&mut self, n: usize, out: &mut Vec<f32>) {
        let skip = (CENTER_PAD as u64).saturating_sub(self.base).min(n as u64) as usize;
        for i in skip..n {
            let e = self.env[i];
            out.push(if e > 1e-11 { self.ola[i] / e } else { 0.0 });
        }
        self.emitted += (n - skip) as u64;
    }
}

/// Amplitude compression c̃ = β·|c|^α·e^{j∠c} of one frame into model layout `[2, N_BINS]`.
/// An exact zero stays zero.
pub fn compress(spec: &[Complex32], alpha: f32, beta: f32, out: &mut [f32]) {
    let (re, im) = out.split_at_mut(N_BINS);
    for (k, c) in spec.iter().enumerate().take(N_BINS) {
        let mag = c.re.hypot(c.im);
        let s = if mag > 0.0 {
            beta * mag.max(1e-30).powf(alpha - 1.0)
        } else {
            0.0
        };
        re[k] = c.re * s;
        im[k] = c.im * s;
    }
}

/// Inverse of [`compress`]: model layout `[2, N_BINS]` back to a complex spectrum.
pub fn decompress(frame: &[f32], alpha: f32, beta: f32, out: &mut [Complex32]) {
    let (re, im) = frame.split_at(N_BINS);
    let inv = 1.0 / alpha;
    for k in 0..N_BINS {
        let mag = re[k].hypot(im[k]);
        let s = if mag > 0.0 {
            let m = mag.max(1e-30);
            (m / beta).powf(inv) / m
        } else {
            0.0
        };
        out[k] = Complex32::new(re[k] * s, im[k] * s);
    }
}

/// Offline STFT of a whole signal (via the streaming analyser): `T = 1 + n / HOP` frames.
pub fn stft(signal: &[f32]) -> Vec<Vec<Complex32>> {
    let mut s = Stft::new();
    let mut frames = Vec::new();
    s.push(signal, |f| frames.push(f.to_vec()));
    s.finish(|f| frames.push(f.to_vec()));
    frames
}

/// Offline iSTFT of whole frames to `len` samples (via the streaming synthesiser).
pub fn istft(frames: &[Vec<Complex32>], len: usize) -> Vec<f32> {
    let mut s = Istft::new();
    let mut out = Vec::with_capacity(len);
    for f in frames {
        s.push(f, &mut out);
    }
    s.finish(len as u64, &mut out);
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32) * 0.031).sin() * 0.4 + ((i * 7919 % 101) as f32 / 101.0 - 0.5) * 0.1)
            .collect()
    }

    #[test]
    fn reconstruction_is_exact() {
        for n in [1usize, 2, 127, 128, 129, 255, 256, 511, 1000, 4096] {
            let x = signal(n);
            let y = istft(&stft(&x), n);
            assert_eq!(y.len(), n);
            let err = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(err < 1e-5, "n={n}: max error {err}");
        }
    }

    #[test]
    fn frame_count_matches_offline() {
        for n in [0usize, 1, 127, 128, 300, 1000] {
            assert_eq!(stft(&signal(n)).len(), crate::contract::n_frames(n));
        }
    }

    #[test]
    fn streaming_in_odd_chunks_equals_offline() {
        let x = signal(3001);
        let offline = istft(&stft(&x), x.len());
        let mut a = Stft::new();
        let mut s = Istft::new();
        let mut out = Vec::new();
        for chunk in x.chunks(37) {
            let mut frames = Vec::new();
            a.push(chunk, |f| frames.push(f.to_vec()));
            for f in &frames {
                s.push(f, &mut out);
            }
        }
        let mut frames = Vec::new();
        a.finish(|f| frames.push(f.to_vec()));
        for f in &frames {
            s.push(f, &mut out);
        }
        s.finish(x.len() as u64, &mut out);
        assert_eq!(out.len(), x.len());
        assert_eq!(out, offline);
    }

    #[test]
    fn compress_round_trip() {
        let spec: Vec<Complex32> = (0..N_BINS)
            .map(|k| Complex32::new((k as f32 * 0.3).sin() * 3.0, (k as f32 * 0.7).cos()))
            .collect();
        let mut m = vec![0.0; 2 * N_BINS];
        compress(&spec, 0.5, 0.15, &mut m);
        let mut back = vec![Complex32::default(); N_BINS];
        decompress(&m, 0.5, 0.15, &mut back);
        for (a, b) in spec.iter().zip(&back) {
            assert!((a - b).norm() < 1e-4 * (1.0 + a.norm()));
        }
        let zero = vec![Complex32::default(); N_BINS];
        compress(&zero, 0.5, 0.15, &mut m);
        assert!(m.iter().all(|&v| v == 0.0));
    }
}
