//! Counter-based Gaussian noise, bit-exact with `thunder_train/rng.py`.
//!
//! `z(seed, stream, frame)` is a complex standard normal per bin (each part N(0, ½)) that depends
//! only on its three keys, so chunking a stream never changes the noise a frame receives.
//! Stream ids: corrector of reverse step i → 2i, predictor of step i → 2i + 1.

use crate::contract::N_BINS;

/// One splitmix64 step: increment by the golden gamma, then finalise (wrapping u64 arithmetic).
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Noise for one frame into `out` (`[2, N_BINS]`: re block, then im block).
pub fn frame_noise(seed: u64, stream: u64, frame: u64, out: &mut [f32]) {
    let s = mix(mix(mix(seed) ^ stream) ^ frame);
    let (re, im) = out.split_at_mut(N_BINS);
    let half = 0.5f64.sqrt();
    for j in 0..N_BINS {
        let r1 = mix(s ^ (2 * j as u64));
        let r2 = mix(s ^ (2 * j as u64 + 1));
        let u1 = ((r1 >> 11) as f64 + 1.0) * 2f64.powi(-53); // (0, 1]
        let u2 = (r2 >> 11) as f64 * 2f64.powi(-53); // [0, 1)
        let rad = (-2.0 * u1.ln()).sqrt() * half;
        let ang = 2.0 * std::f64::consts::PI * u2;
        re[j] = (rad * ang.cos()) as f32;
        im[j] = (rad * ang.sin()) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_complex_standard_normal() {
        let mut z = vec![0.0; 2 * N_BINS];
        let (mut m, mut v, mut n) = (0.0f64, 0.0f64, 0.0f64);
        for f in 0..200 {
            frame_noise(7, 1, f, &mut z);
            for &x in &z {
                m += x as f64;
                v += (x as f64) * (x as f64);
                n += 1.0;
            }
        }
        assert!((m / n).abs() < 0.01);
        assert!((v / n - 0.5).abs() < 0.01);
    }
}
