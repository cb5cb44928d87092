//! Criterion benchmarks: STFT per hop, one network pass per hop, and the whole streaming
//! pipeline at steps 0/1/3 on one thread (RTF = time per iteration / audio seconds).
//!
//!     cargo bench --bench engine                      # uses models/thunder-16k.onnx if present
//!     THUNDER_BENCH_MODEL=tests/fixtures/tiny-thunder-la1.onnx cargo bench --bench engine
//!
//! The pipeline benches print the real-time factor directly as well.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use thunder::contract::{FRAME_LEN, HOP};
use thunder::model::{Model, ModelOptions};
use thunder::sampler::Denoiser;
use thunder::stft::{Istft, Stft};
use thunder::stream::file::FILE_FRAMES_PER_CALL;
use thunder::{Enhancer, EnhancerConfig};

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

fn load() -> Model {
    Model::load(
        &model_path(),
        &ModelOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .expect("load model")
}

fn audio(seconds: f32) -> Vec<f32> {
    let n = (16000.0 * seconds) as usize;
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

fn stft_hop(c: &mut Criterion) {
    let x = audio(1.0);
    let mut a = Stft::new();
    let mut s = Istft::new();
    let mut out = Vec::with_capacity(4 * HOP);
    let mut i = 0;
    c.bench_function("stft+istft per hop", |b| {
        b.iter(|| {
            let hop = &x[(i * HOP) % (x.len() - HOP)..][..HOP];
            i += 1;
            out.clear();
            let mut frame = None;
            a.push(hop, |f| frame = Some(f.to_vec()));
            if let Some(f) = frame {
                s.push(&f, &mut out);
            }
            std::hint::black_box(&out);
        })
    });
}

fn network_pass(c: &mut Criterion) {
    let mut m = load();
    let name = m.info().name.clone();
    let mut st = m.new_state(1);
    let x: Vec<f32> = (0..FRAME_LEN).map(|i| (i as f32 * 0.01).sin() * 0.1).collect();
    let mut out = Vec::new();
    c.bench_function(&format!("network pass per hop (1 frame, {name})"), |b| {
        b.iter(|| m.denoise(&x, &x, &[0.5], 1, &mut [&mut st], &mut out).unwrap())
    });
}

fn pipeline(c: &mut Criterion) {
    let seconds = 4.0;
    let x = audio(seconds);
    let mut model = Some(load());
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    for steps in [0usize, 1, 3] {
        // (frames per call, pipelined): live hop-by-hop, live pipelined, file mode.
        for (fpc, pipelined) in [(1usize, false), (1, true), (FILE_FRAMES_PER_CALL, false)] {
            if steps == 0 && pipelined {
                continue; // one pass: nothing to pipeline
            }
            let cfg = EnhancerConfig {
                steps,
                frames_per_call: fpc,
                pipelined,
                ..Default::default()
            };
            let mut e = Enhancer::new(model.take().unwrap(), cfg).unwrap();
            let mut out = Vec::with_capacity(x.len());
            let chunk = if fpc == 1 { HOP } else { 8192 };
            let run = |e: &mut Enhancer, out: &mut Vec<f32>| {
                out.clear();
                for c in x.chunks(chunk) {
                    e.process(c, out).unwrap();
                }
                e.flush(out).unwrap();
            };
            let t = Instant::now();
            run(&mut e, &mut out);
            let rtf = t.elapsed().as_secs_f64() / seconds as f64;
            let mode = if pipelined {
                "live pipelined"
            } else if fpc == 1 {
                "live"
            } else {
                "file"
            };
            eprintln!(
                "pipeline steps {steps} ({} passes), {mode} ({fpc} frame(s)/call): RTF {rtf:.4} \
                 (single run, 1 thread, latency {} samples)",
                e.network_passes(),
                e.latency_samples()
            );
            g.bench_function(format!("steps {steps}, {mode}, {seconds} s audio"), |b| {
                b.iter(|| run(&mut e, &mut out))
            });
            model = Some(e.into_model());
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = stft_hop, network_pass, pipeline
}
criterion_main!(benches);
