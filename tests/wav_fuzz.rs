//! A bounded, deterministic mutation fuzzer for the WAV decode path on stable Rust (the
//! coverage-guided target lives in `fuzz/`, see docs/engine.md). Every mutated file must decode
//! or be rejected with an error — never panic.

use thunder::audio::wav::{decode_bytes, write_all, SampleFormat, WavFormat};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let d = tempfile::tempdir().unwrap();
    let mut v = Vec::new();
    for (i, (format, bits, ch)) in [
        (SampleFormat::Int, 8u16, 1u16),
        (SampleFormat::Int, 16, 2),
        (SampleFormat::Int, 24, 1),
        (SampleFormat::Int, 32, 3),
        (SampleFormat::Float, 32, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let p = d.path().join(format!("{i}.wav"));
        let x: Vec<f32> = (0..60 * ch as usize).map(|k| ((k as f32) * 0.1).sin() * 0.5).collect();
        write_all(
            &p,
            WavFormat {
                channels: ch,
                sample_rate: 16000,
                bits,
                format,
            },
            &x,
        )
        .unwrap();
        v.push(std::fs::read(&p).unwrap());
    }
    // A WAVE_FORMAT_EXTENSIBLE header (hound writes one for 24-bit / >2 channels); plus an
    // unknown chunk before "data".
    let mut odd = v[1].clone();
    odd.splice(36..36, b"LIST\x04\x00\x00\x00abcd".iter().copied());
    v.push(odd);
    v
}

fn mutate(r: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + r.below(4) {
        match r.below(6) {
            0 if !b.is_empty() => {
                let i = r.below(b.len());
                b[i] ^= 1 << r.below(8);
            }
            1 if !b.is_empty() => {
                let i = r.below(b.len());
                b[i] = r.next() as u8;
            }
            2 => {
                let n = r.below(b.len() + 1);
                b.truncate(n);
            }
            3 if b.len() >= 4 => {
                // Overwrite a u16/u32 header field with an extreme value.
                let i = r.below(b.len().min(80) - 3);
                let vals: [u32; 6] = [0, 1, 0xFFFF, 0xFFFF_FFFF, 0x8000_0000, 3];
                let v = vals[r.below(vals.len())];
                if r.below(2) == 0 {
                    b[i..i + 2].copy_from_slice(&(v as u16).to_le_bytes());
                } else {
                    b[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            4 => {
                let i = r.below(b.len() + 1);
                let n = r.below(16);
                let junk: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
                b.splice(i..i, junk);
            }
            _ => {
                let n = r.below(b.len() + 1);
                b.drain(..n.min(8));
            }
        }
    }
    b
}

#[test]
fn mutated_wavs_never_panic() {
    let seeds = seeds();
    for s in &seeds {
        decode_bytes(s).expect("seed decodes");
    }
    let mut r = Rng(0x1234_5678_9abc_def1);
    let iterations = std::env::var("THUNDER_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut ok = 0;
    for i in 0..iterations {
        let base = &seeds[i % seeds.len()];
        let m = mutate(&mut r, base);
        let res = std::panic::catch_unwind(|| decode_bytes(&m));
        match res {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(msg)) => assert!(!msg.is_empty()),
            Err(_) => panic!("decoder panicked on input {i}: {:02x?}", &m[..m.len().min(96)]),
        }
    }
    eprintln!("{iterations} mutated WAVs, {ok} still decodable, none panicked");
}
