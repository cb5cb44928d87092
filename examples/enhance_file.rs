//! Enhance a WAV file through the library (any rate, channels, format), two ways:
//! the file helper `thunder::stream::file::FileEnhancer`, or by hand with `thunder::Enhancer`.
//!
//!     cargo run --release --example enhance_file -- MODEL.onnx in.wav out.wav [steps]
//!     cargo run --release --example enhance_file -- tests/fixtures/tiny-thunder-la1.onnx \
//!         examples/audio/noisy_speech.wav /tmp/enhanced.wav

use std::path::Path;

use thunder::audio::resample::StreamResampler;
use thunder::audio::wav::{read_all, write_all};
use thunder::model::{Model, ModelOptions};
use thunder::stream::file::{FileEnhancer, FileOptions, FILE_FRAMES_PER_CALL};
use thunder::{Enhancer, EnhancerConfig};

fn main() -> thunder::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: enhance_file MODEL.onnx in.wav out.wav [steps]");
        std::process::exit(2);
    }
    let (model, input, output) = (Path::new(&args[1]), Path::new(&args[2]), Path::new(&args[3]));
    let steps = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let opts = ModelOptions {
        threads: 1,
        ..Default::default()
    };

    // 1. The file helper: streams the file in chunks, resamples, keeps the format.
    let mut fe = FileEnhancer::new(
        Model::load(model, &opts)?,
        FileOptions {
            enhancer: EnhancerConfig {
                steps,
                frames_per_call: FILE_FRAMES_PER_CALL,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let report = fe.enhance(input, output, &mut |_, _| {})?;
    println!(
        "{} -> {}: {:.2} s of audio in {:.2} s",
        input.display(),
        output.display(),
        report.audio_seconds,
        report.wall_seconds
    );

    // 2. The same by hand: mono, resample to 16 kHz, Enhancer, resample back.
    let (fmt, x) = read_all(input)?;
    let ch = fmt.channels as usize;
    let mono: Vec<f32> = x.chunks_exact(ch).map(|f| f.iter().sum::<f32>() / ch as f32).collect();
    let mut down = StreamResampler::new(fmt.sample_rate, 16000, 1)?;
    let mut x16 = Vec::new();
    down.push(&mono, &mut x16)?;
    down.finish(&mut x16)?;
    let mut e = Enhancer::from_path(
        model,
        &opts,
        EnhancerConfig {
            steps,
            frames_per_call: FILE_FRAMES_PER_CALL,
            ..Default::default()
        },
    )?;
    let mut y16 = Vec::new();
    e.process(&x16, &mut y16)?;
    e.flush(&mut y16)?;
    let mut up = StreamResampler::new(16000, fmt.sample_rate, 1)?;
    let mut y = Vec::new();
    up.push(&y16, &mut y)?;
    up.finish(&mut y)?;
    y.truncate(mono.len());
    let by_hand = output.with_extension("mono.wav");
    let mut f = fmt;
    f.channels = 1;
    write_all(&by_hand, f, &y)?;
    println!("by hand (mono): {}", by_hand.display());
    Ok(())
}
