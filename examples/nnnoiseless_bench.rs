//! Baseline for `benches/compare.py`: denoise a 48 kHz mono WAV with nnnoiseless (RNNoise port)
//! on one thread and print a JSON line with the audio length and the processing wall time.
//!
//!     cargo run --release --example nnnoiseless_bench -- in48k.wav out48k.wav

use std::path::Path;
use std::time::Instant;

use nnnoiseless::DenoiseState;
use thunder::audio::wav::{read_all, write_all};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: nnnoiseless_bench IN_48K.wav OUT.wav");
        std::process::exit(2);
    }
    let (fmt, x) = read_all(Path::new(&args[1])).expect("read input");
    assert_eq!(
        (fmt.channels, fmt.sample_rate),
        (1, 48000),
        "nnnoiseless needs 48 kHz mono"
    );
    // nnnoiseless works on i16-scaled floats.
    let scaled: Vec<f32> = x.iter().map(|v| v * 32768.0).collect();
    let n = DenoiseState::FRAME_SIZE;
    let mut st = DenoiseState::new();
    let mut out = vec![0.0f32; scaled.len().div_ceil(n) * n];
    let mut frame = vec![0.0f32; n];
    let t = Instant::now();
    for (i, chunk) in scaled.chunks(n).enumerate() {
        frame[..chunk.len()].copy_from_slice(chunk);
        frame[chunk.len()..].fill(0.0);
        st.process_frame(&mut out[i * n..(i + 1) * n], &frame);
    }
    let wall = t.elapsed().as_secs_f64();
    out.truncate(x.len());
    let y: Vec<f32> = out.iter().map(|v| v / 32768.0).collect();
    write_all(Path::new(&args[2]), fmt, &y).expect("write output");
    let secs = x.len() as f64 / 48000.0;
    println!(
        "{{\"audio_seconds\": {secs}, \"wall_seconds\": {wall}, \"rtf\": {}}}",
        wall / secs
    );
}
