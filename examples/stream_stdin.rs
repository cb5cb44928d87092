//! Streaming filter: raw 16 kHz mono signed 16-bit little-endian PCM on stdin, enhanced PCM
//! of the same format on stdout, processed as it arrives (one 8 ms hop at a time), with the
//! enhancer's latency; at end of input the tail is flushed, so output length == input length.
//!
//!     sox examples/audio/noisy_speech.wav -t raw -r 16000 -c 1 -e signed -b 16 - \
//!       | cargo run --release --example stream_stdin -- tests/fixtures/tiny-thunder-la1.onnx \
//!       | sox -t raw -r 16000 -c 1 -e signed -b 16 - /tmp/enhanced.wav
//!     arecord -f S16_LE -r 16000 -c 1 | cargo run --release --example stream_stdin -- MODEL \
//!       | aplay -f S16_LE -r 16000 -c 1

use std::io::{Read, Write};

use thunder::{Enhancer, EnhancerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "models/thunder-16k.onnx".into());
    let mut e = Enhancer::from_path(
        model.as_ref(),
        &thunder::model::ModelOptions {
            threads: 1,
            ..Default::default()
        },
        EnhancerConfig::default(),
    )?;
    eprintln!(
        "stream_stdin: latency {} samples ({:.1} ms)",
        e.latency_samples(),
        e.latency_samples() as f64 / 16.0
    );
    let (mut stdin, mut stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    let mut bytes = vec![0u8; 256]; // one hop of s16le
    let mut carry: Option<u8> = None;
    let (mut x, mut y, mut pcm) = (Vec::new(), Vec::new(), Vec::new());
    let write = |y: &mut Vec<f32>, pcm: &mut Vec<u8>, out: &mut dyn Write| -> std::io::Result<()> {
        pcm.clear();
        for v in y.drain(..) {
            pcm.extend_from_slice(&((v * 32768.0).round().clamp(-32768.0, 32767.0) as i16).to_le_bytes());
        }
        out.write_all(pcm)?;
        out.flush()
    };
    loop {
        let n = stdin.read(&mut bytes)?;
        if n == 0 {
            break;
        }
        x.clear();
        let mut data = &bytes[..n];
        if let Some(lo) = carry.take() {
            x.push(i16::from_le_bytes([lo, data[0]]) as f32 / 32768.0);
            data = &data[1..];
        }
        for s in data.chunks(2) {
            match s {
                [lo, hi] => x.push(i16::from_le_bytes([*lo, *hi]) as f32 / 32768.0),
                [lo] => carry = Some(*lo),
                _ => {}
            }
        }
        e.process(&x, &mut y)?;
        write(&mut y, &mut pcm, &mut stdout)?;
    }
    e.flush(&mut y)?;
    write(&mut y, &mut pcm, &mut stdout)?;
    Ok(())
}
