//! Streaming sample-rate conversion with rubato (to 16 kHz and back).
//!
//! Rates whose ratio reduces to small blocks use rubato's synchronous FFT resampler; others
//! (e.g. 44 099 Hz) use its asynchronous sinc resampler at a fixed ratio. Either way the startup
//! delay is trimmed and a finished stream of `n` input frames yields exactly
//! `ceil(n · to / from)` output frames.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Indexing, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use crate::error::{Error, Result};

const CHUNK: usize = 1024;

/// A streaming resampler over interleaved `f32` frames.
pub struct StreamResampler {
    inner: Box<dyn Resampler<f32>>,
    channels: usize,
    from: u32,
    to: u32,
    pending: Vec<f32>,
    outbuf: Vec<f32>,
    trim: usize,
    in_total: u64,
    out_total: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl StreamResampler {
    /// A resampler from `from` Hz to `to` Hz for `channels` interleaved channels.
    pub fn new(from: u32, to: u32, channels: usize) -> Result<Self> {
        Self::with_chunk(from, to, channels, CHUNK)
    }

    /// Like [`StreamResampler::new`], with `chunk` input frames per resampler call. Small chunks
    /// (about one 8 ms hop) keep the buffering delay low for live use; [`StreamResampler::new`]
    /// uses 1024 for throughput.
    pub fn with_chunk(from: u32, to: u32, channels: usize, chunk: usize) -> Result<Self> {
        let chunk = chunk.max(1);
        if from == 0 || to == 0 || channels == 0 {
            return Err(Error::Config(format!(
                "cannot resample {from} Hz -> {to} Hz with {channels} channels"
            )));
        }
        let g = gcd(from as u64, to as u64);
        let err = |e: rubato::ResamplerConstructionError| Error::Config(format!("resampler {from} -> {to} Hz: {e}"));
        let inner: Box<dyn Resampler<f32>> = if from as u64 / g <= 2048 && to as u64 / g <= 2048 {
            Box::new(Fft::<f32>::new(from as usize, to as usize, chunk, channels, FixedSync::Input).map_err(err)?)
        } else {
            let params = SincInterpolationParameters {
                sinc_len: 256,
                f_cutoff: None,
                oversampling_factor: 128,
                interpolation: SincInterpolationType::Cubic,
                window: WindowFunction::BlackmanHarris2,
            };
            Box::new(
                Async::<f32>::new_sinc(
                    to as f64 / from as f64,
                    1.0,
                    &params,
                    chunk,
                    channels,
                    FixedAsync::Input,
                )
                .map_err(err)?,
            )
        };
        let trim = inner.output_delay();
        let outbuf = vec![0.0; inner.output_frames_max() * channels];
        Ok(Self {
            inner,
            channels,
            from,
            to,
            pending: Vec::new(),
            outbuf,
            trim,
            in_total: 0,
            out_total: 0,
        })
    }

    /// Input rate (Hz).
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output rate (Hz).
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Output frames the resampler holds back at the start (trimmed from its output): its
    /// filter delay, in output frames.
    pub fn filter_delay(&self) -> usize {
        self.inner.output_delay()
    }

    /// Output frames a finished stream of `n` input frames produces: `ceil(n · to / from)`.
    pub fn output_len(&self, n: u64) -> u64 {
        (n as u128 * self.to as u128).div_ceil(self.from as u128) as u64
    }

    /// Push interleaved frames; append the interleaved output that is ready to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<()> {
        debug_assert_eq!(input.len() % self.channels, 0);
        self.pending.extend_from_slice(input);
        self.in_total += (input.len() / self.channels) as u64;
        let mut offset = 0;
        loop {
            let avail = self.pending.len() / self.channels - offset;
            let need = self.inner.input_frames_next();
            if avail < need {
                break;
            }
            let idx = Indexing::new().input_offset(offset);
            let nin = self.run(idx, out)?;
            offset += nin;
        }
        self.pending.drain(..offset * self.channels);
        Ok(())
    }

    /// End the stream: flush the tail, trim to `ceil(n · to / from)` frames in total, and reset.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        let expected = self.output_len(self.in_total);
        let start = out.len();
        let frames = self.pending.len() / self.channels;
        if frames > 0 {
            self.run(Indexing::new().partial_len(frames), out)?;
        }
        self.pending.clear();
        let mut guard = 0;
        while self.out_total < expected {
            self.run(Indexing::new().partial_len(0), out)?;
            guard += 1;
            if guard > 10_000 {
                return Err(Error::Config("resampler did not drain".into()));
            }
        }
        let excess = (self.out_total - expected) as usize * self.channels;
        let keep = (out.len() - start).saturating_sub(excess);
        out.truncate(start + keep);
        self.inner.reset();
        self.trim = self.inner.output_delay();
        self.in_total = 0;
        self.out_total = 0;
        Ok(())
    }

    fn run(&mut self, idx: Indexing, out: &mut Vec<f32>) -> Result<usize> {
        let ch = self.channels;
        let frames_in = self.pending.len() / ch;
        let input =
            InterleavedSlice::new(&self.pending[..], ch, frames_in).map_err(|e| Error::Config(e.to_string()))?;
        let cap = self.outbuf.len() / ch;
        let mut output =
            InterleavedSlice::new_mut(&mut self.outbuf[..], ch, cap).map_err(|e| Error::Config(e.to_string()))?;
        let (nin, nout) = self
            .inner
            .process_into_buffer(&input, &mut output, Some(&idx))
            .map_err(|e| Error::Config(format!("resampling failed: {e}")))?;
        let skip = self.trim.min(nout);
        self.trim -= skip;
        out.extend_from_slice(&self.outbuf[skip * ch..nout * ch]);
        self.out_total += (nout - skip) as u64;
        Ok(nin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, n: usize, f: f64) -> Vec<f32> {
        (0..n)
            .map(|i| (0.5 * (2.0 * std::f64::consts::PI * f * i as f64 / rate as f64).sin()) as f32)
            .collect()
    }

    fn resample_all(r: &mut StreamResampler, x: &[f32], chunk: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for c in x.chunks(chunk) {
            r.push(c, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn round_trip_preserves_a_tone() {
        for rate in [8000u32, 22050, 44100, 48000, 44099] {
            let x = tone(rate, rate as usize / 2, 440.0);
            let mut down = StreamResampler::new(rate, 16000, 1).unwrap();
            let mut up = StreamResampler::new(16000, rate, 1).unwrap();
            let y = resample_all(&mut down, &x, 777);
            assert_eq!(y.len() as u64, down.output_len(x.len() as u64), "{rate}");
            let z = resample_all(&mut up, &y, 500);
            assert!(
                z.len() >= x.len() && z.len() <= x.len() + 2,
                "{rate}: {} vs {}",
                z.len(),
                x.len()
            );
            // Compare away from the edges. rubato leaves a constant sub-sample delay for some
            // ratios (measured ≤ 0.5 input samples, e.g. 44.1 kHz), so check the normalised
            // correlation and the level rather than sample-wise equality.
            let n = x.len();
            let (a, b) = (&x[n / 4..3 * n / 4], &z[n / 4..3 * n / 4]);
            let dot: f64 = a.iter().zip(b).map(|(p, q)| (*p as f64) * (*q as f64)).sum();
            let ea: f64 = a.iter().map(|p| (*p as f64).powi(2)).sum();
            let eb: f64 = b.iter().map(|q| (*q as f64).powi(2)).sum();
            let corr = dot / (ea * eb).sqrt();
            // Exotic ratios (44 099 Hz) go through the async sinc resampler: ≤ 2 samples of delay.
            let min_corr = if rate == 44099 { 0.99 } else { 0.9995 };
            assert!(corr > min_corr, "{rate}: round-trip correlation {corr}");
            assert!((eb / ea - 1.0).abs() < 0.01, "{rate}: level changed by {}", eb / ea);
        }
    }

    #[test]
    fn stereo_and_chunking_are_consistent() {
        let l = tone(44100, 9000, 300.0);
        let r = tone(44100, 9000, 1000.0);
        let inter: Vec<f32> = l.iter().zip(&r).flat_map(|(a, b)| [*a, *b]).collect();
        let mut a = StreamResampler::new(44100, 16000, 2).unwrap();
        let one = resample_all(&mut a, &inter, 2 * 9000);
        let two = resample_all(&mut a, &inter, 2 * 333);
        assert_eq!(one.len(), two.len());
        assert!(one.iter().zip(&two).all(|(x, y)| (x - y).abs() < 1e-6));
        let mut m = StreamResampler::new(44100, 16000, 1).unwrap();
        let left = resample_all(&mut m, &l, 1000);
        let left2: Vec<f32> = one.iter().step_by(2).copied().collect();
        assert_eq!(left.len(), left2.len());
        assert!(left.iter().zip(&left2).all(|(x, y)| (x - y).abs() < 1e-6));
    }
}
