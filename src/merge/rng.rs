//! Counter-based deterministic random numbers (SplitMix64), so that results depend only on the
//! recipe seed and the tensor name — never on thread scheduling.
//!
//! The stream is simple enough to be re-implemented bit-exactly in numpy
//! (`tests/merge/reference.py` does so for the DARE fixtures):
//!
//! * `key(seed, name, expert) = mix(mix(seed ^ fnv1a64(name)) + expert)`
//! * `u64 #j = mix(key + (j + 1) * 0x9E3779B97F4A7C15)` (wrapping arithmetic)
//! * `uniform #j = (u64 #j >> 11) * 2^-53` in `[0, 1)`.

/// 64-bit FNV-1a hash of a byte string.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Golden-ratio increment of SplitMix64.
pub const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Stream key for one expert of one tensor.
pub fn stream_key(seed: u64, tensor: &str, expert: usize) -> u64 {
    mix(mix(seed ^ fnv1a64(tensor.as_bytes())).wrapping_add(expert as u64))
}

/// The `j`-th uniform number in `[0, 1)` of the stream `key`.
#[inline]
pub fn uniform(key: u64, j: u64) -> f64 {
    let z = mix(key.wrapping_add(j.wrapping_add(1).wrapping_mul(GAMMA)));
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}
