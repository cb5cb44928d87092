//! Live-path benchmark: per-hop processing time distribution (p50/p99/max) on one thread, as
//! `enhance --live` runs it (one 128-sample hop per call, 1 frame per network call).
//!
//!     cargo bench --bench live                      # models/thunder-16k.onnx if present
//!     THUNDER_BENCH_MODEL=tests/fixtures/tiny-thunder-la1.onnx cargo bench --bench live
//!     THUNDER_BENCH_HOPS=5000 cargo bench --bench live
//!
//! Target (issue 3): p99 < 2 ms per hop at steps 1; algorithmic latency <= 40 ms.

use std::path::PathBuf;
use std::time::Instant;

use thunder::contract::HOP;
use thunder::live::stats::{ms, Histogram};
use thunder::live::{AdaptiveConfig, AdaptiveEnhancer, Pipeline, PipelineConfig};
use thunder::model::{Model, ModelOptions};

fn model_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Ok(p) = std::env::var("THUNDER_BENCH_MODEL") {
        return root.join(p);
    }
    let real = root.join("models/thunder-16k.onnx");
    if real.is_file() {
        real
    } else {
        eprintln!("models/thunder-16k.onnx not found; benchmarking tests/fixtures/tiny-thunder-la1.onnx");
        root.join("tests/fixtures/tiny-thunder-la1.onnx")
    }
}

fn audio(n: usize) -> Vec<f32> {
    let mut s = 1u32;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            0.2 * ((i as f32) * 0.05).sin() + 0.05 * (s as f32 / u32::MAX as f32 - 0.5)
        })
        .collect()
}

fn enhancer(steps: usize, pipelined: bool) -> AdaptiveEnhancer {
    let opts = ModelOptions {
        threads: 1,
        ..Default::default()
    };
    let cfg = AdaptiveConfig {
        steps,
        pipelined,
        adaptive: false,
        ..Default::default()
    };
    AdaptiveEnhancer::new(vec![Model::load(&model_path(), &opts).expect("load model")], cfg).unwrap()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this with no args: keep it short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let hops: usize = std::env::var("THUNDER_BENCH_HOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 50 } else { 2000 });
    let x = audio((hops + 200) * HOP);
    let name = model_path().file_name().unwrap().to_string_lossy().to_string();
    println!("live per-hop processing, one thread, {hops} hops (8 ms each), model {name}");
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>8} {:>12}",
        "configuration", "p50 ms", "p99 ms", "max ms", "mean ms", "RTF", "latency ms"
    );
    for (label, steps, pipelined) in [
        ("steps 0", 0, false),
        ("steps 1", 1, false),
        ("steps 1, pipelined", 1, true),
    ] {
        let mut e = enhancer(steps, pipelined);
        let mut out = Vec::with_capacity(HOP);
        for hop in x[..100 * HOP].chunks(HOP) {
            out.clear();
            e.push_hop(hop, 0, &mut out).unwrap();
        }
        let mut h = Histogram::new();
        for hop in x[100 * HOP..(100 + hops) * HOP].chunks(HOP) {
            out.clear();
            h.record(e.push_hop(hop, 0, &mut out).unwrap());
        }
        println!(
            "{:<34} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8.3} {:>12.1}",
            label,
            ms(h.quantile(0.5)),
            ms(h.quantile(0.99)),
            ms(h.max()),
            ms(h.mean()),
            h.mean().as_secs_f64() / 0.008,
            e.latency_samples() as f64 / 16.0
        );
    }
    // The whole device path at 48 kHz stereo in / 48 kHz stereo out (downmix, resampling).
    let mut p = Pipeline::new(
        enhancer(1, false),
        PipelineConfig {
            in_rate: 48000,
            in_channels: 2,
            out_rate: 48000,
            out_channels: 2,
        },
    )
    .unwrap();
    let x48: Vec<f32> = audio(3 * (hops + 100) * HOP).iter().flat_map(|v| [*v, *v]).collect();
    let mut out = Vec::new();
    let block = 2 * 480; // 10 ms device periods
    let t = Instant::now();
    for c in x48.chunks(block) {
        out.clear();
        p.push(c, 0, &mut out).unwrap();
    }
    let wall = t.elapsed();
    let h = p.hop_times();
    println!(
        "{:<34} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8.3} {:>12.1}",
        "steps 1, 48 kHz device path",
        ms(h.quantile(0.5)),
        ms(h.quantile(0.99)),
        ms(h.max()),
        ms(h.mean()),
        wall.as_secs_f64() / (x48.len() as f64 / 2.0 / 48000.0),
        ms(p.delay())
    );
    println!("(latency: algorithmic for the enhancer rows; pipeline delay incl. resampling and hop alignment for the device path)");
}
