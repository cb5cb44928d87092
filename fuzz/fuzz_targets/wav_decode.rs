//! Coverage-guided fuzzing of the WAV decode path: any byte string must decode or be rejected
//! with an error, never panic, hang, or allocate without bound.
//!
//!     cargo install cargo-fuzz          # once
//!     cargo +nightly fuzz run wav_decode -- -max_total_time=60
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = thunder::audio::wav::decode_bytes(data);
});
