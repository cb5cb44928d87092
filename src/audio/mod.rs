//! Audio in and out: streaming WAV I/O ([`wav`]), resampling ([`resample`]), and input checks
//! (non-finite samples, clipping).

pub mod resample;
pub mod wav;

/// Replace NaN and ±Inf samples by 0 in place; returns how many were replaced.
pub fn sanitize(samples: &mut [f32]) -> u64 {
    let mut n = 0;
    for s in samples.iter_mut() {
        if !s.is_finite() {
            *s = 0.0;
            n += 1;
        }
    }
    n
}

/// Level at or above which a sample counts as clipped (full scale).
pub const CLIP_LEVEL: f32 = 0.999;

/// Samples at or above full scale (|x| ≥ [`CLIP_LEVEL`]).
pub fn count_clipped(samples: &[f32]) -> u64 {
    samples.iter().filter(|s| s.abs() >= CLIP_LEVEL).count() as u64
}

/// Average interleaved channels into mono.
pub fn mix_mono(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    let inv = 1.0 / channels as f32;
    out.extend(interleaved.chunks_exact(channels).map(|f| f.iter().sum::<f32>() * inv));
}
